"""Someone else editing and deleting our slices in a tight loop: the controller repairs them, at a
rate bounded by the writer's own and by the per-node token bucket (no hot loop), and the state is
exactly right once the writer stops."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import yaml

from dra_kwok.core.render import LABEL_MANAGED_BY
from dra_kwok.shell.reconciler import BUCKET_REFILL, BUCKET_SIZE
from tests.faults.support import SLICES, Oracle, Rest, RestError, node_manifest
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess

pytestmark = pytest.mark.cluster

WRITER_SECONDS = 10.0
WRITER_PAUSE = 0.03


def config(tag: str) -> str:
    def mapping(name: str, instance_type: str, count: int) -> dict[str, Any]:
        labels = {"dra-kwok-test": tag, "node.kubernetes.io/instance-type": instance_type}
        devices = [{"name": "gpu", "count": count, "attributes": {"model": "t4"}, "capacity": {"memory": "16Gi"}}]
        return {"name": name, "nodeSelector": {"matchLabels": labels}, "resourceSlice": {"devices": devices}}

    mappings = [mapping("small", "gpu-small", 3), mapping("large", "gpu-large", 200)]
    return yaml.safe_dump({"driver": DRIVER, "mappings": mappings})


JsonPatch = list[dict[str, Any]]


def edits(s: dict[str, Any]) -> dict[str, JsonPatch | None]:
    """The writer's moves on slice `s` (None: delete it)."""
    gen = s["spec"]["pool"]["generation"]
    label = "/metadata/labels/" + LABEL_MANAGED_BY.replace("/", "~1")
    return {
        "remove-device": [{"op": "remove", "path": "/spec/devices/0"}],
        "edit-attribute": [{"op": "replace", "path": "/spec/devices/0/attributes/model", "value": {"string": "x"}}],
        "bump-generation": [{"op": "replace", "path": "/spec/pool/generation", "value": gen + 7}],
        "slice-count": [{"op": "replace", "path": "/spec/pool/resourceSliceCount", "value": 5}],
        "drop-managed-by": [{"op": "remove", "path": label}],
        "unrelated-label": [{"op": "add", "path": "/metadata/labels/someone-else", "value": str(time.monotonic_ns())}],
        "delete": None,
    }


