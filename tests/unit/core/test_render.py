"""Rendering a node's pools into ResourceSlices: names, splitting, counters, placeholders, manifests."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core import names
from dra_kwok.core.config import load_config_data
from dra_kwok.core.issues import errors, format_path
from dra_kwok.core.models import DeviceTemplate
from dra_kwok.core.render import (
    ANNOTATION_SOURCE,
    LABEL_DRIVER,
    LABEL_MANAGED_BY,
    LABEL_NODE,
    NodeRef,
    NodeSlices,
    RenderError,
    content_of,
    pool_name,
    render,
    slice_manifest,
)
from dra_kwok.core.resolve import Resolution
from dra_kwok.core.validation import PoolSpec, Source
from dra_kwok.core.versions import DEFAULT_TARGET, Limits, target
from tests.api_rules import node_problems
from tests.support.names import multi_slice_name

from .builders import DRIVER, OTHER_DRIVER, Doc, config, device, load_config_ok, mapping

NODE = NodeRef("kwok-node-1", "uid-1")
LONG_NODE = NodeRef(".".join(["n" * 63] * 4)[:253], "uid-long")


def pool(*devices: Doc, driver: str = DRIVER, name: str = "m", **slice_fields: Any) -> PoolSpec:
    cfg = load_config_ok(config(mapping(name, devices=list(devices), **slice_fields), driver=driver))
    return cfg.mappings[0].pool


def rendered(*pools: PoolSpec, node: NodeRef = NODE, limits: Limits = DEFAULT_TARGET.limits) -> NodeSlices:
    return render(node, Resolution(pools=pools), limits)


def manifests(slices: NodeSlices, generation: int = 1) -> list[dict[str, Any]]:
    return [slice_manifest(s, slices.node, generation) for s in slices.all_slices()]


def device_names(slices: NodeSlices) -> list[list[str]]:
    return [[d["name"] for d in s.content.get("devices", [])] for s in slices.all_slices()]


def shared_sets(n: int, counters_each: int = 1) -> list[Doc]:
    return [{"name": f"s{i}", "counters": {f"c{j}": "8" for j in range(counters_each)}} for i in range(n)]


class TestNames:
    def test_one_driver_one_slice_uses_the_seed_names(self) -> None:
        out = rendered(pool(device("nvidia-t4-0", count=2), device("xilinx-fpga-0")))
        (s,) = out.all_slices()
        assert (s.name, s.pool, s.driver, s.slice_count) == (
            "kwok-node-1-devices",
            "kwok-node-1-device-pool",
            DRIVER,
            1,
        )
        assert device_names(out) == [["nvidia-t4-0-0", "nvidia-t4-0-1", "xilinx-fpga-0"]]
        assert s.source == "mapping/m"

    def test_two_drivers_name_slices_by_node_driver_and_index(self) -> None:
        out = rendered(pool(device("gpu")), pool(device("fpga"), driver=OTHER_DRIVER))
        assert [(p.driver, p.pool) for p in out.pools] == [
            (DRIVER, "kwok-node-1-device-pool"),
            (OTHER_DRIVER, "kwok-node-1-device-pool"),
        ]
        assert [s.name for s in out.all_slices()] == [
            multi_slice_name("kwok-node-1", DRIVER, 0),
            multi_slice_name("kwok-node-1", OTHER_DRIVER, 0),
        ]

    def test_several_slices_of_one_driver_are_indexed(self) -> None:
        out = rendered(pool(device("gpu", count=200)))
        assert [s.name for s in out.all_slices()] == [
            multi_slice_name("kwok-node-1", DRIVER, 0),
            multi_slice_name("kwok-node-1", DRIVER, 1),
        ]

    def test_a_253_character_node_gets_valid_unique_names(self) -> None:
        other = NodeRef(LONG_NODE.name[:-1] + "x", "uid-other")
        seen: set[str] = set()
        for node in (LONG_NODE, other):
            simple = rendered(pool(device("gpu")), node=node)
            multi = rendered(pool(device("gpu", count=300)), pool(device("f"), driver=OTHER_DRIVER), node=node)
            for out in (simple, multi):
                assert node_problems(manifests(out)) == []
                for s in out.all_slices():
                    assert len(s.name) <= 253 and len(s.pool) <= 253
                    assert s.name not in seen
                    seen.add(s.name)
        assert len(seen) == 2 * (1 + 3 + 1)
        assert pool_name(LONG_NODE.name) != pool_name(other.name)

    def test_names_are_deterministic(self) -> None:
        p = pool(device("gpu", count=300))
        assert [s.name for s in rendered(p, node=LONG_NODE).all_slices()] == [
            s.name for s in rendered(p, node=LONG_NODE).all_slices()
        ]


class TestSplitting:
    @pytest.mark.parametrize(
        ("count", "sizes"), [(1, [1]), (128, [128]), (129, [128, 1]), (300, [128, 128, 44]), (1024, [128] * 8)]
    )
    def test_plain_devices_split_at_128(self, count: int, sizes: list[int]) -> None:
        out = rendered(pool(device("gpu", count=count)))
        assert [len(n) for n in device_names(out)] == sizes
        assert {s.slice_count for s in out.all_slices()} == {len(sizes)}
        assert [n for chunk in device_names(out) for n in chunk] == [f"gpu-{i}" for i in range(count)]
        assert node_problems(manifests(out)) == []

    def test_taints_anywhere_in_the_pool_split_at_64(self) -> None:
        out = rendered(pool(device("gpu", count=100), device("bad", taints=[{"key": "k", "effect": "NoSchedule"}])))
        assert [len(n) for n in device_names(out)] == [64, 37]
        assert node_problems(manifests(out)) == []

    def test_counters_get_their_own_slice_first_and_devices_split_at_64(self) -> None:
        use = [{"counterSet": "s0", "counters": {"c0": "1"}}]
        out = rendered(pool(device("part", count=100, consumesCounters=use), sharedCounters=shared_sets(1)))
        slices = out.all_slices()
        assert [list(s.content) for s in slices] == [["sharedCounters"], ["devices"], ["devices"]]
        assert slices[0].content == {"sharedCounters": [{"name": "s0", "counters": {"c0": {"value": "8"}}}]}
        assert [len(n) for n in device_names(out)] == [0, 64, 36]
        assert {s.slice_count for s in slices} == {3}
        assert [s.name for s in slices] == [multi_slice_name("kwok-node-1", DRIVER, i) for i in range(3)]
        assert node_problems(manifests(out)) == []

    def test_counters_alone_are_a_slice_of_their_own(self) -> None:
        out = rendered(pool(sharedCounters=shared_sets(2)))
        assert [list(s.content) for s in out.all_slices()] == [["sharedCounters"]]
        assert out.all_slices()[0].slice_count == 1

    def test_counters_go_in_a_slice_of_their_own_and_devices_in_slices_of_64(self) -> None:
        """1.35 and later: a slice has devices or sharedCounters; 64 devices when they consume counters."""
        sets = shared_sets(1, counters_each=32)
        use = [{"counterSet": "s0", "counters": {f"c{j}": "1" for j in range(32)}}]
        out = rendered(pool(device("part", count=100, consumesCounters=use), sharedCounters=sets))
        assert [len(n) for n in device_names(out)] == [0, 64, 36]
        assert list(out.all_slices()[0].content) == ["sharedCounters"]
        assert node_problems(manifests(out)) == []

    def test_on_1_34_counters_share_the_slice_of_their_devices(self) -> None:
        """1.34 resolves a device's counters in its own slice (and allows 1024 consumed per slice)."""
        limits = target("1.34", {"DRAPartitionableDevices": True}).limits
        sets = shared_sets(1, counters_each=32)
        use = [{"counterSet": "s0", "counters": {f"c{j}": "1" for j in range(32)}}]
        out = rendered(pool(device("part", count=32, consumesCounters=use), sharedCounters=sets), limits=limits)
        (only_slice,) = out.all_slices()
        assert sorted(only_slice.content) == ["devices", "sharedCounters"]
        assert len(only_slice.content["devices"]) == 32
        assert node_problems(manifests(out), minor=34) == []
        assert node_problems(manifests(out)) != []  # the same slice is refused from 1.35

    def test_an_empty_pool_is_one_empty_slice(self) -> None:
        out = rendered(pool())
        (s,) = out.all_slices()
        assert (s.name, s.slice_count, s.content) == ("kwok-node-1-devices", 1, {"devices": []})
        assert node_problems(manifests(out)) == []

    def test_no_pools_no_slices(self) -> None:
        assert rendered().all_slices() == []


