"""What the controller knows of the cluster, kept up to date from watch events. No I/O.

Every `on_*` method takes one event and returns the names of the nodes it may have changed
("dirty"), so the reconciler re-plans exactly those. Configuration is kept at its last good
value: an invalid ConfigMap or overlay changes nothing already published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.config import EMPTY_CONFIG, FallbackConfig, config_text_from_configmap, load_config_text
from ..core.issues import Issue, errors
from ..core.models import Requirement
from ..core.overlay import OverlayRule, load_overlay
from ..core.plan import NodePlan, ObservedSlice, plan_node
from ..core.render import NodeRef, NodeSlices, RenderError, render
from ..core.resolve import Conflict, Resolution, order_overlays, resolve
from ..core.status import matchable_requirements
from ..core.versions import DEFAULT_TARGET, Target
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


@dataclass(frozen=True, slots=True)
class PublishProblem:
    """The apiserver rejected a node's slices (PublishFailed) or dropped fields of them
    (FieldsDropped); `sources` are the pools' sources, `message` names the slice and the fields."""

    reason: str
    sources: tuple[str, ...]
    message: str


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
        self.target = target  # the Kubernetes published for: learned once at startup
        self.nodes: dict[str, NodeRecord] = {}
        self.overlays: dict[str, OverlayState] = {}
        self.ordered: list[OverlayRule] = []
        self.config = ConfigState()
        self.slices: dict[str, dict[str, ObservedSlice]] = {}  # node -> slice name -> slice
        self.slice_node: dict[str, str] = {}
        self.written: dict[str, tuple[str, str]] = {}  # slice -> (resourceVersion, content print) of our write
        self.conflicts: dict[str, tuple[Conflict, ...]] = {}
        # node -> (sources whose templates do not fit it, the first problem): shown in overlay status
        self.render_failures: dict[str, tuple[tuple[str, ...], str]] = {}
        # node -> what the apiserver did to its last write, when it was not what we sent
        self.publish_problems: dict[str, PublishProblem] = {}
        # node -> the content (slice name, fingerprint) the apiserver rejected: not sent again
        self.rejected: dict[str, frozenset[tuple[str, str]]] = {}
        self.version = 0  # bumped on any change relevant to overlay status
        # (kind, name) -> monotonic time of the object's last event, to tell what a re-list misses
        self.touched: dict[tuple[str, str], float] = {}

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
                self.version += 1
            self.conflicts.pop(name, None)
            self._rendered(name)
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
                self.version += 1
            return [name] if name in self.slices or old is not None else []
        if old is not None and old.uid == uid and old.labels == labels:
            return []
        if old is not None and old.uid != uid:
            old = None  # recreated under the same name: a new node for the latency metric
        record = NodeRecord(
            name, uid, labels, True, old.seen_at if old else time.monotonic(), old.latency_pending if old else True
        )
        self.nodes[name] = record
        self.version += 1
        return [name]

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
            state = self.overlays.pop(name, None)
            self.version += 1
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
        self.version += 1
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

    # --- planning ------------------------------------------------------------------------------
    def all_nodes(self) -> list[str]:
        return list(set(self.nodes) | set(self.slices))

    def resolution(self, node: NodeRecord) -> Resolution:
        config = self.config.config or EMPTY_CONFIG
        return resolve(node.labels, self.ordered, config)

    def desired(self, name: str) -> NodeSlices | None:
        """What `name` should have, or None. Raises RenderError for a template that does not fit."""
        node = self.nodes.get(name)
        if node is None:
            self.conflicts.pop(name, None)
            self._rendered(name)
            return None
        res = self.resolution(node)
        if res.conflicts or name in self.conflicts:
            if res.conflicts != self.conflicts.get(name, ()):
                self.version += 1
            self.conflicts[name] = res.conflicts
            if not res.conflicts:
                del self.conflicts[name]
        if not res.pools:
            self._rendered(name)
            return None
        try:
            rendered = render(NodeRef(node.name, node.uid), res, self.target.limits)
        except RenderError as exc:
            failure = (exc.sources, str(exc.issues[0]) if exc.issues else str(exc))
            if self.render_failures.get(name) != failure:
                self.render_failures[name] = failure
                self.version += 1
            raise
        self._rendered(name)
        return rendered

    def set_publish_problem(self, name: str, problem: PublishProblem | None) -> None:
        if self.publish_problems.get(name) == problem:
            return
        if problem is None:
            del self.publish_problems[name]
        else:
            self.publish_problems[name] = problem
        self.version += 1

    def _rendered(self, name: str) -> None:
        """`name` no longer fails to render (rendered, gone, or given nothing)."""
        if self.render_failures.pop(name, None) is not None:
            self.version += 1

    def protected_sources(self) -> frozenset[str]:
        """Sources whose published slices must not change while their configuration is unknown:
        a ConfigMap or overlay that has been invalid since it was first seen."""
        out = set()
        if self.config.present and self.config.config is None:
            out.add("mapping/*")
        out |= {f"overlay/{s.name}" for s in self.overlays.values() if s.rule is None}
        return frozenset(out)

    def plan(self, name: str, desired: NodeSlices | None) -> NodePlan:
        """A slice carrying this installation's managed-by label is ours whatever driver it names
        (a deleted overlay's, a renamed driver's): one that nothing desires any more is deleted."""
        return plan_node(
            name,
            desired,
            self.slices.get(name, {}).values(),
            self.settings.managed_by,
            self.written,
            self.protected_sources(),
        )

    def invalid_documents(self) -> Iterable[tuple[str, list[Issue]]]:
        if self.config.present and not self.config.valid:
            yield "configmap", errors(self.config.issues)
        for s in self.overlays.values():
            if not s.valid:
                yield f"overlay/{s.name}", errors(s.issues)
