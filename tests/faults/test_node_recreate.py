"""A node deleted and created again under the same name, with other labels, within a second (a
cloud instance replaced, a KWOK node re-registered): the controller ends with the slices for the
new labels, owned by the new UID, whatever the order in which it sees the two events."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.faults.support import NODES, Oracle, Rest, node_manifest
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess

pytestmark = pytest.mark.cluster

OTHER_DRIVER = "nic.dra-kwok.example.com"


def config(tag: str) -> str:
    def mapping(name: str, instance_type: str, slice_: dict[str, object]) -> dict[str, object]:
        labels = {"dra-kwok-test": tag, "node.kubernetes.io/instance-type": instance_type}
        return {"name": name, "nodeSelector": {"matchLabels": labels}, "resourceSlice": slice_}

    return yaml.safe_dump(
        {
            "driver": DRIVER,
            "mappings": [
                mapping("small", "gpu-small", {"devices": [{"name": "gpu", "count": 2}]}),
                mapping("large", "gpu-large", {"devices": [{"name": "gpu", "count": 200}]}),  # two slices
                mapping("nic", "nic-only", {"driver": OTHER_DRIVER, "devices": [{"name": "nic", "count": 4}]}),
            ],
        }
    )


# (instance type of the recreated node, pause between the delete and the create)
ROUNDS = [("gpu-large", 0.0), ("nic-only", 0.2), ("gpu-small", 0.0), ("gpu-small", 0.5), ("gpu-large", 0.9)]


def test_node_recreated_within_a_second_with_other_labels_ends_with_new_slices_and_owner(
    scenario: Scenario, controller: ControllerProcess, rest: Rest
) -> None:
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag)
    scenario.config(oracle.config_text)
    name = scenario.unique("kwok")
    bystander = scenario.unique("kwok")
    scenario.node(bystander, instance_type="gpu-small")
    scenario.node(name, instance_type="gpu-small")
    oracle.wait_exact(20, "the first slices", controller)
    uids = {rest.request("GET", f"{NODES}/{name}")[1]["metadata"]["uid"]}
    timings = []
    for instance_type, pause in ROUNDS:
        started = time.monotonic()
        rest.delete(NODES, name)
        time.sleep(pause)
        created = rest.create(NODES, node_manifest(name, scenario.tag, instance_type))
        gap = time.monotonic() - started
        assert gap < 1.0, f"delete and create took {gap:.2f}s"
        uid = created["metadata"]["uid"]
        assert uid not in uids
        uids.add(uid)
        took = oracle.wait_exact(30, f"the slices for {instance_type} owned by {uid}", controller)
        timings.append((instance_type, pause, round(took, 2)))
        for s in scenario.slices(name):
            assert [o["uid"] for o in s["metadata"]["ownerReferences"]] == [uid]
    print("recreated as (instance type, pause, seconds to converge):", timings)

    # Stays that way: no late deletion by the garbage collector (old owner) or by a stale event.
    writes = controller.writes()
    time.sleep(3)
    assert oracle.exact(), oracle.last
    assert controller.writes() == writes
