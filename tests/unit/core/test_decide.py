"""One decision per node: what `decide()` returns for each situation a node can be in, and the
recorded decisions turned into overlay status and ConfigMap Events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dra_kwok.core.decide import (
    Decision,
    NodeView,
    Outcome,
    PublishProblem,
    RenderFailure,
    Sources,
    WriteResult,
    after_write,
    content_key,
    decide,
)
from dra_kwok.core.overlay import OverlayRule
from dra_kwok.core.render import NodeRef
from dra_kwok.core.resolve import Conflict, order_overlays
from dra_kwok.core.status import Outcomes, OverlayFacts, mapping_failure_events, mapping_failures, overlay_statuses

from .builders import INSTANCE_TYPE, config, device, load_config_ok, load_overlay_ok, mapping, overlay
from .fake_api import FakeSliceApi

NODE = NodeRef("kwok-1", "uid-1")
LABELS = {INSTANCE_TYPE: "gpu-8x"}


def sources(*overlays: OverlayRule, doc: dict[str, Any] | None = None, **kw: Any) -> Sources:
    return Sources(order_overlays(overlays), load_config_ok(doc or config()), **kw)


def view(api: FakeSliceApi | None = None, node: NodeRef | None = NODE, **kw: Any) -> NodeView:
    api = api or FakeSliceApi()
    return NodeView(NODE.name, node, LABELS if node else {}, api.observed(), api.written, **kw)


def test_a_new_node_gets_its_slices_written() -> None:
    d = decide(view(), sources())
    assert d.outcome is Outcome.WRITE
    assert [a.name for p in d.plan.pools for a in p.applies] == ["kwok-1-devices"]
    assert d.sources == ("mapping/m",)
    assert d.content_key and d.rejected is None


def test_once_written_the_node_is_in_sync_and_published() -> None:
    api = FakeSliceApi()
    api.execute(decide(view(api), sources()).plan)
    d = decide(view(api), sources())
    assert d.outcome is Outcome.IN_SYNC and d.published and d.plan.in_sync


def test_a_node_that_is_gone_has_its_slices_deleted_and_no_conflicts() -> None:
    api = FakeSliceApi()
    api.execute(decide(view(api), sources()).plan)
    d = decide(view(api, node=None), sources())
    assert d.outcome is Outcome.WRITE
    assert [x.name for p in d.plan.pools for x in p.deletes] == ["kwok-1-devices"]
    assert d.conflicts == () and d.render_failure is None


def test_content_the_apiserver_refused_is_not_sent_again_but_other_content_is() -> None:
    first = decide(view(), sources())
    refused, problem = after_write(first, WriteResult(refused="denied by a ValidatingAdmissionPolicy"))
    assert refused == first.content_key
    assert problem == PublishProblem("PublishFailed", ("mapping/m",), "denied by a ValidatingAdmissionPolicy")
    again = decide(view(rejected=refused, problem=problem), sources())
    assert again.outcome is Outcome.REJECTED and again.rejected == refused and again.problem == problem
    changed = decide(view(rejected=refused, problem=problem), sources(doc=config(mapping(devices=[device("b")]))))
    assert changed.outcome is Outcome.WRITE and changed.rejected is None


def test_in_sync_again_clears_a_rejection_but_keeps_dropped_fields() -> None:
    api = FakeSliceApi()
    api.execute(decide(view(api), sources()).plan)
    rejected = PublishProblem("PublishFailed", ("mapping/m",), "no")
    d = decide(view(api, rejected=frozenset({("x", "y")}), problem=rejected), sources())
    assert d.outcome is Outcome.IN_SYNC and d.rejected is None and d.problem is None
    dropped = PublishProblem("FieldsDropped", ("mapping/m",), "slice kwok-1-devices lost bindsToNode")
    assert decide(view(api, problem=dropped), sources()).problem == dropped


def test_a_template_that_does_not_fit_the_node_is_a_render_failure_with_nothing_to_write() -> None:
    doc = config(mapping(devices=[device("gpu", attributes={"host": "host-{nodeName}"})]))
    long_node = NodeRef("n" * 70, "u")
    d = decide(
        NodeView(long_node.name, long_node, LABELS, (), {}),
        sources(doc=doc),
    )
    assert d.outcome is Outcome.RENDER_FAILED and d.plan.in_sync
    assert d.render_failure is not None and d.render_failure.sources == ("mapping/m",)
    assert "at most 64 bytes" in d.render_failure.problem and long_node.name in d.error


def test_equal_weight_overlays_are_decided_with_their_conflict() -> None:
    a = load_overlay_ok(overlay("a", weight=5))
    b = load_overlay_ok(overlay("b", weight=5))
    d = decide(view(), sources(a, b))
    assert d.conflicts == (Conflict("a", "gpu.example.com", "b", 5),)  # later in the alphabet wins
    assert d.sources == ("overlay/b",)


def test_a_protected_source_is_left_as_it_is() -> None:
    api = FakeSliceApi()
    api.execute(decide(view(api), sources()).plan)
    d = decide(view(api), sources(doc=config(mapping(devices=[device("z")])), protected=frozenset({"mapping/*"})))
    assert d.outcome is Outcome.IN_SYNC


def test_a_clean_write_clears_the_problem_and_dropped_fields_are_one() -> None:
    d = decide(view(), sources())
    assert after_write(d, WriteResult()) == (None, None)
    assert after_write(d, WriteResult(dropped=("slice a lost x", "slice b lost y"))) == (
        None,
        PublishProblem("FieldsDropped", ("mapping/m",), "slice a lost x; slice b lost y"),
    )


def test_content_key_names_each_slice_and_its_content() -> None:
    d = decide(view(), sources())
    assert {name for name, _ in d.content_key} == {"kwok-1-devices"}
    assert content_key(None) == frozenset()


# --- recorded decisions into status and Events ------------------------------------------------


def facts(name: str, status: Mapping[str, Any] | None = None) -> OverlayFacts:
    rule = load_overlay_ok(overlay(name))
    return OverlayFacts(name, f"uid-{name}", 1, True, [], 1, rule.requirements, status or {})


def test_overlay_statuses_count_matches_and_report_recorded_failures() -> None:
    outcomes = Outcomes(
        conflicts={},
        render_failures={"kwok-1": RenderFailure(("overlay/o",), "too long")},
        publish_problems={},
    )
    ((o, status),) = overlay_statuses([facts("o")], [LABELS, {INSTANCE_TYPE: "cpu"}], outcomes, "2026-12-01T00:00:00Z")
    assert o.name == "o" and status["matchedNodes"] == 1
    ready = status["conditions"][0]
    assert ready["reason"] == "RenderFailed" and "node kwok-1: too long" in ready["message"]
    # Written: the same computation against what is now on the server changes nothing.
    assert overlay_statuses([facts("o", status)], [LABELS], outcomes, "2026-12-01T00:00:09Z") == []


def test_mapping_failures_are_grouped_by_reason_and_mapping() -> None:
    outcomes = Outcomes(
        conflicts={},
        render_failures={"n1": RenderFailure(("mapping/a",), "too long"), "n2": RenderFailure(("overlay/o",), "x")},
        publish_problems={"n3": PublishProblem("FieldsDropped", ("mapping/b",), "lost taints")},
    )
    grouped = mapping_failures(outcomes)
    assert grouped == {
        "RenderFailed": {"a": [("n1", "too long")]},
        "PublishFailed": {},
        "FieldsDropped": {"b": [("n3", "lost taints")]},
    }


def test_mapping_failure_events_warn_once_per_new_set_and_say_when_it_ends() -> None:
    failures = {"a": [("n2", "p2"), ("n1", "p1")]}
    events, reported = mapping_failure_events("RenderFailed", failures, frozenset())
    assert events == [
        ("Warning", "RenderFailed", "mapping a: cannot publish for 2 node(s), which keep what they had; node n1: p1")
    ]
    assert mapping_failure_events("RenderFailed", failures, reported) == ([], reported)  # nothing new
    events, reported = mapping_failure_events("RenderFailed", {}, reported)
    assert events == [("Normal", "RenderFailedResolved", "no mapping has RenderFailed any more")]
    assert reported == frozenset()


def test_a_decision_is_a_value() -> None:
    d = decide(view(), sources())
    assert d == decide(view(), sources())
    assert isinstance(d, Decision)
