"""The controller as its Pod runs it: the image's way of running, against the local cluster.

The chart's Deployment makes a real Pod (kept Pending by a node selector no node matches, so kwok
does not fake it); tests/support/pod.py then plays its kubelet and container runtime: the
ServiceAccount volume filled with a token bound to that Pod, the Service environment
(KUBERNETES_SERVICE_HOST/PORT), the container's command, args and env from the Pod and the
image's ENTRYPOINT/CMD/USER/ENV/PATH/HOME read from the Dockerfile, uid 65532, a read-only root
filesystem with /tmp as the emptyDir, in a private network namespace where the `kubernetes`
Service's address (see PodContainer.start) is relayed to the apiserver and is also
kubernetes.default.svc. No kubeconfig exists for the process: it must find the in-cluster
configuration, as in the image.

The image itself is never built (no container engine here); what keeps this test and the
Dockerfile from drifting apart is that the test reads the Dockerfile, and
`test_dockerfile_is_what_the_pod_test_reproduces` fails when its install steps change.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import Helm, Release, find
from tests.support.cluster import REPO_ROOT, Cleanup, Cluster, kwok_node
from tests.support.pod import Image, PodContainer
from tests.support.wait import wait_until

MANAGED_BY = "dra-kwok.test.karpenter.sh/managed-by"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
# Keeps the Pod Pending: on a KWOK node, kwok would report it Running without running anything.
NO_NODE = {"dra-kwok.test/pod-runner": "the-test"}
TIMEOUT = 60.0


def installed_pod(release: Release, values: dict[str, Any]) -> dict[str, Any]:
    """Installs the chart with its Deployment's Pod (left Pending: no kubelet) and returns the Pod."""
    release.install(values, pods=True)
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=controller"
    pod: dict[str, Any] = wait_until(
        lambda: (release.cluster.get_json("pods", "-n", release.namespace, "-l", selector)["items"] or [None])[0],
        timeout=TIMEOUT,
        what="the Deployment's Pod",
    )
    return pod


def test_dockerfile_is_what_the_pod_test_reproduces() -> None:
    """tests/support/pod.py stands in for the image's venv with the test venv, which `pip install
    -e .[dev]` made from the same pyproject.toml. That holds only while the Dockerfile installs the
    project exactly so; a changed install step must change tests/support/pod.py too."""
    image = Image.from_dockerfile()
    assert image.builder_steps == [
        f"python -m venv {image.venv}",
        "pip install --upgrade pip",
        "pip install .",  # runtime dependencies only, not editable
        "dra-kwok --help >/dev/null",
    ], "the Dockerfile's install steps changed: update tests/support/pod.py's stand-in for the image"
    # Everything `pip install .` reads is in the build context the Dockerfile copies.
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {f"{where}/" for where in project["tool"]["setuptools"]["packages"]["find"]["where"]}
    assert needed <= set(image.builder_copies), f"the builder stage does not COPY {needed - set(image.builder_copies)}"
    # The ENTRYPOINT is the project's console script, and the chart runs the same program.
    assert image.entrypoint == ["dra-kwok"] and image.entrypoint[0] in project["project"]["scripts"]
    assert image.cmd == ["run"]
    assert image.env["PATH"].split(":")[0] == f"{image.venv}/bin"
    docs = Helm.for_cluster(None).template()
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    hook = find(docs, "Job", "-cleanup")["spec"]["template"]["spec"]
    for spec, args in ((pod, "run"), (hook, "cleanup")):
        (container,) = spec["containers"]
        assert container["command"] == image.entrypoint and container["args"][0] == args
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == image.user
        assert container["securityContext"]["runAsUser"] == image.user[0]


