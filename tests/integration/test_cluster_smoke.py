"""The local cluster can run the whole DRA loop with no driver at all: a hand-written
ResourceSlice for a KWOK Node is allocated by the scheduler to a Pod's claim, kwok runs the Pod,
and the controller-manager releases the claim when the Pod goes. Plus: RBAC is enforced for a
ServiceAccount token, as the driver's chart will rely on."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cleanup, Cluster, KubectlError, kwok_node
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

TIMEOUT = 60.0  # seconds; every step below takes a few seconds on a 2-core machine


def yaml_of(cluster: Cluster, *args: str) -> Callable[[], str]:
    """For wait_until(describe=...): the current YAML of the named objects."""

    def describe() -> str:
        out = []
        for ref in args:
            kind, _, rest = ref.partition("/")
            name, _, ns = rest.partition("@")
            names = [name] if name else []  # "kind/@ns": all of that kind in the namespace
            try:
                out.append(cluster.kubectl("get", kind, *names, *(["-n", ns] if ns else []), "-o", "yaml"))
            except KubectlError as e:
                out.append(f"{ref}: {e}")
        return "\n---\n".join(out)

    return describe


def node_ready(cluster: Cluster, name: str) -> bool:
    node = cluster.get_json("node", name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


@pytest.mark.versions
def test_scheduler_allocates_a_handwritten_slice_to_a_pod_on_a_kwok_node(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], cleanup: Cleanup
) -> None:
    node = unique_name("kwok-smoke")
    driver = f"gpu-{secrets.token_hex(3)}.smoke.dra-kwok.test"  # unique: no other slice matches
    device_class = unique_name("smoke-gpu")

    cleanup.delete_later("node", node)
    cluster.apply(kwok_node(node, cpu="32", memory="256Gi", pods="110"))
    wait_until(
        lambda: node_ready(cluster, node),
        timeout=TIMEOUT,
        what=f"kwok to mark node {node} Ready",
        describe=yaml_of(cluster, f"node/{node}"),
    )

    slice_name = f"{node}-{driver}"
    cleanup.delete_later("resourceslice", slice_name)
    cleanup.delete_later("deviceclass", device_class)
    cluster.apply(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": slice_name},
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                "devices": [
                    {
                        "name": "gpu-0",
                        "attributes": {
                            "model": {"string": "A100-SXM4-80GB"},
                            "index": {"int": 0},
                            "driverVersion": {"version": "1.0.0"},
                        },
                        "capacity": {"memory": {"value": "80Gi"}},
                    }
                ],
            },
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "one-gpu", "namespace": namespace},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {
                                "name": "gpu",
                                "exactly": {
                                    "deviceClassName": device_class,
                                    "selectors": [
                                        {
                                            "cel": {
                                                "expression": f'device.attributes["{driver}"].model.startsWith("A100")'
                                            }
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "uses-gpu", "namespace": namespace},
            "spec": {
                "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "claims": [{"name": "gpu"}],
                        },
                    }
                ],
            },
        },
    )
    pod_ref = f"pod/uses-gpu@{namespace}"

    def running_pod() -> dict[str, Any] | None:
        pod: dict[str, Any] = cluster.get_json("pod", "uses-gpu", "-n", namespace)
        return pod if pod["status"].get("phase") == "Running" else None

    pod = wait_until(
        running_pod,
        timeout=TIMEOUT,
        what="the pod to be scheduled and Running",
        describe=yaml_of(cluster, pod_ref, f"resourceclaims/@{namespace}"),
    )
    assert pod["spec"]["nodeName"] == node

    statuses = pod["status"].get("resourceClaimStatuses", [])
    assert [s["name"] for s in statuses] == ["gpu"], statuses
    claim_name = statuses[0]["resourceClaimName"]
    claim_ref = f"resourceclaim/{claim_name}@{namespace}"
    claim = cluster.get_json("resourceclaim", claim_name, "-n", namespace)
    results = claim["status"]["allocation"]["devices"]["results"]
    assert [(r["request"], r["driver"], r["pool"], r["device"]) for r in results] == [("gpu", driver, node, "gpu-0")], (
        yaml_of(cluster, claim_ref)()
    )
    assert [r["name"] for r in claim["status"].get("reservedFor", [])] == ["uses-gpu"]

    # kwok finishes the deletion (no kubelet); KCM's resourceclaim controller then releases the
    # claim and, as it was made from a template for this pod, deletes it.
    cluster.kubectl("delete", "pod", "uses-gpu", "-n", namespace, "--wait=false")

    def claim_released() -> bool:
        try:
            current = cluster.get_json("resourceclaim", claim_name, "-n", namespace)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return True
            raise
        status = current.get("status", {})
        return not status.get("allocation") and not status.get("reservedFor")

    wait_until(
        claim_released,
        timeout=TIMEOUT,
        what=f"claim {claim_name} to be deleted or deallocated",
        describe=yaml_of(cluster, claim_ref, pod_ref),
    )


def test_service_account_token_is_subject_to_rbac(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], cleanup: Cleanup, tmp_path: Path
) -> None:
    sa = "slice-reader"
    role = unique_name("smoke-slice-reader")
    cluster.kubectl("create", "serviceaccount", sa, "-n", namespace)
    as_sa = cluster.service_account_kubeconfig(namespace, sa, tmp_path / "sa.kubeconfig")

    with pytest.raises(KubectlError) as denied:
        cluster.kubectl("get", "resourceslices", kubeconfig=as_sa)
    assert "forbidden" in denied.value.stderr.lower(), denied.value.stderr
    assert f"system:serviceaccount:{namespace}:{sa}" in denied.value.stderr

    cleanup.delete_later("clusterrolebinding", role)
    cleanup.delete_later("clusterrole", role)
    cluster.kubectl("create", "clusterrole", role, "--verb=get,list,watch", "--resource=resourceslices.resource.k8s.io")
    cluster.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}", f"--serviceaccount={namespace}:{sa}")

    def allowed() -> bool:
        cluster.kubectl("get", "resourceslices", kubeconfig=as_sa)
        return True

    wait_until(allowed, timeout=TIMEOUT, what="the ClusterRoleBinding to allow listing resourceslices")
    # Still only what was granted: writing slices stays forbidden.
    with pytest.raises(KubectlError) as still_denied:
        cluster.kubectl("auth", "can-i", "create", "resourceslices.resource.k8s.io", kubeconfig=as_sa)
    assert still_denied.value.stdout.strip() == "no", still_denied.value
