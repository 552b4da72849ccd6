"""Karpenter end to end: Karpenter's KWOK provider (the release pinned in tools/go/karpenter, with
DRA support on: IGNORE_DRA_REQUESTS=false) launches KWOK nodes, our controller (installed by the
chart, run as a process with the chart's ServiceAccount) publishes their devices, pods with
ResourceClaims run on them, and the slices go when Karpenter removes the nodes.

What Karpenter does here, step by step, is documented in docs/karpenter.md; each step below asserts
the part of it that involves us. Some assertions pin down what Karpenter does NOT do yet (it never
annotates a KWOK NodeClaim with karpenter.sh/requested-dra-drivers, it does not launch a node for a
pod whose only unmet need is a device): if a Karpenter upgrade changes that, the test says so and
docs/karpenter.md needs updating.

Needs `make karpenter` (6.5 minutes cold on 2 cores), hence `slow`; `make test-slow` builds it.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dra_kwok.core.render import ANNOTATION_SOURCE, LABEL_MANAGED_BY
from tests.support.chart import Release
from tests.support.cluster import Cleanup, Cluster, KubectlError
from tests.support.controller import ControllerProcess
from tests.support.karpenter import (
    DRA_DRIVERS_ANNOTATION,
    DRA_GATE_REASON,
    INSTANCE_TYPE,
    KWOK_NODE_KEY,
    NO_INSTANCE_TYPE_FOR_CLAIMS,
    NODEPOOL_LABEL,
    KarpenterProcess,
    claim_template,
    complete_pools,
    condition,
    deployment,
    driver_values,
    force_remove,
    install_crds,
    kwok_node_class,
    node_pool,
    running_karpenter,
    standalone_node_claim,
    summarize,
)
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Two instance types of Karpenter's KWOK provider (kwok/cloudprovider/instance_types.json): one
# covered by a DRANodeOverlay, one only by the ConfigMap; a third one for the NodeClaim made by hand.
OVERLAY_TYPE = "c-4x-amd64-linux"
MAPPING_TYPE = "m-8x-amd64-linux"
GATE_TYPE = "c-2x-amd64-linux"
TAG_LABEL = "dra-kwok-test"
TIMEOUT = 90.0  # per step; each takes 1-30 s on a 2-core machine


class Flow:
    """One run's objects, named after its namespace so nothing clashes with other tests, and the
    helpers its steps share."""

    def __init__(self, cluster: Cluster, namespace: str, workdir: Path) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.workdir = workdir
        self.tag = namespace
        self.labels = {TAG_LABEL: namespace}
        self.selector = f"{TAG_LABEL}={namespace}"
        # Only the test's pods tolerate this, so Karpenter launches nothing from the NodePool for
        # anybody else's pending pods, and nobody else's pods land on these nodes.
        self.taint = {"key": "dra-kwok.test/karpenter-e2e", "value": namespace, "effect": "NoSchedule"}
        self.driver = f"gpu.{namespace}.e2e.dra-kwok.test"
        self.nodepool = f"e2e-{namespace}"
        self.nodeclass = f"e2e-{namespace}"
        self.overlay = f"{namespace}-c4x"
        self.gate_claim = f"gate-{namespace}"
        self.release = Release(cluster, f"dk-{namespace}", namespace, workdir)
        self.values = driver_values(self.driver, [self.mapping("m8x-gpus", MAPPING_TYPE, count=2)])
        self.managed_by = ""  # from the release's Deployment once installed
        self.karpenter: KarpenterProcess | None = None
        self.controller: ControllerProcess | None = None
        self.timings: dict[str, float] = {}

    # --- configuration --------------------------------------------------------------------------
    def mapping(self, name: str, instance_type: str, count: int) -> dict[str, Any]:
        return {
            "name": name,
            "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type, TAG_LABEL: self.tag}},
            "resourceSlice": {
                "devices": [
                    {"name": "gpu", "count": count, "attributes": {"model": "T4"}, "capacity": {"memory": "16Gi"}}
                ]
            },
        }

    def overlay_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "test.karpenter.sh/v1alpha1",
            "kind": "DRANodeOverlay",
            "metadata": {"name": self.overlay},
            "spec": {
                "weight": 10,
                "requirements": [
                    {"key": INSTANCE_TYPE, "operator": "In", "values": [OVERLAY_TYPE]},
                    {"key": TAG_LABEL, "operator": "In", "values": [self.tag]},
                ],
                "resourceSlices": [
                    {
                        "spec": {
                            "driver": self.driver,
                            "devices": [
                                {
                                    "name": "gpu-0",
                                    "attributes": {"model": {"string": "A100"}},
                                    "capacity": {"memory": {"value": "40Gi"}},
                                }
                            ],
                        }
                    }
                ],
            },
        }

    # --- reading --------------------------------------------------------------------------------
    def describe(self) -> str:
        text = summarize(self.cluster, self.ns, self.managed_by, self.selector)
        if self.karpenter is not None:
            text += "\n--- karpenter errors:\n" + "\n".join(self.karpenter.errors()[-20:])
        if self.controller is not None:
            text += "\n--- controller log:\n" + self.controller.log()[-5000:]
        return text

    def wait(self, probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        return wait_until(probe, timeout=timeout, what=what, describe=self.describe, interval=0.5)

    def pool_claims(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json("nodeclaims", "-l", f"{NODEPOOL_LABEL}={self.nodepool}")[
            "items"
        ]
        return items

    def slices_of(self, node: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json("resourceslices", "-l", f"{LABEL_MANAGED_BY}={self.managed_by}")["items"]
        return [s for s in items if s["spec"].get("nodeName") == node]

    def all_slices(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json(
            "resourceslices", "-l", f"{LABEL_MANAGED_BY}={self.managed_by}"
        )["items"]
        return items

    def has_one_complete_pool(self, node: str, devices: int) -> bool:
        return list(complete_pools(self.slices_of(node)).values()) == [devices]

    def pods(self, app: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json("pods", "-n", self.ns, "-l", f"app={app}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def running(self, app: str, replicas: int) -> list[dict[str, Any]] | None:
        pods = self.pods(app)
        ok = len(pods) == replicas and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    def allocation(self, pod: dict[str, Any]) -> tuple[str, str, str] | None:
        """(driver, pool, device) allocated to the pod's claim."""
        [status] = [s for s in pod["status"].get("resourceClaimStatuses") or [] if s["name"] == "dev"] or [None]
        if not status or not status.get("resourceClaimName"):
            return None
        claim = self.cluster.get_json("resourceclaim", status["resourceClaimName"], "-n", self.ns)
        results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
        if len(results) != 1:
            return None
        return results[0]["driver"], results[0]["pool"], results[0]["device"]

    def gone(self, kind: str, name: str) -> bool:
        try:
            self.cluster.kubectl("get", kind, name)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return True
            raise
        return False

    def karpenter_events(self, reason: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json("events", "-A", "--field-selector", f"reason={reason}")["items"]
        return [
            e for e in items if "karpenter" in (e.get("source", {}).get("component") or e.get("reportingComponent", ""))
        ]

    def step(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        print(f"step {name}: {self.timings[name]:.1f}s")

    # --- teardown -------------------------------------------------------------------------------
    def remove_karpenter_objects(self) -> None:
        """While Karpenter still runs: delete the NodePool and the hand-made NodeClaim and let it
        terminate their nodes (its finalizers); whatever is left is force-removed afterwards."""
        for kind, name in [("nodepool", self.nodepool), ("nodeclaim", self.gate_claim)]:
            self.cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        try:
            wait_until(
                lambda: not self.cluster.get_json("nodeclaims", "-l", self.selector)["items"],
                timeout=60,
                what="Karpenter to remove the test's NodeClaims",
            )
        except AssertionError as e:
            print(f"teardown: {e}")


@pytest.fixture
def flow(cluster: Cluster, namespace: str, cleanup: Cleanup, tmp_path: Path) -> Iterator[Flow]:
    """Karpenter and our controller running, the CRDs installed, the chart released with one
    ConfigMap mapping, the DRANodeOverlay, KWOKNodeClass and NodePool applied. Torn down in reverse,
    with Karpenter still running while its NodeClaims go."""
    f = Flow(cluster, namespace, tmp_path)
    started = time.monotonic()
    install_crds(cluster)
    with ExitStack() as stack:
        f.release.install(f.values)
        stack.callback(f.release.uninstall_without_hooks)
        ctl = f.release.controller()
        f.managed_by = ctl.managed_by
        f.controller = ctl.start()
        stack.callback(ctl.stop)
        cleanup.delete_later("dranodeoverlay", f.overlay)
        cleanup.delete_later("kwoknodeclass", f.nodeclass)
        # Last resort, after Karpenter has stopped: nothing of the test may stay behind with a finalizer.
        stack.callback(force_remove, cluster, "nodes", f.selector)
        stack.callback(force_remove, cluster, "nodeclaims", f.selector)
        f.karpenter = stack.enter_context(running_karpenter(cluster, tmp_path))
        stack.callback(f.remove_karpenter_objects)
        cluster.apply(
            f.overlay_object(),
            kwok_node_class(f.nodeclass),
            node_pool(f.nodepool, f.nodeclass, [OVERLAY_TYPE, MAPPING_TYPE], f.labels, f.taint),
            claim_template("gpu", namespace, f.driver),
        )
        f.wait(
            lambda: condition(cluster.get_json("nodepool", f.nodepool), "Ready").get("status") == "True",
            f"NodePool {f.nodepool} to become Ready",
        )
        f.step("setup", started)
        yield f
    print("timings: " + json.dumps({k: round(v, 1) for k, v in f.timings.items()}))


def test_karpenter_launches_kwok_nodes_that_get_our_devices_and_removes_them_with_their_slices(flow: Flow) -> None:
    f, cluster, ns = flow, flow.cluster, flow.ns
    total = time.monotonic()

    # The chart's DeviceClass (named after the driver) exists: the claims below use it.
    cluster.kubectl("get", "deviceclass", f.driver)

    # 1. Ordinary pending pods (no DRA) make Karpenter launch one node of each instance type.
    t = time.monotonic()
    for app, itype in [("plain-overlay", OVERLAY_TYPE), ("plain-mapping", MAPPING_TYPE)]:
        cluster.apply(deployment(app, ns, 1, {INSTANCE_TYPE: itype, **f.labels}, f.taint, cpu="1"))

    def launched() -> dict[str, dict[str, Any]] | None:
        claims = f.pool_claims()
        by_type = {c["metadata"]["labels"].get(INSTANCE_TYPE): c for c in claims}
        if set(by_type) != {OVERLAY_TYPE, MAPPING_TYPE} or len(claims) != 2:
            return None
        if not all(condition(c, "Initialized").get("status") == "True" for c in claims):
            return None
        if not (f.running("plain-overlay", 1) and f.running("plain-mapping", 1)):
            return None
        return by_type

    claims = f.wait(launched, f"Karpenter to launch and initialize a {OVERLAY_TYPE} and a {MAPPING_TYPE} NodeClaim")
    nodes = {itype: c["status"]["nodeName"] for itype, c in claims.items()}
    for itype, claim in claims.items():
        node = cluster.get_json("node", nodes[itype])
        labels, annotations = node["metadata"]["labels"], node["metadata"]["annotations"]
        assert labels[INSTANCE_TYPE] == itype and labels[TAG_LABEL] == f.tag, labels
        assert labels[KWOK_NODE_KEY] == "fake" and annotations[KWOK_NODE_KEY] == "fake", (labels, annotations)
        assert labels.get("karpenter.sh/initialized") == "true", labels
        # Observed with Karpenter v1.14.1: the annotation is only set for drivers whose devices the
        # scheduling simulation allocated on the new NodeClaim, which needs the instance type's
        # DynamicResources, which the KWOK provider never sets. So the DRA gate never applies to the
        # NodeClaims Karpenter launches here (step 5 exercises it with a NodeClaim made by hand).
        assert DRA_DRIVERS_ANNOTATION not in claim["metadata"].get("annotations", {}), (
            f"Karpenter now annotates KWOK NodeClaims with {DRA_DRIVERS_ANNOTATION}: "
            f"{claim['metadata']['annotations']}; update docs/karpenter.md and this test"
        )
    f.step("1-launch", t)

    # 2. Our controller publishes a complete pool for each: the overlay's devices for one, the
    # ConfigMap mapping's for the other, each slice owned by its Node.
    t = time.monotonic()
    expected = {
        OVERLAY_TYPE: (["gpu-0"], f"overlay/{f.overlay}"),
        MAPPING_TYPE: (["gpu-0", "gpu-1"], "mapping/m8x-gpus"),
    }
    pools: dict[str, str] = {}  # pool name -> instance type
    for itype, (devices, source) in expected.items():
        node, n = nodes[itype], len(devices)
        f.wait(
            functools.partial(f.has_one_complete_pool, node, n),
            f"one complete pool of {len(devices)} device(s) for the {itype} node {node}",
            timeout=30,
        )
        [slice_] = f.slices_of(node)
        assert slice_["spec"]["driver"] == f.driver
        assert sorted(d["name"] for d in slice_["spec"]["devices"]) == devices
        assert slice_["metadata"]["annotations"][ANNOTATION_SOURCE] == source
        [owner] = slice_["metadata"]["ownerReferences"]
        node_uid = cluster.get_json("node", node)["metadata"]["uid"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", node, node_uid), owner
        pools[slice_["spec"]["pool"]["name"]] = itype
    f.wait(
        lambda: (cluster.get_json("dranodeoverlay", f.overlay).get("status") or {}).get("matchedNodes") == 1,
        f"DRANodeOverlay {f.overlay} to report 1 matched node",
        timeout=30,
    )
    f.step("2-slices", t)

    # 3. Pods with ResourceClaims are scheduled onto those nodes and run: 3 devices, 3 pods.
    t = time.monotonic()
    cluster.apply(deployment("dra", ns, 3, f.labels, f.taint, claim_template="gpu"))
    dra_pods = f.wait(lambda: f.running("dra", 3), "3 DRA pods running")
    allocations = {
        p["metadata"]["name"]: f.wait(functools.partial(f.allocation, p), "claim allocation") for p in dra_pods
    }
    used = Counter(pools.get(pool, pool) for driver, pool, _ in allocations.values() if driver == f.driver)
    assert used == {OVERLAY_TYPE: 1, MAPPING_TYPE: 2}, f"devices allocated per instance type: {used}; {allocations}"
    f.step("3-dra-pods", t)

    # 4. A fourth DRA pod has nothing but a device missing: Karpenter does not launch a node for it
    # (the KWOK provider's instance types declare no devices) and says so in an event.
    t = time.monotonic()
    cluster.kubectl("scale", "deployment", "dra", "-n", ns, "--replicas=4")
    pending = f.wait(
        lambda: [p for p in f.pods("dra") if p["status"].get("phase") == "Pending"] or None, "the 4th DRA pod"
    )[0]
    pending_name = pending["metadata"]["name"]

    def karpenter_gave_up() -> dict[str, Any] | None:
        events = cluster.get_json("events", "-n", ns, "--field-selector", f"involvedObject.name={pending_name}")
        for e in events["items"]:
            source = e.get("source", {}).get("component") or e.get("reportingComponent", "")
            if source == "karpenter" and NO_INSTANCE_TYPE_FOR_CLAIMS in e.get("message", ""):
                return dict(e)
        return None

    event = f.wait(karpenter_gave_up, f"Karpenter's FailedScheduling event for {pending_name}")
    assert event["reason"] == "FailedScheduling", event
    assert len(f.pool_claims()) == 2, f"Karpenter launched a node for a pod needing only a device:\n{f.describe()}"
    f.step("4-device-only-pod", t)

    # 5. The DRA initialization gate, with a NodeClaim made by hand that names our driver: Karpenter
    # holds it at Initialized=Unknown/DRADriverPoolsNotPublished while no configuration covers its
    # instance type, and initializes it once a ConfigMap mapping (helm upgrade) makes our controller
    # publish a complete pool, here of 200 devices in two slices.
    t = time.monotonic()
    cluster.apply(standalone_node_claim(f.gate_claim, f.nodeclass, GATE_TYPE, f.labels, f.taint, [f.driver]))

    def gated() -> dict[str, Any] | None:
        claim = cluster.get_json("nodeclaim", f.gate_claim)
        init = condition(claim, "Initialized")
        if condition(claim, "Registered").get("status") == "True" and init.get("reason") == DRA_GATE_REASON:
            return dict(claim)
        return None

    gate = f.wait(gated, f"NodeClaim {f.gate_claim} registered and held at {DRA_GATE_REASON}")
    gate_node = gate["status"]["nodeName"]
    init = condition(gate, "Initialized")
    assert init["status"] == "Unknown" and f.driver in init["message"], init
    node = cluster.get_json("node", gate_node)
    assert condition(node, "Ready").get("status") == "True", "the gate's node is not Ready: kwok should have done it"
    assert f.slices_of(gate_node) == [], "slices for a node no configuration covers"
    time.sleep(3)  # still held a moment later: nothing but our pool can release it
    assert condition(cluster.get_json("nodeclaim", f.gate_claim), "Initialized").get("reason") == DRA_GATE_REASON
    assert f.pods("dra") and any(p["status"].get("phase") == "Pending" for p in f.pods("dra"))

    mappings = [*f.values["config"]["mappings"], f.mapping("c2x-gpus", GATE_TYPE, count=200)]
    f.release.install({**f.values, "config": {"driver": f.driver, "mappings": mappings}}, action="upgrade")
    f.wait(
        lambda: condition(cluster.get_json("nodeclaim", f.gate_claim), "Initialized").get("status") == "True",
        f"NodeClaim {f.gate_claim} to become Initialized once our pool is published",
    )
    gate_slices = f.slices_of(gate_node)
    assert list(complete_pools(gate_slices).values()) == [200], gate_slices
    assert len(gate_slices) == 2, [s["metadata"]["name"] for s in gate_slices]
    initialized_at = condition(cluster.get_json("nodeclaim", f.gate_claim), "Initialized")["lastTransitionTime"]
    published_at = max(s["metadata"]["creationTimestamp"] for s in gate_slices)
    assert initialized_at >= published_at, (
        f"initialized at {initialized_at}, before the pool was complete at {published_at}"
    )
    # And the pod that was waiting for a device runs there now.
    dra_pods = f.wait(lambda: f.running("dra", 4), "all 4 DRA pods running (the 4th on the gate's node)")
    [fourth] = [p for p in dra_pods if p["spec"]["nodeName"] == gate_node]
    allocated = f.wait(lambda: f.allocation(fourth), "the 4th pod's allocation")
    assert allocated[0] == f.driver and allocated[1] == gate_slices[0]["spec"]["pool"]["name"], allocated
    assert len(f.pool_claims()) == 2, "Karpenter launched more NodeClaims from the NodePool"
    f.step("5-dra-gate", t)

    # 6. Scaled to zero, the NodePool's nodes are empty: Karpenter's consolidation removes them, and
    # their slices go with them. The hand-made NodeClaim goes when deleted, its slices too.
    t = time.monotonic()
    for app in ("plain-overlay", "plain-mapping", "dra"):
        cluster.kubectl("scale", "deployment", app, "-n", ns, "--replicas=0")
    pool_nodes = set(nodes.values())
    claim_names = {c["metadata"]["name"] for c in claims.values()}
    f.wait(
        lambda: not f.pool_claims() and all(f.gone("node", n) for n in pool_nodes),
        "Karpenter to consolidate the empty NodePool nodes away",
        timeout=120,
    )
    assert not [s for s in f.all_slices() if s["spec"].get("nodeName") in pool_nodes], "slices outlived their nodes"
    disrupted = {
        e["involvedObject"]["name"]
        for e in f.karpenter_events("DisruptionTerminating")
        if e["involvedObject"]["kind"] == "NodeClaim"
    }
    assert claim_names <= disrupted, f"not removed by Karpenter's disruption: {claim_names - disrupted}"
    f.wait(
        lambda: (cluster.get_json("dranodeoverlay", f.overlay).get("status") or {}).get("matchedNodes") == 0,
        f"DRANodeOverlay {f.overlay} to report 0 matched nodes",
        timeout=30,
    )
    cluster.kubectl("delete", "nodeclaim", f.gate_claim, "--wait=false")
    f.wait(
        lambda: f.gone("nodeclaim", f.gate_claim) and f.gone("node", gate_node) and not f.slices_of(gate_node),
        f"NodeClaim {f.gate_claim}, its node and its slices to be gone",
    )
    assert f.all_slices() == [], f"slices left: {[s['metadata']['name'] for s in f.all_slices()]}"
    f.step("6-removal", t)
    f.step("flow", total)
