"""The DRA example driver (kubernetes-sigs/dra-example-driver): its three device profiles, each a
driver of its own (`<profile>.example.com`, the chart's default driverName) with the DeviceClass
its chart installs.

- `example-gpu` (gpu.example.com): `gpu-<i>` with 80Gi memory and 100 compute; with partitions,
  a counter set `gpu-<i>-counters` per GPU, `gpu-<i>-partition-<j>` devices that each consume
  1/N of it and a `gpu-<i>-full` device that consumes all of it; optionally consumable capacity
  (allowMultipleAllocations with request policies) and binding conditions.
- `example-cpu` (cpu.example.com): `numa-<i>` devices whose CPUs are a consumable capacity
  `cpu.example.com/cpu`.
- `example-net` (net.example.com): `nic-<i>` with consumable `vfs`, `ingressBandwidth` and
  `egressBandwidth`.

Followed: kubernetes-sigs/dra-example-driver v0.4.0 (bab2dce4b045e729565c9a3b85554738247cda30;
internal/profiles and the chart's DeviceClass unchanged at main 31914ceacda29bbc55208ef75e68c0991e1c9568):
internal/profiles/gpu/gpu.go, internal/profiles/cpu/cpu.go, internal/profiles/net/net.go,
internal/profiles/helpers/uid_tool.go, cmd/dra-example-kubeletplugin/main.go (flags, defaults,
driver name `<profile>.example.com`), deployments/helm/dra-example-driver/values.yaml and
templates/deviceclass.yaml (DeviceClass named after the driver, selector
`device.driver == '<driver>'`, no extendedResourceName by default).

The example driver's model and driverVersion are constants in its source ("LATEST-GPU-MODEL",
"LATEST-NET-MODEL", "1.0.0"); its UUIDs are random bytes seeded by the node name, here
`{deviceUUID}` (a UUID per node and device) with the same prefixes `gpu-` and `net-`.
"""

from __future__ import annotations

import copy

from pydantic import Field, ValidationInfo, field_validator

from ..api_limits import MAX_DEVICES_PER_POOL
from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, integer, quantity, string, version

SOURCE = (
    "kubernetes-sigs/dra-example-driver v0.4.0@bab2dce4b045e729565c9a3b85554738247cda30 "
    "(unchanged at main@31914ceacda29bbc55208ef75e68c0991e1c9568): {files}, "
    "cmd/dra-example-kubeletplugin/main.go, deployments/helm/dra-example-driver/values.yaml, "
    "deployments/helm/dra-example-driver/templates/deviceclass.yaml"
)
DRIVER_VERSION = "1.0.0"  # gpu.go and net.go: a constant of the example driver
# The kubelet plugin's --num-devices default and the chart's kubeletPlugin.numDevices (gpu and net).
NUM_DEVICES = 8
# The most counter sets a pool's slice holds (resource.k8s.io ResourceSliceMaxCounterSets); the
# example driver puts one per GPU into a single slice, so more partitioned GPUs would be refused.
MAX_COUNTER_SETS = 8


def _device_class(driver: str) -> DeviceClassSpec:
    """templates/deviceclass.yaml: the DeviceClass is named after the driver."""
    return DeviceClassSpec(driver, f"device.driver == '{driver}'")


def _bool(value: bool) -> Body:
    return {"bool": value}


# --- gpu ------------------------------------------------------------------------------------------
GPU_DRIVER = "gpu.example.com"
GPU_MEMORY_BYTES = 80 * 2**30  # gpu.go memoryPerGPU "80Gi"
GPU_COMPUTE = 100  # gpu.go computePerGPU "100"
GPU_MODEL = "LATEST-GPU-MODEL"
BINDING_CONDITION = "BindingConditions"  # gpu.go BindingConditions
BINDING_FAILURE_CONDITION = "BindingFailureConditions"  # gpu.go BindingFailureConditions


def binary_quantity(n: int) -> str:
    """An integer number of bytes as resource.NewQuantity(n, BinarySI) prints it: the largest
    binary suffix that divides it exactly."""
    for suffix, factor in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


