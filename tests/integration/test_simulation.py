"""The driver's behaviour after publishing (`simulation`), decided by the real control plane:
kube-scheduler's PreBind waits for the binding conditions we set (or fails on the failure
condition we set), kube-controller-manager evicts pods from the devices our faults taint, the
scheduler avoids them, and claims carry the status.devices entries a real node plugin writes.

Needs Kubernetes 1.36 or later (binding conditions and device taints on by default); `make test`
runs these on 1.37 and again on 1.36.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from dra_kwok.core.fault_annotation import FAULTS_ANNOTATION
from dra_kwok.core.simulation import FAULT_TAINT_KEY
from tests.integration.conftest import Scenario
from tests.integration.test_dra_features import TIMEOUT, World
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.simulation]


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class SimWorld(World):
    """A World whose overlay carries a `simulation`."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self.simulation: dict[str, Any] = {}

    def set_overlay(self, devices: list[dict[str, Any]], **template: Any) -> None:
        spec = self.scenario.overlay_spec(devices, driver=self.driver)
        spec["resourceSlices"][0]["spec"].update(template)
        if self.simulation:
            spec["simulation"] = self.simulation
        self.scenario.overlay(self.overlay_name, spec)

    def annotate_faults(self, value: str | None) -> None:
        arg = f"{FAULTS_ANNOTATION}-" if value is None else f"{FAULTS_ANNOTATION}={value}"
        self.cluster.kubectl("annotate", "node", self.node, arg, "--overwrite")

    def device_taints(self) -> dict[str, list[dict[str, Any]]]:
        return {d["name"]: d.get("taints") or [] for s in self.slices() for d in s["spec"].get("devices") or []}

    def claim_devices(self, claim: str) -> list[dict[str, Any]]:
        obj = self.get("resourceclaim", claim) or {}
        return list((obj.get("status") or {}).get("devices") or [])


@pytest.fixture
def sim_controller(scenario: Scenario, cluster: Any) -> Iterator[ControllerProcess]:
    if cluster.minor() < 36:
        pytest.fail(f"the simulation tests need Kubernetes 1.36 or later, the cluster runs {cluster.server_version()}")
    with scenario.controller("--simulate-claims") as ctl:
        yield ctl


@pytest.fixture
def world(scenario: Scenario, sim_controller: ControllerProcess) -> SimWorld:
    return SimWorld(scenario)


FABRIC = {
    "name": "fabric",
    "count": 2,
    "bindsToNode": True,
    "bindingConditions": ["example.com/attached"],
    "bindingFailureConditions": ["example.com/failed"],
}


