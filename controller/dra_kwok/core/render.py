"""Render a node's resolved pools into the ResourceSlices a real node-local driver would publish.

One pool per (node, driver), named after the node; devices split over slices of at most 128
(64 when devices use taints or counters, from 1.35); shared counters in a slice of their own
(1.35 and later) or in the slice of the devices that use them (1.34), as the targeted version's
`Limits` say; every slice of a pool carries the same generation and the pool's slice count.
Generations are chosen by `plan`, which alone knows what is already published.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import names
from .api_limits import DNS1123_SUBDOMAIN_MAX, POOL_NAME_MAX

# Re-exported: tests and benchmarks import them from here.
from .api_limits import MAX_DEVICES_PER_SLICE as MAX_DEVICES_PER_SLICE
from .defaults import DEFAULT_MANAGED_BY as DEFAULT_MANAGED_BY
from .fingerprint import fingerprint
from .issues import Issue
from .models import RESOURCE_API_VERSION, CounterSet, DeviceTemplate
from .resolve import Resolution
from .validation import PoolSpec
from .versions import DEFAULT_TARGET, Limits

LABEL_PREFIX = "dra-kwok.test.karpenter.sh"
LABEL_MANAGED_BY = f"{LABEL_PREFIX}/managed-by"
LABEL_NODE = f"{LABEL_PREFIX}/node"
LABEL_DRIVER = f"{LABEL_PREFIX}/driver"
ANNOTATION_SOURCE = f"{LABEL_PREFIX}/source"

PLACEHOLDERS = ("{nodeName}", "{nodeHash}", "{index}", "{deviceName}", "{deviceUUID}")

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What rendering needs of a Node: its name and UID (for the ownerReference)."""

    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class DesiredSlice:
    """One slice's identity and content; generation is added when it is written."""

    name: str
    driver: str
    pool: str
    slice_count: int
    content: Body  # {"devices": [...]} or {"sharedCounters": [...]}; shared, never mutate
    source: str
    # fingerprint(content), computed once when every node of the pool spec gets this very content
    # (no placeholders); "" when the content is this node's own
    content_print: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DesiredPool:
    driver: str
    pool: str
    source: str
    slices: tuple[DesiredSlice, ...]


@dataclass(frozen=True, slots=True)
class NodeSlices:
    """Everything one node should have published."""

    node: NodeRef
    pools: tuple[DesiredPool, ...]

    def all_slices(self) -> list[DesiredSlice]:
        return [s for p in self.pools for s in p.slices]


class RenderError(ValueError):
    """A template that is valid in itself does not fit this node (e.g. a placeholder grows too long)."""

    def __init__(self, node: str, issues: list[Issue], sources: tuple[str, ...] = ()) -> None:
        self.node = node
        self.issues = issues
        self.sources = sources  # the pools' sources ("overlay/<name>", "mapping/<name>") that failed
        super().__init__(f"node {node}: " + "; ".join(str(i) for i in issues))


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A pool's device bodies built once and shared by every node without placeholders."""

    devices: tuple[tuple[Body, bool, int], ...]  # (body, has placeholders, index within its template)
    counter_sets: tuple[Body, ...]
    per_slice: int
    # without placeholders, every node's slice contents and their fingerprints: built once
    static_chunks: tuple[tuple[Body, str], ...] | None
    counters_with_devices: bool


_COMPILED: OrderedDict[tuple[int, Limits], tuple[PoolSpec, _Compiled]] = OrderedDict()
_COMPILED_MAX = 4096


