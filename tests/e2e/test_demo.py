"""`make demo` end to end, so the README's first command keeps working: the demo script runs in a
temporary directory with its own cluster name, beside any developer cluster."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


@pytest.mark.versions
def test_demo_runs_workloads_on_overlay_and_configmap_nodes(tmp_path: Path) -> None:
    env = {**os.environ, "DRA_KWOK_DEMO_DIR": str(tmp_path / "demo"),
           "DRA_KWOK_DEMO_CLUSTER": f"demo-test-{secrets.token_hex(3)}"}  # fmt: skip
    demo = [sys.executable, str(REPO / "hack" / "demo.py")]
    try:
        up = subprocess.run([*demo, "up"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        rows = {line.split()[0]: line for line in up.stdout.splitlines() if line.startswith("demo-")}
        overlay_row, mapping_row = rows["demo-m-8x-1"], rows["demo-c-4x-1"]
        assert "overlay/h100-m-8x" in overlay_row and "8: gpu-0 … gpu-7" in overlay_row  # the nvidia-gpu profile
        assert "mapping/gpu-t4-mapping" in mapping_row and "2: nvidia-t4-0-0, nvidia-t4-0-1" in mapping_row
        assert "(Running)" in mapping_row and "(extended resource)" in mapping_row
        claim_pods = [ln for ln in up.stdout.splitlines() if "claim-workload" in ln]
        assert len([ln for ln in claim_pods if "(Running)" in ln and " gpu-" in ln]) >= 2, up.stdout
        # simulation.claimStatus: the claim's status.devices, with the overlay's data filled in
        status = next(ln for ln in up.stdout.splitlines() if ln.strip().startswith("claim claim-workload"))
        assert "Ready=True" in status and '"pciBusID": "0000:' in status and '"uuid": "' in status, status
        # a NoExecute fault evicted the pod using the GPU; its replacement got another one
        evicted = next(ln for ln in up.stdout.splitlines() if "its pod was evicted" in ln)
        assert "dra-kwok.test.karpenter.sh/fault=injected:NoExecute" in evicted, evicted
        failed = evicted.split()[0]
        assert failed not in evicted.split("now uses", 1)[1], evicted
        assert "Recovered: dra-kwok fault demo-m-8x-1 --recover" in up.stdout
    finally:
        down = subprocess.run([*demo, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
