"""Rules that span fields, and the translation of pydantic errors into `Issue`s.

Field formats are checked by the models; here are the rules the apiserver (or the scheduler,
for pools spread over slices) enforces across a whole pool, with the limits and the features of
the Kubernetes version targeted (`versions.Target`; by default the newest supported).
"""

from __future__ import annotations

import difflib
import functools
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from . import names
from .api_limits import MAX_DEVICES_PER_POOL
from .issues import Issue, Path, Severity, format_path
from .models import CounterSet, DeviceTemplate
from .quantity import parse_quantity, quantity_surprise
from .simulation import Simulation
from .versions import (
    BINDING,
    COMPATIBILITY_GROUPS,
    CONSUMABLE,
    DEFAULT_TARGET,
    EXTENDED,
    LIST_ATTRIBUTES,
    PARTITION_TYPE,
    PARTITIONABLE,
    SKIP_NODE_OPERATIONS,
    TAINTS,
    Feature,
    Target,
)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a pool came from: a DRANodeOverlay or a ConfigMap mapping."""

    kind: str  # "overlay" or "mapping"
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """The validated devices and counters one source offers for one driver."""

    driver: str
    devices: tuple[DeviceTemplate, ...]
    counter_sets: tuple[CounterSet, ...]
    source: Source
    partition_type_attribute: str | None = None  # 1.37 alpha slice fields, for the whole pool
    skip_node_operations: tuple[str, ...] = ()
    simulation: Simulation | None = None  # the source's behaviour after publishing (`simulation`)

    @property
    def device_count(self) -> int:
        return sum(d.instances for d in self.devices)


def pydantic_issues(exc: ValidationError, prefix: Path = ()) -> list[Issue]:
    """One Issue per pydantic error, with the user's field path and a message without jargon."""
    out = []
    for err in exc.errors(include_url=False):
        loc: list[str | int] = []
        for part in err["loc"]:
            if part == "[key]":
                continue  # the key itself is at fault; its path is the map entry
            loc.append(part)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
            value = None
        elif err["type"] in ("model_attributes_type", "dict_type", "model_type"):
            message = "must be a mapping (key: value)"
            value = err.get("input")
        elif err["type"] == "list_type":
            message = "must be a list"
            value = err.get("input")
        else:
            value = err.get("input")
            if isinstance(value, dict | list):
                value = None  # the message says what is wrong; echoing a whole subtree is noise
        out.append(Issue(prefix + tuple(loc), message, value))
    return out


def unknown_field_issues(model: type[BaseModel], data: Any, path: Path = ()) -> list[Issue]:
    """Every key of the raw `data` that `model` does not know, at any depth, as an error with the
    nearest known field. Walked on the raw data, not the validated model, so that one typo which
    makes validation fail (`nodeSelectr`) does not hide the others. Only the API spelling counts
    (`nodeSelector`; `node_selector` is unknown, as it is to the apiserver)."""
    out: list[Issue] = []
    _model_walker(model)(data, path, out)
    return out


_Walker = Callable[[Any, Path, list[Issue]], None]


def _nothing(value: Any, path: Path, out: list[Issue]) -> None:
    return None


