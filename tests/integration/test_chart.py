"""The Helm chart (charts/dra-kwok-driver), for real.

Without a cluster: `helm lint --strict`, the values schema's refusals, and what the templates render
(RBAC rule by rule, so nothing beyond what the controller needs slips in).

On the local cluster, which has no kubelet: the chart is installed with `replicaCount: 0` and the
controller runs as a local process in its place, with exactly the command, arguments and
environment of the rendered Deployment (read back from the release, so the test proves the chart's
configuration, not a copy of it) and a token of the chart's ServiceAccount instead of the mounted
one. It then has to do its whole job through the chart's RBAC, and that token is refused what the
controller must not do. `helm upgrade` must reach the slices; `helm uninstall` must leave none,
through the post-delete hook Job, whose pod the test runs the way a kubelet would (see
`run_hook_pod_as_kubelet`).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_kwok.core.config import load_config_text
from dra_kwok.core.issues import errors
from tests.support.chart import CHART, Helm, Release, container_env, find
from tests.support.cluster import Cleanup, Cluster, KubectlError, kwok_node
from tests.support.controller import ControllerProcess
from tests.support.pod import Image, PodContainer
from tests.support.wait import wait_until

EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
MANAGED_BY = "dra-kwok.test.karpenter.sh/managed-by"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
# The hook pod must not land on a KWOK node: kwok would fake its run (and its completion) without
# running anything. With this selector it stays Pending until the test plays its kubelet.
NO_NODE = {"dra-kwok.test/hook-runner": "the-test"}
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm.for_cluster(None)


def rules(role: Mapping[str, Any]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, resourceName or '*', verb) for every combination a Role grants."""
    return {
        (group, resource, name, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule["resources"]
        for name in rule.get("resourceNames", ["*"])
        for verb in rule["verbs"]
    }


def grants(group: str, resources: Sequence[str], verbs: Sequence[str], name: str = "*") -> set[tuple[str, ...]]:
    return {(group, r, name, v) for r in resources for v in verbs}


# --- without a cluster ---------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda v: v.name if v else "default-values")
def test_chart_lints_strictly(helm: Helm, values: Path | None) -> None:
    proc = helm.run("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "config.driver=karpenter.sh/dra-kwok-driver"],
            "at '/config/driver': 'karpenter.sh/dra-kwok-driver'",
        ),
        (["--set", "config.driver=Upper.Case"], "at '/config/driver'"),
        (["--set", "replicaCount=11"], "at '/replicaCount': maximum: got 11, want 10"),
        (
            ["--set", "replicaCount=2", "--set", "controller.leaderElection.enabled=false"],
            "replicaCount 2 needs controller.leaderElection.enabled=true",
        ),
        (
            ["--set", "controller.leaderElection.renewDeadline=20"],
            "retryPeriod (2) < renewDeadline (20) < leaseDuration (15) is needed",
        ),
        (["--set", "replicaCount=one"], "at '/replicaCount'"),
        (["--set", "metrics.port=70000"], "at '/metrics/port': maximum"),
        (["--set", "health.port=0"], "at '/health/port': minimum"),
        (["--set", "unknownTopLevel=1"], "additional properties 'unknownTopLevel' not allowed"),
        (["--set", "controller.logFormat=xml"], "at '/controller/logFormat': value must be one of 'json', 'text'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "configMap.create=yes"], "at '/configMap/create'"),
        (["--set", "deviceClasses[0].extendedResourceName=gpu"], "at '/deviceClasses/0/extendedResourceName'"),
        (["--set", "deviceClasses[0].extendedResourceName=kubernetes.io/gpu"], "must not be in the kubernetes.io/"),
        (["--set", "health.port=8080"], "metrics.port and health.port are both 8080"),
        (["--set", "config.driver="], "deviceClasses[0]: no driver: set deviceClasses[0].driver or config.driver"),
        (["--set-json", 'config.mappings=[{"name":"m"}]'], "at '/config/mappings/0': missing properties"),
        (["--set", "serviceAccount.create=false"], "set serviceAccount.name"),
        (
            ["--set-json", 'nodeExclusions=[{"key":"type","operator":"NotEqual"}]'],
            "at '/nodeExclusions/0/operator': value must be one of",
        ),
        (["--set-json", 'tolerations=[{"key":"a","operator":"Maybe"}]'], "at '/tolerations/0/operator'"),
        (["--set-json", 'cleanupJob.affinity={"nodeAffinty":{}}'], "additional properties 'nodeAffinty' not allowed"),
    ],
)
def test_values_schema_refuses_bad_values(helm: Helm, args: list[str], message: str) -> None:
    assert message in helm.template_error(*args)


