"""The amd-gpu, intel-gpu, intel-gaudi and google-tpu profiles against the real control plane: the
controller publishes each profile's devices for a KWOK node (from a ConfigMap mapping), the
profile's DeviceClasses are installed as the real driver's chart installs them, and claims written
the way each driver's docs write them are allocated by kube-scheduler from our pool, or refused
where the real driver's devices would be used up.

The controller is `dra-kwok run` as in every integration test (the profiles are built in).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dra_kwok.core.profiles import amd, intel, tpu
from tests.integration.conftest import Scenario
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

TIMEOUT = 60.0  # seconds for each scheduling step; a few seconds on an idle machine
PAUSE = "registry.k8s.io/pause:3.10"


class Profiles:
    """One test's KWOK nodes, each with a profile, the profiles' DeviceClasses, claims and pods."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.cluster = scenario.cluster
        self.ns = scenario.namespace
        self.mappings: list[dict[str, Any]] = []

    def node(self, profile: str, parameters: dict[str, Any], driver: str) -> str:
        """A KWOK node that gets `profile`'s devices; returns its name once its pool is published."""
        node = self.scenario.unique(profile)
        self.mappings.append(
            {
                "name": node,
                "nodeSelector": {"matchLabels": {"dra-kwok-test": self.scenario.tag, "kubernetes.io/hostname": node}},
                "resourceSlice": {"profile": {"name": profile, "parameters": parameters}},
            }
        )
        self.scenario.config(yaml.safe_dump({"mappings": self.mappings}))
        self.scenario.node(node, instance_type=profile)
        for cls in device_classes(profile):
            self.scenario.cleanup.delete_later("deviceclass", cls["metadata"]["name"])
            self.cluster.apply(cls)
        wait_until(
            lambda: self.devices(node, driver) or None,
            timeout=30,
            what=f"the {profile} pool on {node}",
            describe=lambda: str(self.scenario.slices(node)),
        )
        return node

    def devices(self, node: str, driver: str) -> list[dict[str, Any]]:
        slices = [s for s in self.scenario.slices(node) if s["spec"]["driver"] == driver]
        if not slices or {s["spec"]["pool"]["resourceSliceCount"] for s in slices} != {len(slices)}:
            return []
        return [d for s in slices for d in s["spec"].get("devices") or []]

    def claim(self, name: str, requests: list[dict[str, Any]], constraints: list[dict[str, Any]] | None = None) -> None:
        devices: dict[str, Any] = {"requests": requests}
        if constraints:
            devices["constraints"] = constraints
        self.cluster.apply(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {"devices": devices},
            }
        )

    def pod(self, name: str, node: str, claim: str) -> None:
        self.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "c",
                            "image": PAUSE,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "claims": [{"name": "dev"}]},
                        }
                    ],
                    "resourceClaims": [{"name": "dev", "resourceClaimName": claim}],
                },
            }
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.cluster.get_json(kind, name, "-n", self.ns)
        return obj

    def describe(self) -> str:
        return "\n---\n".join(
            self.cluster.kubectl("get", kind, "-n", self.ns, "-o", "yaml") for kind in ("pods", "resourceclaims")
        )

    def wait_running(self, pod: str, node: str) -> None:
        def running() -> bool:
            obj = self.get("pod", pod)
            return obj["status"].get("phase") == "Running" and obj["spec"].get("nodeName") == node

        wait_until(running, timeout=TIMEOUT, what=f"pod {pod} to run on {node}", describe=self.describe)

    def wait_unschedulable(self, pod: str) -> None:
        def unschedulable() -> bool:
            conds = self.get("pod", pod).get("status", {}).get("conditions") or []
            return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds)

        wait_until(unschedulable, timeout=TIMEOUT, what=f"pod {pod} to be unschedulable", describe=self.describe)
        assert not self.get("pod", pod)["spec"].get("nodeName")

    def allocated(self, claim: str, node: str, driver: str) -> list[dict[str, Any]]:
        """The claim's results, each checked to come from our pool on `node`."""
        allocation = self.get("resourceclaim", claim)["status"]["allocation"]
        results: list[dict[str, Any]] = allocation["devices"]["results"]
        for r in results:
            assert (r["driver"], r["pool"]) == (driver, f"{node}-device-pool"), r
        return results

    def allocation(self, claim: str) -> Any:
        return (self.get("resourceclaim", claim).get("status") or {}).get("allocation")


def device_classes(profile: str) -> list[dict[str, Any]]:
    """The profile's DeviceClass manifests, as the real driver's chart installs them."""
    [found] = [p for m in (amd, intel, tpu) for p in m.PROFILES if p.name == profile]
    return [c.manifest() for c in found.device_classes]


@pytest.fixture
def profiles(scenario: Scenario, controller: ControllerProcess) -> Profiles:
    return Profiles(scenario)


def exactly(device_class: str, cel: str | None = None, **more: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"deviceClassName": device_class, **more}
    if cel:
        spec["selectors"] = [{"cel": {"expression": cel}}]
    return spec


# --- AMD --------------------------------------------------------------------------------------------
AMD = "gpu.amd.com"
AMD_FULL = 'device.attributes["gpu.amd.com"].type == "amdgpu"'  # docs/driver-attributes.md
AMD_PARTITION = 'device.attributes["gpu.amd.com"].type == "amdgpu-partition"'


