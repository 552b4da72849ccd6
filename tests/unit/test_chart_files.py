"""The chart's files that copy or mirror others stay in step with them: its crds/ is the
repository's crds/ (`make crds` refreshes both), its appVersion is the project's version, the values
schema knows every value, and docs/operations.md documents every value."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "dra-kwok-driver"


def test_chart_crds_are_the_generated_crds() -> None:
    source = {p.name: p.read_text() for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))}
    copy = {p.name: p.read_text() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert source, "crds/ is empty: run `make crds`"
    assert sorted(copy) == sorted(source), "the chart's crds/ lists other files than crds/: run `make crds`"
    for name, text in source.items():
        assert copy[name] == text, f"charts/dra-kwok-driver/crds/{name} differs from crds/{name}: run `make crds`"


def test_app_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.34.0-0"


def value_paths(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml down to leaves, lists and empty maps (what a user sets)."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and key not in FREE_FORM:
            yield from value_paths(value, path + ".")
        else:
            yield path


# Maps passed through to Kubernetes as they are: documented (and schema-checked) as one value.
FREE_FORM = {"podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe"}


def schema_at(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return None
        node = (node.get("properties") or {}).get(part)
    return node


def test_values_schema_knows_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    missing = [p for p in value_paths(values) if schema_at(schema, p) is None]
    assert not missing, f"values.schema.json has no entry for: {missing}"


def doc_section(title: str) -> str:
    doc = (REPO_ROOT / "docs" / "operations.md").read_text()
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else None]


def table_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", text, re.MULTILINE))


def test_operations_doc_lists_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = table_keys(doc_section("Values reference"))
    paths = set(value_paths(values))
    assert not paths - documented, f"docs/operations.md's values table lacks: {sorted(paths - documented)}"
    assert not documented - paths, f"docs/operations.md documents values that do not exist: {documented - paths}"


def test_operations_doc_lists_every_metric() -> None:
    source = (REPO_ROOT / "controller" / "dra_kwok" / "shell" / "metrics.py").read_text()
    defined = set(re.findall(r'"(dra_kwok_[a-z_]+)"', source))
    assert defined, "no metrics found in metrics.py"
    assert table_keys(doc_section("Metrics")) == defined
