"""DRANodeOverlay status: conditions, matched nodes and observed generation, computed purely.

`lastTransitionTime` is carried over while a condition's status is unchanged, so recomputing
the same status yields the same object and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .decide import FIELDS_DROPPED, PUBLISH_FAILED, PublishProblem, RenderFailure
from .issues import Issue, errors
from .models import Requirement
from .resolve import Conflict
from .selectors import requirements_match

MAX_MESSAGE = 1024
RENDER_FAILED = "RenderFailed"
# Ready reasons that say something went wrong after the spec validated: a Warning Event on entering
WARNING_REASONS = frozenset({RENDER_FAILED, PUBLISH_FAILED, FIELDS_DROPPED})


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int, previous: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    unchanged = previous is not None and previous.get("status") == status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "observedGeneration": generation,
        "lastTransitionTime": (previous or {}).get("lastTransitionTime", now) if unchanged else now,
    }


def overlay_status(
    *,
    generation: int,
    valid: bool,
    issues: Sequence[Issue],
    applied_generation: int | None,
    matched_nodes: int,
    conflicts: Iterable[Conflict],
    previous: Mapping[str, Any] | None,
    now: str,
    render_failures: Sequence[tuple[str, str]] = (),
    publish_failures: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    """The status an overlay should have. `conflicts` are this overlay's losses, one per node;
    `render_failures` the (node, problem) pairs where its templates do not fit the node;
    `publish_failures` the (node, reason, problem) triples where the apiserver rejected its slices
    (reason PublishFailed) or dropped fields of them (FieldsDropped)."""
    prev = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)}
    losses = list(conflicts)
    if not valid:
        errs = errors(issues)
        shown = "; ".join(str(i) for i in errs[:3]) + (f"; and {len(errs) - 3} more" if len(errs) > 3 else "")
        kept = (
            f". The last valid spec (generation {applied_generation}) stays in force."
            if applied_generation
            else ". Nothing is published from it."
        )
        ready = _condition("Ready", "False", "InvalidSpec", shown + kept, generation, prev.get("Ready"), now)
    elif render_failures:
        node, problem = min(render_failures)
        ready = _condition(
            "Ready",
            "False",
            "RenderFailed",
            f"cannot publish for {len(render_failures)} of {matched_nodes} matched node(s), "
            f"which keep what they had; node {node}: {problem}",
            generation,
            prev.get("Ready"),
            now,
        )
    elif publish_failures:
        rejected = sorted(f for f in publish_failures if f[1] == PUBLISH_FAILED)
        node, reason, problem = rejected[0] if rejected else min(publish_failures)
        count = len(rejected) if rejected else len(publish_failures)
        what = (
            "the apiserver rejected the slices"
            if reason == PUBLISH_FAILED
            else "the apiserver dropped fields of the slices (a feature gate off, or fields this Kubernetes "
            "version does not know)"
        )
        ready = _condition(
            "Ready",
            "False",
            reason,
            f"{what} of {count} of {matched_nodes} matched node(s); node {node}: {problem}",
            generation,
            prev.get("Ready"),
            now,
        )
    elif losses and len(losses) >= matched_nodes > 0:
        ready = _condition(
            "Ready",
            "False",
            "Conflict",
            "lost every node it matches to an overlay of equal weight",
            generation,
            prev.get("Ready"),
            now,
        )
    else:
        ready = _condition(
            "Ready", "True", "Applied", f"matches {matched_nodes} KWOK node(s)", generation, prev.get("Ready"), now
        )
    if losses:
        winners = sorted({(c.winner, c.driver) for c in losses})
        text = ", ".join(f"driver {d} to overlay {w}" for w, d in winners[:5])
        conflict = _condition(
            "Conflict",
            "True",
            "EqualWeight",
            f"not applied on {len(losses)} node(s): lost {text} at equal weight {losses[0].weight}; "
            "give one overlay a higher weight",
            generation,
            prev.get("Conflict"),
            now,
        )
    else:
        conflict = _condition("Conflict", "False", "NoConflict", "", generation, prev.get("Conflict"), now)
    return {"conditions": [ready, conflict], "matchedNodes": matched_nodes, "observedGeneration": generation}


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal apart from condition timestamps (so a clock tick never causes a write)."""

    def strip(s: Mapping[str, Any] | None) -> Any:
        s = s or {}
        conds = sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []),
            key=lambda c: str(c.get("type")),
        )
        return (conds, s.get("matchedNodes"), s.get("observedGeneration"))

    return bool(strip(a) == strip(b))


def _conditions(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (status or {}).get("conditions") or [] if isinstance(c, Mapping)}


