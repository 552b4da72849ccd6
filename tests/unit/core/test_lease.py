"""Leader election decisions: when a Lease may be taken, and the specs that take, renew and give
it up."""

from __future__ import annotations

from dra_kwok.core.lease import LeaseRecord, held_spec, may_acquire, micro_time, released_spec

T = 1_796_119_200.0  # 2026-12-01T10:00:00Z


def record(holder: str, duration: float = 15, transitions: int = 3, acquired: str = "a-time") -> LeaseRecord:
    return LeaseRecord(holder, duration, acquired, "r-time", transitions, "42")


def test_a_missing_released_or_own_lease_may_be_taken_at_once() -> None:
    assert may_acquire(None, "me", 100.0, 100.0)
    assert may_acquire(record(""), "me", 100.0, 100.0)
    assert may_acquire(record("me"), "me", 100.0, 100.0)


def test_another_holders_lease_only_once_unchanged_for_its_duration_by_our_clock() -> None:
    held = record("other", duration=15)
    assert not may_acquire(held, "me", unchanged_since=100.0, now=114.9)
    assert may_acquire(held, "me", unchanged_since=100.0, now=115.0)


def test_taking_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    taken = held_spec(record("other"), "me", 15.0, T)
    assert taken == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-12-01T10:00:00.000000Z",
        "renewTime": "2026-12-01T10:00:00.000000Z",
        "leaseTransitions": 4,
    }
    renewed = held_spec(record("me", acquired="2026-12-01T09:00:00.000000Z"), "me", 15.0, T + 2.5)
    assert renewed["acquireTime"] == "2026-12-01T09:00:00.000000Z"
    assert renewed["renewTime"] == "2026-12-01T10:00:02.500000Z" and renewed["leaseTransitions"] == 3
    first = held_spec(None, "me", 15.0, T)
    assert first["leaseTransitions"] == 0 and first["acquireTime"] == micro_time(T)
    # Taking a released Lease (empty holder) is not a transition from anybody.
    assert held_spec(record(""), "me", 15.0, T)["leaseTransitions"] == 3


def test_giving_up_empties_the_holder_with_a_one_second_lease() -> None:
    spec = released_spec(record("me"), T)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 3


def test_a_record_is_read_from_the_api_object() -> None:
    obj = {
        "metadata": {"resourceVersion": "7"},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15, "renewTime": "r", "leaseTransitions": 2},
    }
    rec = LeaseRecord.from_api(obj)
    assert (rec.holder, rec.duration, rec.transitions, rec.version) == ("x", 15.0, 2, ("x", "r", "7"))
    assert LeaseRecord.from_api({}).holder == ""