@pytest.mark.cluster
def test_controller_runs_in_cluster_as_its_pod(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], cleanup: Cleanup, tmp_path: Path
) -> None:
    image = Image.from_dockerfile()
    driver = f"{unique_name('gpu')}.pod.dra-kwok.test"
    instance_type = unique_name("in-cluster")
    release = Release(cluster, unique_name("pod"), namespace, tmp_path)
    values: dict[str, Any] = {
        # The chart's default ports (8080, 8081): the Pod has a network namespace of its own.
        "nodeSelector": NO_NODE,
        "config": {
            "driver": driver,
            "mappings": [
                {
                    "name": "gpus",
                    "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type}},
                    "resourceSlice": {"devices": [{"name": "gpu", "count": 3, "attributes": {"model": "T4"}}]},
                }
            ],
        },
    }
    container: PodContainer | None = None
    try:
        pod = installed_pod(release, values)
        assert not pod["spec"].get("nodeName"), "the Pod was scheduled: kwok would fake it"
        workdir = tmp_path / "pod"
        workdir.mkdir()
        container = PodContainer(cluster, pod, image, workdir).start()
        spec = container.spec
        # As the Pod starts it: the chart's command through the image's PATH, no kubeconfig.
        assert spec["argv"] == ["dra-kwok", "run"]
        assert (spec["uid"], spec["gid"]) == image.user == (65532, 65532)
        assert spec["read_only_root"] and spec["no_new_privileges"]
        assert "KUBECONFIG" not in spec["env"] and spec["env"]["HOME"] == image.home
        assert spec["env"]["KUBERNETES_SERVICE_HOST"] == spec["service_ip"]
        assert [m["mountPath"] for m in spec["volume_mounts"] if m["kind"] == "bind"] == [
            "/var/run/secrets/kubernetes.io/serviceaccount"
        ]
        container.wait_ready()

        node = unique_name("pod-node")
        cleanup.delete_later("node", node)
        cluster.apply(kwok_node(node, labels={INSTANCE_TYPE: instance_type}))
        managed_by = spec["env"]["DRA_KWOK_MANAGED_BY"]

        def published() -> dict[str, Any] | None:
            items = cluster.get_json("resourceslices", "-l", f"{MANAGED_BY}={managed_by}")["items"]
            mine = [s for s in items if s["spec"].get("nodeName") == node]
            return mine[0] if len(mine) == 1 and len(mine[0]["spec"].get("devices", [])) == 3 else None

        published_slice = wait_until(published, timeout=TIMEOUT, what=f"node {node}'s slice", describe=container.log)
        assert published_slice["spec"]["driver"] == driver
        metrics = container.metrics()
        assert not [k for k in metrics if 'code="403"' in k or 'code="401"' in k], metrics
        assert sum(v for k, v in metrics.items() if k.startswith("dra_kwok_api_writes_total")) >= 1

        report = container.stop()
        log = container.log()
        # Terminated by SIGTERM, it exits cleanly, having written nothing, not even into /tmp.
        assert report == {"exit_code": 0, "written": []}, log
        for bad in ("Read-only file system", "Permission denied", "Traceback"):
            assert bad not in log, log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]
        assert lines and all(line["level"] not in ("error", "critical") for line in lines), log
    finally:
        if container is not None:
            container.close()
        release.uninstall_without_hooks()


