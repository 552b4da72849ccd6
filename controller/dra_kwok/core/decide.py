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
from dataclasses import dataclass, field
from enum import Enum

from .config import EMPTY_CONFIG, FallbackConfig
from .defaults import DEFAULT_MANAGED_BY
from .faults import Fault, apply_faults, scheduled
from .fingerprint import fingerprint
from .overlay import OverlayRule
from .plan import NodePlan, ObservedSlice, plan_node
from .render import ANNOTATION_SOURCE, NodeRef, NodeSlices, RenderError, render
from .resolve import Conflict, Resolution, resolve
from .simulation import Simulation, pick
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
    taints: bool = True  # the target keeps device taints (DRADeviceTaints): faults may taint devices


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
    created: float | None = None  # the Node's creationTimestamp (epoch seconds), for publishDelay
    faults: tuple[Fault, ...] = ()  # faults asked for on the node (its faults annotation)


class Outcome(Enum):
    IN_SYNC = "in_sync"  # nothing to write
    WRITE = "write"  # the plan's writes are to be carried out
    REJECTED = "rejected"  # the same content the apiserver refused: not sent again
    RENDER_FAILED = "render_failed"  # the templates do not fit the node: nothing is written


@dataclass(frozen=True, slots=True)
class Simulated:
    """What the sources' `simulation` decided for the node: when to decide again (a delay or a
    fault ends), its publish delay, its faults, and the simulation of its pools whose claims the
    driver writes to (by driver)."""

    wake_at: float | None = None  # when the decision changes with time alone (delays, faults)
    publish_delay: float | None = None  # the longest publishDelay of the node's pools (seconds)
    fault_problems: tuple[str, ...] = ()  # faults that could not be applied, for the log
    faults_active: int = 0  # faults applied to the node's slices
    claim_rules: tuple[tuple[str, Simulation], ...] = ()
    withheld: bool = False  # a pool is still in its publishDelay: the node is not fully published


NOTHING_SIMULATED = Simulated()


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
    simulated: Simulated = field(default_factory=lambda: NOTHING_SIMULATED)

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


def _withheld(view: NodeView, res: Resolution, now: float) -> tuple[Resolution, float | None, float | None]:
    """The resolution without the pools still in their publishDelay (never one already published:
    a restart must not take devices away), when the first is due, and the longest delay."""
    if view.created is None or view.node is None:
        return res, None, None
    kept = []
    wake: float | None = None
    longest: float | None = None
    published = {o.driver for o in view.observed} if any(p.simulation for p in res.pools) else set()
    for pool in res.pools:
        sim = pool.simulation
        if sim is None or sim.publish_delay is None:
            kept.append(pool)
            continue
        delay = pick(sim.publish_delay, view.node.uid, pool.driver)
        longest = delay if longest is None else max(longest, delay)
        due = view.created + delay
        if now >= due or pool.driver in published:
            kept.append(pool)
        else:
            wake = due if wake is None else min(wake, due)
    if len(kept) == len(res.pools):
        return res, None, longest
    return Resolution(tuple(kept), res.matched_overlays, res.conflicts), wake, longest


def _faults(view: NodeView, res: Resolution, sources: Sources, now: float) -> tuple[list[Fault], float | None]:
    faults = list(view.faults)
    wake: float | None = None
    for pool in res.pools:
        found, due = scheduled(view.node.uid if view.node else view.name, pool, now)
        faults += found
        if due is not None:
            wake = due if wake is None else min(wake, due)
    return faults, wake


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def decide(view: NodeView, sources: Sources, now: float = 0.0) -> Decision:
    """Resolve, render and plan one node at wall-clock time `now` (epoch seconds; only delays
    and faults read it), and apply the rules about content the apiserver rejected: it is not
    sent again until what the node should have changes."""
    conflicts: tuple[Conflict, ...] = ()
    desired: NodeSlices | None = None
    wake: float | None = None
    longest: float | None = None
    fault_problems: list[str] = []
    active = 0
    claim_rules: tuple[tuple[str, Simulation], ...] = ()
    withheld = False
    if view.node is not None:
        res = resolve(view.labels, sources.overlays, sources.config)
        conflicts = res.conflicts
        res, wake, longest = _withheld(view, res, now)
        withheld = wake is not None
        claim_rules = tuple((p.driver, p.simulation) for p in res.pools if p.simulation and p.simulation.needs_claims)
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
                    simulated=Simulated(wake, withheld=withheld),
                )
            faults, fault_wake = _faults(view, res, sources, now)
            wake = _earliest(wake, fault_wake)
            if faults:
                if not sources.taints:
                    fault_problems += [
                        f"fault {f.device}={f.effect}: the targeted Kubernetes drops device taints (DRADeviceTaints "
                        "is off); fix: enable DRADeviceTaints, or use effect Remove"
                        for f in faults
                        if f.effect != "Remove"
                    ]
                    faults = [f for f in faults if f.effect == "Remove"]
                desired, problems, active = apply_faults(desired, faults, sources.limits)
                fault_problems += problems
    simulated = (
        NOTHING_SIMULATED
        if wake is None and longest is None and not fault_problems and not active and not claim_rules
        else Simulated(wake, longest, tuple(fault_problems), active, claim_rules, withheld)
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
            simulated=simulated,
        )
    key = content_key(desired)
    if view.rejected is not None and view.rejected == key:
        return Decision(
            view.name,
            Outcome.REJECTED,
            plan,
            conflicts,
            None,
            key,
            rejected=key,
            problem=view.problem,
            simulated=simulated,
        )
    return Decision(
        view.name,
        Outcome.WRITE,
        plan,
        conflicts,
        None,
        key,
        _plan_sources(plan),
        problem=view.problem,
        simulated=simulated,
    )


def after_write(decision: Decision, result: WriteResult) -> tuple[ContentKey | None, PublishProblem | None]:
    """The node's rejected content and publish problem once the decision's writes are done: the
    refused content is remembered (not sent again) with a PublishFailed problem; fields dropped by
    the apiserver are a FieldsDropped problem; a clean write clears both."""
    if result.refused is not None:
        return decision.content_key, PublishProblem(PUBLISH_FAILED, decision.sources, result.refused)
    if result.dropped:
        return None, PublishProblem(FIELDS_DROPPED, decision.sources, "; ".join(result.dropped))
    return None, None
