"""The intel-gpu and intel-gaudi profiles publish what intel/intel-resource-drivers-for-kubernetes
publishes (see profiles/intel.py for the files and commit): the device names from the PCI address
and id, the attribute names and types of node_state.go, and the charts' DeviceClasses."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.profiles import Profile
from dra_kwok.core.profiles.intel import INTEL_GAUDI, INTEL_GPU
from tests.unit.core.profiles import support


def load(profile: Profile, params: dict[str, Any]) -> tuple[Any, list[Issue]]:
    return support.load(profile, params)


def devices(profile: Profile, params: dict[str, Any], node: str = "node-a") -> list[dict[str, Any]]:
    return support.published(profile, params, node).devices


@pytest.mark.parametrize(
    ("profile", "params"),
    [(INTEL_GPU, {}), (INTEL_GPU, INTEL_GPU.example), (INTEL_GAUDI, {}), (INTEL_GAUDI, INTEL_GAUDI.example)],
    ids=["gpu-defaults", "gpu-example", "gaudi-defaults", "gaudi-example"],
)
def test_defaults_and_the_examples_validate_and_render(profile: Profile, params: dict[str, Any]) -> None:
    devs = devices(profile, params)
    assert devs and len({d["name"] for d in devs}) == len(devs)


# --- GPU ------------------------------------------------------------------------------------------
def test_a_gpu_has_the_real_drivers_attributes_and_capacities() -> None:
    devs = devices(INTEL_GPU, {})
    assert [d["name"] for d in devs] == ["0000-03-00-0-0x56c0", "0000-04-00-0-0x56c0"]
    gpu = devs[1]
    assert gpu["attributes"] == {
        "model": {"string": "Flex 170"},
        "family": {"string": "Data Center Flex"},
        "driver": {"string": "i915"},
        "sriov": {"bool": True},
        "type": {"string": "gpu"},
        "pciId": {"string": "0x56c0"},
        "pciAddress": {"string": "0000:04:00.0"},
        "health": {"string": "Healthy"},
        "pciRoot": {"string": "00"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
        "resource.kubernetes.io/pciBusID": {"string": "0000:04:00.0"},
    }
    assert gpu["capacity"] == {"memory": {"value": "16256Mi"}, "millicores": {"value": "1k"}}


@pytest.mark.parametrize(
    ("pci_id", "model", "family", "driver", "memory"),
    [
        ("0x56c0", "Flex 170", "Data Center Flex", "i915", "16256Mi"),
        ("0x0bda", "Max 1100", "Data Center Max", "i915", "49136Mi"),
        ("0xe211", "B60", "Arc Pro B-Series", "xe", "24480Mi"),
    ],
)
def test_the_pci_id_sets_model_family_kernel_driver_and_memory(
    pci_id: str, model: str, family: str, driver: str, memory: str
) -> None:
    [gpu] = devices(INTEL_GPU, {"count": 1, "pciId": pci_id, "sriov": False})
    assert gpu["name"] == f"0000-03-00-0-{pci_id}"
    attrs = gpu["attributes"]
    assert (attrs["model"], attrs["family"], attrs["driver"]) == (
        {"string": model},
        {"string": family},
        {"string": driver},
    )
    assert attrs["pciId"] == {"string": pci_id} and attrs["sriov"] == {"bool": False}
    assert gpu["capacity"]["memory"] == {"value": memory}


# --- Gaudi ----------------------------------------------------------------------------------------
def test_a_gaudi_has_the_real_drivers_attributes_and_no_capacity() -> None:
    devs = devices(INTEL_GAUDI, {})
    assert len(devs) == 8
    # doc/gaudi/USAGE.md's example slice: 0000-a0-00-0-0x1020 and 0000-b0-00-0-0x1020.
    assert "0000-a0-00-0-0x1020" in [d["name"] for d in devs] and "0000-b0-00-0-0x1020" in [d["name"] for d in devs]
    first = devs[0]
    assert first["name"] == "0000-80-00-0-0x1020"
    assert first["attributes"] == {
        "model": {"string": "Gaudi2"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:01"},
        "serial": {"string": "000001"},
        "healthy": {"bool": True},
        "pciRoot": {"string": "01"},
    }
    assert "capacity" not in first
    [gaudi3] = devices(INTEL_GAUDI, {"count": 1, "pciId": "0x1060"})
    assert gaudi3["name"] == "0000-80-00-0-0x1060" and gaudi3["attributes"]["model"] == {"string": "Gaudi3"}


def test_serials_and_pcie_roots_differ_per_device_and_every_render_is_the_same() -> None:
    first = devices(INTEL_GAUDI, {})
    assert len({d["attributes"]["serial"]["string"] for d in first}) == 8
    assert len({d["attributes"]["resource.kubernetes.io/pcieRoot"]["string"] for d in first}) == 8
    assert devices(INTEL_GAUDI, {}) == first
    # Neither driver publishes a UUID: nothing depends on the node.
    assert devices(INTEL_GAUDI, {}, node="node-b") == first
    assert devices(INTEL_GPU, {}, node="node-b") == devices(INTEL_GPU, {})


# --- parameters and DeviceClasses ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("profile", "params", "field", "message"),
    [
        (INTEL_GPU, {"count": 0}, "count", "greater than or equal to 1"),
        (INTEL_GPU, {"count": 17}, "count", "less than or equal to 16"),
        (INTEL_GPU, {"pciId": "0x56c1"}, "pciId", "Input should be"),
        (INTEL_GPU, {"sriov": "maybe"}, "sriov", "boolean"),
        (INTEL_GPU, {"memory": "16Gi"}, "memory", ""),
        (INTEL_GAUDI, {"count": 9}, "count", "less than or equal to 8"),
        (INTEL_GAUDI, {"pciId": "0x1000"}, "pciId", "Input should be"),
    ],
)
def test_bad_parameters_name_the_field(profile: Profile, params: dict[str, Any], field: str, message: str) -> None:
    cfg, issues = load(profile, params)
    assert cfg is None
    path = f"mappings[0].resourceSlice.profile.parameters.{field}"
    paths = [format_path(i.path) for i in issues]
    assert path in paths, [str(i) for i in issues]
    assert message in issues[paths.index(path)].message


def test_the_device_classes_are_the_charts() -> None:
    def cls(name: str, driver: str) -> dict[str, Any]:
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
        }

    # The chart's defaults: extendedResourceName only with enableDRAExtendedResources (off), and
    # gpu-vfio.intel.com's second selector only with manageBinding off (on).
    assert [c.manifest() for c in INTEL_GPU.device_classes] == [
        cls("gpu.intel.com", "gpu.intel.com"),
        cls("gpu-vfio.intel.com", "gpu.intel.com"),
    ]
    assert [c.manifest() for c in INTEL_GAUDI.device_classes] == [cls("gaudi.intel.com", "gaudi.intel.com")]
