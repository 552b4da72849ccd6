"""Karpenter end to end: Karpenter's KWOK provider (the release pinned in tools/go/karpenter, with
DRA support on: IGNORE_DRA_REQUESTS=false) launches KWOK nodes, our controller (installed by the
chart, run as a process with the chart's ServiceAccount) publishes their devices, pods with
ResourceClaims run on them, and the slices go when Karpenter removes the nodes.

What Karpenter does here, step by step, is documented in docs/karpenter.md; each step below asserts
the part of it that involves us. Some assertions pin down what Karpenter does NOT do yet (it never
annotates a KWOK NodeClaim with karpenter.sh/requested-dra-drivers, it does not launch a node for a
pod whose only unmet need is a device): if a Karpenter upgrade changes that, the test says so and
docs/karpenter.md needs updating.

Needs `make karpenter` (v1.15.0: 3.5 minutes cold on 2 cores, plus the go1.27.3 toolchain and the
modules on a fresh machine), hence `slow`; `make test-slow` builds it.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from typing import Any

import pytest

from dra_kwok.core.render import ANNOTATION_SOURCE
from tests.support.karpenter import (
    DRA_DRIVERS_ANNOTATION,
    DRA_GATE_REASON,
    INSTANCE_TYPE,
    KWOK_NODE_KEY,
    NO_INSTANCE_TYPE_FOR_CLAIMS,
    complete_pools,
    condition,
    deployment,
    standalone_node_claim,
)
from tests.support.karpenter_flow import GATE_TYPE, MAPPING_TYPE, OVERLAY_TYPE, TAG_LABEL, Flow, flow

__all__ = ["flow"]  # the fixture

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


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
        # Observed with Karpenter v1.14.1 and v1.15.0: the annotation is only set for drivers whose devices the
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
