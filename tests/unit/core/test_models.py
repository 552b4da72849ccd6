"""Field formats and the shorthand -> resource.k8s.io/v1 normalisation of the models.

Errors are checked through `pydantic_issues`, the same translation the loaders use, so paths are
those a user sees (relative to the model validated here).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.models import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEVICES_PER_POOL,
    Attribute,
    Capacity,
    CounterConsumption,
    CounterSet,
    DeviceTemplate,
    LabelSelector,
    LabelSelectorRequirement,
    OverlaySpec,
    Requirement,
    SliceTemplate,
    Taint,
)
from dra_kwok.core.validation import pydantic_issues, unknown_field_issues


def issues_of(model: type[BaseModel], data: Any) -> list[Issue]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return pydantic_issues(caught.value)


def one_issue(model: type[BaseModel], data: Any) -> tuple[str, str]:
    found = issues_of(model, data)
    assert len(found) == 1, [str(i) for i in found]
    return format_path(found[0].path), found[0].message


class TestAttribute:
    @pytest.mark.parametrize(
        ("raw", "api"),
        [
            ("A100", {"string": "A100"}),
            ("16Gi", {"string": "16Gi"}),
            ("true", {"string": "true"}),  # quoted in YAML: stays a string
            (0, {"int": 0}),
            (-7, {"int": -7}),
            (True, {"bool": True}),  # bool before int: True is an int in Python
            (False, {"bool": False}),
            ({"string": "x"}, {"string": "x"}),
            ({"int": 3}, {"int": 3}),
            ({"bool": False}, {"bool": False}),
            ({"version": "1.2.3"}, {"version": "1.2.3"}),
        ],
    )
    def test_shorthand_and_v1_form_normalise_to_the_v1_form(self, raw: Any, api: dict[str, Any]) -> None:
        attr = Attribute.model_validate(raw)
        assert attr.to_api() == api
        assert dict(attr.api_items()) == api
        assert attr.kind == next(iter(api))

    def test_a_float_is_rejected_with_a_hint_to_quote_it(self) -> None:
        path, message = one_issue(Attribute, 7.5)
        assert path == "<root>"
        assert message == (
            'a number with a fraction (7.5) is not an attribute type; quote it to make a string ("7.5"), '
            'or write {version: "7.5.0"} for a version'
        )

    @pytest.mark.parametrize(("raw", "key"), [({"string": 7.5}, "string"), ({"version": 1.0}, "version")])
    def test_a_number_in_the_string_or_version_form_is_rejected_with_a_hint_to_quote_it(
        self, raw: dict[str, Any], key: str
    ) -> None:
        _, message = one_issue(Attribute, raw)
        assert message == f'{key} must be text: quote the value ({key}: "{raw[key]}")'

    def test_a_yaml_date_is_rejected_with_a_hint_to_quote_it(self) -> None:
        _, message = one_issue(Attribute, date(2024, 1, 31))
        assert message == 'a date (2024-01-31) is not an attribute type; quote it to make a string ("2024-01-31")'

    @pytest.mark.parametrize(("raw", "found"), [({}, "none"), ({"string": "a", "int": 1}, "['int', 'string']")])
    def test_exactly_one_value_must_be_set(self, raw: dict[str, Any], found: str) -> None:
        _, message = one_issue(Attribute, raw)
        assert message == (
            f"exactly one of int, bool, string or version (or a list: ints, bools, strings, versions) must be set "
            f"(found {found})"
        )

    @pytest.mark.parametrize(
        ("raw", "says"),
        [
            ({"strings": []}, "strings must not be empty"),
            ({"strings": ["x" * 65]}, "string values "),
            ({"versions": ["1.2"]}, "version '1.2' "),
            ({"ints": [1], "int": 1}, "exactly one of"),
        ],
    )
    def test_list_attributes_are_checked_like_single_values(self, raw: dict[str, Any], says: str) -> None:
        _, message = one_issue(Attribute, raw)
        assert says in message

    def test_list_attributes(self) -> None:
        attr = Attribute.model_validate({"versions": ["1.2.3", "2.0.0"]})
        assert attr.api_items() == [("versions", ["1.2.3", "2.0.0"])] and attr.value_list == ["1.2.3", "2.0.0"]

    def test_string_of_64_characters_is_accepted(self) -> None:
        assert Attribute.model_validate("x" * 64).string == "x" * 64

    @pytest.mark.parametrize("raw", ["x" * 65, {"string": "x" * 65}])
    def test_string_over_64_characters_is_rejected(self, raw: Any) -> None:
        _, message = one_issue(Attribute, raw)
        assert message == "string values must be at most 64 bytes of UTF-8 (has 65)"

    @pytest.mark.parametrize("value", [INT64_MIN, INT64_MAX])
    def test_int64_bounds_are_accepted(self, value: int) -> None:
        assert Attribute.model_validate(value).to_api() == {"int": value}

    @pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**70])
    def test_ints_beyond_int64_are_rejected(self, value: int) -> None:
        _, message = one_issue(Attribute, value)
        assert message == f"int values must fit in 64 bits ({INT64_MIN} to {INT64_MAX})"

    @pytest.mark.parametrize("version", ["9.0", "v1.0.0", "1.0.0-01"])
    def test_versions_must_be_semver(self, version: str) -> None:
        _, message = one_issue(Attribute, {"version": version})
        assert message == (f"version {version!r} must be a semantic version (semver 2.0.0) such as 1.2.3 or 1.2.3-rc.1")

    def test_a_non_scalar_is_reported_as_a_bad_mapping(self) -> None:
        path, message = one_issue(Attribute, [1, 2])
        assert (path, message) == ("<root>", "must be a mapping (key: value)")


class TestCapacityAndCounters:
    @pytest.mark.parametrize(("raw", "value"), [("80Gi", "80Gi"), (4, "4"), ({"value": "1500m"}, "1500m")])
    def test_capacity_shorthand_and_v1_form(self, raw: Any, value: str) -> None:
        assert Capacity.model_validate(raw).to_api() == {"value": value}

    def test_request_policy_is_passed_through(self) -> None:
        policy = {"default": "1Gi", "validRange": {"min": "1Gi", "step": "1Gi"}}
        cap = Capacity.model_validate({"value": "8Gi", "requestPolicy": policy})
        assert cap.to_api() == {"value": "8Gi", "requestPolicy": policy}

    @pytest.mark.parametrize(
        ("raw", "path", "message"),
        [
            ("80 Gi", "value", "'80 Gi' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)"),
            ({"value": "lots"}, "value", "'lots' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)"),
            (1.5, "value", 'a number with a fraction (1.5) must be quoted to be a quantity ("1.5")'),
            (True, "value", "must be a quantity string such as 16Gi or 500m, or an integer"),
            ({}, "value", "is required"),
        ],
    )
    def test_capacity_values_must_be_quantities(self, raw: Any, path: str, message: str) -> None:
        assert one_issue(Capacity, raw) == (path, message)

    def test_counter_set_names_and_counter_names_are_dns_labels(self) -> None:
        found = issues_of(CounterSet, {"name": "Set_A", "counters": {"Mem_B": "1"}})
        assert [(format_path(i.path), i.message.split(" must")[0]) for i in found] == [
            ("name", "'Set_A'"),
            ("counters.Mem_B", "'Mem_B'"),
        ]

    def test_a_counter_set_needs_a_counter(self) -> None:
        path, message = one_issue(CounterSet, {"name": "a", "counters": {}})
        assert (path, message) == ("counters", "Dictionary should have at least 1 item after validation, not 0")

    def test_consumption_shorthand(self) -> None:
        use = CounterConsumption.model_validate({"counterSet": "gpu-0", "counters": {"memory": "10Gi"}})
        assert use.to_api() == {"counterSet": "gpu-0", "counters": {"memory": {"value": "10Gi"}}}


class TestDeviceTemplate:
    def test_a_device_without_count_is_one_device_with_its_own_name(self) -> None:
        dev = DeviceTemplate.model_validate({"name": "fpga"})
        assert (dev.instances, dev.device_names()) == (1, ["fpga"])

    def test_count_expands_to_name_dash_index(self) -> None:
        dev = DeviceTemplate.model_validate({"name": "nvidia-t4-0", "count": 3})
        assert dev.device_names() == ["nvidia-t4-0-0", "nvidia-t4-0-1", "nvidia-t4-0-2"]
        assert dev.instances == 3

    def test_a_name_of_63_characters_is_accepted(self) -> None:
        assert DeviceTemplate.model_validate({"name": "a" * 63}).name == "a" * 63

    @pytest.mark.parametrize("name", ["a" * 64, "GPU", "gpu_0", "-gpu", ""])
    def test_names_must_be_dns_labels(self, name: str) -> None:
        path, message = one_issue(DeviceTemplate, {"name": name})
        assert path == "name"
        assert message.startswith(f"device name {name!r} must ")

    def test_expanded_names_may_reach_63_characters(self) -> None:
        dev = DeviceTemplate.model_validate({"name": "a" * 61, "count": 10})
        assert dev.device_names()[-1] == "a" * 61 + "-9"

    def test_expanded_names_over_63_characters_are_rejected_naming_the_last(self) -> None:
        path, message = one_issue(DeviceTemplate, {"name": "a" * 61, "count": 11})
        assert path == "<root>"
        assert message == (
            f"with count 11 the device names reach {'a' * 61 + '-10'!r} (64 characters), "
            "over the 63-character limit; shorten the name"
        )

    @pytest.mark.parametrize(
        ("count", "message"),
        [
            (0, "Input should be greater than or equal to 1"),
            (MAX_DEVICES_PER_POOL + 1, "Input should be less than or equal to 1024"),
            ("2", "Input should be a valid integer"),
        ],
    )
    def test_count_bounds(self, count: Any, message: str) -> None:
        assert one_issue(DeviceTemplate, {"name": "gpu", "count": count}) == ("count", message)

    @pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute", "None"])
    def test_taint_effects(self, effect: str) -> None:
        assert Taint.model_validate({"key": "k", "effect": effect}).effect == effect

    def test_prefer_no_schedule_is_not_a_device_taint_effect(self) -> None:
        assert one_issue(Taint, {"key": "k", "effect": "PreferNoSchedule"}) == (
            "effect",
            "Input should be 'NoSchedule', 'NoExecute' or 'None'",
        )

    def test_taint_key_and_value_follow_label_rules(self) -> None:
        found = issues_of(Taint, {"key": "a b", "value": "x y", "effect": "NoSchedule"})
        assert [(format_path(i.path), i.message) for i in found] == [
            (
                "key",
                "taint key 'a b': the name must be alphanumeric, '-', '_' or '.', starting and ending with an "
                "alphanumeric",
            ),
            (
                "value",
                "taint value 'x y': must be empty or alphanumeric, '-', '_' or '.', starting and ending with "
                "an alphanumeric",
            ),
        ]

    def test_unknown_keys_are_kept_for_warnings_but_never_sent_to_the_api(self) -> None:
        dev = DeviceTemplate.model_validate(
            {
                "name": "gpu",
                "capacity": {"memory": {"value": "1Gi", "unit": "bytes"}},
                "consumesCounters": [{"counterSet": "s", "counters": {"mem": {"value": "1", "x": 1}}, "y": 2}],
                "taints": [{"key": "k", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}],
            }
        )
        assert dev.capacity["memory"].model_extra == {"unit": "bytes"}
        assert dev.capacity["memory"].to_api() == {"value": "1Gi"}
        assert dev.consumes_counters[0].to_api() == {"counterSet": "s", "counters": {"mem": {"value": "1"}}}
        assert dev.taints[0].to_api() == {"key": "k", "effect": "NoSchedule"}


class TestSelectorsAndRequirements:
    def test_match_labels_values_become_strings(self) -> None:
        sel = LabelSelector.model_validate({"matchLabels": {"gpus": 8, "spot": True, "zone": "a"}})
        assert sel.match_labels == {"gpus": "8", "spot": "true", "zone": "a"}

    def test_match_labels_keys_and_values_follow_label_rules(self) -> None:
        assert one_issue(LabelSelector, {"matchLabels": {"a": "x" * 64}}) == (
            "matchLabels",
            f"label 'a'={'x' * 64!r}: must be at most 63 characters (has 64)",
        )

    @pytest.mark.parametrize("model", [LabelSelectorRequirement, Requirement])
    @pytest.mark.parametrize(
        ("operator", "values", "message"),
        [
            ("In", [], "operator In needs at least one value"),
            ("NotIn", [], "operator NotIn needs at least one value"),
            ("Exists", ["x"], "operator Exists takes no values (remove 'values')"),
            ("DoesNotExist", ["x"], "operator DoesNotExist takes no values (remove 'values')"),
        ],
    )
    def test_set_operators_and_their_values(
        self, model: type[BaseModel], operator: str, values: list[str], message: str
    ) -> None:
        assert one_issue(model, {"key": "a", "operator": operator, "values": values}) == ("<root>", message)

    @pytest.mark.parametrize("model", [LabelSelectorRequirement, Requirement])
    def test_requirement_keys_are_label_names(self, model: type[BaseModel]) -> None:
        assert one_issue(model, {"key": "a/b/c", "operator": "Exists"}) == (
            "<root>",
            "key 'a/b/c': must not contain more than one slash",
        )

    def test_label_selectors_do_not_take_numeric_operators(self) -> None:
        path, message = one_issue(LabelSelectorRequirement, {"key": "a", "operator": "Gt", "values": ["1"]})
        assert (path, message) == ("operator", "Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'")

    @pytest.mark.parametrize("operator", ["Gt", "Lt", "Gte", "Lte"])
    @pytest.mark.parametrize("value", ["0", "4", "10000"])
    def test_numeric_operators_accept_one_non_negative_integer(self, operator: str, value: str) -> None:
        assert Requirement.model_validate({"key": "a", "operator": operator, "values": [value]}).values == [value]

    @pytest.mark.parametrize("operator", ["Gt", "Lt", "Gte", "Lte"])
    @pytest.mark.parametrize("values", [[], ["1", "2"], ["-1"], ["1.5"], ["four"], ["²"], [""]])
    def test_numeric_operators_reject_anything_else(self, operator: str, values: list[str]) -> None:
        assert one_issue(Requirement, {"key": "a", "operator": operator, "values": values}) == (
            "<root>",
            f"operator {operator} needs exactly one non-negative integer value, e.g. ['4']",
        )


class TestOverlaySpec:
    def test_unset_weight_counts_as_zero(self) -> None:
        spec = OverlaySpec.model_validate({"requirements": []})
        assert (spec.weight, spec.effective_weight) == (None, 0)

    @pytest.mark.parametrize("weight", [1, 10, 10000])
    def test_weight_in_range(self, weight: int) -> None:
        assert OverlaySpec.model_validate({"requirements": [], "weight": weight}).effective_weight == weight

    @pytest.mark.parametrize(
        ("weight", "message"),
        [
            (0, "Input should be greater than or equal to 1"),
            (10001, "Input should be less than or equal to 10000"),
            (-1, "Input should be greater than or equal to 1"),
            ("10", "Input should be a valid integer"),
            (True, "Input should be a valid integer"),
            (1.5, "Input should be a valid integer"),
        ],
    )
    def test_weight_out_of_range_or_mistyped(self, weight: Any, message: str) -> None:
        assert one_issue(OverlaySpec, {"requirements": [], "weight": weight}) == ("weight", message)

    def test_at_most_100_requirements(self) -> None:
        reqs = [{"key": f"k{i}", "operator": "Exists"} for i in range(101)]
        assert one_issue(OverlaySpec, {"requirements": reqs}) == (
            "requirements",
            "List should have at most 100 items after validation, not 101",
        )
        assert len(OverlaySpec.model_validate({"requirements": reqs[:100]}).requirements) == 100

    @pytest.mark.parametrize("name", ["cpu", "memory", "ephemeral-storage", "pods"])
    def test_capacity_of_restricted_resources_is_rejected(self, name: str) -> None:
        assert one_issue(OverlaySpec, {"requirements": [], "capacity": {name: "1"}}) == (
            "capacity",
            f"capacity {name!r} is restricted: only extended resources (domain/name) may be set",
        )

    def test_capacity_names_and_values_are_checked(self) -> None:
        assert one_issue(OverlaySpec, {"requirements": [], "capacity": {"example.com/bad name": "1"}}) == (
            "capacity",
            "capacity name 'example.com/bad name': the name must be alphanumeric, '-', '_' or '.', "
            "starting and ending with an alphanumeric",
        )
        assert one_issue(OverlaySpec, {"requirements": [], "capacity": {"example.com/gpu": "eight"}}) == (
            "capacity['example.com/gpu']",
            "'eight' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)",
        )

    def test_extended_resource_capacity_is_accepted(self) -> None:
        spec = OverlaySpec.model_validate({"requirements": [], "capacity": {"gpu.example.com/device": 8}})
        assert spec.capacity == {"gpu.example.com/device": "8"}


class TestSliceTemplate:
    @pytest.mark.parametrize(
        "owned",
        [["nodeName"], ["pool"], ["nodeName", "pool"], ["nodeSelector"], ["allNodes"], ["perDeviceNodeSelection"]],
    )
    def test_fields_the_driver_fills_in_must_not_be_set(self, owned: list[str]) -> None:
        spec: dict[str, Any] = {"driver": "gpu.example.com", **dict.fromkeys(owned, "x")}
        assert [(i.path, i.message, i.fix) for i in unknown_field_issues(SliceTemplate, {"spec": spec})] == [
            (
                ("spec", key),
                "must not be set in a template: the driver fills in nodeName and pool for each node",
                f"remove {key}",
            )
            for key in owned
        ]
        # The model keeps them out of what is sent.
        assert set(SliceTemplate.model_validate({"spec": spec}).spec.to_api()) == {"driver"}

    def test_api_version_and_kind_default_and_are_fixed(self) -> None:
        tmpl = SliceTemplate.model_validate({"spec": {"driver": "gpu.example.com"}})
        assert (tmpl.api_version, tmpl.kind) == ("resource.k8s.io/v1", "ResourceSlice")
        found = issues_of(
            SliceTemplate, {"apiVersion": "resource.k8s.io/v1beta1", "kind": "Foo", "spec": {"driver": "d"}}
        )
        assert [(format_path(i.path), i.message) for i in found] == [
            ("apiVersion", "Input should be 'resource.k8s.io/v1'"),
            ("kind", "Input should be 'ResourceSlice'"),
        ]

    def test_the_driver_is_required(self) -> None:
        assert one_issue(SliceTemplate, {"spec": {"devices": []}}) == ("spec.driver", "is required")
