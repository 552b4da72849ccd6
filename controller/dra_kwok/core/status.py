"""DRANodeOverlay status: conditions, matched nodes and observed generation, computed purely.

`lastTransitionTime` is carried over while a condition's status is unchanged, so recomputing
the same status yields the same object and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .issues import Issue, errors
from .resolve import Conflict

MAX_MESSAGE = 1024


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
) -> dict[str, Any]:
    """The status an overlay should have. `conflicts` are this overlay's losses, one per node;
    `render_failures` the (node, problem) pairs where its templates do not fit the node."""
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
