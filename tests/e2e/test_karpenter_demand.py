"""Seed 001's workflow with the newest Karpenter: a Deployment whose pods need a device, on a
NodePool with no nodes, and what Karpenter (the release pinned in tools/go/karpenter, built by
`make karpenter`) makes of it, with the user writing one DRANodeOverlay.

(a) Devices requested as an extended resource (`resources.requests`, the DeviceClass naming it in
    `extendedResourceName`): our controller derives a Karpenter NodeOverlay from the DRANodeOverlay
    (capacity = its device count), Karpenter launches a node of the overlay's instance type, we
    publish its devices, the pods run. But the KWOK provider writes the NodeClaim's requests,
    the extended resource included, into the Node's allocatable, so kube-scheduler counts the
    resource from the Node and never asks DRA: no device of our slices is allocated. Pinned down
    below; when Karpenter changes, the test says so.
(b) Devices requested through a ResourceClaimTemplate: Karpenter plans claims with the instance
    types' ResourceSlice templates, which the KWOK provider never fills, and launches nothing.
    The closest working path, tested: a static NodePool (`spec.replicas`) brings the nodes up, and
    both kinds of pods run there with devices allocated from our slices.

docs/karpenter.md tells the same story step by step, with the Karpenter code that decides each
block and the timings these tests print.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dra_kwok.core.node_overlays import IMPLICIT_PREFIX, node_overlay_name
from tests.support.cluster import KubectlError
from tests.support.karpenter import (
    DRA_DRIVERS_ANNOTATION,
    INSTANCE_TYPE,
    NO_INSTANCE_TYPE_FOR_CLAIMS,
    NO_INSTANCE_TYPE_WITH_RESOURCES,
    NODEPOOL_LABEL,
    complete_pools,
    condition,
    deployment,
    static_node_pool,
)
from tests.support.karpenter_flow import OVERLAY_TYPE, Flow, flow

__all__ = ["flow"]  # the fixture

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DEVICES = 4  # per node of OVERLAY_TYPE, from the DRANodeOverlay


def node_claims(f: Flow, pool: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = f.cluster.get_json("nodeclaims", "-l", f"{NODEPOOL_LABEL}={pool}")["items"]
    return [c for c in items if not c["metadata"].get("deletionTimestamp")]


def launched_node(f: Flow, pool: str, app: str, replicas: int) -> tuple[dict[str, Any], str] | None:
    """The one Initialized NodeClaim of `pool`, of OVERLAY_TYPE, and its node, once `replicas`
    pods of `app` run there."""
    claims = node_claims(f, pool)
    if len(claims) != 1 or condition(claims[0], "Initialized").get("status") != "True":
        return None
    node = claims[0]["status"].get("nodeName")
    pods = f.running(app, replicas)
    if not node or not pods or any(p["spec"]["nodeName"] != node for p in pods):
        return None
    return claims[0], node


def extended_claim(f: Flow, pod: dict[str, Any]) -> tuple[str, str] | None:
    """(pool, device) of the claim kube-scheduler made for the pod's extended resource, if any."""
    fresh = f.cluster.get_json("pod", pod["metadata"]["name"], "-n", f.ns)
    status = (fresh.get("status") or {}).get("extendedResourceClaimStatus")
    if not status:
        return None
    claim = f.cluster.get_json("resourceclaim", status["resourceClaimName"], "-n", f.ns)
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
    return (results[0]["pool"], results[0]["device"]) if len(results) == 1 else None


def karpenter_said(f: Flow, pod: str, text: str) -> dict[str, Any] | None:
    events = f.cluster.get_json("events", "-n", f.ns, "--field-selector", f"involvedObject.name={pod}")["items"]
    for e in events:
        source = e.get("source", {}).get("component") or e.get("reportingComponent", "")
        if source == "karpenter" and text in e.get("message", ""):
            return dict(e)
    return None


