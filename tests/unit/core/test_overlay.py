"""DRANodeOverlay objects: requirements, weight, capacity and embedded ResourceSlice templates."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.issues import format_path
from dra_kwok.core.overlay import load_overlay
from dra_kwok.core.validation import Source

from .builders import (
    DRIVER,
    OTHER_DRIVER,
    device,
    load_overlay_ok,
    only_error,
    only_warning,
    overlay,
    overlay_errors,
    paths,
    requirement,
    template,
)

T0 = "spec.resourceSlices[0].spec"


class TestRule:
    def test_a_valid_overlay_becomes_a_rule_with_one_pool_per_driver(self) -> None:
        rule = load_overlay_ok(
            overlay(
                "h100",
                weight=10,
                templates=[
                    template(DRIVER, [device("gpu", count=8)]),
                    template(OTHER_DRIVER, [device("fpga")]),
                ],
            )
        )
        assert (rule.name, rule.weight) == ("h100", 10)
        assert [(r.key, r.operator, r.values) for r in rule.requirements] == [
            ("node.kubernetes.io/instance-type", "In", ["gpu-8x"])
        ]
        assert [(p.driver, p.device_count, p.source) for p in rule.pools] == [
            (DRIVER, 8, Source("overlay", "h100")),
            (OTHER_DRIVER, 1, Source("overlay", "h100")),
        ]
        assert rule.drivers == frozenset({DRIVER, OTHER_DRIVER})

    def test_unset_weight_is_zero(self) -> None:
        assert load_overlay_ok(overlay()).weight == 0

    @pytest.mark.parametrize("weight", [1, 10000])
    def test_weight_bounds_are_accepted(self, weight: int) -> None:
        assert load_overlay_ok(overlay(weight=weight)).weight == weight

    @pytest.mark.parametrize(
        ("weight", "message"),
        [
            (0, "Input should be greater than or equal to 1"),
            (10001, "Input should be less than or equal to 10000"),
            ("10", "Input should be a valid integer"),
        ],
    )
    def test_weight_out_of_range(self, weight: Any, message: str) -> None:
        issue = only_error(overlay_errors(overlay(weight=weight)))
        assert (format_path(issue.path), issue.message, issue.value) == ("spec.weight", message, weight)

    def test_templates_of_one_driver_merge_into_one_pool(self) -> None:
        rule = load_overlay_ok(
            overlay(
                templates=[
                    template(DRIVER, [device("gpu", count=2)], sharedCounters=[{"name": "s", "counters": {"m": "2"}}]),
                    template(DRIVER, [device("part", consumesCounters=[{"counterSet": "s", "counters": {"m": "1"}}])]),
                ]
            )
        )
        (pool,) = rule.pools
        assert [d.name for d in pool.devices] == ["gpu", "part"]
        assert [c.name for c in pool.counter_sets] == ["s"]
        assert pool.device_count == 3

    def test_duplicate_device_names_across_templates_of_one_driver(self) -> None:
        doc = overlay(templates=[template(DRIVER, [device("gpu")]), template(DRIVER, [device("gpu")])])
        issue = only_error(overlay_errors(doc))
        assert format_path(issue.path) == "spec.resourceSlices[1].spec.devices[0].name"
        assert issue.message == (
            "device name 'gpu' is also produced by spec.resourceSlices[0].spec.devices[0]; "
            "names must be unique in a pool"
        )
        assert issue.fix == "rename one of them"

    def test_the_same_device_names_for_different_drivers_are_fine(self) -> None:
        load_overlay_ok(overlay(templates=[template(DRIVER, [device("gpu")]), template(OTHER_DRIVER, [device("gpu")])]))

    def test_duplicate_counter_sets_across_templates_of_one_driver(self) -> None:
        sets = [{"name": "s", "counters": {"m": "1"}}]
        doc = overlay(templates=[template(DRIVER, [], sharedCounters=sets), template(DRIVER, [], sharedCounters=sets)])
        issue = only_error(overlay_errors(doc))
        assert (format_path(issue.path), issue.message) == (
            "spec.resourceSlices[1].spec.sharedCounters[0].name",
            "duplicate counter set name in the pool",
        )

    def test_more_than_1024_devices_across_templates_of_one_driver(self) -> None:
        doc = overlay(templates=[template(DRIVER, [device(f"d{i}", count=1000)]) for i in range(2)])
        issue = only_error(overlay_errors(doc))
        assert format_path(issue.path) == "spec.resourceSlices[1].spec.devices[0]"
        assert issue.message == "the pool has 2000 devices; at most 1024 per node and driver are supported"

    def test_no_templates_warns_that_fallback_does_not_apply(self) -> None:
        rule, issues = load_overlay(overlay(templates=[]))
        assert rule is not None and rule.pools == ()
        warning = only_warning(issues)
        assert format_path(warning.path) == "spec.resourceSlices"
        assert warning.message == (
            "no ResourceSlice templates: matching nodes get no devices, "
            "and the ConfigMap fallback does not apply to them"
        )


class TestDocumentShape:
    @pytest.mark.parametrize("metadata", [None, {}, {"name": ""}, [1], "x"])
    def test_metadata_name_is_required(self, metadata: Any) -> None:
        doc = overlay()
        doc["metadata"] = metadata
        issue = only_error(overlay_errors(doc))
        assert (format_path(issue.path), issue.message) == ("metadata.name", "is required")

    @pytest.mark.parametrize("spec", [None, [], "x"])
    def test_spec_must_be_a_mapping(self, spec: Any) -> None:
        doc = overlay()
        doc["spec"] = spec
        issue = only_error(overlay_errors(doc))
        assert (format_path(issue.path), issue.message) == ("spec", "is required and must be a mapping")

    @pytest.mark.parametrize(
        ("spec", "path", "message"),
        [
            ({"requirements": [], "resourceSlices": {"spec": {}}}, "spec.resourceSlices", "must be a list"),
            ({"requirements": {"key": "a"}}, "spec.requirements", "must be a list"),
            (
                {"requirements": [], "resourceSlices": [{"spec": []}]},
                "spec.resourceSlices[0].spec",
                "must be a mapping (key: value)",
            ),
            ({"requirements": [], "capacity": ["x"]}, "spec.capacity", "must be a mapping (key: value)"),
        ],
    )
    def test_wrong_shapes(self, spec: dict[str, Any], path: str, message: str) -> None:
        doc = overlay()
        doc["spec"] = spec
        issue = only_error(overlay_errors(doc))
        assert (format_path(issue.path), issue.message) == (path, message)

    def test_unknown_keys_are_errors_with_the_nearest_field(self) -> None:
        doc = overlay(weigth=5, templates=[template(devices=[device(atributes={})])])
        doc["spec"]["resourceSlices"][0]["spec"]["pol"] = "x"
        rule, issues = load_overlay(doc)
        assert rule is None
        assert sorted((format_path(i.path), i.message, i.fix) for i in issues) == [
            ("spec.resourceSlices[0].spec.devices[0].atributes", "unknown field", "did you mean 'attributes'?"),
            (
                "spec.resourceSlices[0].spec.pol",
                "unknown field",
                "did you mean 'profile'?",
            ),
            ("spec.weigth", "unknown field", "did you mean 'weight'?"),
        ]
        assert all(i.is_error for i in issues)

    def test_a_misspelt_requirements_is_not_a_catch_all(self) -> None:
        """`requirments: [...]` (or `requirements` pruned by the apiserver) must not read as "every node"."""
        doc = overlay()
        doc["spec"]["requirments"] = doc["spec"].pop("requirements")
        assert sorted(str(i) for i in overlay_errors(doc)) == [
            "spec.requirements: is required: an overlay without requirements would take over every KWOK node; "
            "fix: list the node requirements, or write 'requirements: []' to match every KWOK node",
            "spec.requirments: unknown field; fix: did you mean 'requirements'?",
        ]

    def test_an_explicit_empty_requirements_matches_every_kwok_node(self) -> None:
        rule, issues = load_overlay(overlay(requirements=[]))
        assert rule is not None and issues == []
        assert rule.requirements == ()

    def test_snake_case_is_not_the_api_spelling(self) -> None:
        doc = overlay(templates=[template(devices=[device(allow_multiple_allocations=True)])])
        issue = only_error(overlay_errors(doc))
        assert (format_path(issue.path), issue.fix) == (
            "spec.resourceSlices[0].spec.devices[0].allow_multiple_allocations",
            "did you mean 'allowMultipleAllocations'?",
        )


class TestTemplates:
    @pytest.mark.parametrize("field", ["nodeName", "pool", "nodeSelector", "allNodes", "perDeviceNodeSelection"])
    def test_template_must_not_set_fields_the_driver_owns(self, field: str) -> None:
        issue = only_error(overlay_errors(overlay(templates=[template(DRIVER, [device()], **{field: "x"})])))
        assert str(issue) == (
            f"{T0}.{field}: must not be set in a template: the driver fills in nodeName and pool for each node; "
            f"fix: remove {field}"
        )

    def test_a_field_the_driver_owns_does_not_hide_the_other_errors(self) -> None:
        doc = overlay(templates=[template(DRIVER, [device("GPU_0")], nodeName="n", pool={})])
        assert sorted(format_path(i.path) for i in overlay_errors(doc)) == [
            f"{T0}.devices[0].name",
            f"{T0}.nodeName",
            f"{T0}.pool",
        ]

    def test_the_seed_driver_name_in_a_template_is_rejected_with_a_fix(self) -> None:
        issue = only_error(overlay_errors(overlay(templates=[template("karpenter.sh/dra-kwok-driver")])))
        assert format_path(issue.path) == f"{T0}.driver"
        assert issue.fix == "use 'karpenter.sh.dra-kwok-driver'"
        assert issue.value == "karpenter.sh/dra-kwok-driver"

    def test_template_driver_is_reported_even_when_the_structure_is_wrong(self) -> None:
        doc = overlay(templates=[template("Bad/Driver", devices=[device("GPU")])])
        issues = overlay_errors(doc)
        assert sorted(paths(issues)) == [f"{T0}.devices[0].name", f"{T0}.driver"]

    def test_a_device_may_repeat_the_slice_driver(self) -> None:
        load_overlay_ok(overlay(templates=[template(DRIVER, [device(driver=DRIVER)])]))

    def test_a_device_naming_another_driver_is_rejected(self) -> None:
        issue = only_error(overlay_errors(overlay(templates=[template(DRIVER, [device(driver=OTHER_DRIVER)])])))
        assert format_path(issue.path) == f"{T0}.devices[0].driver"
        assert (issue.message, issue.value, issue.fix) == (
            f"differs from the slice's driver {DRIVER!r}",
            OTHER_DRIVER,
            "remove it",
        )

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("apiVersion", "resource.k8s.io/v1beta2", "Input should be 'resource.k8s.io/v1'"),
            ("kind", "ResourceClaim", "Input should be 'ResourceSlice'"),
        ],
    )
    def test_template_api_version_and_kind(self, field: str, value: str, message: str) -> None:
        tmpl = template()
        tmpl[field] = value
        issue = only_error(overlay_errors(overlay(templates=[tmpl])))
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"spec.resourceSlices[0].{field}",
            message,
            value,
        )

    def test_device_rules_apply_inside_templates(self) -> None:
        doc = overlay(templates=[template(devices=[device(attributes={"compute-capability": "9.0"})])])
        issue = only_error(overlay_errors(doc))
        assert format_path(issue.path) == f"{T0}.devices[0].attributes.compute-capability"
        assert "use 'compute_capability' or 'computeCapability'" in issue.message


class TestRequirements:
    @pytest.mark.parametrize(
        ("req", "message"),
        [
            (requirement(operator="In", values=None), "operator In needs at least one value"),
            (requirement(operator="NotIn", values=[]), "operator NotIn needs at least one value"),
            (requirement(operator="Exists", values=["x"]), "operator Exists takes no values (remove 'values')"),
            (
                requirement(operator="Gt", values=["a"]),
                "operator Gt needs exactly one non-negative integer value, e.g. ['4']",
            ),
            (
                requirement(operator="Lte", values=["1", "2"]),
                "operator Lte needs exactly one non-negative integer value, e.g. ['4']",
            ),
            (
                requirement(key="a/b/c", operator="Exists", values=None),
                "key 'a/b/c': must not contain more than one slash",
            ),
        ],
    )
    def test_requirement_rules(self, req: dict[str, Any], message: str) -> None:
        issue = only_error(overlay_errors(overlay(requirements=[requirement(), req])))
        assert (format_path(issue.path), issue.message) == ("spec.requirements[1]", message)

    def test_unknown_operator(self) -> None:
        issue = only_error(overlay_errors(overlay(requirements=[requirement(operator="Like")])))
        assert format_path(issue.path) == "spec.requirements[0].operator"
        assert issue.value == "Like"

    def test_at_most_100_requirements(self) -> None:
        reqs = [requirement(key=f"k{i}", operator="Exists", values=None) for i in range(101)]
        load_overlay_ok(overlay(requirements=reqs[:100]))
        issue = only_error(overlay_errors(overlay(requirements=reqs)))
        assert (format_path(issue.path), issue.message) == (
            "spec.requirements",
            "List should have at most 100 items after validation, not 101",
        )


class TestCapacity:
    @pytest.mark.parametrize("name", ["cpu", "memory", "ephemeral-storage", "pods"])
    def test_restricted_capacity_names(self, name: str) -> None:
        issue = only_error(overlay_errors(overlay(capacity={name: "1"})))
        assert (format_path(issue.path), issue.message) == (
            "spec.capacity",
            f"capacity {name!r} is restricted: only extended resources (domain/name) may be set",
        )

    def test_capacity_must_be_a_quantity(self) -> None:
        issue = only_error(overlay_errors(overlay(capacity={f"{DRIVER}/device": "eight"})))
        assert format_path(issue.path) == f"spec.capacity['{DRIVER}/device']"
        assert issue.message == "'eight' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)"

    def test_capacity_that_disagrees_with_the_templates_warns(self) -> None:
        doc = overlay(capacity={f"{DRIVER}/device": "8"}, templates=[template(DRIVER, [device("gpu", count=2)])])
        rule, issues = load_overlay(doc)
        assert rule is not None
        warning = only_warning(issues)
        assert format_path(warning.path) == f"spec.capacity['{DRIVER}/device']"
        assert warning.message == (
            f"says 8 but the templates for driver {DRIVER!r} define 2 device(s); Karpenter will plan with the "
            "capacity while the scheduler sees the devices"
        )
        assert (warning.value, warning.fix) == ("8", "set it to 2 or change the templates")

    @pytest.mark.parametrize("value", ["2", 2, "2000m"])
    def test_capacity_that_agrees_with_the_templates_is_silent(self, value: Any) -> None:
        doc = overlay(capacity={f"{DRIVER}/device": value}, templates=[template(DRIVER, [device("gpu", count=2)])])
        assert load_overlay(doc)[1] == []

    def test_capacity_for_another_domain_is_not_compared(self) -> None:
        doc = overlay(capacity={"example.com/widgets": "99"}, templates=[template(DRIVER, [device("gpu", count=2)])])
        assert load_overlay(doc)[1] == []


def test_every_bad_capacity_name_is_reported_not_only_the_first() -> None:
    doc = overlay(capacity={"cpu": "1", "bad name": "1", "pods": "1"})
    (issue,) = overlay_errors(doc)
    assert issue.message == (
        "capacity 'cpu' is restricted: only extended resources (domain/name) may be set; capacity name 'bad name': "
        + issue.message.split("capacity name 'bad name': ")[1].split("; ")[0]
        + "; capacity 'pods' is restricted: only extended resources (domain/name) may be set"
    )
