"""A real local DRA-capable KWOK cluster for tests: started and stopped through hack/cluster.sh.

Each test run gets its own cluster (unique name, kubeconfig in a temp dir), so it never clashes
with a developer's `make cluster`. Alternatively an existing cluster can be reused by kubeconfig.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "hack" / "cluster.sh"
BUILD_BINARIES_SH = REPO_ROOT / "hack" / "build-binaries.sh"
VERSIONS_ENV = REPO_ROOT / "hack" / "versions.env"

# hack/cluster.sh prunes clusters with this prefix whose pid (the next name part) is gone.
TEST_CLUSTER_PREFIX = "dra-kwok-test"

# The annotation that makes kwok-controller manage a Node (see hack/cluster.sh).
KWOK_NODE_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}


class ClusterError(RuntimeError):
    """hack/cluster.sh failed; the message carries its output (which names the component logs)."""


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries the command and its stderr."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}:\n{stderr.strip() or stdout.strip()}")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its name, admin kubeconfig, and a directory holding kubectl (and helm,
    kwokctl when started by hack/cluster.sh)."""

    name: str
    kubeconfig: Path
    bindir: Path

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> str:
        """Runs kubectl against this cluster (as admin unless `kubeconfig` says otherwise) and returns
        its stdout; raises KubectlError with stderr on failure."""
        cmd = [str(self.bindir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise KubectlError(list(args), proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def get_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig))

    def wait_established(self, crd: str, timeout: float = 30.0) -> None:
        """Until the CRD (`crd/NAME` or `NAME`) is Established. Not `kubectl wait`: 1.34's kubectl
        fails at once ("accessor error: <nil>") when the CRD has no conditions yet."""
        name = crd.removeprefix("crd/")
        deadline = time.monotonic() + timeout
        while True:
            conditions = (self.get_json("crd", name).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} not Established within {timeout:.0f}s: {conditions}")
            time.sleep(0.2)

    def apply(self, *objects: Mapping[str, Any]) -> str:
        """`kubectl apply` of the given objects (dicts, as they would be written in YAML)."""
        body = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return self.kubectl("apply", "-f", "-", input=json.dumps(body))

    def server_version(self) -> str:
        """The apiserver's gitVersion without the `v`, e.g. "1.37.2" (from /version)."""
        info = json.loads(self.kubectl("get", "--raw", "/version"))
        return str(info["gitVersion"]).removeprefix("v")

    def minor(self) -> int:
        """The apiserver's Kubernetes minor, e.g. 34 for 1.34.4: what version-dependent behaviour
        (slice layout, allowed taint effects) is expected against."""
        major, minor = self.server_version().split(".")[:2]
        if major != "1":
            raise ClusterError(f"unexpected Kubernetes version {self.server_version()}")
        return int(minor)

    def api_client(self) -> k8s_client.ApiClient:
        """A kubernetes.client.ApiClient for this cluster's admin kubeconfig."""
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def kwok_dir(self) -> Path:
        """kwokctl's directory for this cluster (pids, logs, kwok.yaml): hack/cluster.sh writes a
        bin/kwokctl wrapper that sets KWOK_WORKDIR."""
        wrapper = self.bindir / "kwokctl"
        m = re.search(r"KWOK_WORKDIR='([^']+)'", wrapper.read_text()) if wrapper.is_file() else None
        if m:
            workdir = Path(m.group(1))
        else:
            workdir = Path(os.environ.get("DRA_KWOK_CACHE") or Path.home() / ".cache" / "dra-kwok") / "kwok"
        path = workdir / "clusters" / self.name
        if not (path / "kwok.yaml").is_file():
            raise ClusterError(f"no {path}/kwok.yaml: is {self.name} a kwokctl binary-runtime cluster?")
        return path

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path, duration: str = "1h") -> Path:
        """Writes a kubeconfig that authenticates as ServiceAccount NAMESPACE/NAME with a
        TokenRequest token, so requests through it are subject to RBAC; returns `path`."""
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration", duration).strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
        user = f"system:serviceaccount:{namespace}:{name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


