"""Karpenter's KWOK provider (sigs.k8s.io/karpenter/kwok) as a local process against a test cluster,
and the dra-kwok-driver chart installed with `replicaCount: 0` plus the controller as a process in
place of its Deployment, for the end-to-end tests in tests/e2e.

The binary comes from the cache filled by `make karpenter` (hack/build-binaries.sh karpenter); the
CRDs are read from the Go module cache (`go mod download` in tools/go/karpenter), so the version of
both is the one pinned there. Nothing here is mocked: Karpenter launches NodeClaims, the KWOK
provider creates Nodes, kwok-controller makes them Ready and runs their pods, kube-scheduler
allocates devices from the slices our controller publishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import BUILD_BINARIES_SH, REPO_ROOT, Cluster, KubectlError
from tests.support.controller import free_port
from tests.support.wait import wait_until

KARPENTER_MODULE = "sigs.k8s.io/karpenter"
OVERLAY_CRD = REPO_ROOT / "crds" / "test.karpenter.sh_dranodeoverlays.yaml"

# Karpenter's API: labels, annotations and condition reasons the tests look at.
NODEPOOL_LABEL = "karpenter.sh/nodepool"
DRA_DRIVERS_ANNOTATION = "karpenter.sh/requested-dra-drivers"
DRA_GATE_REASON = "DRADriverPoolsNotPublished"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
KWOK_NODE_KEY = "kwok.x-k8s.io/node"
# The message of Karpenter's FailedScheduling event for a pod whose claims no instance type can
# satisfy (pkg/controllers/provisioning/scheduling, with --ignore-dra-requests=false).
NO_INSTANCE_TYPE_FOR_CLAIMS = "no instance type can satisfy the allocation"
# ... and for a pod whose resources.requests no instance type of the NodePool has (for an extended
# resource: no NodeOverlay gives it to them).
# (Observed worded "no instance type has enough resources" and "no instance type which had enough
# resources ...", depending on the path taken.)
NO_INSTANCE_TYPE_WITH_RESOURCES = "enough resources"


# --- the binary and the CRDs ---------------------------------------------------------------------
def karpenter_binary() -> Path:
    """The cached karpenter-kwok; a missing one is an error telling how to build it (never a skip)."""
    out = subprocess.run(
        [str(BUILD_BINARIES_SH), "--print-bindir", "karpenter"], capture_output=True, text=True, check=True
    ).stdout
    binary = Path(out.strip()) / "karpenter-kwok"
    if not binary.is_file():
        raise AssertionError(f"{binary} is not built: run `make karpenter` (hack/build-binaries.sh karpenter)")
    return binary


@cache
def karpenter_module() -> tuple[Path, str]:
    """The pinned module of the Karpenter release in use (tools/go/karpenter/v<KARPENTER_VERSION>)
    and the Go toolchain hack/build-binaries.sh builds it with."""
    out = subprocess.run(
        [str(BUILD_BINARIES_SH), "--print-karpenter-module"], capture_output=True, text=True, check=True
    ).stdout.split()
    return Path(out[0]), out[1]


@cache
def karpenter_module_dir() -> Path:
    """sigs.k8s.io/karpenter's directory in the Go module cache, at the version the pinned module
    requires (downloaded from the Go module proxy if it is not there yet)."""
    module, toolchain = karpenter_module()
    env = {**os.environ, "GOTOOLCHAIN": toolchain, "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(
        ["go", "mod", "download", "-json", KARPENTER_MODULE],
        cwd=module,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"go mod download {KARPENTER_MODULE} in {module} failed:\n{proc.stderr}{proc.stdout}")
    info = json.loads(proc.stdout)
    return Path(info["Dir"])


def karpenter_crd_files() -> list[Path]:
    """NodePool, NodeClaim, NodeOverlay, CapacityBuffer (kwok/charts/crds) and KWOKNodeClass
    (kwok/apis/crds) as the pinned module ships them."""
    root = karpenter_module_dir() / "kwok"
    files = sorted((root / "charts" / "crds").glob("*.yaml")) + sorted((root / "apis" / "crds").glob("*.yaml"))
    names = {f.name for f in files}
    for needed in (
        "karpenter.sh_nodepools.yaml",
        "karpenter.sh_nodeclaims.yaml",
        "karpenter.kwok.sh_kwoknodeclasses.yaml",
    ):
        assert needed in names, f"{needed} not found under {root}; found {sorted(names)}"
    return files


def install_crds(cluster: Cluster) -> None:
    """Karpenter's CRDs and our DRANodeOverlay CRD (server-side apply: idempotent across tests)."""
    files = [*karpenter_crd_files(), OVERLAY_CRD]
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args, timeout=120)
    for f in files:
        name = yaml.safe_load(f.read_text())["metadata"]["name"]
        cluster.wait_established(f"crd/{name}", timeout=60)