@pytest.mark.parametrize("flow", [DEVICES], indirect=True)
def test_extended_resource_demand_launches_the_overlays_instance_type_from_the_derived_node_overlay(
    flow: Flow,
) -> None:
    f, cluster, ns = flow, flow.cluster, flow.ns
    total = time.monotonic()

    # 1. The controller derived a Karpenter NodeOverlay from the DRANodeOverlay: its requirements
    # and weight, the device count as capacity of the DeviceClass's extended resources, owned by
    # the DRANodeOverlay; Karpenter validated it.
    name = node_overlay_name(f.overlay)

    def derived() -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = cluster.get_json("nodeoverlay", name)
        except KubectlError:
            return None
        return obj if condition(obj, "Ready").get("status") == "True" else None

    node_overlay = f.wait(derived, f"the NodeOverlay {name} derived from DRANodeOverlay {f.overlay}, Ready")
    source = cluster.get_json("dranodeoverlay", f.overlay)
    assert node_overlay["spec"]["capacity"] == {f.resource: str(DEVICES), IMPLICIT_PREFIX + f.driver: str(DEVICES)}
    assert node_overlay["spec"]["requirements"] == source["spec"]["requirements"]
    assert node_overlay["spec"]["weight"] == source["spec"]["weight"]
    [owner] = node_overlay["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("DRANodeOverlay", f.overlay, source["metadata"]["uid"])

    # 2. Two pods that need one device each, asked for as the extended resource, nothing else
    # special (the NodePool offers OVERLAY_TYPE and MAPPING_TYPE; only the first has the resource):
    # Karpenter launches one node of OVERLAY_TYPE for both.
    t = time.monotonic()
    cluster.apply(deployment("er", ns, 2, f.labels, f.taint, extended={f.resource: "1"}))
    f.wait(lambda: node_claims(f, f.nodepool) or None, "Karpenter to create a NodeClaim for the pods")
    f.step("a1-nodeclaim", t)
    claim, node = f.wait(lambda: launched_node(f, f.nodepool, "er", 2), "the node launched, both pods running on it")
    f.step("a2-pods-running", t)
    assert claim["metadata"]["labels"][INSTANCE_TYPE] == OVERLAY_TYPE, claim["metadata"]["labels"]
    assert claim["spec"]["resources"]["requests"][f.resource] == "2", claim["spec"]["resources"]
    assert DRA_DRIVERS_ANNOTATION not in claim["metadata"].get("annotations", {}), claim["metadata"]

    # 3. Our controller published the overlay's pool for that node.
    f.wait(lambda: f.has_one_complete_pool(node, DEVICES), f"a complete pool of {DEVICES} devices on {node}")
    f.step("a3-slices", t)

    # 4. What Karpenter's KWOK provider does to the Node (kwok/cloudprovider/cloudprovider.go,
    # toNode: Allocatable = NodeClaim requests + instance type): the extended resource is in the
    # Node's allocatable, so kube-scheduler fitted the pods by it (noderesources/fit.go,
    # shouldDelegateResourceToDRA: false when allocatable > 0) and made no claim.
    allocatable = cluster.get_json("node", node)["status"]["allocatable"]
    assert allocatable.get(f.resource) == "2", (
        f"the KWOK provider no longer copies the extended resource into the Node ({allocatable}): "
        "check whether the pods now get devices from our slices and update docs/karpenter.md"
    )
    for pod in f.pods("er"):
        assert extended_claim(f, pod) is None, f"{pod['metadata']['name']} got a device claim: update the docs"
    assert cluster.get_json("resourceclaims", "-n", ns)["items"] == []

    # 5. Scaled to zero: Karpenter removes the empty node, our slices go with it.
    t = time.monotonic()
    cluster.kubectl("scale", "deployment", "er", "-n", ns, "--replicas=0")
    f.wait(
        lambda: not node_claims(f, f.nodepool) and f.gone("node", node) and not f.slices_of(node),
        "Karpenter to remove the empty node, and its slices to go",
        timeout=120,
    )
    f.step("a4-removed", t)

    # 6. A second wave launches a new node the same way.
    t = time.monotonic()
    cluster.kubectl("scale", "deployment", "er", "-n", ns, "--replicas=2")
    claim2, node2 = f.wait(lambda: launched_node(f, f.nodepool, "er", 2), "a new node for the second wave")
    assert claim2["metadata"]["name"] != claim["metadata"]["name"] and node2 != node
    assert claim2["metadata"]["labels"][INSTANCE_TYPE] == OVERLAY_TYPE
    f.wait(lambda: f.has_one_complete_pool(node2, DEVICES), f"a complete pool on {node2}")
    f.step("a5-second-wave", t)

    # 7. The DRANodeOverlay deleted while our controller is down: the garbage collector removes the
    # NodeOverlay (its owner is gone); after the restart our controller removes the overlay's
    # slices. A further pod needing the resource: Karpenter has no instance type with it and says so.
    assert f.controller is not None
    f.controller.stop()
    cluster.kubectl("delete", "dranodeoverlay", f.overlay)
    f.wait(lambda: f.gone("nodeoverlay", name), f"the garbage collector to delete NodeOverlay {name}")
    f.controller.start()
    f.wait(lambda: not f.slices_of(node2), f"the deleted overlay's slices on {node2} to go")
    cluster.kubectl("scale", "deployment", "er", "-n", ns, "--replicas=3")
    [pending] = f.wait(
        lambda: [p for p in f.pods("er") if p["status"].get("phase") == "Pending"] or None, "the third pod"
    )
    event = f.wait(
        lambda: karpenter_said(f, pending["metadata"]["name"], NO_INSTANCE_TYPE_WITH_RESOURCES),
        "Karpenter's FailedScheduling event: no instance type has the resource",
    )
    assert f.resource in event["message"], event["message"]
    assert [c["metadata"]["name"] for c in node_claims(f, f.nodepool)] == [claim2["metadata"]["name"]]
    f.step("flow", total)


@pytest.mark.parametrize("flow", [DEVICES], indirect=True)
def test_claim_demand_launches_nothing_and_a_static_node_pool_runs_both_kinds_of_pods_on_our_devices(
    flow: Flow,
) -> None:
    f, cluster, ns = flow, flow.cluster, flow.ns
    total = time.monotonic()

    # 1. Pods whose claims come from a ResourceClaimTemplate: Karpenter (IGNORE_DRA_REQUESTS=false)
    # finds no instance type whose ResourceSlice templates satisfy the claim
    # (pkg/scheduling/dynamicresources/allocator.go) and launches nothing.
    t = time.monotonic()
    cluster.apply(deployment("claims", ns, 2, f.labels, f.taint, claim_template="gpu"))
    pods = f.wait(lambda: p if len(p := f.pods("claims")) == 2 else None, "the two claim pods")
    for pod in pods:
        f.wait(
            lambda pod=pod: karpenter_said(f, pod["metadata"]["name"], NO_INSTANCE_TYPE_FOR_CLAIMS),
            f"Karpenter's FailedScheduling event for {pod['metadata']['name']}",
        )
    time.sleep(5)  # a few more provisioning rounds
    assert node_claims(f, f.nodepool) == [], "Karpenter launched a node for claims: update docs/karpenter.md"
    f.step("b1-nothing-launched", t)

    # 2. A static NodePool of OVERLAY_TYPE, replicas 1: Karpenter launches the node whatever the
    # pods; our controller publishes its devices; the claim pods run with devices of our pool, and
    # so do pods asking for the extended resource: this Node does not list it in allocatable (the
    # NodeClaim requests nothing), so kube-scheduler asks DRA for it. (The extended-resource pods
    # select the static NodePool's label: otherwise Karpenter would launch a node from the dynamic
    # NodePool for them, as in the test above, before the static node is up.)
    t = time.monotonic()
    static_labels = {**f.labels, "dra-kwok-test-static": "true"}
    cluster.apply(static_node_pool(f.static_pool, f.nodeclass, OVERLAY_TYPE, 1, static_labels, f.taint))
    cluster.apply(deployment("er", ns, 2, static_labels, f.taint, extended={f.resource: "1"}))

    def all_running() -> tuple[dict[str, Any], str] | None:
        claims = node_claims(f, f.static_pool)
        if len(claims) != 1 or condition(claims[0], "Initialized").get("status") != "True":
            return None
        node = claims[0]["status"].get("nodeName", "")
        if not (f.running("claims", 2) and f.running("er", 2)):
            return None
        return claims[0], node

    claim, node = f.wait(all_running, "the static node, and the four pods running on it")
    f.step("b2-static-node-pods-running", t)
    assert claim["metadata"]["labels"][INSTANCE_TYPE] == OVERLAY_TYPE
    assert DRA_DRIVERS_ANNOTATION not in claim["metadata"].get("annotations", {}), claim["metadata"]
    assert f.resource not in cluster.get_json("node", node)["status"]["allocatable"]
    [pool] = complete_pools(f.slices_of(node))
    devices = [f.wait(lambda p=p: f.allocation(p), "a claim allocation") for p in f.running("claims", 2) or []]
    devices += [f.wait(lambda p=p: extended_claim(f, p), "an extended claim") for p in f.running("er", 2) or []]
    got = sorted((d[-2], d[-1]) for d in devices)
    assert [p for p, _ in got] == [pool[1]] * 4, got
    assert len({d for _, d in got}) == 4, f"a device allocated twice: {got}"
    assert node_claims(f, f.nodepool) == [], "the dynamic NodePool launched a node as well"

    # 3. replicas 0: Karpenter removes the node and our slices go; the pods wait. replicas 1
    # again: a new node, and the pods run on it.
    t = time.monotonic()
    cluster.kubectl("patch", "nodepool", f.static_pool, "--type=merge", "-p", '{"spec":{"replicas":0}}')
    f.wait(
        lambda: not node_claims(f, f.static_pool) and f.gone("node", node) and not f.slices_of(node),
        "the static node removed with its slices",
        timeout=120,
    )
    f.step("b3-static-removed", t)
    t = time.monotonic()
    cluster.kubectl("patch", "nodepool", f.static_pool, "--type=merge", "-p", '{"spec":{"replicas":1}}')
    claim2, node2 = f.wait(all_running, "a new static node with the four pods running again")
    assert node2 != node and claim2["metadata"]["name"] != claim["metadata"]["name"]
    f.step("b4-second-wave", t)
    f.step("flow", total)
