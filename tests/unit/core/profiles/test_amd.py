"""The amd-gpu profile publishes what ROCm/k8s-gpu-dra-driver publishes (see profiles/amd.py for the
files and commit): whole MI300X GPUs in SPX mode, one device per partition otherwise, with the
driver's attribute names, types and capacities, and its chart's DeviceClass."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.profiles.amd import AMD_GPU
from dra_kwok.core.quantity import parse_quantity
from tests.unit.core.profiles import support


def load(params: dict[str, Any]) -> tuple[Any, list[Issue]]:
    return support.load(AMD_GPU, params)


def devices(params: dict[str, Any], node: str = "node-a") -> list[dict[str, Any]]:
    return support.published(AMD_GPU, params, node).devices


@pytest.mark.parametrize("params", [{}, AMD_GPU.example], ids=["defaults", "example"])
def test_defaults_and_the_example_validate_and_render(params: dict[str, Any]) -> None:
    devs = devices(params)
    assert devs and len({d["name"] for d in devs}) == len(devs)


def test_a_whole_gpu_has_the_real_drivers_attributes_and_capacities() -> None:
    devs = devices({})
    assert [d["name"] for d in devs] == [f"gpu-{8 * i}-{128 + 8 * i}" for i in range(8)]
    gpu = devs[5]  # docs/demo.md shows gpu-40-168
    assert gpu["name"] == "gpu-40-168"
    attrs = dict(gpu["attributes"])  # a copy: rendered contents are shared between renders
    device_id = attrs.pop("deviceID")
    assert device_id.keys() == {"string"} and device_id["string"].isdigit()
    assert attrs == {
        "type": {"string": "amdgpu"},
        "pciAddr": {"string": "0003:00:07.0"},
        "cardIndex": {"int": 40},
        "renderIndex": {"int": 168},
        "family": {"string": "AI"},
        "productName": {"string": "AMD_Instinct_MI300X_OAM"},
        "driverVersion": {"version": "6.12.12"},
        "driverSrcVersion": {"string": "7AA72EC2C8F513519BE86FD"},
        "partitionProfile": {"string": "spx_nps1"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0003:00"},
    }
    assert gpu["capacity"] == {
        "memory": {"value": "196592Mi"},
        "computeUnits": {"value": "304"},
        "simdUnits": {"value": "1216"},
    }


def test_a_partition_names_its_parent_and_no_whole_gpu_is_published() -> None:
    devs = devices({"count": 2, "partitionProfile": "cpx_nps4"})
    assert len(devs) == 16
    assert {d["attributes"]["type"]["string"] for d in devs} == {"amdgpu-partition"}
    part = devs[9]  # GPU 1's second partition
    assert part["name"] == "gpu-9-137"
    attrs = part["attributes"]
    assert set(attrs) == {
        "type",
        "parentPciAddr",
        "cardIndex",
        "renderIndex",
        "parentDeviceID",
        "family",
        "productName",
        "driverVersion",
        "driverSrcVersion",
        "partitionProfile",
        "resource.kubernetes.io/pcieRoot",
    }
    assert attrs["parentPciAddr"] == {"string": "0003:00:03.0"}
    assert (attrs["cardIndex"], attrs["renderIndex"]) == ({"int": 9}, {"int": 137})
    assert attrs["partitionProfile"] == {"string": "cpx_nps4"}
    assert part["capacity"] == {
        "memory": {"value": "24574Mi"},
        "computeUnits": {"value": "38"},
        "simdUnits": {"value": "152"},
    }
    # parentDeviceID is the same for a GPU's partitions and differs between GPUs.
    parents = [d["attributes"]["parentDeviceID"]["string"] for d in devs]
    assert len(set(parents[:8])) == 1 and len(set(parents[8:])) == 1 and parents[0] != parents[8]


@pytest.mark.parametrize(("mode", "parts"), [("dpx_nps1", 2), ("qpx_nps1", 4), ("cpx_nps1", 8), ("cpx_nps4", 8)])
def test_a_gpus_partitions_add_up_to_the_whole_gpu(mode: str, parts: int) -> None:
    [whole] = devices({"count": 1})
    partitions = devices({"count": 1, "partitionProfile": mode})
    assert len(partitions) == parts
    for name in ("memory", "computeUnits", "simdUnits"):
        total = sum(parse_quantity(p["capacity"][name]["value"]) for p in partitions)
        assert total == parse_quantity(whole["capacity"][name]["value"]), name


def test_device_ids_differ_per_gpu_and_every_render_is_the_same() -> None:
    first = devices({})
    ids = [d["attributes"]["deviceID"]["string"] for d in first]
    assert len(set(ids)) == 8
    assert devices({}) == first
    # No attribute depends on the node (the real driver publishes no per-node UUID either).
    assert devices({}, node="node-b") == first


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"count": 0}, "count", "greater than or equal to 1"),
        ({"count": 9}, "count", "less than or equal to 8"),
        ({"partitionProfile": "spx_nps4"}, "partitionProfile", "Input should be"),
        ({"partitionProfile": "SPX"}, "partitionProfile", "Input should be"),
        ({"model": "MI250X"}, "model", ""),
    ],
)
def test_bad_parameters_name_the_field(params: dict[str, Any], field: str, message: str) -> None:
    cfg, issues = load(params)
    assert cfg is None
    paths = [format_path(i.path) for i in issues]
    assert f"mappings[0].resourceSlice.profile.parameters.{field}" in paths, [str(i) for i in issues]
    assert message in issues[paths.index(f"mappings[0].resourceSlice.profile.parameters.{field}")].message


def test_the_device_class_is_the_charts() -> None:
    assert [c.manifest() for c in AMD_GPU.device_classes] == [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": "gpu.amd.com"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.amd.com'"}}]},
        }
    ]
