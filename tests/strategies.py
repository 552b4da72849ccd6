"""Hypothesis strategies for dra-kwok-driver inputs, shared by unit and integration tests.

`valid_config_documents()` and `valid_overlay_documents()` yield plain dicts (config.yaml, and a
DRANodeOverlay manifest) that the core accepts without a single finding, and whose rendered
slices a real apiserver must accept too (requestPolicy values, for instance, follow the API's
rules even though the core passes them through). `advanced=False` leaves out the fields behind
alpha/beta feature gates (taints, counters, consumable capacity, binding conditions).

`invalid_config_documents()` yields (document, path) pairs: a valid document with one mistake,
and the path under which the core must report it.
"""

from __future__ import annotations

import re as _re
import string
from fractions import Fraction
from functools import cache
from typing import Any

from hypothesis import strategies as st

Doc = dict[str, Any]

ALNUM = string.ascii_lowercase + string.digits
LETTERS = string.ascii_letters
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Placeholders whose filled-in value is never longer than the placeholder, so a valid template
# stays valid for any node ({nodeName} and {deviceName} can grow past the 64-byte limit).
SHRINKING_PLACEHOLDERS = ("{nodeHash}", "{index}")
TAINT_EFFECTS = ("NoSchedule", "NoExecute", "None")


# --- names -----------------------------------------------------------------------------------
# Factories are cached: building strategies inside every draw dominates the run time otherwise.


def _edges(text: str, inner: str, ends: str) -> str:
    """`text` with characters that may not start or end a name replaced."""
    if not text:
        return text
    first = text[0] if text[0] in ends else ends[ord(text[0]) % len(ends)]
    last = text[-1] if text[-1] in ends else ends[ord(text[-1]) % len(ends)]
    return first + text[1:-1] + last if len(text) > 1 else first


