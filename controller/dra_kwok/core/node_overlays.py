"""Karpenter NodeOverlays derived from DRANodeOverlays, so Karpenter's scheduling simulation knows
how many devices an instance type brings (seed 001, Case 1) without the user writing it twice.

Karpenter plans pods that request an extended resource with the instance types' capacity; a
`karpenter.sh/v1alpha1` NodeOverlay adds extended resources to the instance types its
requirements select. Which extended resources stand for our devices is said by the DeviceClasses
(`spec.extendedResourceName`, and `deviceclass.resource.kubernetes.io/<class>` for every class on
versions with DRAExtendedResource); how many is counted from the overlay's device templates, with
the class's selectors. Only selectors this module can evaluate are counted: conjunctions of
`device.driver == "D"` and `device.attributes["DOMAIN"].NAME == VALUE`; any other class is left
out, with a finding that says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .models import Attribute, DeviceTemplate
from .overlay import OverlayRule

API_VERSION = "karpenter.sh/v1alpha1"
KIND = "NodeOverlay"
PLURAL_PATH = "/apis/karpenter.sh/v1alpha1/nodeoverlays"
IMPLICIT_PREFIX = "deviceclass.resource.kubernetes.io/"
NAME_PREFIX = "dra-kwok-"
LABEL_SOURCE = "dra-kwok.test.karpenter.sh/overlay"  # the DRANodeOverlay a NodeOverlay is derived from
KARPENTER_WEIGHT_MAX = 10000  # as DRANodeOverlay's own maximum

AttrValue = str | int | bool

_QUOTED = r"""(?:"([^"\\]*)"|'([^'\\]*)')"""
_DRIVER = re.compile(rf"^device\.driver\s*==\s*{_QUOTED}$")
_ATTRIBUTE = re.compile(
    rf"^device\.attributes\[{_QUOTED}\]\.([A-Za-z_][A-Za-z0-9_]*)\s*==\s*(?:{_QUOTED}|(true|false)|(-?[0-9]+))$"
)


@dataclass(frozen=True, slots=True)
class CountingClass:
    """A DeviceClass as far as counting goes: the extended resources it stands for and, when its
    selectors can be evaluated here, what a device must be to count."""

    name: str
    resources: tuple[str, ...]
    driver: str | None  # None: a selector this module cannot evaluate
    attributes: tuple[tuple[str, AttrValue], ...] = ()  # (qualified name, value), all must match
    unreadable: str = ""  # the first selector expression that could not be evaluated

    def counts(self, driver: str, device: DeviceTemplate) -> bool:
        if self.driver != driver:
            return False
        return all(_attribute_is(device, driver, name, value) for name, value in self.attributes)


def _unquote(groups: Sequence[str | None]) -> str:
    return next(g for g in groups if g is not None)


def _term(expression: str) -> tuple[str, str | None, AttrValue | None] | None:
    """One conjunct: ("driver", None, name) or ("attribute", qualified name, value); None when
    it is something else."""
    text = expression.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if m := _DRIVER.match(text):
        return "driver", None, _unquote(m.groups())
    if m := _ATTRIBUTE.match(text):
        domain, name = _unquote(m.groups()[0:2]), m.group(3)
        if m.group(6) is not None:
            value: AttrValue = m.group(6) == "true"
        elif m.group(7) is not None:
            value = int(m.group(7))
        else:
            value = _unquote(m.groups()[3:5])
        return "attribute", f"{domain}/{name}", value
    return None


