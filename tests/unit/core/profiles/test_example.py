"""The `example-gpu`, `example-cpu` and `example-net` profiles publish what the profiles of
kubernetes-sigs/dra-example-driver v0.4.0 publish (internal/profiles/{gpu,cpu,net}), with the
DeviceClass its chart installs for each driver."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dra_kwok.core.names import device_uuid, short_hash
from dra_kwok.core.profiles.base import Profile
from dra_kwok.core.profiles.example import EXAMPLE_CPU, EXAMPLE_GPU, EXAMPLE_NET
from dra_kwok.core.profiles.example import PROFILES as EXAMPLE_PROFILES
from dra_kwok.core.quantity import parse_quantity
from tests.unit.core.profiles import support

BASE = {"model": {"string": "LATEST-GPU-MODEL"}, "driverVersion": {"version": "1.0.0"}}


def config(profile: Profile, parameters: dict[str, Any]) -> dict[str, Any]:
    return support.mapping_config(profile, parameters)


def published(profile: Profile, parameters: dict[str, Any], node: str = "node-a") -> dict[str, list[Any]]:
    """What `node` gets from a mapping using the profile (validated and rendered): its devices and
    shared counters over all slices."""
    found = support.published(profile, parameters, node)
    return {"devices": found.devices, "counters": found.counters}


def devices(profile: Profile, parameters: dict[str, Any], node: str = "node-a") -> list[dict[str, Any]]:
    return support.published(profile, parameters, node).devices


def uuids(devs: list[dict[str, Any]]) -> list[str]:
    return [d["attributes"]["uuid"]["string"] for d in devs]


def issues_for(profile: Profile, parameters: dict[str, Any]) -> list[str]:
    return support.error_lines(profile, parameters)


@pytest.mark.parametrize("profile", EXAMPLE_PROFILES, ids=lambda p: p.name)
def test_defaults_and_example_parameters_pass_validation_and_render(profile: Profile) -> None:
    for parameters in ({}, profile.example):
        out = devices(profile, parameters)
        assert out and len({d["name"] for d in out}) == len(out)


# --- gpu ------------------------------------------------------------------------------------------
def test_a_gpu_has_the_example_drivers_attributes_and_capacity() -> None:
    out = devices(EXAMPLE_GPU, {})
    assert [d["name"] for d in out] == [f"gpu-{i}" for i in range(8)]  # --num-devices 8
    assert out[3] == {
        "name": "gpu-3",
        "attributes": {"index": {"int": 3}, **BASE, "uuid": {"string": "gpu-" + device_uuid("node-a", "gpu-3")}},
        "capacity": {"memory": {"value": "80Gi"}, "compute": {"value": "100"}},
        "allowMultipleAllocations": False,  # gpu.go sets it on every device, false unless enabled
    }


def test_gpu_uuids_are_unique_per_device_and_node_and_stable() -> None:
    a, b = devices(EXAMPLE_GPU, {}, "node-a"), devices(EXAMPLE_GPU, {}, "node-b")
    assert len(set(uuids(a)) | set(uuids(b))) == 16
    assert uuids(a) == uuids(devices(EXAMPLE_GPU, {}, "node-a"))
    for u in uuids(a):
        assert u.startswith("gpu-") and uuid.UUID(u.removeprefix("gpu-"))


def test_partitions_and_the_full_gpu_share_counters_that_add_up_to_the_gpu() -> None:
    """gpu.go with --gpu-partitions 4 (demo/examples/partitionable-devices): per GPU a counter
    set of 80Gi and 100 compute, 4 partitions of a quarter each and a full device of all of it."""
    out = published(EXAMPLE_GPU, EXAMPLE_GPU.example)  # 2 GPUs, 4 partitions
    names = [d["name"] for d in out["devices"]]
    assert names == [
        f"gpu-{i}-{p}" for i in (0, 1) for p in ("partition-0", "partition-1", "partition-2", "partition-3", "full")
    ]
    full_set = {"memory": {"value": "80Gi"}, "compute": {"value": "100"}}
    assert out["counters"] == [{"name": f"gpu-{i}-counters", "counters": full_set} for i in (0, 1)]
    by_name = {d["name"]: d for d in out["devices"]}
    part = by_name["gpu-1-partition-2"]
    gpu1_uuid = f"gpu-{short_hash('node-a')}-0000-4000-8000-000000000001"
    assert part == {
        "name": "gpu-1-partition-2",
        "attributes": {
            "index": {"int": 1},
            **BASE,
            "uuid": {"string": gpu1_uuid},
            "partition": {"int": 2},
            "partitionable": {"bool": True},
        },
        "capacity": {"memory": {"value": "20Gi"}, "compute": {"value": "25"}},
        "consumesCounters": [
            {"counterSet": "gpu-1-counters", "counters": {"memory": {"value": "20Gi"}, "compute": {"value": "25"}}}
        ],
        "allowMultipleAllocations": False,
    }
    full = by_name["gpu-1-full"]
    assert full["attributes"] == {
        "index": {"int": 1},
        **BASE,
        "uuid": {"string": gpu1_uuid},
        "partitionable": {"bool": True},
        "full": {"bool": True},
    }
    assert full["consumesCounters"] == [{"counterSet": "gpu-1-counters", "counters": full_set}]
    for i in (0, 1):
        parts = [d for d in out["devices"] if d["name"].startswith(f"gpu-{i}-partition-")]
        for counter in ("memory", "compute"):
            total = sum(parse_quantity(d["consumesCounters"][0]["counters"][counter]["value"]) for d in parts)
            assert total == parse_quantity(full_set[counter]["value"])
    # One GPU's devices share its uuid (gpu.go clones the GPU's attributes); GPUs and nodes differ.
    assert len(set(uuids([d for d in out["devices"] if d["name"].startswith("gpu-0-")]))) == 1
    other = devices(EXAMPLE_GPU, EXAMPLE_GPU.example, "node-b")
    assert len(set(uuids(out["devices"])) | set(uuids(other))) == 4
    assert all(uuid.UUID(u.removeprefix("gpu-")) for u in uuids(out["devices"]))


def test_uneven_partitions_divide_with_integer_division_as_the_driver_does() -> None:
    out = published(EXAMPLE_GPU, {"numDevices": 1, "gpuPartitions": 3})
    part = out["devices"][0]
    # resource.NewQuantity(80Gi/3, BinarySI) and 100/3: Go integer division
    assert part["capacity"] == {"memory": {"value": str(80 * 2**30 // 3)}, "compute": {"value": "33"}}


def test_allow_multiple_allocations_adds_the_drivers_request_policies() -> None:
    [one] = devices(EXAMPLE_GPU, {"numDevices": 1, "gpuAllowMultipleAllocations": True})
    assert one["allowMultipleAllocations"] is True
    assert one["capacity"] == {
        "memory": {
            "value": "80Gi",
            "requestPolicy": {"default": "80Gi", "validRange": {"min": "1Gi", "step": "1Gi", "max": "80Gi"}},
        },
        "compute": {
            "value": "100",
            "requestPolicy": {"default": "100", "validRange": {"min": "1", "step": "1", "max": "100"}},
        },
    }
    parts = devices(EXAMPLE_GPU, {"numDevices": 1, "gpuPartitions": 4, "gpuAllowMultipleAllocations": True})
    assert parts[0]["capacity"]["memory"]["requestPolicy"]["validRange"]["max"] == "20Gi"


def test_binding_conditions_go_on_every_device() -> None:
    for d in devices(EXAMPLE_GPU, {"numDevices": 1, "gpuPartitions": 2, "bindingConditions": True}):
        assert d["bindingConditions"] == ["BindingConditions"], d
        assert d["bindingFailureConditions"] == ["BindingFailureConditions"], d


# --- cpu ------------------------------------------------------------------------------------------
def test_cpu_numa_devices_share_consumable_cpu_capacity() -> None:
    out = devices(EXAMPLE_CPU, {})
    assert [d["name"] for d in out] == [f"numa-{i}" for i in range(8)]  # --cpu-numa-nodes 8
    assert out[5] == {
        "name": "numa-5",
        "allowMultipleAllocations": True,
        "attributes": {"numaNodeID": {"int": 5}},
        "capacity": {"cpu.example.com/cpu": {"value": "4"}},  # --cpus-per-numa-node 4
    }
    assert devices(EXAMPLE_CPU, EXAMPLE_CPU.example)[1]["capacity"] == {"cpu.example.com/cpu": {"value": "16"}}


# --- net ------------------------------------------------------------------------------------------
def test_a_nic_has_consumable_vfs_and_bandwidth() -> None:
    out = devices(EXAMPLE_NET, {})
    assert [d["name"] for d in out] == [f"nic-{i}" for i in range(8)]
    bandwidth = {
        "value": "100G",
        "requestPolicy": {"default": "1G", "validRange": {"min": "100M", "max": "100G", "step": "1M"}},
    }
    assert out[2] == {
        "name": "nic-2",
        "allowMultipleAllocations": True,
        "attributes": {
            "index": {"int": 2},
            "uuid": {"string": "net-" + device_uuid("node-a", "nic-2")},
            "model": {"string": "LATEST-NET-MODEL"},
            "driverVersion": {"version": "1.0.0"},
        },
        "capacity": {
            "vfs": {"value": "100", "requestPolicy": {"default": "1", "validValues": ["1"]}},
            "ingressBandwidth": bandwidth,
            "egressBandwidth": bandwidth,
        },
    }
    other = devices(EXAMPLE_NET, {}, "node-b")
    assert len(set(uuids(out)) | set(uuids(other))) == 16
    assert uuids(out) == uuids(devices(EXAMPLE_NET, {}))


# --- parameters and DeviceClasses -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("profile", "parameters", "field", "words"),
    [
        (EXAMPLE_GPU, {"numDevices": 0}, "numDevices", "greater than or equal to 1"),
        (EXAMPLE_GPU, {"numDevices": 9, "gpuPartitions": 2}, "gpuPartitions", "at most 8"),
        (EXAMPLE_GPU, {"gpuPartitions": 101}, "gpuPartitions", "less than or equal to 100"),
        (EXAMPLE_GPU, {"gpuPartitions": 3, "gpuAllowMultipleAllocations": True}, "gpuPartitions", "divisor of 80"),
        (
            EXAMPLE_GPU,
            {"numDevices": 1, "gpuPartitions": 80, "gpuAllowMultipleAllocations": True},
            "gpuPartitions",
            "at least 2Gi",
        ),
        (EXAMPLE_GPU, {"partitions": 2}, "partitions", "Extra inputs"),
        (EXAMPLE_CPU, {"numaNodes": 1025}, "numaNodes", "less than or equal to 1024"),
        (EXAMPLE_CPU, {"cpusPerNUMANode": 0}, "cpusPerNUMANode", "greater than or equal to 1"),
        (EXAMPLE_NET, {"numDevices": "many"}, "numDevices", "valid integer"),
    ],
)
def test_bad_parameters_name_their_field(profile: Profile, parameters: dict[str, Any], field: str, words: str) -> None:
    found = issues_for(profile, parameters)
    prefix = f"mappings[0].resourceSlice.profile.parameters.{field}: "
    assert any(f.startswith(prefix) and words in f for f in found), found


@pytest.mark.parametrize(
    ("profile", "driver"),
    [(EXAMPLE_GPU, "gpu.example.com"), (EXAMPLE_CPU, "cpu.example.com"), (EXAMPLE_NET, "net.example.com")],
)
def test_each_driver_has_the_charts_device_class(profile: Profile, driver: str) -> None:
    """templates/deviceclass.yaml: named after the driver, `device.driver == '<driver>'`, no
    extendedResourceName (values.yaml deviceClass.extendedResourceName defaults to "")."""
    assert profile.driver == driver
    assert [c.manifest() for c in profile.device_classes] == [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": driver},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{driver}'"}}]},
        }
    ]
    assert "bab2dce4b045e729565c9a3b85554738247cda30" in profile.source
