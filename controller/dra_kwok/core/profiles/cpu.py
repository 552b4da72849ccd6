"""The CPU DRA driver (kubernetes-sigs/dra-driver-cpu, driver `dra.cpu`): a node's CPUs, either
one device per CPU (`individual`) or one device per NUMA node, socket or machine whose CPUs are
a consumable capacity `dra.cpu/cpu` (`grouped`, the driver's default, grouped by NUMA node).

Followed: kubernetes-sigs/dra-driver-cpu main at de98098690f25e59d781c1659b5c3e0b0a210c2a
(v0.2.0-229; newer than v0.2.0, which lacks `resource.kubernetes.io/numaNode` and
`dra.cpu/numaNodeID` on NUMA groups):

- pkg/device/builder.go: device names (`cpudev%03d`, `cpudevnuma%03d`, `cpudevsocket%03d`,
  `cpudevmachine`), the order of individual devices (a CPU, then its SMT sibling, by lowest CPU
  id), the attributes of each mode and group, the `dra.cpu/cpu` capacity of groups (no request
  policy), `allowMultipleAllocations: true` on groups, reserved CPUs left out, empty groups skipped;
- pkg/device/attributes.go: attribute names, modes (`grouped`, `individual`), `groupBy` values
  (`numanode`, `socket`, `machine`), the legacy `dra.net/numaNode` and `dra.cpu/numaNodeID`;
- pkg/cpuinfo/cpuinfo.go: `coreType` strings (`standard`, `p-core`, `e-core`), `coreID` unique
  within a socket, the L3 id from sysfs cache/index3/id, 2-way SMT only (populateCpuSiblings),
  `smtEnabled` from smt/control;
- cmd/dracpu/app.go: the driver name `dra.cpu`;
- deployment/helm/dra-driver-cpu/templates/deviceclass.yaml: DeviceClass `dra.cpu`;
- docs/user/configuration.md (`cpuDeviceMode`, `groupBy`, `reservedCPUs` and their defaults) and
  docs/user/device-attributes.md (the sample ResourceSlices; the default parameters reproduce the
  grouped one: one socket, two NUMA nodes of 64 CPUs, SMT on).

The driver reads the topology from sysfs; here it is regular and given by parameters. CPU ids
follow the usual x86 Linux enumeration, as in the topologies of the driver's tests
(pkg/cpumanager/test_topology.go, topoDualSocketMultiNumaPerSocketHT): first threads of every
core, socket by socket, then the second threads in the same order (sibling of cpu c is
c + sockets*coresPerSocket). NUMA nodes and L3 caches split each socket's cores evenly, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from ..api_limits import MAX_DEVICES_PER_POOL
from .base import Body, DeviceClassSpec, Parameters, Profile, ProfilePool, boolean, integer, quantity, string

DRIVER = "dra.cpu"  # cmd/dracpu/app.go driverName
CAPACITY = "dra.cpu/cpu"  # builder.go CPUResourceQualifiedName
SOURCE = (
    "kubernetes-sigs/dra-driver-cpu main@de98098690f25e59d781c1659b5c3e0b0a210c2a (v0.2.0-229): "
    "pkg/device/builder.go, pkg/device/attributes.go, pkg/cpuinfo/cpuinfo.go, cmd/dracpu/app.go, "
    "deployment/helm/dra-driver-cpu/templates/deviceclass.yaml, docs/user/configuration.md, "
    "docs/user/device-attributes.md"
)

# pkg/device/attributes.go
SOCKET_ID = "dra.cpu/socketID"
SMT_ENABLED = "dra.cpu/smtEnabled"
CACHE_L3_ID = "dra.cpu/cacheL3ID"
CORE_TYPE = "dra.cpu/coreType"
CORE_ID = "dra.cpu/coreID"
CPU_ID = "dra.cpu/cpuID"
NUM_CPUS = "dra.cpu/numCPUs"
# k8s.io/dynamic-resource-allocation/deviceattribute StandardDeviceAttributeNUMANode
NUMA_NODE = "resource.kubernetes.io/numaNode"
# addCompatibilityAttributes: deprecated, still published on individual CPUs and NUMA groups
LEGACY_NUMA_NODE = ("dra.net/numaNode", "dra.cpu/numaNodeID")


def parse_cpuset(text: str) -> list[int]:
    """A Linux cpuset list (`0-3,8,10-11`, as k8s.io/utils/cpuset parses it), sorted, each CPU once.
    Raises ValueError with the part at fault."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ValueError(f'{part!r} is not a CPU number or range (write e.g. "0-1" or "0,64")') from None
        if first < 0 or last < first:
            raise ValueError(f"{part!r} is not a valid range (first <= last, both >= 0)")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


