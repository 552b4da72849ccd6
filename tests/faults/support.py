"""Helpers for the fault and bad-input suite: a fast REST client, an oracle for the exact set of
slices the controller must publish (computed with the pure core), bulk node creation, reading a
controller's whole log, Events, and stopping/starting a test cluster's kube-apiserver."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dra_kwok.core.config import EMPTY_CONFIG, FallbackConfig, load_config_text
from dra_kwok.core.fingerprint import fingerprint
from dra_kwok.core.overlay import OverlayRule, load_overlay
from dra_kwok.core.render import LABEL_MANAGED_BY, NodeRef, content_of, render
from dra_kwok.core.resolve import order_overlays, resolve
from tests.support.cluster import Cluster, kwok_node
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

SLICES = "/apis/resource.k8s.io/v1/resourceslices"
NODES = "/api/v1/nodes"
OVERLAYS = "/apis/test.karpenter.sh/v1alpha1/dranodeoverlays"
TEST_LABEL = "dra-kwok-test"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"


# --- REST ------------------------------------------------------------------------------------------


class RestError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: {status} {body[:2000]}")


class Rest:
    """Raw JSON requests through the kubernetes client's transport (thread-safe, no model (de)serialisation,
    so listing thousands of slices is quick)."""

    def __init__(self, cluster: Cluster) -> None:
        self.client = cluster.api_client()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        ok: Iterable[int] = (),
    ) -> tuple[int, Any]:
        """(status, decoded body); raises RestError for a status outside 2xx and `ok`."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, data, _ = self.client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body
        )
        resp = self.client.call_api(method, url, header_params=headers, body=data, _request_timeout=60)
        raw = resp.read()  # type: ignore[no-untyped-call]
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        if not (200 <= resp.status < 300 or resp.status in set(ok)):
            raise RestError(method, path, resp.status, text)
        return resp.status, (json.loads(text) if text else None)

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = {"limit": "500"}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            _, page = self.request("GET", path, query=query)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items
            query["continue"] = cont

    def create(self, path: str, obj: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        query = {"dryRun": "All", "fieldValidation": "Strict"} if dry_run else {}
        _, out = self.request("POST", path, query=query, body=obj)
        return dict(out)

    def delete(self, path: str, name: str) -> bool:
        status, _ = self.request("DELETE", f"{path}/{name}", ok=(404,))
        return status != 404


# --- the oracle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """One slice the controller must publish, as far as the fault tests compare it."""

    node: str
    driver: str
    pool: str
    slice_count: int
    devices: tuple[str, ...]
    counter_sets: tuple[str, ...]
    source: str
    content: str = ""  # fingerprint of the rendered content (attributes, capacity, ...)


def load_config(text: str | None) -> FallbackConfig:
    if text is None:
        return EMPTY_CONFIG
    cfg, issues = load_config_text(text)
    assert cfg is not None, issues
    return cfg


def load_rules(overlays: Iterable[Mapping[str, Any]]) -> list[OverlayRule]:
    rules = []
    for obj in overlays:
        rule, issues = load_overlay(obj)
        assert rule is not None, issues
        rules.append(rule)
    return rules


def desired_slices(
    config_text: str | None, overlays: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]]
) -> dict[str, Want]:
    """Every slice name the controller must publish for `nodes` (Node objects as the API returns
    them), computed with the pure core the controller uses."""
    cfg = load_config(config_text)
    ordered = order_overlays(load_rules(overlays))
    out: dict[str, Want] = {}
    for node in nodes:
        meta = node["metadata"]
        res = resolve(dict(meta.get("labels") or {}), ordered, cfg)
        if not res.pools:
            continue
        for pool in render(NodeRef(meta["name"], meta["uid"]), res).pools:
            for s in pool.slices:
                out[s.name] = Want(
                    meta["name"],
                    s.driver,
                    s.pool,
                    s.slice_count,
                    tuple(d["name"] for d in s.content.get("devices") or []),
                    tuple(c["name"] for c in s.content.get("sharedCounters") or []),
                    s.source,
                    fingerprint(s.content),
                )
    return out


