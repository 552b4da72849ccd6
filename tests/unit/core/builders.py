"""Small builders for config.yaml and DRANodeOverlay documents, and assertions on Issues."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dra_kwok.core.config import FallbackConfig, load_config_data
from dra_kwok.core.issues import Issue, errors, format_path, warnings
from dra_kwok.core.overlay import OverlayRule, load_overlay
from dra_kwok.core.versions import DEFAULT_TARGET, Target

DRIVER = "gpu.example.com"
OTHER_DRIVER = "fpga.example.com"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"

Doc = dict[str, Any]


def device(name: str = "gpu", **fields: Any) -> Doc:
    return {"name": name, **fields}


def mapping(
    name: str = "m",
    *,
    labels: Mapping[str, str] | None = None,
    devices: Sequence[Doc] | None = None,
    **slice_fields: Any,
) -> Doc:
    return {
        "name": name,
        "nodeSelector": {"matchLabels": dict(labels if labels is not None else {INSTANCE_TYPE: "gpu-8x"})},
        "resourceSlice": {"devices": list(devices if devices is not None else [device()]), **slice_fields},
    }


def config(*mappings: Doc, driver: str | None = DRIVER) -> Doc:
    doc: Doc = {"mappings": list(mappings) if mappings else [mapping()]}
    if driver is not None:
        doc["driver"] = driver
    return doc


def config_with_devices(*devices: Doc, **slice_fields: Any) -> Doc:
    return config(mapping(devices=list(devices), **slice_fields))


def template(driver: str = DRIVER, devices: Sequence[Doc] | None = None, **spec: Any) -> Doc:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "spec": {"driver": driver, "devices": list(devices if devices is not None else [device()]), **spec},
    }


def requirement(key: str = INSTANCE_TYPE, operator: str = "In", values: Sequence[str] | None = ("gpu-8x",)) -> Doc:
    req: Doc = {"key": key, "operator": operator}
    if values is not None:
        req["values"] = list(values)
    return req


def overlay(
    name: str = "o",
    *,
    weight: int | None = None,
    requirements: Sequence[Doc] | None = None,
    templates: Sequence[Doc] | None = None,
    **spec: Any,
) -> Doc:
    body: Doc = {
        "requirements": list(requirements if requirements is not None else [requirement()]),
        "resourceSlices": list(templates if templates is not None else [template()]),
        **spec,
    }
    if weight is not None:
        body["weight"] = weight
    return {
        "apiVersion": "test.karpenter.sh/v1alpha1",
        "kind": "DRANodeOverlay",
        "metadata": {"name": name},
        "spec": body,
    }


def load_config_ok(doc: Any, target: Target = DEFAULT_TARGET) -> FallbackConfig:
    cfg, issues = load_config_data(doc, target)
    assert errors(issues) == [], [str(i) for i in issues]
    assert cfg is not None
    return cfg


def load_overlay_ok(doc: Mapping[str, Any]) -> OverlayRule:
    rule, issues = load_overlay(doc)
    assert errors(issues) == [], [str(i) for i in issues]
    assert rule is not None
    return rule


def config_errors(doc: Any, target: Target = DEFAULT_TARGET) -> list[Issue]:
    """The errors for a config that must be rejected (the config itself must then be None)."""
    cfg, issues = load_config_data(doc, target)
    errs = errors(issues)
    assert errs, "expected the configuration to be rejected"
    assert cfg is None
    return errs


def overlay_errors(doc: Mapping[str, Any]) -> list[Issue]:
    rule, issues = load_overlay(doc)
    errs = errors(issues)
    assert errs, "expected the overlay to be rejected"
    assert rule is None
    return errs


def only(issues: Iterable[Issue]) -> Issue:
    found = list(issues)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def only_error(issues: Iterable[Issue]) -> Issue:
    return only(errors(issues))


def only_warning(issues: Iterable[Issue]) -> Issue:
    return only(warnings(issues))


def at(issues: Iterable[Issue], path: str) -> Issue:
    """The one issue at `path` (as format_path renders it)."""
    found = [i for i in issues if format_path(i.path) == path]
    assert len(found) == 1, (path, [str(i) for i in issues])
    return found[0]


def paths(issues: Iterable[Issue]) -> list[str]:
    return [format_path(i.path) for i in issues]