def _compile(pool: PoolSpec, limits: Limits) -> _Compiled:
    key = (id(pool), limits)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is pool:
        _COMPILED.move_to_end(key)
        return hit[1]
    devices: list[tuple[Body, bool, int]] = []
    advanced = False
    most_counters = 0
    for tmpl in pool.devices:
        lists = limits.lists_are_advanced and any(a.value_list is not None for a in tmpl.attributes.values())
        advanced = advanced or bool(tmpl.taints or tmpl.consumes_counters or lists)
        most_counters = max(most_counters, sum(len(c.counters) for c in tmpl.consumes_counters))
        for index, name in enumerate(tmpl.device_names()):
            body, dynamic = _device_body(tmpl, name)
            devices.append((body, dynamic, index))
    # Faults may taint any device of the pool: lay its slices out for taints from the start.
    advanced = advanced or bool(pool.simulation is not None and pool.simulation.taints)
    counter_sets = tuple(_counter_set_body(c) for c in pool.counter_sets)
    per_slice = limits.max_devices_advanced if advanced else limits.max_devices
    if limits.max_consumed_counters_per_slice is not None:
        per_slice = min(per_slice, limits.max_consumed_counters_per_slice // max(most_counters, 1))
    static = None
    if not any(dynamic for _, dynamic, _ in devices):
        static = tuple(
            (c, fingerprint(c))
            for c in _with_slice_fields(
                pool, _chunks([body for body, _, _ in devices], counter_sets, per_slice, limits.counters_with_devices)
            )
        )
    compiled = _Compiled(tuple(devices), counter_sets, per_slice, static, limits.counters_with_devices)
    _COMPILED[key] = (pool, compiled)  # the pool is kept alive so its id is not reused
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled


def _device_body(tmpl: DeviceTemplate, name: str) -> tuple[Body, bool]:
    body: Body = {"name": name}
    dynamic = False
    if tmpl.attributes:
        attrs: Body = {}
        for key, attr in tmpl.attributes.items():
            kind, value = attr.api_items()[0]
            if kind == "string" and isinstance(value, str) and "{" in value:
                dynamic = dynamic or any(p in value for p in PLACEHOLDERS)
            attrs[key] = {kind: value}
        body["attributes"] = attrs
    if tmpl.capacity:
        body["capacity"] = {k: c.to_api() for k, c in tmpl.capacity.items()}
    if tmpl.consumes_counters:
        body["consumesCounters"] = [c.to_api() for c in tmpl.consumes_counters]
    if tmpl.taints:
        body["taints"] = [t.to_api() for t in tmpl.taints]
    if tmpl.allow_multiple_allocations is not None:
        body["allowMultipleAllocations"] = tmpl.allow_multiple_allocations
    if tmpl.binds_to_node is not None:
        body["bindsToNode"] = tmpl.binds_to_node
    if tmpl.binding_conditions:
        body["bindingConditions"] = list(tmpl.binding_conditions)
        body["bindingFailureConditions"] = list(tmpl.binding_failure_conditions)
    return body, dynamic


def _counter_set_body(cs: CounterSet) -> Body:
    return {"name": cs.name, "counters": {k: {"value": c.value} for k, c in cs.counters.items()}}


def _substitute(body: Body, node: str, index: int, errors: list[Issue], driver: str) -> Body:
    """A copy of `body` with placeholders in string attributes filled in for this node."""
    attrs = {}
    for key, attr in body["attributes"].items():
        value = attr.get("string")
        if isinstance(value, str) and "{" in value:
            value = (
                value.replace("{nodeName}", node)
                .replace("{nodeHash}", names.short_hash(node))
                .replace("{index}", str(index))
                .replace("{deviceName}", body["name"])
            )
            if "{deviceUUID}" in value:  # a UUID costs a SHA-1: only where asked for
                value = value.replace("{deviceUUID}", names.device_uuid(node, body["name"]))
            problem = names.string_attribute_problem(value)
            if problem:
                errors.append(
                    Issue(
                        ("devices", body["name"], "attributes", key),
                        f"after filling in placeholders for driver {driver} the value {problem}",
                        value,
                        "use {nodeHash} (8 characters) instead of {nodeName} for long node names",
                    )
                )
            attr = {"string": value}
        attrs[key] = attr
    return {**body, "attributes": attrs}


def pool_name(node: str) -> str:
    """The seed's pool name, `{node}-device-pool`; a pool is (driver, name), so drivers may share it."""
    return names.bounded(f"{node}-device-pool", POOL_NAME_MAX)


def slice_name(node: str, driver: str, index: int, simple: bool) -> str:
    """`{node}-devices` in the common case (one driver, one slice), else `{node}-{driver}-{h}-{index}`.

    `h` hashes the pair `node/driver`: `{node}-{driver}` alone is ambiguous (node `a` with driver
    `b-c.io` and node `a-b` with driver `c.io`), and a `/` can appear in neither name, so two
    different pairs only collide if their hashes do.
    """
    if simple:
        return names.bounded(f"{node}-devices", DNS1123_SUBDOMAIN_MAX)
    pair = names.short_hash(f"{node}/{driver}")
    return names.bounded(f"{node}-{driver}-{pair}-{index}", DNS1123_SUBDOMAIN_MAX)


def _chunks(devices: list[Body], counter_sets: tuple[Body, ...], per_slice: int, together: bool = False) -> list[Body]:
    """Slice contents: the shared counters in a slice of their own (1.35 and later), or with the
    first slice's devices (`together`, 1.34, where validation made sure one slice holds them all),
    then the devices in slices of at most `per_slice`."""
    chunks: list[Body] = []
    if counter_sets and not together:
        chunks.append({"sharedCounters": list(counter_sets)})
    for start in range(0, len(devices), per_slice):
        chunks.append({"devices": devices[start : start + per_slice]})
    if counter_sets and together:
        if not chunks:
            chunks.append({"devices": []})
        chunks[0] = {"sharedCounters": list(counter_sets), **chunks[0]}
    if not chunks:
        chunks.append({"devices": []})  # an empty pool is still published, so it reads as complete
    return chunks


def _with_slice_fields(pool: PoolSpec, chunks: list[Body]) -> list[Body]:
    """The pool-wide slice fields on each slice: skipNodeOperations on all of them, and
    partitionTypeAttribute on those whose devices consume counters (the only ones that may have it)."""
    if not pool.skip_node_operations and pool.partition_type_attribute is None:
        return chunks
    out = []
    for chunk in chunks:
        extra: Body = {}
        if pool.skip_node_operations:
            extra["skipNodeOperations"] = list(pool.skip_node_operations)
        if pool.partition_type_attribute is not None and any(
            d.get("consumesCounters") for d in chunk.get("devices") or []
        ):
            extra["partitionTypeAttribute"] = pool.partition_type_attribute
        out.append({**chunk, **extra})
    return out


def render(node: NodeRef, resolution: Resolution, limits: Limits = DEFAULT_TARGET.limits) -> NodeSlices:
    """The slices for `node`, laid out for the targeted version's `limits`. Raises RenderError
    when a placeholder makes a value invalid."""
    contents: list[tuple[PoolSpec, list[tuple[Body, str]]]] = []
    errors: list[Issue] = []
    failed: list[str] = []
    for pool in resolution.pools:
        compiled = _compile(pool, limits)
        if compiled.static_chunks is not None:
            contents.append((pool, list(compiled.static_chunks)))
            continue
        before = len(errors)
        devices = [
            _substitute(body, node.name, index, errors, pool.driver) if dynamic else body
            for body, dynamic, index in compiled.devices
        ]
        if len(errors) > before:
            failed.append(str(pool.source))
        own = _with_slice_fields(
            pool, _chunks(devices, compiled.counter_sets, compiled.per_slice, compiled.counters_with_devices)
        )
        contents.append((pool, [(c, "") for c in own]))
    if errors:
        raise RenderError(node.name, errors, tuple(failed))
    simple = len(contents) == 1 and len(contents[0][1]) == 1
    pname = pool_name(node.name)
    pools = []
    for pool, chunks in contents:
        source = str(pool.source)
        slices = tuple(
            DesiredSlice(
                slice_name(node.name, pool.driver, i, simple), pool.driver, pname, len(chunks), c, source, printed
            )
            for i, (c, printed) in enumerate(chunks)
        )
        pools.append(DesiredPool(pool.driver, pname, source, slices))
    return NodeSlices(node, tuple(pools))


def slice_labels(node: str, driver: str, managed_by: str) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: managed_by,
        LABEL_NODE: names.label_value_for(node),
        LABEL_DRIVER: names.label_value_for(driver),
    }