def test_rbac_is_exactly_what_the_controller_needs(helm: Helm) -> None:
    docs = helm.template(namespace="karpenter")
    by_kind = [(d["kind"], d["metadata"]["name"]) for d in docs if "rbac" in d["apiVersion"]]
    assert sorted(by_kind) == sorted(
        [
            ("ClusterRole", "test-dra-kwok-driver"),
            ("ClusterRoleBinding", "test-dra-kwok-driver"),
            ("Role", "test-dra-kwok-driver"),
            ("RoleBinding", "test-dra-kwok-driver"),
            ("ClusterRole", "test-dra-kwok-driver-cleanup"),
            ("ClusterRoleBinding", "test-dra-kwok-driver-cleanup"),
        ]
    )
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("driver"))
    assert rules(cluster_role) == (
        grants("", ["nodes"], ["get", "list", "watch"])
        | grants("resource.k8s.io", ["resourceslices"], ["get", "list", "watch", "create", "patch", "update", "delete"])
        | grants("test.karpenter.sh", ["dranodeoverlays"], ["get", "list", "watch"])
        | grants("test.karpenter.sh", ["dranodeoverlays/status"], ["get", "patch", "update"])
        | grants("", ["events"], ["create", "patch"])
    )
    role = find(docs, "Role")
    assert role["metadata"]["namespace"] == "karpenter"
    lease_rules = grants("coordination.k8s.io", ["leases"], ["get", "update"], name="test-dra-kwok-driver") | grants(
        "coordination.k8s.io", ["leases"], ["create"]
    )
    assert rules(role) == grants("", ["configmaps"], ["get", "list", "watch"], name="dra-kwok-configmap") | lease_rules
    # Without leader election: no Lease rules (and at most one replica, strategy Recreate).
    docs_single = helm.template("--set", "controller.leaderElection.enabled=false", "--set", "replicaCount=1")
    assert rules(find(docs_single, "Role")) == grants(
        "", ["configmaps"], ["get", "list", "watch"], name="dra-kwok-configmap"
    )
    hook_role = find(docs, "ClusterRole", "-cleanup")
    assert rules(hook_role) == grants("resource.k8s.io", ["resourceslices"], ["list", "delete"])
    for doc in docs:
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert doc["subjects"] == [
                {"kind": "ServiceAccount", "name": doc["roleRef"]["name"], "namespace": "karpenter"}
            ]
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--simulate-claims" not in args
    # simulation.claims.enabled adds the claim rules (and the flag), resourceNames for the drivers.
    base = rules(cluster_role)
    for drivers, name in (([], "*"), (["gpu.example.com"], "gpu.example.com")):
        docs = helm.template(
            "--set", "simulation.claims.enabled=true", "--set-json", f"simulation.claims.drivers={json.dumps(drivers)}"
        )
        role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("driver"))
        assert rules(role) - base == (
            grants("resource.k8s.io", ["resourceclaims"], ["get", "list", "watch"])
            | grants("resource.k8s.io", ["resourceclaims/status"], ["patch", "update"])
            | grants(
                "resource.k8s.io", ["resourceclaims/driver"], ["arbitrary-node:patch", "arbitrary-node:update"], name
            )
            | grants("", ["pods"], ["get"])
        )
        container_args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--simulate-claims" in container_args
    # karpenter.nodeOverlays.enabled adds reading DeviceClasses and writing NodeOverlays (and the flag).
    docs = helm.template("--set", "karpenter.nodeOverlays.enabled=true")
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("driver"))
    assert rules(role) - base == grants("resource.k8s.io", ["deviceclasses"], ["get", "list", "watch"]) | grants(
        "karpenter.sh", ["nodeoverlays"], ["get", "list", "watch", "create", "patch", "update", "delete"]
    )
    assert "--karpenter-node-overlays" in find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--karpenter-node-overlays" not in str(helm.template())
    docs = helm.template(namespace="karpenter")
    # With an existing ConfigMap of another name, the Role follows the name, and nothing is rendered.
    docs = helm.template("--set", "configMap.create=false", "--set", "configMap.name=mine", namespace="karpenter")
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    assert rules(find(docs, "Role")) == grants("", ["configmaps"], ["get", "list", "watch"], name="mine") | lease_rules
    env = container_env(find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["DRA_KWOK_CONFIGMAP_NAME"] == "mine"


def test_hook_and_deployment_are_hardened(helm: Helm) -> None:
    docs = helm.template(namespace="karpenter")
    deployment = find(docs, "Deployment")
    # Two replicas with leader election: the new pod stands by until the old one gives the Lease up.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    env = container_env(deployment["spec"]["template"]["spec"]["containers"][0])
    assert (env["DRA_KWOK_LEADER_ELECT"], env["DRA_KWOK_LEASE_DURATION"]) == ("true", "15")
    single = find(
        helm.template("--set", "controller.leaderElection.enabled=false", "--set", "replicaCount=1"), "Deployment"
    )
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    assert "DRA_KWOK_LEADER_ELECT" not in container_env(single["spec"]["template"]["spec"]["containers"][0])
    pod = deployment["spec"]["template"]["spec"]
    job = find(docs, "Job", "-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    for spec in (pod, job["spec"]["template"]["spec"]):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 65532
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]
    (container,) = pod["containers"]
    env = container_env(container)
    assert env["DRA_KWOK_LOG_FORMAT"] == "json"
    assert env["DRA_KWOK_NAMESPACE"] == "karpenter"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": int(env["DRA_KWOK_METRICS_PORT"]), "health": int(env["DRA_KWOK_HEALTH_PORT"])}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # Optional objects are off by default and render when enabled.
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PodDisruptionBudget")]
    on = helm.template("--set", "metrics.serviceMonitor.enabled=true", "--set", "podDisruptionBudget.enabled=true")
    assert find(on, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    assert find(on, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    off = helm.template("--set", "cleanupOnUninstall=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("-cleanup")]


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda v: v.name if v else "default-values")
def test_rendered_configuration_is_valid_seed_format(helm: Helm, values: Path | None) -> None:
    docs = helm.template(*(["-f", str(values)] if values else []))
    given = yaml.safe_load(values.read_text()) if values else {}
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    if given.get("configMap", {}).get("create") is False:
        assert configmaps == []
        return
    (configmap,) = configmaps
    text = configmap["data"]["config.yaml"]
    config, issues = load_config_text(text)
    assert config is not None and not errors(issues), issues
    assert yaml.safe_load(text)["mappings"] == given.get("config", {}).get("mappings", [])


def test_device_classes(helm: Helm) -> None:
    (default,) = [d for d in helm.template() if d["kind"] == "DeviceClass"]
    assert default["metadata"]["name"] == "karpenter.sh.dra-kwok-driver"
    assert default["spec"] == {
        "selectors": [{"cel": {"expression": 'device.driver == "karpenter.sh.dra-kwok-driver"'}}]
    }
    classes = {
        d["metadata"]["name"]: d["spec"]
        for d in helm.template("-f", str(CHART / "examples" / "seed-values.yaml"))
        if d["kind"] == "DeviceClass"
    }
    gpu = classes["gpu.karpenter.sh.dra-kwok-driver"]
    assert gpu["extendedResourceName"] == "example.com/gpu"
    assert [s["cel"]["expression"] for s in gpu["selectors"]] == [
        'device.driver == "karpenter.sh.dra-kwok-driver"',
        'device.attributes["karpenter.sh.dra-kwok-driver"].device_class == "gpu"',
    ]
    assert "extendedResourceName" not in classes["karpenter.sh.dra-kwok-driver"]


# --- on the cluster ------------------------------------------------------------------------------
def chart_values(driver: str, instance_type: str, devices: int) -> dict[str, Any]:
    """Values for a test release: no pod (no kubelet here; the process that stands in for it binds
    free ports of its own, see Release.controller), and one mapping for nodes of `instance_type`."""
    return {
        "replicaCount": 0,
        "cleanupJob": {"nodeSelector": NO_NODE},
        "config": {
            "driver": driver,
            "mappings": [
                {
                    "name": "test-gpus",
                    "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type}},
                    "resourceSlice": {
                        "devices": [{"name": "gpu", "count": devices, "attributes": {"model": "T4", "memory": "16Gi"}}]
                    },
                }
            ],
        },
    }


@pytest.fixture
def release(cluster: Cluster, namespace: str, unique_name: Callable[[str], str], tmp_path: Path) -> Iterator[Release]:
    rel = Release(cluster, unique_name("dk"), namespace, tmp_path)
    yield rel
    rel.uninstall_without_hooks()


@pytest.fixture
def controllers() -> Iterator[list[ControllerProcess]]:
    """Controllers started by a test, stopped after it (with the log printed if one crashed)."""
    started: list[ControllerProcess] = []
    yield started
    for ctl in started:
        code = ctl.stop()
        if code not in (0, None, -signal.SIGTERM, -signal.SIGKILL):
            print(f"controller exited with {code}; log:\n{ctl.log()}")


def slices(cluster: Cluster, managed_by: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("resourceslices", "-l", f"{MANAGED_BY}={managed_by}")["items"]
    return items


def node_slice(cluster: Cluster, managed_by: str, node: str, devices: int) -> dict[str, Any] | None:
    """The node's only slice, once it has `devices` devices."""
    mine = [s for s in slices(cluster, managed_by) if s["spec"].get("nodeName") == node]
    if len(mine) == 1 and len(mine[0]["spec"].get("devices", [])) == devices:
        return mine[0]
    return None


def describe_slices(cluster: Cluster, ctl: ControllerProcess) -> Callable[[], str]:
    def describe() -> str:
        return yaml.safe_dump(slices(cluster, ctl.managed_by)) + "\ncontroller log:\n" + ctl.log()

    return describe


def assert_forbidden(cluster: Cluster, kubeconfig: Path, *args: str, input: str | None = None) -> None:
    with pytest.raises(KubectlError) as denied:
        cluster.kubectl(*args, kubeconfig=kubeconfig, input=input)
    assert "forbidden" in denied.value.stderr.lower(), denied.value.stderr
    assert "system:serviceaccount:" in denied.value.stderr, denied.value.stderr


def assert_no_403(ctl: ControllerProcess) -> None:
    refused = {k: v for k, v in ctl.metrics().items() if 'code="403"' in k}
    assert not refused, f"the chart's RBAC refused the controller: {refused}\n{ctl.log()}"
    assert "forbidden" not in ctl.log().lower(), ctl.log()


@pytest.mark.cluster
def test_chart_rbac_lets_the_controller_do_its_whole_job_and_nothing_more(
    cluster: Cluster,
    release: Release,
    controllers: list[ControllerProcess],
    unique_name: Callable[[str], str],
    cleanup: Cleanup,
) -> None:
    driver = f"{unique_name('gpu')}.chart.dra-kwok.test"
    overlay_driver = f"{unique_name('fpga')}.chart.dra-kwok.test"
    mapped_type, overlay_type = unique_name("mapped"), unique_name("overlaid")
    release.install(chart_values(driver, mapped_type, devices=2))
    ctl = release.controller()
    controllers.append(ctl.start())
    configmap = ctl.env["DRA_KWOK_CONFIGMAP_NAME"]

    # A KWOK node matching the chart's mapping gets its slice.
    mapped_node, overlaid_node = unique_name("chart-node"), unique_name("chart-node")
    cleanup.delete_later("node", mapped_node)
    cleanup.delete_later("node", overlaid_node)
    cluster.apply(
        kwok_node(mapped_node, labels={INSTANCE_TYPE: mapped_type}),
        kwok_node(overlaid_node, labels={INSTANCE_TYPE: overlay_type}),
    )
    published = wait_until(
        lambda: node_slice(cluster, ctl.managed_by, mapped_node, devices=2),
        timeout=TIMEOUT,
        what=f"a 2-device slice for node {mapped_node}",
        describe=describe_slices(cluster, ctl),
    )
    assert published["spec"]["driver"] == driver

    # A DRANodeOverlay (CRD installed by the chart) is applied and gets its status written.
    overlay = unique_name("chart-overlay")
    cleanup.delete_later("dranodeoverlay", overlay)
    cluster.apply(
        {
            "apiVersion": "test.karpenter.sh/v1alpha1",
            "kind": "DRANodeOverlay",
            "metadata": {"name": overlay},
            "spec": {
                "weight": 10,
                "requirements": [{"key": INSTANCE_TYPE, "operator": "In", "values": [overlay_type]}],
                "resourceSlices": [{"spec": {"driver": overlay_driver, "devices": [{"name": "fpga-0"}]}}],
            },
        }
    )

    def overlay_ready() -> dict[str, Any] | None:
        status: dict[str, Any] = cluster.get_json("dranodeoverlay", overlay).get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
        return status if ready and status.get("matchedNodes") == 1 else None

    wait_until(overlay_ready, timeout=TIMEOUT, what=f"overlay {overlay} status Ready, 1 node", describe=ctl.log)
    overlaid = wait_until(
        lambda: node_slice(cluster, ctl.managed_by, overlaid_node, devices=1),
        timeout=TIMEOUT,
        what=f"the overlay's slice for node {overlaid_node}",
        describe=describe_slices(cluster, ctl),
    )
    assert overlaid["spec"]["driver"] == overlay_driver

    # An invalid ConfigMap (as a user's edit would make it) gives a Warning Event; the last valid
    # configuration stays in force.
    cluster.kubectl(
        "patch", "configmap", configmap, "-n", release.namespace, "--type=merge",
        "-p", json.dumps({"data": {"config.yaml": "driver: Not/A/Driver\nmappings: []\n"}}),
    )  # fmt: skip

    def warning_event() -> dict[str, Any] | None:
        events = cluster.get_json(
            "events", "-n", release.namespace, "--field-selector", f"involvedObject.name={configmap}"
        )["items"]
        found = [e for e in events if e["reason"] == "InvalidConfiguration" and e["type"] == "Warning"]
        return found[0] if found else None

    event = wait_until(warning_event, timeout=TIMEOUT, what="an InvalidConfiguration Warning Event", describe=ctl.log)
    assert event["involvedObject"]["kind"] == "ConfigMap"
    assert "Not/A/Driver" in event["message"]
    assert node_slice(cluster, ctl.managed_by, mapped_node, devices=2) is not None

    # All of it went through the chart's RBAC without a single refusal, logged as JSON.
    assert_no_403(ctl)
    lines = [json.loads(line) for line in ctl.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    # And the same token is refused everything else.
    token = ctl.kubeconfig
    ns = release.namespace
    assert_forbidden(cluster, token, "get", "secrets", "-n", ns)
    assert_forbidden(cluster, token, "get", "secrets", "-A")
    assert_forbidden(cluster, token, "label", "node", mapped_node, "dra-kwok.test/touched=yes")
    assert_forbidden(
        cluster, token, "patch", "node", mapped_node, "--type=merge", "-p", '{"spec":{"unschedulable":true}}'
    )
    device_class = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": driver}}
    assert_forbidden(cluster, token, "create", "-f", "-", input=json.dumps(device_class))
    assert_forbidden(cluster, token, "get", "configmap", "kube-root-ca.crt", "-n", ns)
    assert_forbidden(cluster, token, "get", "configmaps", "-n", ns)  # a list without the name's field selector
    assert_forbidden(cluster, token, "get", "configmap", configmap, "-n", "default")
    # Only its own ConfigMap, by name or with the field selector the controller uses:
    cluster.kubectl("get", "configmap", configmap, "-n", ns, kubeconfig=token)
    cluster.kubectl("get", "configmaps", "-n", ns, f"--field-selector=metadata.name={configmap}", kubeconfig=token)
    for verb, resource in [
        ("create", "deviceclasses.resource.k8s.io"),
        ("update", "nodes"),
        ("delete", "nodes"),
        ("create", "pods"),
        ("get", "secrets"),
        ("update", "dranodeoverlays.test.karpenter.sh"),
        ("delete", "dranodeoverlays.test.karpenter.sh"),
        ("create", "configmaps"),
        ("update", f"configmaps/{configmap}"),
        ("create", "resourceclaims.resource.k8s.io"),
    ]:
        proc = subprocess.run(
            [str(cluster.bindir / "kubectl"), "--kubeconfig", str(token), "auth", "can-i", verb, resource, "-n", ns],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.stdout.strip() == "no", f"the controller's token can {verb} {resource}: {proc.stdout}{proc.stderr}"


def run_hook_pod_as_kubelet(cluster: Cluster, namespace: str, job_name: str, workdir: Path) -> str:
    """Plays the kubelet for the hook Job's (unschedulable, hence Pending) pod: runs its container
    as the image and the pod describe it (tests/support/pod.py: in-cluster configuration from a
    token bound to the pod, uid 65532, read-only root filesystem, the pod's command, args and env),
    then reports the exit code in the pod's status, as a kubelet would. The Job controller (the
    real kube-controller-manager) then completes or fails the Job, and Helm's wait on it goes on.
    Returns the container's output."""
    job = wait_until(
        lambda: cluster.get_json("job", job_name, "-n", namespace),
        timeout=TIMEOUT,
        what=f"the post-delete hook Job {job_name}",
    )
    assert job["spec"]["template"]["spec"]["nodeSelector"] == NO_NODE
    pod = wait_until(
        lambda: (cluster.get_json("pods", "-n", namespace, "-l", f"job-name={job_name}")["items"] or [None])[0],
        timeout=TIMEOUT,
        what=f"the pod of Job {job_name}",
    )
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName"), pod["status"]
    (workdir := workdir / "hook-pod").mkdir()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    container = PodContainer(cluster, pod, Image.from_dockerfile(), workdir)
    try:
        report = container.start().wait(timeout=120)
    finally:
        container.close()
    finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    code = report["exit_code"]
    terminated = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": started,
        "finishedAt": finished,
    }
    status = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container.container["name"],
                "image": container.container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    output = container.log()
    assert code == 0, f"{container.spec['argv']} exited {code}:\n{output}"
    assert report["written"] == [], f"the hook wrote {report['written']}"
    assert container.spec["argv"] == ["dra-kwok", "cleanup"] and "KUBECONFIG" not in container.spec["env"]
    return output


def kubectl_edit(cluster: Cluster, workdir: Path, *args: str, sed: str) -> None:
    """`kubectl edit ARGS` as a user runs it, with an editor that applies the sed expression."""
    editor = workdir / f"editor-{time.monotonic_ns()}.sh"
    editor.write_text(f'#!/bin/sh\nexec sed -i {shlex.quote(sed)} "$1"\n')
    editor.chmod(0o755)
    proc = subprocess.run(
        [str(cluster.bindir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "edit", *args],
        env={**os.environ, "KUBE_EDITOR": str(editor)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "edited" in proc.stdout, f"kubectl edit: {proc.stdout}{proc.stderr}"


def gone(cluster: Cluster, *args: str) -> bool:
    try:
        cluster.kubectl("get", *args)
    except KubectlError as e:
        if "NotFound" in e.stderr:
            return True
        raise
    return False


@pytest.mark.cluster
def test_chart_upgrade_changes_the_slices_and_uninstall_removes_them(
    cluster: Cluster,
    release: Release,
    controllers: list[ControllerProcess],
    unique_name: Callable[[str], str],
    cleanup: Cleanup,
) -> None:
    driver = f"{unique_name('gpu')}.chart.dra-kwok.test"
    instance_type = unique_name("upgraded")
    release.install(chart_values(driver, instance_type, devices=2))
    ctl = release.controller()
    controllers.append(ctl.start())
    node = unique_name("chart-node")
    cleanup.delete_later("node", node)
    cluster.apply(kwok_node(node, labels={INSTANCE_TYPE: instance_type}))
    before = wait_until(
        lambda: node_slice(cluster, ctl.managed_by, node, devices=2),
        timeout=TIMEOUT,
        what=f"a 2-device slice for node {node}",
        describe=describe_slices(cluster, ctl),
    )

    # A user edits the ConfigMap with `kubectl edit`, as the README suggests: the slice follows.
    configmap = ctl.env["DRA_KWOK_CONFIGMAP_NAME"]
    kubectl_edit(cluster, release.workdir, "configmap", configmap, "-n", release.namespace, sed="s/count: 2/count: 3/")
    wait_until(
        lambda: node_slice(cluster, ctl.managed_by, node, devices=3),
        timeout=TIMEOUT,
        what=f"node {node}'s slice to have 3 devices after kubectl edit",
        describe=describe_slices(cluster, ctl),
    )

    # helm upgrade with another device count. Helm 4 applies server-side, and kubectl edit made
    # `kubectl-edit` the owner of config.yaml: a plain upgrade is refused with a conflict. The
    # documented way (docs/operations.md) is --force-conflicts: the chart's values win.
    values = chart_values(driver, instance_type, devices=5)
    refused = release.install(values, "upgrade", check=False)
    assert refused.returncode != 0, refused.stdout
    assert "conflict" in refused.stderr and "kubectl-edit" in refused.stderr, refused.stderr
    release.install(values, "upgrade", "--force-conflicts")
    after = wait_until(
        lambda: node_slice(cluster, ctl.managed_by, node, devices=5),
        timeout=TIMEOUT,
        what=f"node {node}'s slice to have 5 devices after helm upgrade",
        describe=describe_slices(cluster, ctl),
    )
    assert after["spec"]["pool"]["generation"] > before["spec"]["pool"]["generation"]
    assert_no_403(ctl)

    # helm uninstall, while the controller still runs (as a pod still terminating would): Helm
    # deletes the release's objects, the controller's RBAC with them, then creates the post-delete
    # hook, whose pod this test runs, and waits for its Job. (A pre-delete hook would run while the
    # controller still has its RBAC: it re-creates the deleted slice at once and one is left behind,
    # which is what this test sees if the hook is switched to pre-delete.)
    fullname = find(release.manifest(), "Deployment")["metadata"]["name"]
    out_path = release.workdir / "helm-uninstall.out"
    with out_path.open("w") as out:
        uninstall = subprocess.Popen(
            release.helm.command("uninstall", release.name, "-n", release.namespace, "--timeout=120s"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        output = run_hook_pod_as_kubelet(cluster, release.namespace, f"{fullname}-cleanup", release.workdir)
        assert uninstall.wait(timeout=120) == 0, out_path.read_text()
    finally:
        if uninstall.poll() is None:
            uninstall.kill()
            uninstall.wait()
    assert "deleted 1 ResourceSlice(s)" in output, output

    # The controller's RBAC was deleted before the hook ran: the still running controller reacted to
    # the uninstall (its ConfigMap went too) by writing slices, and was refused; the hook did it.
    assert gone(cluster, "clusterrolebinding", fullname)

    def refused_writes() -> float:
        samples = ctl.metrics().items()
        return sum(v for k, v in samples if 'code="403"' in k and ('verb="apply"' in k or 'verb="delete"' in k))

    wait_until(
        refused_writes,
        timeout=TIMEOUT,
        what="the lingering controller's slice writes to be refused",
        describe=ctl.log,
    )
    time.sleep(2)  # a refused controller retries: give it the chance to break this
    assert slices(cluster, ctl.managed_by) == []
    ctl.stop()

    # Hook objects are deleted once the hook succeeded; the CRD is kept (Helm never deletes crds/).
    hook_objects = [
        ("job", "-n", release.namespace),
        ("serviceaccount", "-n", release.namespace),
        ("clusterrole",),
        ("clusterrolebinding",),
    ]
    for kind, *where in hook_objects:
        wait_until(
            functools.partial(gone, cluster, kind, f"{fullname}-cleanup", *where),
            timeout=TIMEOUT,
            what=f"hook {kind} {fullname}-cleanup to be deleted",
        )
    assert gone(cluster, "deviceclass", driver)
    assert gone(cluster, "configmap", ctl.env["DRA_KWOK_CONFIGMAP_NAME"], "-n", release.namespace)
    cluster.kubectl("get", "crd", "dranodeoverlays.test.karpenter.sh")
    assert release.helm.run("status", release.name, "-n", release.namespace, check=False).returncode != 0


# --- placement -----------------------------------------------------------------------------------
KWOK_EXCLUSIONS = [
    {"key": "type", "operator": "NotIn", "values": ["kwok"]},
    {"key": "kwok.x-k8s.io/node", "operator": "DoesNotExist"},
    {"key": "kwok.x-k8s.io/provider", "operator": "DoesNotExist"},
    {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"},
]
CONTROL_PLANE_TOLERATIONS = [
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
]


def pod_specs(docs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The controller's and the cleanup hook's pod specs."""
    deployment, job = find(docs, "Deployment"), find(docs, "Job", "-cleanup")
    return deployment["spec"]["template"]["spec"], job["spec"]["template"]["spec"]


def required_terms(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return terms


def test_placement_defaults_keep_the_pods_off_kwok_and_karpenter_nodes(helm: Helm) -> None:
    for spec in pod_specs(helm.template()):
        assert required_terms(spec) == [{"matchExpressions": KWOK_EXCLUSIONS}]
        assert spec["tolerations"] == CONTROL_PLANE_TOLERATIONS
        assert "nodeSelector" not in spec

    # A user's own required node affinity gets the exclusions ANDed into each of its terms (they
    # are ORed), so it cannot let the pods onto a KWOK node; the rest of the affinity is kept.
    own = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
    field_term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["cp-1"]}]}
    preferred = [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
    ]
    anti = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname"}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [own]}, field_term]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        },
        "podAntiAffinity": anti,
    }
    docs = helm.template("--set-json", f"affinity={json.dumps(affinity)}", "--set-json", 'nodeSelector={"a":"b"}')
    for spec in pod_specs(docs):
        assert required_terms(spec) == [
            {"matchExpressions": [own, *KWOK_EXCLUSIONS]},
            {**field_term, "matchExpressions": KWOK_EXCLUSIONS},
        ]
        assert spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
        assert spec["affinity"]["podAntiAffinity"] == anti
        assert spec["nodeSelector"] == {"a": "b"}

    # Switched off, and tolerations replaced.
    docs = helm.template("--set-json", "nodeExclusions=[]", "--set-json", "tolerations=[]")
    for spec in pod_specs(docs):
        assert "affinity" not in spec and "tolerations" not in spec

    # The hook follows the controller unless cleanupJob says otherwise; the exclusions stay.
    docs = helm.template(
        "--set-json", 'cleanupJob.nodeSelector={"x":"y"}', "--set-json", "cleanupJob.tolerations=[]",
        "--set-json", f"cleanupJob.affinity={json.dumps({'podAntiAffinity': anti})}",
    )  # fmt: skip
    pod, hook = pod_specs(docs)
    assert "nodeSelector" not in pod and pod["tolerations"] == CONTROL_PLANE_TOLERATIONS
    assert hook["nodeSelector"] == {"x": "y"} and "tolerations" not in hook
    assert required_terms(hook) == [{"matchExpressions": KWOK_EXCLUSIONS}]
    assert hook["affinity"]["podAntiAffinity"] == anti and "podAntiAffinity" not in pod["affinity"]


def test_notes_name_the_overlay_columns_that_exist(helm: Helm) -> None:
    crd = yaml.safe_load((CHART / "crds" / "test.karpenter.sh_dranodeoverlays.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    columns = {c["name"].upper() for c in version["additionalPrinterColumns"]}
    notes = helm.run("install", "test", str(CHART), "--dry-run=client", "-n", "karpenter").stdout
    (line,) = [ln for ln in notes.splitlines() if "kubectl get dranodeoverlays " in ln]
    named = set(re.findall(r"\b[A-Z]{3,}\b", line.partition("#")[2]))
    assert named and named <= columns, f"NOTES.txt names {named - columns}, the CRD's columns are {columns}"


def scheduled_to(cluster: Cluster, namespace: str, pod_prefix: str) -> list[str]:
    """Nodes the scheduler bound pods named `pod_prefix`* to, from its Scheduled Events (which
    outlive the pods: a hook pod is gone with its Job once the hook succeeded)."""
    events = cluster.get_json("events", "-n", namespace, "--field-selector", "reason=Scheduled")["items"]
    found = []
    for event in events:
        if event["involvedObject"]["name"].startswith(pod_prefix):
            m = re.search(r" to (\S+)$", event.get("message") or event.get("note") or "")
            assert m, event
            found.append(m.group(1))
    return found


@pytest.mark.cluster
def test_chart_pods_land_on_the_real_node_through_the_real_scheduler(
    cluster: Cluster, release: Release, unique_name: Callable[[str], str], cleanup: Cleanup
) -> None:
    """A cluster as users have it: a KWOK node made by Karpenter's KWOK provider, one made by hand
    (label `type: kwok`, no taint) and a control-plane node tainted CriticalAddonsOnly (and
    node-role.kubernetes.io/control-plane). With default placement values, the real kube-scheduler
    puts the controller pod and the uninstall hook's pod on the control-plane node.

    All three nodes are run by kwok-controller (hack/cluster.sh has it manage every node with the
    annotation kwok.x-k8s.io/node=fake): this cluster has no real node, and kwok marks them Ready.
    The control-plane-like one carries none of the labels the chart excludes, so for the scheduler
    it is the real node. (The driver itself would count it as a KWOK node, by the annotation; where
    pods go depends only on labels and taints.) Because kwok also "runs" the pods there, the hook
    completes without running anything, so this test checks where the pods went, not their work."""
    tag = unique_name("placement")
    pool = {"dra-kwok.test/placement": tag}  # only this test's nodes: the release selects them

    def node(role: str, labels: Mapping[str, str], kwok_type: bool, taints: Sequence[Mapping[str, str]] = ()) -> str:
        name = unique_name(f"placement-{role}")
        obj = kwok_node(name, labels={**pool, **labels})
        if not kwok_type:
            del obj["metadata"]["labels"]["type"]
        obj["spec"]["taints"] = list(taints)
        cleanup.delete_later("node", name)
        cluster.apply(obj)
        return name

    karpenter = node(
        "karpenter",
        {"kwok.x-k8s.io/node": "fake", "karpenter.sh/nodepool": "default", "karpenter.sh/registered": "true"},
        kwok_type=False,
    )
    handmade = node("handmade", {}, kwok_type=True)
    control_plane = node(
        "control-plane",
        {"node-role.kubernetes.io/control-plane": ""},
        kwok_type=False,
        taints=[
            {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
        ],
    )
    for name in (karpenter, handmade, control_plane):
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")

    values = {"replicaCount": 1, "nodeSelector": pool, "config": {"driver": f"{tag}.chart.dra-kwok.test"}}
    release.install(values, pods=True)
    fullname = find(release.manifest(), "Deployment")["metadata"]["name"]
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=controller"

    def controller_node() -> str | None:
        pods = cluster.get_json("pods", "-n", release.namespace, "-l", selector)["items"]
        return pods[0]["spec"].get("nodeName") if pods else None

    assert wait_until(controller_node, timeout=TIMEOUT, what="the controller pod to be scheduled") == control_plane

    # Each KWOK node on its own is refused by the scheduler for the node affinity: the controller's
    # pod spec, pinned to that node.
    pod_spec = find(release.manifest(), "Deployment")["spec"]["template"]["spec"]
    for kwok in (karpenter, handmade):
        probe = unique_name("placement-probe")
        pinned = {**pod_spec, "nodeSelector": {**pool, "kubernetes.io/hostname": kwok}}
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": probe, "namespace": release.namespace}}
        cluster.apply({**manifest, "spec": pinned})

        def refusal(probe: str = probe) -> str | None:
            pod = cluster.get_json("pod", probe, "-n", release.namespace)
            assert not pod["spec"].get("nodeName"), f"{probe} was scheduled onto {pod['spec']['nodeName']}"
            conditions = pod["status"].get("conditions") or []
            unschedulable = [
                c for c in conditions if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
            ]
            return unschedulable[0]["message"] if unschedulable else None

        message = wait_until(refusal, timeout=TIMEOUT, what=f"the scheduler to refuse {probe} on {kwok}")
        assert "didn't match Pod's node affinity/selector" in message, message
        cluster.kubectl("delete", "pod", probe, "-n", release.namespace, "--wait=false")

    # helm uninstall: the hook's pod goes to the same node (kwok fakes its completion there, see
    # above, so helm reports success).
    release.helm.run("uninstall", release.name, "-n", release.namespace, "--timeout=120s")
    assert scheduled_to(cluster, release.namespace, f"{fullname}-cleanup-") == [control_plane]
    assert scheduled_to(cluster, release.namespace, f"{fullname}-") == [control_plane, control_plane]


@pytest.mark.parametrize("failure", ["unschedulable", "failed"])
@pytest.mark.cluster
def test_uninstall_fails_and_says_so_when_the_cleanup_hook_cannot_do_its_job(
    cluster: Cluster, release: Release, unique_name: Callable[[str], str], cleanup: Cleanup, failure: str
) -> None:
    """`helm uninstall` must not report success while our slices remain: if the hook's pod cannot
    be scheduled (it would stay Pending until activeDeadlineSeconds) or its container fails, the
    Job fails, and so does `helm uninstall`, naming the Job; the Job is kept for inspection."""
    driver = f"{unique_name('gpu')}.chart.dra-kwok.test"
    values = {
        "config": {"driver": driver},
        # No node fits (as when no real node is left), and a short deadline for the test's sake.
        "cleanupJob": {
            "nodeSelector": NO_NODE,
            "activeDeadlineSeconds": 10 if failure == "unschedulable" else 120,
            "backoffLimit": 0,
        },
    }
    release.install(values)
    fullname = find(release.manifest(), "Deployment")["metadata"]["name"]
    managed_by = container_env(find(release.manifest(), "Deployment")["spec"]["template"]["spec"]["containers"][0])[
        "DRA_KWOK_MANAGED_BY"
    ]
    # One of this installation's slices, as its controller would have published it.
    node = unique_name("chart-node")
    cleanup.delete_later("node", node)
    cluster.apply(kwok_node(node))
    slice_name = f"{node}-devices"
    cleanup.delete_later("resourceslice", slice_name)
    cluster.apply(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": slice_name, "labels": {MANAGED_BY: managed_by}},
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                "devices": [{"name": "gpu-0"}],
            },
        }
    )

    out_path = release.workdir / "helm-uninstall.out"
    with out_path.open("w") as out:
        uninstall = subprocess.Popen(
            release.helm.command("uninstall", release.name, "-n", release.namespace, "--timeout=120s"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        job_name = f"{fullname}-cleanup"
        pod = wait_until(
            lambda: (
                cluster.get_json("pods", "-n", release.namespace, "-l", f"job-name={job_name}")["items"] or [None]
            )[0],
            timeout=TIMEOUT,
            what=f"the pod of Job {job_name}",
        )
        if failure == "failed":
            # The container ran and exited 1, as the kubelet would report it.
            status = {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "cleanup", "image": "dra-kwok-driver", "imageID": "", "ready": False,
                        "restartCount": 0, "started": False,
                        "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                ],
            }  # fmt: skip
            cluster.kubectl(
                "patch", "pod", pod["metadata"]["name"], "-n", release.namespace, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": status}),
            )  # fmt: skip
        code = uninstall.wait(timeout=120)
    finally:
        if uninstall.poll() is None:
            uninstall.kill()
            uninstall.wait()
    output = out_path.read_text()
    assert code != 0, f"helm uninstall reported success while the hook failed:\n{output}"
    assert f"Job/{release.namespace}/{job_name}" in output and "Failed" in output, output
    # Our slice is still there, and the failed Job is kept, saying why.
    cluster.kubectl("get", "resourceslice", slice_name)
    conditions = cluster.get_json("job", job_name, "-n", release.namespace)["status"]["conditions"]
    reasons = {c["reason"] for c in conditions if c["type"] == "Failed" and c["status"] == "True"}
    assert reasons == {"DeadlineExceeded" if failure == "unschedulable" else "BackoffLimitExceeded"}, conditions
