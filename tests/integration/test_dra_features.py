"""Every DRA feature the driver publishes, decided by the real control plane of the version under
test: the controller publishes from a DRANodeOverlay, kube-scheduler allocates (or refuses),
kube-controller-manager evicts and deallocates, kwok runs the pods.

`make test-versions` runs these on every supported minor (1.34 to 1.37); where the API differs
between minors (the slice layout of shared counters, the taint effect `None`), the expectation
follows the version the apiserver reports. Each test has its own driver, DeviceClass, node and
overlay, so tests never allocate each other's devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Scenario
from tests.support.cluster import CLUSTER_SH, Cluster, KubectlError, cluster_settings, expected_kube_version
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.versions]

TIMEOUT = 60.0  # seconds for each scheduling / eviction step; a few seconds on an idle machine
PAUSE = "registry.k8s.io/pause:3.10"


# --- building blocks ------------------------------------------------------------------------------
class World:
    """One test's driver, DeviceClass, KWOK node and overlay on top of its Scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.cluster = scenario.cluster
        self.ns = scenario.namespace
        self.driver = f"{scenario.unique('gpu')}.dra-kwok.test"
        self.device_class = scenario.unique("dc")
        self.node = scenario.unique("kwok-dra")
        self.pool = f"{self.node}-device-pool"
        self.overlay_name = scenario.unique("overlay")

    def start(
        self, devices: list[dict[str, Any]], class_spec: dict[str, Any] | None = None, **template: Any
    ) -> list[dict[str, Any]]:
        """The node, the overlay (devices plus extra template fields such as sharedCounters) and a
        DeviceClass of our driver (`class_spec` adds to its spec); returns the node's slices once
        the pool is complete."""
        self.scenario.node(self.node)
        self.set_overlay(devices, **template)
        self.scenario.cleanup.delete_later("deviceclass", self.device_class)
        self.cluster.apply(self.device_class_obj(**(class_spec or {})))
        return self.wait_pool(lambda devs: len(devs) == sum(d.get("count", 1) for d in devices))

    def set_overlay(self, devices: list[dict[str, Any]], **template: Any) -> None:
        spec = self.scenario.overlay_spec(devices, driver=self.driver)
        spec["resourceSlices"][0]["spec"].update(template)
        self.scenario.overlay(self.overlay_name, spec)

    def device_class_obj(self, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": self.device_class},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{self.driver}"'}}], **spec},
        }

    def slices(self) -> list[dict[str, Any]]:
        return [s for s in self.scenario.slices(self.node) if s["spec"]["driver"] == self.driver]

    def wait_pool(self, devices_ok: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """The node's slices of our driver once they form a complete pool whose devices satisfy
        `devices_ok`."""

        def complete() -> list[dict[str, Any]] | None:
            slices = self.slices()
            if not slices or {s["spec"]["pool"]["resourceSliceCount"] for s in slices} != {len(slices)}:
                return None
            if len({s["spec"]["pool"]["generation"] for s in slices}) != 1:
                return None
            devices = [d for s in slices for d in s["spec"].get("devices") or []]
            return slices if devices_ok(devices) else None

        return wait_until(
            complete,
            timeout=15,
            what=f"the pool of {self.driver} on {self.node}",
            describe=lambda: self.describe("resourceslices", "dranodeoverlay/" + self.overlay_name),
        )

    # --- claims and pods -----------------------------------------------------------------------
    def claim(self, name: str, **request: Any) -> dict[str, Any]:
        """A ResourceClaim for one device of our class (`request` adds e.g. tolerations)."""
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "devices": {"requests": [{"name": "dev", "exactly": {"deviceClassName": self.device_class, **request}}]}
            },
        }

    def pod(self, name: str, claim: str | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
        """A pod on our node using ResourceClaim `claim`, or requesting extended resources."""
        resources: dict[str, Any] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
        spec: dict[str, Any] = {
            "nodeSelector": {"kubernetes.io/hostname": self.node},
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": PAUSE, "resources": resources}],
        }
        if claim:
            resources["claims"] = [{"name": "dev"}]
            spec["resourceClaims"] = [{"name": "dev", "resourceClaimName": claim}]
        if limits:
            resources["limits"] = limits
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": self.ns}, "spec": spec}

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.cluster.get_json(kind, name, "-n", self.ns)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return None
            raise
        return obj

    def describe(self, *refs: str) -> str:
        """Namespaced kinds (pods, resourceclaims, events) from the test namespace, plus slices
        and the overlay; for failure messages."""
        out = []
        for ref in refs or ("pods", "resourceclaims", "events"):
            try:
                if ref == "resourceslices":
                    out.append(json.dumps(self.slices(), indent=1))
                elif ref.startswith("dranodeoverlay/"):
                    out.append(self.cluster.kubectl("get", ref, "-o", "yaml"))
                else:
                    out.append(self.cluster.kubectl("get", ref, "-n", self.ns, "-o", "yaml"))
            except Exception as e:
                out.append(f"{ref}: {e}")
        return "\n---\n".join(out)

    def wait_running(self, *pods: str) -> list[dict[str, Any]]:
        def running() -> list[dict[str, Any]] | None:
            objs = [self.get("pod", p) for p in pods]
            ok = [o for o in objs if o and o["status"].get("phase") == "Running" and o["spec"]["nodeName"] == self.node]
            return ok if len(ok) == len(pods) else None

        return wait_until(running, timeout=TIMEOUT, what=f"pods {', '.join(pods)} to run on {self.node}",
                          describe=self.describe)  # fmt: skip

    def wait_unschedulable(self, pod: str) -> dict[str, Any]:
        """The scheduler's verdict: PodScheduled=False, reason Unschedulable."""

        def unschedulable() -> dict[str, Any] | None:
            obj = self.get("pod", pod)
            conds = (obj or {}).get("status", {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "PodScheduled" and c["reason"] == "Unschedulable"), None)

        cond = wait_until(unschedulable, timeout=TIMEOUT, what=f"pod {pod} to be unschedulable", describe=self.describe)
        obj = self.get("pod", pod)
        assert obj is not None and not obj["spec"].get("nodeName"), self.describe()
        return cond

    def allocated_device(self, claim: str) -> str:
        obj = self.get("resourceclaim", claim)
        assert obj is not None, f"no claim {claim}"
        [result] = obj["status"]["allocation"]["devices"]["results"]
        assert (result["driver"], result["pool"]) == (self.driver, self.pool), result
        return str(result["device"])

    def allocation(self, claim: str) -> dict[str, Any] | None:
        obj = self.get("resourceclaim", claim)
        return ((obj or {}).get("status") or {}).get("allocation")

    def events_for(self, pod: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json(
            "events", "-n", self.ns, "--field-selector", f"involvedObject.kind=Pod,involvedObject.name={pod}"
        )["items"]
        return items


@pytest.fixture
def world(scenario: Scenario, controller: ControllerProcess) -> World:
    return World(scenario)


def ready_condition(cluster: Cluster, overlay: str) -> dict[str, Any] | None:
    status = cluster.get_json("dranodeoverlay", overlay).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def taint(key: str, effect: str) -> dict[str, str]:
    return {"key": key, "value": "true", "effect": effect}


# --- the cluster itself ---------------------------------------------------------------------------
def test_the_cluster_runs_the_kubernetes_version_asked_for(cluster: Cluster) -> None:
    """KUBE_VERSION (or hack/versions.env's default) picks the binaries of every control-plane
    component, not just kubectl's: the apiserver says so, and each process runs from that
    version's cache directory."""
    version = expected_kube_version()
    assert cluster.server_version() == version, (
        f"the cluster runs {cluster.server_version()}, KUBE_VERSION says {version}"
        " (reusing a cluster through DRA_KWOK_KUBECONFIG? set KUBE_VERSION to its version)"
    )
    kwok_dir = cluster.kwok_dir()
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pid = (kwok_dir / "pids" / f"{component}.pid").read_text().strip()
        exe = os.readlink(f"/proc/{pid}/exe")
        assert exe.endswith(f"/kubernetes-{version}/{component}"), (component, exe)


def test_an_unsupported_kubernetes_version_is_refused_before_anything_starts(tmp_path: Path) -> None:
    for version in ("1.33.5", "1.38.0", "2.0.0", "latest"):
        proc = subprocess.run(
            [str(CLUSTER_SH), "up", "--name", "dra-kwok-never-started", "--dir", str(tmp_path / "c")],
            env={**os.environ, "KUBE_VERSION": version},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc
        assert f"KUBE_VERSION={version} is not supported" in proc.stderr and "1.34 to 1.37" in proc.stderr
        assert not (tmp_path / "c").exists()
    # The table of the supported ones: what each minor needs, and extra gates merged over it.
    alpha = {
        "DRAPartitionableDevices",
        "DRADeviceTaints",
        "DRAConsumableCapacity",
        "DRADeviceBindingConditions",
        "DRAExtendedResource",
    }
    for version, gates, runtime_config in (
        ("1.34.4", alpha, "resource.k8s.io/v1alpha3=true"),
        ("1.35.4", alpha, ""),
        ("1.36.3", set(), ""),
        ("1.37.2", set(), ""),
    ):
        settings = cluster_settings({"KUBE_VERSION": version, "DRA_KWOK_FEATURE_GATES": ""})
        on = {g.removesuffix("=true") for g in settings["feature-gates"].split(",") if g}
        assert (settings["KUBE_VERSION"], on, settings["runtime-config"]) == (version, gates, runtime_config)
    off = cluster_settings({"KUBE_VERSION": "1.34.4", "DRA_KWOK_FEATURE_GATES": "DRADeviceTaints=false"})
    assert "DRADeviceTaints=false" in off["feature-gates"].split(",")
    assert "DRADeviceTaints=true" not in off["feature-gates"] and off["runtime-config"] == ""


# --- partitionable devices ------------------------------------------------------------------------
def test_shared_counters_limit_partitions_and_the_slices_fit_the_version(world: World) -> None:
    parts = {
        "name": "part",
        "count": 3,
        "capacity": {"memory": "2Gi"},
        "consumesCounters": [{"counterSet": "mem", "counters": {"memory": "2Gi"}}],
    }
    slices = world.start([parts], sharedCounters=[{"name": "mem", "counters": {"memory": "4Gi"}}])
    counters = [{"name": "mem", "counters": {"memory": {"value": "4Gi"}}}]
    if world.cluster.minor() == 34:
        # 1.34: a device consumes only counters of its own slice.
        [one] = slices
        assert one["spec"]["sharedCounters"] == counters
        assert [d["name"] for d in one["spec"]["devices"]] == ["part-0", "part-1", "part-2"]
    else:
        # 1.35+: a slice has devices or sharedCounters, never both.
        assert len(slices) == 2, slices
        [with_counters] = [s for s in slices if s["spec"].get("sharedCounters")]
        [with_devices] = [s for s in slices if s["spec"].get("devices")]
        assert with_counters["spec"]["sharedCounters"] == counters and not with_counters["spec"].get("devices")
        assert [d["name"] for d in with_devices["spec"]["devices"]] == ["part-0", "part-1", "part-2"]
    for device in (d for s in slices for d in s["spec"].get("devices") or []):
        assert device["consumesCounters"] == [{"counterSet": "mem", "counters": {"memory": {"value": "2Gi"}}}]

    cluster = world.cluster
    cluster.apply(*(world.claim(f"c{i}") for i in range(3)))
    cluster.apply(world.pod("p0", "c0"), world.pod("p1", "c1"))
    world.wait_running("p0", "p1")
    assert world.allocated_device("c0") != world.allocated_device("c1")
    # Two partitions of 2Gi hold all 4Gi are taken: the third partition exists but its counters do not.
    cluster.apply(world.pod("p2", "c2"))
    world.wait_unschedulable("p2")
    assert world.allocation("c2") is None, world.describe()

    # Freeing one partition's counters lets the third pod run (so counters were what stopped it).
    cluster.kubectl("delete", "pod", "p0", "-n", world.ns, "--wait=false")
    wait_until(lambda: world.allocation("c0") is None, timeout=TIMEOUT, what="claim c0 to be deallocated",
               describe=world.describe)  # fmt: skip
    world.wait_running("p1", "p2")
    assert len({world.allocated_device("c1"), world.allocated_device("c2")}) == 2


# --- consumable capacity ------------------------------------------------------------------------
def test_a_device_with_consumable_capacity_is_shared_until_its_capacity_is_used_up(world: World) -> None:
    shared = {
        "name": "shared",
        "allowMultipleAllocations": True,
        "capacity": {"memory": {"value": "16Gi", "requestPolicy": {"default": "8Gi", "validRange": {"min": "1Gi"}}}},
    }
    [slice_] = world.start([shared])
    [device] = slice_["spec"]["devices"]
    assert device["allowMultipleAllocations"] is True, device
    assert device["capacity"]["memory"]["requestPolicy"]["default"] == "8Gi", device

    cluster = world.cluster
    capacity = {"capacity": {"requests": {"memory": "8Gi"}}}
    cluster.apply(*(world.claim(f"c{i}", **capacity) for i in range(3)))
    cluster.apply(world.pod("p0", "c0"), world.pod("p1", "c1"))
    world.wait_running("p0", "p1")
    for claim in ("c0", "c1"):
        assert world.allocated_device(claim) == "shared"
        allocation = world.allocation(claim)
        assert allocation is not None
        [result] = allocation["devices"]["results"]
        assert result["consumedCapacity"] == {"memory": "8Gi"} and result.get("shareID"), result
    # 16Gi hold two 8Gi shares; a third finds the one device full.
    cluster.apply(world.pod("p2", "c2"))
    world.wait_unschedulable("p2")
    assert world.allocation("c2") is None, world.describe()


# --- device taints --------------------------------------------------------------------------------
def test_a_noschedule_taint_keeps_a_device_from_claims_that_do_not_tolerate_it(world: World) -> None:
    world.start([{"name": "tainted", "taints": [taint("example.com/broken", "NoSchedule")]}])
    [device] = [d for s in world.slices() for d in s["spec"]["devices"]]
    assert [(t["key"], t["effect"]) for t in device["taints"]] == [("example.com/broken", "NoSchedule")]

    cluster = world.cluster
    toleration = {"key": "example.com/broken", "operator": "Exists", "effect": "NoSchedule"}
    cluster.apply(world.claim("intolerant"), world.claim("tolerant", tolerations=[toleration]))
    cluster.apply(world.pod("intolerant", "intolerant"))
    world.wait_unschedulable("intolerant")
    assert world.allocation("intolerant") is None, world.describe()

    cluster.apply(world.pod("tolerant", "tolerant"))
    world.wait_running("tolerant")
    assert world.allocated_device("tolerant") == "tainted"
    assert world.allocation("intolerant") is None, world.describe()


def test_a_noexecute_taint_added_to_an_allocated_device_evicts_its_pod(world: World) -> None:
    world.start([{"name": "gpu"}])
    cluster = world.cluster
    cluster.apply(world.claim("c"), world.pod("victim", "c"))
    world.wait_running("victim")
    assert world.allocated_device("c") == "gpu"

    # The overlay changes; the driver republishes the device with a NoExecute taint.
    world.set_overlay([{"name": "gpu", "taints": [taint("example.com/failing", "NoExecute")]}])
    world.wait_pool(lambda devs: [t["effect"] for d in devs for t in d.get("taints") or []] == ["NoExecute"])

    # kube-controller-manager's device-taint-eviction controller deletes the pod (kwok completes
    # the deletion, there is no kubelet) and the claim is released.
    wait_until(lambda: world.get("pod", "victim") is None, timeout=TIMEOUT, what="the pod to be evicted",
               describe=world.describe)  # fmt: skip
    events = world.events_for("victim")
    assert any(e["reason"] == "DeviceTaintManagerEviction" for e in events), events
    wait_until(lambda: world.allocation("c") is None, timeout=TIMEOUT, what="the claim to be deallocated",
               describe=world.describe)  # fmt: skip


def test_a_taint_with_effect_none_is_published_from_1_35_and_refused_on_1_34(
    world: World, controller: ControllerProcess
) -> None:
    devices = [{"name": "noted", "taints": [taint("example.com/degraded", "None")]}]
    if world.cluster.minor() >= 35:
        world.start(devices)
        [device] = [d for s in world.slices() for d in s["spec"]["devices"]]
        assert [(t["key"], t["effect"]) for t in device["taints"]] == [("example.com/degraded", "None")]
        # `None` only informs: a claim without any toleration gets the device.
        world.cluster.apply(world.claim("c"), world.pod("p", "c"))
        world.wait_running("p")
        assert world.allocated_device("c") == "noted"
        return

    # 1.34's apiserver knows only NoSchedule and NoExecute: the driver says so on the overlay
    # and publishes nothing from it, without sending the apiserver a slice it would reject.
    world.scenario.node(world.node)
    world.set_overlay(devices)

    def refused() -> dict[str, Any] | None:
        ready = ready_condition(world.cluster, world.overlay_name)
        return ready if ready and ready["status"] == "False" else None

    ready = wait_until(refused, timeout=15, what="the overlay to be refused (Ready=False)",
                       describe=lambda: world.describe("dranodeoverlay/" + world.overlay_name))  # fmt: skip
    assert "1.34" in ready["message"] and "None" in ready["message"], ready
    time.sleep(2)  # a slice written after the condition would show by now
    assert world.slices() == [], world.slices()
    requests = {k: v for k, v in controller.metrics().items() if k.startswith("dra_kwok_api_requests_total{")}
    assert any('code="200"' in k and v for k, v in requests.items()), requests  # the metric does count
    assert sum(v for k, v in requests.items() if 'code="422"' in k and 'verb="probe"' not in k) == 0, requests


# --- binding conditions ---------------------------------------------------------------------------
def test_binding_conditions_hold_the_pod_until_the_device_reports_attached(world: World) -> None:
    world.start(
        [
            {
                "name": "fabric",
                "bindsToNode": True,
                "bindingConditions": ["example.com/attached"],
                "bindingFailureConditions": ["example.com/failed"],
            }
        ]
    )
    [device] = [d for s in world.slices() for d in s["spec"]["devices"]]
    assert device["bindingConditions"] == ["example.com/attached"] and device["bindsToNode"] is True, device

    cluster = world.cluster
    cluster.apply(world.claim("c"), world.pod("waits", "c"))
    allocation = wait_until(lambda: world.allocation("c"), timeout=TIMEOUT, what="the claim to be allocated",
                            describe=world.describe)  # fmt: skip
    [result] = allocation["devices"]["results"]
    assert result["bindingConditions"] == ["example.com/attached"], result
    assert result["bindingFailureConditions"] == ["example.com/failed"], result
    # bindsToNode: the allocation is pinned to the node.
    terms = allocation["nodeSelector"]["nodeSelectorTerms"]
    assert world.node in json.dumps(terms), allocation

    # kube-scheduler's PreBind waits (polling every 5 s, up to its 600 s BindingTimeout) for the
    # condition; it says so in an Event, and the pod stays unbound however long we look.
    wait_until(
        lambda: any(e["reason"] == "BindingConditionsPending" for e in world.events_for("waits")),
        timeout=TIMEOUT,
        what="the scheduler's BindingConditionsPending event",
        describe=world.describe,
    )
    time.sleep(12)  # two of the scheduler's polls
    pod = world.get("pod", "waits")
    assert pod is not None and not pod["spec"].get("nodeName"), pod

    # What a real driver's controller would do once the device is attached.
    status = {
        "driver": result["driver"],
        "pool": result["pool"],
        "device": result["device"],
        "conditions": [
            {
                "type": "example.com/attached",
                "status": "True",
                "reason": "Attached",
                "message": "attached by the test",
                "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ],
    }
    cluster.kubectl(
        "patch", "resourceclaim", "c", "-n", world.ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"devices": [status]}}),
    )  # fmt: skip
    [pod] = world.wait_running("waits")
    assert pod["spec"]["nodeName"] == world.node


# --- extended resources ---------------------------------------------------------------------------
def test_an_extended_resource_request_is_served_from_the_published_devices(world: World) -> None:
    resource = f"{world.driver}/gpu"
    world.start([{"name": "gpu", "count": 2}], class_spec={"extendedResourceName": resource})
    stored = world.cluster.get_json("deviceclass", world.device_class)
    assert stored["spec"].get("extendedResourceName") == resource, stored  # dropped if the gate is off

    world.cluster.apply(world.pod("plain", limits={resource: "1"}))
    [pod] = world.wait_running("plain")
    # The scheduler made a claim for the pod's extended resource and allocated it from our pool.
    claims = world.cluster.get_json("resourceclaims", "-n", world.ns)["items"]
    [claim] = [c for c in claims if (c["status"].get("allocation") or {}).get("devices")]
    [result] = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"]) == (world.driver, world.pool), claim
    assert result["device"] in ("gpu-0", "gpu-1")
    assert [r["name"] for r in claim["status"].get("reservedFor") or []] == ["plain"], claim
    status = pod["status"].get("extendedResourceClaimStatus") or {}
    assert status.get("resourceClaimName") == claim["metadata"]["name"], pod["status"]
