"""Matching node labels against label selectors (mappings) and NodeOverlay requirements."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .models import LabelSelector, Requirement


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: all matchLabels and all matchExpressions hold."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions:
        present = expr.key in labels
        if expr.operator == "In" and not (present and labels[expr.key] in expr.values):
            return False
        if expr.operator == "NotIn" and present and labels[expr.key] in expr.values:
            return False
        if expr.operator == "Exists" and not present:
            return False
        if expr.operator == "DoesNotExist" and present:
            return False
    return True


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _as_int(text: str) -> int | None:
    """The label's integer value as Go's strconv parses it (Python's int() also takes '4_0' and ' 4')."""
    return int(text) if _INTEGER.fullmatch(text) else None


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    """Node-selector-requirement semantics, as Karpenter applies NodeOverlay requirements."""
    value = labels.get(req.key)
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    # Gt, Lt, Gte, Lte: the label must hold an integer.
    have = _as_int(value) if value is not None else None
    want = int(req.values[0])
    if have is None:
        return False
    return {"Gt": have > want, "Lt": have < want, "Gte": have >= want, "Lte": have <= want}[op]


def requirements_match(reqs: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(requirement_matches(r, labels) for r in reqs)


def _shown_label(labels: Mapping[str, str], key: str) -> str:
    return f"the node has {key}={labels[key]!r}" if key in labels else f"the node has no label {key}"


def _describe(key: str, operator: str, values: list[str]) -> str:
    return f"{key} {operator} {values}" if values else f"{key} {operator}"


def first_failing_requirement(reqs: tuple[Requirement, ...], labels: Mapping[str, str]) -> str | None:
    """The first requirement the labels do not meet, described with the node's value; None if all hold."""
    for req in reqs:
        if not requirement_matches(req, labels):
            return f"requirement {_describe(req.key, req.operator, req.values)} fails: {_shown_label(labels, req.key)}"
    return None


def first_failing_selector_term(selector: LabelSelector, labels: Mapping[str, str]) -> str | None:
    """The first matchLabels entry or matchExpression the labels do not meet; None if the selector matches."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return f"matchLabels {key}={value} fails: {_shown_label(labels, key)}"
    for expr in selector.match_expressions:
        if not selector_matches(LabelSelector(match_expressions=[expr]), labels):
            term = _describe(expr.key, expr.operator, expr.values)
            return f"matchExpressions {term} fails: {_shown_label(labels, expr.key)}"
    return None