def _mostly(common: list[str], generated: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Realistic and boundary values two times in three (one choice instead of one per character:
    generation dominates the run time), freshly generated ones otherwise."""
    pick = st.sampled_from(common)
    return st.one_of(pick, pick, generated)


@cache
def dns_labels(max_size: int = 63) -> st.SearchStrategy[str]:
    short = st.text(ALNUM + "-", min_size=1, max_size=min(6, max_size))
    full = st.text(ALNUM + "-", min_size=1, max_size=max_size)
    generated = st.one_of(short, short, full).map(lambda t: _edges(t, "-", ALNUM))
    common = [
        n
        for n in ["gpu", "nvidia-t4-0", "nvidia-h100", "xilinx-fpga-0", "nic", "a", "0", "x" * 50, "y" * 63]
        if len(n) <= max_size
    ]
    return _mostly(common, generated)


@cache
def dns_subdomains(max_size: int = 253) -> st.SearchStrategy[str]:
    def join(parts: list[str]) -> str:
        return ".".join(parts)[:max_size].rstrip(".-") or "a"

    label = dns_labels(min(63, max_size))
    return (st.lists(label, min_size=1, max_size=2) | st.lists(label, min_size=1, max_size=5)).map(join)


@cache
def node_names() -> st.SearchStrategy[str]:
    """Mostly ordinary node names, sometimes the longest a node name can be (253 characters)."""
    label63 = st.text(ALNUM, min_size=63, max_size=63)
    longest = st.lists(label63, min_size=5, max_size=5).map(lambda parts: ".".join(parts)[:253])
    common = ["kwok-node-1", "node-0", "ip-10-0-0-1.ec2.internal", "n", ".".join(["n" * 63] * 4)[:253]]
    return st.one_of(st.sampled_from(common), dns_subdomains(40), longest)


@cache
def drivers() -> st.SearchStrategy[str]:
    common = ["gpu.example.com", "fpga.example.com", "karpenter.sh.dra-kwok-driver", "driver", "a.b-c.d", "d" * 63]
    return _mostly(common, st.lists(dns_labels(15), min_size=1, max_size=4).map(".".join))


@cache
def c_identifiers(max_size: int = 32) -> st.SearchStrategy[str]:
    rest = st.text(LETTERS + string.digits + "_", max_size=max_size - 1)
    short = st.text(LETTERS + string.digits + "_", max_size=min(6, max_size - 1))
    generated = st.builds(lambda first, tail: first + tail, st.sampled_from(LETTERS + "_"), short | rest)
    common = [
        n
        for n in ["model", "memory", "index", "uuid", "compute_capability", "driverVersion", "_x", "a" * 32]
        if len(n) <= max_size
    ]
    return _mostly(common, generated)


@cache
def qualified_names() -> st.SearchStrategy[str]:
    """Attribute and capacity keys: `ident` or `domain/ident` (domains are compared lowercased)."""
    domain = dns_subdomains(63).map(lambda d: d.upper() if len(d) % 7 == 0 else d)
    common = ["gpu.example.com/model", "GPU.Example.com/numa", f"{'d' * 63}/{'i' * 32}", "k8s.io/pcieRoot"]
    return c_identifiers() | _mostly(common, st.builds(lambda d, i: f"{d}/{i}", domain, c_identifiers()))


@cache
def label_values(max_size: int = 63) -> st.SearchStrategy[str]:
    ends = string.ascii_letters + string.digits
    short = st.text(ends + "-_.", max_size=6)
    generated = st.one_of(short, short, st.text(ends + "-_.", max_size=max_size)).map(lambda t: _edges(t, "-_.", ends))
    common = [
        v for v in ["", "kwok", "g5.48xlarge", "c-4x-amd64-linux", "8", "A_b.c-D", "v" * 63] if len(v) <= max_size
    ]
    return _mostly(common, generated)


@cache
def label_names() -> st.SearchStrategy[str]:
    name = label_values(63).map(lambda v: v or "x")
    common = ["node.kubernetes.io/instance-type", "type", "kwok.x-k8s.io/provider", "example.com/zone", "gpus"]
    return _mostly(common, name | st.builds(lambda p, n: f"{p}/{n}", dns_subdomains(60), name))


# --- values ----------------------------------------------------------------------------------


@cache
def quantities(min_value: int = 0, max_value: int = 10**6) -> st.SearchStrategy[str]:
    """Quantity strings with a value in [min_value, max_value] (counted without the suffix)."""
    suffix = st.sampled_from(["", "", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"])
    return st.builds(lambda n, s: f"{n}{s}", st.integers(min_value, max_value), suffix)


@cache
def semvers() -> st.SearchStrategy[str]:
    num = st.integers(0, 999).map(str)
    ident = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=6)
    pre = st.lists(ident.map(lambda p: p.lstrip("0") or "0" if p.isdigit() else p), min_size=1, max_size=2)
    build = st.lists(ident, min_size=1, max_size=2)
    return st.builds(
        lambda a, b, c, p, m: f"{a}.{b}.{c}" + (f"-{'.'.join(p)}" if p else "") + (f"+{'.'.join(m)}" if m else ""),
        num,
        num,
        num,
        st.none() | pre,
        st.none() | build,
    )


@cache
def attribute_strings() -> st.SearchStrategy[str]:
    """Any printable text of at most 64 UTF-8 bytes, sometimes with placeholders that do not grow."""
    chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co"))
    text = st.text(chars, max_size=8) | st.text(chars, max_size=30)
    plain = text.map(lambda t: t.replace("{", "(").encode()[:64].decode(errors="ignore"))
    with_placeholder = st.builds(
        lambda a, p, b: f"{a}{p}{b}",
        st.text(ALNUM, max_size=20),
        st.sampled_from(SHRINKING_PLACEHOLDERS),
        st.text(ALNUM, max_size=20),
    )
    return plain | with_placeholder


@cache
def attribute_values() -> st.SearchStrategy[Any]:
    """Shorthand scalars (as YAML would load them) and the explicit v1 forms."""
    ints = st.integers(INT64_MIN, INT64_MAX) | st.integers(-10, 1000)
    return st.one_of(
        ints,
        st.booleans(),
        attribute_strings(),
        ints.map(lambda v: {"int": v}),
        st.booleans().map(lambda v: {"bool": v}),
        attribute_strings().map(lambda v: {"string": v}),
        semvers().map(lambda v: {"version": v}),
    )


@cache
def taints() -> st.SearchStrategy[Doc]:
    def build(key: str, value: str, effect: str) -> Doc:
        return {"key": key, "effect": effect} | ({"value": value} if value else {})

    return st.builds(build, label_names(), label_values(), st.sampled_from(TAINT_EFFECTS))


# --- devices and pools -----------------------------------------------------------------------

_BOOL = st.booleans()
_SET_NAMES = st.lists(dns_labels(20), min_size=1, max_size=3, unique=True)
_COUNTERS = st.dictionaries(dns_labels(12), quantities(1, 64), min_size=1, max_size=4)
_ATTRIBUTES = st.dictionaries(qualified_names(), attribute_values(), max_size=3)
_CAPACITIES = st.dictionaries(qualified_names(), quantities() | st.integers(0, 10**6), max_size=2)
_TAINT_LISTS = st.lists(taints(), max_size=4)
_CONDITIONS = st.lists(label_names(), min_size=2, max_size=8, unique=True)


@st.composite
def counter_sets(draw: st.DrawFn) -> list[Doc]:
    return [{"name": n, "counters": draw(_COUNTERS)} for n in draw(_SET_NAMES)]


@st.composite
def device_templates(draw: st.DrawFn, max_count: int, sets: list[Doc] | None = None, advanced: bool = True) -> Doc:
    """One device template (name without expansion yet checked by the caller for collisions)."""
    dev: Doc = {"name": draw(dns_labels(50))}
    if max_count > 1 and draw(_BOOL):
        # Mostly a few devices; sometimes enough to need several slices.
        dev["count"] = draw(st.integers(1, min(4, max_count)) | st.integers(1, max_count))
    attrs = draw(_ATTRIBUTES)
    if attrs:
        dev["attributes"] = attrs
    caps: Doc = draw(_CAPACITIES)
    if advanced and draw(_BOOL):
        dev["allowMultipleAllocations"] = True
        if draw(_BOOL):
            # A requestPolicy the apiserver accepts: min <= default <= max <= value, on the step grid.
            key = draw(c_identifiers(16))
            step = draw(st.sampled_from([1, 2]))
            top = draw(st.integers(1 + step, 64))
            top -= (top - 1) % step
            caps[key] = {
                "value": str(top),
                "requestPolicy": {"default": "1", "validRange": {"min": "1", "max": str(top), "step": str(step)}},
            }
    if caps:
        dev["capacity"] = caps
    if advanced and draw(_BOOL):
        dev["taints"] = draw(_TAINT_LISTS)
    if advanced and sets and draw(_BOOL):
        used = draw(st.lists(st.sampled_from(sets), min_size=1, max_size=2, unique_by=lambda s: s["name"]))
        dev["consumesCounters"] = [
            {
                "counterSet": s["name"],
                "counters": dict.fromkeys(
                    draw(st.lists(st.sampled_from(sorted(s["counters"])), min_size=1, unique=True)), "1"
                ),
            }
            for s in used
        ]
    if advanced and draw(st.integers(0, 4)) == 0:
        conds = draw(_CONDITIONS)
        cut = draw(st.integers(1, min(4, len(conds) - 1)))
        dev["bindingConditions"] = conds[:cut][:4]
        dev["bindingFailureConditions"] = conds[cut:][:4]
        dev["bindsToNode"] = draw(_BOOL)
    return dev


@st.composite
def pool_bodies(draw: st.DrawFn, max_devices: int = 300, advanced: bool = True, max_templates: int = 4) -> Doc:
    """`devices` and `sharedCounters` of one driver's pool, valid together."""
    sets = draw(counter_sets()) if advanced and draw(st.booleans()) else []
    devices: list[Doc] = []
    seen: set[str] = set()
    total = 0
    for _ in range(draw(st.integers(0, max_templates))):
        dev = draw(device_templates(max(1, min(200, max_devices - total)), sets, advanced))
        count = dev.get("count")
        names = [dev["name"]] if count is None else [f"{dev['name']}-{i}" for i in range(count)]
        if total + len(names) > max_devices or seen & set(names):
            continue
        seen.update(names)
        total += len(names)
        devices.append(dev)
    body: Doc = {"devices": devices}
    if sets:
        body["sharedCounters"] = sets
    return body


# --- documents -------------------------------------------------------------------------------


@cache
def label_selectors() -> st.SearchStrategy[Doc]:
    """Non-empty label selectors (an empty one matches every node and draws a warning)."""
    labels = st.dictionaries(label_names(), label_values(), max_size=2)
    expr = st.one_of(
        st.builds(
            lambda k, o, v: {"key": k, "operator": o, "values": v},
            label_names(),
            st.sampled_from(["In", "NotIn"]),
            st.lists(label_values(), min_size=1, max_size=3),
        ),
        st.builds(lambda k, o: {"key": k, "operator": o}, label_names(), st.sampled_from(["Exists", "DoesNotExist"])),
    )
    selector = st.builds(
        lambda m, e: ({"matchLabels": m} if m else {}) | ({"matchExpressions": e} if e else {}),
        labels,
        st.lists(expr, max_size=2),
    )
    return selector.filter(bool)


@st.composite
def valid_config_documents(
    draw: st.DrawFn, advanced: bool = True, max_devices: int = 300, max_mappings: int = 3, max_templates: int = 4
) -> Doc:
    """A config.yaml document (as a dict) that loads without errors or warnings. `max_devices` bounds
    each mapping's pool; `max_templates` the device templates per pool."""
    default = draw(drivers())
    names = draw(st.lists(dns_labels(30), min_size=1, max_size=max_mappings, unique=True))
    mappings = []
    for name in names:
        body = draw(pool_bodies(max_devices, advanced, max_templates))
        if draw(st.integers(0, 3)) == 0:
            body["driver"] = draw(drivers())
        mappings.append({"name": name, "nodeSelector": draw(label_selectors()), "resourceSlice": body})
    return {"driver": default, "mappings": mappings}


@cache
def requirements() -> st.SearchStrategy[Doc]:
    key = label_names()
    return st.one_of(
        st.builds(
            lambda k, o, v: {"key": k, "operator": o, "values": v},
            key,
            st.sampled_from(["In", "NotIn"]),
            st.lists(label_values(), min_size=1, max_size=3),
        ),
        st.builds(lambda k, o: {"key": k, "operator": o}, key, st.sampled_from(["Exists", "DoesNotExist"])),
        st.builds(
            lambda k, o, v: {"key": k, "operator": o, "values": [str(v)]},
            key,
            st.sampled_from(["Gt", "Lt", "Gte", "Lte"]),
            st.integers(0, 10**6),
        ),
    )


@st.composite
def valid_overlay_documents(
    draw: st.DrawFn,
    advanced: bool = True,
    max_devices: int = 300,
    name: str | None = None,
    max_drivers: int = 3,
    max_templates: int = 4,
) -> Doc:
    """A DRANodeOverlay manifest (test.karpenter.sh/v1alpha1) that loads without errors or warnings.

    A driver's pool may be split over several templates, as users do."""
    templates: list[Doc] = []
    capacity: Doc = {}
    for driver in draw(st.lists(drivers(), min_size=1, max_size=max_drivers, unique=True)):
        body = draw(pool_bodies(max_devices, advanced, max_templates))
        devices, sets = body["devices"], body.get("sharedCounters", [])
        cut = draw(st.integers(0, len(devices)))
        parts = (
            [(devices[:cut], sets), (devices[cut:], [])]
            if devices and cut and draw(st.booleans())
            else [(devices, sets)]
        )
        for devs, cs in parts:
            spec: Doc = {"driver": driver, "devices": devs} | ({"sharedCounters": cs} if cs else {})
            templates.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "spec": spec})
        if draw(st.booleans()):
            capacity[f"{driver}/device"] = str(sum(d.get("count", 1) for d in devices))
    spec = {"requirements": draw(st.lists(requirements(), max_size=3)), "resourceSlices": templates}
    weight = draw(st.none() | st.integers(1, 10000))
    if weight is not None:
        spec["weight"] = weight
    if capacity:
        spec["capacity"] = capacity
    return {
        "apiVersion": "test.karpenter.sh/v1alpha1",
        "kind": "DRANodeOverlay",
        "metadata": {"name": name or draw(dns_subdomains(60))},
        "spec": spec,
    }


