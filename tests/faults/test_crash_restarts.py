"""The controller killed with SIGKILL at random points while 1,000 nodes arrive, five times over,
then started once more: it converges to exactly the desired slices (no duplicates, none missing,
none stale, every pool complete), whatever half-written state the kills left behind."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.faults.support import (
    Oracle,
    Rest,
    create_nodes,
    delete_by_label,
    incomplete_pools,
    node_manifest,
)
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NODE_COUNT = 1000
KILLS = 5
NIC_DRIVER = "nic.dra-kwok.example.com"
INSTANCE_TYPES = ["gpu-pair", "gpu-pair", "gpu-single", "gpu-single", "gpu-multi"]


def config(tag: str) -> str:
    def mapping(name: str, instance_type: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
        labels = {"dra-kwok-test": tag, "node.kubernetes.io/instance-type": instance_type}
        return {"name": name, "nodeSelector": {"matchLabels": labels}, "resourceSlice": {"devices": devices}}

    return yaml.safe_dump(
        {
            "driver": DRIVER,
            "mappings": [
                # 130 devices: a pool of two slices (128 + 2), which a kill can leave half-written.
                mapping("pair", "gpu-pair", [{"name": "gpu", "count": 130, "attributes": {"model": "t4"}}]),
                mapping("single", "gpu-single", [{"name": "gpu", "count": 4, "attributes": {"model": "a10"}}]),
            ],
        }
    )


def overlay_spec(scenario: Scenario) -> dict[str, Any]:
    """Two drivers on gpu-multi nodes: two pools per node."""
    spec = scenario.overlay_spec([{"name": "h100", "count": 2}], instance_type="gpu-multi")
    spec["resourceSlices"].append(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "spec": {"driver": NIC_DRIVER, "devices": [{"name": "nic"}]},
        }
    )
    return spec


class Burst(threading.Thread):
    """Creates the nodes in a steady stream, as a node pool scaling up."""

    def __init__(self, rest: Rest, nodes: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.rest, self.nodes = rest, nodes
        self.created = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.nodes), 50):
                create_nodes(self.rest, self.nodes[start : start + 50])
                self.created = start + len(self.nodes[start : start + 50])
        except BaseException as e:  # reported by the test
            self.error = e


@pytest.fixture
def burst_cleanup(scenario: Scenario) -> Iterator[None]:
    yield
    delete_by_label(scenario.cluster, "nodes", f"dra-kwok-test={scenario.tag}")


@pytest.mark.timeout(1500)
def test_sigkill_five_times_during_a_1000_node_burst_then_converges_exactly(
    scenario: Scenario, rest: Rest, burst_cleanup: None
) -> None:
    seed = int(os.environ.get("DRA_KWOK_FAULT_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    print(f"seed {seed} (DRA_KWOK_FAULT_SEED)")
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag)
    scenario.config(oracle.config_text)
    overlay = scenario.unique("overlay")
    scenario.overlay(overlay, overlay_spec(scenario))
    oracle.overlays = [{"metadata": {"name": overlay}, "spec": overlay_spec(scenario)}]

    nodes = [
        node_manifest(f"{scenario.tag}-n{i:04d}", scenario.tag, INSTANCE_TYPES[i % len(INSTANCE_TYPES)])
        for i in range(NODE_COUNT)
    ]
    burst = Burst(rest, nodes)

    def controller(run: str) -> ControllerProcess:
        return ControllerProcess(
            scenario.cluster.kubeconfig, scenario.namespace, scenario.managed_by, scenario.workdir / f"{run}.log"
        )

    kills = []
    started = time.monotonic()
    burst.start()
    for k in range(KILLS):
        ctl = controller(f"killed-{k}")
        ctl.start(wait=False)
        delay = rng.uniform(1.0, 6.0)  # from process start: before, during and after its first sync
        time.sleep(delay)
        slices = oracle.slices()
        ready = ctl.alive and "started:" in ctl.log()
        ctl.kill()
        kills.append((k, round(delay, 1), burst.created, len(slices), incomplete_pools(slices), ready))

    final = controller("final")
    restarted = time.monotonic()
    final.start(wait=False)
    try:
        burst.join(timeout=600)
        assert burst.error is None, burst.error
        assert burst.created == NODE_COUNT
        burst_done = time.monotonic()
        took = oracle.wait_exact(600, "exact slices after the last restart", final)
        converged = time.monotonic()
        print("kill  after(s)  nodes created  slices  incomplete pools  past startup")
        for row in kills:
            print("  ".join(str(c).rjust(6) for c in row))
        print(
            f"burst of {NODE_COUNT} nodes took {burst_done - started:.1f}s; exact {converged - restarted:.1f}s after "
            f"the last restart ({took:.1f}s after the burst ended); {len(oracle.slices())} slices, "
            f"{final.writes():.0f} writes by the last process"
        )
        writes = final.writes()
        time.sleep(3)
        assert oracle.exact(), oracle.last
        assert final.writes() == writes, "still writing after converging"
        assert final.alive
    finally:
        final.stop()
