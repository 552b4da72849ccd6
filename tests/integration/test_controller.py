"""The controller against a real kube-apiserver, kube-scheduler, kube-controller-manager and kwok.

Each test runs `dra-kwok run` as a subprocess with its own ConfigMap namespace and managed-by
value, and nodes carrying a label only it uses, so tests never see each other's slices.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dra_kwok.core.render import ANNOTATION_SOURCE, LABEL_DRIVER, LABEL_MANAGED_BY, LABEL_NODE
from tests.integration.conftest import DRIVER, Scenario
from tests.support.controller import ControllerProcess
from tests.support.names import multi_slice_name
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def pool_is_complete(slices: list[dict[str, Any]]) -> bool:
    """The scheduler's rule: all slices at one generation, as many as resourceSliceCount says."""
    if not slices:
        return False
    gens = {s["spec"]["pool"]["generation"] for s in slices}
    counts = {s["spec"]["pool"]["resourceSliceCount"] for s in slices}
    return len(gens) == 1 and counts == {len(slices)}


@pytest.mark.versions
def test_new_node_gets_seed_named_slice_and_the_scheduler_allocates_from_it(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(scenario.mapping_config(count=2))
    node = scenario.unique("kwok-gpu")
    created = time.monotonic()
    obj = scenario.node(node)
    [slice_] = wait_until(lambda: scenario.slices(node) or None, timeout=10, what=f"a slice for {node}")
    print(f"node created -> slice visible: {time.monotonic() - created:.3f}s")

    assert slice_["metadata"]["name"] == f"{node}-devices"
    spec = slice_["spec"]
    assert spec["driver"] == DRIVER
    assert spec["nodeName"] == node
    assert spec["pool"] == {"name": f"{node}-device-pool", "generation": 1, "resourceSliceCount": 1}
    assert [d["name"] for d in spec["devices"]] == ["gpu-0", "gpu-1"]
    assert spec["devices"][0]["attributes"] == {"model": {"string": "t4"}, "memory": {"string": "16Gi"}}
    assert spec["devices"][0]["capacity"] == {"memory": {"value": "16Gi"}}
    [owner] = slice_["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": node,
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }
    assert slice_["metadata"]["labels"] == {
        LABEL_MANAGED_BY: scenario.managed_by,
        LABEL_NODE: node,
        LABEL_DRIVER: DRIVER,
    }
    assert slice_["metadata"]["annotations"][ANNOTATION_SOURCE] == "mapping/small"

    # The real scheduler allocates a device of that pool to a claim, and the pod runs on the node.
    cluster, ns = scenario.cluster, scenario.namespace
    dc = scenario.unique("dc")
    scenario.cleanup.delete_later("deviceclass", dc)
    cluster.apply(
        {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": dc},
         "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
         "metadata": {"name": "gpu", "namespace": ns},
         "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": dc}}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dra-pod", "namespace": ns},
         "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                  "containers": [{"name": "c", "image": "busybox", "resources": {"claims": [{"name": "gpu"}]}}],
                  "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu"}]}},
    )  # fmt: skip

    def running() -> bool:
        pod = cluster.get_json("pod", "dra-pod", "-n", ns)
        return pod["status"].get("phase") == "Running" and pod["spec"].get("nodeName") == node

    wait_until(
        running,
        timeout=60,
        what="the DRA pod to run",
        describe=lambda: cluster.kubectl("get", "pod,resourceclaim", "-n", ns, "-o", "yaml"),
    )
    [claim] = cluster.get_json("resourceclaims", "-n", ns)["items"]
    [result] = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"]) == (DRIVER, f"{node}-device-pool")
    assert result["device"] in ("gpu-0", "gpu-1")


