"""DRANodeOverlay objects: validate one into a rule of requirements, weight and per-driver pools."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .issues import Issue, Path, Severity, errors, format_path
from .models import CounterSet, DeviceTemplate, OverlaySpec, Requirement
from .profiles.expand import expand_overlay_spec
from .quantity import parse_quantity
from .simulation_rules import simulation_issues
from .validation import (
    PoolSpec,
    Source,
    driver_issues,
    pool_issues,
    pydantic_issues,
    slice_field_issues,
    surprise_issues,
    unknown_field_issues,
)
from .versions import DEFAULT_TARGET, Target


@dataclass(frozen=True, slots=True)
class OverlayRule:
    """A validated overlay: nodes meeting `requirements` get `pools`, one per driver."""

    name: str
    weight: int
    requirements: tuple[Requirement, ...]
    pools: tuple[PoolSpec, ...]
    capacity: tuple[tuple[str, str], ...] = ()  # `spec.capacity` as written: what Karpenter plans with

    @property
    def drivers(self) -> frozenset[str]:
        return frozenset(p.driver for p in self.pools)


def load_overlay(obj: Mapping[str, Any], target: Target = DEFAULT_TARGET) -> tuple[OverlayRule | None, list[Issue]]:
    """Validate a DRANodeOverlay manifest (metadata.name and spec) for `target`. None when there
    is an error."""
    metadata = obj.get("metadata")
    name = str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""
    raw_spec = obj.get("spec")
    if not name:
        return None, [Issue(("metadata", "name"), "is required")]
    if not isinstance(raw_spec, Mapping):
        return None, [Issue(("spec",), "is required and must be a mapping")]
    raw_spec, profile_issues = expand_overlay_spec(raw_spec)
    if profile_issues:
        return None, profile_issues
    # Checked on the raw spec so they are reported even when the structure is wrong.
    raw_findings = unknown_field_issues(OverlaySpec, raw_spec, ("spec",)) + _raw_driver_issues(raw_spec)
    try:
        spec = OverlaySpec.model_validate(raw_spec)
    except ValidationError as exc:
        return None, [_explain_missing(i) for i in pydantic_issues(exc, ("spec",))] + raw_findings
    issues = raw_findings

    # Templates of one driver merge into one pool: a node has one pool per driver.
    by_driver: dict[str, tuple[list[tuple[Path, DeviceTemplate]], list[tuple[Path, CounterSet]]]] = {}
    slice_fields: dict[str, tuple[Path, str | None, tuple[str, ...]]] = {}
    for i, tmpl in enumerate(spec.resource_slices):
        path: Path = ("spec", "resourceSlices", i, "spec")
        driver = tmpl.spec.driver
        devs, sets = by_driver.setdefault(driver, ([], []))
        devs.extend((path + ("devices", j), d) for j, d in enumerate(tmpl.spec.devices))
        sets.extend((path + ("sharedCounters", j), c) for j, c in enumerate(tmpl.spec.shared_counters))
        fields = (path, tmpl.spec.partition_type_attribute, tuple(tmpl.spec.skip_node_operations))
        first = slice_fields.setdefault(driver, fields)
        if first[1:] != fields[1:] and (fields[1] is not None or fields[2]):
            issues.append(
                Issue(
                    path,
                    f"partitionTypeAttribute and skipNodeOperations apply to driver {driver}'s whole pool: "
                    f"they differ from {format_path(first[0])}",
                    fix="set them the same in every template of the driver, or in one only",
                )
            )
        elif first[1] is None and not first[2]:
            slice_fields[driver] = fields
    pools = []
    for driver, (devs, sets) in by_driver.items():
        issues += pool_issues(driver, devs, sets, target)
        path, partition_type, skip = slice_fields[driver]
        issues += slice_field_issues(path, partition_type, skip, devs, target)
        pools.append(
            PoolSpec(
                driver,
                tuple(d for _, d in devs),
                tuple(c for _, c in sets),
                Source("overlay", name),
                partition_type,
                skip,
                spec.simulation,
            )
        )
    if not spec.resource_slices:
        issues.append(
            Issue(
                ("spec", "resourceSlices"),
                "no ResourceSlice templates: matching nodes get no devices, and the ConfigMap fallback "
                "does not apply to them",
                severity=Severity.WARNING,
            )
        )
    issues += simulation_issues(("spec", "simulation"), spec.simulation, pools, target)
    issues += _capacity_warnings(spec, pools)
    for key, value in spec.capacity.items():
        issues += surprise_issues(("spec", "capacity", key), value)
    if errors(issues):
        return None, issues
    capacity = tuple(sorted((k, str(v)) for k, v in spec.capacity.items()))
    return OverlayRule(name, spec.effective_weight, tuple(spec.requirements), tuple(pools), capacity), issues


def _explain_missing(issue: Issue) -> Issue:
    """A missing `requirements` is refused, not read as "every node": say how to mean that."""
    if issue.path == ("spec", "requirements") and issue.message == "is required":
        return Issue(
            issue.path,
            "is required: an overlay without requirements would take over every KWOK node",
            fix="list the node requirements, or write 'requirements: []' to match every KWOK node",
        )
    return issue


def _raw_driver_issues(spec: Mapping[str, Any]) -> list[Issue]:
    """Driver names checked on the raw spec, so they are reported even when the structure is wrong."""
    issues = []
    templates = spec.get("resourceSlices")
    for i, tmpl in enumerate(templates if isinstance(templates, list) else []):
        inner = tmpl.get("spec") if isinstance(tmpl, Mapping) else None
        if isinstance(inner, Mapping) and isinstance(inner.get("driver"), str):
            issues += driver_issues(inner["driver"], ("spec", "resourceSlices", i, "spec", "driver"))
    return issues


def _capacity_warnings(spec: OverlaySpec, pools: list[PoolSpec]) -> list[Issue]:
    """`capacity: {<driver>/device: "8"}` tells Karpenter a count; warn when the templates disagree."""
    counts = {p.driver: p.device_count for p in pools}
    out = []
    for key, value in spec.capacity.items():
        domain = key.split("/", 1)[0]
        if domain in counts and parse_quantity(value) != counts[domain]:
            out.append(
                Issue(
                    ("spec", "capacity", key),
                    f"says {value} but the templates for driver {domain!r} define {counts[domain]} device(s); "
                    "Karpenter will plan with the capacity while the scheduler sees the devices",
                    value,
                    f"set it to {counts[domain]!r} or change the templates",
                    Severity.WARNING,
                )
            )
    return out