def slice_manifest(desired: DesiredSlice, node: NodeRef, generation: int, managed_by: str = DEFAULT_MANAGED_BY) -> Body:
    """The full ResourceSlice object to apply."""
    spec: Body = {
        "driver": desired.driver,
        "pool": {"name": desired.pool, "generation": generation, "resourceSliceCount": desired.slice_count},
        "nodeName": node.name,
    }
    spec.update(desired.content)
    return {
        "apiVersion": RESOURCE_API_VERSION,
        "kind": "ResourceSlice",
        "metadata": {
            "name": desired.name,
            "labels": slice_labels(node.name, desired.driver, managed_by),
            "annotations": {ANNOTATION_SOURCE: desired.source},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid, "controller": True}
            ],
        },
        "spec": spec,
    }


SLICE_FIELDS = ("partitionTypeAttribute", "skipNodeOperations")


def content_of(spec: Mapping[str, Any]) -> Body:
    """The part of a slice spec that `render` decides: devices, shared counters, or (1.34) both,
    and the pool-wide slice fields where set."""
    if spec.get("sharedCounters"):
        out: Body = {"sharedCounters": spec["sharedCounters"]}
        if spec.get("devices"):
            out["devices"] = spec["devices"]
    else:
        out = {"devices": spec.get("devices") or []}
    for key in SLICE_FIELDS:
        if spec.get(key):
            out[key] = spec[key]
    return out
