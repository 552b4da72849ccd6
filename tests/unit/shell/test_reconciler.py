"""The Reconciler in process, against an in-memory slice API: it carries out what `decide()`
returns and records what became of the writes, through the World."""

from __future__ import annotations

import asyncio
from typing import Any

from dra_kwok.core.plan import ObservedSlice
from dra_kwok.shell.reconciler import BUCKET_SIZE, Reconciler
from dra_kwok.shell.world import World
from tests.unit.core.builders import config, device, mapping
from tests.unit.shell.builders import SETTINGS, configmap, node
from tests.unit.shell.fake_slice_api import FakeSliceApi

SLICE = "n1-devices"


def setup(doc: dict[str, Any] | None = None) -> tuple[World, FakeSliceApi, Reconciler]:
    world = World(SETTINGS)
    api = FakeSliceApi()
    world.on_configmap(None, configmap(doc or config()))
    world.on_node("ADDED", node("n1"))
    return world, api, Reconciler(world, api, workers=1)


def reconcile(r: Reconciler, name: str = "n1") -> None:
    asyncio.run(r.reconcile(name))


def echo(world: World, api: FakeSliceApi) -> None:
    """The watch events of what the fake API holds now, as the slice Reflector would deliver them."""
    for obj in api.objects.values():
        world.on_slice("MODIFIED", obj)


def test_a_new_node_is_published_in_one_round_then_nothing_is_written() -> None:
    world, api, r = setup()
    reconcile(r)
    assert api.writes() == [("apply-unforced", SLICE)]
    assert api.objects[SLICE]["spec"]["pool"] == {"name": "n1-device-pool", "generation": 1, "resourceSliceCount": 1}
    assert world.take_publish_latency("n1") is None  # taken when the writes were done, no second pass
    echo(world, api)
    reconcile(r)
    assert len(api.writes()) == 1


def test_a_changed_configuration_rewrites_the_pool_at_the_next_generation() -> None:
    world, api, r = setup()
    reconcile(r)
    world.on_configmap(None, configmap(config(mapping(devices=[device("a"), device("b")]))))
    reconcile(r)
    assert [d["name"] for d in api.objects[SLICE]["spec"]["devices"]] == ["a", "b"]
    assert api.objects[SLICE]["spec"]["pool"]["generation"] == 2


def test_a_deleted_node_loses_its_slices() -> None:
    world, api, r = setup()
    reconcile(r)
    world.on_node("DELETED", node("n1"))
    reconcile(r)
    assert api.objects == {}
    assert api.writes()[-1] == ("delete", SLICE)
    assert not world.knows("n1")


def test_content_the_apiserver_refuses_is_not_sent_again_until_it_changes() -> None:
    world, api, r = setup()
    api.refuse = lambda obj: "spec.devices[0].attributes: Invalid value: a CEL rule"
    reconcile(r)
    reconcile(r)
    reconcile(r)
    assert api.writes() == [("apply-unforced", SLICE)]  # once, not in a loop
    problem = world.view("n1").problem
    assert problem is not None and problem.reason == "PublishFailed"
    assert problem.sources == ("mapping/m",) and "CEL rule" in problem.message
    api.refuse = lambda obj: None
    world.on_configmap(None, configmap(config(mapping(devices=[device("other")]))))
    reconcile(r)
    assert len(api.writes()) == 2 and SLICE in api.objects
    assert world.view("n1").problem is None


def test_fields_the_apiserver_drops_are_reported_and_not_rewritten() -> None:
    world, api, r = setup(config(mapping(devices=[device("gpu", bindsToNode=True)])))

    def drop(obj: dict[str, Any]) -> None:
        for d in obj["spec"]["devices"]:
            d.pop("bindsToNode", None)

    api.mutate = drop
    reconcile(r)
    problem = world.view("n1").problem
    assert problem is not None and problem.reason == "FieldsDropped"
    assert "bindsToNode" in problem.message and SLICE in problem.message
    echo(world, api)
    reconcile(r)
    assert len(api.writes()) == 1  # what was stored is taken as what we meant


def test_a_slice_another_installation_publishes_is_left_alone() -> None:
    _, api, r = setup()
    api.put(
        {
            "metadata": {"name": SLICE, "labels": {"dra-kwok.test.karpenter.sh/managed-by": "other-install"}},
            "spec": {"nodeName": "n1", "driver": "gpu.example.com", "pool": {"name": "n1-device-pool"}},
        },
        manager="other-install",
    )
    reconcile(r)
    assert api.calls == [("apply-unforced", SLICE), ("get", SLICE)]  # never forced
    assert api.objects[SLICE]["metadata"]["labels"]["dra-kwok.test.karpenter.sh/managed-by"] == "other-install"


def test_someone_elses_edit_of_our_slice_is_taken_back() -> None:
    world, api, r = setup()
    reconcile(r)
    edited = api.objects[SLICE]
    edited["spec"]["devices"] = []
    api.put(edited, manager="kubectl-edit")
    world.on_slice("MODIFIED", api.objects[SLICE])
    reconcile(r)
    assert api.calls[-3:] == [("apply-unforced", SLICE), ("get", SLICE), ("apply", SLICE)]
    assert api.objects[SLICE]["spec"]["devices"] != []


def test_a_template_that_does_not_fit_the_node_writes_nothing_and_is_recorded() -> None:
    # Valid as a template; but with this node's name the attribute exceeds 64 bytes.
    world, api, r = setup(config(mapping(devices=[device("gpu", attributes={"host": "host-{nodeName}"})])))
    long_name = "n" * 70
    world.on_node("ADDED", node(long_name))
    reconcile(r, long_name)
    assert api.writes() == []
    failure = world.outcomes().render_failures.get(long_name)
    assert failure is not None and failure.sources == ("mapping/m",)
    assert "at most 64 bytes" in failure.problem, failure.problem
    world.on_node("DELETED", node(long_name))
    reconcile(r, long_name)
    assert world.outcomes().render_failures == {}


def test_a_node_fighting_a_writer_is_throttled_by_its_budget() -> None:
    world, api, r = setup()
    for _ in range(int(BUCKET_SIZE) + 3):
        api.objects.clear()  # someone deletes the slice each time
        world.forget_slice(SLICE)
        reconcile(r)
    applies = [c for c in api.writes() if c[0].startswith("apply")]
    assert len(applies) == int(BUCKET_SIZE)  # then throttled, re-queued for later


def test_the_published_record_of_an_apply_is_the_response() -> None:
    world, api, r = setup()
    reconcile(r)
    (held,) = world.view("n1").observed
    assert held == ObservedSlice.from_api(api.objects[SLICE])
