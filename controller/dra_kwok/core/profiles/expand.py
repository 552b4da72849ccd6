"""A template's `profile:` replaced by the devices the profile builds, before validation.

    profile:
      name: nvidia-gpu            # one of PROFILES
      parameters: {count: 4}      # the profile's own, with defaults
      overrides:                  # merged into every device the profile builds
        attributes: {...}
        capacity: {...}
        taints: [...]

The template keeps its own `devices` and `sharedCounters` (listed first, so their paths in
findings stay as written); the profile's follow. `driver` is the profile's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..issues import Issue, Path
from ..validation import pydantic_issues
from . import PROFILES
from .base import Body

PROFILE_KEYS = ("name", "parameters", "overrides")
OVERRIDE_KEYS = ("attributes", "capacity", "taints")


def _with_overrides(device: Body, overrides: Mapping[str, Any]) -> Body:
    out = dict(device)
    for key in ("attributes", "capacity"):
        extra = overrides.get(key)
        if isinstance(extra, Mapping) and extra:
            out[key] = {**(device.get(key) or {}), **extra}
    taints = overrides.get("taints")
    if isinstance(taints, list) and taints:
        out["taints"] = list(device.get("taints") or []) + taints
    return out


def _ref_issues(ref: Any, path: Path) -> list[Issue]:
    if not isinstance(ref, Mapping):
        return [Issue(path, "must be a mapping with name, parameters and overrides", ref)]
    issues = [
        Issue(path + (str(k),), "is not a profile field", fix=f"use {', '.join(PROFILE_KEYS)}")
        for k in ref
        if k not in PROFILE_KEYS
    ]
    name = ref.get("name")
    if not isinstance(name, str) or name not in PROFILES:
        known = ", ".join(sorted(PROFILES)) or "none"
        issues.append(
            Issue(path + ("name",), "is not a known profile", name, fix=f"use one of: {known} (dra-kwok profiles)")
        )
    overrides = ref.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            issues.append(Issue(path + ("overrides",), "must be a mapping of attributes, capacity, taints", overrides))
        else:
            issues += [
                Issue(path + ("overrides", str(k)), "cannot be overridden", fix=f"use {', '.join(OVERRIDE_KEYS)}")
                for k in overrides
                if k not in OVERRIDE_KEYS
            ]
    params = ref.get("parameters", {})
    if not isinstance(params, Mapping):
        issues.append(Issue(path + ("parameters",), "must be a mapping", params))
    return issues


def expand_template(raw: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], list[Issue]]:
    """`raw` (a template body) with its `profile` expanded; the findings name `path`'s fields."""
    out = dict(raw)
    if "profile" not in out:
        return out, []
    ref = out.pop("profile")
    ppath = path + ("profile",)
    issues = _ref_issues(ref, ppath)
    if issues:
        return out, issues
    profile = PROFILES[ref["name"]]
    try:
        params = profile.parameters.model_validate(ref.get("parameters") or {})
    except ValidationError as exc:
        return out, pydantic_issues(exc, ppath + ("parameters",))
    driver = out.get("driver")
    if driver is not None and driver != profile.driver:
        return out, [
            Issue(
                path + ("driver",),
                f"differs from profile {profile.name}'s driver {profile.driver}",
                driver,
                fix="remove driver (the profile sets it), or pick a profile of that driver",
            )
        ]
    built = profile.pool(params)
    overrides = ref.get("overrides") or {}
    out["driver"] = profile.driver
    out["devices"] = list(out.get("devices") or []) + [_with_overrides(d, overrides) for d in built.devices]
    counters = list(out.get("sharedCounters") or []) + list(built.shared_counters)
    if counters:
        out["sharedCounters"] = counters
    if built.partition_type_attribute and "partitionTypeAttribute" not in out:
        out["partitionTypeAttribute"] = built.partition_type_attribute
    return out, []


def expand_overlay_spec(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Issue]]:
    """A DRANodeOverlay spec with each template's profile expanded."""
    templates = spec.get("resourceSlices")
    if not isinstance(templates, list) or not any(
        isinstance(t, Mapping) and isinstance(t.get("spec"), Mapping) and "profile" in t["spec"] for t in templates
    ):
        return spec, []
    issues: list[Issue] = []
    expanded = []
    for i, t in enumerate(templates):
        if isinstance(t, Mapping) and isinstance(t.get("spec"), Mapping) and "profile" in t["spec"]:
            body, found = expand_template(t["spec"], ("spec", "resourceSlices", i, "spec"))
            expanded.append({**t, "spec": body})
            issues += found
        else:
            expanded.append(t)
    return {**spec, "resourceSlices": expanded}, issues


def expand_mapping(raw: Any, path: Path) -> tuple[Any, list[Issue]]:
    """A ConfigMap mapping with its resourceSlice's profile expanded."""
    if not isinstance(raw, Mapping):
        return raw, []
    body = raw.get("resourceSlice")
    if not isinstance(body, Mapping) or "profile" not in body:
        return raw, []
    expanded, issues = expand_template(body, path + ("resourceSlice",))
    return {**raw, "resourceSlice": expanded}, issues