# --- Karpenter as a process ----------------------------------------------------------------------
@dataclass
class KarpenterProcess:
    """karpenter-kwok run the way its chart's Deployment runs it, configured through environment
    variables (pkg/operator/options): no leader election, its own ports, DRA support on."""

    kubeconfig: Path
    log_path: Path
    ignore_dra_requests: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "IGNORE_DRA_REQUESTS": str(self.ignore_dra_requests).lower(),
            "DISABLE_LEADER_ELECTION": "true",
            "METRICS_PORT": str(self.metrics_port),
            "HEALTH_PROBE_PORT": str(self.health_port),
            "LOG_LEVEL": "debug",
            **self.env,
        }

    def start(self) -> KarpenterProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRA_KWOK_")}
        env.update(self.environment())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(karpenter_binary())], stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"karpenter-kwok exited with {self.proc.returncode}:\n{self.log()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
                return bool(r.status == 200)

        wait_until(ready, timeout=timeout, what="karpenter-kwok to become ready", describe=self.log, interval=0.5)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log(self, tail: int = 30000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines (zap), parsed; other lines are skipped."""
        out = []
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def errors(self) -> list[str]:
        return [f"{r.get('message')}: {r.get('error', '')}" for r in self.records() if r.get("level") == "ERROR"]


@contextmanager
def running_karpenter(cluster: Cluster, workdir: Path, **kwargs: Any) -> Iterator[KarpenterProcess]:
    """karpenter-kwok for the duration of the block. Its log ends up in the test's output on failure."""
    karpenter = KarpenterProcess(kubeconfig=cluster.kubeconfig, log_path=workdir / "karpenter.log", **kwargs)
    karpenter.start()
    try:
        yield karpenter
    finally:
        code = karpenter.stop()
        if code not in (0, None, -signal.SIGTERM, -signal.SIGKILL):
            print(f"karpenter-kwok exited with {code}; log tail:\n{karpenter.log(5000)}")


# --- our chart, with the controller as a process: tests/support/chart.py --------------------------
def driver_values(driver: str, mappings: Sequence[Mapping[str, Any]], extended_resource: str) -> dict[str, Any]:
    """Chart values with the given mappings, the driver's DeviceClass naming `extended_resource`, and
    the NodeOverlays for Karpenter on (the process standing in for the pod binds free ports itself)."""
    return {
        "config": {"driver": driver, "mappings": list(mappings)},
        "deviceClasses": [{"name": driver, "driver": driver, "extendedResourceName": extended_resource}],
        "karpenter": {"nodeOverlays": {"enabled": True}},
    }


# --- manifests -----------------------------------------------------------------------------------
def kwok_node_class(name: str) -> dict[str, Any]:
    return {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": name}}


def node_pool(
    name: str, node_class: str, instance_types: Sequence[str], labels: Mapping[str, str], taint: Mapping[str, str]
) -> dict[str, Any]:
    """A NodePool of on-demand linux/amd64 KWOK nodes of `instance_types`, carrying `labels` and
    `taint` (so only the test's pods, which tolerate it, make Karpenter launch nodes from it), whose
    empty or underutilized nodes are consolidated 5 s after their last pod event, all at once."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "5s",
                "budgets": [{"nodes": "100%"}],
            },
            "limits": {"cpu": "200"},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "expireAfter": "Never",
                    "taints": [dict(taint)],
                    "requirements": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        {"key": INSTANCE_TYPE, "operator": "In", "values": list(instance_types)},
                    ],
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": node_class},
                },
            },
        },
    }


def static_node_pool(
    name: str,
    node_class: str,
    instance_type: str,
    replicas: int,
    labels: Mapping[str, str],
    taint: Mapping[str, str],
) -> dict[str, Any]:
    """A static NodePool (Karpenter's StaticCapacity gate): Karpenter keeps `replicas` nodes of
    `instance_type` whatever the pods, and removes one when `replicas` goes down. The dynamic
    NodePool's template; no disruption policy or CPU limit (a static NodePool allows neither)."""
    pool = node_pool(name, node_class, [instance_type], labels, taint)
    spec = pool["spec"]
    del spec["disruption"], spec["limits"]
    spec["replicas"] = replicas
    return pool


def standalone_node_claim(
    name: str,
    node_class: str,
    instance_type: str,
    labels: Mapping[str, str],
    taint: Mapping[str, str],
    dra_drivers: Sequence[str],
) -> dict[str, Any]:
    """A NodeClaim created directly (no NodePool), annotated with the DRA drivers Karpenter must see
    a complete pool of before it marks the NodeClaim Initialized."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "annotations": {DRA_DRIVERS_ANNOTATION: ",".join(dra_drivers)},
        },
        "spec": {
            "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": node_class},
            "taints": [dict(taint)],
            "expireAfter": "Never",
            "requirements": [
                {"key": INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            ],
        },
    }


def deployment(
    name: str,
    namespace: str,
    replicas: int,
    node_selector: Mapping[str, str],
    taint: Mapping[str, str],
    cpu: str = "100m",
    claim_template: str | None = None,
    extended: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of busybox pods (kwok fakes their run) that tolerate `taint`; with
    `claim_template`, each pod gets a ResourceClaim from that ResourceClaimTemplate; `extended`
    resources are requested (and limited, as extended resources must be) in resources.requests."""
    container: dict[str, Any] = {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
    if extended:
        container["resources"]["requests"].update(extended)
        container["resources"]["limits"] = dict(extended)
    spec: dict[str, Any] = {
        "nodeSelector": dict(node_selector),
        "tolerations": [{"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": taint["effect"]}],
        "containers": [container],
    }
    if claim_template:
        container["resources"]["claims"] = [{"name": "dev"}]
        spec["resourceClaims"] = [{"name": "dev", "resourceClaimTemplateName": claim_template}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def claim_template(name: str, namespace: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [{"name": "dev", "exactly": {"deviceClassName": device_class}}]}}},
    }


# --- reading state -------------------------------------------------------------------------------
def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The status condition of that type ({} when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def complete_pools(slices: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """(driver, pool) -> device count, for the pools that are complete by the rule Karpenter's
    initialization gate and the scheduler use: as many slices at the pool's highest generation as
    their resourceSliceCount says."""
    by_pool: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for s in slices:
        by_pool[(s["spec"]["driver"], s["spec"]["pool"]["name"])].append(s)
    out = {}
    for key, members in by_pool.items():
        top = max(m["spec"]["pool"]["generation"] for m in members)
        current = [m for m in members if m["spec"]["pool"]["generation"] == top]
        if {m["spec"]["pool"]["resourceSliceCount"] for m in current} == {len(current)}:
            out[key] = sum(len(m["spec"].get("devices") or []) for m in current)
    return out


def summarize(cluster: Cluster, namespace: str, managed_by: str, label: str) -> str:
    """What a failure message shows: NodeClaims, Nodes, slices, pods, claims and recent events."""
    parts = []
    for title, args in [
        ("nodeclaims", ["get", "nodeclaims", "-l", label, "-o", "wide"]),
        ("nodes", ["get", "nodes", "-l", label, "-o", "wide", "--show-labels"]),
        (
            "slices",
            ["get", "resourceslices", "-l", f"dra-kwok.test.karpenter.sh/managed-by={managed_by}", "-o", "wide"],
        ),
        ("pods", ["get", "pods", "-n", namespace, "-o", "wide"]),
        ("claims", ["get", "resourceclaims", "-n", namespace, "-o", "wide"]),
        ("events", ["get", "events", "-A", "--sort-by=.lastTimestamp"]),
    ]:
        try:
            out = cluster.kubectl(*args)
        except KubectlError as e:
            out = str(e)
        if title == "events":
            out = "\n".join(out.splitlines()[-40:])
        parts.append(f"--- {title}:\n{out}")
    return "\n".join(parts)


# --- teardown ------------------------------------------------------------------------------------
def force_remove(cluster: Cluster, kind: str, selector: str) -> None:
    """Deletes every `kind` matching the label selector, stripping finalizers first: the fallback
    for Karpenter's karpenter.sh/termination finalizer when Karpenter is no longer there to act."""
    try:
        items = cluster.get_json(kind, "-l", selector)["items"]
    except KubectlError:
        return
    for item in items:
        name = item["metadata"]["name"]
        try:
            cluster.kubectl("patch", kind, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        except KubectlError:
            pass
