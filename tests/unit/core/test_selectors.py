from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.models import LabelSelector, Requirement
from dra_kwok.core.selectors import (
    first_failing_requirement,
    first_failing_selector_term,
    requirement_matches,
    requirements_match,
    selector_matches,
)

LABELS = {"type": "kwok", "node.kubernetes.io/instance-type": "g5.48xlarge", "gpus": "8"}


def selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


def req(key: str, operator: str, *values: str) -> Requirement:
    return Requirement.model_validate({"key": key, "operator": operator, "values": list(values)})


class TestLabelSelector:
    def test_empty_selector_matches_everything(self) -> None:
        assert selector_matches(selector(), {})
        assert selector_matches(selector(), LABELS)

    def test_match_labels_must_all_hold(self) -> None:
        assert selector_matches(selector(matchLabels={"type": "kwok", "gpus": 8}), LABELS)
        assert not selector_matches(selector(matchLabels={"type": "kwok", "gpus": "4"}), LABELS)
        assert not selector_matches(selector(matchLabels={"zone": "a"}), LABELS)

    @pytest.mark.parametrize(
        ("expression", "matches"),
        [
            ({"key": "gpus", "operator": "In", "values": ["4", "8"]}, True),
            ({"key": "gpus", "operator": "In", "values": ["4"]}, False),
            ({"key": "zone", "operator": "In", "values": ["a"]}, False),
            ({"key": "gpus", "operator": "NotIn", "values": ["4"]}, True),
            ({"key": "gpus", "operator": "NotIn", "values": ["8"]}, False),
            ({"key": "zone", "operator": "NotIn", "values": ["a"]}, True),  # a missing label is not in the set
            ({"key": "gpus", "operator": "Exists"}, True),
            ({"key": "zone", "operator": "Exists"}, False),
            ({"key": "zone", "operator": "DoesNotExist"}, True),
            ({"key": "gpus", "operator": "DoesNotExist"}, False),
        ],
    )
    def test_match_expressions(self, expression: dict[str, Any], matches: bool) -> None:
        assert selector_matches(selector(matchExpressions=[expression]), LABELS) is matches

    def test_labels_and_expressions_are_anded(self) -> None:
        sel = selector(
            matchLabels={"type": "kwok"}, matchExpressions=[{"key": "gpus", "operator": "In", "values": ["4"]}]
        )
        assert not selector_matches(sel, LABELS)


class TestRequirements:
    @pytest.mark.parametrize(
        ("requirement", "matches"),
        [
            (req("gpus", "In", "8"), True),
            (req("gpus", "In", "1", "2"), False),
            (req("zone", "In", "a"), False),
            (req("gpus", "NotIn", "1"), True),
            (req("gpus", "NotIn", "8"), False),
            (req("zone", "NotIn", "a"), True),
            (req("gpus", "Exists"), True),
            (req("zone", "Exists"), False),
            (req("zone", "DoesNotExist"), True),
            (req("gpus", "DoesNotExist"), False),
            (req("gpus", "Gt", "7"), True),
            (req("gpus", "Gt", "8"), False),
            (req("gpus", "Gte", "8"), True),
            (req("gpus", "Gte", "9"), False),
            (req("gpus", "Lt", "9"), True),
            (req("gpus", "Lt", "8"), False),
            (req("gpus", "Lte", "8"), True),
            (req("gpus", "Lte", "7"), False),
            (req("zone", "Gt", "0"), False),  # a missing label never compares
            (req("type", "Gt", "0"), False),  # neither does a non-integer one
        ],
    )
    def test_operators(self, requirement: Requirement, matches: bool) -> None:
        assert requirement_matches(requirement, LABELS) is matches

    @pytest.mark.parametrize(
        ("value", "matches"), [("5", True), ("+5", True), ("-5", False), ("4_0", False), (" 5", False), ("5.0", False)]
    )
    def test_numeric_labels_parse_like_go(self, value: str, matches: bool) -> None:
        """Python's int() accepts '4_0' and ' 5'; Kubernetes' strconv does not."""
        assert requirement_matches(req("n", "Gt", "4"), {"n": value}) is matches

    def test_all_requirements_must_hold_and_none_means_all_nodes(self) -> None:
        both = (req("type", "In", "kwok"), req("gpus", "Gte", "8"))
        assert requirements_match(both, LABELS)
        assert not requirements_match((*both, req("zone", "Exists")), LABELS)
        assert requirements_match((), {})


# --- why a node does not match (dra-kwok render) ------------------------------------------------


@pytest.mark.parametrize(
    ("reqs", "why"),
    [
        ((req("type", "Exists"), req("gpus", "Gt", "4")), None),
        (
            (req("type", "Exists"), req("gpus", "Gt", "8"), req("zone", "Exists")),
            "requirement gpus Gt ['8'] fails: the node has gpus='8'",
        ),
        ((req("zone", "In", "a"),), "requirement zone In ['a'] fails: the node has no label zone"),
        ((req("type", "DoesNotExist"),), "requirement type DoesNotExist fails: the node has type='kwok'"),
        ((), None),
    ],
)
def test_the_first_failing_requirement_is_named_with_the_node_value(
    reqs: tuple[Requirement, ...], why: str | None
) -> None:
    assert first_failing_requirement(reqs, LABELS) == why
    assert (why is None) == requirements_match(reqs, LABELS)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"matchLabels": {"type": "kwok"}}, None),
        (
            {"matchLabels": {"type": "kwok", "node.kubernetes.io/instance-type": "m5"}},
            "matchLabels node.kubernetes.io/instance-type=m5 fails: "
            "the node has node.kubernetes.io/instance-type='g5.48xlarge'",
        ),
        (
            {
                "matchLabels": {"type": "kwok"},
                "matchExpressions": [{"key": "gpus", "operator": "NotIn", "values": ["8"]}],
            },
            "matchExpressions gpus NotIn ['8'] fails: the node has gpus='8'",
        ),
        (
            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]},
            "matchExpressions zone Exists fails: the node has no label zone",
        ),
    ],
)
def test_the_first_failing_selector_term_is_named(raw: dict[str, Any], why: str | None) -> None:
    assert first_failing_selector_term(selector(**raw), LABELS) == why
    assert (why is None) == selector_matches(selector(**raw), LABELS)