class DraCpuParameters(Parameters):
    sockets: int = Field(default=1, ge=1, le=8, description="CPU sockets (physical packages)")
    cores_per_socket: int = Field(default=64, ge=1, le=512, description="physical cores in each socket")
    threads_per_core: Literal[1, 2] = Field(
        default=2, description="hardware threads per core: 2 is SMT on (the driver handles 2-way SMT only)"
    )
    numa_nodes_per_socket: int = Field(
        default=2, ge=1, le=8, description="NUMA nodes each socket's cores are split into (SNC/NPS)"
    )
    l3_caches_per_socket: int = Field(
        default=1, ge=1, le=64, description="L3 caches each socket's cores are split into (dra.cpu/cacheL3ID)"
    )
    cpu_device_mode: Literal["grouped", "individual"] = Field(
        default="grouped", description="the driver's cpuDeviceMode: grouped (consumable capacity) or one device per CPU"
    )
    group_by: Literal["numanode", "socket", "machine"] = Field(
        default="numanode", description="the driver's groupBy, in grouped mode"
    )
    reserved_cpus: str = Field(
        default="",
        alias="reservedCPUs",
        description='the driver\'s reservedCPUs: a cpuset ("0-1") left out of the slices',
    )

    @property
    def cores(self) -> int:
        return self.sockets * self.cores_per_socket

    @property
    def cpus(self) -> int:
        return self.cores * self.threads_per_core

    @field_validator("numa_nodes_per_socket", "l3_caches_per_socket")
    @classmethod
    def _divides_cores(cls, value: int, info: ValidationInfo) -> int:
        cores = info.data.get("cores_per_socket")
        if cores is not None and cores % value:
            raise ValueError(f"must divide coresPerSocket ({cores}) evenly")
        return value

    @field_validator("cpu_device_mode")
    @classmethod
    def _fits_pool(cls, value: str, info: ValidationInfo) -> str:
        d = info.data
        if value == "individual" and all(k in d for k in ("sockets", "cores_per_socket", "threads_per_core")):
            cpus = d["sockets"] * d["cores_per_socket"] * d["threads_per_core"]
            if cpus > MAX_DEVICES_PER_POOL:
                raise ValueError(
                    f"individual mode publishes one device per CPU: {cpus} CPUs are more than the "
                    f"{MAX_DEVICES_PER_POOL} devices of a pool; use grouped"
                )
        return value

    @field_validator("reserved_cpus")
    @classmethod
    def _reserved(cls, value: str, info: ValidationInfo) -> str:
        cpus = parse_cpuset(value)
        d = info.data
        if all(k in d for k in ("sockets", "cores_per_socket", "threads_per_core")):
            total = d["sockets"] * d["cores_per_socket"] * d["threads_per_core"]
            beyond = [c for c in cpus if c >= total]
            if beyond:
                raise ValueError(f"CPU {beyond[0]} does not exist (the node has CPUs 0-{total - 1})")
            if len(cpus) == total:
                raise ValueError("reserves every CPU: nothing would be published")
        return value


@dataclass(frozen=True, slots=True)
class Cpu:
    """One logical CPU, as pkg/cpuinfo.CPUInfo describes it (sibling -1: no SMT sibling)."""

    cpu_id: int
    core_id: int
    socket: int
    numa: int
    l3: int
    sibling: int


def cpu_info(p: DraCpuParameters, cpu_id: int) -> Cpu:
    phys = cpu_id % p.cores  # the first threads come first, then their siblings in the same order
    socket, core = divmod(phys, p.cores_per_socket)
    return Cpu(
        cpu_id=cpu_id,
        core_id=core,
        socket=socket,
        numa=socket * p.numa_nodes_per_socket + core // (p.cores_per_socket // p.numa_nodes_per_socket),
        l3=socket * p.l3_caches_per_socket + core // (p.cores_per_socket // p.l3_caches_per_socket),
        sibling=(cpu_id + p.cores) % p.cpus if p.threads_per_core == 2 else -1,
    )


