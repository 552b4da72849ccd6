"""The World in process: what each watch event changes, which nodes it makes dirty, and what it
hands out for the decision. No API: the World does no I/O."""

from __future__ import annotations

from dra_kwok.core.decide import Decision, NodeView, Outcome, PublishProblem, RenderFailure, WriteResult
from dra_kwok.core.plan import NodePlan, ObservedSlice
from dra_kwok.core.resolve import Conflict
from dra_kwok.shell.world import World
from tests.unit.core.builders import config, overlay
from tests.unit.shell.builders import SETTINGS, configmap, node, with_meta


def slice_obj(name: str, node_name: str, rv: str, uid: str = "s-uid", managed_by: str = "dra-kwok-driver") -> dict:
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "resourceVersion": rv,
            "labels": {"dra-kwok.test.karpenter.sh/managed-by": managed_by},
        },
        "spec": {
            "nodeName": node_name,
            "driver": "gpu.example.com",
            "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "gpu-0"}],
        },
    }


def test_a_kwok_node_is_dirty_once_and_an_unchanged_event_is_not() -> None:
    w = World(SETTINGS)
    assert w.on_node("ADDED", node("n1")) == ["n1"]
    assert w.on_node("MODIFIED", node("n1")) == []  # status-only update: same UID and labels
    assert w.on_node("MODIFIED", node("n1", zone="a")) == ["n1"]
    assert w.view("n1").node is not None and w.view("n1").labels["zone"] == "a"


def test_a_node_that_is_not_kwok_is_not_held() -> None:
    w = World(SETTINGS)
    assert w.on_node("ADDED", node("real", kwok=False)) == []
    assert w.view("real").node is None
    assert not w.knows("real")


def test_the_deletion_of_an_older_incarnation_is_ignored() -> None:
    # Recreated under the same name: the new Node's ADDED can arrive before the old one's DELETED.
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1", uid="old"))
    w.on_node("MODIFIED", node("n1", uid="new"))
    assert w.on_node("DELETED", node("n1", uid="old")) == []
    view = w.view("n1").node
    assert view is not None and view.uid == "new"
    w.on_node("DELETED", node("n1", uid="new"))
    assert w.view("n1").node is None


def test_the_echo_of_our_own_write_does_not_make_the_node_dirty() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    ours = ObservedSlice.from_api(slice_obj("n1-devices", "n1", "5"))
    w.record_applied(ours, ours.content_print)
    assert w.on_slice("MODIFIED", slice_obj("n1-devices", "n1", "5")) == []  # our write's echo
    assert w.on_slice("MODIFIED", slice_obj("n1-devices", "n1", "6")) == ["n1"]  # someone else's edit


def test_a_stale_event_never_replaces_what_our_write_returned() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    w.on_slice("ADDED", slice_obj("n1-devices", "n1", "7"))
    ours = ObservedSlice.from_api(slice_obj("n1-devices", "n1", "9"))
    w.record_applied(ours, ours.content_print)
    assert w.on_slice("MODIFIED", slice_obj("n1-devices", "n1", "8")) == []  # older than our write
    (held,) = w.view("n1").observed
    assert held.resource_version == "9"


def test_a_slice_of_another_installation_is_not_held() -> None:
    w = World(SETTINGS)
    assert w.on_slice("ADDED", slice_obj("n1-devices", "n1", "3", managed_by="someone-else")) == []
    assert not w.knows("n1")


def test_deleting_an_older_slice_incarnation_keeps_the_new_one() -> None:
    w = World(SETTINGS)
    w.on_slice("ADDED", slice_obj("n1-devices", "n1", "3", uid="new"))
    assert w.on_slice("DELETED", slice_obj("n1-devices", "n1", "2", uid="old")) == []
    assert [s.uid for s in w.view("n1").observed] == ["new"]
    assert w.on_slice("DELETED", slice_obj("n1-devices", "n1", "4", uid="new")) == ["n1"]
    assert list(w.view("n1").observed) == []