# --- claim status ---------------------------------------------------------------------------------
def test_an_allocated_claim_gets_our_device_status_once_its_pod_is_bound(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    world.simulation = {
        "claimStatus": {
            "data": {"uuid": "{deviceUUID}", "node": "{nodeName}"},
            "networkData": {"interfaceName": "net{index}", "ips": ["10.9.0.{index}/24"]},
        }
    }
    world.start([{"name": "nic", "count": 2}])
    world.cluster.apply(world.claim("c"), world.pod("p", "c"))
    [pod] = world.wait_running("p")
    device = world.allocated_device("c")
    index = device.rsplit("-", 1)[1]

    entries = wait_until(lambda: world.claim_devices("c") or None, timeout=15, what="status.devices of claim c",
                         describe=world.describe)  # fmt: skip
    [entry] = entries
    assert (entry["driver"], entry["pool"], entry["device"]) == (world.driver, world.pool, device)
    [ready] = entry["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "DeviceReady")
    assert entry["data"]["node"] == world.node and len(entry["data"]["uuid"]) == 36
    assert entry["networkData"] == {"interfaceName": f"net{index}", "ips": [f"10.9.0.{index}/24"]}
    # Written after the pod was bound, as a node plugin does after NodePrepareResources.
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert seconds(ready["lastTransitionTime"]) <= seconds(scheduled["lastTransitionTime"]) + 1
    metrics = sim_controller.metrics()
    assert metrics.get('dra_kwok_claim_status_writes_total{result="written"}') == 1, metrics

    # The pod goes: the claim is deallocated and its device status with it (the apiserver drops
    # entries of devices no longer allocated); nothing of ours is written again.
    world.cluster.kubectl("delete", "pod", "p", "-n", world.ns, "--wait=false")
    wait_until(lambda: world.allocation("c") is None, timeout=TIMEOUT, what="the claim to be deallocated",
               describe=world.describe)  # fmt: skip
    assert world.claim_devices("c") == []
    time.sleep(2)
    after = sim_controller.metrics()
    assert after.get('dra_kwok_claim_status_writes_total{result="written"}') == 1, after
    assert not after.get('dra_kwok_claim_status_writes_total{result="rejected"}'), after


# --- binding conditions ---------------------------------------------------------------------------
def test_binding_conditions_are_set_after_the_delay_and_the_pod_binds_no_sooner(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    world.simulation = {"binding": {"delay": "8s"}}
    world.start([FABRIC])
    world.cluster.apply(world.claim("c"), world.pod("p", "c"))
    [pod] = world.wait_running("p")
    obj = world.get("resourceclaim", "c")
    assert obj is not None
    allocated = seconds(obj["status"]["allocation"]["allocationTimestamp"])
    [entry] = obj["status"]["devices"]
    [attached] = entry["conditions"]
    assert (attached["type"], attached["status"]) == ("example.com/attached", "True")
    assert seconds(attached["lastTransitionTime"]) - allocated == pytest.approx(8, abs=1)
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert seconds(scheduled["lastTransitionTime"]) >= allocated + 8, (allocated, scheduled)
    metrics = sim_controller.metrics()
    assert metrics.get('dra_kwok_binding_conditions_total{result="set"}') == 1, metrics


def test_a_device_whose_binding_fails_makes_the_scheduler_deallocate_and_retry(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    world.simulation = {"binding": {"delay": "1s", "failDevices": ["fabric-0", "fabric-1"]}}
    world.start([FABRIC])
    world.cluster.apply(world.claim("c"), world.pod("p", "c"))
    stamps: set[str] = set()

    def retried() -> bool | None:
        alloc = world.allocation("c")
        if alloc and alloc.get("allocationTimestamp"):
            stamps.add(alloc["allocationTimestamp"])
        return len(stamps) >= 2 or None

    # PreBind sees our failure condition, the scheduler deallocates (PostFilter) and allocates again.
    wait_until(retried, timeout=TIMEOUT, what="a second allocation of claim c after a failed binding",
               describe=world.describe)  # fmt: skip
    pod = world.get("pod", "p")
    assert pod is not None and not pod["spec"].get("nodeName"), pod
    messages = " ".join(e.get("message", "") for e in world.events_for("p"))
    assert "example.com/failed" in messages or "binding" in messages.lower(), messages
    metrics = sim_controller.metrics()
    assert metrics.get('dra_kwok_binding_conditions_total{result="failed"}', 0) >= 1, metrics
    assert not metrics.get('dra_kwok_binding_conditions_total{result="set"}'), metrics


def test_with_a_failure_fraction_each_attempt_is_decided_and_the_pod_binds_once_one_succeeds(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    # failureFraction 0.5: each attempt (a new allocationTimestamp) is its own draw.
    world.simulation = {"binding": {"delay": "1s", "failureFraction": 0.5}}
    world.start([FABRIC])
    world.cluster.apply(world.claim("c"), world.pod("p", "c"))
    wait_until(
        lambda: (world.get("pod", "p") or {}).get("spec", {}).get("nodeName"),
        timeout=TIMEOUT * 3,
        what="the pod to bind after failed or successful attempts",
        describe=world.describe,
    )
    [entry] = world.claim_devices("c")
    assert [c["type"] for c in entry["conditions"]] == ["example.com/attached"]
    # Every attempt got a verdict, and exactly one (the last) attached: whether earlier ones
    # failed depends on the claim's UID (the draws themselves are unit-tested).
    metrics = sim_controller.metrics()
    assert metrics.get('dra_kwok_binding_conditions_total{result="set"}') == 1, metrics


# --- device faults --------------------------------------------------------------------------------
def test_a_noexecute_fault_asked_for_on_the_node_evicts_the_pod_and_recovers(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    world.start([{"name": "gpu", "count": 2}])
    world.cluster.apply(world.claim("c"), world.pod("victim", "c"))
    world.wait_running("victim")
    device = world.allocated_device("c")
    generation = world.slices()[0]["spec"]["pool"]["generation"]

    world.annotate_faults(f"{device}=NoExecute@2026-12-01T00:00:00Z")
    world.wait_pool(lambda devs: any(d.get("taints") for d in devs))
    [taint] = world.device_taints()[device]
    assert taint == {"key": FAULT_TAINT_KEY, "value": "injected", "effect": "NoExecute",
                     "timeAdded": "2026-12-01T00:00:00Z"}  # fmt: skip
    assert world.slices()[0]["spec"]["pool"]["generation"] == generation + 1
    wait_until(lambda: world.get("pod", "victim") is None, timeout=TIMEOUT, what="the pod to be evicted",
               describe=world.describe)  # fmt: skip
    assert any(e["reason"] == "DeviceTaintManagerEviction" for e in world.events_for("victim"))
    assert sim_controller.metrics().get("dra_kwok_faults_active") == 1

    world.annotate_faults(None)
    world.wait_pool(lambda devs: not any(d.get("taints") for d in devs))
    assert sim_controller.metrics().get("dra_kwok_faults_active") == 0


def test_the_scheduler_avoids_a_device_with_a_noschedule_fault_and_a_removed_device(world: SimWorld) -> None:
    world.start([{"name": "gpu", "count": 3}])
    world.annotate_faults("gpu-0=NoSchedule,gpu-1=Remove")
    world.wait_pool(lambda devs: sorted(d["name"] for d in devs) == ["gpu-0", "gpu-2"] and bool(devs[0].get("taints")))
    world.cluster.apply(world.claim("a"), world.pod("a", "a"))
    world.wait_running("a")
    assert world.allocated_device("a") == "gpu-2"
    world.cluster.apply(world.claim("b"), world.pod("b", "b"))
    world.wait_unschedulable("b")
    # Recovery: the removed device comes back and the pending pod gets it.
    world.annotate_faults("gpu-0=NoSchedule")
    world.wait_running("b")
    assert world.allocated_device("b") == "gpu-1"


def test_scheduled_faults_come_and_go_by_themselves(world: SimWorld) -> None:
    world.simulation = {"faults": [{"effect": "NoSchedule", "every": "12s", "duration": "6s", "devices": ["gpu-0"]}]}
    world.start([{"name": "gpu", "count": 2}])
    seen_taint = wait_until(lambda: world.device_taints().get("gpu-0") or None, timeout=30,
                            what="gpu-0 to fail on schedule", describe=world.describe)  # fmt: skip
    [taint] = seen_taint
    assert (taint["key"], taint["value"], taint["effect"]) == (FAULT_TAINT_KEY, "scheduled", "NoSchedule")
    began = seconds(taint["timeAdded"])
    wait_until(lambda: world.device_taints().get("gpu-0") == [] or None, timeout=15,
               what="gpu-0 to recover", describe=world.describe)  # fmt: skip
    assert time.time() >= began + 5
    assert world.device_taints()["gpu-1"] == []


# --- publish delay --------------------------------------------------------------------------------
def test_a_publish_delay_keeps_the_slices_back_until_it_has_passed(
    world: SimWorld, sim_controller: ControllerProcess
) -> None:
    world.simulation = {"publishDelay": "8s"}
    world.set_overlay([{"name": "gpu"}])
    node = world.scenario.node(world.node)
    created = seconds(node["metadata"]["creationTimestamp"])
    time.sleep(4)
    assert world.slices() == []
    world.wait_pool(lambda devs: len(devs) == 1)
    published = seconds(world.slices()[0]["metadata"]["creationTimestamp"])
    assert published >= created + 7, (created, published)
    metrics = sim_controller.metrics()
    assert metrics.get('dra_kwok_publish_delay_seconds_count{kind="actual"}') == 1, metrics
    assert metrics.get('dra_kwok_publish_delay_seconds_sum{kind="configured"}') == 8, metrics
    assert metrics.get('dra_kwok_publish_delay_seconds_sum{kind="actual"}', 0) >= 7.5, metrics


# --- as installed: the chart's RBAC is enough -----------------------------------------------------
def test_the_charts_pod_writes_claim_status_with_only_the_charts_rbac(
    cluster: Any, namespace: str, unique_name: Any, cleanup: Any, tmp_path: Any
) -> None:
    """simulation.claims.enabled=true: the chart's Pod, with its ServiceAccount and ClusterRole
    only, writes status.devices of a claim on a ConfigMap mapping's device (1.36+ checks the
    per-driver resourceclaims/driver permission on that write)."""
    from tests.integration.test_in_cluster import INSTANCE_TYPE, NO_NODE, installed_pod
    from tests.support.chart import Release
    from tests.support.cluster import kwok_node
    from tests.support.pod import Image, PodContainer

    if cluster.minor() < 36:
        pytest.fail(f"needs Kubernetes 1.36 or later, the cluster runs {cluster.server_version()}")
    driver = f"{unique_name('nic')}.pod.dra-kwok.test"
    instance_type = unique_name("sim-pod")
    release = Release(cluster, unique_name("sim"), namespace, tmp_path)
    values: dict[str, Any] = {
        "nodeSelector": NO_NODE,
        "simulation": {"claims": {"enabled": True, "drivers": [driver]}},
        "config": {
            "driver": driver,
            "mappings": [
                {
                    "name": "nics",
                    "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type}},
                    "resourceSlice": {"devices": [{"name": "nic", "count": 2}]},
                    "simulation": {"claimStatus": {"networkData": {"interfaceName": "eth{index}"}}},
                }
            ],
        },
    }
    device_class = unique_name("dc")
    node = unique_name("sim-node")
    container = None
    try:
        container = PodContainer(cluster, installed_pod(release, values), Image.from_dockerfile(), tmp_path).start()
        container.wait_ready()
        cleanup.delete_later("deviceclass", device_class)
        cleanup.delete_later("node", node)
        cluster.apply(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": device_class},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
            },
            kwok_node(node, labels={INSTANCE_TYPE: instance_type}),
        )
        claim = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": namespace},
            "spec": {"devices": {"requests": [{"name": "dev", "exactly": {"deviceClassName": device_class}}]}},
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"claims": [{"name": "dev"}]}}
                ],
                "resourceClaims": [{"name": "dev", "resourceClaimName": "c"}],
            },
        }
        cluster.apply(claim, pod)

        def entries() -> list[dict[str, Any]] | None:
            obj = cluster.get_json("resourceclaim", "c", "-n", namespace)
            return ((obj.get("status") or {}).get("devices")) or None

        [entry] = wait_until(entries, timeout=TIMEOUT, what="status.devices of claim c", describe=container.log)
        assert entry["driver"] == driver and entry["networkData"]["interfaceName"] == "eth" + entry["device"][-1]
        metrics = container.metrics()
        assert metrics.get('dra_kwok_claim_status_writes_total{result="written"}') == 1, metrics
        refused = [k for k, v in metrics.items() if v and ('code="403"' in k or 'code="422"' in k)]
        assert [k for k in refused if 'verb="probe"' not in k] == [], metrics  # probes learn the version
    finally:
        if container is not None:
            container.close()
        release.uninstall_without_hooks()