class ExampleGpuParameters(Parameters):
    num_devices: int = Field(
        default=NUM_DEVICES, ge=1, le=MAX_DEVICES_PER_POOL, description="GPUs per node (the chart's numDevices)"
    )
    gpu_allow_multiple_allocations: bool = Field(
        default=False,
        description="gpuAllowMultipleAllocations: allowMultipleAllocations and request policies on memory and compute",
    )
    gpu_partitions: int = Field(
        default=0,
        ge=0,
        le=GPU_COMPUTE,
        description="partitions per GPU (kubeletPlugin.gpuPartitions), each with 1/N of memory and compute; "
        "0: whole GPUs",
    )
    binding_conditions: bool = Field(
        default=False,
        description="bindingConditions [BindingConditions] and bindingFailureConditions [BindingFailureConditions]",
    )

    @field_validator("gpu_partitions")
    @classmethod
    def _fits(cls, value: int, info: ValidationInfo) -> int:
        gpus = info.data.get("num_devices")
        if value and gpus is not None:
            if gpus > MAX_COUNTER_SETS:
                raise ValueError(
                    f"partitioned GPUs have a counter set each, and a slice holds at most {MAX_COUNTER_SETS}: "
                    f"numDevices is {gpus}"
                )
            if gpus * (value + 1) > MAX_DEVICES_PER_POOL:
                raise ValueError(
                    f"{gpus} GPUs of {value} partitions and a full device each are more than "
                    f"{MAX_DEVICES_PER_POOL} devices"
                )
        if value and info.data.get("gpu_allow_multiple_allocations"):
            # The request policy is validRange {min: 1Gi, step: 1Gi, max: <memory>}: the apiserver
            # wants max and default on a step from min and min + step within the capacity
            # (kubernetes pkg/apis/resource/validation validateRequestPolicyRange).
            memory = GPU_MEMORY_BYTES // value
            if memory % 2**30 or memory < 2 * 2**30:
                raise ValueError(
                    f"with gpuAllowMultipleAllocations each partition's memory (80Gi/{value}) must be a whole "
                    "number of Gi, at least 2Gi, or the apiserver refuses its request policy: use a divisor "
                    "of 80 up to 40"
                )
        return value


def _gpu_capacity(p: ExampleGpuParameters, memory: int, compute: int) -> Body:
    """gpu.go memoryCapacity / computeCapacity: with allowMultipleAllocations a request policy
    (default all of it, from 1Gi / 1 in steps of 1Gi / 1 up to all of it)."""
    mem, cpu = binary_quantity(memory), str(compute)
    if not p.gpu_allow_multiple_allocations:
        return {"memory": quantity(mem), "compute": quantity(cpu)}
    return {
        "memory": {
            "value": mem,
            "requestPolicy": {"default": mem, "validRange": {"min": "1Gi", "step": "1Gi", "max": mem}},
        },
        "compute": {
            "value": cpu,
            "requestPolicy": {"default": cpu, "validRange": {"min": "1", "step": "1", "max": cpu}},
        },
    }


def build_gpu(p: ExampleGpuParameters) -> ProfilePool:
    devices: list[Body] = []
    counter_sets: list[Body] = []
    for i in range(p.num_devices):
        attrs: Body = {"index": integer(i), "model": string(GPU_MODEL), "driverVersion": version(DRIVER_VERSION)}
        if not p.gpu_partitions:
            attrs["uuid"] = string("gpu-{deviceUUID}")
            devices.append(
                {"name": f"gpu-{i}", "attributes": attrs, "capacity": _gpu_capacity(p, GPU_MEMORY_BYTES, GPU_COMPUTE)}
            )
            continue
        # A GPU's partitions and its full device are one GPU: they share its uuid (gpu.go clones
        # the GPU's attributes). {deviceUUID} differs per device, so the uuid is built from the
        # node's hash and the GPU index, in the UUID format: per node and GPU, the same on every render.
        attrs["uuid"] = string(f"gpu-{{nodeHash}}-0000-4000-8000-{i:012x}")
        counter_set = f"gpu-{i}-counters"
        counter_sets.append(
            {
                "name": counter_set,
                "counters": {
                    "memory": quantity(binary_quantity(GPU_MEMORY_BYTES)),
                    "compute": quantity(str(GPU_COMPUTE)),
                },
            }
        )
        # resource.NewQuantity(memoryPerGPU.Value()/N, BinarySI), computePerGPU.Value()/N: integer division
        memory, compute = GPU_MEMORY_BYTES // p.gpu_partitions, GPU_COMPUTE // p.gpu_partitions
        for j in range(p.gpu_partitions):
            devices.append(
                {
                    "name": f"gpu-{i}-partition-{j}",
                    "attributes": {**attrs, "partition": integer(j), "partitionable": _bool(True)},
                    "capacity": _gpu_capacity(p, memory, compute),
                    "consumesCounters": [
                        {
                            "counterSet": counter_set,
                            "counters": {
                                "memory": quantity(binary_quantity(memory)),
                                "compute": quantity(str(compute)),
                            },
                        }
                    ],
                }
            )
        devices.append(
            {
                "name": f"gpu-{i}-full",
                "attributes": {**attrs, "partitionable": _bool(True), "full": _bool(True)},
                "capacity": _gpu_capacity(p, GPU_MEMORY_BYTES, GPU_COMPUTE),
                "consumesCounters": [
                    {
                        "counterSet": counter_set,
                        "counters": {
                            "memory": quantity(binary_quantity(GPU_MEMORY_BYTES)),
                            "compute": quantity(str(GPU_COMPUTE)),
                        },
                    }
                ],
            }
        )
    for d in devices:
        # gpu.go sets AllowMultipleAllocations on every device, false unless enabled
        d["allowMultipleAllocations"] = p.gpu_allow_multiple_allocations
        if p.binding_conditions:
            d["bindingConditions"] = [BINDING_CONDITION]
            d["bindingFailureConditions"] = [BINDING_FAILURE_CONDITION]
    return ProfilePool(devices=devices, shared_counters=counter_sets)


