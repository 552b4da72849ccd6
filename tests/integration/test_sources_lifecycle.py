"""Sources that go away: a slice carrying this installation's label is its own whatever driver it
names, so when nothing desires it any more (an overlay deleted, a driver renamed, the ConfigMap
deleted, even while the controller was down) it is deleted; a source that is invalid right now
keeps what it published. Restarts are real SIGKILLs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import DRIVER, Scenario
from tests.integration.test_controller import pool_is_complete
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

OTHER_DRIVER = "fpga.dra-kwok.example.com"  # named by no ConfigMap in these tests


def drivers(scenario: Scenario, node: str) -> set[str]:
    return {s["spec"]["driver"] for s in scenario.slices(node)}


@pytest.fixture
def crashed_controller(scenario: Scenario) -> Iterator[Callable[[str], ControllerProcess]]:
    """Starts controllers that the test kills; any still alive at the end are killed too."""
    started: list[ControllerProcess] = []

    def start(log: str) -> ControllerProcess:
        ctl = ControllerProcess(
            scenario.cluster.kubeconfig, scenario.namespace, scenario.managed_by, scenario.workdir / log
        )
        started.append(ctl)
        return ctl.start()

    yield start
    for ctl in started:
        ctl.kill()


def test_an_overlay_deleted_while_the_controller_was_down_leaves_no_slices(
    scenario: Scenario, crashed_controller: Callable[[str], ControllerProcess]
) -> None:
    scenario.config(scenario.mapping_config(count=1))  # names DRIVER only
    node = scenario.unique("kwok")
    scenario.node(node, instance_type="fpga-big")
    overlay = scenario.unique("fpga")
    scenario.overlay(
        overlay, scenario.overlay_spec([{"name": "fpga", "count": 2}], instance_type="fpga-big", driver=OTHER_DRIVER)
    )
    first = crashed_controller("first.log")
    wait_until(lambda: drivers(scenario, node) == {OTHER_DRIVER}, timeout=15, what="the overlay's pool")
    first.kill()
    scenario.cluster.kubectl("delete", "dranodeoverlay", overlay)
    with scenario.controller() as second:
        wait_until(
            lambda: not scenario.slices(node),
            timeout=15,
            what="the deleted overlay's slices to be deleted after the restart",
            describe=second.log,
        )
        assert "is not one of ours" not in second.log()


def test_a_driver_renamed_while_the_controller_was_down_is_replaced_not_kept(
    scenario: Scenario, crashed_controller: Callable[[str], ControllerProcess]
) -> None:
    scenario.config(scenario.mapping_config(count=2))
    node = scenario.unique("kwok")
    scenario.node(node)
    first = crashed_controller("first.log")
    wait_until(lambda: drivers(scenario, node) == {DRIVER}, timeout=15, what="the mapping's pool")
    first.kill()
    scenario.config(scenario.mapping_config(count=2).replace(DRIVER, OTHER_DRIVER))
    with scenario.controller():
        wait_until(
            lambda: drivers(scenario, node) == {OTHER_DRIVER} and pool_is_complete(scenario.slices(node)),
            timeout=15,
            what="only the renamed driver's pool",
            describe=lambda: str([(s["metadata"]["name"], s["spec"]["driver"]) for s in scenario.slices(node)]),
        )
        assert len(scenario.device_names(node)) == 2


def test_an_invalid_source_keeps_its_slices_across_a_restart_and_a_deleted_one_does_not(
    scenario: Scenario, crashed_controller: Callable[[str], ControllerProcess]
) -> None:
    scenario.config(scenario.mapping_config(count=2))
    node = scenario.unique("kwok")
    scenario.node(node)
    first = crashed_controller("first.log")
    wait_until(lambda: len(scenario.device_names(node)) == 2, timeout=15, what="the mapping's pool")
    published = scenario.slices(node)
    first.kill()
    scenario.config("driver: [not, a, string]\nmappings: 7\n")  # invalid: its configuration is unknown now
    with scenario.controller() as second:
        wait_until(lambda: "is invalid" in second.log(), timeout=15, what="the invalid ConfigMap to be read")
        time.sleep(2)  # time enough for a wrong delete to happen
        assert scenario.slices(node) == published, "bad input loses nothing"
        scenario.cluster.kubectl("delete", "configmap", "dra-kwok-configmap", "-n", scenario.namespace)
        wait_until(lambda: not scenario.slices(node), timeout=15, what="the deleted ConfigMap's slices to go")
