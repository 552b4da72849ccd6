"""The DRANodeOverlay CRD: the committed file is the generated one, its schema has exactly the
models' fields, its limits are the core's, and its formats agree with the core's checks."""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from dra_kwok import crd
from dra_kwok.core import models, names
from dra_kwok.core.models import (
    Attribute,
    Capacity,
    Counter,
    CounterConsumption,
    CounterSet,
    DeviceTemplate,
    OverlaySpec,
    ProfileOverrides,
    ProfileRef,
    Requirement,
    SliceTemplate,
    SliceTemplateSpec,
    Taint,
)
from dra_kwok.core.quantity import quantity_problem
from dra_kwok.core.simulation import Binding, ClaimCondition, ClaimStatus, FaultRule, NetworkData, Simulation
from dra_kwok.core.validation import unknown_field_issues
from dra_kwok.core.versions import LIMITS, LOOSEST

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = crd.overlay_crd()
VERSION = CRD["spec"]["versions"][0]
ROOT = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]
TEMPLATE = SPEC["properties"]["resourceSlices"]["items"]
TEMPLATE_SPEC = TEMPLATE["properties"]["spec"]
DEVICE = TEMPLATE_SPEC["properties"]["devices"]["items"]


def test_committed_crd_is_the_generated_one() -> None:
    path = REPO_ROOT / crd.CRD_FILE
    assert path.is_file(), f"{crd.CRD_FILE} is missing: run `make crds`"
    assert path.read_text() == crd.render_crd_yaml(), f"{crd.CRD_FILE} is stale: run `make crds` and commit it"


def test_names_come_from_the_core() -> None:
    assert CRD["metadata"]["name"] == f"{models.OVERLAY_PLURAL}.{models.OVERLAY_GROUP}"
    assert CRD["spec"]["group"] == models.OVERLAY_GROUP
    assert CRD["spec"]["scope"] == "Cluster"
    assert CRD["spec"]["names"] == {
        "kind": models.OVERLAY_KIND,
        "listKind": f"{models.OVERLAY_KIND}List",
        "plural": models.OVERLAY_PLURAL,
        "singular": "dranodeoverlay",
        "shortNames": ["dno"],
        "categories": ["karpenter", "dra-kwok"],
    }
    assert [v["name"] for v in CRD["spec"]["versions"]] == [models.OVERLAY_VERSION]
    assert VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "Weight": ("integer", ".spec.weight"),
        "Nodes": ("integer", ".status.matchedNodes"),
        "Ready": ("string", '.status.conditions[?(@.type=="Ready")].status'),
        "Reason": ("string", '.status.conditions[?(@.type=="Ready")].reason'),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    assert TEMPLATE["properties"]["apiVersion"]["enum"] == [models.RESOURCE_API_VERSION]


# --- the schema has exactly the models' fields ------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strips Annotated[...] and Optional[...]."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _nested_model(annotation: Any) -> tuple[tuple[str, ...], type[BaseModel]] | None:
    """Where in the schema a field's model type sits: () for the field itself, ("items",) for a
    list of models, ("additionalProperties",) for a map of them."""
    tp = _unwrap(annotation)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return (), tp
    origin = get_origin(tp)
    container = {list: "items", dict: "additionalProperties"}.get(origin) if origin else None
    if container is None:
        return None
    inner = _nested_model(get_args(tp)[-1])
    return None if inner is None else ((container, *inner[0]), inner[1])


