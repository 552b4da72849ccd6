"""The resource.k8s.io/v1 rules for ResourceSlices that can be checked without an apiserver.

Written independently of `dra_kwok.core` (own regexes and limits, from `dra-api.md` 3-5 and each
release's pkg/apis/resource/validation, v1.34.4 to v1.37.2) so it can serve as an oracle for what
the core renders. `minor` is the Kubernetes minor whose rules apply (1.34 differs: 4 taints, no
effect None, counters in the slice of the devices using them, 1024 consumed counters per slice).
Each function returns a list of human-readable problems; empty means the object passes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$", re.ASCII)

MAX_DEVICES = 128
MAX_DEVICES_ADVANCED = 64
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_TAINTS = {34: 4}  # 16 from 1.35
MAX_COUNTER_SETS = 8  # 1.35+
MAX_COUNTERS_PER_SET = 32  # 1.35+; 1.34: 32 across all sets of a slice
MAX_CONSUMPTIONS_PER_DEVICE = 2  # 1.35+, each of at most 32 counters; 1.34: 32 counters in all
MAX_CONSUMED_COUNTERS_PER_SLICE = 1024  # 1.34 only
NEWEST = 37
MAX_BINDING_CONDITIONS = 4
INT64 = (-(2**63), 2**63 - 1)


def is_dns_label(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(LABEL.fullmatch(value))


def is_dns_subdomain(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 253 and bool(SUBDOMAIN.fullmatch(value))


def is_qualified_name(value: str) -> bool:
    parts = value.split("/")
    if len(parts) > 2:
        return False
    ident = parts[-1]
    if len(ident) > 32 or not C_IDENTIFIER.fullmatch(ident):
        return False
    if len(parts) == 2:
        domain = parts[0]
        return 0 < len(domain) <= 63 and is_dns_subdomain(domain.lower())
    return True


def is_label_name(value: str) -> bool:
    prefix, _, name = value.rpartition("/")
    if "/" in prefix or (prefix and not is_dns_subdomain(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(LABEL_NAME.fullmatch(name))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(LABEL_VALUE.fullmatch(value))


def is_quantity(value: object) -> bool:
    return isinstance(value, str) and bool(QUANTITY.fullmatch(value))


def _value_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str) and len(value.encode()) <= 64  # Go's len: bytes
    if kind == "version":
        return isinstance(value, str) and len(value) <= 64 and bool(SEMVER.fullmatch(value))
    return False


def _attribute_problems(where: str, attr: Any, minor: int = NEWEST) -> list[str]:
    if not isinstance(attr, Mapping) or len(attr) != 1:
        return [f"{where}: exactly one value must be set"]
    ((kind, value),) = attr.items()
    if kind in ("ints", "bools", "strings", "versions") and minor >= 36:  # list attributes, 1.36+
        ok = isinstance(value, list) and bool(value) and all(_value_ok(kind[:-1], v) for v in value)
    else:
        ok = _value_ok(kind, value)
    return [] if ok else [f"{where}: invalid {kind} value {value!r}"]


def device_problems(where: str, device: Mapping[str, Any], minor: int = NEWEST) -> list[str]:
    out: list[str] = []
    if not is_dns_label(device.get("name")):
        out.append(f"{where}.name {device.get('name')!r} is not a DNS label")
    attrs = device.get("attributes") or {}
    caps = device.get("capacity") or {}
    if len(attrs) + len(caps) > MAX_ATTRIBUTES_AND_CAPACITIES:
        out.append(f"{where}: more than {MAX_ATTRIBUTES_AND_CAPACITIES} attributes and capacities")
    for key, attr in attrs.items():
        if not is_qualified_name(key):
            out.append(f"{where}.attributes[{key!r}]: invalid qualified name")
        out += _attribute_problems(f"{where}.attributes[{key!r}]", attr, minor)
    values = sum(
        len(v) if isinstance(v, list) else 1 for a in attrs.values() if isinstance(a, Mapping) for v in a.values()
    )
    if minor >= 36 and values > 48:
        out.append(f"{where}: more than 48 attribute values")
    for key, cap in caps.items():
        if not is_qualified_name(key):
            out.append(f"{where}.capacity[{key!r}]: invalid qualified name")
        if not isinstance(cap, Mapping) or not is_quantity(cap.get("value")):
            out.append(f"{where}.capacity[{key!r}]: value is not a quantity")
        elif "requestPolicy" in cap and device.get("allowMultipleAllocations") is not True:
            out.append(f"{where}.capacity[{key!r}]: requestPolicy without allowMultipleAllocations")
    taints = device.get("taints") or []
    max_taints = MAX_TAINTS.get(minor, 16)
    if len(taints) > max_taints:
        out.append(f"{where}: more than {max_taints} taints")
    effects = ("NoSchedule", "NoExecute") if minor == 34 else ("NoSchedule", "NoExecute", "None")
    for t in taints:
        if t.get("effect") not in effects:
            out.append(f"{where}: taint effect {t.get('effect')!r}")
        if not is_label_name(t.get("key", "")) or not is_label_value(t.get("value", "")):
            out.append(f"{where}: taint {t!r} has an invalid key or value")
    uses = device.get("consumesCounters") or []
    if minor == 34:
        if sum(len(u.get("counters") or {}) for u in uses) > 32:
            out.append(f"{where}: more than 32 counters consumed (1.34)")
    elif len(uses) > MAX_CONSUMPTIONS_PER_DEVICE or any(len(u.get("counters") or {}) > 32 for u in uses):
        out.append(f"{where}: more than {MAX_CONSUMPTIONS_PER_DEVICE} consumesCounters entries, or 32 counters in one")
    if len({u.get("counterSet") for u in uses}) != len(uses):
        out.append(f"{where}: a counter set is consumed twice")
    for u in uses:
        if not is_dns_label(u.get("counterSet")) or not u.get("counters"):
            out.append(f"{where}: bad consumesCounters entry {u!r}")
        for name, counter in (u.get("counters") or {}).items():
            if not is_dns_label(name) or not is_quantity(counter.get("value")):
                out.append(f"{where}: bad consumed counter {name!r}")
    conds = device.get("bindingConditions") or []
    fails = device.get("bindingFailureConditions") or []
    if bool(conds) != bool(fails):
        out.append(f"{where}: bindingConditions and bindingFailureConditions must be set together")
    if len(conds) > MAX_BINDING_CONDITIONS or len(fails) > MAX_BINDING_CONDITIONS:
        out.append(f"{where}: too many binding conditions")
    if set(conds) & set(fails) or len(set(conds)) != len(conds) or len(set(fails)) != len(fails):
        out.append(f"{where}: repeated binding conditions")
    if not all(is_label_name(c) for c in [*conds, *fails]):
        out.append(f"{where}: binding condition is not a label name")
    return out


def resource_slice_problems(obj: Mapping[str, Any], minor: int = NEWEST) -> list[str]:
    """Problems of one ResourceSlice manifest on its own."""
    out: list[str] = []
    if obj.get("apiVersion") != "resource.k8s.io/v1" or obj.get("kind") != "ResourceSlice":
        out.append("not a resource.k8s.io/v1 ResourceSlice")
    meta = obj.get("metadata") or {}
    if not is_dns_subdomain(meta.get("name")):
        out.append(f"metadata.name {meta.get('name')!r} is not a DNS subdomain")
    for key, value in (meta.get("labels") or {}).items():
        if not is_label_name(key) or not is_label_value(value):
            out.append(f"label {key}={value!r} is invalid")
    spec = obj.get("spec") or {}
    driver = spec.get("driver", "")
    if len(driver) > 63 or not is_dns_subdomain(driver) or driver != driver.lower():
        out.append(f"spec.driver {driver!r} is invalid")
    scopes = [k for k in ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection") if spec.get(k)]
    if scopes != ["nodeName"] or not is_dns_subdomain(spec.get("nodeName")):
        out.append(f"spec must set exactly a valid nodeName (has {scopes})")
    owners = meta.get("ownerReferences") or []
    if [(o.get("kind"), o.get("name"), o.get("controller")) for o in owners] != [("Node", spec.get("nodeName"), True)]:
        out.append("metadata.ownerReferences must be the node, as controller")
    if not all(o.get("uid") for o in owners):
        out.append("ownerReference without uid")
    pool = spec.get("pool") or {}
    pname = pool.get("name", "")
    if not pname or len(pname) > 253 or not all(is_dns_subdomain(p) for p in pname.split("/")):
        out.append(f"spec.pool.name {pname!r} is invalid")
    if not isinstance(pool.get("generation"), int) or pool["generation"] < 0:
        out.append("spec.pool.generation must be an integer >= 0")
    if not isinstance(pool.get("resourceSliceCount"), int) or pool["resourceSliceCount"] < 1:
        out.append("spec.pool.resourceSliceCount must be > 0")
    devices = spec.get("devices") or []
    shared = spec.get("sharedCounters") or []
    if minor == 34:
        here = {s.get("name"): set(s.get("counters") or {}) for s in shared}
        for d in devices:
            for u in d.get("consumesCounters") or []:
                if not set(u.get("counters") or {}) <= here.get(u.get("counterSet"), set()):
                    out.append(f"device {d.get('name')!r} consumes counters not in this slice (1.34)")
    elif devices and shared:
        out.append("only one of devices and sharedCounters may be set (1.35+)")
    advanced = minor > 34 and any(d.get("taints") or d.get("consumesCounters") for d in devices)
    limit = MAX_DEVICES_ADVANCED if advanced else MAX_DEVICES
    if len(devices) > limit:
        out.append(f"{len(devices)} devices, over the limit of {limit}")
    consumed = sum(len(u.get("counters") or {}) for d in devices for u in d.get("consumesCounters") or [])
    if minor == 34 and consumed > MAX_CONSUMED_COUNTERS_PER_SLICE:
        out.append(f"{consumed} consumed counters in the slice, over {MAX_CONSUMED_COUNTERS_PER_SLICE}")
    names = Counter(d.get("name") for d in devices)
    out += [f"device name {n!r} repeated in the slice" for n, c in names.items() if c > 1]
    for i, d in enumerate(devices):
        out += device_problems(f"spec.devices[{i}]", d, minor)
    if minor == 34:
        if sum(len(s.get("counters") or {}) for s in shared) > 32:
            out.append("more than 32 shared counters (1.34)")
    elif len(shared) > MAX_COUNTER_SETS or any(len(s.get("counters") or {}) > MAX_COUNTERS_PER_SET for s in shared):
        out.append(f"more than {MAX_COUNTER_SETS} counter sets, or {MAX_COUNTERS_PER_SET} counters in one")
    for s in shared:
        if not is_dns_label(s.get("name")) or not s.get("counters"):
            out.append(f"bad counter set {s!r}")
        for name, counter in (s.get("counters") or {}).items():
            if not is_dns_label(name) or not is_quantity(counter.get("value")):
                out.append(f"bad shared counter {name!r}")
    return out


def pool_problems(slices: Sequence[Mapping[str, Any]]) -> list[str]:
    """Problems of the slices of one (driver, pool) taken together, as the scheduler reads them."""
    out: list[str] = []
    if not slices:
        return ["no slices"]
    pools = {(s["spec"]["driver"], s["spec"]["pool"]["name"]) for s in slices}
    if len(pools) != 1:
        return [f"slices of several pools: {sorted(pools)}"]
    generations = {s["spec"]["pool"]["generation"] for s in slices}
    counts = {s["spec"]["pool"]["resourceSliceCount"] for s in slices}
    if len(generations) != 1:
        out.append(f"mixed generations {sorted(generations)}")
    if counts != {len(slices)}:
        out.append(f"resourceSliceCount {sorted(counts)} but {len(slices)} slices")
    devices = [d for s in slices for d in s["spec"].get("devices") or []]
    names = Counter(d["name"] for d in devices)
    out += [f"device name {n!r} repeated in the pool" for n, c in names.items() if c > 1]
    sets: dict[str, Mapping[str, Any]] = {}
    for s in slices:
        for cs in s["spec"].get("sharedCounters") or []:
            if cs["name"] in sets:
                out.append(f"counter set {cs['name']!r} repeated in the pool")
            sets[cs["name"]] = cs["counters"]
    for d in devices:
        for use in d.get("consumesCounters") or []:
            target = sets.get(use["counterSet"])
            if target is None:
                out.append(f"device {d['name']!r} consumes unknown counter set {use['counterSet']!r}")
            elif not set(use["counters"]) <= set(target):
                out.append(f"device {d['name']!r} consumes unknown counters of {use['counterSet']!r}")
    return out


def node_problems(slices: Iterable[Mapping[str, Any]], minor: int = NEWEST) -> list[str]:
    """Problems of all slices published for one node: each slice valid, each pool consistent, names unique."""
    slices = list(slices)
    out: list[str] = []
    names = Counter(s["metadata"]["name"] for s in slices)
    out += [f"slice name {n!r} used twice" for n, c in names.items() if c > 1]
    by_pool: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        out += [f"{s['metadata']['name']}: {p}" for p in resource_slice_problems(s, minor)]
        by_pool.setdefault((s["spec"]["driver"], s["spec"]["pool"]["name"]), []).append(s)
    for key, members in by_pool.items():
        out += [f"pool {key}: {p}" for p in pool_problems(members)]
    return out