@functools.cache
def _model_walker(model: type[BaseModel]) -> _Walker:
    """A function that walks raw data shaped like `model`, built once per model (the walk runs
    over every key of a large configuration on each reload)."""
    fields: dict[str, _Walker] = {}
    forbidden: dict[str, str] = getattr(model, "FORBIDDEN_KEYS", {})
    names = [f.alias or name for name, f in model.model_fields.items()]

    def walk(data: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(data, Mapping):
            return
        if not fields:  # filled on first use: models refer to each other
            fields.update({f.alias or n: _annotation_walker(f.annotation) for n, f in model.model_fields.items()})
        for key, value in data.items():
            if not isinstance(key, str):
                continue  # pydantic reports it ("Keys should be strings")
            sub = fields.get(key)
            if sub is not None:
                if sub is not _nothing:
                    sub(value, (*path, key), out)
            elif key in forbidden:
                out.append(Issue((*path, key), forbidden[key], fix=f"remove {key}"))
            else:
                close = difflib.get_close_matches(key, names, n=1)
                out.append(
                    Issue(
                        (*path, key),
                        "unknown field",
                        fix=f"did you mean {close[0]!r}?" if close else f"known fields here: {', '.join(names)}",
                    )
                )

    return walk


def _annotation_walker(annotation: Any) -> _Walker:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _annotation_walker(args[0])
    if origin in (Union, UnionType):
        subs = [w for arg in args if arg is not type(None) and (w := _annotation_walker(arg)) is not _nothing]
        if not subs:
            return _nothing
        if len(subs) == 1:
            return subs[0]

        def each(value: Any, path: Path, out: list[Issue]) -> None:
            for sub in subs:
                sub(value, path, out)

        return each
    if origin is list:
        item = _annotation_walker(args[0])
        if item is _nothing:
            return _nothing

        def items(value: Any, path: Path, out: list[Issue]) -> None:
            if isinstance(value, list):
                for n, element in enumerate(value):
                    item(element, (*path, n), out)

        return items
    if origin is dict:
        entry = _annotation_walker(args[1])
        if entry is _nothing:
            return _nothing

        def entries(value: Any, path: Path, out: list[Issue]) -> None:
            if isinstance(value, Mapping):
                for key, element in value.items():
                    entry(element, (*path, key), out)

        return entries
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_walker(annotation)
    return _nothing


def surprise_issues(path: Path, value: str) -> list[Issue]:
    """A warning when the apiserver will store a quantity as another value than it seems to say."""
    surprise = quantity_surprise(value)
    if surprise is None:
        return []
    return [Issue(path, surprise, fix="write the value you mean in the quantity's range", severity=Severity.WARNING)]


def driver_issues(driver: str, path: Path) -> list[Issue]:
    problem = names.driver_name_problem(driver)
    if problem is None:
        return []
    return [Issue(path, f"invalid driver name: {problem}", driver, f"use {names.suggest_driver_name(driver)!r}")]


def slice_field_issues(
    template_path: Path,
    partition_type_attribute: str | None,
    skip_node_operations: Sequence[str],
    devices: Iterable[tuple[Path, DeviceTemplate]],
    target: Target,
) -> list[Issue]:
    """The slice-level 1.37 alpha fields of one template: their gates, and a partition type
    attribute that each device consuming counters carries as a string."""
    issues: list[Issue] = []
    if skip_node_operations and not target.has(SKIP_NODE_OPERATIONS):
        issues.append(_missing_feature(template_path + ("skipNodeOperations",), target, SKIP_NODE_OPERATIONS))
    if partition_type_attribute is None:
        return issues
    where = template_path + ("partitionTypeAttribute",)
    if not target.has(PARTITION_TYPE):
        issues.append(_missing_feature(where, target, PARTITION_TYPE))
    consumers = [(p, d) for p, d in devices if d.consumes_counters]
    if not consumers:
        issues.append(
            Issue(where, "is allowed only when devices consume counters", fix="remove it, or add consumesCounters")
        )
    for path, dev in consumers:
        attr = dev.attributes.get(partition_type_attribute)
        if attr is None or attr.string is None:
            issues.append(
                Issue(
                    path + ("attributes",),
                    f"a device that consumes counters needs the partition type attribute "
                    f"{partition_type_attribute!r} as a string",
                    fix=f"add attributes: {{{partition_type_attribute}: {{string: <type>}}}}",
                )
            )
    return issues


def pool_issues(
    driver: str,
    devices: Iterable[tuple[Path, DeviceTemplate]],
    counter_sets: Iterable[tuple[Path, CounterSet]],
    target: Target = DEFAULT_TARGET,
) -> list[Issue]:
    """Every cross-field rule of one pool: names unique, counters resolvable, sizes within the
    limits of `target`, and only features `target` keeps."""
    issues: list[Issue] = []
    device_list = list(devices)
    set_list = list(counter_sets)
    limits = target.limits

    sets: dict[str, CounterSet] = {}
    for path, cs in set_list:
        if cs.name in sets:
            issues.append(Issue(path + ("name",), "duplicate counter set name in the pool", cs.name))
        sets[cs.name] = cs
    if set_list and not target.has(PARTITIONABLE):
        issues.append(_missing_feature(set_list[0][0], target, PARTITIONABLE))
    if limits.max_counter_sets is not None and len(set_list) > limits.max_counter_sets:
        issues.append(
            Issue(
                set_list[limits.max_counter_sets][0],
                f"at most {limits.max_counter_sets} counter sets per pool on {target.name}",
                len(set_list),
            )
        )
    for path, cs in set_list:
        if limits.max_counters_per_set is not None and len(cs.counters) > limits.max_counters_per_set:
            issues.append(
                Issue(
                    path + ("counters",),
                    f"at most {limits.max_counters_per_set} counters per counter set on {target.name}",
                    len(cs.counters),
                )
            )
    total_counters = sum(len(cs.counters) for _, cs in set_list)
    if limits.max_counters_total is not None and total_counters > limits.max_counters_total:
        issues.append(
            Issue(
                set_list[0][0],
                f"at most {limits.max_counters_total} counters in all counter sets of a pool on {target.name}",
                total_counters,
                "use fewer counters, or Kubernetes 1.35 or later (32 per set)",
            )
        )

    for path, cs in set_list:
        for cname, counter in cs.counters.items():
            issues += surprise_issues(path + ("counters", cname, "value"), counter.value)

    seen: dict[str, Path] = {}
    total = 0
    for path, dev in device_list:
        total += dev.instances
        if dev.driver is not None and dev.driver != driver:
            issues.append(
                Issue(path + ("driver",), f"differs from the slice's driver {driver!r}", dev.driver, "remove it")
            )
        for name in dev.device_names():
            if name in seen:
                issues.append(
                    Issue(
                        path + ("name",),
                        f"device name {name!r} is also produced by {format_path(seen[name])}; "
                        "names must be unique in a pool",
                        dev.name,
                        "rename one of them",
                    )
                )
                break
            seen[name] = path
        issues.extend(_device_issues(path, dev, sets, target))
    if total > MAX_DEVICES_PER_POOL:
        issues.append(
            Issue(
                device_list[-1][0] if device_list else (),
                f"the pool has {total} devices; at most {MAX_DEVICES_PER_POOL} per node and driver are supported",
                total,
                "reduce count, or split the devices across drivers",
            )
        )
    if set_list and limits.counters_with_devices:
        issues += _one_slice_issues(device_list, set_list[0][0], target)
    return issues


def extended_resource_issues(path: Path, target: Target) -> list[Issue]:
    """A DeviceClass's extendedResourceName, which the apiserver drops without DRAExtendedResource."""
    return [] if target.has(EXTENDED) else [_missing_feature(path, target, EXTENDED)]


def _missing_feature(path: Path, target: Target, feature: Feature) -> Issue:
    message, fix = target.why_not(feature)
    return Issue(path, message, fix=fix)


def _one_slice_issues(devices: list[tuple[Path, DeviceTemplate]], path: Path, target: Target) -> list[Issue]:
    """Kubernetes 1.34 shares counters only with the devices of the same slice: a pool with shared
    counters is published as one slice, so it must fit in one."""
    limits = target.limits
    total = sum(d.instances for _, d in devices)
    consumed = sum(d.instances * sum(len(c.counters) for c in d.consumes_counters) for _, d in devices)
    out = []
    if total > limits.max_devices_advanced:
        out.append(
            Issue(
                path,
                f"on {target.name} shared counters count only for devices in the same slice, so a pool with "
                f"sharedCounters is one slice of at most {limits.max_devices_advanced} devices; this one has {total}",
                total,
                "use fewer devices, or Kubernetes 1.35 or later (counters shared across a pool's slices)",
            )
        )
    cap = limits.max_consumed_counters_per_slice
    if cap is not None and consumed > cap:
        out.append(
            Issue(
                path,
                f"on {target.name} a slice's devices consume at most {cap} counters in all; with the shared "
                f"counters in one slice this pool's devices consume {consumed}",
                consumed,
                "consume fewer counters per device, use fewer devices, or Kubernetes 1.35 or later",
            )
        )
    return out


def _device_issues(path: Path, dev: DeviceTemplate, sets: dict[str, CounterSet], target: Target) -> list[Issue]:
    issues: list[Issue] = []
    limits = target.limits
    n_keys = len(dev.attributes) + len(dev.capacity)
    if n_keys > limits.max_attributes_and_capacities:
        issues.append(
            Issue(
                path,
                f"{n_keys} attributes and capacities; at most {limits.max_attributes_and_capacities} per device",
                n_keys,
            )
        )
    lists = [k for k, a in dev.attributes.items() if a.value_list is not None]
    if lists and not target.has(LIST_ATTRIBUTES):
        issues.append(_missing_feature(path + ("attributes", lists[0]), target, LIST_ATTRIBUTES))
    n_values = sum(len(a.value_list) if a.value_list is not None else 1 for a in dev.attributes.values())
    if limits.max_attribute_values is not None and n_values > limits.max_attribute_values:
        issues.append(
            Issue(
                path + ("attributes",),
                f"{n_values} attribute values (list items counted one by one); at most "
                f"{limits.max_attribute_values} per device on {target.name}",
                n_values,
            )
        )
    grouped = [i for i, c in enumerate(dev.consumes_counters) if c.compatibility_groups]
    if grouped and not target.has(COMPATIBILITY_GROUPS):
        groups_path = path + ("consumesCounters", grouped[0], "compatibilityGroups")
        issues.append(_missing_feature(groups_path, target, COMPATIBILITY_GROUPS))
    if dev.taints and not target.has(TAINTS):
        issues.append(_missing_feature(path + ("taints",), target, TAINTS))
    if len(dev.taints) > limits.max_taints:
        issues.append(
            Issue(
                path + ("taints",),
                f"at most {limits.max_taints} taints per device on {target.name}",
                len(dev.taints),
                "remove taints" + (", or use Kubernetes 1.35 or later (16)" if limits.max_taints < 16 else ""),
            )
        )
    for i, taint in enumerate(dev.taints):
        if taint.effect not in limits.taint_effects:
            issues.append(
                Issue(
                    path + ("taints", i, "effect"),
                    f"{target.name} knows only the taint effects {' and '.join(limits.taint_effects)} "
                    f"(effect {taint.effect} arrived in 1.35)",
                    taint.effect,
                    f"use {' or '.join(limits.taint_effects)}, or Kubernetes 1.35 or later",
                )
            )
    if dev.consumes_counters and not target.has(PARTITIONABLE):
        issues.append(_missing_feature(path + ("consumesCounters",), target, PARTITIONABLE))
    if (
        limits.max_consumptions_per_device is not None
        and len(dev.consumes_counters) > limits.max_consumptions_per_device
    ):
        issues.append(
            Issue(
                path + ("consumesCounters",),
                f"at most {limits.max_consumptions_per_device} counter sets consumed per device on {target.name}",
                len(dev.consumes_counters),
            )
        )
    per_device = sum(len(c.counters) for c in dev.consumes_counters)
    if limits.max_counters_per_device is not None and per_device > limits.max_counters_per_device:
        issues.append(
            Issue(
                path + ("consumesCounters",),
                f"at most {limits.max_counters_per_device} counters consumed per device on {target.name}",
                per_device,
            )
        )
    if limits.max_counters_per_consumption is not None:
        for i, use in enumerate(dev.consumes_counters):
            if len(use.counters) > limits.max_counters_per_consumption:
                issues.append(
                    Issue(
                        path + ("consumesCounters", i, "counters"),
                        f"at most {limits.max_counters_per_consumption} counters per consumption on {target.name}",
                        len(use.counters),
                    )
                )
    consumable = dev.allow_multiple_allocations or any(c.request_policy is not None for c in dev.capacity.values())
    if consumable and not target.has(CONSUMABLE):
        where = "allowMultipleAllocations" if dev.allow_multiple_allocations else "capacity"
        issues.append(_missing_feature(path + (where,), target, CONSUMABLE))
    binding = dev.binds_to_node or dev.binding_conditions or dev.binding_failure_conditions
    if binding and not target.has(BINDING):
        where = "bindingConditions" if dev.binding_conditions else "bindsToNode"
        issues.append(_missing_feature(path + (where,), target, BINDING))
    used = Tally(c.counter_set for c in dev.consumes_counters)
    for i, use in enumerate(dev.consumes_counters):
        upath = path + ("consumesCounters", i)
        if used[use.counter_set] > 1:
            issues.append(Issue(upath + ("counterSet",), "listed more than once for this device", use.counter_set))
        counter_set = sets.get(use.counter_set)
        if counter_set is None:
            known = ", ".join(sorted(sets)) or "none"
            issues.append(
                Issue(
                    upath + ("counterSet",),
                    f"no counter set of this name in the pool's sharedCounters (defined: {known})",
                    use.counter_set,
                    "add it to sharedCounters or correct the name",
                )
            )
            continue
        for cname, counter in use.counters.items():
            if cname not in counter_set.counters:
                issues.append(
                    Issue(
                        upath + ("counters", cname),
                        f"counter set {use.counter_set!r} has no counter of this name "
                        f"(it has: {', '.join(sorted(counter_set.counters))})",
                        cname,
                    )
                )
            elif parse_quantity(counter.value) > parse_quantity(counter_set.counters[cname].value):
                issues.append(
                    Issue(
                        upath + ("counters", cname, "value"),
                        f"consumes more than the set provides ({counter_set.counters[cname].value})",
                        counter.value,
                        severity=Severity.WARNING,
                    )
                )
    for key, cap in dev.capacity.items():
        issues += surprise_issues(path + ("capacity", key, "value"), cap.value)
    for i, use in enumerate(dev.consumes_counters):
        for cname, counter in use.counters.items():
            issues += surprise_issues(path + ("consumesCounters", i, "counters", cname, "value"), counter.value)
    for key, cap in dev.capacity.items():
        if cap.request_policy is not None and dev.allow_multiple_allocations is not True:
            issues.append(
                Issue(
                    path + ("capacity", key, "requestPolicy"),
                    "requestPolicy needs allowMultipleAllocations: true on the device",
                    fix="set allowMultipleAllocations: true or remove requestPolicy",
                )
            )
    for field, conds in (
        ("bindingConditions", dev.binding_conditions),
        ("bindingFailureConditions", dev.binding_failure_conditions),
    ):
        if len(conds) > limits.max_binding_conditions:
            issues.append(Issue(path + (field,), f"at most {limits.max_binding_conditions} entries", len(conds)))
        repeated = sorted(c for c, n in Tally(conds).items() if n > 1)
        if repeated:
            issues.append(Issue(path + (field,), "must not list a condition twice", repeated))
        for j, cond in enumerate(conds):
            problem = names.label_name_problem(cond)
            if problem:
                issues.append(Issue(path + (field, j), problem, cond))
    if bool(dev.binding_conditions) != bool(dev.binding_failure_conditions):
        issues.append(
            Issue(
                path,
                "bindingConditions and bindingFailureConditions must be set together",
                fix="set both, or neither",
            )
        )
    overlap = set(dev.binding_conditions) & set(dev.binding_failure_conditions)
    if overlap:
        issues.append(
            Issue(path + ("bindingFailureConditions",), "must not repeat a binding condition", sorted(overlap))
        )
    return issues