class TestDeviceBodies:
    def test_every_field_is_rendered_in_v1_form(self) -> None:
        dev = device(
            "gpu",
            attributes={"model": "H100", "index": 0, "nvlink": True, "driverVersion": {"version": "1.2.3"}},
            capacity={
                "memory": "80Gi",
                "cores": {"value": 4, "requestPolicy": {"default": "1", "validValues": ["1", "2"]}},
            },
            consumesCounters=[{"counterSet": "s0", "counters": {"c0": "1"}}],
            taints=[{"key": "example.com/maintenance", "value": "soon", "effect": "NoSchedule"}],
            allowMultipleAllocations=True,
            bindsToNode=True,
            bindingConditions=["example.com/ready"],
            bindingFailureConditions=["example.com/failed"],
        )
        out = rendered(pool(dev, sharedCounters=shared_sets(1)))
        assert out.all_slices()[1].content == {
            "devices": [
                {
                    "name": "gpu",
                    "attributes": {
                        "model": {"string": "H100"},
                        "index": {"int": 0},
                        "nvlink": {"bool": True},
                        "driverVersion": {"version": "1.2.3"},
                    },
                    "capacity": {
                        "memory": {"value": "80Gi"},
                        "cores": {"value": "4", "requestPolicy": {"default": "1", "validValues": ["1", "2"]}},
                    },
                    "consumesCounters": [{"counterSet": "s0", "counters": {"c0": {"value": "1"}}}],
                    "taints": [{"key": "example.com/maintenance", "value": "soon", "effect": "NoSchedule"}],
                    "allowMultipleAllocations": True,
                    "bindsToNode": True,
                    "bindingConditions": ["example.com/ready"],
                    "bindingFailureConditions": ["example.com/failed"],
                }
            ]
        }

    def test_a_minimal_device_has_only_its_name(self) -> None:
        assert rendered(pool(device("gpu"))).all_slices()[0].content == {"devices": [{"name": "gpu"}]}

    def test_unknown_keys_are_refused_and_never_rendered(self) -> None:
        dev = device(
            "gpu",
            atributes={"x": 1},
            capacity={"memory": {"value": "1Gi", "unit": "bytes"}},
            taints=[{"key": "k", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}],
        )
        _, issues = load_config_data(config(mapping("m", devices=[dev]), driver=DRIVER))
        assert sorted(format_path(i.path) for i in errors(issues)) == [
            "mappings[0].resourceSlice.devices[0].atributes",
            "mappings[0].resourceSlice.devices[0].capacity.memory.unit",
            "mappings[0].resourceSlice.devices[0].taints[0].timeAdded",
        ]
        # A model keeps them only to report them; they never reach the API.
        kept = PoolSpec(DRIVER, (DeviceTemplate.model_validate(dev),), (), Source("mapping", "m"))
        body = rendered(kept).all_slices()[0].content["devices"][0]
        assert body == {
            "name": "gpu",
            "capacity": {"memory": {"value": "1Gi"}},
            "taints": [{"key": "k", "effect": "NoSchedule"}],
        }


