"""The micro-benchmarks (benchmarks/micro, `make bench-micro`) run once each, at a small size and
untimed, so that they keep working: a benchmark that only runs on demand rots unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_micro_benchmarks_run() -> None:
    env = {**os.environ, "DRA_KWOK_BENCH_NODES": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/micro", "-q", "-p", "no:cacheprovider", "--benchmark-disable"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
