"""A misconfigured HA setup: two controller processes with the same managed-by value and field
manager, both writing. They must converge to the one desired state and then stop writing: each
sees the other's writes as foreign, so any difference between what one writes and what the other
reads back (e.g. a quantity the apiserver canonicalises) would make them flap forever."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tests.faults.support import NODES, SLICES, Oracle, Rest, node_manifest
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess

pytestmark = pytest.mark.cluster

QUIET_SECONDS = 4.0


def config(tag: str, count: int) -> str:
    """Devices in spellings the apiserver rewrites: quantities in non-canonical form, taints (the
    server adds timeAdded), counters, consumable capacity, every attribute type."""

    def selector(instance_type: str) -> dict[str, Any]:
        return {"matchLabels": {"dra-kwok-test": tag, "node.kubernetes.io/instance-type": instance_type}}

    gpu = {
        "name": "gpu",
        "count": count,
        "attributes": {"model": "h100", "index": 0, "healthy": True, "cuda": {"version": "12.2.0"}},
        "capacity": {
            "memory": "0.5Gi",
            "cores": "1000m",
            "bandwidth": "1e3",
            "shared": {"value": "8", "requestPolicy": {"default": "1000m", "validRange": {"min": "1", "step": "1"}}},
        },
        "allowMultipleAllocations": True,
        "taints": [{"key": "example.com/maintenance", "value": "soon", "effect": "NoSchedule"}],
        "consumesCounters": [{"counterSet": "mem", "counters": {"memory": "0.5Gi"}}],
    }
    return yaml.safe_dump(
        {
            "driver": DRIVER,
            "mappings": [
                {
                    "name": "small",
                    "nodeSelector": selector("gpu-small"),
                    "resourceSlice": {
                        "devices": [gpu],
                        "sharedCounters": [{"name": "mem", "counters": {"memory": {"value": "64Gi"}}}],
                    },
                },
                {
                    "name": "large",
                    "nodeSelector": selector("gpu-large"),
                    "resourceSlice": {"devices": [{"name": "gpu", "count": 100 + count, "capacity": {"m": "2000m"}}]},
                },
            ],
        }
    )


def test_two_controllers_with_one_identity_converge_and_stop_writing(scenario: Scenario, rest: Rest) -> None:
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag, 2)
    scenario.config(oracle.config_text)
    nodes = [(scenario.unique("small"), "gpu-small") for _ in range(8)] + [(scenario.unique("large"), "gpu-large")]
    for name, instance_type in nodes:
        scenario.cleanup.delete_later("node", name)
        rest.create(NODES, node_manifest(name, scenario.tag, instance_type))
    overlay = scenario.unique("overlay")
    scenario.overlay(
        overlay,
        scenario.overlay_spec([{"name": "x", "count": 2, "capacity": {"memory": "1.5Gi"}}], instance_type="gpu-x"),
    )
    oracle.overlays = [
        {"metadata": {"name": overlay}, "spec": scenario.cluster.get_json("dranodeoverlay", overlay)["spec"]}
    ]
    x = scenario.unique("x")
    scenario.cleanup.delete_later("node", x)
    rest.create(NODES, node_manifest(x, scenario.tag, "gpu-x"))

    cluster, ns, managed_by = scenario.cluster, scenario.namespace, scenario.managed_by
    a, b = (ControllerProcess(cluster.kubeconfig, ns, managed_by, scenario.workdir / f"{n}.log") for n in "ab")
    started = time.monotonic()
    a.start(wait=False)
    b.start(wait=False)
    try:
        a.wait_ready()
        b.wait_ready()
        took = oracle.wait_exact(60, "convergence with two controllers", a)
        print(f"converged {took:.2f}s after both started ({time.monotonic() - started:.2f}s in all)")
        slices = len(oracle.slices())
        first = quiet(a, b, "after converging")
        assert first <= 2 * slices + 4, f"{first} writes for {slices} slices"

        # A change: both see it, both write it, and then both are quiet again.
        before = a.writes() + b.writes()
        oracle.config_text = config(scenario.tag, 3)
        scenario.config(oracle.config_text)
        took = oracle.wait_exact(60, "the change to be published", a)
        print(f"change published in {took:.2f}s")
        quiet(a, b, "after the change")
        changed = a.writes() + b.writes() - before
        assert changed <= 2 * slices + 4, f"{changed} writes for a change of {slices} slices"
        gens = {s["spec"]["pool"]["generation"] for s in oracle.slices()}
        assert max(gens) <= 4, f"generations ran up to {max(gens)}: the two fought over the content"
        assert a.alive and b.alive
    finally:
        a.stop()
        b.stop()


def quiet(a: ControllerProcess, b: ControllerProcess, when: str, within: float = 30.0) -> float:
    """Waits for both write counters to stay flat for QUIET_SECONDS (failing after `within`
    seconds of writing); returns how many writes both made in all."""
    deadline = time.monotonic() + within
    while True:
        counts = (a.writes(), b.writes())
        time.sleep(QUIET_SECONDS)
        now = (a.writes(), b.writes())
        if now == counts:
            print(f"{when}: writes a={now[0]:.0f} b={now[1]:.0f}, flat for {QUIET_SECONDS:.0f}s")
            return now[0] + now[1]
        assert time.monotonic() < deadline, (
            f"{when}: still writing after {within:.0f} s: "
            f"a {counts[0]:.0f}->{now[0]:.0f}, b {counts[1]:.0f}->{now[1]:.0f}\n"
            f"{a.log()[-3000:]}\n{b.log()[-3000:]}"
        )


def test_two_installations_do_not_fight_over_a_node_an_overlay_matches(scenario: Scenario, rest: Rest) -> None:
    """Two installations (different --managed-by, ConfigMaps in different namespaces, the same
    default field manager) in one cluster. DRANodeOverlays are cluster-wide, so both publish for a
    node an overlay matches, under the same slice name. A forced apply by one takes the slice from
    the other, whose watch (by label) sees it deleted and applies it back: they must not keep that
    up (each at its token bucket's rate, forever); one keeps the slice, the other stands back."""
    cluster = scenario.cluster
    other_ns = scenario.unique("other")
    cluster.kubectl("create", "namespace", other_ns)
    scenario.cleanup.delete_later("namespace", other_ns)
    a = ControllerProcess(cluster.kubeconfig, scenario.namespace, scenario.managed_by, scenario.workdir / "a.log")
    b = ControllerProcess(cluster.kubeconfig, other_ns, f"{scenario.managed_by}-2", scenario.workdir / "b.log")
    a.start(wait=False)
    b.start(wait=False)
    try:
        a.wait_ready()
        b.wait_ready()
        node = scenario.unique("kwok")
        scenario.cleanup.delete_later("node", node)
        rest.create(NODES, node_manifest(node, scenario.tag, "gpu-x"))
        overlay = scenario.unique("overlay")
        scenario.overlay(overlay, scenario.overlay_spec([{"name": "h100"}], instance_type="gpu-x"))
        total = quiet(a, b, "two installations", within=20)
        assert total <= 4, f"{total} writes for one slice"
        [slice_] = [s for s in rest.list(SLICES) if s["spec"].get("nodeName") == node]
        assert [d["name"] for d in slice_["spec"]["devices"]] == ["h100"]
    finally:
        a.stop()
        b.stop()
