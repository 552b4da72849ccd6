"""Karpenter NodeOverlays derived from DRANodeOverlays: which DeviceClasses count which devices,
and the NodeOverlay's requirements, weight, capacity and owner."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.node_overlays import (
    IMPLICIT_PREFIX,
    KARPENTER_WEIGHT_MAX,
    LABEL_SOURCE,
    CountingClass,
    counting_class,
    derive,
    node_overlay_name,
)

from .builders import DRIVER, OTHER_DRIVER, device, load_overlay_ok, overlay, requirement, template

RESOURCE = "example.com/gpu"


def device_class(name: str, *expressions: str, extended: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selectors": [{"cel": {"expression": e}} for e in expressions]}
    if extended:
        spec["extendedResourceName"] = extended
    return {"metadata": {"name": name}, "spec": spec}


def driver_class(name: str = DRIVER, extended: str | None = RESOURCE, implicit: bool = True) -> CountingClass:
    return counting_class(device_class(name, f'device.driver == "{DRIVER}"', extended=extended), implicit)


class TestCountingClass:
    def test_a_driver_selector_counts_that_drivers_devices_under_both_names(self) -> None:
        cls = driver_class()
        assert cls.driver == DRIVER and cls.attributes == ()
        assert cls.resources == (RESOURCE, IMPLICIT_PREFIX + DRIVER)

    def test_without_the_extended_resource_gate_only_the_explicit_name_counts(self) -> None:
        assert driver_class(implicit=False).resources == (RESOURCE,)
        assert driver_class(extended=None, implicit=False).resources == ()

    @pytest.mark.parametrize(
        "expression, attribute",
        [
            ("device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'", "gpu"),
            ('(device.driver == "gpu.nvidia.com") && (device.attributes["gpu.nvidia.com"].type == "gpu")', "gpu"),
            ("device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].mig == true", True),
            ("device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].index == 3", 3),
        ],
    )
    def test_conjunctions_of_driver_and_attribute_equality_are_read(self, expression: str, attribute: Any) -> None:
        cls = counting_class(device_class("c", expression), True)
        assert cls.driver == "gpu.nvidia.com"
        [(name, value)] = cls.attributes
        assert name == f"gpu.nvidia.com/{name.rpartition('/')[2]}" and value == attribute
        assert type(value) is type(attribute)

    @pytest.mark.parametrize(
        "expression",
        [
            f'device.driver == "{DRIVER}" || device.driver == "{OTHER_DRIVER}"',
            f'device.driver == "{DRIVER}" && device.capacity["{DRIVER}"].memory.compareTo(quantity("40Gi")) >= 0',
            'device.driver.startsWith("gpu")',
            f'device.driver == "{DRIVER}" && device.driver == "{OTHER_DRIVER}"',
        ],
    )
    def test_anything_else_is_not_counted_and_says_which_expression(self, expression: str) -> None:
        cls = counting_class(device_class("c", expression, extended=RESOURCE), True)
        assert cls.driver is None and cls.unreadable == expression

    def test_a_class_without_a_driver_selector_is_not_counted(self) -> None:
        cls = counting_class(device_class("any", extended=RESOURCE), True)
        assert cls.driver is None


def rule(*templates: Any, weight: int | None = 10, requirements: Any = None) -> Any:
    return load_overlay_ok(overlay("h100", weight=weight, templates=list(templates), requirements=requirements))


class TestDerive:
    def test_the_device_count_becomes_capacity_with_the_overlays_requirements_and_weight(self) -> None:
        r = rule(template(DRIVER, [device("gpu", count=8)]), requirements=[requirement(values=["p5.48xlarge"])])
        derived, notes = derive(r, "uid-1", [driver_class()])
        assert notes == [] and derived is not None
        manifest = derived.manifest("managed-by", "me")
        assert manifest["apiVersion"] == "karpenter.sh/v1alpha1" and manifest["kind"] == "NodeOverlay"
        assert manifest["metadata"]["name"] == node_overlay_name("h100") == "dra-kwok-h100"
        assert manifest["metadata"]["labels"] == {"managed-by": "me", LABEL_SOURCE: "h100"}
        assert manifest["metadata"]["ownerReferences"] == [
            {"apiVersion": "test.karpenter.sh/v1alpha1", "kind": "DRANodeOverlay", "name": "h100", "uid": "uid-1"}
        ]
        assert manifest["spec"] == {
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]}],
            "capacity": {IMPLICIT_PREFIX + DRIVER: "8", RESOURCE: "8"},
            "weight": 10,
        }

    def test_attribute_selectors_count_only_matching_devices(self) -> None:
        r = rule(
            template(
                DRIVER,
                [
                    device("gpu", count=2, attributes={"type": {"string": "gpu"}}),
                    device("mig", count=7, attributes={f"{DRIVER}/type": {"string": "mig"}}),
                    device("plain"),
                ],
            )
        )
        gpu = counting_class(
            device_class(
                "g", f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == 'gpu'", extended="x.io/gpu"
            ),
            False,
        )
        mig = counting_class(
            device_class(
                "m", f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == 'mig'", extended="x.io/mig"
            ),
            False,
        )
        derived, _ = derive(r, "u", [gpu, mig])
        assert derived is not None and dict(derived.capacity) == {"x.io/gpu": "2", "x.io/mig": "7"}

    def test_other_drivers_and_classes_without_resources_count_nothing(self) -> None:
        r = rule(template(OTHER_DRIVER, [device("fpga", count=2)]))
        assert derive(r, "u", [driver_class()]) == (None, [])
        r = rule(template(DRIVER, [device("gpu")]))
        assert derive(r, "u", [driver_class(extended=None, implicit=False)]) == (None, [])

    def test_an_unreadable_class_of_the_overlays_driver_is_noted_with_the_fix(self) -> None:
        expression = f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].memory > 1'
        cls = counting_class(device_class("big", expression, extended=RESOURCE), True)
        derived, [note] = derive(rule(template(DRIVER, [device("gpu")])), "u", [cls])
        assert derived is None
        assert "DeviceClass big" in note and expression in note and RESOURCE in note and "fix:" in note

    def test_two_classes_naming_one_resource_count_once(self) -> None:
        r = rule(template(DRIVER, [device("gpu", count=4)]))
        derived, _ = derive(r, "u", [driver_class("a", implicit=False), driver_class("b", implicit=False)])
        assert derived is not None and dict(derived.capacity) == {RESOURCE: "4"}

    def test_weight_zero_is_left_out_as_karpenter_wants_1_to_10000(self) -> None:
        r0 = rule(template(DRIVER, [device("gpu")]), weight=None)
        d0, _ = derive(r0, "u", [driver_class()])
        assert d0 is not None and "weight" not in d0.manifest("l", "m")["spec"]
        top = rule(template(DRIVER, [device("gpu")]), weight=KARPENTER_WEIGHT_MAX)
        d1, _ = derive(top, "u", [driver_class()])
        assert d1 is not None and d1.manifest("l", "m")["spec"]["weight"] == KARPENTER_WEIGHT_MAX

    def test_requirements_without_values_keep_no_values_field(self) -> None:
        r = rule(template(DRIVER, [device("gpu")]), requirements=[requirement("gpu", "Exists", values=None)])
        derived, _ = derive(r, "u", [driver_class()])
        assert derived is not None
        assert derived.manifest("l", "m")["spec"]["requirements"] == [{"key": "gpu", "operator": "Exists"}]

    def test_the_name_is_cut_to_a_valid_length(self) -> None:
        name = node_overlay_name("x" * 260)
        assert len(name) == 253 and name.startswith("dra-kwok-")

    def test_capacity_written_in_the_dranodeoverlay_is_told_too_and_wins_over_a_count(self) -> None:
        doc = overlay("h100", templates=[template(DRIVER, [device("gpu", count=8)])])
        doc["spec"]["capacity"] = {RESOURCE: "6", "example.com/nic": "2"}
        derived, _ = derive(load_overlay_ok(doc), "u", [driver_class(implicit=False)])
        assert derived is not None and dict(derived.capacity) == {RESOURCE: "6", "example.com/nic": "2"}
        # And with no DeviceClass at all (the seed's Case 1, written by hand), it is all there is.
        derived, _ = derive(load_overlay_ok(doc), "u", [])
        assert derived is not None and dict(derived.capacity) == {RESOURCE: "6", "example.com/nic": "2"}
