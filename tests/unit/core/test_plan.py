"""Planning writes: generations, metadata-only updates, deletes, crash recovery, dropped fields."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dra_kwok.core.fingerprint import fingerprint
from dra_kwok.core.plan import NodePlan, ObservedSlice, plan_node
from dra_kwok.core.render import NodeRef, NodeSlices, render, slice_manifest
from dra_kwok.core.resolve import Resolution
from dra_kwok.core.validation import PoolSpec
from tests.api_rules import node_problems
from tests.support.names import multi_slice_name

from .builders import DRIVER, OTHER_DRIVER, Doc, config, device, load_config_ok, mapping
from .fake_api import FakeSliceApi, canonical_quantities, drop_binding_conditions, taint_times

MANAGER = "dra-kwok-driver"
NODE = NodeRef("kwok-node-1", "uid-1")


def pool(*devices: Doc, driver: str = DRIVER, name: str = "m", **slice_fields: Any) -> PoolSpec:
    return load_config_ok(config(mapping(name, devices=list(devices), **slice_fields), driver=driver)).mappings[0].pool


def desired(*pools: PoolSpec, node: NodeRef = NODE) -> NodeSlices:
    return render(node, Resolution(pools=pools))


def plan(api: FakeSliceApi, want: NodeSlices | None, *, written: bool = True, node: NodeRef = NODE) -> NodePlan:
    return plan_node(node.name, want, api.observed(), MANAGER, api.written if written else None)


def sync(api: FakeSliceApi, want: NodeSlices | None, node: NodeRef = NODE) -> NodePlan:
    """Plan, execute, and check that a second plan has nothing left to do."""
    first = plan(api, want, node=node)
    api.execute(first)
    assert plan(api, want, node=node).in_sync
    assert node_problems(api.objects.values()) == []
    return first


GPUS = pool(device("gpu", count=2, capacity={"memory": "80Gi"}))
MANY = pool(device("gpu", count=200))


class TestFirstPublishAndSync:
    def test_first_publish_writes_every_slice_at_generation_1(self) -> None:
        api = FakeSliceApi()
        first = plan(api, desired(MANY))
        (pp,) = first.pools
        assert (pp.driver, pp.reason, pp.generation) == (DRIVER, "content changed", 1)
        assert [a.name for a in pp.applies] == [
            multi_slice_name("kwok-node-1", DRIVER, 0),
            multi_slice_name("kwok-node-1", DRIVER, 1),
        ]
        assert (pp.pre_deletes, pp.deletes, pp.writes) == ((), (), 2)
        assert all(
            a.manifest["spec"]["pool"] == {"name": "kwok-node-1-device-pool", "generation": 1, "resourceSliceCount": 2}
            for a in pp.applies
        )
        assert [a.content_print for a in pp.applies] == [fingerprint(s.content) for s in desired(MANY).all_slices()]
        api.execute(first)
        assert api.generations() == {
            multi_slice_name("kwok-node-1", DRIVER, 0): 1,
            multi_slice_name("kwok-node-1", DRIVER, 1): 1,
        }

    def test_in_sync_means_no_writes(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        again = plan(api, desired(GPUS))
        assert again == NodePlan("kwok-node-1", ())
        assert again.in_sync

    def test_an_empty_pool_is_published_once(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool()))
        (obj,) = api.objects.values()
        assert obj["spec"]["devices"] == [] and obj["spec"]["pool"]["resourceSliceCount"] == 1


class TestContentChanges:
    def test_a_change_in_one_slice_bumps_the_generation_of_every_slice(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=200))))
        changed = desired(pool(device("gpu", count=200, attributes={"model": "H100"})))
        step = plan(api, changed)
        (pp,) = step.pools
        assert (pp.reason, pp.generation, len(pp.applies)) == ("content changed", 2, 2)
        assert {a.manifest["spec"]["pool"]["generation"] for a in pp.applies} == {2}
        api.execute(step)
        assert set(api.generations().values()) == {2}
        assert plan(api, changed).in_sync

    def test_a_change_confined_to_the_last_slice_still_rewrites_all(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=128), device("x"))))
        step = plan(api, desired(pool(device("gpu", count=128), device("x", attributes={"a": 1}))))
        assert [a.name for a in step.pools[0].applies] == [
            multi_slice_name("kwok-node-1", DRIVER, 0),
            multi_slice_name("kwok-node-1", DRIVER, 1),
        ]

    def test_growing_and_shrinking_the_pool(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=10))))
        grow = sync(api, desired(pool(device("gpu", count=300))))
        (pp,) = grow.pools
        assert pp.generation == 2
        assert [d.name for d in pp.deletes] == ["kwok-node-1-devices"]  # the simple name is obsolete now
        shrink = sync(api, desired(pool(device("gpu", count=130))))
        (pp,) = shrink.pools
        assert pp.generation == 3
        assert [a.name for a in pp.applies] == [
            multi_slice_name("kwok-node-1", DRIVER, 0),
            multi_slice_name("kwok-node-1", DRIVER, 1),
        ]
        assert [(d.name, d.reason) for d in pp.deletes] == [(multi_slice_name("kwok-node-1", DRIVER, 2), "obsolete")]
        assert api.log[-3:] == [
            ("apply", multi_slice_name("kwok-node-1", DRIVER, 0)),
            ("apply", multi_slice_name("kwok-node-1", DRIVER, 1)),
            ("delete", multi_slice_name("kwok-node-1", DRIVER, 2)),
        ]

    def test_obsolete_slices_are_deleted_only_after_the_new_generation_is_written(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=300))))
        api.log.clear()
        sync(api, desired(pool(device("gpu", count=5))))
        assert [verb for verb, _ in api.log] == ["apply", "delete", "delete", "delete"]


class TestNotAChange:
    def test_quantities_respelled_by_the_server_are_not_a_change(self) -> None:
        api = FakeSliceApi(canonical_quantities)
        want = desired(
            pool(
                device("gpu", capacity={"memory": "1Gi", "cores": "1000m"}),
                sharedCounters=[{"name": "s", "counters": {"memory": "2048Mi"}}],
            )
        )
        api.execute(plan(api, want))
        stored = {o["metadata"]["name"]: o for o in api.objects.values()}
        assert stored[multi_slice_name("kwok-node-1", DRIVER, 1)]["spec"]["devices"][0]["capacity"] == {
            "memory": {"value": "1024Mi"},
            "cores": {"value": "1"},
        }
        assert plan(api, want, written=False).in_sync

    def test_server_filled_taint_time_is_not_a_change(self) -> None:
        api = FakeSliceApi(taint_times)
        want = desired(pool(device("gpu", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])))
        api.execute(plan(api, want))
        assert "timeAdded" in next(iter(api.objects.values()))["spec"]["devices"][0]["taints"][0]
        assert plan(api, want, written=False).in_sync

    def test_a_taint_value_is_compared_as_text_not_as_a_quantity(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", taints=[{"key": "k", "value": "1", "effect": "NoSchedule"}]))))
        step = plan(api, desired(pool(device("gpu", taints=[{"key": "k", "value": "1.0", "effect": "NoSchedule"}]))))
        assert [(p.reason, p.generation) for p in step.pools] == [("content changed", 2)]

    def test_fingerprint_ignores_key_order_empty_fields_and_spelling(self) -> None:
        a = {"devices": [{"name": "d", "capacity": {"m": {"value": "1Gi"}}, "attributes": {}, "taints": []}]}
        b = {"devices": [{"capacity": {"m": {"value": "1024Mi"}}, "name": "d"}]}
        assert fingerprint(a) == fingerprint(b)
        assert fingerprint(a) != fingerprint({"devices": [{"name": "d", "capacity": {"m": {"value": "1G"}}}]})
        policy = {
            "default": "1000m",
            "validValues": ["1", "2000m"],
            "validRange": {"min": "1", "max": "2", "step": "1"},
        }
        same = {
            "default": "1",
            "validValues": ["1000m", "2"],
            "validRange": {"min": "1000m", "max": "2000m", "step": "1"},
        }
        assert fingerprint(
            {"devices": [{"name": "d", "capacity": {"m": {"value": "2", "requestPolicy": policy}}}]}
        ) == fingerprint({"devices": [{"name": "d", "capacity": {"m": {"value": "2", "requestPolicy": same}}}]})


class TestMetadataChanges:
    def test_a_recreated_node_gets_its_new_uid_without_a_generation_bump(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(MANY))
        new_node = NodeRef(NODE.name, "uid-2")
        step = plan(api, desired(MANY, node=new_node), node=new_node)
        (pp,) = step.pools
        assert (pp.reason, pp.generation) == ("metadata changed", 1)
        assert [a.manifest["metadata"]["ownerReferences"][0]["uid"] for a in pp.applies] == ["uid-2", "uid-2"]
        assert {a.manifest["spec"]["pool"]["generation"] for a in pp.applies} == {1}
        api.execute(step)
        assert set(api.generations().values()) == {1}
        assert plan(api, desired(MANY, node=new_node), node=new_node).in_sync

    def test_a_new_source_with_the_same_content_is_a_metadata_update(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu"), name="old")))
        step = plan(api, desired(pool(device("gpu"), name="new")))
        (pp,) = step.pools
        assert (pp.reason, pp.generation) == ("metadata changed", 1)
        assert pp.applies[0].manifest["metadata"]["annotations"] == {"dra-kwok.test.karpenter.sh/source": "mapping/new"}

    def test_edited_labels_are_restored_without_a_bump(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        next(iter(api.objects.values()))["metadata"]["labels"]["dra-kwok.test.karpenter.sh/node"] = "someone-else"
        (pp,) = plan(api, desired(GPUS)).pools
        assert (pp.reason, pp.generation, len(pp.applies)) == ("metadata changed", 1, 1)

    def test_only_the_slices_whose_metadata_changed_are_written(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(MANY))
        api.objects[multi_slice_name("kwok-node-1", DRIVER, 1)]["metadata"]["ownerReferences"][0]["uid"] = "stale"
        (pp,) = plan(api, desired(MANY)).pools
        assert [a.name for a in pp.applies] == [multi_slice_name("kwok-node-1", DRIVER, 1)]


class TestDeletes:
    def test_desired_none_deletes_every_slice_of_every_driver(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(MANY, pool(device("f"), driver=OTHER_DRIVER)))
        step = plan(api, None)
        assert [(p.driver, p.reason, sorted(d.name for d in p.deletes)) for p in step.pools] == [
            (OTHER_DRIVER, "pool no longer desired", [multi_slice_name("kwok-node-1", OTHER_DRIVER, 0)]),
            (
                DRIVER,
                "pool no longer desired",
                [multi_slice_name("kwok-node-1", DRIVER, 0), multi_slice_name("kwok-node-1", DRIVER, 1)],
            ),
        ]
        api.execute(step)
        assert api.objects == {}
        assert plan(api, None).in_sync

    def test_a_driver_that_is_no_longer_desired_is_deleted(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS, pool(device("f"), driver=OTHER_DRIVER)))
        step = sync(api, desired(GPUS))
        assert sorted(api.objects) == ["kwok-node-1-devices"]
        assert {p.driver: p.reason for p in step.pools} == {
            OTHER_DRIVER: "pool no longer desired",
            DRIVER: "content changed",  # its slice is renamed to the simple name
        }

    def test_slices_whose_pool_name_changed_are_deleted_before_they_are_recreated(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        obj = next(iter(api.objects.values()))
        obj["spec"]["pool"]["name"] = "legacy-pool"
        step = plan(api, desired(GPUS))
        (pp,) = step.pools
        assert [(d.name, d.reason) for d in pp.pre_deletes] == [
            ("kwok-node-1-devices", "immutable driver, pool name or node changed")
        ]
        assert (pp.generation, [a.name for a in pp.applies]) == (1, ["kwok-node-1-devices"])
        api.execute(step)
        assert plan(api, desired(GPUS)).in_sync

    def test_slices_with_another_node_name_are_deleted_before_they_are_recreated(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        next(iter(api.objects.values()))["spec"]["nodeName"] = "old-node"
        (pp,) = plan(api, desired(GPUS)).pools
        assert [d.name for d in pp.pre_deletes] == ["kwok-node-1-devices"]

    @pytest.mark.parametrize("order", [list, lambda pools: list(reversed(pools))])
    def test_a_slice_name_taken_over_by_another_driver_is_deleted_first(self, order: Any) -> None:
        """`{node}-devices` passes from one driver to another when the only driver changes; the
        driver is immutable, and pools are written concurrently, so the new pool deletes it itself."""
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu"), driver=OTHER_DRIVER)))
        step = plan(api, desired(pool(device("gpu"), driver=DRIVER)))
        (pp,) = step.pools
        assert pp.driver == DRIVER
        assert [d.name for d in pp.pre_deletes] == ["kwok-node-1-devices"]
        api.execute(step, order)
        assert [o["spec"]["driver"] for o in api.objects.values()] == [DRIVER]
        assert plan(api, desired(pool(device("gpu"), driver=DRIVER))).in_sync


class TestCrashRecovery:
    def test_a_generation_cut_short_is_completed_without_a_bump(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=300))))
        target = desired(pool(device("gpu", count=300, attributes={"v": 2})))
        step = plan(api, target)
        # Crash after writing only the first slice of generation 2.
        first = step.pools[0].applies[0]
        api.apply(first)
        assert sorted(api.generations().values()) == [1, 1, 2]
        recovery = plan(api, target)
        (pp,) = recovery.pools
        assert (pp.reason, pp.generation) == ("slices missing", 2)
        assert sorted(a.name for a in pp.applies) == sorted(a.name for a in step.pools[0].applies[1:])
        api.execute(recovery)
        assert set(api.generations().values()) == {2}
        assert plan(api, target).in_sync

    def test_a_newest_generation_with_other_content_is_outbid(self) -> None:
        """The newest layer's slice of ours carries content we do not want (another writer's, or
        an older desire): filling the layer would mix it with ours, so the pool goes round."""
        api = FakeSliceApi()
        sync(api, desired(pool(device("gpu", count=300))))
        other = plan(api, desired(pool(device("gpu", count=300, attributes={"v": 3}))))
        api.apply(other.pools[0].applies[0])
        target = desired(pool(device("gpu", count=300, attributes={"v": 2})))
        (pp,) = plan(api, target).pools
        assert (pp.reason, pp.generation, len(pp.applies)) == ("content changed", 3, 3)

    def test_a_pool_seen_half_way_from_another_writer_is_filled_in_not_bumped(self) -> None:
        """A second controller (same identity, misconfigured HA) sees the first's new pool with
        one slice so far: it writes the other at the same generation, which is what the first
        writes too, so the two do not push the generation up against each other."""
        api = FakeSliceApi()
        first = plan(api, desired(MANY))
        api.apply(first.pools[0].applies[0])
        (pp,) = plan(api, desired(MANY)).pools
        assert (pp.reason, pp.generation, [a.name for a in pp.applies]) == (
            "slices missing",
            1,
            [first.pools[0].applies[1].name],
        )
        assert pp.applies[0].manifest == first.pools[0].applies[1].manifest

    def test_a_leftover_slice_at_a_higher_generation_is_outbid(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        leftover = slice_manifest(desired(MANY).all_slices()[1], NODE, 9, MANAGER)
        api.put(leftover)
        (pp,) = plan(api, desired(GPUS)).pools
        assert (pp.reason, pp.generation) == ("content changed", 10)
        assert [d.name for d in pp.deletes] == [leftover["metadata"]["name"]]

    def test_a_wrong_slice_count_is_rewritten(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(GPUS))
        next(iter(api.objects.values()))["spec"]["pool"]["resourceSliceCount"] = 2
        (pp,) = plan(api, desired(GPUS)).pools
        assert (pp.reason, pp.generation) == ("content changed", 2)

    def test_a_deleted_slice_is_recreated_in_its_generation(self) -> None:
        api = FakeSliceApi()
        sync(api, desired(MANY))
        gone = multi_slice_name("kwok-node-1", DRIVER, 1)
        del api.objects[gone]
        (pp,) = plan(api, desired(MANY)).pools
        assert (pp.reason, pp.generation, [a.name for a in pp.applies]) == ("slices missing", 1, [gone])
        api.execute(plan(api, desired(MANY)))
        assert plan(api, desired(MANY)).in_sync


class TestWrittenMap:
    BOUND = pool(device("gpu", bindsToNode=True, bindingConditions=["ready"], bindingFailureConditions=["failed"]))

    def test_fields_dropped_by_the_server_are_not_rewritten_forever(self) -> None:
        api = FakeSliceApi(drop_binding_conditions)
        api.execute(plan(api, desired(self.BOUND)))
        assert "bindingConditions" not in next(iter(api.objects.values()))["spec"]["devices"][0]
        assert not plan(api, desired(self.BOUND), written=False).in_sync  # without the map it would loop
        assert plan(api, desired(self.BOUND)).in_sync

    def test_a_real_change_is_still_written_despite_the_map(self) -> None:
        api = FakeSliceApi(drop_binding_conditions)
        api.execute(plan(api, desired(self.BOUND)))
        changed = pool(
            device("gpu", bindsToNode=True, bindingConditions=["ready2"], bindingFailureConditions=["failed"])
        )
        (pp,) = plan(api, desired(changed)).pools
        assert (pp.reason, pp.generation) == ("content changed", 2)

    def test_someone_elses_write_is_not_covered_by_the_map(self) -> None:
        api = FakeSliceApi(drop_binding_conditions)
        api.execute(plan(api, desired(self.BOUND)))
        api.put(copy.deepcopy(next(iter(api.objects.values()))))  # same content, new resourceVersion
        assert not plan(api, desired(self.BOUND)).in_sync


class TestObservedSlice:
    def test_from_api_reads_what_the_planner_compares(self) -> None:
        want = desired(GPUS)
        obj = slice_manifest(want.all_slices()[0], NODE, 4, MANAGER)
        obj["metadata"] |= {"uid": "u-1", "resourceVersion": "42"}
        obs = ObservedSlice.from_api(obj)
        assert (obs.name, obs.uid, obs.resource_version, obs.node_name, obs.driver) == (
            "kwok-node-1-devices",
            "u-1",
            "42",
            "kwok-node-1",
            DRIVER,
        )
        assert (obs.pool, obs.generation, obs.slice_count, obs.owner_uid) == ("kwok-node-1-device-pool", 4, 1, "uid-1")
        assert (obs.managed_by, obs.source) == (MANAGER, "mapping/m")
        assert obs.content_print == fingerprint(want.all_slices()[0].content)

    def test_from_api_tolerates_a_bare_object(self) -> None:
        obs = ObservedSlice.from_api({})
        assert (obs.name, obs.generation, obs.slice_count, obs.owner_uid, obs.source) == ("", 0, 0, None, None)


# --- fingerprints computed once ------------------------------------------------------------------


def test_a_pool_without_placeholders_gives_every_node_the_same_content_and_fingerprint() -> None:
    a, b = desired(GPUS, node=NodeRef("node-a", "uid-a")), desired(GPUS, node=NodeRef("node-b", "uid-b"))
    sa, sb = a.pools[0].slices[0], b.pools[0].slices[0]
    assert sa.content is sb.content
    assert sa.content_print == sb.content_print == fingerprint(sa.content)


def test_a_pool_with_placeholders_is_fingerprinted_per_node() -> None:
    spec = pool(device("gpu", count=2, attributes={"host": "{nodeName}"}))
    a, b = desired(spec, node=NodeRef("node-a", "uid-a")), desired(spec, node=NodeRef("node-b", "uid-b"))
    sa, sb = a.pools[0].slices[0], b.pools[0].slices[0]
    assert sa.content_print == sb.content_print == "", "per-node content is fingerprinted by the planner"
    for node, want in ((NodeRef("node-a", "uid-a"), a), (NodeRef("node-b", "uid-b"), b)):
        (op,) = [o for p in plan(FakeSliceApi(), want, node=node).pools for o in p.applies]
        assert op.content_print == fingerprint(want.pools[0].slices[0].content)
    assert fingerprint(sa.content) != fingerprint(sb.content)


def test_applies_carry_the_fingerprint_rendered_once() -> None:
    (op,) = [o for p in plan(FakeSliceApi(), desired(GPUS)).pools for o in p.applies]
    assert op.content_print == fingerprint(desired(GPUS).pools[0].slices[0].content)


def test_observed_fingerprint_reuses_a_known_one_only_for_equal_content() -> None:
    api = FakeSliceApi()
    want = desired(GPUS)
    api.execute(plan(api, want))
    obj = next(iter(api.objects.values()))
    content = {"devices": obj["spec"]["devices"]}
    honest = ObservedSlice.from_api(obj).content_print
    assert ObservedSlice.from_api(obj, known=(content, "reused")).content_print == "reused"
    other = {"devices": obj["spec"]["devices"][:1]}
    assert ObservedSlice.from_api(obj, known=(other, "reused")).content_print == honest