def _field_mismatches(model: type[BaseModel], schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every difference between the model's fields (by alias) and the schema node's properties,
    recursively into nested models."""
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    props = schema.get("properties", {})
    allowed_extra = set(crd.DRIVER_OWNED_TEMPLATE_FIELDS) if model is SliceTemplateSpec else set()
    for name in sorted(fields.keys() - props.keys()):
        yield f"{path}: field {model.__name__}.{name} is missing from the schema"
    for name in sorted(props.keys() - fields.keys() - allowed_extra):
        yield f"{path}: schema property {name!r} is not a field of {model.__name__}"
    required = {alias for alias, info in fields.items() if info.is_required()}
    if model is SliceTemplateSpec:
        required -= {"driver"}  # a profile sets it: a CEL rule requires driver or profile
    if set(schema.get("required", [])) != required:
        yield f"{path}: schema requires {sorted(schema.get('required', []))}, {model.__name__} {sorted(required)}"
    for alias, info in fields.items():
        nested = _nested_model(info.annotation)
        if nested is None or alias not in props:
            continue
        node = props[alias]
        for step in nested[0]:
            node = node[step]
        yield from _field_mismatches(nested[1], node, f"{path}.{alias}")


def _models_reached(model: type[BaseModel]) -> set[type[BaseModel]]:
    out = {model}
    for info in model.model_fields.values():
        nested = _nested_model(info.annotation)
        if nested:
            out |= _models_reached(nested[1])
    return out


def test_schema_properties_are_the_model_fields() -> None:
    problems = list(_field_mismatches(OverlaySpec, SPEC, "spec"))
    assert not problems, "the CRD schema and the pydantic models differ:\n" + "\n".join(problems)


def test_the_field_comparison_covers_every_overlay_model() -> None:
    expected = {OverlaySpec, SliceTemplate, SliceTemplateSpec, DeviceTemplate, CounterSet, CounterConsumption}
    expected |= {Taint, Requirement, Attribute, Capacity, Counter, ProfileRef, ProfileOverrides}
    expected |= {Simulation, ClaimStatus, ClaimCondition, NetworkData, Binding, FaultRule}
    assert _models_reached(OverlaySpec) == expected


def test_the_field_comparison_notices_a_missing_or_extra_field() -> None:
    class Extended(Taint):
        time_added: str | None = None

    assert list(_field_mismatches(Extended, _taint_schema(), "t")) == [
        "t: field Extended.timeAdded is missing from the schema"
    ]
    schema = _taint_schema()
    schema["properties"]["timeAdded"] = {"type": "string"}
    assert list(_field_mismatches(Taint, schema, "t")) == ["t: schema property 'timeAdded' is not a field of Taint"]


def _taint_schema() -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(DEVICE["properties"]["taints"]["items"])
    return schema


def test_driver_owned_fields_are_declared_and_forbidden() -> None:
    props = TEMPLATE_SPEC["properties"]
    rules = {r.get("fieldPath"): r for r in TEMPLATE_SPEC["x-kubernetes-validations"]}
    for name in crd.DRIVER_OWNED_TEMPLATE_FIELDS:
        assert name in props
        assert rules[f".{name}"]["rule"] == f"!has(self.{name})"
        # The controller rejects them too (with its own message).
        (issue,) = unknown_field_issues(SliceTemplateSpec, {"driver": "gpu.example.com", name: "x"})
        assert issue.path == (name,) and issue.message.startswith("must not be set in a template")


# --- limits ------------------------------------------------------------------------------------------


def test_limits_are_the_core_constants() -> None:
    sp, dp = SPEC["properties"], DEVICE["properties"]
    tsp = TEMPLATE_SPEC["properties"]
    assert sp["requirements"]["maxItems"] == models.MAX_REQUIREMENTS
    assert (sp["weight"]["minimum"], sp["weight"]["maximum"]) == (models.MIN_WEIGHT, models.MAX_WEIGHT)
    assert tsp["devices"]["maxItems"] == models.MAX_DEVICES_PER_POOL
    assert (dp["count"]["minimum"], dp["count"]["maximum"]) == (1, models.MAX_DEVICES_PER_POOL)
    # The CRD takes what any supported version takes; the controller checks the targeted version's limits.
    assert tsp["sharedCounters"]["maxItems"] == LOOSEST.max_counter_sets == 32  # 1.34: no count, 32 counters
    assert tsp["sharedCounters"]["items"]["properties"]["counters"]["maxProperties"] == LOOSEST.max_counters_per_set
    assert dp["consumesCounters"]["maxItems"] == LOOSEST.max_consumptions_per_device == 32
    consumption = dp["consumesCounters"]["items"]["properties"]
    assert consumption["counters"]["maxProperties"] == LOOSEST.max_counters_per_set == 32
    assert dp["taints"]["maxItems"] == LOOSEST.max_taints == 16
    assert dp["bindingConditions"]["maxItems"] == LOOSEST.max_binding_conditions == 4
    assert dp["bindingFailureConditions"]["maxItems"] == LOOSEST.max_binding_conditions
    assert dp["attributes"]["maxProperties"] == LOOSEST.max_attributes_and_capacities == 32
    assert dp["capacity"]["maxProperties"] == LOOSEST.max_attributes_and_capacities
    for limits in LIMITS.values():  # no version takes more than the CRD admits
        assert limits.max_taints <= LOOSEST.max_taints
        assert (limits.max_counter_sets or 0) <= LOOSEST.max_counter_sets
    assert dp["name"]["maxLength"] == names.DNS1123_LABEL_MAX
    assert tsp["driver"]["maxLength"] == names.DRIVER_NAME_MAX
    assert dp["driver"]["maxLength"] == names.DRIVER_NAME_MAX
    assert consumption["counterSet"]["maxLength"] == names.DNS1123_LABEL_MAX
    assert dp["taints"]["items"]["properties"]["value"]["maxLength"] == names.LABEL_VALUE_MAX
    attribute = dp["attributes"]["additionalProperties"]
    assert attribute["maxLength"] == crd.ATTRIBUTE_STRING_MAX
    assert attribute["properties"]["string"]["maxLength"] == crd.ATTRIBUTE_STRING_MAX
    # The CEL rules spell two limits out.
    device_rules = " ".join(r["rule"] for r in DEVICE["x-kubernetes-validations"])
    assert f"<= {names.DNS1123_LABEL_MAX}" in device_rules
    template_rules = " ".join(r["rule"] for r in TEMPLATE_SPEC["x-kubernetes-validations"])
    assert f".sum() <= {models.MAX_DEVICES_PER_POOL}" in template_rules


def test_attribute_string_limit_is_the_models() -> None:
    Attribute.model_validate("x" * crd.ATTRIBUTE_STRING_MAX)
    with pytest.raises(ValueError, match="at most 64"):
        Attribute.model_validate("x" * (crd.ATTRIBUTE_STRING_MAX + 1))


def test_restricted_capacity_names_are_the_models() -> None:
    for name in crd.RESTRICTED_CAPACITY:
        with pytest.raises(ValueError, match="restricted"):
            OverlaySpec.model_validate({"requirements": [], "capacity": {name: "1"}})
    OverlaySpec.model_validate({"requirements": [], "capacity": {"example.com/device": "1"}})


def test_enums_are_the_models() -> None:
    assert tuple(get_args(models.NodeSelectorOperator)) == crd.OPERATORS
    assert SPEC["properties"]["requirements"]["items"]["properties"]["operator"]["enum"] == list(crd.OPERATORS)
    effect = Taint.model_fields["effect"].annotation
    assert set(get_args(effect)) == set(crd.TAINT_EFFECTS)
    assert DEVICE["properties"]["taints"]["items"]["properties"]["effect"]["enum"] == list(crd.TAINT_EFFECTS)


# --- the schema is structural and every CEL input is bounded ----------------------------------------


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def test_schema_is_structural() -> None:
    """The rules the apiserver checks first, so a mistake shows up without a cluster."""
    for path, node in _nodes(ROOT):
        typeless_ok = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or typeless_ok, f"{path}: needs a type"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: properties and a map"
        if node.get("type") == "array":
            assert "items" in node, f"{path}: an array needs items"
        for branch in node.get("anyOf", []):
            if not node.get("x-kubernetes-int-or-string"):
                assert "type" not in branch and "description" not in branch, f"{path}: anyOf must not set a type"
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            # CEL cannot see a typeless node: no rule may sit on one.
            assert "x-kubernetes-validations" not in node, f"{path}: CEL rule on a typeless node"


def test_lists_and_maps_under_rules_are_bounded() -> None:
    """The CEL cost estimate multiplies by the size of every list and map above a rule."""
    for path, node in _nodes(SPEC, "spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: a list needs maxItems"
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, f"{path}: a map needs maxProperties"
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path}: a string needs maxLength"


# --- formats agree with the core's checks ----------------------------------------------------------


def _accepts(schema: dict[str, Any], value: str) -> bool:
    """What the apiserver's `maxLength` and `pattern` say (RE2's `$` is the end of the text)."""
    if len(value) > schema.get("maxLength", len(value)):
        return False
    return re.fullmatch(schema["pattern"], value) is not None


NAME_CHARS = st.text(alphabet="abzAZ09-._/ ", max_size=12)
LONG = st.integers(min_value=55, max_value=80).map(lambda n: "a" * n)
EDGES = ["", "a", "-a", "a-", "A", "a.b", "a..b", "a/b", "a/b/c", "/a", "a/", "_a", "a_b", "1", "a b", "é"]


def _examples(*values: str) -> Any:
    def wrap(test: Any) -> Any:
        for value in values:
            test = example(value)(test)
        return test

    return wrap


@given(NAME_CHARS | LONG)
@_examples(*EDGES)
def test_dns_label_format(value: str) -> None:
    schema = DEVICE["properties"]["name"]
    assert _accepts(schema, value) == (names.dns_label_problem(value) is None)


@given(NAME_CHARS | LONG)
@_examples(*EDGES, "karpenter.sh/dra-kwok-driver", "Gpu.example.com", "gpu.example.com")
def test_driver_format(value: str) -> None:
    schema = TEMPLATE_SPEC["properties"]["driver"]
    assert _accepts(schema, value) == (names.driver_name_problem(value) is None)


@given(NAME_CHARS | LONG | LONG.map(lambda s: "example.com/" + s))
@_examples(*EDGES, "node.kubernetes.io/instance-type", "example.com/A_b.c", "Example.com/a")
def test_label_name_format(value: str) -> None:
    # The pattern does not bound the prefix to 253 characters (the model does); keys that long
    # are not generated here.
    schema = DEVICE["properties"]["taints"]["items"]["properties"]["key"]
    assert _accepts(schema, value) == (names.label_name_problem(value) is None)


@given(NAME_CHARS | LONG)
@_examples(*EDGES, "true", "g5.48xlarge")
def test_label_value_format(value: str) -> None:
    schema = DEVICE["properties"]["taints"]["items"]["properties"]["value"]
    assert _accepts(schema, value) == (names.label_value_problem(value) is None)


@given(st.text(alphabet="0123.-+abAZ", max_size=16))
@_examples("1.2.3", "1.2", "01.2.3", "1.2.3-rc.1", "1.2.3-01", "1.2.3+build.5", "1.2.3-", "12.2.0", "1.2.3-a..b")
def test_semver_format(value: str) -> None:
    schema = DEVICE["properties"]["attributes"]["additionalProperties"]["properties"]["version"]
    assert _accepts(schema, value) == (names.semver_problem(value) is None)


@given(st.text(alphabet="0159.+-eEkKmMGiTPnu \t\xa0\x1c", max_size=10))
@_examples(
    "80Gi",
    "500m",
    "1e3",
    "1E-3",
    ".5",
    "5.",
    "+1",
    "-1",
    "1.5Gi",
    "Gi",
    "Pi",
    "e-10",
    "e-9",
    "",
    " ",
    " 1",
    "1 Gi",
    "1ki",
    "1u",
    "100n",
    "0x10",
)
def test_quantity_format(value: str) -> None:
    schema = SPEC["properties"]["capacity"]["additionalProperties"]
    assert _accepts(schema, value) == (quantity_problem(value) is None)


@pytest.mark.parametrize(
    "node",
    [
        DEVICE["properties"]["capacity"]["additionalProperties"],
        TEMPLATE_SPEC["properties"]["sharedCounters"]["items"]["properties"]["counters"]["additionalProperties"],
    ],
    ids=["capacity", "counter"],
)
def test_shorthand_quantities_use_the_same_format(node: dict[str, Any]) -> None:
    quantity = SPEC["properties"]["capacity"]["additionalProperties"]
    assert node["pattern"] == quantity["pattern"] == node["properties"]["value"]["pattern"]
