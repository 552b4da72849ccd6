"""charts/dra-kwok-driver in tests: the cached helm, and a release whose controller runs as a local
process. The local cluster has no kubelet, so a release is installed with `replicaCount: 0` and
the controller is started with exactly the command, arguments and environment of the rendered
Deployment (read back from the release) and a token of the chart's ServiceAccount: it then works
through the chart's RBAC, as the pod would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import BUILD_BINARIES_SH, REPO_ROOT, Cluster
from tests.support.controller import ControllerProcess

CHART = REPO_ROOT / "charts" / "dra-kwok-driver"
# The venv's console script stands in for the image's `dra-kwok` (both come from `pip install .`).
LOCAL_PROGRAMS = {"dra-kwok": Path(sys.executable).parent / "dra-kwok"}


def cached_helm() -> Path:
    out = subprocess.run(
        [str(BUILD_BINARIES_SH), "--print-bindir", "helm"], capture_output=True, text=True, check=True
    ).stdout
    return Path(out.strip()) / "helm"


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path | None = None

    @staticmethod
    def for_cluster(cluster: Cluster | None) -> Helm:
        """The cluster's helm (hack/cluster.sh links it into bin/), else the cached build."""
        linked = cluster.bindir / "helm" if cluster is not None else None
        binary = linked if linked is not None and linked.exists() else cached_helm()
        assert binary.exists(), f"{binary} is missing: run `make binaries`"
        return Helm(binary, cluster.kubeconfig if cluster is not None else None)

    def command(self, *args: str) -> list[str]:
        kubeconfig = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        return [str(self.binary), *kubeconfig, *args]

    def run(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def template(self, *args: str, namespace: str = "dra-kwok") -> list[dict[str, Any]]:
        out = self.run("template", "test", str(CHART), "--namespace", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def template_error(self, *args: str) -> str:
        proc = self.run("template", "test", str(CHART), *args, check=False)
        assert proc.returncode != 0, f"helm template {' '.join(args)} succeeded, expected a refusal"
        return proc.stderr


def find(docs: Sequence[Mapping[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return dict(found[0])


def container_env(container: Mapping[str, Any], pod_name: str = "local-controller") -> dict[str, str]:
    """A container's environment: literal values, and `pod_name` where the downward API gives the
    Pod's name (the only other source the chart uses), so a local process can get it as is."""
    env = {}
    for var in container.get("env", []):
        if ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
            continue
        assert "value" in var and "valueFrom" not in var, f"env {var} is not a literal value"
        env[var["name"]] = str(var["value"])
    return env


def local_argv(container: Mapping[str, Any]) -> list[str]:
    """The container's command and args, with the program mapped to the venv's copy of it."""
    command = list(container.get("command") or [])
    assert command and command[0] in LOCAL_PROGRAMS, f"unexpected container command {command}"
    program = LOCAL_PROGRAMS[command[0]]
    assert program.exists(), f"{program} is missing: `pip install -e .` installs it"
    return [str(program), *command[1:], *container.get("args", [])]


@dataclass
class Release:
    """A release of the chart in `namespace`, always with `replicaCount: 0`."""

    cluster: Cluster
    name: str
    namespace: str
    workdir: Path

    @property
    def helm(self) -> Helm:
        return Helm.for_cluster(self.cluster)

    def install(
        self, values: Mapping[str, Any], action: str = "install", *extra: str, pods: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`helm install` or `helm upgrade` with these values and `extra` arguments; with no pod
        (`replicaCount: 0`) unless `pods`, and then without waiting for the Deployment."""
        path = self.workdir / f"values-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(values if pods else {**values, "replicaCount": 0}))
        wait = [] if pods else ["--wait", "--timeout=60s"]
        return self.helm.run(
            action, self.name, str(CHART), "-n", self.namespace, "-f", str(path), *wait, *extra, check=check
        )

    def manifest(self) -> list[dict[str, Any]]:
        out = self.helm.run("get", "manifest", self.name, "-n", self.namespace).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def controller(self) -> ControllerProcess:
        """The controller as the chart's Deployment would run it: its command, args and env, and
        a token of its ServiceAccount (KUBECONFIG stands in for the mounted in-cluster token).
        One difference: a Pod has a network namespace of its own, this process shares the host's
        with every other test, so it binds any free port ('auto', read back from its log) instead
        of the Deployment's metrics and health ports. (tests/support/pod.py runs a Pod's
        container with its own ports, in a private network namespace.)"""
        deployment = find(self.manifest(), "Deployment")
        assert deployment["spec"]["replicas"] == 0
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = container_env(container, pod_name=f"{self.name}-local-{os.getpid()}")
        assert env["DRA_KWOK_NAMESPACE"] == self.namespace
        kubeconfig = self.cluster.service_account_kubeconfig(
            self.namespace, pod["serviceAccountName"], self.workdir / "controller-sa.kubeconfig"
        )
        return ControllerProcess(
            kubeconfig=kubeconfig,
            namespace=env["DRA_KWOK_NAMESPACE"],
            managed_by=env["DRA_KWOK_MANAGED_BY"],
            log_path=self.workdir / f"controller-{self.name}.log",
            metrics_port=0,
            health_port=0,
            argv=local_argv(container),
            env={**env, "DRA_KWOK_METRICS_PORT": "auto", "DRA_KWOK_HEALTH_PORT": "auto", "KUBECONFIG": str(kubeconfig)},
        )

    def uninstall_without_hooks(self) -> None:
        """Teardown after a failure or for a test that does not check uninstalling."""
        self.helm.run("uninstall", self.name, "-n", self.namespace, "--no-hooks", "--ignore-not-found", check=False)