def topology(p: DraCpuParameters) -> list[Cpu]:
    return [cpu_info(p, c) for c in range(p.cpus)]


def _numa_attributes(numa: int) -> Body:
    return {NUMA_NODE: integer(numa), **{name: integer(numa) for name in LEGACY_NUMA_NODE}}


def individual_devices(p: DraCpuParameters) -> list[Body]:
    """builder.go cpuDeviceInfos + createCPUDeviceSlices: each available CPU followed by its
    sibling (unless reserved), groups ordered by their first CPU id, numbered cpudev000, ..."""
    cpus = topology(p)
    reserved = set(parse_cpuset(p.reserved_cpus))
    done: set[int] = set()
    groups: list[list[Cpu]] = []
    for cpu in cpus:
        if cpu.cpu_id in reserved or cpu.cpu_id in done:
            continue
        group = [cpu]
        if cpu.sibling != -1 and cpu.sibling not in reserved:
            group.append(cpus[cpu.sibling])
        done.update(c.cpu_id for c in group)
        groups.append(group)
    groups.sort(key=lambda g: g[0].cpu_id)
    smt = p.threads_per_core == 2
    return [
        {
            "name": f"cpudev{i:03d}",
            "attributes": {
                NUMA_NODE: integer(cpu.numa),
                SOCKET_ID: integer(cpu.socket),
                SMT_ENABLED: boolean(smt),
                CACHE_L3_ID: integer(cpu.l3),
                # cpuinfo.go: "standard" unless sysfs lists hybrid e-cores (devices/cpu_atom)
                CORE_TYPE: string("standard"),
                CORE_ID: integer(cpu.core_id),
                CPU_ID: integer(cpu.cpu_id),
                **{name: integer(cpu.numa) for name in LEGACY_NUMA_NODE},
            },
        }
        for i, cpu in enumerate(c for g in groups for c in g)
    ]


def grouped_devices(p: DraCpuParameters) -> list[Body]:
    """builder.go groupedCPUDeviceInfos + createGroupedCPUDeviceSlices."""
    reserved = set(parse_cpuset(p.reserved_cpus))
    free = [c for c in topology(p) if c.cpu_id not in reserved]
    smt = p.threads_per_core == 2

    def device(name: str, n: int, attributes: Body) -> Body:
        return {
            "name": name,
            "attributes": attributes,
            "capacity": {CAPACITY: quantity(str(n))},
            "allowMultipleAllocations": True,
        }

    if p.group_by == "machine":
        return [device("cpudevmachine", len(free), {SMT_ENABLED: boolean(smt), NUM_CPUS: integer(len(free))})]
    out = []
    if p.group_by == "socket":
        for socket in range(p.sockets):
            n = sum(1 for c in free if c.socket == socket)
            if n:
                attrs = {SOCKET_ID: integer(socket), NUM_CPUS: integer(n), SMT_ENABLED: boolean(smt)}
                out.append(device(f"cpudevsocket{socket:03d}", n, attrs))
        return out
    for numa in range(p.sockets * p.numa_nodes_per_socket):
        n = sum(1 for c in free if c.numa == numa)
        if n:
            attrs = {
                NUMA_NODE: integer(numa),
                SOCKET_ID: integer(numa // p.numa_nodes_per_socket),
                SMT_ENABLED: boolean(smt),
                NUM_CPUS: integer(n),
                **{name: integer(numa) for name in LEGACY_NUMA_NODE},
            }
            out.append(device(f"cpudevnuma{numa:03d}", n, attrs))
    return out


def build(p: DraCpuParameters) -> ProfilePool:
    return ProfilePool(devices=individual_devices(p) if p.cpu_device_mode == "individual" else grouped_devices(p))


DRA_CPU = Profile(
    name="dra-cpu",
    driver=DRIVER,
    summary="CPUs of the CPU DRA driver: per-CPU devices, or NUMA/socket/machine groups with consumable dra.cpu/cpu",
    source=SOURCE,
    parameters=DraCpuParameters,
    build=build,
    device_classes=(DeviceClassSpec("dra.cpu", 'device.driver == "dra.cpu"'),),
    example={
        "sockets": 2,
        "coresPerSocket": 8,
        "threadsPerCore": 2,
        "numaNodesPerSocket": 1,
        "cpuDeviceMode": "individual",
        "reservedCPUs": "0-1",
    },
)

PROFILES: tuple[Profile, ...] = (DRA_CPU,)
