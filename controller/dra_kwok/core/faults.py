"""Device faults: which devices of a node are failed now (its sources' `simulation.faults` and the
faults a user asked for on the node), and the node's slices with them applied: a taint in the
device's entry, or the device left out. Applied to the rendered slices, so `plan` bumps the pool's
generation once per change and the pool stays complete.

Scheduled faults are a pure function of the node, the device and the time (`unit`), so a
restarted controller sees the same faults; taints carry the time the fault began as `timeAdded`,
so rewriting a slice does not restart the controller-manager's eviction clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .render import Body, DesiredPool, DesiredSlice, NodeSlices
from .simulation import FAULT_TAINT_KEY, FaultRule, unit
from .validation import PoolSpec
from .versions import Limits

LOOKAHEAD_PERIODS = 4  # periods looked ahead for the next fault; without one in them, the node wakes after them
INJECTED = "injected"  # the taint value of a fault asked for on the node
SCHEDULED = "scheduled"  # the taint value of a fault from simulation.faults


@dataclass(frozen=True, slots=True)
class Fault:
    """A failed device: `driver` None means the device of that name in every pool of the node."""

    driver: str | None
    device: str
    effect: str  # NoSchedule, NoExecute or Remove
    since: float  # epoch seconds: the taint's timeAdded
    origin: str = INJECTED


def _window(rule: FaultRule, key: str, period: int) -> tuple[float, float] | None:
    """When the device named by `key` is failed in `period`, or None."""
    if unit("fault", key, str(period)) >= rule.probability:
        return None
    start = period * rule.every + unit("offset", key, str(period)) * (rule.every - rule.duration)
    return start, start + rule.duration


def scheduled(node_uid: str, pool: PoolSpec, now: float) -> tuple[list[Fault], float | None]:
    """The pool's devices failed at `now` by its source's rules, and when that next changes."""
    sim = pool.simulation
    if sim is None or not sim.faults:
        return [], None
    out: list[Fault] = []
    wake = math.inf
    names = [n for d in pool.devices for n in d.device_names()]
    for r, rule in enumerate(sim.faults):
        chosen = set(rule.devices)
        for name in names:
            if chosen and name not in chosen:
                continue
            key = f"{node_uid}/{pool.driver}/{name}/{r}"
            period = int(now // rule.every)
            for p in range(period, period + LOOKAHEAD_PERIODS):
                window = _window(rule, key, p)
                if window is None:
                    continue
                start, end = window
                if end <= now:
                    continue
                if start <= now:
                    out.append(Fault(pool.driver, name, rule.effect, start, SCHEDULED))
                    wake = min(wake, end)
                else:
                    wake = min(wake, start)
                break
            else:
                wake = min(wake, (period + LOOKAHEAD_PERIODS) * rule.every)
    return out, (None if wake == math.inf else wake)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _taint(fault: Fault) -> Body:
    return {"key": FAULT_TAINT_KEY, "value": fault.origin, "effect": fault.effect, "timeAdded": rfc3339(fault.since)}


def apply_faults(desired: NodeSlices, faults: Iterable[Fault], limits: Limits) -> tuple[NodeSlices, list[str], int]:
    """`desired` with `faults` applied; the problems of faults that cannot be applied (a device
    that does not exist, a taint that would not fit); the number of faults applied."""
    by_pool: dict[str, dict[str, Fault]] = {}
    wildcard: dict[str, Fault] = {}
    for f in faults:
        target = wildcard if f.driver is None else by_pool.setdefault(f.driver, {})
        held = target.get(f.device)
        # Removal wins over a taint, NoExecute over NoSchedule; the earlier start is kept.
        if held is None or _rank(f) > _rank(held):
            target[f.device] = f
    if not by_pool and not wildcard:
        return desired, [], 0
    problems: list[str] = []
    applied = 0
    found: set[tuple[str | None, str]] = set()
    pools: list[DesiredPool] = []
    for pool in desired.pools:
        mine = {**wildcard, **by_pool.get(pool.driver, {})}
        if not mine:
            pools.append(pool)
            continue
        slices: list[DesiredSlice] = []
        for s in pool.slices:
            devices: Sequence[Body] = s.content.get("devices") or []
            if not any(d["name"] in mine for d in devices):
                slices.append(s)
                continue
            kept: list[Body] = []
            for d in devices:
                fault = mine.get(d["name"])
                if fault is None:
                    kept.append(d)
                    continue
                found.add((fault.driver, fault.device))
                if fault.effect == "Remove":
                    applied += 1
                    continue
                problem = _taint_problem(d, len(devices), pool.driver, limits)
                if problem:
                    problems.append(problem)
                    kept.append(d)
                    continue
                applied += 1
                kept.append({**d, "taints": [*(d.get("taints") or []), _taint(fault)]})
            content = {**s.content, "devices": kept}
            slices.append(DesiredSlice(s.name, s.driver, s.pool, s.slice_count, content, s.source))
        pools.append(DesiredPool(pool.driver, pool.pool, pool.source, tuple(slices)))
    for f in [*wildcard.values(), *(f for d in by_pool.values() for f in d.values())]:
        if (f.driver, f.device) not in found and f.origin == INJECTED:
            where = f"driver {f.driver}" if f.driver else "any driver"
            problems.append(
                f"fault {f.device}={f.effect}: node {desired.node.name} has no device {f.device} of {where}"
            )
    return NodeSlices(desired.node, tuple(pools)), problems, applied


def _rank(f: Fault) -> int:
    return {"NoSchedule": 0, "NoExecute": 1, "Remove": 2}.get(f.effect, 0)


def _taint_problem(device: Mapping[str, object], in_slice: int, driver: str, limits: Limits) -> str | None:
    taints = device.get("taints") or []
    assert isinstance(taints, list)
    name = device["name"]
    if len(taints) >= limits.max_taints:
        return (
            f"fault {name}: device {name} of driver {driver} already has {len(taints)} taints, the most a device "
            "may have; fix: remove a template taint, or use effect Remove"
        )
    if in_slice > limits.max_devices_advanced:
        return (
            f"fault {name}: its slice holds {in_slice} devices of driver {driver}, more than the "
            f"{limits.max_devices_advanced} a slice with taints may hold; fix: use effect Remove, or give the "
            "source simulation.faults so its slices are laid out for taints"
        )
    return None
