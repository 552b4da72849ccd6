"""Micro-benchmarks of the pure core and the in-memory World, no cluster: `make bench-micro`
(pytest-benchmark). Not collected by `make test` (testpaths is tests/); tests/unit/test_micro_benchmarks.py
runs each once, small, with --benchmark-disable so they cannot rot.

Scale: 5,000 nodes x 8 devices, 100 overlays, like the cluster benchmarks' largest size.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from dra_kwok.core.config import FallbackConfig, load_config_data
from dra_kwok.core.decide import decide
from dra_kwok.core.fingerprint import fingerprint
from dra_kwok.core.overlay import OverlayRule, load_overlay
from dra_kwok.core.plan import ObservedSlice, plan_node
from dra_kwok.core.render import DEFAULT_MANAGED_BY, NodeRef, NodeSlices, render
from dra_kwok.core.resolve import Resolution, order_overlays, resolve
from dra_kwok.shell.settings import Settings
from dra_kwok.shell.world import World

NODES = int(os.environ.get("DRA_KWOK_BENCH_NODES", "5000"))  # smaller in the suite's smoke run
DEVICES = 8
OVERLAYS = 100
DRIVER = "gpu.bench.example.com"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"


def _device(placeholder: bool = False) -> dict[str, Any]:
    attrs: dict[str, Any] = {"model": "h100", "memory": "80Gi", "index": 0, "driverVersion": {"version": "1.2.3"}}
    if placeholder:
        attrs["serial"] = "{nodeHash}-{index}"
    return {"name": "gpu", "count": DEVICES, "attributes": attrs, "capacity": {"memory": "80Gi", "cores": "132"}}


def _config(placeholder: bool = False) -> FallbackConfig:
    cfg, issues = load_config_data(
        {
            "driver": DRIVER,
            "mappings": [
                {
                    "name": "bench",
                    "nodeSelector": {"matchLabels": {"type": "kwok"}},
                    "resourceSlice": {"devices": [_device(placeholder)]},
                }
            ],
        }
    )
    assert cfg is not None, issues
    return cfg


def _labels(i: int) -> dict[str, str]:
    return {
        "type": "kwok",
        "kubernetes.io/hostname": f"node-{i:05d}",
        INSTANCE_TYPE: f"it-{i % 50}",
        "topology.kubernetes.io/zone": f"zone-{i % 3}",
        "karpenter.sh/capacity-type": "spot" if i % 2 else "on-demand",
        "example.com/gpu-count": str(i % 9),
    }


def _overlays() -> list[OverlayRule]:
    """100 overlays: each selects an instance type (half of them also a zone or a numeric bound),
    weights in ten bands, so most nodes match a few overlays and some conflict."""
    rules = []
    for k in range(OVERLAYS):
        reqs: list[dict[str, Any]] = [{"key": INSTANCE_TYPE, "operator": "In", "values": [f"it-{k % 50}"]}]
        if k % 2:
            reqs.append({"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": [f"zone-{k % 3}"]})
        if k % 5 == 0:
            reqs.append({"key": "example.com/gpu-count", "operator": "Gt", "values": ["2"]})
        obj = {
            "apiVersion": "test.karpenter.sh/v1alpha1",
            "kind": "DRANodeOverlay",
            "metadata": {"name": f"overlay-{k:03d}"},
            "spec": {
                "weight": 1 + k % 10,
                "requirements": reqs,
                "resourceSlices": [
                    {
                        "apiVersion": "resource.k8s.io/v1",
                        "kind": "ResourceSlice",
                        "spec": {"driver": f"d{k % 5}.bench.example.com", "devices": [_device()]},
                    }
                ],
            },
        }
        rule, issues = load_overlay(obj)
        assert rule is not None, issues
        rules.append(rule)
    return order_overlays(rules)


NODE_REFS = [NodeRef(f"node-{i:05d}", f"uid-{i:05d}") for i in range(NODES)]


@pytest.fixture(scope="module")
def resolution() -> Resolution:
    return resolve({"type": "kwok"}, [], _config())


def _render_all(res: Resolution) -> list[NodeSlices]:
    return [render(ref, res) for ref in NODE_REFS]


def test_render_5000_nodes_x8_devices(benchmark: Any, resolution: Resolution) -> None:
    benchmark.extra_info["what"] = "render 5,000 nodes x 8 devices (shared template)"
    out = benchmark.pedantic(_render_all, args=(resolution,), rounds=5, warmup_rounds=1)
    assert len(out) == NODES and len(out[0].all_slices()[0].content["devices"]) == DEVICES


def test_render_5000_nodes_x8_devices_with_placeholders(benchmark: Any) -> None:
    res = resolve({"type": "kwok"}, [], _config(placeholder=True))
    benchmark.extra_info["what"] = "render 5,000 nodes x 8 devices, a {nodeHash} placeholder per device"
    out = benchmark.pedantic(_render_all, args=(res,), rounds=5, warmup_rounds=1)
    assert out[0].all_slices()[0].content["devices"][0]["attributes"]["serial"]["string"].endswith("-0")


def test_resolve_5000_nodes_against_100_overlays(benchmark: Any) -> None:
    overlays = _overlays()
    cfg = _config()
    labels = [_labels(i) for i in range(NODES)]

    def run() -> list[Resolution]:
        return [resolve(lbl, overlays, cfg) for lbl in labels]

    benchmark.extra_info["what"] = "resolve 5,000 nodes against 100 overlays (weights, conflicts) + 1 mapping"
    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert sum(1 for r in out if r.matched_overlays) > NODES // 2
    assert any(r.conflicts for r in out)


def _published(desired: list[NodeSlices]) -> tuple[dict[str, list[ObservedSlice]], dict[str, tuple[str, str]]]:
    """What the apiserver would return for our applies: one generation-1 slice per node."""
    observed: dict[str, list[ObservedSlice]] = {}
    written: dict[str, tuple[str, str]] = {}
    for i, ns in enumerate(desired):
        plan = plan_node(ns.node.name, ns, [], DEFAULT_MANAGED_BY)
        for pool in plan.pools:
            for a in pool.applies:
                obj = {**a.manifest, "metadata": {**a.manifest["metadata"], "uid": f"s{i}", "resourceVersion": str(i)}}
                o = ObservedSlice.from_api(obj)
                observed.setdefault(ns.node.name, []).append(o)
                written[o.name] = (o.resource_version, a.content_print)
    return observed, written


def test_plan_5000_nodes_in_sync(benchmark: Any, resolution: Resolution) -> None:
    desired = _render_all(resolution)
    observed, written = _published(desired)

    def run() -> int:
        return sum(
            not plan_node(ns.node.name, ns, observed[ns.node.name], DEFAULT_MANAGED_BY, written).in_sync
            for ns in desired
        )

    benchmark.extra_info["what"] = "plan 5,000 nodes whose slices are already published (all in sync)"
    assert benchmark.pedantic(run, rounds=5, warmup_rounds=1) == 0


def test_observe_5000_slices(benchmark: Any, resolution: Resolution) -> None:
    """The cost of one watch event for a slice, once JSON-decoded: ObservedSlice.from_api."""
    manifests = [
        {**a.manifest, "metadata": {**a.manifest["metadata"], "uid": "u", "resourceVersion": "1"}}
        for ns in _render_all(resolution)
        for p in plan_node(ns.node.name, ns, [], DEFAULT_MANAGED_BY).pools
        for a in p.applies
    ]
    benchmark.extra_info["what"] = "ObservedSlice.from_api for 5,000 slices (the watch-event path)"
    out = benchmark.pedantic(lambda: [ObservedSlice.from_api(m) for m in manifests], rounds=5, warmup_rounds=1)
    assert len(out) == NODES


def test_fingerprint_5000_slices(benchmark: Any, resolution: Resolution) -> None:
    contents = [s.content for ns in _render_all(resolution) for s in ns.all_slices()]
    benchmark.extra_info["what"] = "fingerprint 5,000 slice contents of 8 devices"
    out = benchmark.pedantic(lambda: [fingerprint(c) for c in contents], rounds=5, warmup_rounds=1)
    assert len(set(out)) == 1


def _node_obj(i: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"node-{i:05d}",
            "uid": f"uid-{i:05d}",
            "labels": _labels(i),
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        }
    }


def test_world_resync_5000_nodes(benchmark: Any) -> None:
    """A full resync pass of the shell's World (what a ConfigMap change or the periodic resync costs
    before any write): a view and a decision for every node, all in sync."""
    world = World(Settings())
    world.on_configmap(
        None,
        {
            "metadata": {"name": "dra-kwok-configmap", "resourceVersion": "1"},
            "data": {"config.yaml": _config_yaml()},
        },
    )
    for i in range(NODES):
        world.on_node("ADDED", _node_obj(i))
    for name in world.all_nodes():
        for pool in decide(world.view(name), world.sources()).plan.pools:
            for i, a in enumerate(pool.applies):
                obj = {
                    **a.manifest,
                    "metadata": {**a.manifest["metadata"], "uid": f"{name}-{i}", "resourceVersion": "1"},
                }
                world.record_applied(ObservedSlice.from_api(obj), a.content_print)

    def run() -> int:
        return sum(not decide(world.view(n), world.sources()).published for n in world.all_nodes())

    benchmark.extra_info["what"] = "World: view + decide for 5,000 nodes in sync (a resync pass)"
    assert benchmark.pedantic(run, rounds=5, warmup_rounds=1) == 0


def test_world_node_events_5000(benchmark: Any) -> None:
    """5,000 node heartbeats (status-only MODIFIED events): what an idle controller does."""
    world = World(Settings())
    objs = [_node_obj(i) for i in range(NODES)]
    for o in objs:
        world.on_node("ADDED", o)
    benchmark.extra_info["what"] = "World.on_node for 5,000 unchanged nodes (heartbeats)"
    dirty = benchmark.pedantic(lambda: [world.on_node("MODIFIED", o) for o in objs], rounds=5, warmup_rounds=1)
    assert not any(dirty)


def _config_yaml() -> str:
    import yaml

    return yaml.safe_dump(
        {
            "driver": DRIVER,
            "mappings": [{"name": "bench", "nodeSelector": {"matchLabels": {"type": "kwok"}},
                          "resourceSlice": {"devices": [_device()]}}],
        }
    )  # fmt: skip


# --- simulation (docs/simulation.md): what the per-node decision pays for it ---------------------
def _simulated_config(simulation: dict[str, Any] | None) -> FallbackConfig:
    mapping: dict[str, Any] = {
        "name": "bench",
        "nodeSelector": {"matchLabels": {"type": "kwok"}},
        "resourceSlice": {"devices": [_device()]},
    }
    if simulation:
        mapping["simulation"] = simulation
    cfg, issues = load_config_data({"driver": DRIVER, "mappings": [mapping]})
    assert cfg is not None, issues
    return cfg


FAULTS = {"faults": [{"effect": "NoSchedule", "every": "10m", "duration": "1m", "probability": 0.1}]}


@pytest.mark.parametrize("simulation", [None, FAULTS, {"publishDelay": "5s-10s"}], ids=["off", "faults", "delay"])
def test_decide_5000_new_nodes_with_simulation(benchmark: Any, simulation: dict[str, Any] | None) -> None:
    from dra_kwok.core.decide import NodeView, Sources

    sources = Sources((), _simulated_config(simulation))
    views = [
        NodeView(f"n{i}", NodeRef(f"n{i}", f"u{i}"), {"type": "kwok"}, (), {}, created=1_000_000.0)
        for i in range(NODES)
    ]

    def run() -> int:
        return sum(decide(v, sources, 1_000_000.0 + 3600).simulated.faults_active for v in views)

    benchmark.extra_info["what"] = f"decide 5,000 new nodes x8 devices, simulation {simulation or 'off'}"
    active = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    if simulation is FAULTS:
        assert 0 < active < NODES * DEVICES * 0.1  # about 1 % of devices fail at any time (10 % for 1 min of 10)


def test_decide_claim_10000_claims(benchmark: Any) -> None:
    from dra_kwok.core.claims import ClaimView, decide_claim
    from dra_kwok.core.simulation import Simulation

    sim = Simulation.model_validate({"claimStatus": {"data": {"uuid": "{deviceUUID}"}}, "binding": {"delay": "5s"}})

    def lookup(driver: str, pool: str) -> tuple[Simulation, str, str] | None:
        return (sim, pool, "uid") if driver == DRIVER else None

    claims = [
        ClaimView.from_api(
            {
                "metadata": {"namespace": "ns", "name": f"c{i}", "uid": f"u{i}"},
                "status": {
                    "allocation": {
                        "devices": {"results": [{"driver": DRIVER, "pool": f"n{i}", "device": f"gpu-{i % 8}"}]},
                        "allocationTimestamp": "2026-12-01T10:00:00Z",
                    }
                },
            }
        )
        for i in range(NODES * 2)
    ]

    def run() -> int:
        return sum(decide_claim(c, lookup, True, 1_796_119_300.0).entries is not None for c in claims)

    benchmark.extra_info["what"] = "decide the status.devices of 10,000 allocated claims (claimStatus)"
    assert benchmark.pedantic(run, rounds=3, warmup_rounds=1) == NODES * 2
