"""Leader election decisions on a coordination.k8s.io/v1 Lease, as client-go's leaderelection makes
them: a Lease held by another identity is taken only once it has not changed for its
`leaseDurationSeconds` by our own clock (never by comparing its renewTime with our clock, which
may differ from the holder's), an empty holder (released on shutdown) at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A Lease as read: who holds it, for how long, and what identifies this version of it."""

    holder: str
    duration: float
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        )

    @property
    def version(self) -> tuple[str, str, str]:
        """What tells one observation from the next (a renewal changes renewTime and the version)."""
        return self.holder, self.renew_time, self.resource_version


def may_acquire(record: LeaseRecord | None, me: str, unchanged_since: float, now: float) -> bool:
    """Whether `me` may try to take the Lease now. `unchanged_since`: when (our monotonic clock)
    we first saw the record in its current version."""
    if record is None or not record.holder or record.holder == me:
        return True
    return now - unchanged_since >= record.duration


def micro_time(wall: float) -> str:
    """A MicroTime as the API writes it."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def held_spec(record: LeaseRecord | None, me: str, duration: float, wall: float) -> dict[str, Any]:
    """The spec that takes (or renews) the Lease for `me`."""
    now = micro_time(wall)
    if record is None:
        transitions, acquired = 0, now
    elif record.holder != me:  # taken: a transition unless it was released (empty holder)
        transitions, acquired = record.transitions + (1 if record.holder else 0), now
    else:  # renewed
        transitions, acquired = record.transitions, record.acquire_time or now
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": max(1, round(duration)),
        "acquireTime": acquired,
        "renewTime": now,
        "leaseTransitions": transitions,
    }


def released_spec(record: LeaseRecord, wall: float) -> dict[str, Any]:
    """The spec that gives the Lease up (on shutdown), so a standby takes it at once."""
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": record.acquire_time or micro_time(wall),
        "renewTime": micro_time(wall),
        "leaseTransitions": record.transitions,
    }
