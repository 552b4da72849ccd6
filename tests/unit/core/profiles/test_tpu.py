"""The google-tpu profile publishes what kubernetes-sigs/dra-driver-google-tpu publishes (see
profiles/tpu.py for the files and commit): one device per chip, named after its device file, with
the driver's attributes, and the chart's DeviceClass."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.profiles.tpu import GOOGLE_TPU
from tests.unit.core.profiles import support


def load(params: dict[str, Any]) -> tuple[Any, list[Issue]]:
    return support.load(GOOGLE_TPU, params)


def devices(params: dict[str, Any], node: str = "node-a") -> list[dict[str, Any]]:
    return support.published(GOOGLE_TPU, params, node).devices


@pytest.mark.parametrize("params", [{}, GOOGLE_TPU.example], ids=["defaults", "example"])
def test_defaults_and_the_example_validate_and_render(params: dict[str, Any]) -> None:
    devs = devices(params)
    assert devs and len({d["name"] for d in devs}) == len(devs)


def test_a_chip_has_the_real_drivers_attributes() -> None:
    devs = devices({})
    # v6e chips are vfio devices, named by IOMMU group (README.md: name "0", index 0).
    assert [d["name"] for d in devs] == [str(i) for i in range(8)]
    chip = devs[3]
    attrs = dict(chip["attributes"])
    uuid = attrs.pop("uuid")["string"]
    assert uuid.startswith("tpu-") and len(uuid) == len("tpu-25541d5c-7c31-8412-d7cb-c8ebff2fa5c9")
    # README.md's attribute table: tpu-v6e-slice, v6e, 8 chips, 2x4, Google.
    assert attrs == {
        "index": {"int": 3},
        "tpuGen": {"string": "v6e"},
        "brand": {"string": "Google"},
        "accelerator": {"string": "tpu-v6e-slice"},
        "chipCount": {"int": 8},
        "topology": {"string": "2x4"},
    }
    assert "capacity" not in chip


@pytest.mark.parametrize(
    ("accelerator", "generation", "names"),
    [
        ("tpu-v3-device", "v3", "accel"),
        ("tpu-v4-podslice", "v4", "accel"),
        ("tpu-v4-lite-device", "v4lite", "accel"),
        ("tpu-v5-lite-device", "v5lite", "vfio"),
        ("tpu-v5-lite-podslice", "v5litepod", "vfio"),
        ("tpu-v5p-slice", "v5p", "vfio"),
        ("tpu-v6e-slice", "v6e", "vfio"),
    ],
)
def test_the_accelerator_sets_the_generation_and_the_device_files(
    accelerator: str, generation: str, names: str
) -> None:
    devs = devices({"accelerator": accelerator, "chipCount": 4})
    assert {d["attributes"]["tpuGen"]["string"] for d in devs} == {generation}
    expected = [f"accel{i}" for i in range(4)] if names == "accel" else ["0", "1", "2", "3"]
    assert [d["name"] for d in devs] == expected


@pytest.mark.parametrize(("chips", "topology"), [(1, "1x1"), (2, "1x2"), (4, "2x2"), (8, "2x4")])
def test_the_topology_defaults_to_the_single_host_one(chips: int, topology: str) -> None:
    devs = devices({"chipCount": chips})
    assert len(devs) == chips
    assert {d["attributes"]["topology"]["string"] for d in devs} == {topology}
    assert {d["attributes"]["chipCount"]["int"] for d in devs} == {chips}


def test_uuids_are_per_chip_and_node_and_stable() -> None:
    a, b = devices({}), devices({}, node="node-b")
    uuids = [d["attributes"]["uuid"]["string"] for d in a + b]
    assert len(set(uuids)) == 16 and all(u.startswith("tpu-") for u in uuids)
    assert [d["attributes"]["uuid"] for d in devices({})] == [d["attributes"]["uuid"] for d in a]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"chipCount": 3}, "chipCount", "Input should be"),
        ({"accelerator": "tpu-v7x"}, "accelerator", "Input should be"),
        ({"accelerator": "tpu-v4-device"}, "accelerator", "Input should be"),
        ({"topology": "2x4x"}, "topology", "must be 2 or 3 dimensions"),
        ({"topology": "8"}, "topology", "must be 2 or 3 dimensions"),
        ({"chipCount": 4, "topology": "3x3"}, "topology", "holds 9 chips"),
        ({"uuid": "x"}, "uuid", ""),
    ],
)
def test_bad_parameters_name_the_field(params: dict[str, Any], field: str, message: str) -> None:
    cfg, issues = load(params)
    assert cfg is None
    path = f"mappings[0].resourceSlice.profile.parameters.{field}"
    paths = [format_path(i.path) for i in issues]
    assert path in paths, [str(i) for i in issues]
    assert message in issues[paths.index(path)].message


def test_the_device_class_is_the_charts() -> None:
    assert [c.manifest() for c in GOOGLE_TPU.device_classes] == [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": "tpu.google.com"},
            "spec": {"selectors": [{"cel": {"expression": 'device.driver == "tpu.google.com"'}}]},
        }
    ]
