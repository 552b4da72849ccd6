"""An apiserver that drops fields of a feature it does not enable answers 200 with the fields
gone. On a cluster of its own with `DRADeviceBindingConditions=false` (a gate that is on by
default from 1.36):

- the controller learns it at startup (its dry-run probe comes back without the fields): a
  template with binding conditions is refused before publishing, the overlay's Ready condition
  names the version, the field and the gate, and nothing is written for it;
- told a wrong version by flag (no probe), it publishes, sees the fields dropped in the answer:
  the overlay says FieldsDropped (naming the fields), a Warning Event and a metric count it, and
  the pool is not rewritten in a loop."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.support import events, ready_condition
from tests.integration.conftest import CRD_FILE, Scenario
from tests.support.cluster import Cleanup, Cluster, running_cluster
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def gated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("gated"), feature_gates="DRADeviceBindingConditions=false") as c:
        c.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        c.wait_established("crd/dranodeoverlays.test.karpenter.sh")
        yield c


DEVICE = {
    "name": "gpu",
    "count": 2,
    "bindsToNode": True,
    "bindingConditions": ["dra.example.com/attached"],
    "bindingFailureConditions": ["dra.example.com/failed"],
}


def gated_scenario(cluster: Cluster, tmp_path: Path) -> tuple[Scenario, str, str]:
    namespace = f"gated-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    scenario = Scenario(cluster, namespace, Cleanup(cluster), tmp_path)
    node = scenario.unique("kwok")
    scenario.node(node)
    overlay = scenario.unique("binding")
    scenario.overlay(overlay, scenario.overlay_spec([DEVICE]))
    return scenario, node, overlay


def test_a_feature_the_apiserver_drops_is_refused_before_publishing(gated_cluster: Cluster, tmp_path: Path) -> None:
    scenario, node, overlay = gated_scenario(gated_cluster, tmp_path)
    with scenario.controller() as ctl:
        ready = wait_until(
            lambda: r if (r := ready_condition(gated_cluster, overlay)) and r["reason"] == "InvalidSpec" else None,
            timeout=30,
            what="Ready=False InvalidSpec",
            describe=ctl.log,
        )
        message = ready["message"]
        assert ready["status"] == "False"
        assert "devices[0].bindingConditions" in message and "DRADeviceBindingConditions" in message, message
        assert "(as the apiserver answered)" in message and "--feature-gates=DRADeviceBindingConditions=true" in message
        assert "gates from the apiserver): taints on, partitionable on, consumable on, binding off" in ctl.log()
        assert "could not learn" not in ctl.log(), "every probe was answered (a refused one means off)"
        assert ctl.metric('dra_kwok_dra_feature_enabled{feature="binding"}') == 0
        assert ctl.metric('dra_kwok_dra_feature_enabled{feature="taints"}') == 1
        time.sleep(3)
        assert scenario.slices(node) == [], "nothing is published for the refused overlay"
        assert ctl.writes() == 0
        assert not [k for k, v in ctl.metrics().items() if 'code="422"' in k and 'verb="probe"' not in k and v]


def test_fields_the_apiserver_drops_are_reported_not_rewritten(gated_cluster: Cluster, tmp_path: Path) -> None:
    scenario, node, overlay = gated_scenario(gated_cluster, tmp_path)
    # Told the version by flag, the controller does not probe and takes 1.37's defaults: wrong here.
    with scenario.controller("--kubernetes-version", "1.37.2") as ctl:
        ready = wait_until(
            lambda: r if (r := ready_condition(gated_cluster, overlay)) and r["reason"] == "FieldsDropped" else None,
            timeout=30,
            what="Ready=False FieldsDropped",
            describe=ctl.log,
        )
        assert ready["status"] == "False"
        assert "spec.devices[0].bindingConditions" in ready["message"], ready["message"]
        assert node in ready["message"]
        stored = scenario.slices(node)
        assert len(stored) == 1 and len(stored[0]["spec"]["devices"]) == 2, "the rest is published"
        assert "bindingConditions" not in stored[0]["spec"]["devices"][0]
        found = wait_until(
            lambda: events(gated_cluster, "default", "FieldsDropped", overlay) or None,
            timeout=20,
            what="a FieldsDropped Event",
        )
        assert found[-1]["type"] == "Warning"
        assert ctl.metric('dra_kwok_publish_problems_total{reason="fields_dropped"}') >= 1
        writes = ctl.writes()
        time.sleep(5)
        assert ctl.writes() == writes, "the pool is not rewritten in a loop"
        generation = scenario.slices(node)[0]["spec"]["pool"]["generation"]
        assert generation == stored[0]["spec"]["pool"]["generation"]