def exact_problems(
    slices: Sequence[Mapping[str, Any]], want: Mapping[str, Want], node_uids: Mapping[str, str]
) -> list[str]:
    """Why the published slices are not exactly `want` (empty when they are): stale, missing,
    duplicated, wrong content, wrong owner, or a pool whose slices disagree on generation or count."""
    problems: list[str] = []
    names = Counter(s["metadata"]["name"] for s in slices)
    problems += [f"duplicate {n}" for n, c in names.items() if c > 1]
    stale = sorted(set(names) - set(want))
    missing = sorted(set(want) - set(names))
    if stale:
        problems.append(f"{len(stale)} stale: {stale[:5]}")
    if missing:
        problems.append(f"{len(missing)} missing: {missing[:5]}")
    pools: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        name, spec = s["metadata"]["name"], s["spec"]
        pools.setdefault((spec.get("nodeName", ""), spec["driver"], spec["pool"]["name"]), []).append(s)
        w = want.get(name)
        if w is None:
            continue
        have = (
            spec.get("nodeName"),
            spec["driver"],
            spec["pool"]["name"],
            spec["pool"]["resourceSliceCount"],
            tuple(d["name"] for d in spec.get("devices") or []),
            tuple(c["name"] for c in spec.get("sharedCounters") or []),
        )
        expected = (w.node, w.driver, w.pool, w.slice_count, w.devices, w.counter_sets)
        if have != expected:
            problems.append(f"{name}: has {_brief(have)}, wants {_brief(expected)}")
        elif w.content and fingerprint(content_of(spec)) != w.content:
            # an edited attribute or capacity, which names alone do not show
            problems.append(f"{name}: content differs from the rendered one: {_brief((content_of(spec),))}")
        owners = [o.get("uid") for o in s["metadata"].get("ownerReferences") or [] if o.get("kind") == "Node"]
        if owners != [node_uids.get(w.node)]:
            problems.append(f"{name}: owner UIDs {owners}, the node's is {node_uids.get(w.node)}")
    for (node, driver, _), members in pools.items():
        gens = {m["spec"]["pool"]["generation"] for m in members}
        counts = {m["spec"]["pool"]["resourceSliceCount"] for m in members}
        if len(gens) != 1 or counts != {len(members)}:
            problems.append(
                f"incomplete pool {node}/{driver}: generations {sorted(gens)}, "
                f"counts {sorted(counts)}, {len(members)} slice(s)"
            )
    return problems


def _brief(value: tuple[Any, ...]) -> str:
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


def incomplete_pools(slices: Sequence[Mapping[str, Any]]) -> int:
    pools: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        pools.setdefault((s["spec"].get("nodeName", ""), s["spec"]["driver"]), []).append(s)
    return sum(
        1
        for members in pools.values()
        if len({m["spec"]["pool"]["generation"] for m in members}) != 1
        or {m["spec"]["pool"]["resourceSliceCount"] for m in members} != {len(members)}
    )


class Oracle:
    """Reads the cluster (this test's nodes and slices) and compares with the desired slices."""

    def __init__(self, rest: Rest, tag: str, managed_by: str) -> None:
        self.rest = rest
        self.tag = tag
        self.managed_by = managed_by
        self.config_text: str | None = None
        self.overlays: list[dict[str, Any]] = []
        self.last: list[str] = []

    def nodes(self) -> list[dict[str, Any]]:
        return self.rest.list(NODES, f"{TEST_LABEL}={self.tag}")

    def slices(self) -> list[dict[str, Any]]:
        return self.rest.list(SLICES, f"{LABEL_MANAGED_BY}={self.managed_by}")

    def problems(self) -> list[str]:
        nodes = self.nodes()
        want = desired_slices(self.config_text, self.overlays, nodes)
        uids = {n["metadata"]["name"]: n["metadata"]["uid"] for n in nodes}
        self.last = exact_problems(self.slices(), want, uids)
        return self.last

    def exact(self) -> bool:
        return not self.problems()

    def wait_exact(self, timeout: float, what: str, ctl: ControllerProcess | None = None) -> float:
        """Waits until the slices are exactly the desired ones; returns the seconds it took."""
        start = time.monotonic()

        def describe() -> str:
            out = "problems:\n  " + "\n  ".join(self.last[:20])
            if ctl is not None:
                out += f"\ncontroller log (tail):\n{ctl.log()[-6000:]}"
            return out

        wait_until(self.exact, timeout=timeout, what=what, describe=describe, interval=0.5)
        return time.monotonic() - start


# --- nodes -----------------------------------------------------------------------------------------


def node_manifest(name: str, tag: str, instance_type: str, **labels: str) -> dict[str, Any]:
    """A KWOK Node carrying this test's label and an instance type."""
    return kwok_node(name, labels={TEST_LABEL: tag, INSTANCE_TYPE: instance_type, **labels})


def create_nodes(rest: Rest, nodes: Sequence[Mapping[str, Any]], workers: int = 4) -> None:
    """Creates Node objects concurrently (a burst, as a node pool scaling up)."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: rest.create(NODES, n), nodes))


def delete_by_label(cluster: Cluster, kind: str, selector: str) -> None:
    cluster.kubectl("delete", kind, "-l", selector, "--wait=false", "--ignore-not-found", timeout=300)


# --- controller logs and Events ------------------------------------------------------------------


def log_lines(ctl: ControllerProcess) -> list[str]:
    """The controller's whole log (ControllerProcess.log() is only the tail)."""
    if not ctl.log_path.exists():
        return []
    return ctl.log_path.read_text(errors="replace").splitlines()


_LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def lines_at(lines: Iterable[str], *levels: str) -> list[str]:
    out = []
    for line in lines:
        m = _LEVEL.match(line)
        if m and m.group(1) in levels:
            out.append(line)
    return out


def events(
    cluster: Cluster, namespace: str, reason: str | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("events", "-n", namespace)["items"]
    return [
        e
        for e in items
        if (reason is None or e.get("reason") == reason)
        and (name is None or (e.get("involvedObject") or {}).get("name") == name)
    ]


def ready_reason(cluster: Cluster, overlay: str, contains: str = "") -> str | None:
    """The Ready condition's reason, if its message contains `contains`."""
    cond = ready_condition(cluster, overlay)
    return str(cond["reason"]) if cond and contains in cond["message"] else None


def ready_condition(cluster: Cluster, overlay: str) -> dict[str, Any] | None:
    st = cluster.get_json("dranodeoverlay", overlay).get("status") or {}
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    return {**cond, "_observedGeneration": st.get("observedGeneration")} if cond else None


# --- the kube-apiserver of a test cluster --------------------------------------------------------


class Apiserver:
    """Stops and starts one test cluster's kube-apiserver process. kwokctl 0.8.0 has no
    per-component stop, so the process is sent SIGTERM by the pid kwokctl recorded; `kwokctl start
    cluster` then starts whatever is not running (the apiserver, and the controller-manager and
    scheduler if they exited when their leader lease could not be renewed)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.kwokctl = cluster.bindir / "kwokctl"
        self.pid_file = cluster.kwok_dir() / "pids" / "kube-apiserver.pid"
        assert self.pid_file.is_file(), f"no {self.pid_file}: is {cluster.name} a kwokctl binary-runtime cluster?"

    def pid(self, component: str = "kube-apiserver") -> int:
        return int((self.pid_file.parent / f"{component}.pid").read_text().strip())

    @staticmethod
    def _running(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def stop(self, grace: float = 5.0, component: str = "kube-apiserver") -> float:
        """SIGTERM (the listener closes at once), SIGKILL if the process is still draining its
        watches after `grace` seconds (it can take over 30), then wait until it is gone, so that
        `kwokctl start cluster` sees it stopped (zombies are reaped by pid 1 within seconds).
        Returns the time of the SIGTERM (monotonic)."""
        pid = self.pid(component)
        stopped = time.monotonic()
        if not self._running(pid):
            return stopped
        os.kill(pid, signal.SIGTERM)
        # Until it is reaped, not only dead: kwokctl counts a zombie as running.
        while Path(f"/proc/{pid}").exists() and time.monotonic() < stopped + grace + 30:
            if time.monotonic() > stopped + grace and self._running(pid):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        return stopped

    def start(self, timeout: float = 120.0) -> float:
        """`kwokctl start cluster`, then wait for /readyz. Returns when it is ready (monotonic).
        kwokctl 0.8.0 starts nothing while the controller-manager or scheduler still runs: a leader
        exits soon after losing the apiserver, but one that was not leading waits for ever. They
        are stopped first, as their restart would be the same."""
        for component in ("kube-controller-manager", "kube-scheduler"):
            self.stop(component=component)
        subprocess.run(
            [str(self.kwokctl), "start", "cluster", "--timeout", f"{int(timeout)}s"],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=True,
        )

        def ready() -> bool:
            return self.cluster.kubectl("get", "--raw", "/readyz", timeout=10).strip() == "ok"

        wait_until(ready, timeout=timeout, what="the kube-apiserver to be ready again", interval=0.2)
        return time.monotonic()

    def healthy(self) -> bool:
        out = subprocess.run(
            [str(self.kwokctl), "get", "components", "-o", "wide"], capture_output=True, text=True, check=True
        ).stdout
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        return bool(rows) and all(r[1] == "Ready" for r in rows)