def test_missing_names_what_a_listing_lacks_and_nothing_reported_since() -> None:
    w = World(SETTINGS)
    for name in ("a", "b", "c"):
        w.on_node("ADDED", node(name))
    since = w.touched[("node", "c")] + 1e-6  # the listing began after every event so far
    assert sorted(w.missing("node", ["a"], since)) == ["b", "c"]
    w.touch("node", "b")  # an event for b after the listing began: not taken as deleted
    assert w.missing("node", ["a"], since) == ["c"]


def test_configuration_changes_make_every_node_dirty_and_change_what_is_decided_against() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    before = w.sources()
    changed, dirty = w.on_configmap(None, configmap(config()))
    assert changed and dirty == ["n1"]
    after = w.sources()
    assert after is not before and len(after.config.mappings) == 1
    assert w.sources() is after  # rebuilt only when something changed
    changed, dirty = w.on_overlay(None, with_meta(overlay("o1"), uid="o-uid", generation=1))
    assert changed and dirty == ["n1"]
    assert [o.name for o in w.sources().overlays] == ["o1"]


def test_an_invalid_configmap_keeps_the_last_valid_one_and_protects_nothing_new() -> None:
    w = World(SETTINGS)
    w.on_configmap(None, configmap(config()))
    changed, dirty = w.on_configmap(None, configmap({"mappings": "not a list"}))
    assert (changed, dirty) == (False, [])
    assert len(w.sources().config.mappings) == 1  # the last valid configuration stays
    assert w.sources().protected == frozenset()  # it has been valid once: not "unknown"
    assert [name for name, _ in w.invalid_documents()] == ["configmap"]


def test_a_configmap_never_valid_protects_what_mappings_published() -> None:
    w = World(SETTINGS)
    w.on_configmap(None, configmap({"mappings": "not a list"}))
    assert w.sources().protected == frozenset({"mapping/*"})


def _decision(node: str, **fields: object) -> Decision:
    return Decision(node, Outcome.IN_SYNC, NodePlan(node), **fields)  # type: ignore[arg-type]


def test_recorded_decisions_are_what_status_reports_and_each_change_is_announced() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    announced: list[int] = []
    w.on_change = lambda: announced.append(w.version)
    lost = (Conflict("o2", "gpu.example.com", "o1", 10),)
    w.record(_decision("n1", conflicts=lost))
    assert w.outcomes().conflicts == {"n1": lost} and len(announced) == 1
    w.record(_decision("n1", conflicts=lost))
    assert len(announced) == 1  # the same decision again: nothing new to report
    failure = RenderFailure(("overlay/o1",), "too many devices")
    w.record(_decision("n1", render_failure=failure))
    assert w.outcomes().conflicts == {} and w.outcomes().render_failures == {"n1": failure}
    assert len(announced) == 3
    w.on_node("DELETED", node("n1"))
    assert w.outcomes().render_failures == {}


def test_a_refused_write_is_remembered_until_a_decision_clears_it() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    key = frozenset({("n1-devices", "print")})
    write = Decision("n1", Outcome.WRITE, NodePlan("n1"), content_key=key, sources=("mapping/m",))
    w.record_result(write, WriteResult(refused="spec.devices[0].name: Invalid value"))
    view = w.view("n1")
    assert view.rejected == key
    assert view.problem == PublishProblem("PublishFailed", ("mapping/m",), "spec.devices[0].name: Invalid value")
    w.record(_decision("n1"))  # in sync again: what is published is wanted again
    assert w.view("n1").rejected is None and w.view("n1").problem is None


def test_publish_latency_is_taken_once_per_node() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    first = w.take_publish_latency("n1")
    assert first is not None and first >= 0
    assert w.take_publish_latency("n1") is None
    w.on_node("MODIFIED", node("n1", uid="recreated"))
    assert w.take_publish_latency("n1") is not None  # a new Node under the same name


def test_a_view_is_what_decide_needs() -> None:
    w = World(SETTINGS)
    w.on_node("ADDED", node("n1"))
    w.on_slice("ADDED", slice_obj("n1-devices", "n1", "3"))
    view = w.view("n1")
    assert isinstance(view, NodeView)
    assert [s.name for s in view.observed] == ["n1-devices"]
    assert view.node is not None and view.node.uid == "uid-n1"
