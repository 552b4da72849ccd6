"""Hostile inputs that need a controller of their own: a YAML alias bomb (the controller is killed
afterwards), and deleting the ConfigMap or an overlay. Each test runs one controller at a time."""

from __future__ import annotations

import copy
import time

import pytest

from dra_kwok.core.render import ANNOTATION_SOURCE
from tests.faults.support import Rest, events, lines_at, log_lines, ready_reason
from tests.faults.test_bad_input import CM, World, dump, good_config
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def test_yaml_alias_bomb_is_rejected_without_freezing_the_controller(scenario: Scenario, rest: Rest) -> None:
    """3 KB of YAML anchors (`devices: *d400` in 400 mappings) expand to 160,000 devices. The
    ConfigMap handler runs in the event loop: the controller must stay responsive and report it."""
    ctl = ControllerProcess(
        scenario.cluster.kubeconfig, scenario.namespace, scenario.managed_by, scenario.workdir / "c.log"
    )
    world = World(scenario, rest, ctl)
    world.set_config(dump(good_config(scenario.tag)))
    ctl.start()
    try:
        n = 400
        bomb = (
            f"driver: {DRIVER}\n"
            "d: &d {name: gpu}\n"
            "devs: &devs [" + ", ".join(["*d"] * n) + "]\n"
            "m: &m {name: m, nodeSelector: {matchLabels: {a: b}}, resourceSlice: {devices: *devs}}\n"
            "mappings: [" + ", ".join(["*m"] * n) + "]\n"
        )
        assert len(bomb) < 4000
        started = time.monotonic()
        world.set_config(bomb)
        stalls = []
        while time.monotonic() - started < 6:
            t = time.monotonic()
            if not world.healthy_within(2.0):
                stalls.append(round(t - started, 1))
            time.sleep(0.5)
        assert not stalls, (
            f"/healthz did not answer within 2 s at {stalls} s after the ConfigMap update: the event loop is "
            f"blocked expanding the aliases (log size now {world.ctl.log_path.stat().st_size} bytes)"
        )
        wait_until(
            lambda: events(scenario.cluster, scenario.namespace, "InvalidConfiguration", CM) or None,
            timeout=10,
            what="the bomb to be reported",
        )
    finally:
        world.ctl.kill()  # a frozen controller would otherwise burn a core for minutes


# --- deletions -----------------------------------------------------------------------------------


def test_configmap_deleted_removes_only_the_mappings_slices_until_it_is_back(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(dump(good_config(scenario.tag)))
    mapped, overlaid = scenario.unique("mapped"), scenario.unique("overlaid")
    overlay = scenario.unique("overlay")
    scenario.overlay(overlay, scenario.overlay_spec([{"name": "h100"}], instance_type="gpu-overlay"))
    scenario.node(mapped, instance_type="gpu-small")
    scenario.node(overlaid, instance_type="gpu-overlay")
    wait_until(lambda: len(scenario.slices()) == 2, timeout=15, what="both slices")
    [kept] = scenario.slices(overlaid)

    scenario.cluster.kubectl("delete", "configmap", CM, "-n", scenario.namespace)
    wait_until(lambda: not scenario.slices(mapped), timeout=15, what="the mapping's slice to go")
    assert scenario.slices(overlaid) == [kept], "the overlay's slice is untouched"
    assert "deleted: no fallback mappings until it is recreated" in controller.log()
    assert controller.metric('dra_kwok_config_reloads_total{result="deleted",source="configmap"}') == 1
    assert controller.alive
    assert not lines_at(log_lines(controller), "ERROR")

    scenario.config(dump(good_config(scenario.tag)))
    wait_until(lambda: scenario.device_names(mapped) == ["gpu-0", "gpu-1"], timeout=15, what="the mapping again")
    assert scenario.slices(overlaid) == [kept]


def test_overlay_deleted_falls_back_to_the_configmap_or_to_nothing(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    cluster = scenario.cluster
    scenario.config(dump(good_config(scenario.tag)))
    both, only_overlay = scenario.unique("both"), scenario.unique("only")
    scenario.node(both, instance_type="gpu-small")
    scenario.node(only_overlay, instance_type="gpu-overlay")
    covers_both = scenario.overlay_spec([{"name": "h100"}], instance_type="gpu-small")
    covers_both["requirements"][1]["values"] = ["gpu-small", "gpu-overlay"]
    overlay = scenario.unique("overlay")
    scenario.overlay(overlay, covers_both)
    wait_until(
        lambda: scenario.device_names(both) == ["h100"] and scenario.device_names(only_overlay) == ["h100"],
        timeout=15,
        what="the overlay on both nodes",
    )
    # Made invalid (past admission): its last good spec stays in force until it is deleted.
    broken = copy.deepcopy(covers_both)
    broken["resourceSlices"][0]["spec"]["devices"] = [{"name": "h100"}, {"name": "h100"}]
    scenario.overlay(overlay, broken)
    wait_until(
        lambda: ready_reason(cluster, overlay) == "InvalidSpec",
        timeout=15,
        what="InvalidSpec",
    )
    assert scenario.device_names(both) == ["h100"]

    # An overlay that was never valid: deleting it changes nothing.
    never = scenario.unique("never")
    scenario.overlay(never, broken | {"weight": 99})
    wait_until(
        lambda: ready_reason(cluster, never, "Nothing is published from it") == "InvalidSpec",
        timeout=15,
        what="the never-valid overlay's status",
    )
    writes = controller.writes()
    cluster.kubectl("delete", "dranodeoverlay", never)
    time.sleep(1)
    assert controller.writes() == writes

    cluster.kubectl("delete", "dranodeoverlay", overlay)
    wait_until(
        lambda: scenario.device_names(both) == ["gpu-0", "gpu-1"] and not scenario.slices(only_overlay),
        timeout=15,
        what="the mapping on one node and nothing on the other",
    )
    [slice_] = scenario.slices(both)
    assert slice_["metadata"]["annotations"][ANNOTATION_SOURCE] == "mapping/small"
    assert controller.alive
    errors = [line for line in lines_at(log_lines(controller), "ERROR") if " is invalid: " not in line]
    assert not errors, "only the invalid overlays are errors"
