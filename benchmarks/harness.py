"""The cluster benchmarks: bulk, fan-out, churn, idle and footprint, each against the real
controller (`dra-kwok run` as a subprocess) and, where a ceiling makes sense, against a minimal
async client that publishes the very same slices directly with the same concurrency.

Everything is timed by the benchmark's own list+watch of nodes and slices (receipt times), never
by the controller's metrics, so both sides are measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tests.support.cluster import Cluster, kwok_node
from tests.support.controller import ControllerProcess

from dra_kwok.core.config import load_config_text
from dra_kwok.core.plan import plan_node
from dra_kwok.core.render import LABEL_MANAGED_BY, NodeRef, render
from dra_kwok.core.resolve import resolve

from .kube import NODES, SLICES, Kube
from .system import load_average, metric_sum, parse_metrics, proc_sample
from .tracker import NodeTracker, SliceTracker, observe

RATIO_TARGET = 1.10  # bulk and fan-out, ours / the same run's ceiling (issue 19)
NODE_EVENTS = 'dra_kwok_watch_events_total{kind="node"}'  # the sample, labels and all

TAG_LABEL = "dra-kwok-bench"
CHURN_LABEL = "dra-kwok-bench-churn"
DRIVER = "gpu.bench.dra-kwok.example.com"
CEILING_FIELD_MANAGER = "dra-kwok-bench-ceiling"
SERVICE_ACCOUNT = "dra-kwok-driver"
MARKER_A, MARKER_B = "bench-a", "bench-b"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


@dataclass
class Options:
    sizes: list[int] = field(default_factory=lambda: [1000, 5000, 10000])  # idle, fan-out, churn: at the first
    devices: int = 8
    concurrency: int = 32  # the controller's --concurrency, and the ceiling's
    workers: int | None = None  # the controller's --workers; None: its default
    node_concurrency: int = 64  # parallel node POSTs of the load generator
    churn_rate: float = 20.0
    churn_seconds: float = 60.0
    churn_lifetime: float = 10.0
    idle_seconds: float = 60.0
    settle_seconds: float = 5.0
    repeat: int = 3  # ceiling/ours pairs per size for bulk and fan-out; medians are reported
    timeout: float = 900.0
    controller_args: list[str] = field(default_factory=list)
    profile_dir: Path | None = None  # py-spy each phase of the controller into collapsed stacks here
    simulation: dict[str, Any] | None = None  # the bench mapping's `simulation`
    claims: bool = False  # a claim and a pod on every node of the first size (needs --simulate-claims)


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str
    ours: float | None
    ceiling: float | None = None
    target: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.ceiling:
            return None
        return self.ours / self.ceiling


@dataclass
class Results:
    options: Options
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(
            f"  {row.scenario}: {row.metric}: {_fmt(row.ours)} {row.unit}"
            + (f" (ceiling {_fmt(row.ceiling)}, ratio {_fmt(row.ratio)})" if row.ceiling else ""),
            flush=True,
        )
        return row

    def ordered(self) -> list[Row]:
        order = ["bulk", "fan-out", "churn", "idle", "heartbeats", "footprint", "restart"]
        return sorted(self.rows, key=lambda r: order.index(r.scenario) if r.scenario in order else len(order))

    def to_json(self) -> dict[str, Any]:
        return {
            "options": asdict(self.options),
            "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows],
            "details": self.details,
        }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def config_text(tag: str, marker: str, devices: int, simulation: dict[str, Any] | None = None) -> str:
    """The bench mapping; `simulation` (docs/simulation.md) measures a simulated behaviour's cost."""
    return yaml.safe_dump(
        {
            "driver": DRIVER,
            "mappings": [
                {
                    **({"simulation": simulation} if simulation else {}),
                    "name": "bench",
                    "nodeSelector": {"matchLabels": {TAG_LABEL: tag}},
                    "resourceSlice": {
                        "devices": [
                            {
                                "name": "gpu",
                                "count": devices,
                                "attributes": {"model": marker, "memory": "80Gi"},
                                "capacity": {"memory": "80Gi"},
                            }
                        ]
                    },
                }
            ],
        }
    )


CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "test.karpenter.sh_dranodeoverlays.yaml"
PROBE_TYPE = "reload-probe"  # the instance type of the node whose mapping the reload edits
RELOAD_BYTES = 1_000_000  # the size of the large config.yaml