@pytest.mark.cluster
def test_controller_runs_as_a_uid_the_image_does_not_know(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Some clusters (OpenShift's restricted SCC) run a pod as an arbitrary uid from the namespace's
    range, not the image's USER: the values allow it, and the controller must still start."""
    uid = 1000680000
    release = Release(cluster, unique_name("pod"), namespace, tmp_path)
    context = {"runAsUser": uid, "runAsGroup": 0}
    values: dict[str, Any] = {
        "nodeSelector": NO_NODE,
        "podSecurityContext": {"runAsNonRoot": True, **context, "fsGroup": 0},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            **context, "capabilities": {"drop": ["ALL"]},
        },
    }  # fmt: skip
    container: PodContainer | None = None
    try:
        pod = installed_pod(release, values)
        (workdir := tmp_path / "pod").mkdir()
        container = PodContainer(cluster, pod, Image.from_dockerfile(), workdir).start()
        assert container.spec["uid"] == uid
        container.wait_ready()
        assert container.stop()["exit_code"] == 0, container.log()
    finally:
        if container is not None:
            container.close()
        release.uninstall_without_hooks()


@pytest.mark.slow
@pytest.mark.cluster
def test_controller_started_while_the_apiserver_is_unreachable_becomes_ready_once_it_is_back(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A Pod that starts before the apiserver can be reached (a node rebooting, the network not up
    yet) must become ready by itself once it can, without a restart: its liveness probe would not
    restart it (/healthz answers)."""
    release = Release(cluster, unique_name("pod"), namespace, tmp_path)
    container: PodContainer | None = None
    try:
        pod = installed_pod(release, {"nodeSelector": NO_NODE})
        (workdir := tmp_path / "pod").mkdir()
        container = PodContainer(cluster, pod, Image.from_dockerfile(), workdir, apiserver_down_for=30.0).start()
        # Unreachable for 30 s, then reachable: ready within the time kopf takes to retry a startup
        # (60 s) and a full listing.
        container.wait_ready(timeout=150)
        # Its first start failed at the version probe: the retried one must have learned the
        # apiserver's version (0, the gauge's initial value, if it kept the built-in default).
        assert container.metrics()["dra_kwok_kubernetes_minor"] == cluster.minor(), container.log()
        assert container.stop()["exit_code"] == 0, container.log()
    finally:
        if container is not None:
            container.close()
        release.uninstall_without_hooks()


@pytest.mark.slow
@pytest.mark.cluster
def test_the_charts_two_replicas_one_leads_and_the_other_takes_over_when_it_is_killed(
    cluster: Cluster, namespace: str, unique_name: Callable[[str], str], cleanup: Cleanup, tmp_path: Path
) -> None:
    """The chart's defaults: two replicas, leader election with its 15 s lease. Both Pods run as
    their containers; one leads and publishes, the other stands by with no write; SIGKILL of the
    leader's container (no chance to give the Lease up) and the standby publishes a node created
    meanwhile, once the Lease has expired."""
    image = Image.from_dockerfile()
    instance_type = unique_name("ha")
    release = Release(cluster, unique_name("ha"), namespace, tmp_path)
    values: dict[str, Any] = {
        "nodeSelector": NO_NODE,
        "config": {
            "driver": f"{unique_name('gpu')}.ha.dra-kwok.test",
            "mappings": [
                {
                    "name": "gpus",
                    "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type}},
                    "resourceSlice": {"devices": [{"name": "gpu", "count": 2}]},
                }
            ],
        },
    }
    containers: dict[str, PodContainer] = {}
    try:
        release.install(values, pods=True)
        selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=controller"

        def two_pods() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = release.cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
            return items if len(items) == 2 else None

        pods = wait_until(two_pods, timeout=TIMEOUT, what="the Deployment's two Pods")
        for pod in pods:
            name = pod["metadata"]["name"]
            (workdir := tmp_path / name).mkdir()
            containers[name] = PodContainer(cluster, pod, image, workdir).start()
        for c in containers.values():
            c.wait_ready()

        def leaders() -> list[str]:
            return [
                n
                for n, c in containers.items()
                if c.proc and c.proc.poll() is None and c.metrics().get("dra_kwok_leader") == 1.0
            ]

        [leader] = wait_until(lambda: len(ls := leaders()) == 1 and ls, timeout=TIMEOUT, what="one leader")
        [standby] = [n for n in containers if n != leader]
        managed_by = containers[leader].spec["env"]["DRA_KWOK_MANAGED_BY"]
        lease = cluster.get_json("lease", managed_by, "-n", namespace)["spec"]
        assert lease["holderIdentity"] == leader, lease

        def slices_of(node: str) -> list[dict[str, Any]]:
            items = cluster.get_json("resourceslices", "-l", f"{MANAGED_BY}={managed_by}")["items"]
            return [s for s in items if s["spec"].get("nodeName") == node]

        first = unique_name("ha-node")
        cleanup.delete_later("node", first)
        cluster.apply(kwok_node(first, labels={INSTANCE_TYPE: instance_type}))
        wait_until(lambda: slices_of(first) or None, timeout=TIMEOUT, what="the leader to publish the first node")

        def writes(name: str) -> float:
            return sum(v for k, v in containers[name].metrics().items() if k.startswith("dra_kwok_api_writes_total"))

        assert writes(leader) >= 1 and writes(standby) == 0

        containers[leader].close()  # SIGKILL: the Lease is not given up
        killed = time.monotonic()
        second = unique_name("ha-node")
        cleanup.delete_later("node", second)
        cluster.apply(kwok_node(second, labels={INSTANCE_TYPE: instance_type}))
        wait_until(
            lambda: slices_of(second) or None,
            timeout=TIMEOUT,
            what="the standby to publish the node created after the kill",
        )
        print(
            f"chart defaults: a node created after the leader's SIGKILL published {time.monotonic() - killed:.1f}s on"
        )
        assert leaders() == [standby]
        assert cluster.get_json("lease", managed_by, "-n", namespace)["spec"]["holderIdentity"] == standby
        assert containers[standby].stop()["exit_code"] == 0, containers[standby].log()
    finally:
        for c in containers.values():
            c.close()
        release.uninstall_without_hooks()