EXAMPLE_GPU = Profile(
    name="example-gpu",
    driver=GPU_DRIVER,
    summary="the DRA example driver's GPUs (gpu.example.com), optionally partitioned with shared counters",
    source=SOURCE.format(files="internal/profiles/gpu/gpu.go"),
    parameters=ExampleGpuParameters,
    build=build_gpu,
    device_classes=(_device_class(GPU_DRIVER),),
    # demo/examples/partitionable-devices/README.md installs the driver with
    # --set kubeletPlugin.gpuPartitions=4 --set kubeletPlugin.numDevices=2
    example={"numDevices": 2, "gpuPartitions": 4},
)


# --- cpu ------------------------------------------------------------------------------------------
CPU_DRIVER = "cpu.example.com"
CPU_CAPACITY = f"{CPU_DRIVER}/cpu"  # cpu.go CapacityKey: <driver>/cpu


class ExampleCpuParameters(Parameters):
    numa_nodes: int = Field(
        default=8, ge=1, le=MAX_DEVICES_PER_POOL, description="NUMA-node devices (kubeletPlugin.cpu.numaNodes)"
    )
    cpus_per_numa_node: int = Field(
        default=4,
        ge=1,
        alias="cpusPerNUMANode",
        description="CPU capacity of each NUMA-node device (kubeletPlugin.cpu.cpusPerNUMANode)",
    )


def build_cpu(p: ExampleCpuParameters) -> ProfilePool:
    return ProfilePool(
        devices=[
            {
                "name": f"numa-{i}",
                "allowMultipleAllocations": True,
                "attributes": {"numaNodeID": integer(i)},
                "capacity": {CPU_CAPACITY: quantity(str(p.cpus_per_numa_node))},
            }
            for i in range(p.numa_nodes)
        ]
    )


EXAMPLE_CPU = Profile(
    name="example-cpu",
    driver=CPU_DRIVER,
    summary="the DRA example driver's NUMA-node CPU devices (cpu.example.com) with consumable cpu.example.com/cpu",
    source=SOURCE.format(files="internal/profiles/cpu/cpu.go"),
    parameters=ExampleCpuParameters,
    build=build_cpu,
    device_classes=(_device_class(CPU_DRIVER),),
    example={"numaNodes": 2, "cpusPerNUMANode": 16},
)


# --- net ------------------------------------------------------------------------------------------
NET_DRIVER = "net.example.com"
NET_MODEL = "LATEST-NET-MODEL"
# net.go: bandwidth capacity, the same for ingress and egress
BANDWIDTH: Body = {
    "value": "100G",
    "requestPolicy": {"default": "1G", "validRange": {"min": "100M", "max": "100G", "step": "1M"}},
}
VFS: Body = {"value": "100", "requestPolicy": {"default": "1", "validValues": ["1"]}}


class ExampleNetParameters(Parameters):
    num_devices: int = Field(
        default=NUM_DEVICES, ge=1, le=MAX_DEVICES_PER_POOL, description="NICs per node (the chart's numDevices)"
    )


def build_net(p: ExampleNetParameters) -> ProfilePool:
    return ProfilePool(
        devices=[
            {
                "name": f"nic-{i}",
                "allowMultipleAllocations": True,
                "attributes": {
                    "index": integer(i),
                    "uuid": string("net-{deviceUUID}"),
                    "model": string(NET_MODEL),
                    "driverVersion": version(DRIVER_VERSION),
                },
                "capacity": {
                    "vfs": copy.deepcopy(VFS),
                    "ingressBandwidth": copy.deepcopy(BANDWIDTH),
                    "egressBandwidth": copy.deepcopy(BANDWIDTH),
                },
            }
            for i in range(p.num_devices)
        ]
    )


EXAMPLE_NET = Profile(
    name="example-net",
    driver=NET_DRIVER,
    summary="the DRA example driver's NICs (net.example.com) with consumable VFs and ingress/egress bandwidth",
    source=SOURCE.format(files="internal/profiles/net/net.go"),
    parameters=ExampleNetParameters,
    build=build_net,
    device_classes=(_device_class(NET_DRIVER),),
    # demo/examples/net-consumable-capacity: "NICs: 1 (both pods share one NIC ...)"
    example={"numDevices": 1},
)

PROFILES: tuple[Profile, ...] = (EXAMPLE_GPU, EXAMPLE_CPU, EXAMPLE_NET)