def large_config_text(tag: str, devices: int, probe_marker: str) -> tuple[str, int]:
    """The benchmark's mapping, a first mapping for the probe node (the one the reload edits), and
    as many mappings matching no node as make the text about RELOAD_BYTES; and their number."""
    base = yaml.safe_load(config_text(tag, MARKER_A, devices))
    probe = {
        "name": "probe",
        "nodeSelector": {"matchLabels": {TAG_LABEL: tag, "node.kubernetes.io/instance-type": PROBE_TYPE}},
        "resourceSlice": {"devices": [{"name": "gpu", "count": 1, "attributes": {"model": probe_marker}}]},
    }

    def filler(i: int) -> dict[str, Any]:
        attributes = {"type": "nvidia-tesla-v100", "memory": "32Gi", "nvlink": True, "index": i}
        return {
            "name": f"filler-{i:05d}",
            "nodeSelector": {"matchLabels": {"node.kubernetes.io/instance-type": f"filler-{i}"}},
            "resourceSlice": {
                "devices": [{"name": f"dev-{i}", "count": 4, "attributes": attributes, "capacity": {"memory": "32Gi"}}]
            },
        }

    one = len(yaml.safe_dump({"mappings": [filler(10_000)]}, sort_keys=False))
    fillers = [filler(i) for i in range(RELOAD_BYTES // one)]
    base["mappings"] = [probe, *base["mappings"], *fillers]
    return yaml.safe_dump(base, sort_keys=False), len(base["mappings"])


class Bench:
    def __init__(self, options: Options, cluster: Cluster, workdir: Path) -> None:
        self.o = options
        self.cluster = cluster
        self.workdir = workdir
        self.tag = f"b{secrets.token_hex(3)}"
        self.namespace = f"bench-{self.tag}"
        self.managed_by = f"dra-kwok-bench-{self.tag}"
        self.ceiling_managed_by = f"dra-kwok-bench-ceiling-{self.tag}"
        self.sa_kubeconfig = workdir / "controller.kubeconfig"
        self.results = Results(options)
        self.admin: Kube | None = None
        self.ceiling: Kube | None = None
        self.ctl: ControllerProcess | None = None

    # --- setup and teardown ------------------------------------------------------------------------
    def setup(self) -> None:
        """A namespace for the ConfigMap, and a ServiceAccount for the controller and the ceiling:
        their requests then show up in the apiserver's own metrics under APF flow schema
        `service-accounts`, apart from the benchmark's (admin, exempt) and the cluster's. The
        DRANodeOverlay CRD is installed, as the chart installs it (with none, the controller asks
        every 10 s whether it has appeared)."""
        k = self.cluster.kubectl
        k("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
        self.cluster.wait_established("crd/dranodeoverlays.test.karpenter.sh", timeout=60)  # not kubectl wait: racy
        k("create", "namespace", self.namespace)
        k("create", "serviceaccount", SERVICE_ACCOUNT, "-n", self.namespace)
        k(
            "create",
            "clusterrolebinding",
            self.namespace,
            "--clusterrole=cluster-admin",
            f"--serviceaccount={self.namespace}:{SERVICE_ACCOUNT}",
        )
        self.cluster.service_account_kubeconfig(self.namespace, SERVICE_ACCOUNT, self.sa_kubeconfig, duration="24h")
        self.cluster.apply(self.configmap(MARKER_A))

    def configmap(self, marker: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dra-kwok-configmap", "namespace": self.namespace},
            "data": {"config.yaml": config_text(self.tag, marker, self.o.devices, self.o.simulation)},
        }

    def teardown_cluster_objects(self) -> None:
        k = self.cluster.kubectl
        for args in (
            ("delete", "nodes", "-l", f"{TAG_LABEL}={self.tag}", "--wait=false"),
            ("delete", "resourceslices", "-l", f"{LABEL_MANAGED_BY} in ({self.managed_by},{self.ceiling_managed_by})"),
            ("delete", "clusterrolebinding", self.namespace, "--ignore-not-found"),
            ("delete", "namespace", self.namespace, "--wait=false", "--ignore-not-found"),
        ):
            with contextlib.suppress(Exception):
                k(*args, timeout=300)

    async def clear(self) -> None:
        """Deletes the benchmark's nodes and slices and waits until they are gone."""
        assert self.admin is not None
        selectors = [
            (NODES, f"{TAG_LABEL}={self.tag}"),
            (SLICES, f"{LABEL_MANAGED_BY} in ({self.managed_by},{self.ceiling_managed_by})"),
        ]
        deadline = time.monotonic() + self.o.timeout
        for path, sel in selectors:
            while await self.admin.delete_all(path, sel):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} {sel} not gone")
                await asyncio.sleep(0.5)

    # --- helpers -----------------------------------------------------------------------------------
    def node_names(self, phase: str, n: int) -> list[str]:
        return [f"{self.tag}-{phase}-{i:05d}" for i in range(n)]

    def node_body(self, name: str, churn: bool = False) -> dict[str, Any]:
        labels = {TAG_LABEL: self.tag, "node.kubernetes.io/instance-type": "bench"}
        if churn:
            labels[CHURN_LABEL] = self.tag
        return kwok_node(name, labels=labels)

    def manifests(self, names: Iterable[str], marker: str, managed_by: str) -> dict[str, list[dict[str, Any]]]:
        """Exactly what the controller would apply for each node (rendered by its own core), with
        the ownerReference UID left to fill in."""
        cfg, issues = load_config_text(config_text(self.tag, marker, self.o.devices))
        assert cfg is not None, issues
        labels = self.node_body("x")["metadata"]["labels"]
        resolution = resolve(labels, [], cfg)
        out = {}
        for name in names:
            plan = plan_node(name, render(NodeRef(name, ""), resolution), [], managed_by)
            out[name] = [a.manifest for p in plan.pools for a in p.applies]
        return out

    async def create_nodes(self, names: list[str], then: Callable[[str, str], Awaitable[None]] | None = None) -> float:
        """Creates the nodes in parallel (node_concurrency POSTs in flight); `then(name, uid)` runs
        after each. Returns when the last node was created."""
        assert self.admin is not None
        admin = self.admin
        last = 0.0

        async def one(name: str) -> None:
            nonlocal last
            obj = await admin.create(NODES, self.node_body(name))
            last = max(last, time.monotonic())
            if then is not None:
                await then(name, obj["metadata"]["uid"])

        await asyncio.gather(*(one(n) for n in names))
        return last

    async def apiserver_metrics(self) -> list[tuple[str, dict[str, str], float]]:
        assert self.admin is not None
        return parse_metrics(await self.admin.raw("/metrics"))

    async def apiserver_cpu(self) -> float:
        return metric_sum(await self.apiserver_metrics(), "process_cpu_seconds_total")

    def start_controller(self, label: str) -> ControllerProcess:
        args = ["--concurrency", str(self.o.concurrency), *self.o.controller_args]
        if self.o.workers is not None:
            args += ["--workers", str(self.o.workers)]
        ctl = ControllerProcess(
            kubeconfig=self.sa_kubeconfig,
            namespace=self.namespace,
            managed_by=self.managed_by,
            log_path=self.workdir / f"controller-{label}.log",
            extra_args=args,
        )
        ctl.start()
        self.ctl = ctl
        return ctl

    def stop_controller(self) -> None:
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None

    async def wait_drained(self, ctl: ControllerProcess) -> None:
        """Until the controller's queue has been empty for two consecutive looks."""
        quiet = 0
        deadline = time.monotonic() + self.o.timeout
        while quiet < 2:
            await asyncio.sleep(0.5)
            quiet = quiet + 1 if ctl.metric("dra_kwok_queue_depth") == 0 else 0
            if time.monotonic() > deadline:
                raise TimeoutError("the controller's queue did not drain")

    @contextlib.contextmanager
    def profiled(self, ctl: ControllerProcess, phase: str) -> Iterator[None]:
        """With --profile-dir: py-spy samples the controller during the block (collapsed stacks)."""
        if self.o.profile_dir is None or ctl.proc is None:
            yield
            return
        self.o.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.o.profile_dir / f"{phase}.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        cmd = [spy, "record", "--pid", str(ctl.proc.pid), "--rate", "200", "--format", "raw", "-o", str(out)]
        prof = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached
        try:
            yield
        finally:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=60)

    def tracker_for(self, managed_by: str, marker: str | None = MARKER_A) -> tuple[SliceTracker, Any]:
        assert self.admin is not None
        tracker = SliceTracker(marker)
        return tracker, observe(self.admin, SLICES, f"{LABEL_MANAGED_BY}={managed_by}", tracker)

    # --- scenarios ---------------------------------------------------------------------------------
    async def bulk_ceiling(self, n: int, fanout: bool) -> dict[str, Any]:
        """Nodes created at once; as each POST returns, the minimal client applies its slice."""
        assert self.ceiling is not None
        ceiling = self.ceiling
        names = self.node_names(f"c{n}", n)
        manifests = self.manifests(names, MARKER_A, self.ceiling_managed_by)
        uids: dict[str, str] = {}

        async def publish(name: str, uid: str) -> None:
            uids[name] = uid
            for m in manifests[name]:
                m["metadata"]["ownerReferences"][0]["uid"] = uid
                await ceiling.apply(SLICES, m["metadata"]["name"], m, CEILING_FIELD_MANAGER)

        out: dict[str, Any] = {}
        # Warm the connection pool, as the controller's is by its startup listing.
        await asyncio.gather(*(ceiling.request("GET", "/version") for _ in range(self.o.concurrency)))
        tracker, watching = self.tracker_for(self.ceiling_managed_by)
        async with watching:
            cpu0 = await self.apiserver_cpu()
            t0 = time.monotonic()
            created = await self.create_nodes(names, publish)
            done = await tracker.wait_complete(names, self.o.timeout)
            out["bulk"] = {
                "seconds": done - t0,
                "nodes_created_s": created - t0,
                "apiserver_cpu_s": await self.apiserver_cpu() - cpu0,
            }
            if fanout:
                changed = self.manifests(names, MARKER_B, self.ceiling_managed_by)
                for name, ms in changed.items():
                    for m in ms:
                        m["metadata"]["ownerReferences"][0]["uid"] = uids[name]
                        m["spec"]["pool"]["generation"] = 2
                cpu0 = await self.apiserver_cpu()
                t0 = time.monotonic()
                tracker.set_marker(MARKER_B, t0)
                await asyncio.gather(
                    *(
                        ceiling.apply(SLICES, m["metadata"]["name"], m, CEILING_FIELD_MANAGER)
                        for ms in changed.values()
                        for m in ms
                    )
                )
                done = await tracker.wait_complete(names, self.o.timeout)
                out["fanout"] = {"seconds": done - t0, "apiserver_cpu_s": await self.apiserver_cpu() - cpu0}
        return out

    async def bulk_ours(self, ctl: ControllerProcess, n: int) -> tuple[list[str], dict[str, Any]]:
        assert ctl.proc is not None
        names = self.node_names(f"o{n}", n)
        tracker, watching = self.tracker_for(self.managed_by)
        async with watching:
            cpu0, api0, writes0 = proc_sample(ctl.proc.pid), await self.apiserver_cpu(), ctl.writes()
            t0 = time.monotonic()
            created = await self.create_nodes(names)
            done = await tracker.wait_complete(names, self.o.timeout)
            cpu1 = proc_sample(ctl.proc.pid)
            api1 = await self.apiserver_cpu()
        return names, {
            "seconds": done - t0,
            "nodes_created_s": created - t0,
            "controller_cpu_s": cpu1.cpu_s - cpu0.cpu_s,
            "apiserver_cpu_s": api1 - api0,
            "writes": ctl.writes() - writes0,
        }

    async def fanout_ours(self, ctl: ControllerProcess, names: list[str]) -> dict[str, Any]:
        assert self.admin is not None and ctl.proc is not None
        tracker, watching = self.tracker_for(self.managed_by)
        async with watching:
            cpu0, api0, writes0 = proc_sample(ctl.proc.pid), await self.apiserver_cpu(), ctl.writes()
            t0 = time.monotonic()
            tracker.set_marker(MARKER_B, t0)
            cm = self.configmap(MARKER_B)
            await self.admin.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/configmaps/{cm['metadata']['name']}",
                {"data": cm["data"]},
                content_type="application/merge-patch+json",
            )
            done = await tracker.wait_complete(names, self.o.timeout)
            cpu1 = proc_sample(ctl.proc.pid)
            api1 = await self.apiserver_cpu()
        return {
            "seconds": done - t0,
            "controller_cpu_s": cpu1.cpu_s - cpu0.cpu_s,
            "apiserver_cpu_s": api1 - api0,
            "writes": ctl.writes() - writes0,
        }

    async def idle(self, ctl: ControllerProcess) -> dict[str, Any]:
        assert ctl.proc is not None
        await self.wait_drained(ctl)
        await asyncio.sleep(self.o.settle_seconds)

        def ours() -> tuple[float, float]:
            return ctl.metric("dra_kwok_api_requests_total"), ctl.writes()

        async def apiserver() -> tuple[float, float]:
            samples = await self.apiserver_metrics()
            by_sa = metric_sum(
                samples, "apiserver_flowcontrol_dispatched_requests_total", flow_schema="service-accounts"
            )
            slice_writes = metric_sum(samples, "apiserver_request_total", resource="resourceslices", verb=WRITE_VERBS)
            return by_sa, slice_writes

        (r0, w0), (a0, s0), c0 = ours(), await apiserver(), proc_sample(ctl.proc.pid)
        resyncs0, events0 = ctl.metric("dra_kwok_resyncs_total"), ctl.metric(NODE_EVENTS)
        t0 = time.monotonic()
        await asyncio.sleep(self.o.idle_seconds)
        (r1, w1), (a1, s1), c1 = ours(), await apiserver(), proc_sample(ctl.proc.pid)
        per_min = 60.0 / (time.monotonic() - t0)
        return {
            "node_events_per_min": (ctl.metric(NODE_EVENTS) - events0) * per_min,
            "requests_per_min": (r1 - r0) * per_min,
            "writes_per_min": (w1 - w0) * per_min,
            "apiserver_sa_requests_per_min": (a1 - a0) * per_min,
            "apiserver_slice_writes_per_min": (s1 - s0) * per_min,
            "controller_cpu_s_per_min": (c1.cpu_s - c0.cpu_s) * per_min,
            "resyncs": ctl.metric("dra_kwok_resyncs_total") - resyncs0,
        }

    async def heartbeats(self, ctl: ControllerProcess, names: list[str]) -> dict[str, Any]:
        """Every node's status heartbeat (the Ready condition's lastHeartbeatTime, as the kubelet
        and kwok send it), once each, spread evenly over `idle_seconds`: a steady stream of events
        for unchanged nodes, the per-event path alone. kwok itself heartbeats a node only every
        600-610 s when node leases are on (its default), in bursts; this is the rate made steady."""
        assert self.admin is not None and ctl.proc is not None
        admin = self.admin
        await self.wait_drained(ctl)
        seconds = self.o.idle_seconds
        gap = seconds / len(names)
        c0, events0, writes0 = proc_sample(ctl.proc.pid), ctl.metric(NODE_EVENTS), ctl.writes()
        reconciles0 = ctl.metric("dra_kwok_reconciles_total")
        t0 = time.monotonic()
        late = 0.0

        async def beat(name: str) -> None:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await admin.request(
                "PATCH",
                f"{NODES}/{name}/status",
                {"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp}]}},
                content_type="application/strategic-merge-patch+json",
            )

        pending = []
        for i, name in enumerate(names):
            wait = t0 + i * gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            pending.append(asyncio.create_task(beat(name)))
        await asyncio.gather(*pending)
        deadline = time.monotonic() + self.o.timeout
        while ctl.metric(NODE_EVENTS) - events0 < len(names) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await self.wait_drained(ctl)
        c1 = proc_sample(ctl.proc.pid)
        elapsed = time.monotonic() - t0
        events = ctl.metric(NODE_EVENTS) - events0
        cpu = c1.cpu_s - c0.cpu_s
        return {
            "heartbeats": len(names),
            "seconds": elapsed,
            "schedule_lateness_s": late,
            "node_events": events,
            "controller_cpu_s": cpu,
            "controller_cpu_s_per_min": cpu * 60.0 / elapsed,
            "cpu_ms_per_1000_events": 1e6 * cpu / events if events else None,  # s per event x 1000 x 1000 ms
            "writes": ctl.writes() - writes0,
            "reconciles": ctl.metric("dra_kwok_reconciles_total") - reconciles0,
        }

    async def churn(self, ctl: ControllerProcess) -> dict[str, Any]:
        """Nodes created at `churn_rate`/s for `churn_seconds`, each deleted `churn_lifetime` later
        (so deletions also run at the same rate), with the fan-out nodes present."""
        assert self.admin is not None
        admin = self.admin
        total = max(1, round(self.o.churn_rate * self.o.churn_seconds))
        names = self.node_names("churn", total)
        nodes = NodeTracker()
        slices = SliceTracker(MARKER_B)
        failures: list[BaseException] = []

        async def life(name: str) -> None:
            try:
                await admin.create(NODES, self.node_body(name, churn=True))
                await asyncio.sleep(self.o.churn_lifetime)
                await admin.delete(NODES, name)
            except Exception as exc:  # reported, not fatal: the latencies of the rest still count
                failures.append(exc)

        async with (
            observe(admin, NODES, f"{CHURN_LABEL}={self.tag}", nodes),
            observe(admin, SLICES, f"{LABEL_MANAGED_BY}={self.managed_by}", slices),
        ):
            writes0 = ctl.writes()
            start = time.monotonic()
            tasks = []
            for i, name in enumerate(names):
                await asyncio.sleep(max(0.0, start + i / self.o.churn_rate - time.monotonic()))
                tasks.append(asyncio.create_task(life(name)))
            await asyncio.gather(*tasks)
            lateness = time.monotonic() - (start + (total - 1) / self.o.churn_rate + self.o.churn_lifetime)
            with contextlib.suppress(TimeoutError):
                await slices.wait_gone(names, 60)
            with contextlib.suppress(TimeoutError):
                await slices.wait_for(lambda: set(names) <= nodes.deleted_at.keys(), 10)
        created = [n for n in names if n in nodes.added_at and n in slices.complete_at]
        deleted = [n for n in names if n in nodes.deleted_at and n in slices.gone_at]
        up = [max(0.0, slices.complete_at[n] - nodes.added_at[n]) for n in created]
        down = [max(0.0, slices.gone_at[n] - nodes.deleted_at[n]) for n in deleted]
        return {
            "nodes": total,
            "published": len(created),
            "cleaned": len(deleted),
            "create_failures": len(failures),
            "schedule_lateness_s": lateness,
            "writes": ctl.writes() - writes0,
            "create_p50": percentile(up, 50) if up else None,
            "create_p99": percentile(up, 99) if up else None,
            "create_max": max(up) if up else None,
            "create_mean": statistics.fmean(up) if up else None,
            "delete_p50": percentile(down, 50) if down else None,
            "delete_p99": percentile(down, 99) if down else None,
            "delete_max": max(down) if down else None,
        }

    async def config_reload(self, ctl: ControllerProcess) -> dict[str, Any]:
        """A 1 MB config.yaml: applied, then one mapping edited (the reload), then its metadata
        changed only. Timed by the benchmark's own watch: ConfigMap patched → the probe node's pool
        carries the new content; nodes created right after the edit → their pools complete, while
        it reloads; /healthz polled throughout."""
        assert self.admin is not None
        admin = self.admin
        probe = f"{self.tag}-probe"
        body = self.node_body(probe)
        body["metadata"]["labels"]["node.kubernetes.io/instance-type"] = PROBE_TYPE
        await admin.create(NODES, body)
        cm_path = f"/api/v1/namespaces/{self.namespace}/configmaps/dra-kwok-configmap"
        nodes, tracker = NodeTracker(), SliceTracker("probe-0")
        probes: list[float] = []
        stop = asyncio.Event()

        async def poll_healthz() -> None:
            url = f"http://127.0.0.1:{ctl.health_port}/healthz"
            while not stop.is_set():
                t0 = time.monotonic()
                await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
                probes.append(time.monotonic() - t0)
                await asyncio.sleep(0.05)

        async def patch(text: str) -> float:
            t0 = time.monotonic()
            await admin.request(
                "PATCH", cm_path, {"data": {"config.yaml": text}}, content_type="application/merge-patch+json"
            )
            return t0

        async with (
            observe(admin, NODES, f"{TAG_LABEL}={self.tag}", nodes),
            observe(admin, SLICES, f"{LABEL_MANAGED_BY}={self.managed_by}", tracker),
        ):
            parse0 = ctl.metric("dra_kwok_config_parse_seconds_sum")
            text, mappings = large_config_text(self.tag, self.o.devices, "probe-1")
            tracker.set_marker("probe-1", time.monotonic())
            t0 = await patch(text)
            first = await tracker.wait_complete([probe], self.o.timeout) - t0
            first_parse = ctl.metric("dra_kwok_config_parse_seconds_sum") - parse0
            await self.wait_drained(ctl)

            parse0 = ctl.metric("dra_kwok_config_parse_seconds_sum")
            text2 = text.replace("model: probe-1", "model: probe-2", 1)
            newcomers = self.node_names("reload", 10)
            polling = asyncio.create_task(poll_healthz())
            tracker.set_marker("probe-2", time.monotonic())
            t0 = await patch(text2)
            await self.create_nodes(newcomers)
            reload = await tracker.wait_complete([probe], self.o.timeout) - t0
            tracker.set_marker(MARKER_A, time.monotonic())
            await tracker.wait_complete(newcomers, self.o.timeout)
            reload_parse = ctl.metric("dra_kwok_config_parse_seconds_sum") - parse0
            stop.set()
            await polling
            up = [max(0.0, tracker.complete_at[n] - nodes.added_at[n]) for n in newcomers]

            loads = ctl.metric('dra_kwok_config_reloads_total{result="loaded",source="configmap"}')
            parses = ctl.metric("dra_kwok_config_parse_seconds_count")
            await admin.request(
                "PATCH",
                cm_path,
                {"metadata": {"labels": {"touched": "1"}}},
                content_type="application/merge-patch+json",
            )
            await asyncio.sleep(3)
            metadata_parses = ctl.metric("dra_kwok_config_parse_seconds_count") - parses
            metadata_loads = ctl.metric('dra_kwok_config_reloads_total{result="loaded",source="configmap"}') - loads
        return {
            "bytes": len(text2.encode()),
            "mappings": mappings,
            "first_s": first,
            "first_parse_s": first_parse,
            "reload_s": reload,
            "reload_parse_s": reload_parse,
            "newcomer_max_s": max(up),
            "healthz_max_s": max(probes) if probes else None,
            "metadata_parses": metadata_parses,
            "metadata_loads": metadata_loads,
        }

    # --- the run -----------------------------------------------------------------------------------
    async def restart(self, ctl: ControllerProcess, n: int) -> dict[str, Any]:
        """Stops the controller and starts a new one with the N nodes and their slices present: the
        startup listing (ours, then kopf's) is a restart's memory peak, and it must write nothing."""
        self.stop_controller()
        t0 = time.monotonic()
        new = self.start_controller(f"{n}-restart")
        ready = time.monotonic() - t0
        await self.wait_drained(new)
        await asyncio.sleep(self.o.settle_seconds)
        assert new.proc is not None
        sample = proc_sample(new.proc.pid)
        return {
            "ready_s": ready,
            "peak_rss_mb": sample.peak_rss_mb,
            "rss_mb": sample.rss_mb,
            "cpu_s": sample.cpu_s,
            "writes": new.writes(),
        }

    async def run(self) -> Results:
        o, r = self.o, self.results
        r.details["load"] = {"start": load_average()}
        async with (
            Kube(self.cluster.kubeconfig, o.node_concurrency, "dra-kwok-bench") as self.admin,
            Kube(self.sa_kubeconfig, o.concurrency, "dra-kwok-bench-ceiling") as self.ceiling,
        ):
            for i, n in enumerate(o.sizes):
                first = i == 0
                runs: list[dict[str, Any]] = []
                for rep in range(o.repeat):
                    last = rep == o.repeat - 1
                    label = f"{n} nodes" + (f", run {rep + 1}/{o.repeat}" if o.repeat > 1 else "")
                    print(f"[{label}] ceiling: minimal client, concurrency {o.concurrency}", flush=True)
                    await self.clear()
                    self.cluster.apply(self.configmap(MARKER_A))
                    run: dict[str, Any] = {"ceiling": await self.bulk_ceiling(n, first)}
                    runs.append(run)
                    await self.clear()
                    print(f"[{label}] dra-kwok-driver", flush=True)
                    ctl = self.start_controller(f"{n}-{rep}")
                    try:
                        assert ctl.proc is not None
                        ready = proc_sample(ctl.proc.pid)
                        with self.profiled(ctl, f"bulk-{n}-{rep}"):
                            names, run["bulk"] = await self.bulk_ours(ctl, n)
                        await self.wait_drained(ctl)
                        await asyncio.sleep(o.settle_seconds)
                        after = proc_sample(ctl.proc.pid)
                        run["bulk"] |= {"rss_at_start_mb": ready.rss_mb, "peak_rss_mb": after.peak_rss_mb}
                        if first and last:
                            with self.profiled(ctl, f"idle-{n}"):
                                r.details["idle"] = await self.idle(ctl)
                            with self.profiled(ctl, f"heartbeats-{n}"):
                                r.details["heartbeats"] = await self.heartbeats(ctl, names)
                        if first:
                            with self.profiled(ctl, f"fanout-{n}-{rep}"):
                                run["fanout"] = await self.fanout_ours(ctl, names)
                        if first and last and o.claims:
                            r.details["claims"] = await self.claims(ctl, names)
                        if first and last:
                            with self.profiled(ctl, f"churn-{n}"):
                                r.details["churn"] = await self.churn(ctl)
                            with self.profiled(ctl, f"reload-{n}"):
                                r.details["reload"] = await self.config_reload(ctl)
                            run["after_all_peak_rss_mb"] = proc_sample(ctl.proc.pid).peak_rss_mb
                        if last:
                            run["restart"] = await self.restart(ctl, n)
                    finally:
                        self.stop_controller()
                    await self.clear()
                r.details[f"size_{n}"] = runs
                self.add_size_rows(n, runs)
                if first and "claims" in r.details:
                    self.add_claims_rows(n, r.details["claims"])
                if first:
                    self.add_idle_rows(n, r.details["idle"])
                    self.add_heartbeat_rows(n, r.details["heartbeats"])
                    self.add_churn_rows(r.details["churn"])
                    self.add_reload_rows(n, r.details["reload"])
        r.details["load"]["end"] = load_average()
        return r

    async def claims(self, ctl: ControllerProcess, nodes: list[str]) -> dict[str, Any]:
        """A ResourceClaim and a pod on every node; the scheduler allocates, kwok runs the pods,
        and the controller writes each claim's status.devices (simulation.claimStatus): how long
        until every claim has it, and how many writes and requests that took."""
        assert self.admin is not None
        admin = self.admin
        ns = self.namespace
        device_class = f"{self.tag}-gpu"
        self.cluster.apply(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": device_class},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
            }
        )
        writes = ctl.metric('dra_kwok_claim_status_writes_total{result="written"}')
        requests = ctl.metric("dra_kwok_api_requests_total")
        claims_path = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
        start = time.monotonic()

        async def one(i: int, node: str) -> None:
            name = f"c{i:05d}"
            await admin.create(
                claims_path,
                {
                    "metadata": {"name": name},
                    "spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": device_class}}]}},
                },
            )
            await admin.create(
                f"/api/v1/namespaces/{ns}/pods",
                {
                    "metadata": {"name": name},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": "pause", "resources": {"claims": [{"name": "g"}]}}],
                        "resourceClaims": [{"name": "g", "resourceClaimName": name}],
                    },
                },
            )

        await asyncio.gather(*(one(i, n) for i, n in enumerate(nodes)))
        created = time.monotonic() - start
        deadline = time.monotonic() + self.o.timeout
        while True:
            items, _ = await admin.list(claims_path)
            done = sum(1 for c in items if (c.get("status") or {}).get("devices"))
            if done == len(nodes):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {len(nodes)} claims got status.devices")
            await asyncio.sleep(1.0)
        seconds = time.monotonic() - start
        await asyncio.sleep(self.o.settle_seconds)
        out = {
            "claims": len(nodes),
            "seconds": seconds,
            "created_seconds": created,
            "writes": ctl.metric('dra_kwok_claim_status_writes_total{result="written"}') - writes,
            "requests": ctl.metric("dra_kwok_api_requests_total") - requests,
        }
        k = self.cluster.kubectl
        for args in (("delete", "pods", "--all", "-n", ns, "--wait=false"), ("delete", "deviceclass", device_class)):
            with contextlib.suppress(Exception):
                k(*args, timeout=300)
        with contextlib.suppress(Exception):
            k("wait", "--for=delete", "pods", "--all", "-n", ns, "--timeout=300s", timeout=330)
        with contextlib.suppress(Exception):
            k("delete", "resourceclaims", "--all", "-n", ns, timeout=300)
        return out

    def add_claims_rows(self, n: int, c: dict[str, Any]) -> None:
        add = self.results.add
        per = c["writes"] / c["claims"]
        add(Row("claims", f"{c['claims']} claims and pods on {n} nodes → every claim's status.devices written", "s",
                c["seconds"]))  # fmt: skip
        add(Row("claims", "status writes per claim", "", per, target="1", ok=per == 1))
        add(Row("claims", "controller API requests per claim (writes and pod reads)", "", c["requests"] / c["claims"]))

    # --- rows --------------------------------------------------------------------------------------
    def add_size_rows(self, n: int, runs: list[dict[str, Any]]) -> None:
        """Medians over the runs (ceiling and ours alternate, so a slow spell hits both)."""
        add = self.results.add
        med = statistics.median
        ours, ceiling = med(x["bulk"]["seconds"] for x in runs), med(x["ceiling"]["bulk"]["seconds"] for x in runs)
        add(Row("bulk", f"{n} nodes created at once → every pool complete", "s", ours, ceiling,
                f"≤ {RATIO_TARGET:.2f}x ceiling", ours <= RATIO_TARGET * ceiling))  # fmt: skip
        if "fanout" in runs[0]:
            ours, ceiling = (
                med(x["fanout"]["seconds"] for x in runs),
                med(x["ceiling"]["fanout"]["seconds"] for x in runs),
            )
            add(Row("fan-out", f"ConfigMap edit changing {n} nodes' devices → all pools converged", "s", ours, ceiling,
                    f"≤ {RATIO_TARGET:.2f}x ceiling", ours <= RATIO_TARGET * ceiling))  # fmt: skip
        big = n == max(self.o.sizes)
        peak = max(x["bulk"]["peak_rss_mb"] for x in runs)
        add(
            Row(
                "footprint", f"{n} nodes: RSS at start (0 nodes)", "MB", med(x["bulk"]["rss_at_start_mb"] for x in runs)
            )
        )
        add(Row("footprint", f"{n} nodes: peak RSS (VmHWM) after publishing them", "MB", peak,
                target="≤ 150 MB" if big else "", ok=peak <= 150 if big else None))  # fmt: skip
        add(Row("footprint", f"{n} nodes: CPU to publish them (utime+stime)", "s",
                med(x["bulk"]["controller_cpu_s"] for x in runs)))  # fmt: skip
        last = runs[-1]
        if "after_all_peak_rss_mb" in last:
            add(Row("footprint", f"{n} nodes: peak RSS (VmHWM) after idle, fan-out and churn", "MB",
                    last["after_all_peak_rss_mb"]))  # fmt: skip
        rs = last["restart"]
        add(Row("restart", f"{n} nodes and slices present: new controller ready", "s", rs["ready_s"],
                target="≤ 10 s" if n >= 10000 else "", ok=rs["ready_s"] <= 10 if n >= 10000 else None))  # fmt: skip
        add(Row("restart", f"{n} nodes and slices present: peak RSS (VmHWM) once converged", "MB", rs["peak_rss_mb"],
                target="≤ 150 MB" if big else "", ok=rs["peak_rss_mb"] <= 150 if big else None))  # fmt: skip
        add(Row("restart", f"{n} nodes and slices present: writes", "", rs["writes"], target="0", ok=rs["writes"] == 0))

    def add_idle_rows(self, n: int, idle: dict[str, Any]) -> None:
        add = self.results.add
        what = f"{n} nodes, nothing changing"
        add(Row("idle", f"{what}: controller API requests (its metrics)", "/min", idle["requests_per_min"]))
        writes = idle["writes_per_min"]
        add(Row("idle", f"{what}: controller writes (its metrics)", "/min", writes, target="0", ok=writes == 0))
        by_sa = idle["apiserver_sa_requests_per_min"]
        add(Row("idle", "apiserver: requests from the controller's ServiceAccount (APF flow schema)", "/min", by_sa))
        slice_writes = idle["apiserver_slice_writes_per_min"]
        add(
            Row("idle", "apiserver: ResourceSlice writes by any client (apiserver_request_total)", "/min", slice_writes)
        )
        add(Row("idle", f"{what}: node events the controller received", "/min", idle["node_events_per_min"]))
        add(Row("idle", f"{what}: controller CPU", "s/min", idle["controller_cpu_s_per_min"]))

    def add_heartbeat_rows(self, n: int, hb: dict[str, Any]) -> None:
        add = self.results.add
        what = f"{n} nodes, each heartbeating once in {self.o.idle_seconds:g} s (status PATCH)"
        cpu = hb["controller_cpu_s_per_min"]
        add(Row("heartbeats", f"{what}: controller CPU", "s/min", cpu, target="< 0.43 s/min", ok=cpu < 0.43))
        add(Row("heartbeats", f"{what}: controller CPU per 1000 node events", "ms", hb["cpu_ms_per_1000_events"]))
        add(Row("heartbeats", f"{what}: writes", "", hb["writes"], target="0", ok=hb["writes"] == 0))

    def add_churn_rows(self, churn: dict[str, Any]) -> None:
        add = self.results.add
        rate = f"{self.o.churn_rate:g}/s for {self.o.churn_seconds:g} s"
        add(Row("churn", f"{rate}: node created → pool complete, p50", "s", churn["create_p50"]))
        p99 = churn["create_p99"]
        add(Row("churn", f"{rate}: node created → pool complete, p99", "s", p99, target="< 1 s",
                ok=p99 is not None and p99 < 1 and churn["published"] == churn["nodes"]))  # fmt: skip
        p99 = churn["delete_p99"]
        add(Row("churn", f"{rate}: node deleted → slices gone, p99", "s", p99, target="< 1 s",
                ok=p99 is not None and p99 < 1 and churn["cleaned"] == churn["nodes"]))  # fmt: skip

    def add_reload_rows(self, n: int, rl: dict[str, Any]) -> None:
        add = self.results.add
        what = f"config.yaml of {rl['bytes'] / 1e6:.2f} MB ({rl['mappings']} mappings), {n} nodes"
        add(Row("reload", f"{what}: first applied, ConfigMap patched → probe node's pool updated", "s", rl["first_s"]))
        add(Row("reload", f"{what}: first applied, parse and validate (controller's histogram)", "s",
                rl["first_parse_s"]))  # fmt: skip
        add(Row("reload", f"{what}: one mapping edited, parse and validate (controller's histogram)", "s",
                rl["reload_parse_s"], target="≤ 1 s", ok=rl["reload_parse_s"] <= 1.0))  # fmt: skip
        add(Row("reload", f"{what}: one mapping edited, ConfigMap patched → probe node's pool updated "
                "(the reload, every node planned again, one write)", "s", rl["reload_s"]))  # fmt: skip
        add(Row("reload", "10 nodes created during the reload: node created → pool complete, max", "s",
                rl["newcomer_max_s"], target="< 1 s", ok=rl["newcomer_max_s"] < 1.0))  # fmt: skip
        if rl["healthz_max_s"] is not None:
            add(Row("reload", "/healthz during the reload, slowest answer", "s", rl["healthz_max_s"]))
        add(Row("reload", "metadata-only ConfigMap change: parses", "", rl["metadata_parses"], target="0",
                ok=rl["metadata_parses"] == 0 and rl["metadata_loads"] == 0))  # fmt: skip


def dump_json(results: Results, machine: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, **results.to_json()}, indent=2, default=str) + "\n")
