"""Diff what a node should have against what is published, into the fewest writes that leave
every pool complete.

Rules (`dra-api.md` 4-5): a pool's slices share one generation and its slice count; when any
slice's content changes, the generation goes up by one on every slice of the pool together;
slices missing from a newest generation that otherwise has our content are written into it;
metadata-only changes (labels, the owner's UID after a node is recreated) are written without a
bump. Obsolete slices are deleted after the new generation is written, so consumers always see
either the old complete pool or the new one. Slices whose immutable fields (pool name, node)
differ are deleted before they are recreated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .fingerprint import fingerprint
from .render import (
    ANNOTATION_SOURCE,
    LABEL_MANAGED_BY,
    Body,
    DesiredPool,
    DesiredSlice,
    NodeRef,
    NodeSlices,
    content_of,
    slice_labels,
    slice_manifest,
)

MAX_GENERATION = 2**63 - 1  # spec.pool.generation is an int64


@dataclass(frozen=True, slots=True)
class ObservedSlice:
    """The parts of a published ResourceSlice the planner compares."""

    name: str
    uid: str
    resource_version: str
    node_name: str
    driver: str
    pool: str
    generation: int
    slice_count: int
    owner_uid: str | None
    labels: Mapping[str, str]
    source: str | None
    content_print: str

    @classmethod
    def from_api(cls, obj: Mapping[str, Any], known: tuple[Mapping[str, Any], str] | None = None) -> ObservedSlice:
        """`known`, a content and its fingerprint (what we just applied): when the object's content
        is equal to it, as it is in the response to our own apply, its fingerprint is reused, as a
        deep comparison costs a fraction of fingerprinting."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        pool = spec.get("pool") or {}
        content = content_of(spec)
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Node"]
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            node_name=spec.get("nodeName") or "",
            driver=spec.get("driver", ""),
            pool=pool.get("name", ""),
            generation=int(pool.get("generation") or 0),
            slice_count=int(pool.get("resourceSliceCount") or 0),
            owner_uid=owners[0].get("uid") if owners else None,
            labels=dict(meta.get("labels") or {}),
            source=(meta.get("annotations") or {}).get(ANNOTATION_SOURCE),
            content_print=known[1] if known is not None and content == known[0] else fingerprint(content),
        )

    @property
    def managed_by(self) -> str | None:
        return self.labels.get(LABEL_MANAGED_BY)


@dataclass(frozen=True, slots=True)
class Apply:
    name: str
    manifest: Body
    content_print: str


@dataclass(frozen=True, slots=True)
class Delete:
    name: str
    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """Writes for one (node, driver) pool, executed in order: pre_deletes, applies, deletes."""

    driver: str
    reason: str
    pre_deletes: tuple[Delete, ...] = ()
    applies: tuple[Apply, ...] = ()
    deletes: tuple[Delete, ...] = ()
    generation: int = 0

    @property
    def writes(self) -> int:
        return len(self.pre_deletes) + len(self.applies) + len(self.deletes)


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: str
    pools: tuple[PoolPlan, ...] = field(default=())

    @property
    def in_sync(self) -> bool:
        return not self.pools


def plan_node(
    node_name: str,
    desired: NodeSlices | None,
    observed: Iterable[ObservedSlice],
    managed_by: str,
    written: Mapping[str, tuple[str, str]] | None = None,
    protected: frozenset[str] = frozenset(),
) -> NodePlan:
    """The writes that take `observed` (this node's managed slices) to `desired`.

    `desired` None means the node should have nothing. `written` maps a slice name to the
    (resourceVersion, content fingerprint) of our last write to it: a slice still at that
    version is taken as what we meant even if the apiserver dropped fields (feature gates off),
    which would otherwise make us rewrite it forever.

    `protected` names sources ("overlay/x", or "mapping/*" for every mapping) whose configuration
    is currently unknown because it never validated: pools published from them are left as they
    are, so bad input never deletes or rewrites what was there.
    """
    written = written or {}
    wanted = {p.driver: p for p in desired.pools} if desired else {}
    # A slice name can pass from one driver to another (`{node}-devices` when the only driver
    # changes); the driver is immutable, so the old slice goes with the pool that now wants the
    # name, which deletes it before creating its own.
    name_owner = {s.name: p.driver for p in wanted.values() for s in p.slices}
    by_driver: dict[str, list[ObservedSlice]] = {}
    for obs in observed:
        by_driver.setdefault(name_owner.get(obs.name, obs.driver), []).append(obs)
    plans: list[PoolPlan] = []
    for driver in sorted(set(by_driver) | set(wanted)):
        have = by_driver.get(driver, [])
        if any(is_protected(o.source, protected) for o in have):
            continue
        pool = wanted.get(driver)
        if pool is None or desired is None:
            plans.append(
                PoolPlan(
                    driver, "pool no longer desired", deletes=tuple(Delete(o.name, o.uid, "obsolete") for o in have)
                )
            )
            continue
        plan = _plan_pool(desired.node, pool, have, managed_by, written)
        if plan is not None:
            plans.append(plan)
    return NodePlan(node_name, tuple(plans))


