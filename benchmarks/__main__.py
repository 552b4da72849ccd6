"""`python -m benchmarks` (`make bench`): start a local cluster, run the cluster benchmarks and the
micro-benchmarks, print a table and write docs/benchmarks.md.

Small runs for a quick look: `python -m benchmarks --sizes 100 --churn-seconds 10 --idle-seconds 10
--output /tmp/bench.md`. `--kubeconfig` reuses a running cluster (nothing outside the benchmark's
own namespace, nodes and slices is touched).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from tests.support.cluster import TEST_CLUSTER_PREFIX, existing_cluster, start_cluster, stop_cluster

from .harness import Bench, Options, dump_json
from .report import markdown, table
from .system import count_processes, load_average, machine_info

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", type=Path, help="use this running cluster instead of starting one")
    p.add_argument(
        "--sizes",
        default=",".join(map(str, d.sizes)),
        help="node counts for bulk and footprint; idle, fan-out and churn run at the first (default %(default)s)",
    )
    p.add_argument("--devices", type=int, default=d.devices, help="devices per node (default %(default)s)")
    p.add_argument(
        "--concurrency", type=int, default=d.concurrency, help="controller and ceiling (default %(default)s)"
    )
    p.add_argument("--workers", type=int, help="the controller's --workers (default: the controller's default)")
    p.add_argument("--node-concurrency", type=int, default=d.node_concurrency, help="parallel node POSTs")
    p.add_argument("--churn-rate", type=float, default=d.churn_rate, help="nodes/s (default %(default)s)")
    p.add_argument("--churn-seconds", type=float, default=d.churn_seconds, help="(default %(default)s)")
    p.add_argument("--churn-lifetime", type=float, default=d.churn_lifetime, help="seconds a churn node lives")
    p.add_argument("--idle-seconds", type=float, default=d.idle_seconds, help="(default %(default)s)")
    p.add_argument("--settle-seconds", type=float, default=d.settle_seconds)
    p.add_argument("--repeat", type=int, default=d.repeat, help="bulk/fan-out pairs per size, medians reported")
    p.add_argument("--timeout", type=float, default=d.timeout, help="per wait (default %(default)s)")
    p.add_argument("--controller-arg", action="append", default=[], help="extra `dra-kwok run` flag (repeatable)")
    p.add_argument(
        "--profile-dir",
        type=Path,
        help="py-spy the controller per phase (collapsed stacks) into DIR; slows it: not for timing runs",
    )
    p.add_argument(
        "--simulation",
        type=yaml.safe_load,
        help="the bench mapping's simulation block as YAML, e.g. '{faults: [{effect: NoSchedule, every: 60s, "
        "duration: 6s, probability: 0.5}]}' (docs/simulation.md); with --controller-arg=--simulate-claims for claims",
    )
    p.add_argument(
        "--claims",
        action="store_true",
        help="also a claim and a pod on every node of the first size, whose status.devices the controller writes "
        "(give --simulation '{claimStatus: {}}' --controller-arg=--simulate-claims)",
    )
    p.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown report")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--no-micro", action="store_true", help="skip the pytest-benchmark micro-benchmarks")
    return p.parse_args(argv)


def run_micro(workdir: Path) -> dict[str, Any] | None:
    out = workdir / "micro.json"
    cmd = [
        sys.executable, "-m", "pytest", str(REPO / "benchmarks" / "micro"), "-q", "-p", "no:cacheprovider",
        "--benchmark-only", f"--benchmark-json={out}",
    ]  # fmt: skip
    print("[micro] " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    if proc.returncode != 0 or not out.exists():
        print(f"[micro] failed (exit {proc.returncode}); the report has no micro-benchmarks", flush=True)
        return None
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        sizes=[int(s) for s in args.sizes.split(",") if s],
        devices=args.devices,
        concurrency=args.concurrency,
        workers=args.workers,
        node_concurrency=args.node_concurrency,
        churn_rate=args.churn_rate,
        churn_seconds=args.churn_seconds,
        churn_lifetime=args.churn_lifetime,
        idle_seconds=args.idle_seconds,
        settle_seconds=args.settle_seconds,
        repeat=args.repeat,
        timeout=args.timeout,
        controller_args=args.controller_arg,
        profile_dir=args.profile_dir,
        simulation=args.simulation,
        claims=args.claims,
    )
    workdir = Path(tempfile.mkdtemp(prefix="dra-kwok-bench-"))
    # How busy the machine is before we add load; a reused cluster's own apiserver is not "other".
    load_before = load_average()
    other_apiservers = max(0, count_processes("kube-apiserver") - (1 if args.kubeconfig else 0))
    micro = None if args.no_micro else run_micro(workdir)
    started = None
    if args.kubeconfig:
        cluster = existing_cluster(args.kubeconfig)
    else:
        # The test prefix and our pid: `hack/cluster.sh prune` removes it if we are killed.
        name = f"{TEST_CLUSTER_PREFIX}-{os.getpid()}-bench{secrets.token_hex(2)}"
        print(f"[cluster] starting {name}", flush=True)
        cluster = started = start_cluster(workdir / "cluster", name=name)
    ok = False
    try:
        server = json.loads(cluster.kubectl("get", "--raw", "/version"))
        machine = machine_info(server.get("gitVersion", "unknown"), load_before, other_apiservers)
        bench = Bench(options, cluster, workdir)
        bench.setup()
        try:
            results = asyncio.run(bench.run())
        finally:
            bench.teardown_cluster_objects()
        command = (
            "make bench"
            if argv is None and not sys.argv[1:]
            else "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
        )
        print()
        print(table(results))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown(results, machine, micro, command))
        print(f"\nwrote {args.output}")
        if args.json:
            dump_json(results, machine, args.json)
            print(f"wrote {args.json}")
        ok = True
    finally:
        if started is not None:
            stop_cluster(started)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"controller logs kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
