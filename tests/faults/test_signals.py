"""Where users look: overlay status, `kubectl get dno` and Events say what went wrong and when it
is fixed. The apiserver's own rejection comes from a real ValidatingAdmissionPolicy (a 422 for
slices with devices named `refused-*`, only for this test's managed-by label)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dra_kwok.core.render import LABEL_MANAGED_BY
from tests.faults.support import events, ready_condition
from tests.integration.conftest import DRIVER, Scenario
from tests.support.cluster import KubectlError
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

REFUSAL = "devices named refused-* are not allowed in this cluster"


def slice_template(driver: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "spec": {"driver": driver, "devices": devices}}


def event_wait(scenario: Scenario, namespace: str, reason: str, name: str, ctl: ControllerProcess) -> dict[str, Any]:
    def describe() -> str:
        kind = "configmap" if namespace == scenario.namespace else "dranodeoverlay"
        state = scenario.cluster.get_json(kind, name, *(["-n", namespace] if kind == "configmap" else []))
        seen = [(e["reason"], e["message"][:200]) for e in events(scenario.cluster, namespace, None, name)]
        return f"status: {json.dumps(state.get('status'))}\nevents on it: {seen}\n{ctl.log()}"

    found: list[dict[str, Any]] = wait_until(
        lambda: events(scenario.cluster, namespace, reason, name) or None,
        timeout=20,
        what=f"a {reason} Event on {name}",
        describe=describe,
    )
    return found[-1]


@pytest.fixture
def refusing_policy(scenario: Scenario) -> Iterator[None]:
    """A ValidatingAdmissionPolicy refusing this scenario's slices with `refused-*` devices."""
    name = f"refuse-{scenario.tag}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["resource.k8s.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["resourceslices"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.spec.devices) || "
                    "!object.spec.devices.exists(d, d.name.startsWith('refused'))",
                    "message": REFUSAL,
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"objectSelector": {"matchLabels": {LABEL_MANAGED_BY: scenario.managed_by}}},
        },
    }
    scenario.cluster.apply(policy, binding)
    probe = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"probe-{scenario.tag}", "labels": {LABEL_MANAGED_BY: scenario.managed_by}},
        "spec": {"driver": DRIVER, "pool": {"name": "p", "generation": 1, "resourceSliceCount": 1}, "allNodes": True,
                 "devices": [{"name": "refused-0"}]},
    }  # fmt: skip

    def in_force() -> bool:
        try:
            scenario.cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe))
        except KubectlError as exc:
            return REFUSAL in exc.stderr
        return False

    wait_until(in_force, timeout=30, what="the admission policy to be in force")
    yield
    scenario.cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)


def test_a_slice_the_apiserver_rejects_is_publish_failed_with_an_event_and_no_rewrite_loop(
    scenario: Scenario, controller: ControllerProcess, refusing_policy: None
) -> None:
    cluster = scenario.cluster
    node = scenario.unique("kwok")
    scenario.node(node, instance_type="refused-type")
    overlay = scenario.unique("refused")
    scenario.overlay(
        overlay, scenario.overlay_spec([{"name": "refused-gpu", "count": 2}], instance_type="refused-type")
    )
    ready = wait_until(
        lambda: r if (r := ready_condition(cluster, overlay)) and r["reason"] == "PublishFailed" else None,
        timeout=20,
        what="Ready=False PublishFailed",
        describe=controller.log,
    )
    assert ready["status"] == "False"
    assert node in ready["message"] and REFUSAL in ready["message"], ready["message"]
    warning = event_wait(scenario, "default", "PublishFailed", overlay, controller)
    assert warning["type"] == "Warning" and REFUSAL in warning["message"]
    assert controller.metric('dra_kwok_publish_problems_total{reason="rejected"}') >= 1
    applies = controller.metric('dra_kwok_api_requests_total{code="422",verb="apply"}')
    time.sleep(5)
    assert controller.metric('dra_kwok_api_requests_total{code="422",verb="apply"}') == applies, "not resent in a loop"

    # Fixed: published, Ready again, and a Normal Event says so.
    scenario.overlay(overlay, scenario.overlay_spec([{"name": "gpu", "count": 2}], instance_type="refused-type"))
    wait_until(lambda: len(scenario.device_names(node)) == 2, timeout=20, what="the fixed overlay's pool")
    wait_until(
        lambda: (ready_condition(cluster, overlay) or {}).get("reason") == "Applied",
        timeout=20,
        what="Ready=True Applied",
    )
    assert event_wait(scenario, "default", "Published", overlay, controller)["type"] == "Normal"


