"""The cluster benchmark harness (`make bench`, `python -m benchmarks`) at a tiny size, so it cannot
rot: every row of the report is there and every figure is sane. Nothing here is a speed threshold;
benchmarks never fail on a slow machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SIZE = 20


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scenario"], r["metric"]): r for r in report["rows"]}


def _find(rows: dict[tuple[str, str], dict[str, Any]], scenario: str, *words: str) -> dict[str, Any]:
    found = [r for (s, m), r in rows.items() if s == scenario and all(w in m for w in words)]
    assert len(found) == 1, f"expected one {scenario} row with {words}, got {[r['metric'] for r in found]}"
    return found[0]


def test_harness_at_a_tiny_size_reports_every_row_with_sane_figures(cluster: Cluster, tmp_path: Path) -> None:
    out_md, out_json = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    cmd = [
        sys.executable, "-m", "benchmarks",
        "--kubeconfig", str(cluster.kubeconfig),
        "--sizes", str(SIZE), "--repeat", "1",
        "--churn-rate", "4", "--churn-seconds", "5", "--churn-lifetime", "2",
        "--idle-seconds", "5", "--settle-seconds", "1", "--timeout", "120",
        "--no-micro", "--output", str(out_md), "--json", str(out_json),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]

    report = json.loads(out_json.read_text())
    rows = _rows(report)
    for row in rows.values():
        value = row["ours"]
        assert value is not None and math.isfinite(value) and value >= 0, row

    # Bulk and fan-out: ours and the ceiling, both measured, within the run's timeout.
    for scenario in ("bulk", "fan-out"):
        row = _find(rows, scenario, str(SIZE))
        assert 0 < row["ours"] < 120 and 0 < row["ceiling"] < 120, row
        assert row["ratio"] == pytest.approx(row["ours"] / row["ceiling"]), row
        assert row["ok"] in (True, False), row

    # Churn: every node published and cleaned up; latencies measured from watch events.
    churn = report["details"]["churn"]
    assert churn["nodes"] == 20 and churn["create_failures"] == 0, churn
    assert churn["published"] == churn["nodes"] and churn["cleaned"] == churn["nodes"], churn
    p50 = _find(rows, "churn", "created", "p50")["ours"]
    p99 = _find(rows, "churn", "created", "p99")["ours"]
    assert 0 <= p50 <= p99 < 60
    assert 0 <= _find(rows, "churn", "deleted", "p99")["ours"] < 60

    # Idle: figures from the controller's metrics and from the apiserver's; an idle controller writes nothing.
    assert _find(rows, "idle", "controller writes")["ours"] == 0
    assert _find(rows, "idle", "controller API requests")["ours"] >= 0
    assert _find(rows, "idle", "ServiceAccount")["ours"] >= 0
    assert _find(rows, "idle", "ResourceSlice writes by any client")["ours"] >= 0
    assert _find(rows, "idle", "controller CPU")["ours"] >= 0
    assert _find(rows, "idle", "node events")["ours"] >= 0

    # Heartbeats: every node's status patched once; the controller saw each as an event and wrote nothing.
    beats = report["details"]["heartbeats"]
    assert beats["heartbeats"] == SIZE and beats["node_events"] >= SIZE, beats
    assert beats["writes"] == 0, beats
    assert _find(rows, "heartbeats", "writes")["ours"] == 0
    assert _find(rows, "heartbeats", "per 1000 node events")["ours"] > 0

    # Config reload: a 1 MB config.yaml applied and edited, timed by the benchmark's watch;
    # nodes created meanwhile are published; a metadata-only change parses nothing.
    reload = report["details"]["reload"]
    assert 0.9e6 < reload["bytes"] < 1.1e6 and reload["mappings"] > 2000, reload
    assert 0 < _find(rows, "reload", "first applied", "probe")["ours"] < 120
    assert 0 < _find(rows, "reload", "one mapping edited", "probe")["ours"] < 120
    assert 0 < _find(rows, "reload", "one mapping edited", "parse")["ours"] < 60
    assert 0 <= _find(rows, "reload", "10 nodes created")["ours"] < 60
    assert _find(rows, "reload", "metadata-only")["ours"] == 0

    # Footprint and restart: plausible process figures, and a restart rewrites nothing.
    start_rss = _find(rows, "footprint", "RSS at start")["ours"]
    peak = _find(rows, "footprint", "peak RSS", "after publishing")["ours"]
    assert 20 < start_rss <= peak < 2000
    assert 20 < _find(rows, "footprint", "after idle, fan-out and churn")["ours"] < 2000
    assert 0 < _find(rows, "footprint", "CPU to publish")["ours"] < 120
    assert 0 < _find(rows, "restart", "ready")["ours"] < 120
    assert 20 < _find(rows, "restart", "peak RSS")["ours"] < 2000
    assert _find(rows, "restart", "writes")["ours"] == 0

    # The machine is described, and the markdown carries every row.
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["memory_gib"] > 0 and machine["cpu_model"]
    assert machine["kubernetes"].startswith("v") and machine["date"]
    text = out_md.read_text()
    for heading in ("## Machine", "## Results", "## What is measured, and how"):
        assert heading in text
    for _, metric in rows:
        assert metric in text, metric