class Writer(threading.Thread):
    """Picks one of this test's slices at random and edits or deletes it, until stopped."""

    def __init__(self, rest: Rest, nodes: list[str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.rest, self.nodes, self.rng = rest, nodes, rng
        self.done = Counter[str]()
        self.failed = Counter[str]()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            node = self.rng.choice(self.nodes)
            selector = f"dra-kwok.test.karpenter.sh/node={node}"
            found = self.rest.list(SLICES, selector)
            if found:
                s = self.rng.choice(found)
                move, patch = self.rng.choice(sorted(edits(s).items()))
                name = s["metadata"]["name"]
                try:
                    if patch is None:
                        self.rest.delete(SLICES, name)
                    else:
                        self.rest.request(
                            "PATCH", f"{SLICES}/{name}", body=patch, content_type="application/json-patch+json"
                        )
                    self.done[move] += 1
                except RestError as e:  # gone or changed under us (the controller was quicker)
                    self.failed[f"{move} {e.status}"] += 1
            time.sleep(WRITER_PAUSE)


def test_concurrent_writer_is_repaired_at_a_bounded_rate(scenario: Scenario, rest: Rest) -> None:
    # DEBUG: each write is logged with its reason, shown if one happens after convergence
    with scenario.controller("--log-level", "DEBUG") as controller:
        repaired_at_a_bounded_rate(scenario, controller, rest)


def repaired_at_a_bounded_rate(scenario: Scenario, controller: ControllerProcess, rest: Rest) -> None:
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag)
    scenario.config(oracle.config_text)
    nodes = {scenario.unique("small"): "gpu-small" for _ in range(3)} | {scenario.unique("large"): "gpu-large"}
    for name, instance_type in nodes.items():
        scenario.cleanup.delete_later("node", name)
        rest.create("/api/v1/nodes", node_manifest(name, scenario.tag, instance_type))
    oracle.wait_exact(30, "the initial slices", controller)
    slices_per_node = Counter(s["spec"]["nodeName"] for s in oracle.slices())
    seed = int(os.environ.get("DRA_KWOK_FAULT_SEED", time.time_ns() % 10**6))
    print(f"writer seed {seed} (DRA_KWOK_FAULT_SEED)")

    writes_before = controller.writes()
    throttled_before = controller.metric('dra_kwok_reconciles_total{result="throttled"}')
    writer = Writer(rest, list(nodes), random.Random(seed))
    started = time.monotonic()
    writer.start()
    time.sleep(WRITER_SECONDS)
    writer.stop.set()
    writer.join(timeout=30)
    stopped = time.monotonic()
    converge = oracle.wait_exact(60, "exact slices once the writer stopped", controller)
    elapsed = time.monotonic() - started
    writes = controller.writes() - writes_before
    ops = sum(writer.done.values())
    throttled = controller.metric('dra_kwok_reconciles_total{result="throttled"}') - throttled_before
    print(
        f"writer: {ops} edits in {stopped - started:.1f}s ({ops / (stopped - started):.1f}/s) {dict(writer.done)}; "
        f"failed {dict(writer.failed)}\ncontroller: {writes:.0f} writes ({writes / elapsed:.1f}/s), "
        f"{throttled:.0f} throttled rounds; exact {converge:.2f}s after the writer stopped"
    )
    assert ops >= 50, "the writer kept up the pressure"

    # Bounded: each edit dirties one node, which costs at most one write per slice of its pool;
    # and each node's token bucket allows BUCKET_SIZE rounds plus BUCKET_REFILL per second.
    total = sum(slices_per_node.values())
    per_edit = max(slices_per_node.values())
    assert writes <= ops * per_edit + total, "more writes than the writer's edits explain"
    bucket = sum(n * (BUCKET_SIZE + BUCKET_REFILL * elapsed) for n in slices_per_node.values())
    assert writes <= bucket + total, f"over the token bucket's budget of {bucket:.0f}"

    # Quiet afterwards: no write, no request, while nothing changes.
    writes, requests = controller.writes(), controller.metric("dra_kwok_api_requests_total")
    log_before = len(controller.log_path.read_text(errors="replace"))
    time.sleep(3)
    since = controller.log_path.read_text(errors="replace")[log_before:]  # what the controller said meanwhile
    assert controller.writes() == writes, f"wrote after convergence; its log since:\n{since}"
    assert controller.metric("dra_kwok_api_requests_total") == requests, f"its log since:\n{since}"
    assert oracle.exact(), oracle.last


def test_slice_pushed_to_the_largest_generation_is_still_repaired(
    scenario: Scenario, controller: ControllerProcess, rest: Rest
) -> None:
    """Someone sets a managed slice's pool generation to the int64 maximum (and breaks its content).
    A repair must publish a higher generation, which does not exist: the controller must still
    repair the pool (by starting it over), not retry a write the apiserver rejects forever."""
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag)
    scenario.config(oracle.config_text)
    node = scenario.unique("small")
    scenario.cleanup.delete_later("node", node)
    rest.create("/api/v1/nodes", node_manifest(node, scenario.tag, "gpu-small"))
    oracle.wait_exact(20, "the slice", controller)
    patch = [
        {"op": "replace", "path": "/spec/pool/generation", "value": 2**63 - 1},
        {"op": "remove", "path": "/spec/devices/0"},
    ]
    rest.request("PATCH", f"{SLICES}/{node}-devices", body=patch, content_type="application/json-patch+json")
    took = oracle.wait_exact(12, "the pool to be repaired", controller)
    print(f"repaired in {took:.2f}s")
    # No write was refused (a port number in the log may contain "422": look at what means it).
    # (the startup probe of a gate that is off may be refused: verb="probe", not a write)
    refused = [k for k, v in controller.metrics().items() if 'code="422"' in k and 'verb="probe"' not in k and v]
    assert not refused, controller.metrics()
    assert "failed: 422" not in controller.log()
