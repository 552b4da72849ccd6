"""The kube-apiserver stopped for 30 seconds and started again, on a cluster of its own (stopping
the shared one would break every other test). The controller rides it out without restarting
(same pid), without a crash loop or an error storm, and applies what changes right after the
apiserver is back: a ConfigMap edit, a new node, a deleted node, a deleted slice, a deleted
overlay."""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.support import (
    NODES,
    SLICES,
    Apiserver,
    Oracle,
    Rest,
    lines_at,
    log_lines,
    node_manifest,
)
from tests.integration.conftest import CRD_FILE, DRIVER, Scenario
from tests.support.cluster import Cleanup, Cluster, running_cluster
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

OUTAGE_SECONDS = 30.0
UNREADY_AFTER = 10.0  # --unready-after for this test: shorter than the outage
MAX_LOG_LINES_DURING_OUTAGE = 150
MAX_ERROR_LINES_DURING_OUTAGE = 80


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster for this module alone, deleted afterwards."""
    with running_cluster(tmp_path_factory.mktemp("outage-cluster")) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        cluster.wait_established("crd/dranodeoverlays.test.karpenter.sh")
        yield cluster


def config(tag: str, count: int) -> str:
    labels = {"dra-kwok-test": tag, "node.kubernetes.io/instance-type": "gpu-small"}
    devices = [{"name": "gpu", "count": count, "attributes": {"model": "t4"}}]
    mapping = {"name": "small", "nodeSelector": {"matchLabels": labels}, "resourceSlice": {"devices": devices}}
    return yaml.safe_dump({"driver": DRIVER, "mappings": [mapping]})


def healthz(ctl: ControllerProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ctl.health_port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def readyz(ctl: ControllerProcess) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ctl.health_port}/readyz", timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_apiserver_down_for_30s_then_back_controller_recovers_without_restarting(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    namespace = f"outage-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    scenario = Scenario(cluster, namespace, Cleanup(cluster), tmp_path)
    rest = Rest(cluster)
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag, 2)
    scenario.config(oracle.config_text)
    # Two overlays: one is deleted right after the restart, the other stays (its node's slice is
    # deleted then, and must be recreated; a ConfigMap edit does not re-plan that node).
    gone, stays = scenario.unique("gone"), scenario.unique("stays")
    gone_spec = scenario.overlay_spec([{"name": "h100", "count": 2}], instance_type="gpu-overlay")
    stays_spec = scenario.overlay_spec([{"name": "a100"}], instance_type="gpu-stays")
    scenario.overlay(gone, gone_spec)
    scenario.overlay(stays, stays_spec)
    oracle.overlays = [{"metadata": {"name": n}, "spec": sp} for n, sp in ((gone, gone_spec), (stays, stays_spec))]
    small = [scenario.unique("small") for _ in range(10)]
    for name in small:
        rest.create(NODES, node_manifest(name, scenario.tag, "gpu-small"))
    for _ in range(2):
        rest.create(NODES, node_manifest(scenario.unique("ovl"), scenario.tag, "gpu-overlay"))
    kept = scenario.unique("kept")
    rest.create(NODES, node_manifest(kept, scenario.tag, "gpu-stays"))

    ctl = ControllerProcess(
        cluster.kubeconfig,
        namespace,
        scenario.managed_by,
        tmp_path / "controller.log",
        extra_args=("--unready-after", str(UNREADY_AFTER)),
    )
    ctl.start()
    try:
        oracle.wait_exact(60, "the initial slices", ctl)
        assert ctl.proc is not None
        pid = ctl.proc.pid
        apiserver = Apiserver(cluster)

        # Work in flight when it goes down: a ConfigMap edit the controller has just started on.
        oracle.config_text = config(scenario.tag, 3)
        scenario.config(oracle.config_text)
        lines_before = len(log_lines(ctl))
        metrics_before = ctl.metrics()
        stopped = apiserver.stop()
        unhealthy = []
        readiness: list[tuple[float, int]] = []  # (seconds into the outage, /readyz status)
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            assert ctl.alive, f"the controller exited during the outage:\n{ctl.log()}"
            if not healthz(ctl):
                unhealthy.append(round(time.monotonic() - stopped))
            readiness.append((time.monotonic() - stopped, readyz(ctl)))
            time.sleep(1)
        during = log_lines(ctl)[lines_before:]
        counts = _deltas(metrics_before, ctl.metrics())
        ready = apiserver.start()
        print(f"apiserver down {ready - stopped:.1f}s ({OUTAGE_SECONDS:.0f}s stopped, then starting)")
        assert apiserver.healthy(), "the cluster's components are back"

        # Riding it out: alive, healthy, and no storm of errors or retries.
        errors = lines_at(during, "ERROR")
        print(f"during the outage: {len(during)} log lines, {len(errors)} errors; metric changes: {counts}")
        assert ctl.alive and ctl.proc.pid == pid
        assert not unhealthy, f"/healthz failed during the outage at {unhealthy}s"
        # /readyz: ready through the grace period (a short outage does not take the pod out of
        # its Service), not ready once the apiserver has been unreachable for longer.
        print(f"/readyz during the outage: {[(round(t), c) for t, c in readiness]}")
        assert all(c == 200 for t, c in readiness if t < UNREADY_AFTER - 2), readiness
        assert all(c == 503 for t, c in readiness if t > UNREADY_AFTER + 8), readiness
        assert "not ready: unreachable" in ctl.log()
        assert len(during) <= MAX_LOG_LINES_DURING_OUTAGE, "\n".join(during[-40:])
        assert len(errors) <= MAX_ERROR_LINES_DURING_OUTAGE, "\n".join(errors[-40:])
        failures = sum(v for k, v in counts.items() if k.startswith("dra_kwok_reconcile_errors_total"))
        assert failures <= 2 * len(small), f"{failures} failed reconciliations"
        requests = sum(v for k, v in counts.items() if k.startswith("dra_kwok_api_requests_total"))
        assert requests <= 200, f"{requests} API requests during the outage"

        # Right after it is back, before the controller's watches have necessarily reconnected.
        victim = small[0]
        oracle.config_text = config(scenario.tag, 4)
        scenario.config(oracle.config_text)
        newcomer = scenario.unique("new")
        rest.create(NODES, node_manifest(newcomer, scenario.tag, "gpu-small"))
        rest.delete(NODES, victim)
        rest.delete(SLICES, f"{kept}-devices")
        cluster.kubectl("delete", "dranodeoverlay", gone)
        oracle.overlays = oracle.overlays[1:]
        changed = time.monotonic()
        took = oracle.wait_exact(120, "the changes made right after the restart", ctl)
        wait_until(lambda: readyz(ctl) == 200, timeout=30, what="/readyz to recover", describe=ctl.log)
        print(f"changes applied {took:.1f}s after they were made ({time.monotonic() - ready:.1f}s after ready)")

        # And it stays right: no slice of the deleted node comes back, nothing keeps writing.
        writes = ctl.writes()
        for _ in range(10):
            time.sleep(1)
            assert oracle.exact(), f"{time.monotonic() - changed:.0f}s after the changes: {oracle.last}"
        assert ctl.writes() == writes, f"still writing: {ctl.writes() - writes:.0f} writes in 10s"

        assert ctl.alive and ctl.proc.pid == pid, "recovered in the same process"
        assert "Traceback" not in "\n".join(log_lines(ctl)), ctl.log()
    finally:
        ctl.stop()


def _deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    keys = ("dra_kwok_reconcile_errors_total", "dra_kwok_api_requests_total", "dra_kwok_api_writes_total")
    return {
        k: v - before.get(k, 0.0)
        for k, v in after.items()
        if k.startswith(keys) and v != before.get(k, 0.0) and not k.endswith("_created")
    }
