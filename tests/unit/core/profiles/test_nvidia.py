"""The NVIDIA profiles publish what NVIDIA's DRA driver for GPUs publishes (`gpu.nvidia.com`,
kubernetes-sigs/dra-driver-nvidia-gpu@9593204): full GPUs `gpu-<minor>` with the attributes of
deviceinfo.go, and DynamicMIG's MIG devices of an A100-40GB with one counter set per GPU
(mig.go, partitions.go); every device validates and renders like a hand-written template."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dra_kwok.core import versions
from dra_kwok.core.issues import format_path
from dra_kwok.core.profiles import nvidia
from tests.unit.core.profiles import support

UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
A100_MIG_DEVICES = [  # one GPU, sorted by name as driver.go publishes them
    "gpu-0-mig-1g10gb-15-0",
    "gpu-0-mig-1g10gb-15-2",
    "gpu-0-mig-1g10gb-15-4",
    "gpu-0-mig-1g10gb-15-6",
    *(f"gpu-0-mig-1g5gb-19-{i}" for i in range(7)),
    *(f"gpu-0-mig-1g5gb-me-20-{i}" for i in range(7)),
    "gpu-0-mig-2g10gb-14-0",
    "gpu-0-mig-2g10gb-14-2",
    "gpu-0-mig-2g10gb-14-4",
    "gpu-0-mig-3g20gb-9-0",
    "gpu-0-mig-3g20gb-9-4",
    "gpu-0-mig-4g20gb-5-0",
    "gpu-0-mig-7g40gb-0-0",
]


def config(name: str, parameters: dict[str, Any], target: versions.Target = versions.DEFAULT_TARGET) -> Any:
    return support.load(name, parameters, target)


def rendered(name: str, parameters: dict[str, Any], node: str = "node-a") -> tuple[list[Any], list[Any]]:
    """The devices and counter sets published on `node`, across its slices."""
    found = support.published(name, parameters, node)
    return found.devices, found.counters


def by_name(devices: list[Any]) -> dict[str, Any]:
    return {d["name"]: d for d in devices}


@pytest.mark.parametrize("profile", nvidia.PROFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("which", ["defaults", "example"])
def test_default_and_example_parameters_validate_and_render(profile: Any, which: str) -> None:
    params = {} if which == "defaults" else profile.example
    devices, _ = rendered(profile.name, params)
    count = profile.parameters.model_validate(params).count
    gpus = {d["name"].split("-mig-")[0] for d in devices}
    assert gpus == {f"gpu-{i}" for i in range(count)}
    assert profile.driver == "gpu.nvidia.com" and profile.source.startswith(nvidia.REPO)


def test_a_full_gpu_has_the_attributes_and_capacity_of_deviceinfo_go() -> None:
    devices, counters = rendered("nvidia-gpu", {})
    assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(8)] and counters == []
    gpu = devices[0]
    uuid = gpu["attributes"].pop("uuid")["string"]
    assert UUID.match(uuid)
    assert gpu == {
        "name": "gpu-0",
        "attributes": {
            "type": {"string": "gpu"},
            "productName": {"string": "NVIDIA A100-SXM4-40GB"},
            "brand": {"string": "Nvidia"},
            "architecture": {"string": "Ampere"},
            "cudaComputeCapability": {"version": "8.0.0"},
            "driverVersion": {"version": "550.163.1"},  # the mock's 550.163.01 through semver
            "cudaDriverVersion": {"version": "12.4.0"},
            "resource.kubernetes.io/pciBusID": {"string": "0000:07:00.0"},
            "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
            "resource.kubernetes.io/numaNode": {"int": 0},
        },
        "capacity": {"memory": {"value": "40Gi"}},
    }


def test_each_product_has_its_mocks_name_memory_architecture_and_topology() -> None:
    devices, _ = rendered("nvidia-gpu", {"product": "h100", "count": 8, "driverVersion": "580.126.20"})
    gpu5 = by_name(devices)["gpu-5"]["attributes"]
    assert gpu5["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert gpu5["architecture"] == {"string": "Hopper"} and gpu5["cudaComputeCapability"] == {"version": "9.0.0"}
    assert gpu5["driverVersion"] == {"version": "580.126.20"}
    assert gpu5["resource.kubernetes.io/pciBusID"] == {"string": "0000:8b:00.0"}  # lower-cased like go-nvlib
    assert gpu5["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:80"}
    assert gpu5["resource.kubernetes.io/numaNode"] == {"int": 1}
    assert by_name(devices)["gpu-5"]["capacity"] == {"memory": {"value": "80Gi"}}
    expected = {
        "a100": ("NVIDIA A100-SXM4-40GB", "40Gi", "Ampere"),
        "h100": ("NVIDIA H100 80GB HBM3", "80Gi", "Hopper"),
        "b200": ("NVIDIA B200", "192Gi", "Blackwell"),
        "gb200": ("NVIDIA GB200 NVL", "192Gi", "Blackwell"),
        "l40s": ("NVIDIA L40S", "48Gi", "Ada Lovelace"),
        "t4": ("NVIDIA T4", "16Gi", "Turing"),
    }
    for product, (name, memory, arch) in expected.items():
        [gpu] = rendered("nvidia-gpu", {"product": product, "count": 1})[0]
        attrs = gpu["attributes"]
        got = (attrs["productName"]["string"], gpu["capacity"]["memory"]["value"], attrs["architecture"]["string"])
        assert got == (name, memory, arch)


def test_uuids_are_unique_per_gpu_and_node_and_stable() -> None:
    def uuids(node: str) -> list[str]:
        return [d["attributes"]["uuid"]["string"] for d in rendered("nvidia-gpu", {}, node)[0]]

    a, b = uuids("node-a"), uuids("node-b")
    assert len(set(a + b)) == 16 and all(UUID.match(u) for u in a + b)
    assert uuids("node-a") == a


def test_mig_devices_are_every_profile_at_every_placement_named_as_mig_go_names_them() -> None:
    devices, counters = rendered("nvidia-mig", {"count": 2})
    names = [d["name"] for d in devices]
    assert names == A100_MIG_DEVICES + [n.replace("gpu-0-", "gpu-1-", 1) for n in A100_MIG_DEVICES]
    assert [c["name"] for c in counters] == ["gpu-0-counter-set", "gpu-1-counter-set"]
    # Ampere with MIG mode enabled: the full GPU is not published, only its MIG devices.
    assert not any(d["attributes"]["type"]["string"] == "gpu" for d in devices)
    profiles = {d["attributes"]["profile"]["string"] for d in devices}
    assert profiles == {"1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"}


def test_a_mig_device_has_the_attributes_capacities_and_consumption_of_mig_go() -> None:
    devices, _ = rendered("nvidia-mig", {})
    mig = by_name(devices)["gpu-0-mig-1g5gb-19-0"]
    parent = mig["attributes"].pop("parentUUID")["string"]
    assert UUID.match(parent)
    caps = {
        "multiprocessors": "14",
        "copyEngines": "1",
        "decoders": "0",
        "encoders": "0",
        "jpegEngines": "0",
        "ofaEngines": "0",
        "memory": "4864Mi",  # the 1g.5gb of the driver's resourceslice-attributes.md
    }
    assert mig == {
        "name": "gpu-0-mig-1g5gb-19-0",
        "attributes": {
            "type": {"string": "mig"},
            "profile": {"string": "1g.5gb"},
            "productName": {"string": "NVIDIA A100-SXM4-40GB"},
            "brand": {"string": "Nvidia"},
            "architecture": {"string": "Ampere"},
            "cudaComputeCapability": {"version": "8.0.0"},
            "driverVersion": {"version": "550.163.1"},
            "cudaDriverVersion": {"version": "12.4.0"},
            "resource.kubernetes.io/pciBusID": {"string": "0000:07:00.0"},
            "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
            "resource.kubernetes.io/numaNode": {"int": 0},
        },
        "capacity": {k: {"value": v} for k, v in caps.items()},
        "consumesCounters": [
            {
                "counterSet": "gpu-0-counter-set",
                "counters": {
                    "multiprocessors": {"value": "14"},
                    "copy-engines": {"value": "1"},
                    "decoders": {"value": "0"},
                    "encoders": {"value": "0"},
                    "jpeg-engines": {"value": "0"},
                    "ofa-engines": {"value": "0"},
                    "memory": {"value": "4864Mi"},
                    "memory-slice-0": {"value": "1"},
                },
            }
        ],
    }
    me = by_name(devices)["gpu-3-mig-1g5gb-me-20-6"]
    assert me["attributes"]["profile"] == {"string": "1g.5gb+me"}
    assert me["attributes"]["resource.kubernetes.io/pciBusID"] == {"string": "0000:4e:00.0"}
    assert set(me["consumesCounters"][0]["counters"]) >= {"memory-slice-6", "jpeg-engines", "ofa-engines"}


def value(q: dict[str, str]) -> int:
    text = q["value"]
    return int(text[:-2]) * 1024**2 if text.endswith("Mi") else int(text)


def test_the_counter_set_is_the_largest_profile_and_partitions_use_it_up_as_on_the_driver() -> None:
    devices, counters = rendered("nvidia-mig", {"count": 1})
    [counter_set] = counters
    have = {k: value(v) for k, v in counter_set["counters"].items()}
    assert have == {
        "multiprocessors": 98,
        "copy-engines": 7,
        "decoders": 5,
        "encoders": 0,
        "jpeg-engines": 1,
        "ofa-engines": 1,
        "memory": 40192 * 1024**2,
        **{f"memory-slice-{i}": 1 for i in range(8)},
    }
    used = {d["name"]: {k: value(v) for k, v in d["consumesCounters"][0]["counters"].items()} for d in devices}
    # The whole-GPU profile consumes everything (partitions.go: "when the full device is allocated,
    # all available counters drop to zero").
    assert used["gpu-0-mig-7g40gb-0-0"] == have
    # Seven 1g.5gb take every multiprocessor; the eighth memory slice is left, but no profile fits.
    ones = [u for n, u in used.items() if "-1g5gb-19-" in n]
    assert sum(u["multiprocessors"] for u in ones) == have["multiprocessors"]
    assert all(u["multiprocessors"] > 0 for u in used.values())
    # No device asks for more than the set holds; placements overlap exactly where NVML's do.
    for u in used.values():
        assert all(u[k] <= have[k] for k in u)
    slices = {n: {k for k in u if k.startswith("memory-slice-")} for n, u in used.items()}
    assert slices["gpu-0-mig-3g20gb-9-4"] == {f"memory-slice-{i}" for i in range(4, 8)}
    assert slices["gpu-0-mig-1g10gb-15-6"] == {"memory-slice-6", "memory-slice-7"}
    # Only one +me device at a time: the GPU has one JPEG and one OFA engine.
    assert all(u["jpeg-engines"] == 1 for n, u in used.items() if "-me-" in n)


def test_parent_uuids_are_one_per_gpu_and_node_and_stable() -> None:
    def parents(node: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for d in rendered("nvidia-mig", {"count": 2}, node)[0]:
            out.setdefault(d["name"].split("-mig-")[0], set()).add(d["attributes"]["parentUUID"]["string"])
        return out

    a, b = parents("node-a"), parents("node-b")
    assert all(len(v) == 1 for v in (*a.values(), *b.values()))
    flat = [u for v in (*a.values(), *b.values()) for u in v]
    assert len(set(flat)) == 4 and all(UUID.match(u) for u in flat)
    assert parents("node-a") == a


def test_profile_names_follow_go_nvlib() -> None:
    total = nvidia.BOARDS["a100"].memory_bytes
    assert [nvidia.profile_name(p, total) for p in nvidia.A100_40GB_MIG] == [
        "1g.5gb",
        "2g.10gb",
        "3g.20gb",
        "4g.20gb",
        "7g.40gb",
        "1g.5gb+me",
        "1g.10gb",
    ]
    assert nvidia.mig_device_name(2, "1g.24gb", 19, 0) == "gpu-2-mig-1g24gb-19-0"  # partitions.go's example
    assert nvidia.counter_name("copyEngines") == "copy-engines" and nvidia.counter_name("ofaEngines") == "ofa-engines"
    assert nvidia.semver("550.163.01") == "550.163.1" and nvidia.semver("13.0") == "13.0.0"


@pytest.mark.parametrize(
    ("name", "parameters", "field"),
    [
        ("nvidia-gpu", {"product": "a800"}, "product"),
        ("nvidia-gpu", {"count": 0}, "count"),
        ("nvidia-gpu", {"count": 9}, "count"),
        ("nvidia-gpu", {"product": "t4", "count": 5}, "count"),
        ("nvidia-gpu", {"driverVersion": "latest"}, "driverVersion"),
        ("nvidia-gpu", {"cudaDriverVersion": "12.4.1"}, "cudaDriverVersion"),
        ("nvidia-gpu", {"mig": True}, "mig"),
        ("nvidia-mig", {"product": "h100"}, "product"),
        ("nvidia-mig", {"count": 9}, "count"),
    ],
)
def test_bad_parameters_name_their_field(name: str, parameters: dict[str, Any], field: str) -> None:
    cfg, issues = config(name, parameters)
    assert cfg is None
    paths = [format_path(i.path) for i in issues]
    assert f"mappings[0].resourceSlice.profile.parameters.{field}" in paths, paths


def test_the_device_classes_are_the_charts() -> None:
    for profile in nvidia.PROFILES:
        manifests = {m["metadata"]["name"]: m["spec"] for m in (c.manifest() for c in profile.device_classes)}
        assert manifests == {
            "gpu.nvidia.com": {
                "selectors": [
                    {
                        "cel": {
                            "expression": "device.driver == 'gpu.nvidia.com' && "
                            "device.attributes['gpu.nvidia.com'].type == 'gpu'"
                        }
                    }
                ],
                "extendedResourceName": "nvidia.com/gpu",
            },
            "mig.nvidia.com": {
                "selectors": [
                    {
                        "cel": {
                            "expression": "device.driver == 'gpu.nvidia.com' && "
                            "device.attributes['gpu.nvidia.com'].type == 'mig'"
                        }
                    }
                ]
            },
            "vfio.gpu.nvidia.com": {
                "selectors": [
                    {
                        "cel": {
                            "expression": "device.driver == 'gpu.nvidia.com' && "
                            "device.attributes['gpu.nvidia.com'].type == 'vfio'"
                        }
                    }
                ]
            },
        }


def test_on_1_34_the_counters_of_two_gpus_fit_a_pool_and_three_do_not() -> None:
    """1.34 allows 32 counters in all counter sets of a slice; an A100's set has 15."""
    target = versions.target(34, {"DRAPartitionableDevices": True})
    assert config("nvidia-mig", {"count": 2}, target)[0] is not None
    cfg, issues = config("nvidia-mig", {"count": 3}, target)
    assert cfg is None and any("32 counters" in i.message for i in issues), [str(i) for i in issues]
