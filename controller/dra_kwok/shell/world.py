"""What the controller knows of the cluster, kept up to date from watch events. No I/O.

Every `on_*` method takes one event and returns the names of the nodes it may have changed
("dirty"), so the reconciler re-plans exactly those. Configuration is kept at its last good
value: an invalid ConfigMap or overlay changes nothing already published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.claims import parse_time
from ..core.config import EMPTY_CONFIG, FallbackConfig, config_text_from_configmap, load_config_text
from ..core.decide import (
    ContentKey,
    Decision,
    NodeView,
    PublishProblem,
    RenderFailure,
    Sources,
    WriteResult,
    after_write,
)
from ..core.fault_annotation import FAULTS_ANNOTATION, parse_faults
from ..core.faults import Fault
from ..core.issues import Issue, errors
from ..core.models import Requirement
from ..core.overlay import OverlayRule, load_overlay
from ..core.plan import ObservedSlice
from ..core.render import NodeRef, pool_name
from ..core.resolve import Conflict, order_overlays
from ..core.simulation import Simulation
from ..core.status import Outcomes, OverlayFacts, matchable_requirements
from ..core.versions import DEFAULT_TARGET, TAINTS, Target
from .settings import Settings

log = logging.getLogger("dra_kwok.world")


@dataclass(slots=True)
class NodeRecord:
    name: str
    uid: str
    labels: dict[str, str]
    kwok: bool
    seen_at: float  # monotonic time of the first event, for the publish-latency metric
    latency_pending: bool = True
    created: float | None = None  # creationTimestamp, epoch seconds (publishDelay)
    faults_value: str = ""  # the faults annotation as last seen
    faults: tuple[Fault, ...] = ()  # the faults it asks for
    ref: NodeRef = field(init=False)  # what rendering needs: made once, not per decision

    def __post_init__(self) -> None:
        self.ref = NodeRef(self.name, self.uid)


@dataclass(slots=True)
class OverlayState:
    """An overlay as last seen, with the last spec that validated."""

    name: str
    uid: str
    generation: int
    rule: OverlayRule | None  # last good; None if no version has ever validated
    issues: list[Issue]
    status: dict[str, Any]  # as on the server
    valid: bool  # whether the current generation validated
    applied_generation: int = 0  # the generation `rule` came from
    warned_generation: int = 0
    # the current generation's requirements when well-formed (valid spec or not), for NODES
    requirements: tuple[Requirement, ...] | None = None


@dataclass(slots=True)
class ConfigState:
    present: bool = False
    resource_version: str = ""
    config: FallbackConfig | None = None  # last good; None if none has ever validated
    issues: list[Issue] = field(default_factory=list)
    valid: bool = True
    uid: str = ""
    warned_version: str = ""
    text: str | None = None  # the config.yaml text last loaded (valid or not)


def _older(event: ObservedSlice, held: ObservedSlice) -> bool:
    """Whether `event` describes an earlier state of the same object than `held`. etcd-backed
    resourceVersions are increasing integers; anything else is never taken as older."""
    a, b = event.resource_version, held.resource_version
    return event.uid == held.uid and a.isdigit() and b.isdigit() and int(a) < int(b)


class World:
    def __init__(self, settings: Settings, target: Target = DEFAULT_TARGET) -> None:
        self.settings = settings
        self._target = target
        self.nodes: dict[str, NodeRecord] = {}
        self.overlays: dict[str, OverlayState] = {}
        self.ordered: list[OverlayRule] = []
        self.config = ConfigState()
        self.slices: dict[str, dict[str, ObservedSlice]] = {}  # node -> slice name -> slice
        self.slice_node: dict[str, str] = {}
        self.written: dict[str, tuple[str, str]] = {}  # slice -> (resourceVersion, content print) of our write
        self.conflicts: dict[str, tuple[Conflict, ...]] = {}
        # node -> the sources whose templates do not fit it and the first problem: in overlay status
        self.render_failures: dict[str, RenderFailure] = {}
        # node -> what the apiserver did to its last write, when it was not what we sent
        self.publish_problems: dict[str, PublishProblem] = {}
        # node -> the content (slice name, fingerprint) the apiserver rejected: not sent again
        self.rejected: dict[str, ContentKey] = {}
        self.version = 0  # bumped on any change relevant to overlay status
        self.on_change: Callable[[], None] | None = None  # told when `version` moves (the status writer)
        self._sources: Sources | None = None  # the configuration nodes are decided against, built lazily
        # (kind, name) -> monotonic time of the object's last event, to tell what a re-list misses
        self.touched: dict[tuple[str, str], float] = {}
        # (driver, pool) -> (simulation, node, node UID) of pools whose claims the driver writes to
        self.claim_pools: dict[tuple[str, str], tuple[Simulation, str, str]] = {}
        self.claim_pools_of: dict[str, tuple[tuple[str, str], ...]] = {}  # node -> its keys there
        self.on_claim_pools: Callable[[str], None] | None = None  # told a pool name whose simulation changed

    @property
    def target(self) -> Target:
        """The Kubernetes version and gates published for: learned once at startup."""
        return self._target

    @target.setter
    def target(self, target: Target) -> None:
        self._target = target
        self._sources = None

    def _changed(self) -> None:
        """Something overlay status or ConfigMap Events report has changed."""
        self.version += 1
        if self.on_change is not None:
            self.on_change()

    def touch(self, kind: str, name: str, deleted: bool = False) -> None:
        if deleted:
            self.touched.pop((kind, name), None)
        else:
            self.touched[(kind, name)] = time.monotonic()

    def missing(self, kind: str, present: Iterable[str], since: float) -> list[str]:
        """Objects of `kind` ("node", "slice", "overlay") held here but absent from a listing
        started at `since` and not heard of since then: deleted while no watch was there to say so."""
        held: Mapping[str, object] = (
            self.nodes if kind == "node" else self.slice_node if kind == "slice" else self.overlays
        )
        listed = set(present)
        return [n for n in list(held) if n not in listed and self.touched.get((kind, n), 0.0) < since]

    # --- nodes -------------------------------------------------------------------------------
    def on_node(self, event_type: str | None, obj: Mapping[str, Any]) -> list[str]:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        self.touch("node", name, event_type == "DELETED")
        if event_type == "DELETED":
            held = self.nodes.get(name)
            if held is not None and meta.get("uid") and held.uid != meta.get("uid"):
                return []  # an older incarnation's deletion, handled after the new one's creation
            if self.nodes.pop(name, None) is not None:
                self._changed()
            self.conflicts.pop(name, None)
            self._record_claim_pools(name, ())
            if self.render_failures.pop(name, None) is not None:
                self._changed()
            self.set_publish_problem(name, None)
            self.rejected.pop(name, None)
            return [name] if name in self.slices else []
        labels = dict(meta.get("labels") or {})
        kwok = self.settings.kwok_nodes.matches(labels, meta.get("annotations") or {})
        # A node being deleted (drained by Karpenter, held by a finalizer) keeps its slices until
        # the Node object is gone, as with a real driver: its pods still hold claims on them.
        uid = meta.get("uid", "")
        old = self.nodes.get(name)
        if not kwok:
            if old is not None:
                del self.nodes[name]
                self._changed()
            return [name] if name in self.slices or old is not None else []
        faults_value = str((meta.get("annotations") or {}).get(FAULTS_ANNOTATION) or "")
        if old is not None and old.uid == uid and old.labels == labels and old.faults_value == faults_value:
            return []
        if old is not None and old.uid != uid:
            old = None  # recreated under the same name: a new node for the latency metric
        record = NodeRecord(
            name,
            uid,
            labels,
            True,
            old.seen_at if old else time.monotonic(),
            old.latency_pending if old else True,
            old.created if old else parse_time(meta.get("creationTimestamp")),
            faults_value,
            old.faults if old and old.faults_value == faults_value else self._faults(name, faults_value, old),
        )
        self.nodes[name] = record
        self._changed()
        return [name]

    def _faults(self, node: str, value: str, old: NodeRecord | None) -> tuple[Fault, ...]:
        """The faults a node's annotation asks for; an entry without a time began when first seen."""
        if not value:
            return ()
        entries, problems = parse_faults(value)
        for problem in problems:
            log.warning("node %s: annotation %s: %s", node, FAULTS_ANNOTATION, problem)
        known = {(f.driver, f.device, f.effect): f.since for f in (old.faults if old else ())}
        now = time.time()
        return tuple(
            Fault(
                e.driver,
                e.device,
                e.effect,
                e.since.timestamp() if e.since is not None else known.get((e.driver, e.device, e.effect), now),
            )
            for e in entries
        )

    # --- configuration -----------------------------------------------------------------------
    def configmap_text(self, obj: Mapping[str, Any]) -> tuple[str | None, list[Issue], bool]:
        """The ConfigMap's configuration text, the problems reading it, and whether it is what was
        loaded last (a metadata-only change, a relisting): then there is nothing to parse again."""
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion", "")
        cfg = self.config
        if cfg.present and rv == cfg.resource_version:
            return None, [], True
        text, issues = config_text_from_configmap(obj, self.settings.configmap_key)
        if cfg.present and text is not None and text == cfg.text:
            cfg.resource_version, cfg.uid = rv, meta.get("uid", "")
            self.touch("configmap", "")
            return text, issues, True
        return text, issues, False

    def on_configmap(
        self,
        event_type: str | None,
        obj: Mapping[str, Any],
        loaded: tuple[str | None, FallbackConfig | None, list[Issue]] | None = None,
    ) -> tuple[bool, list[str]]:
        """Returns (whether the effective configuration changed, dirty nodes). `loaded`, the text,
        config and issues when the caller parsed them already (off the event loop)."""
        meta = obj.get("metadata") or {}
        self.touch("configmap", "", event_type == "DELETED")
        self._sources = None
        if event_type == "DELETED":
            self.config = ConfigState(present=False, config=EMPTY_CONFIG)
            log.warning(
                "ConfigMap %s/%s deleted: no fallback mappings until it is recreated",
                self.settings.configmap_namespace,
                self.settings.configmap_name,
            )
            return True, self.all_nodes()
        rv = meta.get("resourceVersion", "")
        if loaded is None:
            text, issues, same = self.configmap_text(obj)
            if same:
                return False, []
            config: FallbackConfig | None = None
            if text is not None:
                config, issues = load_config_text(text, self.target)
        else:
            text, config, issues = loaded
        self.config.present = True
        self.config.resource_version = rv
        self.config.uid = meta.get("uid", "")
        self.config.issues = issues
        self.config.text = text
        if config is None:
            self.config.valid = False
            return False, []
        self.config.valid = True
        self.config.config = config
        return True, self.all_nodes()

    def on_overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> tuple[bool, list[str]]:
        """Returns (whether resolution may have changed, dirty nodes)."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        self.touch("overlay", name, event_type == "DELETED")
        if event_type == "DELETED":
            self._sources = None
            state = self.overlays.pop(name, None)
            self._changed()
            if state is not None and state.rule is not None:
                self._reorder()
                return True, self.all_nodes()
            return False, []
        generation = int(meta.get("generation") or 0)
        uid = meta.get("uid", "")
        status = dict(obj.get("status") or {})
        state = self.overlays.get(name)
        if state is not None and state.generation == generation and state.uid == uid:
            state.status = status  # our own status write, or someone else's: no spec change
            return False, []
        rule, issues = load_overlay(obj, self.target)
        self._sources = None
        self._changed()
        if state is None or state.uid != uid:
            state = OverlayState(name, uid, generation, None, issues, status, rule is not None)
            self.overlays[name] = state
        state.generation, state.issues, state.status, state.valid = generation, issues, status, rule is not None
        state.requirements = rule.requirements if rule is not None else matchable_requirements(obj.get("spec"))
        if rule is None:
            return False, []
        state.rule = rule
        state.applied_generation = generation
        self._reorder()
        return True, self.all_nodes()

    def _reorder(self) -> None:
        self.ordered = order_overlays(s.rule for s in self.overlays.values() if s.rule is not None)

    # --- observed slices ---------------------------------------------------------------------
    def on_slice(self, event_type: str | None, obj: Mapping[str, Any]) -> list[str]:
        """Track a managed slice; its node is dirty unless this is the echo of our own write."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        self.touch("slice", name, event_type == "DELETED")
        if event_type == "DELETED":
            held_node = self.slice_node.get(name)
            held = self.slices.get(held_node or "", {}).get(name)
            if held is not None and meta.get("uid") and held.uid != meta.get("uid"):
                return []  # an older incarnation's deletion, seen after we created the new one
            node = self.slice_node.pop(name, None)
            self.written.pop(name, None)
            if node is None:
                return []
            node_slices = self.slices.get(node, {})
            node_slices.pop(name, None)
            if not node_slices:
                self.slices.pop(node, None)
            return [node]
        # The echo of our own write (or a relisting) carries a resourceVersion we already hold,
        # from the apply response: the same object, so nothing to parse, fingerprint or re-plan.
        rv = meta.get("resourceVersion")
        held = self.slices.get((obj.get("spec") or {}).get("nodeName") or "", {}).get(name)
        if held is not None and rv and held.resource_version == rv:
            return []
        observed = ObservedSlice.from_api(obj)
        return self.record_slice(observed)

    def record_slice(self, observed: ObservedSlice, ours: bool = False) -> list[str]:
        if observed.managed_by != self.settings.managed_by or not observed.node_name:
            return []
        self.touch("slice", observed.name)
        previous_node = self.slice_node.get(observed.name)
        if previous_node is not None and previous_node != observed.node_name:
            self.slices.get(previous_node, {}).pop(observed.name, None)
        current = self.slices.setdefault(observed.node_name, {}).get(observed.name)
        if not ours and current is not None and _older(observed, current):
            # Our write's response can arrive before the watch event of an edit it overwrote;
            # that stale event must not replace the newer state (it would cause a needless rewrite).
            return []
        self.slices[observed.node_name][observed.name] = observed
        self.slice_node[observed.name] = observed.node_name
        if ours:
            return []
        written = self.written.get(observed.name)
        if written is not None and written[0] == observed.resource_version:
            return []  # the echo of our own write
        if current is not None and current.resource_version == observed.resource_version:
            return []
        return [observed.node_name]

    def forget_slice(self, name: str) -> None:
        node = self.slice_node.pop(name, None)
        self.written.pop(name, None)
        if node is not None:
            self.slices.get(node, {}).pop(name, None)
            if not self.slices.get(node):
                self.slices.pop(node, None)

    # --- views for the decision, and what was decided ---------------------------------------
    def all_nodes(self) -> list[str]:
        return list(set(self.nodes) | set(self.slices))

    def sources(self) -> Sources:
        """The configuration every node is decided against; rebuilt only when it changed."""
        if self._sources is None:
            self._sources = Sources(
                tuple(self.ordered),
                self.config.config or EMPTY_CONFIG,
                self.protected_sources(),
                self.settings.managed_by,
                self.target.limits,
                self.target.has(TAINTS),
            )
        return self._sources

    def view(self, name: str) -> NodeView:
        """What is known of node `name`, for `decide()`."""
        node = self.nodes.get(name)
        held = self.slices.get(name)
        return NodeView(
            name,
            node.ref if node is not None else None,
            node.labels if node is not None else {},
            held.values() if held is not None else (),  # read at once by decide(): no copy
            self.written,
            self.rejected.get(name),
            self.publish_problems.get(name),
            node.created if node is not None else None,
            node.faults if node is not None else (),
        )

    def record(self, decision: Decision) -> None:
        """Keep what was decided for a node that status and Events report (conflicts, render
        failures) and its rejected content and publish problem."""
        name = decision.node
        if self.conflicts.get(name, ()) != decision.conflicts:
            self._changed()
            if decision.conflicts:
                self.conflicts[name] = decision.conflicts
            else:
                del self.conflicts[name]
        if self.render_failures.get(name) != decision.render_failure:
            self._changed()
            if decision.render_failure is None:
                del self.render_failures[name]
            else:
                self.render_failures[name] = decision.render_failure
        self._set_rejected(name, decision.rejected)
        self.set_publish_problem(name, decision.problem)
        self._record_claim_pools(name, decision.simulated.claim_rules)

    def _record_claim_pools(self, name: str, rules: tuple[tuple[str, Simulation], ...]) -> None:
        """Which of our pools' claims the driver writes to, and with which simulation."""
        held = self.claim_pools_of.get(name)
        if not rules and held is None:
            return
        node = self.nodes.get(name)
        pool = pool_name(name)
        wanted = {(driver, pool): (sim, name, node.uid) for driver, sim in rules} if node is not None else {}
        if held is not None and {k: self.claim_pools.get(k) for k in held} == wanted:
            return
        if self.on_claim_pools is not None:
            self.on_claim_pools(pool)
        for key in held or ():
            self.claim_pools.pop(key, None)
        if not wanted:
            self.claim_pools_of.pop(name, None)
            return
        self.claim_pools.update(wanted)
        self.claim_pools_of[name] = tuple(wanted)

    def claim_pool(self, driver: str, pool: str) -> tuple[Simulation, str, str] | None:
        """The simulation and node (name, UID) of our pool (driver, pool), if its claims are written to."""
        return self.claim_pools.get((driver, pool))

    def record_result(self, decision: Decision, result: WriteResult) -> None:
        """Keep what became of a decision's writes (see `after_write`)."""
        rejected, problem = after_write(decision, result)
        self._set_rejected(decision.node, rejected)
        self.set_publish_problem(decision.node, problem)

    def record_applied(self, observed: ObservedSlice, content_print: str) -> None:
        """Our apply's response: the slice as stored, and the content we meant by it."""
        self.written[observed.name] = (observed.resource_version, content_print)
        self.record_slice(observed, ours=True)

    def take_publish_latency(self, name: str) -> float | None:
        """Seconds from the node's first event to its first complete publication, once per node."""
        node = self.nodes.get(name)
        if node is None or not node.latency_pending:
            return None
        node.latency_pending = False
        return time.monotonic() - node.seen_at

    def created(self, name: str) -> float | None:
        node = self.nodes.get(name)
        return node.created if node is not None else None

    def knows(self, name: str) -> bool:
        """Whether `name` is a KWOK node or still has managed slices."""
        return name in self.nodes or name in self.slices

    def clear_rejections(self) -> None:
        """Content the apiserver rejected may be tried once more (an admission policy or a feature
        gate may have changed meanwhile)."""
        self.rejected.clear()

    def _set_rejected(self, name: str, key: ContentKey | None) -> None:
        if key is None:
            self.rejected.pop(name, None)
        else:
            self.rejected[name] = key

    def set_publish_problem(self, name: str, problem: PublishProblem | None) -> None:
        if self.publish_problems.get(name) == problem:
            return
        if problem is None:
            del self.publish_problems[name]
        else:
            self.publish_problems[name] = problem
        self._changed()

    def protected_sources(self) -> frozenset[str]:
        """Sources whose published slices must not change while their configuration is unknown:
        a ConfigMap or overlay that has been invalid since it was first seen."""
        out = set()
        if self.config.present and self.config.config is None:
            out.add("mapping/*")
        out |= {f"overlay/{s.name}" for s in self.overlays.values() if s.rule is None}
        return frozenset(out)

    # --- what status and Events report ---------------------------------------------------------
    def outcomes(self) -> Outcomes:
        return Outcomes(self.conflicts, self.render_failures, self.publish_problems)

    def overlay_facts(self) -> list[OverlayFacts]:
        return [
            OverlayFacts(
                s.name,
                s.uid,
                s.generation,
                s.valid,
                s.issues,
                s.applied_generation if s.rule is not None else None,
                s.requirements,
                s.status,
            )
            for s in self.overlays.values()
        ]

    def node_labels(self) -> list[Mapping[str, str]]:
        return [n.labels for n in self.nodes.values()]

    def status_written(self, name: str, uid: str, status: dict[str, Any]) -> None:
        """Our status write succeeded: the overlay (if it is still the same object) has it now."""
        state = self.overlays.get(name)
        if state is not None and state.uid == uid:
            state.status = status

    def config_gone_since(self, since: float) -> bool:
        """Whether the ConfigMap is held as present with no event for it since `since`."""
        return self.config.present and self.touched.get(("configmap", ""), 0.0) < since

    def invalid_documents(self) -> Iterable[tuple[str, list[Issue]]]:
        if self.config.present and not self.config.valid:
            yield "configmap", errors(self.config.issues)
        for s in self.overlays.values():
            if not s.valid:
                yield f"overlay/{s.name}", errors(s.issues)
