"""What the fake driver writes into a claim's status.devices (`claims.decide_claim`)."""

from __future__ import annotations

from typing import Any

from dra_kwok.core.claims import ClaimView, decide_claim, status_apply
from dra_kwok.core.simulation import Simulation

DRIVER = "gpu.example.com"
POOL = "kwok-1-device-pool"
ALLOCATED = "2026-12-01T10:00:00Z"
T0 = 1_796_119_200.0  # ALLOCATED in epoch seconds


def claim(*results: dict[str, Any], devices: list[dict[str, Any]] | None = None, allocated: bool = True) -> ClaimView:
    status: dict[str, Any] = {"reservedFor": [{"resource": "pods", "name": "p", "uid": "pod-uid"}]}
    if allocated:
        status["allocation"] = {"devices": {"results": list(results)}, "allocationTimestamp": ALLOCATED}
    if devices is not None:
        status["devices"] = devices
    return ClaimView.from_api({"metadata": {"namespace": "ns", "name": "c", "uid": "claim-uid"}, "status": status})


def result(device: str = "gpu-3", driver: str = DRIVER, **fields: Any) -> dict[str, Any]:
    return {"request": "r", "driver": driver, "pool": POOL, "device": device, **fields}


def lookup(sim: dict[str, Any]) -> Any:
    simulation = Simulation.model_validate(sim)
    return lambda driver, pool: (simulation, "kwok-1", "uid-1") if (driver, pool) == (DRIVER, POOL) else None


def test_the_allocation_timestamp_is_read() -> None:
    assert claim(result()).allocated_at == T0


def test_an_unallocated_claim_gets_nothing() -> None:
    d = decide_claim(claim(allocated=False), lookup({"claimStatus": {}}), True, T0)
    assert d.entries is None and d.wake_at is None


def test_claim_status_waits_for_the_pod_to_be_bound_then_fills_in_placeholders() -> None:
    sim = {
        "claimStatus": {
            "data": {"uuid": "{deviceUUID}", "slot": "{index}", "nested": ["{nodeName}"]},
            "networkData": {"interfaceName": "net{index}", "ips": ["10.0.0.{index}/24"], "hardwareAddress": "aa:bb"},
        }
    }
    waiting = decide_claim(claim(result()), lookup(sim), None, T0 + 1)
    assert waiting.entries is None and waiting.needs_pod
    d = decide_claim(claim(result()), lookup(sim), True, T0 + 1)
    assert d.entries is not None
    (entry,) = d.entries
    assert entry["driver"] == DRIVER and entry["pool"] == POOL and entry["device"] == "gpu-3"
    assert entry["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "DeviceReady",
            "message": "",
            "lastTransitionTime": ALLOCATED,
        }
    ]
    assert entry["data"]["slot"] == "3" and entry["data"]["nested"] == ["kwok-1"]
    assert len(entry["data"]["uuid"]) == 36
    assert entry["networkData"] == {"interfaceName": "net3", "ips": ["10.0.0.3/24"], "hardwareAddress": "aa:bb"}
    body = status_apply(claim(result()), d.entries)
    assert body["metadata"] == {"name": "c", "namespace": "ns"} and body["status"]["devices"] == [entry]


def test_what_is_already_stored_is_not_written_again() -> None:
    sim = {"claimStatus": {}}
    first = decide_claim(claim(result()), lookup(sim), True, T0)
    assert first.entries is not None
    stored = claim(result(), devices=[dict(e) for e in first.entries])
    assert decide_claim(stored, lookup(sim), True, T0 + 100).entries is None


def test_other_drivers_devices_are_left_alone() -> None:
    d = decide_claim(claim(result(driver="nic.example.com")), lookup({"claimStatus": {}}), True, T0)
    assert d.entries is None and not d.needs_pod


def test_binding_conditions_are_set_after_the_delay_and_not_before() -> None:
    sim = {"binding": {"delay": "10s"}}
    r = result(bindingConditions=["dra.example.com/attached"], bindingFailureConditions=["dra.example.com/failed"])
    early = decide_claim(claim(r), lookup(sim), None, T0 + 3)
    assert early.entries is None and early.wake_at == T0 + 10
    d = decide_claim(claim(r), lookup(sim), None, T0 + 10)
    assert d.entries is not None and d.bound == 1 and d.failed == 0
    (cond,) = d.entries[0]["conditions"]
    assert cond["type"] == "dra.example.com/attached" and cond["status"] == "True"
    assert cond["lastTransitionTime"] == "2026-12-01T10:00:10Z"


def test_fail_devices_set_the_failure_condition() -> None:
    sim = {"binding": {"failDevices": ["gpu-3"]}}
    r = result(bindingConditions=["attached"], bindingFailureConditions=["failed", "other"])
    d = decide_claim(claim(r), lookup(sim), None, T0)
    assert d.failed == 1 and d.bound == 0
    assert [c["type"] for c in d.entries[0]["conditions"]] == ["failed"]  # type: ignore[index]


def test_a_failure_fraction_is_decided_per_attempt_the_same_way_every_time() -> None:
    sim = {"binding": {"failureFraction": 0.5}}
    r = result(bindingConditions=["attached"], bindingFailureConditions=["failed"])
    outcomes = set()
    for stamp in range(40):
        view = ClaimView.from_api(
            {
                "metadata": {"namespace": "ns", "name": "c", "uid": "claim-uid"},
                "status": {
                    "allocation": {
                        "devices": {"results": [r]},
                        "allocationTimestamp": f"2026-12-01T10:00:{stamp:02d}Z",
                    }
                },
            }
        )
        one = decide_claim(view, lookup(sim), None, T0 + 100)
        assert decide_claim(view, lookup(sim), None, T0 + 200).failed == one.failed
        outcomes.add(one.failed)
    assert outcomes == {0, 1}  # some attempts fail, some attach


def test_binding_and_claim_status_together_make_one_entry() -> None:
    sim = {"binding": {"delay": "2s"}, "claimStatus": {"data": {"a": 1}}}
    r = result(bindingConditions=["attached"])
    d = decide_claim(claim(r), lookup(sim), None, T0 + 2)
    assert d.entries is not None and not d.needs_pod
    assert [c["type"] for c in d.entries[0]["conditions"]] == ["attached", "Ready"]
    assert d.entries[0]["data"] == {"a": 1}