class TestPlaceholders:
    def test_placeholders_are_filled_per_node_and_device(self) -> None:
        attrs = {
            "host": "{nodeName}",
            "uuid": "gpu-{nodeHash}-{index}",
            "id": "{deviceName}",
            "literal": "{notAPlaceholder}",
            "plain": "A100",
        }
        p = pool(device("gpu", count=2, attributes=attrs), device("nic", attributes={"id": "{deviceName}/{index}"}))
        for node in (NODE, NodeRef("other", "uid-2")):
            devices = rendered(p, node=node).all_slices()[0].content["devices"]
            h = names.short_hash(node.name)
            assert [d["attributes"] for d in devices] == [
                {
                    "host": {"string": node.name},
                    "uuid": {"string": f"gpu-{h}-0"},
                    "id": {"string": "gpu-0"},
                    "literal": {"string": "{notAPlaceholder}"},
                    "plain": {"string": "A100"},
                },
                {
                    "host": {"string": node.name},
                    "uuid": {"string": f"gpu-{h}-1"},
                    "id": {"string": "gpu-1"},
                    "literal": {"string": "{notAPlaceholder}"},
                    "plain": {"string": "A100"},
                },
                {"id": {"string": "nic/0"}},
            ]

    def test_a_value_that_grows_over_64_characters_is_a_render_error(self) -> None:
        p = pool(device("gpu", count=2, attributes={"host": "host-{nodeName}", "ok": "{nodeHash}"}))
        with pytest.raises(RenderError) as caught:
            rendered(p, node=LONG_NODE)
        err = caught.value
        assert err.node == LONG_NODE.name
        assert [format_path(i.path) for i in err.issues] == [
            "devices.gpu-0.attributes.host",
            "devices.gpu-1.attributes.host",
        ]
        issue = err.issues[0]
        assert issue.message == (
            f"after filling in placeholders for driver {DRIVER} the value must be at most 64 bytes of UTF-8 "
            f"(has {len('host-') + 253})"
        )
        assert issue.value == f"host-{LONG_NODE.name}"
        assert issue.fix == "use {nodeHash} (8 characters) instead of {nodeName} for long node names"
        assert str(err).startswith(f"node {LONG_NODE.name}: devices.gpu-0.attributes.host: after filling in")
        assert err.sources == ("mapping/m",), "the source whose template does not fit, for its status"

    def test_the_limit_counts_utf8_bytes_as_the_apiserver_does(self) -> None:
        p = pool(device("gpu", attributes={"label": "\u00fc" * 20 + "{nodeName}"}))  # 50 bytes, 30 characters
        fits = rendered(p, node=NodeRef("n" * 24, "u")).all_slices()[0].content["devices"][0]["attributes"]
        assert len(fits["label"]["string"].encode()) == 64
        with pytest.raises(RenderError) as caught:
            rendered(p, node=NodeRef("n" * 25, "u"))  # 45 characters, but 65 bytes
        message = caught.value.issues[0].message
        assert message.endswith("the value must be at most 64 bytes of UTF-8 (has 65 bytes, 45 characters)")

    def test_a_short_node_with_the_same_template_renders(self) -> None:
        p = pool(device("gpu", attributes={"host": "host-{nodeName}"}))
        assert rendered(p).all_slices()[0].content["devices"][0]["attributes"]["host"] == {"string": "host-kwok-node-1"}


