"""config.yaml (the ConfigMap fallback): parsing, every validation rule, and the Issue each one gives."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.config import (
    EMPTY_CONFIG,
    FallbackConfig,
    config_text_from_configmap,
    load_config_data,
    load_config_text,
    parse_config_yaml,
    parse_yaml,
)
from dra_kwok.core.issues import InvalidConfiguration, Issue, errors, format_path
from dra_kwok.core.validation import Source
from dra_kwok.core.versions import target

from .builders import (
    DRIVER,
    INSTANCE_TYPE,
    OTHER_DRIVER,
    config,
    config_errors,
    config_with_devices,
    device,
    load_config_ok,
    mapping,
    only_error,
    only_warning,
    paths,
)

DEV0 = "mappings[0].resourceSlice.devices[0]"

PARTITIONABLE_ON = {"DRAPartitionableDevices": True}


def counters(*sets: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "counters": values} for name, values in sets]


class TestLoading:
    def test_a_minimal_config_becomes_one_rule(self) -> None:
        cfg = load_config_ok(config(mapping("gpus", devices=[device("gpu", count=2)])))
        (rule,) = cfg.mappings
        assert rule.name == "gpus"
        assert rule.selector.match_labels == {INSTANCE_TYPE: "gpu-8x"}
        assert rule.pool.driver == DRIVER
        assert rule.pool.source == Source("mapping", "gpus")
        assert str(rule.pool.source) == "mapping/gpus"
        assert rule.pool.device_count == 2
        assert [d.name for d in rule.pool.devices] == ["gpu"]
        assert cfg.drivers == frozenset({DRIVER})

    def test_mappings_keep_file_order(self) -> None:
        cfg = load_config_ok(config(*(mapping(name) for name in ["z", "a", "m"])))
        assert [m.name for m in cfg.mappings] == ["z", "a", "m"]

    def test_a_mapping_driver_overrides_the_top_level_driver(self) -> None:
        cfg = load_config_ok(config(mapping("a"), mapping("b", driver=OTHER_DRIVER)))
        assert [m.pool.driver for m in cfg.mappings] == [DRIVER, OTHER_DRIVER]
        assert cfg.drivers == frozenset({DRIVER, OTHER_DRIVER})

    def test_without_any_driver_the_mapping_is_rejected(self) -> None:
        issue = only_error(load_config_data(config(driver=None))[1])
        assert format_path(issue.path) == "mappings[0].resourceSlice.driver"
        assert issue.message == "no driver: set the top-level 'driver' or resourceSlice.driver"

    def test_a_mapping_driver_alone_is_enough(self) -> None:
        cfg = load_config_ok(config(mapping(driver=OTHER_DRIVER), driver=None))
        assert cfg.mappings[0].pool.driver == OTHER_DRIVER

    def test_an_empty_document_means_no_mappings_with_a_warning(self) -> None:
        for text in ["", "# only a comment\n", "null\n"]:
            cfg, issues = load_config_text(text)
            assert cfg is EMPTY_CONFIG
            assert cfg.mappings == ()
            warning = only_warning(issues)
            assert (format_path(warning.path), warning.message) == (
                "<root>",
                "the configuration is empty: no fallback mappings",
            )

    def test_yaml_text_round_trip_keeps_ints_and_bools_typed(self) -> None:
        text = """
driver: gpu.example.com
mappings:
- name: gpus
  nodeSelector: {matchLabels: {gpus: 8}}
  resourceSlice:
    devices:
    - name: gpu
      attributes: {index: 0, nvlink: true, quoted: "true", type: nvidia-tesla-t4, memory: 16Gi}
