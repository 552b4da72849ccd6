"""Restarts, crashes and idleness: the controller converges to exactly the desired slices from any
state a previous process left behind, and writes nothing when nothing changes."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

from dra_kwok.core.render import LABEL_MANAGED_BY, LABEL_NODE
from tests.integration.conftest import DRIVER, Scenario
from tests.integration.test_controller import pool_is_complete
from tests.support.cluster import kwok_node
from tests.support.controller import ControllerProcess
from tests.support.names import multi_slice_name
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def create_nodes(scenario: Scenario, names: list[str]) -> None:
    """Many KWOK nodes in one kubectl call."""
    for n in names:
        scenario.cleanup.delete_later("node", n)
    objs = [
        kwok_node(n, labels={"dra-kwok-test": scenario.tag, "node.kubernetes.io/instance-type": "gpu-small"})
        for n in names
    ]
    scenario.cluster.kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}), timeout=120
    )


def assert_exactly_desired(scenario: Scenario, nodes: list[str], devices: int) -> None:
    slices = scenario.slices()
    by_node: dict[str, list[dict[str, Any]]] = {}
    for s in slices:
        by_node.setdefault(s["spec"]["nodeName"], []).append(s)
    assert sorted(by_node) == sorted(nodes), "slices for exactly the desired nodes"
    names = Counter(s["metadata"]["name"] for s in slices)
    assert not [n for n, c in names.items() if c > 1]
    for node, node_slices in by_node.items():
        assert pool_is_complete(node_slices), node
        assert [s["metadata"]["name"] for s in node_slices] == [f"{node}-devices"]
        assert len(node_slices[0]["spec"]["devices"]) == devices


def test_startup_resync_deletes_stale_creates_missing_and_repairs(scenario: Scenario) -> None:
    scenario.config(scenario.mapping_config(count=2))
    nodes = [scenario.unique("kwok") for _ in range(3)]
    create_nodes(scenario, nodes)
    cluster = scenario.cluster

    # What a crashed predecessor might leave: a slice for a node that is gone, a slice with stale
    # content and generation, and no slice at all for the third node.
    def slice_obj(name: str, node: str, devices: list[str], gen: int) -> dict[str, Any]:
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: scenario.managed_by, LABEL_NODE: node}},
            "spec": {
                "driver": DRIVER,
                "nodeName": node,
                "pool": {"name": f"{node}-device-pool", "generation": gen, "resourceSliceCount": 1},
                "devices": [{"name": d} for d in devices],
            },
        }

    gone = scenario.unique("gone")
    stale = [
        slice_obj(f"{gone}-devices", gone, ["gpu-0"], 1),
        slice_obj(f"{nodes[0]}-devices", nodes[0], ["old-0"], 7),
        slice_obj(multi_slice_name(nodes[1], DRIVER, 5), nodes[1], ["gpu-0"], 1),
    ]
    for s in stale:
        scenario.cleanup.delete_later("resourceslice", s["metadata"]["name"])
    cluster.apply(*stale)
    with scenario.controller():
        wait_until(
            lambda: _converged(scenario, nodes, 2),
            timeout=20,
            what="convergence after start",
            describe=lambda: json.dumps([s["metadata"]["name"] for s in scenario.slices()]),
        )
    assert_exactly_desired(scenario, nodes, 2)
    repaired = next(s for s in scenario.slices() if s["spec"]["nodeName"] == nodes[0])
    assert repaired["spec"]["pool"]["generation"] == 8  # above the stale generation, so no consumer mixes them


def _converged(scenario: Scenario, nodes: list[str], devices: int) -> bool:
    try:
        assert_exactly_desired(scenario, nodes, devices)
    except AssertionError:
        return False
    return True


def test_kill_9_while_publishing_200_nodes_then_restart_converges_exactly(scenario: Scenario) -> None:
    scenario.config(scenario.mapping_config(count=8))
    nodes = [f"{scenario.tag}-n{i:03d}" for i in range(200)]
    create_nodes(scenario, nodes)
    ctl = ControllerProcess(
        scenario.cluster.kubeconfig, scenario.namespace, scenario.managed_by, scenario.workdir / "first.log"
    )
    ctl.start()
    # Kill it in the middle: after some slices exist but before all do.
    partial = wait_until(
        lambda: n if 0 < (n := len(scenario.slices())) < 200 else None,
        timeout=30,
        what="publishing to be under way",
        interval=0.02,
    )
    ctl.kill()
    print(f"killed with {partial} of 200 slices published")
    with scenario.controller() as second:
        started = time.monotonic()
        wait_until(lambda: _converged(scenario, nodes, 8), timeout=60, what="exact convergence after the restart")
        print(
            f"restart -> 200 nodes converged in {time.monotonic() - started:.2f}s, "
            f"{second.writes():.0f} writes by the second process"
        )
        assert second.writes() <= 200 - partial + 5  # it rewrites nothing that was already right
    assert_exactly_desired(scenario, nodes, 8)


def test_idle_controller_writes_nothing_even_across_resyncs(scenario: Scenario) -> None:
    scenario.config(scenario.mapping_config(count=4))
    nodes = [scenario.unique("kwok") for _ in range(20)]
    create_nodes(scenario, nodes)
    with scenario.controller("--resync-seconds", "1") as ctl:
        wait_until(lambda: _converged(scenario, nodes, 4), timeout=20, what="convergence")
        time.sleep(1)
        writes, resyncs = ctl.writes(), ctl.metric("dra_kwok_resyncs_total")
        requests = ctl.metric("dra_kwok_api_requests_total")
        time.sleep(4)
        assert ctl.metric("dra_kwok_resyncs_total") >= resyncs + 3
        assert ctl.writes() == writes
        assert ctl.metric("dra_kwok_api_requests_total") == requests  # not even reads


def test_metrics_and_health_endpoints(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice")
    wait_until(
        lambda: controller.metric("dra_kwok_publish_latency_seconds_count") >= 1,
        timeout=10,
        what="a publish latency sample",
    )
    samples = controller.metrics()
    for name in (
        "dra_kwok_reconciles_total",
        "dra_kwok_api_writes_total",
        "dra_kwok_queue_depth",
        "dra_kwok_managed_nodes",
        "dra_kwok_managed_slices",
        "dra_kwok_config_reloads_total",
        "dra_kwok_api_requests_total",
        "dra_kwok_publish_latency_seconds_bucket",
    ):
        assert any(k.split("{")[0] == name for k in samples), name
    assert controller.metric('dra_kwok_api_writes_total{verb="apply"}') >= 1
    assert not [k for k in samples if node in k], "no per-node label values"
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.health_port}/healthz") as r:
        assert r.status == 200