def is_protected(source: str | None, protected: frozenset[str]) -> bool:
    if not source or not protected:
        return False
    return source in protected or f"{source.split('/', 1)[0]}/*" in protected


def _plan_pool(
    node: NodeRef,
    pool: DesiredPool,
    have: Sequence[ObservedSlice],
    managed_by: str,
    written: Mapping[str, tuple[str, str]],
) -> PoolPlan | None:
    wanted_names = {s.name for s in pool.slices}
    current = {o.name: o for o in have}
    pre_deletes = []
    for o in have:
        if o.name in wanted_names and (o.pool != pool.pool or o.node_name != node.name or o.driver != pool.driver):
            pre_deletes.append(Delete(o.name, o.uid, "immutable driver, pool name or node changed"))
            del current[o.name]
    obsolete = [Delete(o.name, o.uid, "obsolete") for o in current.values() if o.name not in wanted_names]
    same_pool = [o for o in current.values() if o.pool == pool.pool]
    generation = max((o.generation for o in same_pool), default=0)

    prints = {s.name: s.content_print or fingerprint(s.content) for s in pool.slices}
    content_changed = False
    missing: list[DesiredSlice] = []  # not in the newest layer: absent, or at an older generation
    meta_changed: list[DesiredSlice] = []
    labels = slice_labels(node.name, pool.driver, managed_by)
    for s in pool.slices:
        found = current.get(s.name)
        if found is None or found.generation != generation:
            missing.append(s)
            continue
        o = found
        if o.slice_count != s.slice_count or (
            o.content_print != prints[s.name] and written.get(s.name) != (o.resource_version, prints[s.name])
        ):
            content_changed = True
            break
        if o.owner_uid != node.uid or o.source != s.source or any(o.labels.get(k) != v for k, v in labels.items()):
            meta_changed.append(s)
    # The newest layer holds some of our slices with our content: the rest are written into it
    # (a write cut short by a crash, or seen half-way from another writer), with no bump that
    # would make every slice go round again. Only a layer with nothing of ours is outbid.
    content_changed = content_changed or len(missing) == len(pool.slices)
    if content_changed:
        gen = generation + 1
        if gen > MAX_GENERATION:
            # Someone pushed the generation to int64's end: a higher one cannot be written, so the
            # pool starts over at 1 (deleted first, so consumers never mix the two).
            pre_deletes += [
                Delete(o.name, o.uid, "generation exhausted: the pool starts over") for o in current.values()
            ]
            obsolete = []
            gen = 1
        applies = tuple(Apply(s.name, slice_manifest(s, node, gen, managed_by), prints[s.name]) for s in pool.slices)
        return PoolPlan(pool.driver, "content changed", tuple(pre_deletes), applies, tuple(obsolete), gen)
    if missing or meta_changed or obsolete or pre_deletes:
        to_write = {s.name for s in missing} | {s.name for s in meta_changed}
        applies = tuple(
            Apply(s.name, slice_manifest(s, node, generation, managed_by), prints[s.name])
            for s in pool.slices
            if s.name in to_write
        )
        reason = "slices missing" if missing else "metadata changed"
        return PoolPlan(pool.driver, reason, tuple(pre_deletes), applies, tuple(obsolete), generation)
    return None
