"""The NVIDIA profiles against the real control plane: the chart's DeviceClasses, a node published
from a DRANodeOverlay with the profile, claims written as the driver's docs write them
(kubernetes-sigs/dra-driver-nvidia-gpu site/content/docs/guides/gpu-allocation/{allocating-gpus,
mig}.md), and kube-scheduler allocating our devices as it would the real driver's: full GPUs by
product name and by the extended resource `nvidia.com/gpu`, and MIG devices limited by their GPU's
shared counters (the whole-GPU profile blocks every other, seven 1g.5gb use it up)."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.profiles import nvidia
from tests.integration.conftest import Scenario
from tests.integration.test_dra_features import TIMEOUT, World
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster]


class Nvidia(World):
    """A node with one NVIDIA profile, the chart's DeviceClasses, claims of the real driver's."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self.driver = nvidia.DRIVER

    def publish(self, profile: str, parameters: dict[str, Any], devices: int) -> list[dict[str, Any]]:
        for spec in nvidia.DEVICE_CLASSES:
            self.scenario.cleanup.delete_later("deviceclass", spec.name)
            self.cluster.apply(spec.manifest())
        self.scenario.node(self.node, instance_type="p4d.24xlarge")
        self.scenario.overlay(
            self.overlay_name,
            {
                "requirements": [
                    {"key": "dra-kwok-test", "operator": "In", "values": [self.scenario.tag]},
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p4d.24xlarge"]},
                ],
                "resourceSlices": [{"spec": {"profile": {"name": profile, "parameters": parameters}}}],
            },
        )
        return self.wait_pool(lambda devs: len(devs) == devices)

    def request(self, name: str, device_class: str, cel: str | None = None) -> dict[str, Any]:
        exactly: dict[str, Any] = {"deviceClassName": device_class}
        if cel:
            exactly["selectors"] = [{"cel": {"expression": cel}}]
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"devices": {"requests": [{"name": "dev", "exactly": exactly}]}},
        }

    def bound(self, pod: str) -> None:
        [obj] = self.wait_running(pod)
        assert obj["spec"]["nodeName"] == self.node


@pytest.fixture
def gpus(scenario: Scenario, controller: ControllerProcess) -> Nvidia:
    return Nvidia(scenario)


def test_full_gpus_are_allocated_by_product_name_and_by_the_extended_resource(gpus: Nvidia) -> None:
    gpus.publish("nvidia-gpu", {"product": "a100", "count": 2}, devices=2)
    stored = gpus.cluster.get_json("deviceclass", "gpu.nvidia.com")
    assert stored["spec"]["selectors"][0]["cel"]["expression"] == nvidia.DEVICE_CLASSES[0].selector
    assert stored["spec"].get("extendedResourceName") == "nvidia.com/gpu", stored

    # allocating-gpus.md, "Select a GPU by product name".
    a100 = "device.attributes['gpu.nvidia.com'].productName.lowerAscii().matches('^.*a100.*$')"
    h100 = "device.attributes['gpu.nvidia.com'].productName.lowerAscii().matches('^.*h100.*$')"
    gpus.cluster.apply(gpus.request("a100", "gpu.nvidia.com", a100), gpus.request("h100", "gpu.nvidia.com", h100))
    gpus.cluster.apply(gpus.pod("on-a100", "a100"))
    gpus.bound("on-a100")
    first = gpus.allocated_device("a100")
    assert first in ("gpu-0", "gpu-1")
    gpus.cluster.apply(gpus.pod("on-h100", "h100"))
    gpus.wait_unschedulable("on-h100")
    assert gpus.allocation("h100") is None

    # The chart's DeviceClass maps nvidia.com/gpu: a pod asking for it gets the other GPU.
    gpus.cluster.apply(gpus.pod("by-resource", limits={"nvidia.com/gpu": "1"}))
    gpus.bound("by-resource")
    claims = gpus.cluster.get_json("resourceclaims", "-n", gpus.ns)["items"]
    [made] = [c for c in claims if c["metadata"]["name"].startswith("by-resource-")]
    [result] = made["status"]["allocation"]["devices"]["results"]
    other = "gpu-1" if first == "gpu-0" else "gpu-0"
    assert (result["driver"], result["pool"], result["device"]) == (nvidia.DRIVER, gpus.pool, other), made

    # Both GPUs are taken: one more stays unallocated.
    gpus.cluster.apply(gpus.request("third", "gpu.nvidia.com"), gpus.pod("on-third", "third"))
    gpus.wait_unschedulable("on-third")
    assert gpus.allocation("third") is None


def test_mig_devices_share_their_gpus_counters_as_on_the_driver(gpus: Nvidia) -> None:
    devices = len(nvidia.build_migs(nvidia.MigParameters(count=1)).devices)
    slices = gpus.publish("nvidia-mig", {"count": 1}, devices=devices)
    assert [c["name"] for s in slices for c in s["spec"].get("sharedCounters") or []] == ["gpu-0-counter-set"]
    profile = "device.attributes['gpu.nvidia.com'].profile == '{}'"  # mig.md, "Select a MIG profile"
    c = gpus.cluster

    # The whole-GPU profile takes every counter: no 1g.5gb fits beside it.
    c.apply(gpus.request("whole", "mig.nvidia.com", profile.format("7g.40gb")), gpus.pod("on-whole", "whole"))
    gpus.bound("on-whole")
    assert gpus.allocated_device("whole") == "gpu-0-mig-7g40gb-0-0"
    c.apply(gpus.request("small-0", "mig.nvidia.com", profile.format("1g.5gb")), gpus.pod("on-small-0", "small-0"))
    gpus.wait_unschedulable("on-small-0")
    assert gpus.allocation("small-0") is None

    # Freed, the GPU holds seven 1g.5gb, each at its own placement...
    c.kubectl("delete", "pod", "on-whole", "-n", gpus.ns, "--wait=false")
    wait_until(lambda: gpus.allocation("whole") is None, timeout=TIMEOUT, what="claim whole to be deallocated",
               describe=gpus.describe)  # fmt: skip
    gpus.bound("on-small-0")
    for i in range(1, 7):
        c.apply(gpus.request(f"small-{i}", "mig.nvidia.com", profile.format("1g.5gb")))
        c.apply(gpus.pod(f"on-small-{i}", f"small-{i}"))
    gpus.wait_running(*(f"on-small-{i}" for i in range(7)))
    placed = sorted(gpus.allocated_device(f"small-{i}") for i in range(7))
    assert placed == [f"gpu-0-mig-1g5gb-19-{i}" for i in range(7)]

    # ...and then its multiprocessors are used up: no MIG device of any profile is left.
    c.apply(gpus.request("any", "mig.nvidia.com"), gpus.pod("on-any", "any"))
    gpus.wait_unschedulable("on-any")
    assert gpus.allocation("any") is None
