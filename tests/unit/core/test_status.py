"""DRANodeOverlay status, computed purely: which Ready reason wins, what the messages say, and
that recomputing an unchanged status yields the same object (so nothing is written)."""

from __future__ import annotations

from typing import Any

from dra_kwok.core.issues import Issue, Severity
from dra_kwok.core.resolve import Conflict
from dra_kwok.core.status import MAX_MESSAGE, matchable_requirements, overlay_status, same_status, status_events

T0, T1 = "2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"


def status(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "generation": 3,
        "valid": True,
        "issues": [],
        "applied_generation": 3,
        "matched_nodes": 4,
        "conflicts": [],
        "previous": None,
        "now": T0,
    }
    return overlay_status(**(args | kw))


def ready(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == "Ready")


def conflict(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == "Conflict")


def test_a_valid_overlay_is_ready_and_counts_its_nodes() -> None:
    st = status()
    assert ready(st) == {
        "type": "Ready",
        "status": "True",
        "reason": "Applied",
        "message": "matches 4 KWOK node(s)",
        "observedGeneration": 3,
        "lastTransitionTime": T0,
    }
    assert conflict(st)["status"] == "False" and st["matchedNodes"] == 4 and st["observedGeneration"] == 3


def test_an_invalid_spec_names_its_errors_and_what_stays_in_force() -> None:
    issues = [Issue(("spec", "weight"), f"problem {i}", fix="fix it") for i in range(5)]
    issues.append(Issue(("spec",), "only a warning", severity=Severity.WARNING))
    st = status(valid=False, issues=issues, applied_generation=2)
    cond = ready(st)
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"].startswith("spec.weight: problem 0; fix: fix it; spec.weight: problem 1")
    assert "and 2 more" in cond["message"] and "warning" not in cond["message"]
    assert cond["message"].endswith("The last valid spec (generation 2) stays in force.")
    never = ready(status(valid=False, issues=issues[:1], applied_generation=None))
    assert never["message"].endswith(". Nothing is published from it.")


def test_a_template_that_does_not_fit_some_nodes_names_one_node_and_the_problem() -> None:
    failures = [("node-b", "devices.gpu-0.attributes.host: too long; fix: use {nodeHash}"), ("node-a", "other")]
    cond = ready(status(render_failures=failures))
    assert (cond["status"], cond["reason"]) == ("False", "RenderFailed")
    assert cond["message"] == "cannot publish for 2 of 4 matched node(s), which keep what they had; node node-a: other"
    # An invalid spec is the more basic problem and is the one shown.
    assert ready(status(valid=False, issues=[Issue((), "bad")], render_failures=failures))["reason"] == "InvalidSpec"


def test_losing_every_node_at_equal_weight_is_not_ready() -> None:
    losses = [Conflict("mine", "gpu.example.com", "theirs", 10) for _ in range(4)]
    st = status(conflicts=losses)
    assert (ready(st)["status"], ready(st)["reason"]) == ("False", "Conflict")
    c = conflict(st)
    assert (c["status"], c["reason"]) == ("True", "EqualWeight")
    assert "lost driver gpu.example.com to overlay theirs at equal weight 10" in c["message"]
    assert c["message"].endswith("give one overlay a higher weight")
    some = status(conflicts=losses[:1])
    assert ready(some)["reason"] == "Applied" and conflict(some)["message"].startswith("not applied on 1 node(s)")


def test_transition_times_move_only_when_a_status_changes() -> None:
    first = status()
    again = status(previous=first, now=T1)
    assert again == first and same_status(first, again)
    changed = status(previous=first, now=T1, render_failures=[("n", "p")])
    assert ready(changed)["lastTransitionTime"] == T1 and conflict(changed)["lastTransitionTime"] == T0
    assert not same_status(first, changed)


def test_same_status_ignores_only_timestamps() -> None:
    a = status()
    b = status(now=T1)
    assert a != b and same_status(a, b)
    assert not same_status(a, status(matched_nodes=5))
    assert same_status(None, {}) and not same_status(None, a)


def test_messages_are_bounded() -> None:
    cond = ready(status(render_failures=[("n", "x" * 5000)]))
    assert len(cond["message"]) == MAX_MESSAGE


# --- publish failures, Events from status transitions, NODES of invalid overlays --------------
def test_rejected_slices_make_ready_false_publish_failed_before_dropped_fields() -> None:
    st = status(
        publish_failures=[
            ("node-b", "FieldsDropped", "slice x lost spec.devices[0].bindingConditions"),
            ("node-a", "PublishFailed", 'ResourceSlice "a" is invalid: spec.devices[0].name: refused'),
        ]
    )
    r = ready(st)
    assert (r["status"], r["reason"]) == ("False", "PublishFailed")
    assert r["message"].startswith("the apiserver rejected the slices of 1 of 4 matched node(s); node node-a: ")
    assert "spec.devices[0].name: refused" in r["message"]


def test_dropped_fields_name_the_fields_and_the_likely_cause() -> None:
    r = ready(status(publish_failures=[("n", "FieldsDropped", "slice n-devices lost spec.devices[0].taints")]))
    assert r["reason"] == "FieldsDropped"
    assert "a feature gate off" in r["message"] and "spec.devices[0].taints" in r["message"]


def test_an_invalid_spec_still_wins_over_publish_failures() -> None:
    st = status(valid=False, issues=[Issue(("spec",), "broken")], publish_failures=[("n", "PublishFailed", "x")])
    assert ready(st)["reason"] == "InvalidSpec"


def test_status_events_announce_entering_and_leaving_trouble_once() -> None:
    applied = status()
    conflicted = status(conflicts=[Conflict("a", "d.example.com", "b", 10)], previous=applied)
    failing = status(publish_failures=[("n1", "PublishFailed", "refused")], previous=applied)
    invalid = status(valid=False, issues=[Issue(("spec",), "broken")], previous=applied)
    assert status_events(None, applied) == []
    assert status_events(applied, applied) == []
    (warning,) = status_events(applied, conflicted)
    assert warning[:2] == ("Warning", "Conflict") and "overlay b" in warning[2]
    assert status_events(conflicted, conflicted) == []
    assert status_events(conflicted, applied) == [
        ("Normal", "ConflictResolved", "no longer loses any node to an overlay of equal weight")
    ]
    assert [e[:2] for e in status_events(applied, failing)] == [("Warning", "PublishFailed")]
    assert [e[:2] for e in status_events(failing, applied)] == [("Normal", "Published")]
    assert status_events(applied, invalid) == [], "InvalidSpec has its own Event when the spec is loaded"
    assert [e[:2] for e in status_events(invalid, applied)] == [("Normal", "SpecValid")]
    assert [e[:2] for e in status_events(invalid, failing)] == [("Normal", "SpecValid"), ("Warning", "PublishFailed")]


def test_matchable_requirements_reads_well_formed_requirements_of_any_spec() -> None:
    reqs = matchable_requirements(
        {"requirements": [{"key": "a", "operator": "In", "values": ["x"]}], "resourceSlices": "broken"}
    )
    assert reqs is not None and [r.key for r in reqs] == ["a"]
    assert matchable_requirements({"requirements": [{"key": "a", "operator": "Sometimes"}]}) is None
    assert matchable_requirements({"requirements": "a"}) is None
    assert matchable_requirements(None) is None
    assert matchable_requirements({"requirements": []}) == ()
