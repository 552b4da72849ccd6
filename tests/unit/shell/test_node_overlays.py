"""The NodeOverlay writer's bookkeeping: one write per change (the echo of our own write is not a
change), a NodeOverlay kept while its DRANodeOverlay is invalid since the start, deleted when
the DRANodeOverlay goes, and one left alone when another manager keeps it. The apiserver's side
(SSA, the NodeOverlay CRD's rules, the garbage collector) is in tests/integration/test_node_overlays.py."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from dra_kwok.core.node_overlays import node_overlay_name
from dra_kwok.shell.node_overlays import NodeOverlayWriter
from dra_kwok.shell.world import World
from tests.unit.core.builders import DRIVER, device, overlay, template
from tests.unit.shell.builders import SETTINGS
from tests.unit.shell.fake_slice_api import FakeSliceApi

CLASS = {
    "metadata": {"name": DRIVER},
    "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}], "extendedResourceName": "x.io/g"},
}


def dra_overlay(count: int, uid: str = "u1", generation: int = 1, **spec: Any) -> dict[str, Any]:
    obj = overlay("h100", weight=3, templates=[template(DRIVER, [device("gpu", count=count)])], **spec)
    obj["metadata"].update(uid=uid, generation=generation)
    return obj


def writer() -> tuple[World, NodeOverlayWriter, FakeSliceApi]:
    world = World(SETTINGS)
    api = FakeSliceApi()
    w = NodeOverlayWriter(world, api)
    w.on_device_class("ADDED", CLASS)
    return world, w, api


def sync(w: NodeOverlayWriter) -> bool:
    return asyncio.run(w.sync())


NAME = node_overlay_name("h100")


def test_one_write_per_change_and_none_for_the_echo() -> None:
    world, w, api = writer()
    world.on_overlay("ADDED", dra_overlay(4))
    assert sync(w) and api.calls == [("apply-unforced", NAME)]
    stored = api.objects[NAME]
    assert stored["spec"]["capacity"] == {"x.io/g": "4", f"deviceclass.resource.kubernetes.io/{DRIVER}": "4"}
    w.on_node_overlay("ADDED", copy.deepcopy(stored))  # the watch's echo of our write
    assert sync(w) and api.calls == [("apply-unforced", NAME)]
    world.on_overlay("MODIFIED", dra_overlay(5, generation=2))
    assert sync(w) and api.calls[-1] == ("apply-unforced", NAME) and len(api.calls) == 2
    assert api.objects[NAME]["spec"]["capacity"]["x.io/g"] == "5"


def test_kept_while_its_overlay_is_invalid_since_the_start_and_deleted_when_it_goes() -> None:
    world, w, api = writer()
    world.on_overlay("ADDED", dra_overlay(4))
    sync(w)
    stored = copy.deepcopy(api.objects[NAME])
    # A new process: the NodeOverlay as listed, the DRANodeOverlay invalid (duplicate device names).
    world2, w2, api2 = writer()
    api2.objects[NAME] = stored
    bad = dra_overlay(4, generation=2)
    bad["spec"]["resourceSlices"][0]["spec"]["devices"].append({"name": "gpu-1"})
    world2.on_overlay("ADDED", bad)
    assert world2.overlays["h100"].rule is None
    w2.on_node_overlay(None, stored)
    assert sync(w2) and api2.calls == []
    world2.on_overlay("DELETED", bad)
    assert sync(w2) and api2.calls == [("delete", NAME)]


def test_a_node_overlay_another_manager_keeps_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    world, w, api = writer()
    api.owner[NAME] = "kubectl-edit"
    world.on_overlay("ADDED", dra_overlay(4))
    assert sync(w)  # nothing to retry: it is theirs
    assert sync(w)
    assert api.calls == [("apply-unforced", NAME)] * 2 and NAME not in api.objects
    [said] = [r for r in caplog.records if "kept by another field manager" in r.getMessage()]
    assert "fix:" in said.getMessage()


def test_no_device_class_with_a_resource_means_no_node_overlay_unless_capacity_is_written() -> None:
    world = World(SETTINGS)
    api = FakeSliceApi()
    w = NodeOverlayWriter(world, api)
    world.on_overlay("ADDED", dra_overlay(4))
    assert sync(w) and api.calls == []
    world.on_overlay("MODIFIED", dra_overlay(4, generation=2, capacity={"x.io/g": "4"}))
    assert sync(w) and api.objects[NAME]["spec"]["capacity"] == {"x.io/g": "4"}


def test_refused_content_is_not_sent_again_until_something_changes() -> None:
    world, w, api = writer()
    api.refuse = lambda obj: 'spec.requirements[0].key: label domain "karpenter.sh" is restricted'
    world.on_overlay("ADDED", dra_overlay(4))
    assert sync(w)  # nothing to retry: the same content would be refused again
    assert api.calls == [("apply-unforced", NAME)] and NAME not in api.objects
    api.refuse = lambda obj: None
    world.on_overlay("MODIFIED", dra_overlay(5, generation=2))
    assert sync(w) and api.objects[NAME]["spec"]["capacity"]["x.io/g"] == "5"
