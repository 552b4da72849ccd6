"""The World's part in simulation: the faults annotation and creation time of a node handed to
the decision, and the pools whose claims the claim writer serves."""

from __future__ import annotations

from typing import Any

from dra_kwok.core.decide import Decision, NodeView, Outcome, Simulated
from dra_kwok.core.fault_annotation import FAULTS_ANNOTATION
from dra_kwok.core.plan import NodePlan
from dra_kwok.core.simulation import Simulation
from dra_kwok.shell.world import World
from tests.unit.shell.builders import SETTINGS, node


def annotated(name: str, faults: str | None, **meta: Any) -> dict[str, Any]:
    obj = node(name)
    if faults is not None:
        obj["metadata"]["annotations"] = {FAULTS_ANNOTATION: faults}
    obj["metadata"].update(meta)
    return obj


def test_the_faults_annotation_and_the_creation_time_reach_the_decision() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", annotated("n1", None, creationTimestamp="2026-12-01T10:00:00Z"))
    view: NodeView = w.view("n1")
    assert view.faults == () and view.created == 1_796_119_200.0
    assert w.on_node("MODIFIED", annotated("n1", "gpu-0=NoExecute@2026-12-01T10:00:05Z,bad")) == ["n1"]
    [fault] = w.view("n1").faults
    assert (fault.driver, fault.device, fault.effect, fault.since) == (None, "gpu-0", "NoExecute", 1_796_119_205.0)
    assert w.view("n1").created == 1_796_119_200.0  # kept from the first event
    # The same annotation again is a heartbeat: nothing is dirty.
    assert w.on_node("MODIFIED", annotated("n1", "gpu-0=NoExecute@2026-12-01T10:00:05Z,bad")) == []
    assert w.on_node("MODIFIED", annotated("n1", None)) == ["n1"] and w.view("n1").faults == ()


def test_an_entry_without_a_time_keeps_the_time_it_was_first_seen() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", annotated("n1", "gpu-0=NoSchedule"))
    first = w.view("n1").faults[0].since
    w.on_node("MODIFIED", annotated("n1", "gpu-0=NoSchedule,gpu-1=Remove"))
    faults = {f.device: f for f in w.view("n1").faults}
    assert faults["gpu-0"].since == first and faults["gpu-1"].since >= first


def test_recorded_claim_pools_are_looked_up_and_announced_once_per_change() -> None:
    w = World(SETTINGS)
    announced: list[str] = []
    w.on_claim_pools = announced.append
    w.on_node("ADDED", node("n1"))
    sim = Simulation.model_validate({"claimStatus": {}})

    def decided(*rules: tuple[str, Simulation]) -> Decision:
        return Decision("n1", Outcome.IN_SYNC, NodePlan("n1"), simulated=Simulated(claim_rules=rules))

    w.record(decided(("gpu.example.com", sim)))
    assert w.claim_pool("gpu.example.com", "n1-device-pool") == (sim, "n1", "uid-n1")
    assert w.claim_pool("other.example.com", "n1-device-pool") is None
    w.record(decided(("gpu.example.com", sim)))
    assert announced == ["n1-device-pool"]  # unchanged: not announced again
    w.record(decided())
    assert w.claim_pool("gpu.example.com", "n1-device-pool") is None and announced == ["n1-device-pool"] * 2
    w.record(decided(("gpu.example.com", sim)))
    w.on_node("DELETED", node("n1"))
    assert w.claim_pool("gpu.example.com", "n1-device-pool") is None
