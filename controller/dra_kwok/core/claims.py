"""What the fake driver writes into a ResourceClaim's `status.devices`, as a real driver's node
plugin does: an entry per allocated device of ours with the source's `claimStatus` (once the pod
is bound to the node), and, for devices with `bindingConditions`, those conditions set True
`binding.delay` after the allocation, or a `bindingFailureConditions` type set for the attempts
that fail. Each allocation (its `allocationTimestamp`) is a new attempt with its own choices.

Pure: the shell hands in the claim, the simulation of each of our pools and whether the claim's
pod is bound; it gets back the entries to apply (or none) and when to look again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import names
from .faults import rfc3339
from .simulation import ClaimStatus, Simulation, ip_problem, pick, unit

Body = dict[str, Any]
_TRAILING_NUMBER = re.compile(r"(\d+)$")
ENTRY_KEYS = ("driver", "pool", "device", "shareID")


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    driver: str
    pool: str
    device: str
    share_id: str | None = None
    binding_conditions: tuple[str, ...] = ()
    binding_failure_conditions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimView:
    """The parts of a ResourceClaim the decision reads."""

    namespace: str
    name: str
    uid: str
    devices: tuple[AllocatedDevice, ...]  # the allocation's results; empty when not allocated
    allocated_at: float | None  # status.allocation.allocationTimestamp (or first seen allocated)
    reserved_pods: tuple[tuple[str, str], ...]  # (name, uid) of the pods in reservedFor
    status_devices: tuple[Body, ...]  # status.devices as stored

    @classmethod
    def from_api(cls, obj: Mapping[str, Any], first_seen: float | None = None) -> ClaimView:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        allocation = status.get("allocation") or {}
        results = (allocation.get("devices") or {}).get("results") or []
        devices = tuple(
            AllocatedDevice(
                str(r.get("driver", "")),
                str(r.get("pool", "")),
                str(r.get("device", "")),
                r.get("shareID"),
                tuple(r.get("bindingConditions") or ()),
                tuple(r.get("bindingFailureConditions") or ()),
            )
            for r in results
        )
        pods = tuple(
            (str(r.get("name", "")), str(r.get("uid", "")))
            for r in status.get("reservedFor") or []
            if r.get("resource") == "pods"
        )
        allocated_at = parse_time(allocation.get("allocationTimestamp")) if allocation else None
        return cls(
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
            devices if allocation else (),
            allocated_at if allocated_at is not None else (first_seen if allocation else None),
            pods,
            tuple(status.get("devices") or ()),
        )


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    """`entries`: our status.devices entries to apply (None: nothing to write); `wake_at`: when to
    look again (a binding delay ends); `needs_pod`: whether the pod's binding must be checked first;
    `bound` and `failed`: devices whose binding conditions, or failure condition, are set."""

    entries: tuple[Body, ...] | None = None
    wake_at: float | None = None
    needs_pod: bool = False
    bound: int = 0
    failed: int = 0
    problems: tuple[str, ...] = field(default=())


NOTHING = ClaimDecision()

# (driver, pool) -> the simulation and the node (name, uid) of one of our pools, or None
PoolLookup = Callable[[str, str], tuple[Simulation, str, str] | None]


def _fill(value: Any, node: str, device: str) -> Any:
    if isinstance(value, str):
        if "{" not in value:
            return value
        match = _TRAILING_NUMBER.search(device)
        out = (
            value.replace("{nodeName}", node)
            .replace("{nodeHash}", names.short_hash(node))
            .replace("{index}", match.group(1) if match else "0")
            .replace("{deviceName}", device)
        )
        if "{deviceUUID}" in out:
            out = out.replace("{deviceUUID}", names.device_uuid(node, device))
        return out
    if isinstance(value, dict):
        return {k: _fill(v, node, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, node, device) for v in value]
    return value


def _condition(type_: str, status: str, reason: str, message: str, at: float) -> Body:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": rfc3339(at)}


def _status_parts(spec: ClaimStatus, node: str, device: str, at: float, problems: list[str]) -> tuple[list[Body], Body]:
    conditions = [_condition(c.type, c.status, c.reason, c.message, at) for c in spec.conditions]
    extra: Body = {}
    if spec.data is not None:
        extra["data"] = _fill(spec.data, node, device)
    if spec.network_data is not None:
        net = spec.network_data.to_api()
        filled = _fill(net, node, device)
        ips = filled.get("ips") or []
        bad = [p for ip in ips if (p := ip_problem(ip))]
        if bad:
            problems.extend(f"claimStatus.networkData.ips for device {device}: {p}" for p in bad)
            filled.pop("ips", None)
        if filled:
            extra["networkData"] = filled
    return conditions, extra


def decide_claim(claim: ClaimView, pools: PoolLookup, pod_bound: bool | None, now: float) -> ClaimDecision:
    """Our entries of `claim`'s status.devices at `now`. `pod_bound`: whether the claim's pod is
    bound to the device's node (None: not known yet)."""
    if not claim.devices or claim.allocated_at is None:
        return NOTHING
    entries: list[Body] = []
    ours = False
    wake: float | None = None
    needs_pod = False
    bound = failed = 0
    problems: list[str] = []
    attempt = f"{claim.allocated_at:.0f}"
    for dev in claim.devices:
        found = pools(dev.driver, dev.pool)
        if found is None:
            continue
        ours = True
        sim, node, _node_uid = found
        conditions: list[Body] = []
        extra: Body = {}
        if dev.binding_conditions:
            if sim.binding is None:
                continue  # nothing sets them (warned when the source was loaded)
            due = claim.allocated_at + pick(sim.binding.delay, claim.uid, dev.device, attempt)
            if now < due:
                wake = due if wake is None else min(wake, due)
                continue
            fails = dev.device in sim.binding.fail_devices or (
                sim.binding.failure_fraction > 0
                and unit("binding", claim.uid, dev.device, attempt) < sim.binding.failure_fraction
            )
            if fails and dev.binding_failure_conditions:
                failed += 1
                conditions.append(
                    _condition(
                        dev.binding_failure_conditions[0],
                        "True",
                        "SimulatedFailure",
                        f"dra-kwok: simulated attach failure of device {dev.device}",
                        due,
                    )
                )
            else:
                bound += 1
                conditions += [_condition(c, "True", "SimulatedAttach", "", due) for c in dev.binding_conditions]
            if sim.claim_status is not None:
                more, extra = _status_parts(sim.claim_status, node, dev.device, due, problems)
                conditions += [c for c in more if c["type"] not in {x["type"] for x in conditions}]
        elif sim.claim_status is not None:
            if not pod_bound:
                needs_pod = True
                continue
            conditions, extra = _status_parts(sim.claim_status, node, dev.device, claim.allocated_at, problems)
        else:
            continue
        entry: Body = {"driver": dev.driver, "pool": dev.pool, "device": dev.device}
        if dev.share_id is not None:
            entry["shareID"] = dev.share_id
        entry["conditions"] = conditions
        entry.update(extra)
        entries.append(entry)
    if not ours:
        return NOTHING
    written = _ours_in(claim.status_devices, {(e["driver"], e["pool"], e["device"]) for e in entries})
    if _same(written, entries):
        return ClaimDecision(None, wake, needs_pod, bound, failed, tuple(problems))
    if not entries and not written:
        return ClaimDecision(None, wake, needs_pod, 0, 0, tuple(problems))
    return ClaimDecision(tuple(entries), wake, needs_pod, bound, failed, tuple(problems))


def _ours_in(stored: Sequence[Body], keys: set[tuple[str, str, str]]) -> list[Body]:
    return [e for e in stored if (e.get("driver"), e.get("pool"), e.get("device")) in keys]


def _norm(entry: Mapping[str, Any]) -> str:
    conditions = sorted(
        (
            {k: c.get(k, "") for k in ("type", "status", "reason", "message", "lastTransitionTime")}
            for c in entry.get("conditions") or []
        ),
        key=lambda c: str(c["type"]),
    )
    body = {k: entry.get(k) for k in (*ENTRY_KEYS, "data", "networkData")}
    body["conditions"] = conditions
    return json.dumps(body, sort_keys=True)


def _same(stored: Sequence[Body], wanted: Sequence[Body]) -> bool:
    return sorted(map(_norm, stored)) == sorted(map(_norm, wanted))


def status_apply(claim: ClaimView, entries: Sequence[Body]) -> Body:
    """The server-side apply body of our entries (other drivers' entries are left alone)."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": claim.name, "namespace": claim.namespace},
        "status": {"devices": list(entries)},
    }