class Cleanup:
    """Objects to delete after the test, newest first (e.g. cluster-scoped Nodes, DeviceClasses,
    ResourceSlices, which namespace deletion does not cover)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._objects: list[tuple[str, str, str | None]] = []

    def delete_later(self, kind: str, name: str, namespace: str | None = None) -> None:
        self._objects.append((kind, name, namespace))

    def run(self) -> None:
        errors = []
        for kind, name, namespace in reversed(self._objects):
            ns = ["-n", namespace] if namespace else []
            try:
                self._cluster.kubectl("delete", kind, name, *ns, "--ignore-not-found", "--wait=false")
            except Exception as e:
                errors.append(str(e))
        if errors:
            raise RuntimeError("cleanup failed:\n" + "\n".join(errors))


def _run_cluster_sh(*args: str, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(CLUSTER_SH), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, **env} if env else None,
    )
    if proc.returncode != 0:
        raise ClusterError(f"hack/cluster.sh {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def expected_kube_version() -> str:
    """The Kubernetes version hack/cluster.sh starts a cluster with here: KUBE_VERSION from the
    environment, else hack/versions.env's default."""
    proc = subprocess.run(
        ["bash", "-c", 'source "$1" && echo "$KUBE_VERSION"', "versions.env", str(VERSIONS_ENV)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return proc.stdout.strip()


def cluster_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What `hack/cluster.sh settings` says `up` would pass for KUBE_VERSION (keys KUBE_VERSION,
    feature-gates, runtime-config). Raises ClusterError for an unsupported version."""
    out = _run_cluster_sh("settings", env=env)
    return {key: value for key, _, value in (line.partition("=") for line in out.splitlines())}


def unique_cluster_name() -> str:
    """A cluster name that hack/cluster.sh prune can attribute to this process."""
    return f"{TEST_CLUSTER_PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"


def start_cluster(workdir: Path, name: str | None = None, feature_gates: str = "") -> Cluster:
    """Starts a cluster (hack/cluster.sh up) whose kubeconfig and bin/ go into `workdir`, with
    `feature_gates` ("Gate=false,...") added to the control plane's. Leftovers of earlier killed
    test runs are pruned first. Raises ClusterError on failure."""
    _run_cluster_sh("prune")
    name = name or unique_cluster_name()
    _run_cluster_sh(
        "up",
        "--name",
        name,
        "--dir",
        str(workdir),
        env={"DRA_KWOK_FEATURE_GATES": feature_gates} if feature_gates else None,
    )
    return Cluster(name=name, kubeconfig=workdir / "kubeconfig", bindir=workdir / "bin")


def stop_cluster(cluster: Cluster) -> None:
    """Deletes a cluster started by start_cluster (hack/cluster.sh down)."""
    _run_cluster_sh("down", "--name", cluster.name, "--dir", str(cluster.kubeconfig.parent))


@contextmanager
def running_cluster(workdir: Path, feature_gates: str = "") -> Iterator[Cluster]:
    """A cluster for the duration of the block, deleted afterwards even if the block raises."""
    cluster = start_cluster(workdir, feature_gates=feature_gates)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def existing_cluster(kubeconfig: Path) -> Cluster:
    """A cluster that someone else runs (e.g. `make cluster`), reached through `kubeconfig`.
    kubectl comes from a bin/ next to the kubeconfig (as .cluster/ has) or from the binary cache."""
    kubeconfig = kubeconfig.resolve()
    if not kubeconfig.is_file():
        raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
    bindir = kubeconfig.parent / "bin"
    if not (bindir / "kubectl").exists():
        out = subprocess.run(
            [str(BUILD_BINARIES_SH), "--print-bindir", "kubernetes"], capture_output=True, text=True, check=True
        )
        bindir = Path(out.stdout.strip())
    context = yaml.safe_load(kubeconfig.read_text()).get("current-context", "")
    cluster = Cluster(name=str(context).removeprefix("kwok-"), kubeconfig=kubeconfig, bindir=bindir)
    try:
        if cluster.kubectl("get", "--raw", "/readyz", timeout=15).strip() != "ok":
            raise ClusterError(f"the cluster of {kubeconfig} is not ready")
    except (KubectlError, subprocess.TimeoutExpired) as e:
        raise ClusterError(f"cannot reach the cluster of {kubeconfig}: {e}") from e
    return cluster


def kwok_node(
    name: str,
    *,
    cpu: str = "32",
    memory: str = "256Gi",
    pods: str = "110",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Node manifest that kwok-controller manages (it marks it Ready and runs its pods).
    Capacity holds only cpu/memory/pods: DRA-backed extended resources must not appear there."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {**KWOK_NODE_ANNOTATION, **(annotations or {})},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                # as a kubelet registers a node: otherwise kube-controller-manager's node lifecycle
                # controller adds them minutes later, at its own rate (node label events to re-decide)
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **(labels or {}),
            },
        },
        "spec": {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }
