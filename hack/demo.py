#!/usr/bin/env python3
"""The five-minute demo: `make demo` / `make demo-down`.

up:    start the local cluster, install the chart (Deployment scaled to zero: there is no kubelet),
       run the controller as a local process with a token of the chart's ServiceAccount and the
       chart's own settings, create KWOK nodes of two instance types (one covered by a
       DRANodeOverlay, one only by the ConfigMap), deploy two workloads that claim fake GPUs,
       wait until they run, and print who got what.
table: print the table again.
down:  stop the controller and delete the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Overridable so that a test can run the whole demo beside a developer's cluster.
STATE = Path(os.environ.get("DRA_KWOK_DEMO_DIR", REPO / ".cluster")).resolve()
CLUSTER_NAME = os.environ.get("DRA_KWOK_DEMO_CLUSTER", "dra-kwok")
KUBECONFIG = STATE / "kubeconfig"
BIN = STATE / "bin"
PIDFILE = STATE / "driver.pid"
LOGFILE = STATE / "driver.log"
DRIVER_KUBECONFIG = STATE / "driver.kubeconfig"
DEMO = REPO / "examples" / "demo"
RELEASE, NAMESPACE = "dra-kwok-driver", "dra-kwok"
SOURCE_ANNOTATION = "dra-kwok.test.karpenter.sh/source"
NODE_LABEL = "dra-kwok.test.karpenter.sh/node"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def run(*args: str, input: str | None = None, check: bool = True, quiet: bool = False) -> str:
    proc = subprocess.run(list(args), input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"demo: `{' '.join(args)}` failed:\n{proc.stderr.strip() or proc.stdout.strip()}")
    if not quiet and proc.stdout.strip() and not args[0].endswith("kubectl"):
        print(proc.stdout.rstrip())
    return proc.stdout


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    return run(str(BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args, input=input, check=check)


def get(*args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def helm(*args: str) -> str:
    return run(str(BIN / "helm"), "--kubeconfig", str(KUBECONFIG), *args, quiet=True)


def stop_driver() -> None:
    if not PIDFILE.exists():
        return
    pid = int(PIDFILE.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    PIDFILE.unlink(missing_ok=True)


def driver_kubeconfig() -> None:
    """A kubeconfig holding a token of the chart's ServiceAccount: the driver has exactly the
    permissions the chart grants it."""
    sa = get("deployment", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"][0]
    sa_name = sa["spec"]["template"]["spec"]["serviceAccountName"]
    token = kubectl("create", "token", sa_name, "-n", NAMESPACE, "--duration", "24h").strip()
    admin = json.loads(kubectl("config", "view", "--raw", "-o", "json"))
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa_name, "user": {"token": token}}],
        "contexts": [{"name": sa_name, "context": {"cluster": cluster["name"], "user": sa_name}}],
        "current-context": sa_name,
    }
    DRIVER_KUBECONFIG.write_text(json.dumps(config))
    DRIVER_KUBECONFIG.chmod(0o600)


def start_driver() -> None:
    """Runs the image's entrypoint (`dra-kwok run`) with the environment of the chart's Deployment."""
    stop_driver()
    deploy = get("deployment", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"][0]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRA_KWOK_")}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[var["name"]] = NAMESPACE
    env["DRA_KWOK_LOG_FORMAT"] = "text"  # readable in the terminal; the chart's pods log JSON
    env["DRA_KWOK_BIND_ADDRESS"] = "127.0.0.1"
    args = [*(container.get("command") or ["dra-kwok"]), *(container.get("args") or ["run"])]
    exe = REPO / ".venv" / "bin" / args[0]
    cmd = [str(exe if exe.exists() else args[0]), *args[1:], "--kubeconfig", str(DRIVER_KUBECONFIG)]
    with LOGFILE.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    PIDFILE.write_text(str(proc.pid))
    port = env.get("DRA_KWOK_HEALTH_PORT", "8081")
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"demo: the driver exited ({proc.returncode}); see {LOGFILE}")
        ready = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/readyz"], capture_output=True, check=False)
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit(f"demo: the driver did not become ready; see {LOGFILE}")


def wait_rollouts() -> None:
    for name in ("claim-workload", "gpu-workload"):
        proc = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG), "rollout", "status", f"deployment/{name}",
             "-n", "dra-demo", "--timeout=120s"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            print(kubectl("get", "pods,resourceclaims", "-n", "dra-demo", "-o", "wide", check=False))
            print(kubectl("get", "events", "-n", "dra-demo", check=False))
            sys.exit(f"demo: deployment/{name} did not become available:\n{proc.stderr}")


def table() -> str:
    nodes = sorted(n["metadata"]["name"] for n in get("nodes")["items"] if n["metadata"]["name"].startswith("demo-"))
    slices = get("resourceslices")["items"]
    pods = get("pods", "-n", "dra-demo")["items"]
    claims = {c["metadata"]["name"]: c for c in get("resourceclaims", "-n", "dra-demo")["items"]}
    rows = [("NODE", "SOURCE", "DEVICES", "POD", "ALLOCATED")]
    for node in nodes:
        mine = [s for s in slices if s["spec"].get("nodeName") == node]
        source = ", ".join(sorted({(s["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION, "?") for s in mine}))
        devices = [d["name"] for s in mine for d in s["spec"].get("devices") or []]
        summary = f"{len(devices)}: {_compress(devices)}" if devices else "0"
        on_node = sorted((p for p in pods if p["spec"].get("nodeName") == node), key=lambda p: p["metadata"]["name"])
        if not on_node:
            rows.append((node, source or "-", summary, "-", "-"))
        for i, pod in enumerate(on_node):
            names = [s.get("resourceClaimName") for s in pod.get("status", {}).get("resourceClaimStatuses") or []]
            ext = (pod.get("status", {}).get("extendedResourceClaimStatus") or {}).get("resourceClaimName")
            allocated = []
            for claim_name in [*names, ext]:
                claim = claims.get(claim_name or "")
                for r in (
                    ((claim or {}).get("status") or {}).get("allocation", {}).get("devices", {}).get("results", [])
                ):
                    allocated.append(r["device"] + (" (extended resource)" if claim_name == ext else ""))
            phase = pod.get("status", {}).get("phase", "?")
            first = i == 0
            rows.append(
                (
                    node if first else "",
                    (source or "-") if first else "",
                    summary if first else "",
                    f"{pod['metadata']['name']} ({phase})",
                    ", ".join(allocated) or "-",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _compress(names: list[str]) -> str:
    """`gpu-0 … gpu-7` instead of eight names."""
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]}"


def up() -> None:
    start = time.monotonic()
    say("Starting the local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
    subprocess.run([str(REPO / "hack" / "cluster.sh"), "up", "--name", CLUSTER_NAME, "--dir", str(STATE)], check=True)
    say("Installing the Helm chart (Deployment scaled to zero: the cluster has no kubelet)")
    helm(
        "upgrade",
        "--install",
        RELEASE,
        str(REPO / "charts" / "dra-kwok-driver"),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "-f",
        str(DEMO / "values.yaml"),
        "--wait",
        "--timeout",
        "120s",
        # A re-run after `kubectl edit` of the ConfigMap (as the README suggests) would otherwise be
        # refused as a server-side-apply conflict; the demo's values win.
        "--force-conflicts",
    )
    say("Starting the driver as a local process with the chart's ServiceAccount token and settings")
    driver_kubeconfig()
    start_driver()
    say("Creating a DRANodeOverlay for m-8x-amd64-linux (the ConfigMap covers c-4x-amd64-linux)")
    kubectl("apply", "-f", str(DEMO / "overlay-m-8x.yaml"))
    say("Creating two KWOK nodes, one of each instance type")
    kubectl("apply", "-f", str(DEMO / "nodes.yaml"))
    say("Deploying workloads: one claims an H100 via a ResourceClaimTemplate, one requests the extended resource")
    kubectl("apply", "-f", str(DEMO / "workloads.yaml"))
    wait_rollouts()
    say(f"Done in {time.monotonic() - start:.0f}s. Who got what:")
    print(table())
    claim, device = show_claim_status()
    fault_and_recover(claim, device)
    print(
        f"""
Everything keeps running. Look around:
  export KUBECONFIG={KUBECONFIG} PATH={BIN}:$PATH
  kubectl get resourceslices -o wide
  kubectl get dranodeoverlays                       # Weight, Nodes, Ready
  kubectl get resourceclaims -n dra-demo -o yaml     # status.devices written by the driver
  dra-kwok fault demo-m-8x-1 gpu-0=NoSchedule       # fail a GPU (docs/simulation.md); --recover gpu-0
  kubectl -n {NAMESPACE} edit configmap dra-kwok-configmap   # change a count; slices follow within a second
  tail -f {LOGFILE}                  # the driver's log
  make demo-table                                   # this table again
  make demo-down                                    # stop the driver and delete the cluster"""
    )


def claim_workload_claims() -> list[dict[str, Any]]:
    return [
        c
        for c in get("resourceclaims", "-n", "dra-demo")["items"]
        if c["metadata"]["name"].startswith("claim-workload") and (c.get("status") or {}).get("allocation")
    ]


def show_claim_status() -> tuple[str, str]:
    """A claim's status.devices, as the overlay's simulation.claimStatus makes the driver write it."""
    say("The driver writes what NVIDIA's plugin would into a claim's status.devices (simulation.claimStatus)")
    for _ in range(100):
        claims = [c for c in claim_workload_claims() if c["status"].get("devices")]
        if claims:
            break
        time.sleep(0.1)
    else:
        sys.exit("demo: no claim of claim-workload got status.devices; see " + str(LOGFILE))
    claim = sorted(claims, key=lambda c: c["metadata"]["name"])[0]
    entry = claim["status"]["devices"][0]
    ready = entry["conditions"][0]
    print(f"  claim {claim['metadata']['name']}: device {entry['device']} {ready['type']}={ready['status']} "
          f"data={json.dumps(entry.get('data'), sort_keys=True)}")  # fmt: skip
    return claim["metadata"]["name"], str(entry["device"])


def fault_and_recover(claim: str, device: str) -> None:
    """A NoExecute fault on a GPU in use: kube-controller-manager evicts its pod, the Deployment's
    new pod gets another GPU; then the fault is recovered."""
    node = "demo-m-8x-1"
    say(f"Failing {device} on {node}: dra-kwok fault {node} {device}=NoExecute")
    exe = REPO / ".venv" / "bin" / "dra-kwok"
    fault = [str(exe if exe.exists() else "dra-kwok"), "fault", node]
    config = ["--kubeconfig", str(KUBECONFIG)]
    run(*fault, f"{device}=NoExecute", *config, quiet=True)
    for _ in range(600):
        if claim not in {c["metadata"]["name"] for c in get("resourceclaims", "-n", "dra-demo")["items"]}:
            break
        time.sleep(0.1)
    else:
        sys.exit(f"demo: the pod using {device} was not evicted; see {LOGFILE}")
    wait_rollouts()
    taints = [
        f"{t['key']}={t['value']}:{t['effect']}"
        for s in get("resourceslices")["items"]
        if s["spec"].get("nodeName") == node
        for d in s["spec"].get("devices") or []
        if d["name"] == device
        for t in d.get("taints") or []
    ]
    in_use = sorted(
        r["device"] for c in claim_workload_claims() for r in c["status"]["allocation"]["devices"]["results"]
    )
    print(f"  {device} carries {', '.join(taints)}; its pod was evicted; claim-workload now uses {', '.join(in_use)}")
    run(*fault, "--recover", device, *config, quiet=True)
    say(f"Recovered: dra-kwok fault {node} --recover {device}")


def down() -> None:
    say("Stopping the driver and deleting the cluster")
    stop_driver()
    subprocess.run([str(REPO / "hack" / "cluster.sh"), "down", "--name", CLUSTER_NAME, "--dir", str(STATE)], check=True)
    for f in (DRIVER_KUBECONFIG, LOGFILE):
        f.unlink(missing_ok=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    {"up": up, "down": down, "table": lambda: print(table())}.get(command, lambda: sys.exit(__doc__))()