def status_events(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) that announce a status change, so `kubectl describe`
    and event watchers see it: a Warning when the overlay starts losing an equal-weight conflict
    or its slices start failing (render, rejection, dropped fields), a Normal one when that ends
    or a spec that was invalid validates. (Invalid specs get their Warning when they are loaded.)"""
    old, new = _conditions(previous), _conditions(current)
    out: list[tuple[str, str, str]] = []
    old_ready, new_ready = old.get("Ready") or {}, new.get("Ready") or {}
    old_reason, new_reason = old_ready.get("reason"), new_ready.get("reason")
    if new_reason != old_reason:
        if old_reason == "InvalidSpec" and new_reason is not None:
            out.append(("Normal", "SpecValid", f"the spec is valid again; {new_ready.get('message', '')}"))
        if new_reason in WARNING_REASONS:
            out.append(("Warning", str(new_reason), str(new_ready.get("message", ""))))
        elif new_ready.get("status") == "True" and old_reason in WARNING_REASONS:
            out.append(("Normal", "Published", f"published again; {new_ready.get('message', '')}"))
    old_conflict = (old.get("Conflict") or {}).get("status")
    new_conflict = new.get("Conflict") or {}
    if new_conflict.get("status") == "True" and old_conflict != "True":
        out.append(("Warning", "Conflict", str(new_conflict.get("message", ""))))
    elif old_conflict == "True" and new_conflict.get("status") != "True":
        out.append(("Normal", "ConflictResolved", "no longer loses any node to an overlay of equal weight"))
    return out


def matchable_requirements(spec: Any) -> tuple[Requirement, ...] | None:
    """The requirements of an overlay's spec, when they are well-formed even if the rest is not,
    so that NODES counts the KWOK nodes an invalid overlay matches; None when they are not."""
    raw = spec.get("requirements") if isinstance(spec, Mapping) else None
    if not isinstance(raw, list):
        return None
    try:
        return tuple(Requirement.model_validate(r) for r in raw)
    except ValidationError:
        return None


# --- from recorded decisions to what users see ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverlayFacts:
    """An overlay as the World holds it: its current generation and whether it validated, the
    generation in force (None if none ever validated), its requirements when well-formed, and
    its status as on the server."""

    name: str
    uid: str
    generation: int
    valid: bool
    issues: Sequence[Issue]
    applied_generation: int | None
    requirements: tuple[Requirement, ...] | None
    status: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Outcomes:
    """The decisions recorded per node that overlay status and ConfigMap Events report."""

    conflicts: Mapping[str, tuple[Conflict, ...]]
    render_failures: Mapping[str, RenderFailure]
    publish_problems: Mapping[str, PublishProblem]


MappingFailures = dict[str, list[tuple[str, str]]]  # mapping name -> [(node, problem)]


def overlay_statuses(
    overlays: Iterable[OverlayFacts], node_labels: Sequence[Mapping[str, str]], outcomes: Outcomes, now: str
) -> list[tuple[OverlayFacts, dict[str, Any]]]:
    """Each overlay whose status should change, with its new status (nothing for the others, so
    an unchanged cluster writes nothing)."""
    losses: dict[str, list[Conflict]] = {}
    for conflicts in outcomes.conflicts.values():
        for c in conflicts:
            losses.setdefault(c.overlay, []).append(c)
    failures: dict[str, list[tuple[str, str]]] = {}
    for node, failure in outcomes.render_failures.items():
        for source in failure.sources:
            kind, _, name = source.partition("/")
            if kind == "overlay":
                failures.setdefault(name, []).append((node, failure.problem))
    publish: dict[str, list[tuple[str, str, str]]] = {}
    for node, p in outcomes.publish_problems.items():
        for source in p.sources:
            kind, _, name = source.partition("/")
            if kind == "overlay":
                publish.setdefault(name, []).append((node, p.reason, p.message))
    out = []
    for o in overlays:
        reqs = o.requirements
        matched = 0 if reqs is None else sum(1 for labels in node_labels if requirements_match(reqs, labels))
        status = overlay_status(
            generation=o.generation,
            valid=o.valid,
            issues=o.issues,
            applied_generation=o.applied_generation,
            matched_nodes=matched,
            conflicts=losses.get(o.name, []),
            previous=o.status,
            now=now,
            render_failures=failures.get(o.name, ()),
            publish_failures=publish.get(o.name, ()),
        )
        if not same_status(status, o.status):
            out.append((o, status))
    return out


def mapping_failures(outcomes: Outcomes) -> dict[str, MappingFailures]:
    """For each reason a ConfigMap mapping can fail for nodes (RenderFailed, PublishFailed,
    FieldsDropped; every reason present, maybe empty), the failing mappings and their nodes."""
    out: dict[str, MappingFailures] = {RENDER_FAILED: {}, PUBLISH_FAILED: {}, FIELDS_DROPPED: {}}
    for node, failure in outcomes.render_failures.items():
        for source in failure.sources:
            kind, _, name = source.partition("/")
            if kind != "overlay":
                out[RENDER_FAILED].setdefault(name, []).append((node, failure.problem))
    for node, p in outcomes.publish_problems.items():
        for source in p.sources:
            kind, _, name = source.partition("/")
            if kind != "overlay":
                out[p.reason].setdefault(name, []).append((node, p.message))
    return out


_FAILING_AS = {
    RENDER_FAILED: "cannot publish for",
    PUBLISH_FAILED: "the apiserver rejected the slices of",
    FIELDS_DROPPED: "the apiserver dropped fields of the slices of",
}


def mapping_failure_events(
    reason: str, failures: MappingFailures, reported: frozenset[str]
) -> tuple[list[tuple[str, str, str]], frozenset[str]]:
    """A ConfigMap has no status: the Events (type, reason, message) to post on it, a Warning when
    mappings start failing `reason`'s way (once per new set of failing mappings, not per node) and
    a Normal one when none fails that way any more; and the failing mappings, to pass as
    `reported` next time."""
    failing = frozenset(failures)
    events: list[tuple[str, str, str]] = []
    if reported and not failing:
        events.append(("Normal", f"{reason}Resolved", f"no mapping has {reason} any more"))
    new = failing - reported
    if new:
        parts = []
        for name in sorted(new):
            node, problem = min(failures[name])
            parts.append(
                f"mapping {name}: {_FAILING_AS[reason]} {len(failures[name])} node(s), which keep what they had; "
                f"node {node}: {problem}"
            )
        events.append(("Warning", reason, "; ".join(parts)))
    return events, failing