# --- invalid documents and arbitrary data ----------------------------------------------------


@cache
def json_like(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=max_leaves,
    )


@st.composite
def corrupted(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one randomly chosen subtree replaced by arbitrary JSON-like data."""
    if not isinstance(doc, dict | list) or not doc or draw(st.integers(0, 3)) == 0:
        return draw(json_like())
    if isinstance(doc, dict):
        key = draw(st.sampled_from(sorted(doc)))
        return {**doc, key: draw(corrupted(doc[key]))}
    i = draw(st.integers(0, len(doc) - 1))
    return [*doc[:i], draw(corrupted(doc[i])), *doc[i + 1 :]]


_MISTAKES: dict[str, Any] = {
    "name": st.sampled_from(["GPU", "gpu_0", "-gpu", "a" * 64, "", "gpu.0", "gpu\n"]),
    "attribute_key": st.sampled_from(["compute-capability", "a/b/c", "1st", "x" * 33, "/x", "Bad_Domain/x"]),
    "attribute_value": st.sampled_from(
        [7.5, "x" * 65, {"int": 2**63}, {"version": "1.0"}, {}, {"int": 1, "bool": True}, [1]]
    ),
    "capacity": st.sampled_from(
        ["80 Gi", "lots", 1.5, True, {"value": "1e99999999999999999999"}, {"value": "Pi"}, {"requestPolicy": {}}]
    ),
    "count": st.sampled_from([0, -1, 1025, 10_000, "8"]),
    "taint": st.sampled_from(
        [{"key": "k", "effect": "PreferNoSchedule"}, {"key": "a b", "effect": "NoSchedule"}, {"effect": "None"}]
    ),
    "counter_ref": st.just([{"counterSet": "no-such-set", "counters": {"c": "1"}}]),
    "request_policy": st.just({"value": "8", "requestPolicy": {"default": "1"}}),
    "binding": st.just(["ready"]),
    "typo": st.sampled_from(["cont", "atributes", "capacty", "taint", "allow_multiple_allocations"]),
}


Path = tuple[str | int, ...]


def _break_device(draw: st.DrawFn, devices: list[Doc], di: int, dev_path: Path) -> Path:
    """Put one mistake into `devices[di]` (or the list around it); the path the error must be under."""
    dev = devices[di]
    kind = draw(st.sampled_from([*_MISTAKES, "duplicate", "too_many_keys"]))
    if kind == "duplicate":
        devices.append(dict(dev))
        return dev_path[:-1]
    if kind == "too_many_keys":
        dev["attributes"] = {f"a{i}": i for i in range(33)}
        return dev_path
    mistake = draw(_MISTAKES[kind])
    if kind == "name":
        dev["name"] = mistake
    elif kind == "attribute_key":
        dev["attributes"] = {**dev.get("attributes", {}), mistake: "x"}
    elif kind == "attribute_value":
        dev["attributes"] = {**dev.get("attributes", {}), "broken": mistake}
    elif kind == "capacity":
        dev["capacity"] = {**dev.get("capacity", {}), "broken": mistake}
    elif kind == "count":
        dev["count"] = mistake
    elif kind == "taint":
        dev["taints"] = [*dev.get("taints", [])[:3], mistake]
    elif kind == "counter_ref":
        dev["consumesCounters"] = mistake
    elif kind == "request_policy":
        dev.pop("allowMultipleAllocations", None)
        dev["capacity"] = {**dev.get("capacity", {}), "broken": mistake}
    elif kind == "binding":
        dev.pop("bindingFailureConditions", None)
        dev["bindingConditions"] = mistake
    elif kind == "typo":
        dev[mistake] = 1
    return dev_path


@st.composite
def invalid_config_documents(draw: st.DrawFn) -> tuple[Doc, Path]:
    """A valid config.yaml document with one mistake, and the path the error must be under."""
    doc = draw(
        valid_config_documents(max_devices=50, max_mappings=2, max_templates=3).filter(
            lambda d: any(m["resourceSlice"]["devices"] for m in d["mappings"])
        )
    )
    mi = draw(st.sampled_from([i for i, m in enumerate(doc["mappings"]) if m["resourceSlice"]["devices"]]))
    mapping = doc["mappings"][mi]
    kind = draw(st.sampled_from(["device", "device", "device", "driver", "selector"]))
    if kind == "driver":
        doc["driver"] = draw(st.sampled_from(["karpenter.sh/dra-kwok-driver", "Bad Driver", "d" * 64]))
        mapping["resourceSlice"].pop("driver", None)
        return doc, ("driver",)
    if kind == "selector":
        mapping["nodeSelector"] = {
            "matchExpressions": [{"key": "k", "operator": draw(st.sampled_from(["In", "NotIn"]))}]
        }
        return doc, ("mappings", mi, "nodeSelector")
    devices = mapping["resourceSlice"]["devices"]
    di = draw(st.integers(0, len(devices) - 1))
    return doc, _break_device(draw, devices, di, ("mappings", mi, "resourceSlice", "devices", di))


@st.composite
def invalid_overlay_documents(draw: st.DrawFn) -> tuple[Doc, Path]:
    """A valid DRANodeOverlay manifest with one mistake, and the path the error must be under."""
    doc = draw(
        valid_overlay_documents(max_devices=50, max_drivers=2, max_templates=3).filter(
            lambda d: any(t["spec"]["devices"] for t in d["spec"]["resourceSlices"])
        )
    )
    spec = doc["spec"]
    kind = draw(st.sampled_from(["device", "device", "device", "weight", "requirement", "owned", "capacity"]))
    if kind == "weight":
        spec["weight"] = draw(st.sampled_from([0, 10001, -5, "10", 1.5]))
        return doc, ("spec", "weight")
    if kind == "requirement":
        bad = draw(
            st.sampled_from(
                [
                    {"key": "k", "operator": "In"},
                    {"key": "k", "operator": "Exists", "values": ["x"]},
                    {"key": "k", "operator": "Gt", "values": ["-1"]},
                    {"key": "k", "operator": "Lte", "values": ["1", "2"]},
                    {"key": "a/b/c", "operator": "Exists"},
                    {"key": "k", "operator": "Like", "values": ["x"]},
                ]
            )
        )
        spec["requirements"] = [*spec["requirements"], bad]
        return doc, ("spec", "requirements", len(spec["requirements"]) - 1)
    if kind == "capacity":
        spec["capacity"] = {draw(st.sampled_from(["cpu", "memory", "pods", "ephemeral-storage"])): "1"}
        return doc, ("spec", "capacity")
    ti = draw(st.sampled_from([i for i, t in enumerate(spec["resourceSlices"]) if t["spec"]["devices"]]))
    tspec = spec["resourceSlices"][ti]["spec"]
    if kind == "owned":
        tspec[draw(st.sampled_from(["nodeName", "pool", "nodeSelector", "allNodes"]))] = "x"
        return doc, ("spec", "resourceSlices", ti, "spec")
    devices = tspec["devices"]
    di = draw(st.integers(0, len(devices) - 1))
    where = _break_device(draw, devices, di, ("spec", "resourceSlices", ti, "spec", "devices", di))
    # A duplicated device may collide with the same name in another template of the driver.
    return doc, where if where[-1] != "devices" else ("spec", "resourceSlices")


# --- quantities as the apiserver reads them ----------------------------------------------------
# A statement of k8s.io/apimachinery's ParseQuantity grammar, written from its documentation
# and source independently of core/quantity.py, as the oracle the parser is compared with:
#   <quantity> ::= <signedNumber><suffix>; <number> ::= digits, digits.digits, digits. or .digits
#   <suffix>   ::= Ki|Mi|Gi|Ti|Pi|Ei | n|u|m||k|M|G|T|P|E | (e|E)<signed int64>
# and what the scanner lets through beyond it: a number may have no digit at all ("", "+", ".",
# "-."), which the fast int64 path reads as 0 as long as the value's scale stays at or above
# 1e-9 and, for binary suffixes, 15 digits of precision remain (Ki to Ti); otherwise the slow
# path finds no digit and refuses it. The exponent is cast to int32; values are rounded up to
# 1n and binary ones capped at 2^63-1. JSON decoding trims spaces first (the raw JSON text, so a
# tab, escaped as \t on the wire, is not trimmed).

GO_SPACE = " "  # what JSON decoding trims reliably: other white space arrives JSON-escaped, and stays
_GRAMMAR = _re.compile(
    r"(?P<sign>[+-]?)(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))?"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE](?P<exp>[+-]?[0-9]+))?"
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def apiserver_quantity_value(text: str) -> Fraction | None:
    """The value the apiserver holds for a JSON string quantity, or None if it refuses it."""
    body = text.strip(GO_SPACE)
    match = _GRAMMAR.fullmatch(body)
    if not body or match is None:
        return None
    suffix, digits = match["suffix"] or "", (match["whole"] or "") + (match["fraction"] or "")
    if match["exp"] is not None:
        exponent = int(match["exp"])
        if not INT64_MIN <= exponent <= INT64_MAX:
            return None
        exponent = (exponent + 2**31) % 2**32 - 2**31
    if not digits:  # no digit: only the fast path reads it (as 0)
        fast = suffix in ("Ki", "Mi", "Gi", "Ti", *_DECIMAL) or (match["exp"] is not None and exponent >= -9)
        return Fraction(0) if fast else None
    number = Fraction(int(digits), 10 ** len(match["fraction"] or ""))
    if match["sign"] == "-":
        number = -number
    if suffix in _BINARY:
        value = number * 2 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        value = number * Fraction(10) ** _DECIMAL[suffix]
    else:
        value = number * Fraction(10) ** exponent
    magnitude = abs(value)
    if magnitude:
        nanos = -(-magnitude * 10**9 // 1)  # rounded up to a multiple of 1n
        magnitude = Fraction(nanos, 10**9)
    if suffix in _BINARY:
        magnitude = min(magnitude, Fraction(INT64_MAX))
    return magnitude if value >= 0 else -magnitude


_QUANTITY_SUFFIXES = ["", "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


@st.composite
def quantity_strings(draw: st.DrawFn, max_exponent: int = 40) -> str:
    """Strings near the quantity grammar: well-formed ones with every suffix, sign, exponent and
    digit count (up to 25, past int64), and some with one thing wrong or missing."""
    sign = draw(st.sampled_from(["", "", "", "+", "-"]))
    whole = draw(st.one_of(st.text("0123456789", max_size=3), st.text("0123456789", max_size=25)))
    fraction = draw(st.one_of(st.none(), st.text("0123456789", max_size=12)))
    suffix = draw(
        st.one_of(
            st.sampled_from(_QUANTITY_SUFFIXES),
            st.builds(
                lambda e, s, z: e + s + z,
                st.sampled_from(["e", "E"]),
                st.sampled_from(["", "+", "-"]),
                st.integers(0, max_exponent).map(str),
            ),
            st.sampled_from(["K", "i", "mi", "e", "E+", "ki", "Ee3", "1", "x", "e1.5", "Ki1"]),
        )
    )
    text = sign + whole + ("" if fraction is None else "." + fraction) + suffix
    space = draw(st.sampled_from(["", "", "", "", " ", "\t", "\xa0", "\u3000", "\x1c"]))
    return draw(st.sampled_from([text, text, space + text, text + space]))