def test_configmap_change_updates_devices_and_bumps_generation(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(scenario.mapping_config(count=2))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: scenario.device_names(node) == ["gpu-0", "gpu-1"], timeout=10, what="two devices")
    changed = time.monotonic()
    scenario.config(scenario.mapping_config(count=3))
    wait_until(
        lambda: scenario.device_names(node) == ["gpu-0", "gpu-1", "gpu-2"],
        timeout=10,
        what="three devices",
        interval=0.05,
    )
    print(f"ConfigMap edit -> slice updated: {time.monotonic() - changed:.3f}s")
    [slice_] = scenario.slices(node)
    assert slice_["spec"]["pool"]["generation"] == 2


@pytest.mark.versions
def test_pool_of_many_devices_spans_slices_with_one_generation(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(scenario.mapping_config(count=200))
    node = scenario.unique("kwok")
    scenario.node(node)
    slices = wait_until(lambda: s if len(s := scenario.slices(node)) == 2 else None, timeout=15, what="2 slices")
    assert [s["metadata"]["name"] for s in slices] == [
        multi_slice_name(node, DRIVER, 0),
        multi_slice_name(node, DRIVER, 1),
    ]
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 72]
    assert pool_is_complete(slices)
    assert {s["spec"]["pool"]["generation"] for s in slices} == {1}

    scenario.config(scenario.mapping_config(count=200).replace("t4", "a100"))

    def regenerated() -> list[dict[str, Any]] | None:
        s = scenario.slices(node)
        models = {d["attributes"]["model"]["string"] for x in s for d in x["spec"]["devices"]}
        return s if models == {"a100"} and pool_is_complete(s) else None

    slices = wait_until(regenerated, timeout=15, what="both slices to be regenerated together")
    assert {s["spec"]["pool"]["generation"] for s in slices} == {2}


def test_overlay_takes_precedence_and_configmap_takes_over_when_it_is_deleted(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: scenario.device_names(node) == ["gpu-0"], timeout=10, what="the mapping's device")

    overlay = scenario.unique("overlay")
    devices = [{"name": "h100", "count": 4, "attributes": {"model": "h100", "uuid": "GPU-{nodeHash}-{index}"}}]
    scenario.overlay(overlay, scenario.overlay_spec(devices))
    wait_until(
        lambda: scenario.device_names(node) == ["h100-0", "h100-1", "h100-2", "h100-3"],
        timeout=10,
        what="the overlay's devices",
    )
    [slice_] = scenario.slices(node)
    assert slice_["metadata"]["annotations"][ANNOTATION_SOURCE] == f"overlay/{overlay}"
    uuids = {d["attributes"]["uuid"]["string"] for d in slice_["spec"]["devices"]}
    assert len(uuids) == 4

    def status() -> dict[str, Any] | None:
        st = scenario.cluster.get_json("dranodeoverlay", overlay).get("status") or {}
        return st if st.get("matchedNodes") == 1 else None

    st = wait_until(status, timeout=15, what="the overlay status")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Applied")
    assert st["observedGeneration"] == 1

    scenario.cluster.kubectl("delete", "dranodeoverlay", overlay)
    wait_until(lambda: scenario.device_names(node) == ["gpu-0"], timeout=10, what="the ConfigMap to take over again")
    [slice_] = scenario.slices(node)
    assert slice_["metadata"]["annotations"][ANNOTATION_SOURCE] == "mapping/small"