"""
        cfg, issues = load_config_text(text)
        assert issues == []
        assert cfg is not None
        attrs = {k: v.to_api() for k, v in cfg.mappings[0].pool.devices[0].attributes.items()}
        assert attrs == {
            "index": {"int": 0},
            "nvlink": {"bool": True},
            "quoted": {"string": "true"},
            "type": {"string": "nvidia-tesla-t4"},
            "memory": {"string": "16Gi"},
        }
        assert cfg.mappings[0].selector.match_labels == {"gpus": "8"}

    def test_invalid_configuration_exception_lists_every_error(self) -> None:
        issues = config_errors(config(driver="Bad/Driver"))
        exc = InvalidConfiguration("configmap karpenter/dra-kwok-configmap", issues)
        assert exc.issues == issues
        assert str(exc).startswith(
            "configmap karpenter/dra-kwok-configmap: 1 error(s):\n  - driver: invalid driver name"
        )


class TestYamlAndShapes:
    @pytest.mark.parametrize(
        ("text", "where", "problem"),
        [
            # libyaml's words (the loader is PyYAML's C one)
            (
                "driver: gpu.example.com\nmappings:\n  - name: [unclosed\n",
                "line 4, column 1",
                "did not find expected ','",
            ),
            ("driver: a\n\tmappings: []\n", "line 2, column 1", "found a tab character that violates indentation"),
            ("a: b: c\n", "line 1, column 5", "mapping values are not allowed in this context"),
        ],
    )
    def test_broken_yaml_is_one_error_naming_line_and_column(self, text: str, where: str, problem: str) -> None:
        cfg, issues = load_config_text(text)
        assert cfg is None
        issue = only_error(issues)
        assert issue.path == ()
        assert issue.message.startswith(f"config.yaml is not valid YAML at {where}: {problem}")
        assert issue.fix == "fix the YAML syntax"

    def test_a_key_written_twice_is_an_error_naming_both_lines(self) -> None:
        text = (
            "driver: gpu.example.com\n"
            "mappings:\n"
            "  - name: a\n"
            "    nodeSelector: {matchLabels: {x: y}}\n"
            "    resourceSlice: {devices: [{name: gpu}]}\n"
            "mappings: []\n"
        )
        cfg, issues = load_config_text(text)
        assert cfg is None, "the second `mappings:` would silently drop the first"
        issue = only_error(issues)
        assert issue.path == ("mappings",)
        assert issue.message == "is written twice in config.yaml (lines 2 and 6); YAML would keep only the second"
        assert issue.fix == "merge the two into one key"

    def test_a_nested_duplicate_is_located_by_its_path(self) -> None:
        text = "driver: d.example.com\nmappings:\n  - name: a\n    name: b\n"
        cfg, issues = load_config_text(text)
        assert cfg is None
        assert [(i.path, i.message.split(" (")[0]) for i in issues] == [
            (("mappings", 0, "name"), "is written twice in config.yaml")
        ]

    def test_merge_keys_and_aliases_are_not_duplicates(self) -> None:
        text = (
            "driver: gpu.example.com\n"
            "mappings:\n"
            "  - &m {name: a, nodeSelector: {matchLabels: {x: y}}, resourceSlice: {devices: [{name: gpu}]}}\n"
            "  - <<: *m\n"
            "    <<: {}\n"
            "    name: b\n"
        )
        cfg, issues = load_config_text(text)
        assert cfg is not None and [m.name for m in cfg.mappings] == ["a", "b"], issues

    def test_absurd_nesting_is_an_error_not_a_crash(self) -> None:
        cfg, issues = load_config_text("[" * 100_000)
        assert cfg is None
        assert only_error(issues).message == "config.yaml is nested too deeply to parse"

    @pytest.mark.parametrize(("doc", "kind"), [([1, 2], "list"), ("text", "str"), (3, "int")])
    def test_the_document_must_be_a_mapping(self, doc: Any, kind: str) -> None:
        issue = only_error(config_errors(doc))
        assert (issue.path, issue.message, issue.value) == (
            (),
            "config.yaml must be a mapping with 'driver' and 'mappings'",
            kind,
        )

    @pytest.mark.parametrize(
        ("doc", "path", "message"),
        [
            ({"driver": DRIVER, "mappings": {"a": 1}}, "mappings", "must be a list"),
            ({"driver": DRIVER, "mappings": ["x"]}, "mappings[0]", "must be a mapping (key: value)"),
            (
                config(mapping() | {"nodeSelector": "type=gpu"}),
                "mappings[0].nodeSelector",
                "must be a mapping (key: value)",
            ),
            (
                config(mapping() | {"resourceSlice": {"devices": {"name": "gpu"}}}),
                "mappings[0].resourceSlice.devices",
                "must be a list",
            ),
            (config_with_devices(device(attributes=["model"])), f"{DEV0}.attributes", "must be a mapping (key: value)"),
            (config_with_devices(device(taints={"key": "k"})), f"{DEV0}.taints", "must be a list"),
            (
                config_with_devices(device(attributes={"model": None})),
                f"{DEV0}.attributes.model",
                "must be a mapping (key: value)",
            ),
            ({"driver": ["gpu.example.com"]}, "driver", "Input should be a valid string"),
        ],
    )
    def test_wrong_shapes_are_reported_where_they_are(self, doc: Any, path: str, message: str) -> None:
        issue = only_error(config_errors(doc))
        assert (format_path(issue.path), issue.message) == (path, message)

    def test_missing_required_fields_are_each_reported(self) -> None:
        issues = config_errors({"driver": DRIVER, "mappings": [{}]})
        assert [(format_path(i.path), i.message) for i in issues] == [
            ("mappings[0].name", "is required"),
            ("mappings[0].nodeSelector", "is required"),
            ("mappings[0].resourceSlice", "is required"),
        ]

    def test_non_string_keys_are_an_error_not_a_crash(self) -> None:
        issue = only_error(config_errors({1: "x"}))
        assert issue.path == (1,)

    def test_unknown_keys_are_errors_and_one_does_not_hide_the_others(self) -> None:
        """`nodeSelectr` makes `nodeSelector` missing, which stops validation: the other typos
        must be reported all the same, each with the nearest field."""
        doc = config(mapping(devices=[device(cont=2, atributes={"model": "x"})]))
        doc["mappings"][0]["nodeSelectr"] = doc["mappings"][0].pop("nodeSelector")
        doc["mapings"] = []
        cfg, issues = load_config_data(doc)
        assert cfg is None
        assert sorted((format_path(i.path), i.message, i.fix) for i in issues) == [
            ("mapings", "unknown field", "did you mean 'mappings'?"),
            ("mappings[0].nodeSelector", "is required", None),
            ("mappings[0].nodeSelectr", "unknown field", "did you mean 'nodeSelector'?"),
            (f"{DEV0}.atributes", "unknown field", "did you mean 'attributes'?"),
            (f"{DEV0}.cont", "unknown field", "did you mean 'count'?"),
        ]
        assert all(i.is_error for i in issues)

    def test_an_unknown_key_without_a_near_one_lists_the_known_fields(self) -> None:
        issue = only_error(config_errors(config() | {"zzz": 1}))
        assert (format_path(issue.path), issue.fix) == ("zzz", "known fields here: driver, mappings")


class TestDriverNames:
    def test_the_seed_driver_name_is_rejected_with_a_fix(self) -> None:
        issue = only_error(config_errors(config(driver="karpenter.sh/dra-kwok-driver")))
        assert format_path(issue.path) == "driver"
        assert issue.message.startswith("invalid driver name: must be a DNS subdomain")
        assert issue.value == "karpenter.sh/dra-kwok-driver"
        assert issue.fix == "use 'karpenter.sh.dra-kwok-driver'"

    def test_a_mapping_driver_is_checked_where_it_is(self) -> None:
        issue = only_error(config_errors(config(mapping(driver="GPU.example.com"))))
        assert format_path(issue.path) == "mappings[0].resourceSlice.driver"
        assert issue.message == (
            "invalid driver name: should be lowercase (the apiserver warns about upper case driver names)"
        )
        assert issue.fix == "use 'gpu.example.com'"

    def test_driver_of_63_characters_is_accepted_and_64_rejected(self) -> None:
        load_config_ok(config(driver="d" * 63))
        issue = only_error(config_errors(config(driver="d" * 64)))
        assert (format_path(issue.path), issue.message) == (
            "driver",
            "invalid driver name: must be at most 63 characters (has 64)",
        )

    def test_driver_names_are_reported_even_when_the_structure_is_wrong(self) -> None:
        doc = config(mapping(driver="bad/driver") | {"nodeSelector": None})
        issues = config_errors(doc)
        assert sorted(paths(issues)) == ["mappings[0].nodeSelector", "mappings[0].resourceSlice.driver"]


class TestDeviceNames:
    def test_device_name_problem_names_the_value(self) -> None:
        issue = only_error(config_errors(config_with_devices(device("GPU_0"))))
        assert format_path(issue.path) == f"{DEV0}.name"
        assert issue.message == (
            "device name 'GPU_0' must be a DNS label: lowercase letters, digits and '-', starting and ending "
            "with a letter or digit"
        )
        assert issue.value == "GPU_0"

    def test_63_characters_accepted_64_rejected(self) -> None:
        load_config_ok(config_with_devices(device("a" * 63)))
        issue = only_error(config_errors(config_with_devices(device("a" * 64))))
        assert format_path(issue.path) == f"{DEV0}.name"
        assert issue.message.endswith("must be at most 63 characters (has 64)")

    def test_expanded_names_must_fit_63(self) -> None:
        load_config_ok(config_with_devices(device("a" * 61, count=10)))
        issue = only_error(config_errors(config_with_devices(device("a" * 61, count=11))))
        assert format_path(issue.path) == DEV0
        assert "the device names reach" in issue.message and "shorten the name" in issue.message

    def test_duplicate_device_names_are_rejected_naming_both_places(self) -> None:
        issue = only_error(config_errors(config_with_devices(device("gpu"), device("fpga"), device("gpu"))))
        assert format_path(issue.path) == "mappings[0].resourceSlice.devices[2].name"
        assert issue.message == (
            "device name 'gpu' is also produced by mappings[0].resourceSlice.devices[0]; names must be unique in a pool"
        )
        assert (issue.value, issue.fix) == ("gpu", "rename one of them")

    def test_names_produced_by_count_collide_with_explicit_names(self) -> None:
        issue = only_error(config_errors(config_with_devices(device("gpu", count=2), device("gpu-1"))))
        assert format_path(issue.path) == "mappings[0].resourceSlice.devices[1].name"
        assert issue.message.startswith("device name 'gpu-1' is also produced by mappings[0].resourceSlice.devices[0]")

    def test_the_same_names_in_different_mappings_are_fine(self) -> None:
        load_config_ok(config(mapping("a"), mapping("b")))

    def test_an_oversized_name_gives_a_short_readable_issue(self) -> None:
        issue = only_error(config_errors(config_with_devices(device("x" * 100_000))))
        assert format_path(issue.path) == f"{DEV0}.name"
        assert "must be at most 63 characters (has 100000)" in issue.message
        assert len(str(issue)) < 400


BIG = "x" * 100_000


@pytest.mark.parametrize(
    ("doc", "path", "problem"),
    [
        (
            config_with_devices(device(attributes={BIG: 1})),
            f"{DEV0}.attributes['{'x' * 76}...]",
            "at most 32 characters",
        ),
        (config_with_devices(device(attributes={"a": BIG})), f"{DEV0}.attributes.a", "(has 100000)"),
        (
            config_with_devices(device(attributes={"v": {"version": BIG}})),
            f"{DEV0}.attributes.v",
            "at most 64 characters",
        ),
        (config_with_devices(device(capacity={"m": BIG})), f"{DEV0}.capacity.m.value", "is not a quantity"),
        (config_with_devices(device(taints=[{"key": BIG, "effect": "None"}])), f"{DEV0}.taints[0].key", "at most 63"),
        (config(mapping(labels={"zone": BIG})), "mappings[0].nodeSelector.matchLabels", "at most 63 characters"),
        (config(driver=BIG), "driver", "at most 63 characters (has 100000)"),
    ],
)
def test_oversized_strings_give_short_issues_at_the_right_place(doc: Any, path: str, problem: str) -> None:
    issue = only_error(config_errors(doc))
    assert format_path(issue.path) == path
    assert problem in issue.message
    assert len(str(issue)) < 500


class TestAttributesAndCapacity:
    @pytest.mark.parametrize(
        ("key", "path_key", "problem", "suggestion"),
        [
            (
                "compute-capability",
                ".compute-capability",
                "must be a C identifier",
                "use 'compute_capability' or 'computeCapability'",
            ),
            (
                "gpu.example.com/compute-capability",
                "['gpu.example.com/compute-capability']",
                "the name after '/' must be a C identifier",
                "use 'gpu.example.com/compute_capability' or 'gpu.example.com/computeCapability'",
            ),
            ("a" * 33, "." + "a" * 33, "must be at most 32 characters (has 33)", "use '" + "a" * 32 + "'"),
            ("a/b/c", "['a/b/c']", "must not contain more than one slash", None),
            (
                f"{'d' * 64}/x",
                f"['{'d' * 64}/x']",
                "the domain before '/' must be at most 63 characters (has 64)",
                None,
            ),
            ("/x", "['/x']", "the domain before '/' must not be empty", "use 'x'"),
        ],
    )
    def test_attribute_and_capacity_keys_are_qualified_names(
        self, key: str, path_key: str, problem: str, suggestion: str | None
    ) -> None:
        for field, value in (("attributes", "x"), ("capacity", "1")):
            issue = only_error(config_errors(config_with_devices(device("gpu", **{field: {key: value}}))))
            assert format_path(issue.path) == f"{DEV0}.{field}{path_key}"
            assert issue.message.startswith(f"invalid name {key!r}: {problem}")
            assert issue.value == key
            if suggestion:
                assert issue.message.endswith(f"; {suggestion}")
            else:
                assert "; use" not in issue.message

    def test_every_bad_key_is_reported_not_just_the_first(self) -> None:
        issues = config_errors(config_with_devices(device(attributes={"a-b": "x", "c-d": "y", "ok": "z"})))
        assert paths(issues) == [f"{DEV0}.attributes.a-b", f"{DEV0}.attributes.c-d"]

    def test_32_attributes_and_capacities_are_accepted(self) -> None:
        attrs = {f"a{i}": i for i in range(20)}
        caps = {f"c{i}": i for i in range(12)}
        load_config_ok(config_with_devices(device(attributes=attrs, capacity=caps)))

    def test_33_attributes_and_capacities_are_rejected(self) -> None:
        attrs = {f"a{i}": i for i in range(20)}
        caps = {f"c{i}": i for i in range(13)}
        issue = only_error(config_errors(config_with_devices(device(attributes=attrs, capacity=caps))))
        assert (format_path(issue.path), issue.message, issue.value) == (
            DEV0,
            "33 attributes and capacities; at most 32 per device",
            33,
        )

    def test_string_attribute_over_64_characters(self) -> None:
        issue = only_error(config_errors(config_with_devices(device(attributes={"uuid": "u" * 65}))))
        assert (format_path(issue.path), issue.message) == (
            f"{DEV0}.attributes.uuid",
            "string values must be at most 64 bytes of UTF-8 (has 65)",
        )
        assert issue.value == "u" * 65

    def test_float_attribute_is_rejected_with_a_hint_to_quote(self) -> None:
        _, issues = load_config_text(
            "driver: gpu.example.com\nmappings:\n- name: m\n  nodeSelector: {}\n  resourceSlice:\n"
            "    devices:\n    - name: gpu\n      attributes: {compute_capability: 7.5}\n"
        )
        issue = only_error(issues)
        assert format_path(issue.path) == f"{DEV0}.attributes.compute_capability"
        assert 'quote it to make a string ("7.5")' in issue.message
        assert issue.value == 7.5

    def test_version_attribute_must_be_semver(self) -> None:
        issue = only_error(config_errors(config_with_devices(device(attributes={"driverVersion": {"version": "9.0"}}))))
        assert format_path(issue.path) == f"{DEV0}.attributes.driverVersion"
        assert issue.message.startswith("version '9.0' must be a semantic version")

    @pytest.mark.parametrize(
        ("capacity", "path", "message"),
        [
            (
                {"memory": "80 Gi"},
                "capacity.memory.value",
                "'80 Gi' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)",
            ),
            (
                {"memory": {"value": "lots"}},
                "capacity.memory.value",
                "'lots' is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)",
            ),
            (
                {"memory": 1.5},
                "capacity.memory.value",
                'a number with a fraction (1.5) must be quoted to be a quantity ("1.5")',
            ),
            ({"memory": {"requestPolicy": {}}}, "capacity.memory.value", "is required"),
        ],
    )
    def test_capacity_values_are_quantities(self, capacity: dict[str, Any], path: str, message: str) -> None:
        issue = only_error(config_errors(config_with_devices(device(capacity=capacity))))
        assert (format_path(issue.path), issue.message) == (f"{DEV0}.{path}", message)

    def test_request_policy_needs_allow_multiple_allocations(self) -> None:
        cap = {"memory": {"value": "8Gi", "requestPolicy": {"default": "1Gi", "validValues": ["1Gi", "2Gi"]}}}
        issue = only_error(config_errors(config_with_devices(device(capacity=cap))))
        assert format_path(issue.path) == f"{DEV0}.capacity.memory.requestPolicy"
        assert issue.message == "requestPolicy needs allowMultipleAllocations: true on the device"
        assert issue.fix == "set allowMultipleAllocations: true or remove requestPolicy"
        issue = only_error(config_errors(config_with_devices(device(capacity=cap, allowMultipleAllocations=False))))
        assert format_path(issue.path) == f"{DEV0}.capacity.memory.requestPolicy"
        load_config_ok(config_with_devices(device(capacity=cap, allowMultipleAllocations=True)))


class TestCounters:
    def test_valid_partitionable_device(self) -> None:
        doc = config_with_devices(
            device("gpu-0-mig", count=2, consumesCounters=[{"counterSet": "gpu-0", "counters": {"memory": "40Gi"}}]),
            sharedCounters=counters(("gpu-0", {"memory": "80Gi"})),
        )
        pool = load_config_ok(doc).mappings[0].pool
        assert [c.name for c in pool.counter_sets] == ["gpu-0"]

    def test_unknown_counter_set(self) -> None:
        doc = config_with_devices(
            device(consumesCounters=[{"counterSet": "gpu-9", "counters": {"memory": "1"}}]),
            sharedCounters=counters(("gpu-0", {"memory": "1"}), ("gpu-1", {"memory": "1"})),
        )
        issue = only_error(config_errors(doc))
        assert format_path(issue.path) == f"{DEV0}.consumesCounters[0].counterSet"
        assert issue.message == "no counter set of this name in the pool's sharedCounters (defined: gpu-0, gpu-1)"
        assert (issue.value, issue.fix) == ("gpu-9", "add it to sharedCounters or correct the name")

    def test_unknown_counter_in_a_known_set(self) -> None:
        doc = config_with_devices(
            device(consumesCounters=[{"counterSet": "gpu-0", "counters": {"cores": "1"}}]),
            sharedCounters=counters(("gpu-0", {"memory": "1", "slices": "7"})),
        )
        issue = only_error(config_errors(doc))
        assert format_path(issue.path) == f"{DEV0}.consumesCounters[0].counters.cores"
        assert issue.message == "counter set 'gpu-0' has no counter of this name (it has: memory, slices)"
        assert issue.value == "cores"

    def test_duplicate_counter_set_names(self) -> None:
        doc = config_with_devices(device(), sharedCounters=counters(("gpu-0", {"a": "1"}), ("gpu-0", {"b": "1"})))
        issue = only_error(config_errors(doc))
        assert format_path(issue.path) == "mappings[0].resourceSlice.sharedCounters[1].name"
        assert (issue.message, issue.value) == ("duplicate counter set name in the pool", "gpu-0")

    def test_at_most_8_counter_sets_from_1_35(self) -> None:
        load_config_ok(
            config_with_devices(device(), sharedCounters=counters(*((f"s{i}", {"c": "1"}) for i in range(8))))
        )
        doc = config_with_devices(device(), sharedCounters=counters(*((f"s{i}", {"c": "1"}) for i in range(9))))
        issue = only_error(config_errors(doc))
        assert format_path(issue.path) == "mappings[0].resourceSlice.sharedCounters[8]"
        assert (issue.message, issue.value) == ("at most 8 counter sets per pool on Kubernetes 1.37", 9)
        only_error(config_errors(doc, target("1.35", PARTITIONABLE_ON)))
        load_config_ok(doc, target("1.34", PARTITIONABLE_ON))  # 1.34 counts counters, not sets

    def test_1_34_allows_32_counters_across_all_sets(self) -> None:
        on_1_34 = target("1.34", PARTITIONABLE_ON)
        many = {f"c{i}": "1" for i in range(17)}
        fits = config_with_devices(device(), sharedCounters=counters(("a", many), ("b", dict(list(many.items())[:15]))))
        load_config_ok(fits, on_1_34)
        too_many = config_with_devices(device(), sharedCounters=counters(("a", many), ("b", many)))
        issue = only_error(config_errors(too_many, on_1_34))
        assert format_path(issue.path) == "mappings[0].resourceSlice.sharedCounters[0]"
        assert issue.message == "at most 32 counters in all counter sets of a pool on Kubernetes 1.34"
        assert issue.value == 34
        load_config_ok(too_many)  # 1.35 and later: 32 per set

    def test_at_most_32_counters_per_set_from_1_35(self) -> None:
        doc = config_with_devices(device(), sharedCounters=counters(("a", {f"c{i}": "1" for i in range(33)})))
        issue = only_error(config_errors(doc))
        assert (format_path(issue.path), issue.message, issue.value) == (
            "mappings[0].resourceSlice.sharedCounters[0].counters",
            "at most 32 counters per counter set on Kubernetes 1.37",
            33,
        )

    def test_at_most_2_consumptions_per_device_and_each_set_once(self) -> None:
        sets = counters(("a", {"c": "1"}), ("b", {"c": "1"}), ("d", {"c": "1"}))
        uses = [{"counterSet": s, "counters": {"c": "1"}} for s in ("a", "b", "d")]
        doc = config_with_devices(device(consumesCounters=uses), sharedCounters=sets)
        issue = only_error(config_errors(doc))
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"{DEV0}.consumesCounters",
            "at most 2 counter sets consumed per device on Kubernetes 1.37",
            3,
        )
        load_config_ok(doc, target("1.34", PARTITIONABLE_ON))  # 1.34: 32 counters in all, any number of sets
        twice = [uses[0], uses[0]]
        issues = config_errors(config_with_devices(device(consumesCounters=twice), sharedCounters=sets))
        assert paths(issues) == [f"{DEV0}.consumesCounters[0].counterSet", f"{DEV0}.consumesCounters[1].counterSet"]
        assert {i.message for i in issues} == {"listed more than once for this device"}

    def test_consuming_more_than_the_set_provides_is_a_warning(self) -> None:
        doc = config_with_devices(
            device(consumesCounters=[{"counterSet": "a", "counters": {"memory": "81Gi"}}]),
            sharedCounters=counters(("a", {"memory": "80Gi"})),
        )
        cfg, issues = load_config_data(doc)
        assert cfg is not None
        warning = only_warning(issues)
        assert format_path(warning.path) == f"{DEV0}.consumesCounters[0].counters.memory.value"
        assert (warning.message, warning.value) == ("consumes more than the set provides (80Gi)", "81Gi")

    @pytest.mark.parametrize(
        ("shared", "path"),
        [
            (counters(("Bad_Set", {"a": "1"})), "mappings[0].resourceSlice.sharedCounters[0].name"),
            (counters(("a", {"Bad_Counter": "1"})), "mappings[0].resourceSlice.sharedCounters[0].counters.Bad_Counter"),
            (counters(("a", {"b": "x y"})), "mappings[0].resourceSlice.sharedCounters[0].counters.b.value"),
        ],
    )
    def test_counter_set_and_counter_names_are_dns_labels(self, shared: list[dict[str, Any]], path: str) -> None:
        issue = only_error(config_errors(config_with_devices(device(), sharedCounters=shared)))
        assert format_path(issue.path) == path


class TestTaintsAndBinding:
    def test_valid_taints(self) -> None:
        taints = [{"key": "example.com/k", "value": "v", "effect": e} for e in ("NoSchedule", "NoExecute", "None")]
        load_config_ok(config_with_devices(device(taints=taints)))

    def test_at_most_16_taints_and_4_on_1_34(self) -> None:
        taints = [{"key": f"k{i}", "effect": "NoSchedule"} for i in range(17)]
        load_config_ok(config_with_devices(device(taints=taints[:16])))
        issue = only_error(config_errors(config_with_devices(device(taints=taints))))
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"{DEV0}.taints",
            "at most 16 taints per device on Kubernetes 1.37",
            17,
        )
        on_1_34 = target("1.34", {"DRADeviceTaints": True})
        load_config_ok(config_with_devices(device(taints=taints[:4])), on_1_34)
        issue = only_error(config_errors(config_with_devices(device(taints=taints[:5])), on_1_34))
        assert (issue.message, issue.value, issue.fix) == (
            "at most 4 taints per device on Kubernetes 1.34",
            5,
            "remove taints, or use Kubernetes 1.35 or later (16)",
        )

    def test_taint_effect_must_be_a_device_taint_effect(self) -> None:
        issue = only_error(
            config_errors(config_with_devices(device(taints=[{"key": "k", "effect": "PreferNoSchedule"}])))
        )
        assert format_path(issue.path) == f"{DEV0}.taints[0].effect"
        assert (issue.message, issue.value) == (
            "Input should be 'NoSchedule', 'NoExecute' or 'None'",
            "PreferNoSchedule",
        )

    def test_binding_conditions_must_come_with_failure_conditions(self) -> None:
        for field in ("bindingConditions", "bindingFailureConditions"):
            issue = only_error(config_errors(config_with_devices(device("gpu", **{field: ["ready"]}))))
            assert (format_path(issue.path), issue.message, issue.fix) == (
                DEV0,
                "bindingConditions and bindingFailureConditions must be set together",
                "set both, or neither",
            )
        load_config_ok(config_with_devices(device(bindingConditions=["ready"], bindingFailureConditions=["failed"])))

    def test_at_most_4_binding_conditions(self) -> None:
        conds = [f"c{i}" for i in range(5)]
        issue = only_error(
            config_errors(config_with_devices(device(bindingConditions=conds, bindingFailureConditions=["f"])))
        )
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"{DEV0}.bindingConditions",
            "at most 4 entries",
            5,
        )

    def test_binding_conditions_are_label_names_without_overlap(self) -> None:
        issue = only_error(
            config_errors(config_with_devices(device(bindingConditions=["a b"], bindingFailureConditions=["f"])))
        )
        assert (format_path(issue.path), issue.value) == (f"{DEV0}.bindingConditions[0]", "a b")
        issue = only_error(
            config_errors(config_with_devices(device(bindingConditions=["x", "y"], bindingFailureConditions=["y"])))
        )
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"{DEV0}.bindingFailureConditions",
            "must not repeat a binding condition",
            ["y"],
        )


class TestSelectors:
    @pytest.mark.parametrize(
        ("expression", "path", "message"),
        [
            ({"key": "a", "operator": "In"}, "matchExpressions[0]", "operator In needs at least one value"),
            (
                {"key": "a", "operator": "NotIn", "values": []},
                "matchExpressions[0]",
                "operator NotIn needs at least one value",
            ),
            (
                {"key": "a", "operator": "Exists", "values": ["x"]},
                "matchExpressions[0]",
                "operator Exists takes no values (remove 'values')",
            ),
            (
                {"key": "a", "operator": "Gt", "values": ["1"]},
                "matchExpressions[0].operator",
                "Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'",
            ),
            (
                {"key": "a/b/c", "operator": "Exists"},
                "matchExpressions[0]",
                "key 'a/b/c': must not contain more than one slash",
            ),
        ],
    )
    def test_match_expressions(self, expression: dict[str, Any], path: str, message: str) -> None:
        doc = config(mapping() | {"nodeSelector": {"matchExpressions": [expression]}})
        issue = only_error(config_errors(doc))
        assert (format_path(issue.path), issue.message) == (f"mappings[0].nodeSelector.{path}", message)

    def test_match_labels(self) -> None:
        issue = only_error(config_errors(config(mapping(labels={"bad key": "x"}))))
        assert format_path(issue.path) == "mappings[0].nodeSelector.matchLabels"
        assert issue.message.startswith("label 'bad key'='x': the name must be alphanumeric")

    def test_an_empty_selector_warns_that_it_shadows_later_mappings(self) -> None:
        cfg, issues = load_config_data(config(mapping("all", labels={}), mapping("never")))
        assert cfg is not None
        warning = only_warning(issues)
        assert format_path(warning.path) == "mappings[0].nodeSelector"
        assert warning.message == (
            "empty selector: this mapping matches every KWOK node, and mappings after it never apply"
        )

    def test_duplicate_mapping_names_warn(self) -> None:
        cfg, issues = load_config_data(config(mapping("gpus"), mapping("gpus")))
        assert cfg is not None
        warning = only_warning(issues)
        assert (format_path(warning.path), warning.message, warning.value) == (
            "mappings[1].name",
            "duplicate mapping name",
            "gpus",
        )


class TestPoolSize:
    def test_1024_devices_in_one_mapping_are_accepted(self) -> None:
        cfg = load_config_ok(config_with_devices(*(device(f"d{i}", count=128) for i in range(8))))
        assert cfg.mappings[0].pool.device_count == 1024

    def test_10000_devices_in_one_mapping_are_rejected(self) -> None:
        issue = only_error(config_errors(config_with_devices(*(device(f"d{i}", count=1000) for i in range(10)))))
        assert format_path(issue.path) == "mappings[0].resourceSlice.devices[9]"
        assert issue.message == "the pool has 10000 devices; at most 1024 per node and driver are supported"
        assert (issue.value, issue.fix) == (10000, "reduce count, or split the devices across drivers")

    def test_a_count_of_10000_is_rejected_on_the_field(self) -> None:
        issue = only_error(config_errors(config_with_devices(device(count=10_000))))
        assert (format_path(issue.path), issue.message, issue.value) == (
            f"{DEV0}.count",
            "Input should be less than or equal to 1024",
            10_000,
        )

    def test_pools_of_different_mappings_are_counted_separately(self) -> None:
        big = [device(f"d{i}", count=512) for i in range(2)]
        load_config_ok(config(mapping("a", devices=big), mapping("b", devices=big)))


class TestConfigMap:
    def test_text_is_read_from_the_key(self) -> None:
        text, issues = config_text_from_configmap({"data": {"config.yaml": "driver: x\n"}}, "config.yaml")
        assert (text, issues) == ("driver: x\n", [])

    def test_a_missing_key_lists_the_keys_present(self) -> None:
        text, issues = config_text_from_configmap({"data": {"other.yaml": "", "b": ""}}, "config.yaml")
        issue = only_error(issues)
        assert text is None
        assert format_path(issue.path) == "data['config.yaml']"
        assert issue.message == "the ConfigMap has no key 'config.yaml' (keys present: b, other.yaml)"

    def test_no_data_at_all(self) -> None:
        _, issues = config_text_from_configmap({}, "config.yaml")
        assert only_error(issues).message == "the ConfigMap has no key 'config.yaml' (keys present: none)"

    @pytest.mark.parametrize(
        ("data", "path", "value"),
        [({"config.yaml": 3}, "data['config.yaml']", "int"), (["config.yaml"], "data", "list")],
    )
    def test_wrong_shapes(self, data: Any, path: str, value: str) -> None:
        text, issues = config_text_from_configmap({"data": data}, "config.yaml")
        issue = only_error(issues)
        assert text is None
        assert (format_path(issue.path), issue.value) == (path, value)


def test_issue_str_names_path_value_and_fix() -> None:
    issue = Issue(("mappings", 0, "driver"), "invalid driver name: x", "a/b", "use 'a.b'")
    assert str(issue) == "mappings[0].driver: invalid driver name: x (got 'a/b'); fix: use 'a.b'"
    assert str(Issue((), "empty")) == "<root>: empty"


def test_fallback_config_defaults_to_no_mappings() -> None:
    assert FallbackConfig().mappings == () and FallbackConfig().drivers == frozenset()


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        ("Gi", "'Gi' has no number: the apiserver reads it as 0"),
        ("1000E", "'1000E' is stored by the apiserver as '1', a different value"),
        ("0.1n", "'0.1n' is stored by the apiserver as '1n', a different value"),
    ],
)
def test_quantities_the_apiserver_stores_differently_are_warned_about(value: str, warning: str) -> None:
    cfg, issues = load_config_data(config_with_devices(device(capacity={"memory": value})))
    assert cfg is not None
    (issue,) = issues
    assert (format_path(issue.path), issue.message, issue.is_error) == (f"{DEV0}.capacity.memory.value", warning, False)


def test_quantities_the_apiserver_accepts_load(quantity: str = "100n") -> None:
    for value in ("100n", "5u", "1e3", "+1", " 16Gi "):
        cfg, issues = load_config_data(config_with_devices(device(capacity={"memory": value})))
        assert cfg is not None and issues == [], value


# --- reloading: what is reused must not change what is loaded ----------------------------------
RELOAD_BASE = """driver: gpu.example.com
mappings:
- name: a
  nodeSelector: {matchLabels: {t: a}}
  resourceSlice:
    devices: [{name: gpu, count: 2, attributes: {memory: 16Gi}}]