class TestManifest:
    def test_manifest_carries_labels_annotation_owner_and_pool(self) -> None:
        out = rendered(pool(device("gpu"), name="gpu-mapping"))
        assert slice_manifest(out.all_slices()[0], NODE, 7, "custom-manager") == {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {
                "name": "kwok-node-1-devices",
                "labels": {LABEL_MANAGED_BY: "custom-manager", LABEL_NODE: "kwok-node-1", LABEL_DRIVER: DRIVER},
                "annotations": {ANNOTATION_SOURCE: "mapping/gpu-mapping"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "kwok-node-1", "uid": "uid-1", "controller": True}
                ],
            },
            "spec": {
                "driver": DRIVER,
                "pool": {"name": "kwok-node-1-device-pool", "generation": 7, "resourceSliceCount": 1},
                "nodeName": "kwok-node-1",
                "devices": [{"name": "gpu"}],
            },
        }

    def test_labels_of_a_long_node_are_valid_label_values(self) -> None:
        (m,) = manifests(rendered(pool(device("gpu")), node=LONG_NODE))
        assert m["metadata"]["labels"][LABEL_NODE] == names.label_value_for(LONG_NODE.name)
        assert len(m["metadata"]["labels"][LABEL_NODE]) <= 63
        assert node_problems([m]) == []

    def test_the_manifest_default_manager(self) -> None:
        (m,) = manifests(rendered(pool(device("gpu"))))
        assert m["metadata"]["labels"][LABEL_MANAGED_BY] == "dra-kwok-driver"

    def test_content_of_reads_back_devices_or_counters(self) -> None:
        assert content_of({"devices": [{"name": "a"}], "pool": {}}) == {"devices": [{"name": "a"}]}
        assert content_of({"sharedCounters": [{"name": "s"}]}) == {"sharedCounters": [{"name": "s"}]}
        assert content_of({"driver": "x"}) == {"devices": []}
        assert content_of({"devices": None}) == {"devices": []}


def test_multi_slice_names_of_different_nodes_never_coincide() -> None:
    """`{node}-{driver}` alone is ambiguous: node a + driver b-c.example.com and node a-b +
    driver c.example.com both read `a-b-c.example.com`; the pair hash keeps them apart."""
    from dra_kwok.core.render import slice_name

    first = slice_name("a", "b-c.example.com", 0, simple=False)
    second = slice_name("a-b", "c.example.com", 0, simple=False)
    assert first != second
    assert first == multi_slice_name("a", "b-c.example.com", 0)