def test_amd_gpus_and_partitions_are_allocated_as_the_real_drivers(profiles: Profiles) -> None:
    # Whole GPUs (SPX): example/example.yaml's claim with docs/driver-attributes.md's selector.
    whole = profiles.node("amd-gpu", {"count": 2}, AMD)
    assert [d["name"] for d in profiles.devices(whole, AMD)] == ["gpu-0-128", "gpu-8-136"]
    profiles.claim("gpu", [{"name": "gpu", "exactly": exactly(AMD, AMD_FULL, allocationMode="ExactCount", count=1)}])
    profiles.pod("pod1", whole, "gpu")
    profiles.wait_running("pod1", whole)
    [result] = profiles.allocated("gpu", whole, AMD)
    assert result["device"] in ("gpu-0-128", "gpu-8-136")

    # One GPU in CPX mode: 8 partitions and no whole GPU.
    cpx = profiles.node("amd-gpu", {"count": 1, "partitionProfile": "cpx_nps1"}, AMD)
    assert len(profiles.devices(cpx, AMD)) == 8
    # example/example-partitions-same-parent.yaml, with the attribute partitions carry
    # (deviceinfo.go: parentDeviceID; the example's deviceID is the whole GPUs' attribute).
    two = [
        {"name": f"p{i}", "exactly": exactly(AMD, AMD_PARTITION, allocationMode="ExactCount", count=1)} for i in (0, 1)
    ]
    profiles.claim("two", two, [{"matchAttribute": "gpu.amd.com/parentDeviceID", "requests": ["p0", "p1"]}])
    profiles.claim("six", [{"name": "p", "exactly": exactly(AMD, AMD_PARTITION, allocationMode="ExactCount", count=6)}])
    profiles.claim("one-more", [{"name": "p", "exactly": exactly(AMD, AMD_PARTITION)}])
    profiles.pod("two", cpx, "two")
    profiles.pod("six", cpx, "six")
    profiles.wait_running("two", cpx)
    profiles.wait_running("six", cpx)
    taken = {r["device"] for c in ("two", "six") for r in profiles.allocated(c, cpx, AMD)}
    assert taken == {f"gpu-{k}-{128 + k}" for k in range(8)}
    # The GPU's 8 partitions are all taken: a ninth claim finds none.
    profiles.pod("one-more", cpx, "one-more")
    profiles.wait_unschedulable("one-more")
    assert profiles.allocation("one-more") is None, profiles.describe()


# --- Intel ------------------------------------------------------------------------------------------
GPU = "gpu.intel.com"
GAUDI = "gaudi.intel.com"


def test_intel_gpus_and_gaudis_are_allocated_as_the_real_drivers(profiles: Profiles) -> None:
    node = profiles.node("intel-gpu", {"count": 2, "pciId": "0x0bda"}, GPU)
    # doc/gpu/USAGE.md "Customizing resources request": 2 GPUs with at least 16Gi each.
    memory = 'device.capacity["gpu.intel.com"].memory.compareTo(quantity("16Gi")) >= 0'
    profiles.claim("two-gpus", [{"name": "gpu", "exactly": exactly(GPU, memory, count=2)}])
    profiles.pod("two-gpus", node, "two-gpus")
    profiles.wait_running("two-gpus", node)
    devices = sorted(r["device"] for r in profiles.allocated("two-gpus", node, GPU))
    assert devices == ["0000-03-00-0-0x0bda", "0000-04-00-0-0x0bda"]
    # doc/gpu/USAGE.md's basic claim: both GPUs are taken.
    profiles.claim("claim1", [{"name": "gpu", "exactly": exactly(GPU)}])
    profiles.pod("test-claim", node, "claim1")
    profiles.wait_unschedulable("test-claim")

    gaudi = profiles.node("intel-gaudi", {"count": 2}, GAUDI)
    # deployments/gaudi/examples/pod-inline.yaml, with its model selector.
    model = "device.attributes[\"gaudi.intel.com\"].model == 'Gaudi2'"
    profiles.claim("gaudi", [{"name": "gaudi", "exactly": exactly(GAUDI, model)}])
    profiles.pod("gaudi", gaudi, "gaudi")
    profiles.wait_running("gaudi", gaudi)
    [result] = profiles.allocated("gaudi", gaudi, GAUDI)
    assert result["device"] in ("0000-80-00-0-0x1020", "0000-90-00-0-0x1020")


# --- TPU --------------------------------------------------------------------------------------------
TPU = "tpu.google.com"


def test_tpu_chips_are_allocated_all_together_as_the_real_drivers(profiles: Profiles) -> None:
    node = profiles.node("google-tpu", {"chipCount": 4}, TPU)
    # README.md's claim: every chip of the node, selected on the accelerator type.
    v6e = 'device.attributes["tpu.google.com"].accelerator == "tpu-v6e-slice"'
    profiles.claim("v6e-tpus", [{"name": "tpus", "exactly": exactly(TPU, v6e, allocationMode="All")}])
    profiles.pod("tpu-pod0", node, "v6e-tpus")
    profiles.wait_running("tpu-pod0", node)
    assert sorted(r["device"] for r in profiles.allocated("v6e-tpus", node, TPU)) == ["0", "1", "2", "3"]
    # A second pod wanting the node's chips finds them taken.
    profiles.claim("more-tpus", [{"name": "tpus", "exactly": exactly(TPU, v6e, allocationMode="All")}])
    profiles.pod("tpu-pod1", node, "more-tpus")
    profiles.wait_unschedulable("tpu-pod1")
    assert profiles.allocation("more-tpus") is None, profiles.describe()