def test_equal_weight_overlays_conflict_and_the_loser_says_so(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    node = scenario.unique("kwok")
    scenario.node(node)
    a, b = f"{scenario.tag}-a", f"{scenario.tag}-b"
    scenario.overlay(a, scenario.overlay_spec([{"name": "from-a"}], weight=5))
    scenario.overlay(b, scenario.overlay_spec([{"name": "from-b"}], weight=5))
    # Karpenter orders equal weights by name descending: b wins, a is in conflict.
    wait_until(lambda: scenario.device_names(node) == ["from-b"], timeout=10, what="the later-named overlay to win")

    def conflict() -> dict[str, Any] | None:
        conds = (scenario.cluster.get_json("dranodeoverlay", a).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Conflict" and c["status"] == "True"), None)

    cond = wait_until(conflict, timeout=15, what="a Conflict condition on the losing overlay")
    assert b in cond["message"] and DRIVER in cond["message"]
    b_conds = scenario.cluster.get_json("dranodeoverlay", b)["status"]["conditions"]
    assert next(c for c in b_conds if c["type"] == "Conflict")["status"] == "False"


def test_relabel_delete_and_recreate_with_new_uid(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice")
    cluster = scenario.cluster

    cluster.kubectl("label", "node", node, "node.kubernetes.io/instance-type=cpu-only", "--overwrite")
    wait_until(lambda: not scenario.slices(node), timeout=10, what="the slice to go when the node stops matching")
    cluster.kubectl("label", "node", node, "node.kubernetes.io/instance-type=gpu-small", "--overwrite")
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="the slice to come back")

    cluster.kubectl("delete", "node", node)
    wait_until(lambda: not scenario.slices(node), timeout=10, what="the slice to go with the node")
    recreated = scenario.node(node)
    [slice_] = wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice for the recreated node")
    assert slice_["metadata"]["ownerReferences"][0]["uid"] == recreated["metadata"]["uid"]


def test_slices_edited_or_deleted_by_someone_else_are_repaired(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    scenario.config(scenario.mapping_config(count=3))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: len(scenario.device_names(node)) == 3, timeout=10, what="three devices")
    name = f"{node}-devices"
    cluster = scenario.cluster
    cluster.kubectl(
        "patch", "resourceslice", name, "--type=json", "-p", '[{"op": "remove", "path": "/spec/devices/0"}]'
    )
    wait_until(lambda: len(scenario.device_names(node)) == 3, timeout=10, what="the removed device to be restored")
    cluster.kubectl("delete", "resourceslice", name)
    [slice_] = wait_until(lambda: scenario.slices(node) or None, timeout=10, what="the deleted slice to be recreated")
    assert pool_is_complete([slice_])


def test_invalid_configmap_keeps_the_last_good_configuration(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=2))
    node = scenario.unique("kwok")
    scenario.node(node)
    [before] = wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice")
    writes = controller.writes()

    scenario.config("driver: [not valid\nmappings: {")

    def warning() -> dict[str, Any] | None:
        events = scenario.cluster.get_json("events", "-n", scenario.namespace)["items"]
        return next((e for e in events if e["reason"] == "InvalidConfiguration"), None)

    event = wait_until(warning, timeout=10, what="a Warning Event on the ConfigMap")
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "dra-kwok-configmap"
    assert "not valid YAML" in event["message"] and "last valid configuration stays in force" in event["message"]
    time.sleep(1)
    [after] = scenario.slices(node)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert controller.writes() == writes
    assert "is invalid" in controller.log()

    scenario.config(scenario.mapping_config(count=1))
    wait_until(lambda: scenario.device_names(node) == ["gpu-0"], timeout=10, what="a fixed configuration to apply")


def test_invalid_overlay_reports_its_condition_and_keeps_the_last_good_spec(
    scenario: Scenario, controller: ControllerProcess
) -> None:
    node = scenario.unique("kwok")
    scenario.node(node)
    overlay = scenario.unique("overlay")
    scenario.overlay(overlay, scenario.overlay_spec([{"name": "gpu", "count": 2}]))
    wait_until(lambda: scenario.device_names(node) == ["gpu-0", "gpu-1"], timeout=10, what="the overlay's devices")
    # Duplicate device names across two entries: valid to the schema, invalid as a pool.
    bad = scenario.overlay_spec([{"name": "gpu", "count": 2}, {"name": "gpu-1"}])
    scenario.overlay(overlay, bad)

    def invalid() -> dict[str, Any] | None:
        st = scenario.cluster.get_json("dranodeoverlay", overlay).get("status") or {}
        ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "InvalidSpec" and st.get("observedGeneration") == 2 else None

    ready = wait_until(invalid, timeout=15, what="Ready=False InvalidSpec")
    assert ready["status"] == "False"
    assert "gpu-1" in ready["message"] and "last valid spec" in ready["message"]
    events = scenario.cluster.get_json("events", "-n", "default")["items"]
    assert any(e["reason"] == "InvalidSpec" and e["involvedObject"]["name"] == overlay for e in events)
    assert scenario.device_names(node) == ["gpu-0", "gpu-1"]


def test_deleted_configmap_means_no_fallback_mappings(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    scenario.node(node)
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice")
    scenario.cluster.kubectl("delete", "configmap", "dra-kwok-configmap", "-n", scenario.namespace)
    wait_until(lambda: not scenario.slices(node), timeout=10, what="the mapping's slices to be removed")
    assert controller.alive
    scenario.config(scenario.mapping_config(count=1))
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="slices once the ConfigMap is back")


def test_nothing_is_written_onto_nodes(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    before = scenario.node(node)
    wait_until(lambda: scenario.slices(node) or None, timeout=10, what="a slice")
    scenario.config(scenario.mapping_config(count=2))
    wait_until(lambda: len(scenario.device_names(node)) == 2, timeout=10, what="an update")
    after = scenario.cluster.get_json("node", node)
    managers = {m["manager"] for m in after["metadata"].get("managedFields") or []}
    assert not managers & {"dra-kwok-driver", "kopf"}, managers
    assert after["metadata"].get("finalizers") is None
    # Other components (kwok, the apiserver) add their own keys; none of ours or kopf's appear.
    keys = set(after["metadata"].get("annotations") or {}) | set(after["metadata"]["labels"])
    assert not [k for k in keys if k.startswith(("dra-kwok.test.karpenter.sh/", "kopf.")) or "kopf" in k], keys
    assert before["metadata"]["labels"].items() <= after["metadata"]["labels"].items()


def test_only_kwok_nodes_and_only_own_slices(scenario: Scenario, controller: ControllerProcess) -> None:
    scenario.config(scenario.mapping_config(count=1))
    cluster = scenario.cluster
    real = scenario.unique("real")
    scenario.cleanup.delete_later("node", real)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": real,
                "labels": {"dra-kwok-test": scenario.tag, "node.kubernetes.io/instance-type": "gpu-small"},
            },
        }
    )
    node = scenario.unique("kwok")
    scenario.node(node)
    # A slice with our label but another driver is ours (nothing desires it: deleted); an
    # unlabelled slice on our node is someone else's (it stays).
    foreign = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-foreign", "labels": {LABEL_MANAGED_BY: scenario.managed_by, LABEL_NODE: node}},
        "spec": {
            "driver": "other.example.com",
            "nodeName": node,
            "pool": {"name": "p", "generation": 1, "resourceSliceCount": 1},
            "devices": [],
        },
    }
    unlabelled = {**foreign, "metadata": {"name": f"{node}-theirs"}}
    for obj in (foreign, unlabelled):
        scenario.cleanup.delete_later("resourceslice", obj["metadata"]["name"])
    cluster.apply(foreign, unlabelled)
    wait_until(
        lambda: any(s["spec"]["driver"] == DRIVER for s in scenario.slices(node)),
        timeout=10,
        what="our slice on the KWOK node",
    )
    wait_until(
        lambda: f"{node}-foreign" not in {s["metadata"]["name"] for s in scenario.slices(node)},
        timeout=10,
        what="our labelled slice of a driver nothing names to be deleted",
    )
    time.sleep(1.5)
    names = {s["metadata"]["name"] for s in cluster.get_json("resourceslices")["items"]}
    assert {f"{node}-theirs", f"{node}-devices"} <= names
    assert f"{node}-foreign" not in names
    assert not [n for n in names if n.startswith(real)]
