"""Version-aware checking: each supported minor's gates and limits, the refusals that name the
version, the field and the gate, the probe's reading of an apiserver's answer, and the support table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from dra_kwok.core import versions
from dra_kwok.core.issues import errors, format_path
from dra_kwok.core.overlay import load_overlay
from dra_kwok.core.versions import (
    BINDING,
    CONSUMABLE,
    EXTENDED,
    PARTITIONABLE,
    TAINTS,
    VersionError,
    parse_gates,
    parse_version,
    probe_kept,
    probe_specs,
    probed_target,
    support_table_markdown,
    target,
)

from .builders import device, overlay, template

DOCS = Path(__file__).resolve().parents[3] / "docs" / "versions.md"
DEV0 = "spec.resourceSlices[0].spec.devices[0]"


def overlay_errors(spec_devices: list[dict[str, Any]], at: versions.Target, **spec: Any) -> list[str]:
    rule, issues = load_overlay(overlay("o", templates=[template(devices=spec_devices, **spec)]), at)
    errs = errors(issues)
    assert (rule is None) == bool(errs)
    return [f"{format_path(i.path)}: {i.message}; fix: {i.fix}" for i in errs]


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "minor", "shown"),
        [("1.34.4", 34, "1.34.4"), ("v1.37.2", 37, "1.37.2"), ("1.35", 35, "1.35"), ("v1.36.3-gke.100", 36, "1.36.3")],
    )
    def test_versions(self, text: str, minor: int, shown: str) -> None:
        assert parse_version(text) == (minor, shown)

    @pytest.mark.parametrize(
        ("text", "says"),
        [("1.33.5", "1.33 is not supported: dra-kwok-driver supports 1.34 to 1.37"), ("latest", "not a Kubernetes")],
    )
    def test_unsupported_versions_say_what_is(self, text: str, says: str) -> None:
        with pytest.raises(VersionError, match=says):
            parse_version(text)

    def test_gates(self) -> None:
        assert parse_gates("DRADeviceTaints=true, DRAPartitionableDevices=False") == {
            "DRADeviceTaints": True,
            "DRAPartitionableDevices": False,
        }
        with pytest.raises(VersionError, match="write Name=true or Name=false"):
            parse_gates("DRADeviceTaints")
        with pytest.raises(VersionError, match="unknown DRA feature gate 'DRADeviceTaint'"):
            parse_gates("DRADeviceTaint=true")
        with pytest.raises(VersionError, match=r"Kubernetes 1\.34 has no feature gate DRADeviceTaintRules"):
            target("1.34", {"DRADeviceTaintRules": True})


class TestDefaults:
    @pytest.mark.parametrize(("minor", "on"), [(34, False), (35, False), (36, True), (37, True)])
    def test_slice_features_are_on_by_default_from_1_36(self, minor: int, on: bool) -> None:
        t = target(minor)
        assert [t.has(f) for f in (TAINTS, PARTITIONABLE, CONSUMABLE, BINDING, EXTENDED)] == [on] * 5

    def test_binding_conditions_need_both_gates(self) -> None:
        assert not target("1.36", {"DRAResourceClaimDeviceStatus": False}).has(BINDING)
        assert target("1.34", {"DRADeviceBindingConditions": True}).has(BINDING)

    def test_1_34_layout_and_limits(self) -> None:
        limits = target(34).limits
        assert limits.counters_with_devices and limits.max_taints == 4
        assert limits.taint_effects == ("NoSchedule", "NoExecute")
        assert not target(35).limits.counters_with_devices and target(35).limits.max_taints == 16


class TestRefusals:
    def test_a_gate_that_is_off_is_named_with_the_version_and_the_fix(self) -> None:
        taint = [{"key": "example.com/broken", "effect": "NoSchedule"}]
        (err,) = overlay_errors([device(taints=taint)], target("1.34.4"))
        assert err == (
            f"{DEV0}.taints: Kubernetes 1.34.4 drops device taints unless feature gate DRADeviceTaints "
            "(alpha, off by default) is enabled; fix: enable DRADeviceTaints on kube-apiserver, kube-scheduler "
            "and kube-controller-manager (--feature-gates=DRADeviceTaints=true), or remove devices[].taints"
        )
        assert overlay_errors([device(taints=taint)], target("1.34", {"DRADeviceTaints": True})) == []
        assert overlay_errors([device(taints=taint)], target("1.36")) == []

    def test_effect_none_is_refused_on_1_34_only(self) -> None:
        none = [{"key": "example.com/info", "effect": "None"}]
        (err,) = overlay_errors([device(taints=none)], target("1.34", {"DRADeviceTaints": True}))
        assert err == (
            f"{DEV0}.taints[0].effect: Kubernetes 1.34 knows only the taint effects NoSchedule and NoExecute "
            "(effect None arrived in 1.35); fix: use NoSchedule or NoExecute, or Kubernetes 1.35 or later"
        )
        assert overlay_errors([device(taints=none)], target("1.35", {"DRADeviceTaints": True})) == []

    def test_counters_binding_and_consumable_capacity_off_on_1_35(self) -> None:
        uses = [{"counterSet": "mem", "counters": {"memory": "1Gi"}}]
        devs = [
            device("part", consumesCounters=uses),
            device("fabric", bindsToNode=True, bindingConditions=["a.example.com/ready"],
                   bindingFailureConditions=["a.example.com/failed"]),
            device("shared", allowMultipleAllocations=True),
        ]  # fmt: skip
        sets = [{"name": "mem", "counters": {"memory": "4Gi"}}]
        errs = overlay_errors(devs, target("1.35"), sharedCounters=sets)
        assert [e.split(":")[0] for e in errs] == [
            "spec.resourceSlices[0].spec.sharedCounters[0]",
            f"{DEV0}.consumesCounters",
            "spec.resourceSlices[0].spec.devices[1].bindingConditions",
            "spec.resourceSlices[0].spec.devices[2].allowMultipleAllocations",
        ]
        assert "DRAPartitionableDevices (alpha, off by default)" in errs[0]
        assert "--feature-gates=DRADeviceBindingConditions=true" in errs[2]
        assert "DRAConsumableCapacity" in errs[3]
        gates = {"DRAPartitionableDevices": True, "DRADeviceBindingConditions": True, "DRAConsumableCapacity": True}
        assert overlay_errors(devs, target("1.35", gates), sharedCounters=sets) == []

    def test_a_gate_switched_off_says_it_is_on_by_default(self) -> None:
        (err,) = overlay_errors(
            [device(taints=[{"key": "k", "effect": "NoExecute"}])], target("1.36", {"DRADeviceTaints": False})
        )
        assert "DRADeviceTaints (beta, on by default, switched off)" in err

    def test_on_1_34_a_pool_with_counters_must_fit_one_slice(self) -> None:
        on = target("1.34", {"DRAPartitionableDevices": True})
        sets = [{"name": "mem", "counters": {"memory": "400Gi"}}]
        uses = [{"counterSet": "mem", "counters": {"memory": "1Gi"}}]
        assert overlay_errors([device("p", count=128, consumesCounters=uses)], on, sharedCounters=sets) == []
        (err,) = overlay_errors([device("p", count=129, consumesCounters=uses)], on, sharedCounters=sets)
        assert "a pool with sharedCounters is one slice of at most 128 devices; this one has 129" in err
        assert overlay_errors([device("p", count=129, consumesCounters=uses)], target("1.35", {
            "DRAPartitionableDevices": True}), sharedCounters=sets) == []  # fmt: skip

    def test_extended_resource_names(self) -> None:
        from dra_kwok.core.validation import extended_resource_issues

        (issue,) = extended_resource_issues(("spec", "extendedResourceName"), target("1.35"))
        assert "Kubernetes 1.35 drops extended resources backed by devices" in issue.message
        assert extended_resource_issues(("spec",), target("1.36")) == []


class TestProbe:
    def test_1_34_probes_counters_with_a_device_and_later_versions_alone(self) -> None:
        assert sorted(probe_specs(34)["partitionable"]) == ["devices", "sharedCounters"]
        assert sorted(probe_specs(35)["partitionable"]) == ["sharedCounters"]

    def test_what_the_apiserver_dropped_turns_the_feature_off(self) -> None:
        kept = {"devices": [{"name": "probe", "taints": [{"key": "k", "effect": "NoSchedule"}]}]}
        dropped: dict[str, Any] = {"devices": [{"name": "probe"}]}
        assert probe_kept("taints", kept) and not probe_kept("taints", dropped)
        assert probe_kept("partitionable", {"sharedCounters": [{"name": "probe"}]})
        learned = probed_target("1.37.2", {"taints": False, "binding": True})
        assert not learned.has(TAINTS) and learned.has(BINDING) and learned.has(PARTITIONABLE)
        (err,) = overlay_errors([device(taints=[{"key": "k", "effect": "NoSchedule"}])], learned)
        assert "Kubernetes 1.37.2 drops device taints unless feature gate DRADeviceTaints" in err
        assert "(as the apiserver answered)" in err

    def test_a_kept_probe_turns_an_alpha_feature_on(self) -> None:
        learned = probed_target("1.34.4", {"taints": True, "partitionable": True})
        assert learned.has(TAINTS) and learned.has(PARTITIONABLE) and not learned.has(BINDING)
        assert learned.how == "the apiserver"


def test_docs_support_table_is_the_generated_one() -> None:
    """docs/versions.md shows the table built from the data the controller checks with."""
    text = DOCS.read_text()
    begin, end = "<!-- support-table:begin -->\n", "<!-- support-table:end -->"
    assert begin in text and end in text, "docs/versions.md lost its support-table markers"
    shown = text.split(begin, 1)[1].split(end, 1)[0]
    assert shown == support_table_markdown(), "replace it with the output of `dra-kwok versions`"


def test_the_default_target_is_the_newest_supported_minor() -> None:
    assert versions.DEFAULT_TARGET.minor == versions.NEWEST == 37
    assert versions.RELEASES[versions.NEWEST] == "1.37.2"


class TestAlphaFieldsOf1_37:
    """List attributes (1.36+), compatibility groups, partition types and optional node
    operations (1.37): refused with the gate to enable while it is off, published when it is on."""

    ALL_ON: ClassVar[dict[str, bool]] = {
        "DRAListTypeAttributes": True,
        "DRADeviceCompatibilityGroups": True,
        "DRAPartitionableDevicesType": True,
        "DRAOptionalNodeOperations": True,
    }
    SETS: ClassVar[list[dict[str, Any]]] = [{"name": "mem", "counters": {"memory": "8Gi"}}]

    def devices(self) -> list[dict[str, Any]]:
        use = [{"counterSet": "mem", "counters": {"memory": "4Gi"}, "compatibilityGroups": ["half"]}]
        return [
            device("half", count=2, consumesCounters=use, attributes={"gpu.example.com/profile": "half"}),
            device("nic", attributes={"ips": {"strings": ["10.0.0.1", "10.0.0.2"]}}),
        ]

    def spec(self) -> dict[str, Any]:
        return {
            "sharedCounters": self.SETS,
            "partitionTypeAttribute": "gpu.example.com/profile",
            "skipNodeOperations": ["*"],
        }

    def test_refused_while_their_gates_are_off(self) -> None:
        errs = overlay_errors(self.devices(), target("1.37"), **self.spec())
        assert [e.split(":")[0] for e in errs] == [
            "spec.resourceSlices[0].spec.devices[0].consumesCounters[0].compatibilityGroups",
            "spec.resourceSlices[0].spec.devices[1].attributes.ips",
            "spec.resourceSlices[0].spec.skipNodeOperations",
            "spec.resourceSlices[0].spec.partitionTypeAttribute",
        ]
        assert "DRADeviceCompatibilityGroups (alpha, off by default)" in errs[0]
        assert "--feature-gates=DRAListTypeAttributes=true" in errs[1]
        (err,) = overlay_errors([self.devices()[1]], target("1.35"))
        assert "Kubernetes 1.35 has no list attributes (new in 1.36)" in err

    def test_published_when_their_gates_are_on(self) -> None:
        on = target("1.37", self.ALL_ON)
        rule, issues = load_overlay(overlay("o", templates=[template(devices=self.devices(), **self.spec())]), on)
        assert rule is not None, [str(i) for i in issues]
        from dra_kwok.core.render import NodeRef, render, slice_manifest
        from dra_kwok.core.resolve import Resolution
        from tests.api_rules import node_problems

        out = render(NodeRef("n1", "uid-1"), Resolution(pools=rule.pools), on.limits)
        specs = [s.content for s in out.all_slices()]
        assert specs[0] == {"sharedCounters": [{"name": "mem", "counters": {"memory": {"value": "8Gi"}}}],
                            "skipNodeOperations": ["*"]}  # fmt: skip
        assert specs[1]["partitionTypeAttribute"] == "gpu.example.com/profile"
        assert specs[1]["skipNodeOperations"] == ["*"]
        assert specs[1]["devices"][0]["consumesCounters"][0]["compatibilityGroups"] == ["half"]
        assert specs[1]["devices"][2]["attributes"]["ips"] == {"strings": ["10.0.0.1", "10.0.0.2"]}
        assert node_problems([slice_manifest(s, out.node, 1) for s in out.all_slices()]) == []

    def test_a_partition_type_needs_the_attribute_on_every_consumer(self) -> None:
        devs = self.devices()
        devs[0]["attributes"] = {}
        errs = overlay_errors(devs, target("1.37", self.ALL_ON), **self.spec())
        assert errs == [
            "spec.resourceSlices[0].spec.devices[0].attributes: a device that consumes counters needs the partition "
            "type attribute 'gpu.example.com/profile' as a string; fix: add attributes: "
            "{gpu.example.com/profile: {string: <type>}}"
        ]

    def test_at_most_48_attribute_values_per_device(self) -> None:
        many = device("nic", attributes={"a": {"ints": list(range(40))}, "b": {"ints": list(range(9))}})
        (err,) = overlay_errors([many], target("1.37", self.ALL_ON))
        assert "49 attribute values (list items counted one by one); at most 48 per device on Kubernetes 1.37" in err

    def test_the_1_37_probes_cover_the_alpha_fields(self) -> None:
        assert set(probe_specs(37)) == {
            "taints", "partitionable", "consumable", "binding", "list-attributes", "compatibility-groups",
            "partition-type", "skip-node-operations",
        }  # fmt: skip
        assert "partition-type" not in probe_specs(36) and "list-attributes" in probe_specs(36)
        learned = probed_target("1.37.2", {"list-attributes": True})
        assert learned.has(versions.LIST_ATTRIBUTES) and not learned.has(versions.SKIP_NODE_OPERATIONS)