- name: b
  nodeSelector:
    matchLabels: {t: b}
  resourceSlice:
    devices:
    - name: fpga
      attributes: {dsp: 12}
"""


@pytest.mark.parametrize(
    "text",
    [
        RELOAD_BASE,
        RELOAD_BASE.replace("count: 2", "count: 3"),  # one mapping edited
        RELOAD_BASE.replace("- name: a", "- name: z"),
        RELOAD_BASE.replace(
            "mappings:\n- name: a", "mappings:\n- name: new\n  nodeSelector: {}\n  resourceSlice: {}\n- name: a"
        ),
        RELOAD_BASE.replace(
            "  nodeSelector:\n    matchLabels: {t: b}", "  nodeSelector:\n    matchLabels: {t: b}\n  name: b2"
        ),
        RELOAD_BASE.replace("- name: b\n", "- name: b\n  name: b\n"),  # a key twice inside a mapping
        RELOAD_BASE + "driver: again\n",  # a top-level key twice
        "mappings:\n  - &m {name: a, nodeSelector: {}, resourceSlice: {}}\n  - *m\n",  # aliases: the general path
        "mappings:\n    - name: a\n      nodeSelector: {}\n      resourceSlice: {}\n",  # other columns
        "mappings: []\n",
        "mappings: 7\n",
        "mappings:  # the rules\n  - name: a\n    nodeSelector: {}\n\n  # the next\n"
        "  - {name: b, nodeSelector: {}, resourceSlice: {}}\nafter: 1\n",
        'mappings:\n- name: "a\n- b"\n  nodeSelector: {}\n- name: c\n',  # a quoted scalar across item-looking lines
        "mappings:\n- name: a\n  note: |\n    - not an item\n  nodeSelector: {}\n- name: b\n",
        "mappings:\n- name: a\n-\n- name: b\n",  # an empty item
        "mappings:\n- name: a\n\t- name: b\n",  # a tab
        "mappings:\n- name: a\n---\nmappings: []\n",  # a second document
        "driver: x\nmappings:\n- name: a\ndriver: y\n",  # a key twice around the items
        "mappings:\n- name: a\n  name: b\n- name: c\n  x: [1\n",  # a key twice and a syntax error
        "- just a list\n",
        "",
    ],
)
def test_parse_config_yaml_loads_exactly_what_parse_yaml_loads(text: str) -> None:
    for _ in range(2):  # the second time from what the first remembered
        assert parse_config_yaml(text) == parse_yaml(text, "config.yaml")


def test_the_same_mapping_text_at_another_column_is_read_again() -> None:
    inner = "name: a\n  nodeSelector: {matchLabels: {t: a}}\n  resourceSlice: {devices: [{name: g}]}\n"
    assert parse_config_yaml("mappings:\n- " + inner)[0] == parse_yaml("mappings:\n- " + inner, "x")[0]
    shifted = "mappings:\n  - " + inner.replace("\n  ", "\n    ")
    assert parse_config_yaml(shifted) == parse_yaml(shifted, "config.yaml")


def test_a_reloaded_config_with_a_moved_mapping_names_its_new_position() -> None:
    bad = "- name: bad\n  nodeSelector: {}\n  resourceSlice: {devices: [{name: Bad_Name}]}\n"
    first = load_config_text("driver: gpu.example.com\nmappings:\n" + bad)
    moved = load_config_text("driver: gpu.example.com\nmappings:\n" + RELOAD_BASE.split("mappings:\n")[1] + bad)
    assert first[0] is None and moved[0] is None
    assert [format_path(i.path) for i in errors(first[1])] == ["mappings[0].resourceSlice.devices[0].name"]
    assert [format_path(i.path) for i in errors(moved[1])] == ["mappings[2].resourceSlice.devices[0].name"]


def test_every_bad_label_of_a_selector_is_reported_not_only_the_first() -> None:
    (issue,) = config_errors(config(mapping(labels={"bad key": "a", "zone": "not ok"})))
    assert issue.message.startswith("label 'bad key'='a': ")
    assert "; label 'zone'='not ok': " in issue.message


def test_a_usual_layout_takes_the_per_item_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a matter of results (they are equal either way) but of cost: a block-style config is
    cut into items, and only its head goes through the whole-document parser."""
    import dra_kwok.core.config as config

    seen: list[str] = []
    real = config.parse_yaml

    def spy(text: str, what: str, first_line: int = 1) -> Any:
        seen.append(text)
        return real(text, what, first_line)

    monkeypatch.setattr(config, "parse_yaml", spy)
    for text in (RELOAD_BASE, RELOAD_BASE.replace("count: 2", "count: 5"), RELOAD_BASE + "# end\n"):
        seen.clear()
        data, issues = parse_config_yaml(text)
        assert not issues and [m["name"] for m in data["mappings"]] == ["a", "b"]
        assert len(seen) == 1 and "- name:" not in seen[0], seen
        assert seen[0].count("\n") == text.count("\n"), "the head keeps every line's number"