def counting_class(obj: Mapping[str, Any], implicit_names: bool) -> CountingClass:
    """A DeviceClass manifest as read from the API. `implicit_names`: the version gives every
    class the extended resource `deviceclass.resource.kubernetes.io/<name>` (DRAExtendedResource)."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    spec = obj.get("spec") or {}
    resources: list[str] = []
    explicit = spec.get("extendedResourceName")
    if isinstance(explicit, str) and explicit:
        resources.append(explicit)
    if implicit_names and name:
        resources.append(IMPLICIT_PREFIX + name)
    driver: str | None = None
    attributes: list[tuple[str, AttrValue]] = []
    for selector in spec.get("selectors") or []:
        expression = str(((selector or {}).get("cel") or {}).get("expression") or "")
        for part in expression.split("&&"):
            term = _term(part)
            if term is None or (term[0] == "driver" and driver not in (None, term[2])):
                return CountingClass(name, tuple(resources), None, unreadable=expression)
            if term[0] == "driver":
                driver = str(term[2])
            else:
                assert term[1] is not None and term[2] is not None
                attributes.append((term[1], term[2]))
    if driver is None:
        return CountingClass(name, tuple(resources), None, unreadable="(no device.driver == ... selector)")
    return CountingClass(name, tuple(resources), driver, tuple(attributes))


def _attribute_is(device: DeviceTemplate, driver: str, qualified: str, value: AttrValue) -> bool:
    domain, _, short = qualified.rpartition("/")
    attr: Attribute | None = device.attributes.get(qualified)
    if attr is None and domain == driver:
        attr = device.attributes.get(short)  # unqualified names are in the driver's domain
    if attr is None:
        return False
    if isinstance(value, bool):
        return attr.bool_ is value
    if isinstance(value, int):
        return attr.int_ == value and attr.bool_ is None
    return attr.string == value


@dataclass(frozen=True, slots=True)
class DerivedOverlay:
    """What Karpenter is told about the instance types one DRANodeOverlay covers."""

    name: str  # the NodeOverlay's
    source: str  # the DRANodeOverlay's
    source_uid: str
    weight: int
    requirements: tuple[Mapping[str, Any], ...]
    capacity: Mapping[str, str]

    def manifest(self, managed_by_label: str, managed_by: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "requirements": [dict(r) for r in self.requirements],
            "capacity": dict(sorted(self.capacity.items())),
        }
        if self.weight >= 1:  # Karpenter's range is 1 to 10000 (ours 0 to 10000); none means 0
            spec["weight"] = self.weight
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": self.name,
                "labels": {managed_by_label: managed_by, LABEL_SOURCE: self.source},
                # Deleted with its DRANodeOverlay by the garbage collector, also while we are down.
                "ownerReferences": [
                    {
                        "apiVersion": "test.karpenter.sh/v1alpha1",
                        "kind": "DRANodeOverlay",
                        "name": self.source,
                        "uid": self.source_uid,
                    }
                ],
            },
            "spec": spec,
        }


def node_overlay_name(source: str) -> str:
    """`dra-kwok-<overlay>`, cut to the 253 characters of a name."""
    return (NAME_PREFIX + source)[:253].rstrip("-.")


def derive(rule: OverlayRule, uid: str, classes: Iterable[CountingClass]) -> tuple[DerivedOverlay | None, list[str]]:
    """The NodeOverlay for one valid DRANodeOverlay, or None when it has no capacity to tell: none
    written in `spec.capacity` and no class counting any of its devices; and notes on classes of
    its drivers that could not be counted. What `spec.capacity` says wins over a count."""
    capacity: dict[str, int] = {}
    notes: list[str] = []
    drivers = rule.drivers
    for cls in classes:
        if not cls.resources:
            continue
        if cls.driver is None:
            if any(d in cls.unreadable for d in drivers):
                notes.append(
                    f"DeviceClass {cls.name}: its selector {cls.unreadable!r} cannot be evaluated here, so "
                    f"{', '.join(cls.resources)} is not counted for Karpenter; fix: select devices with "
                    'conjunctions of device.driver == "..." and device.attributes["domain"].name == value'
                )
            continue
        count = sum(d.instances for pool in rule.pools for d in pool.devices if cls.counts(pool.driver, d))
        if count:
            for resource in cls.resources:  # two classes naming one resource: the larger count, not twice
                capacity[resource] = max(capacity.get(resource, 0), count)
    told = {k: str(v) for k, v in capacity.items()} | dict(rule.capacity)
    if not told:
        return None, notes
    requirements = tuple(
        {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
        for r in rule.requirements
    )
    return DerivedOverlay(node_overlay_name(rule.name), rule.name, uid, rule.weight, requirements, told), notes
