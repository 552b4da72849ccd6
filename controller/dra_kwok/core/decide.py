"""One decision per node: everything known about a node in, everything decided for it out.

The shell asks `decide()` once per reconcile of a node and then only carries the decision out
(writes) and records it (conflicts, render failures, publish problems, for status and Events).
Resolving, rendering, planning and the rules about rejected content all happen here, in one
pure call, so a node event can be followed from the watch to the write through this function.

    NodeView + Sources --decide()--> Decision --(shell: writes)--> WriteResult
                                        |                              |
                                        +---> recorded by the World <--+ (`after_write()`)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from .config import EMPTY_CONFIG, FallbackConfig
from .defaults import DEFAULT_MANAGED_BY
from .fingerprint import fingerprint
from .overlay import OverlayRule
from .plan import NodePlan, ObservedSlice, plan_node
from .render import ANNOTATION_SOURCE, NodeRef, NodeSlices, RenderError, render
from .resolve import Conflict, resolve
from .versions import DEFAULT_TARGET, Limits

PUBLISH_FAILED = "PublishFailed"  # the apiserver rejected the slices
FIELDS_DROPPED = "FieldsDropped"  # the apiserver stored them without some fields we sent
ContentKey = frozenset[tuple[str, str]]  # (slice name, content fingerprint) of a node's desired slices


@dataclass(frozen=True, slots=True)
class RenderFailure:
    """The node's templates do not fit it: `sources` are the pools' sources, `problem` the first finding."""

    sources: tuple[str, ...]
    problem: str


@dataclass(frozen=True, slots=True)
class PublishProblem:
    """The apiserver rejected a node's slices (PublishFailed) or dropped fields of them
    (FieldsDropped); `sources` are the pools' sources, `message` names the slice and the fields."""

    reason: str
    sources: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Sources:
    """The configuration every node is decided against (the same for all nodes of a round)."""

    overlays: Sequence[OverlayRule]  # in Karpenter's order (`order_overlays`)
    config: FallbackConfig = EMPTY_CONFIG  # the last valid ConfigMap configuration
    protected: frozenset[str] = frozenset()  # sources whose configuration never validated: hands off
    managed_by: str = DEFAULT_MANAGED_BY
    limits: Limits = DEFAULT_TARGET.limits


@dataclass(frozen=True, slots=True)
class NodeView:
    """What is known of one node: the Node (None when it is gone or not a KWOK node), the managed
    slices seen for it, our last writes, the content the apiserver last rejected and the problem
    recorded for its last write."""

    name: str
    node: NodeRef | None
    labels: Mapping[str, str]
    observed: Iterable[ObservedSlice]
    written: Mapping[str, tuple[str, str]]  # slice -> (resourceVersion, content print) of our write
    rejected: ContentKey | None = None
    problem: PublishProblem | None = None


class Outcome(Enum):
    IN_SYNC = "in_sync"  # nothing to write
    WRITE = "write"  # the plan's writes are to be carried out
    REJECTED = "rejected"  # the same content the apiserver refused: not sent again
    RENDER_FAILED = "render_failed"  # the templates do not fit the node: nothing is written


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything decided for one node. `rejected` and `problem` are the node's new values (what
    the World records); `published` says the node now has what it should (publish latency)."""

    node: str
    outcome: Outcome
    plan: NodePlan
    conflicts: tuple[Conflict, ...] = ()
    render_failure: RenderFailure | None = None
    content_key: ContentKey = frozenset()
    sources: tuple[str, ...] = ()  # the sources of the slices the plan applies
    rejected: ContentKey | None = None
    problem: PublishProblem | None = None
    error: str = ""  # the render error, for the log

    @property
    def published(self) -> bool:
        return self.outcome is Outcome.IN_SYNC


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of a decision's writes: `refused`, the apiserver's message when it rejected the
    content (400/422); else `dropped`, a line per slice stored without fields we sent."""

    refused: str | None = None
    dropped: tuple[str, ...] = ()


def content_key(desired: NodeSlices | None) -> ContentKey:
    """What a node's desired slices contain, to recognise content the apiserver rejected."""
    if desired is None:
        return frozenset()
    return frozenset((s.name, s.content_print or fingerprint(s.content)) for pool in desired.pools for s in pool.slices)


def _plan_sources(plan: NodePlan) -> tuple[str, ...]:
    found = {
        str(((a.manifest.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SOURCE) or "")
        for p in plan.pools
        for a in p.applies
    }
    return tuple(sorted(found - {""}))


def decide(view: NodeView, sources: Sources) -> Decision:
    """Resolve, render and plan one node, and apply the rules about content the apiserver rejected:
    it is not sent again until what the node should have changes."""
    conflicts: tuple[Conflict, ...] = ()
    desired: NodeSlices | None = None
    if view.node is not None:
        res = resolve(view.labels, sources.overlays, sources.config)
        conflicts = res.conflicts
        if res.pools:
            try:
                desired = render(view.node, res, sources.limits)
            except RenderError as exc:
                failure = RenderFailure(exc.sources, str(exc.issues[0]) if exc.issues else str(exc))
                return Decision(
                    view.name,
                    Outcome.RENDER_FAILED,
                    NodePlan(view.name),
                    conflicts,
                    failure,
                    rejected=view.rejected,
                    problem=view.problem,
                    error=str(exc),
                )
    plan = plan_node(view.name, desired, view.observed, sources.managed_by, view.written, sources.protected)
    if plan.in_sync:
        # What is published is wanted again: a rejection of other content no longer matters.
        recovered = view.problem is not None and view.problem.reason == PUBLISH_FAILED
        return Decision(
            view.name,
            Outcome.IN_SYNC,
            plan,
            conflicts,
            rejected=None if recovered else view.rejected,
            problem=None if recovered else view.problem,
        )
    key = content_key(desired)
    if view.rejected is not None and view.rejected == key:
        return Decision(view.name, Outcome.REJECTED, plan, conflicts, None, key, rejected=key, problem=view.problem)
    return Decision(view.name, Outcome.WRITE, plan, conflicts, None, key, _plan_sources(plan), problem=view.problem)


def after_write(decision: Decision, result: WriteResult) -> tuple[ContentKey | None, PublishProblem | None]:
    """The node's rejected content and publish problem once the decision's writes are done: the
    refused content is remembered (not sent again) with a PublishFailed problem; fields dropped by
    the apiserver are a FieldsDropped problem; a clean write clears both."""
    if result.refused is not None:
        return decision.content_key, PublishProblem(PUBLISH_FAILED, decision.sources, result.refused)
    if result.dropped:
        return None, PublishProblem(FIELDS_DROPPED, decision.sources, "; ".join(result.dropped))
    return None, None