def test_a_mapping_the_apiserver_rejects_gets_a_warning_event_on_the_configmap(
    scenario: Scenario, controller: ControllerProcess, refusing_policy: None
) -> None:
    scenario.config(scenario.mapping_config(count=1).replace("name: gpu", "name: refused-gpu"))
    node = scenario.unique("kwok")
    scenario.node(node)
    warning = event_wait(scenario, scenario.namespace, "PublishFailed", "dra-kwok-configmap", controller)
    assert warning["type"] == "Warning"
    assert "mapping small" in warning["message"] and node in warning["message"] and REFUSAL in warning["message"]
    scenario.config(scenario.mapping_config(count=1))
    wait_until(lambda: scenario.slices(node) or None, timeout=20, what="the fixed mapping's slice")
    resolved = event_wait(scenario, scenario.namespace, "PublishFailedResolved", "dra-kwok-configmap", controller)
    assert resolved["type"] == "Normal"


def test_equal_weight_conflict_gets_a_warning_and_its_end_a_normal_event(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    node = scenario.unique("kwok")
    scenario.node(node)
    loser, winner = f"a-{scenario.tag}", f"b-{scenario.tag}"  # the later name wins at equal weight
    scenario.overlay(loser, scenario.overlay_spec([{"name": "gpu", "count": 1}]))
    scenario.overlay(winner, scenario.overlay_spec([{"name": "gpu", "count": 2}]))
    warning = event_wait(scenario, "default", "Conflict", loser, controller)
    assert warning["type"] == "Warning" and winner in warning["message"], warning["message"]
    assert f"DRANodeOverlay {loser}: Conflict" in controller.log()
    scenario.cluster.kubectl("delete", "dranodeoverlay", winner)
    assert event_wait(scenario, "default", "ConflictResolved", loser, controller)["type"] == "Normal"


def test_an_invalid_overlay_counts_its_nodes_and_a_fix_gets_a_normal_event(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    cluster = scenario.cluster
    node = scenario.unique("kwok")
    scenario.node(node)
    overlay = scenario.unique("dup")
    spec = scenario.overlay_spec([{"name": "gpu"}])
    spec["resourceSlices"].append(slice_template(DRIVER, [{"name": "gpu"}]))  # the same device name twice
    scenario.overlay(overlay, spec)
    wait_until(
        lambda: (ready_condition(cluster, overlay) or {}).get("reason") == "InvalidSpec",
        timeout=20,
        what="Ready=False InvalidSpec",
    )
    status = cluster.get_json("dranodeoverlay", overlay)["status"]
    assert status["matchedNodes"] == 1, "NODES counts the KWOK nodes an invalid overlay matches"
    scenario.overlay(overlay, scenario.overlay_spec([{"name": "gpu"}]))
    assert event_wait(scenario, "default", "SpecValid", overlay, controller)["type"] == "Normal"


def test_a_configmap_fixed_after_being_invalid_gets_a_normal_event(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config("driver: [broken\n")
    event_wait(scenario, scenario.namespace, "InvalidConfiguration", "dra-kwok-configmap", controller)
    scenario.config(scenario.mapping_config(count=1))
    valid = event_wait(scenario, scenario.namespace, "ConfigurationValid", "dra-kwok-configmap", controller)
    assert valid["type"] == "Normal" and "1 mapping(s)" in valid["message"]
