"""`decide()` with a source's simulation: publish delays and device faults, as pure functions of
the node, its slices and the time."""

from __future__ import annotations

from typing import Any

from dra_kwok.core.decide import NodeView, Outcome, Sources, decide
from dra_kwok.core.faults import Fault
from dra_kwok.core.render import NodeRef
from dra_kwok.core.resolve import order_overlays
from dra_kwok.core.simulation import FAULT_TAINT_KEY
from dra_kwok.core.versions import target

from ..builders import INSTANCE_TYPE, config, device, load_config_ok, load_overlay_ok, mapping, overlay
from ..fake_api import FakeSliceApi

NODE = NodeRef("kwok-1", "uid-1")
LABELS = {INSTANCE_TYPE: "gpu-8x"}
CREATED = 1_000_000.0


def simulated_mapping(simulation: dict[str, Any], count: int = 4) -> dict[str, Any]:
    return {**mapping(devices=[device("gpu", count=count)]), "simulation": simulation}


def sources_with(simulation: dict[str, Any], *, taints: bool = True, count: int = 4) -> Sources:
    doc = config(simulated_mapping(simulation, count))
    return Sources(order_overlays([]), load_config_ok(doc), taints=taints)


def view(api: FakeSliceApi, faults: tuple[Fault, ...] = ()) -> NodeView:
    return NodeView(NODE.name, NODE, LABELS, api.observed(), api.written, created=CREATED, faults=faults)


def devices_of(decision_or_api: Any) -> dict[str, dict[str, Any]]:
    if isinstance(decision_or_api, FakeSliceApi):
        slices = decision_or_api.objects.values()
        return {d["name"]: d for s in slices for d in s["spec"].get("devices", [])}
    return {d["name"]: d for p in decision_or_api.plan.pools for a in p.applies for d in a.manifest["spec"]["devices"]}


def test_a_publish_delay_withholds_the_pool_until_it_is_due_and_says_when() -> None:
    src = sources_with({"publishDelay": "30s"})
    api = FakeSliceApi()
    early = decide(view(api), src, CREATED + 10)
    assert early.outcome is Outcome.IN_SYNC and early.simulated.withheld
    assert early.simulated.wake_at == CREATED + 30 and early.simulated.publish_delay == 30
    due = decide(view(api), src, CREATED + 30)
    assert due.outcome is Outcome.WRITE and not due.simulated.withheld


def test_a_delay_range_gives_each_node_its_own_delay_the_same_every_time() -> None:
    src = sources_with({"publishDelay": "10s-20s"})
    first = decide(view(FakeSliceApi()), src, CREATED).simulated.publish_delay
    again = decide(view(FakeSliceApi()), src, CREATED + 1).simulated.publish_delay
    assert first is not None and 10 <= first <= 20 and first == again
    other = NodeView("kwok-2", NodeRef("kwok-2", "uid-2"), LABELS, (), {}, created=CREATED)
    assert decide(other, src, CREATED).simulated.publish_delay != first


def test_a_published_pool_is_never_withheld_again_after_a_restart() -> None:
    src = sources_with({"publishDelay": "30s"})
    api = FakeSliceApi()
    api.execute(decide(view(api), src, CREATED + 31).plan)
    # Same node, clock "before" the delay (e.g. a skewed clock): what is published stays.
    d = decide(view(api), src, CREATED + 1)
    assert d.outcome is Outcome.IN_SYNC and not d.plan.pools


def test_an_injected_fault_taints_its_device_with_the_time_it_began_and_bumps_the_generation_once() -> None:
    src = sources_with({})
    api = FakeSliceApi()
    api.execute(decide(view(api), src, CREATED).plan)
    fault = Fault(None, "gpu-1", "NoExecute", CREATED + 5)
    d = decide(view(api, (fault,)), src, CREATED + 6)
    assert d.outcome is Outcome.WRITE and d.simulated.faults_active == 1
    taints = devices_of(d)["gpu-1"]["taints"]
    assert taints == [
        {"key": FAULT_TAINT_KEY, "value": "injected", "effect": "NoExecute", "timeAdded": "1970-01-12T13:46:45Z"}
    ]
    assert "taints" not in devices_of(d)["gpu-0"]
    generations = {a.manifest["spec"]["pool"]["generation"] for p in d.plan.pools for a in p.applies}
    assert generations == {2}
    api.execute(d.plan)
    assert decide(view(api, (fault,)), src, CREATED + 60).outcome is Outcome.IN_SYNC
    recovered = decide(view(api), src, CREATED + 61)
    assert recovered.outcome is Outcome.WRITE and "taints" not in devices_of(recovered)["gpu-1"]


def test_a_removed_device_leaves_the_slice_and_comes_back() -> None:
    src = sources_with({})
    api = FakeSliceApi()
    api.execute(decide(view(api), src, CREATED).plan)
    d = decide(view(api, (Fault("gpu.example.com", "gpu-2", "Remove", CREATED),)), src, CREATED)
    assert sorted(devices_of(d)) == ["gpu-0", "gpu-1", "gpu-3"]
    api.execute(d.plan)
    assert sorted(devices_of(api)) == ["gpu-0", "gpu-1", "gpu-3"]
    api.execute(decide(view(api), src, CREATED).plan)
    assert sorted(devices_of(api)) == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]


def test_a_fault_for_a_device_the_node_lacks_is_a_problem_not_a_write() -> None:
    src = sources_with({})
    api = FakeSliceApi()
    api.execute(decide(view(api), src, CREATED).plan)
    d = decide(view(api, (Fault(None, "gpu-9", "NoSchedule", CREATED),)), src, CREATED)
    assert d.outcome is Outcome.IN_SYNC
    assert d.simulated.fault_problems == ("fault gpu-9=NoSchedule: node kwok-1 has no device gpu-9 of any driver",)


def test_without_device_taints_a_tainting_fault_is_a_problem_and_remove_still_works() -> None:
    src = sources_with({}, taints=False)
    api = FakeSliceApi()
    api.execute(decide(view(api), src, CREATED).plan)
    faults = (Fault(None, "gpu-0", "NoExecute", CREATED), Fault(None, "gpu-1", "Remove", CREATED))
    d = decide(view(api, faults), src, CREATED)
    assert "DRADeviceTaints" in d.simulated.fault_problems[0]
    assert sorted(devices_of(d)) == ["gpu-0", "gpu-2", "gpu-3"] and "taints" not in devices_of(d)["gpu-0"]


def test_scheduled_faults_come_and_go_with_the_time_and_wake_the_node_at_each_change() -> None:
    rule = {"effect": "NoSchedule", "every": "60s", "duration": "20s", "devices": ["gpu-0"]}
    src = sources_with({"faults": [rule]})
    api = FakeSliceApi()
    now = CREATED
    seen = []
    for _ in range(12):  # follow the wake-ups through several periods
        d = decide(view(api), src, now)
        api.execute(d.plan)
        seen.append((now, "taints" in devices_of(api)["gpu-0"]))
        assert d.simulated.wake_at is not None and d.simulated.wake_at > now
        now = d.simulated.wake_at
    faulty = [t for t, on in seen if on]
    healthy = [t for t, on in seen if not on]
    assert faulty and healthy  # it failed and recovered
    # Never two faults of one device in one period, each lasting `duration`.
    assert len(faulty) == len({int(t // 60) for t in faulty})


def test_scheduled_faults_are_the_same_after_a_restart() -> None:
    rule = {"effect": "NoExecute", "every": "10m", "duration": "2m", "probability": 0.5}
    src = sources_with({"faults": [rule]}, count=16)
    one = decide(view(FakeSliceApi()), src, CREATED + 1234)
    two = decide(view(FakeSliceApi()), sources_with({"faults": [rule]}, count=16), CREATED + 1234)
    assert devices_of(one) == devices_of(two)
    assert one.simulated.wake_at == two.simulated.wake_at


def test_a_pool_with_tainting_faults_is_laid_out_for_taints_from_the_start() -> None:
    src = sources_with(
        {"faults": [{"effect": "NoSchedule", "every": "1h", "duration": "1m", "probability": 0}]}, count=100
    )
    d = decide(view(FakeSliceApi()), src, CREATED)
    sizes = sorted(len(a.manifest["spec"]["devices"]) for p in d.plan.pools for a in p.applies)
    assert sizes == [36, 64]  # at most 64 devices in a slice that may get taints (1.35+)


def test_simulation_on_an_overlay_applies_to_its_pools() -> None:
    rule = load_overlay_ok(overlay(simulation={"publishDelay": "1m"}))
    src = Sources(order_overlays([rule]), load_config_ok(config()))
    d = decide(view(FakeSliceApi()), src, CREATED)
    assert d.simulated.withheld and d.simulated.wake_at == CREATED + 60


def test_1_34_rejects_tainting_faults_when_loading() -> None:
    doc = config(simulated_mapping({"faults": [{"effect": "NoExecute", "every": "1m", "duration": "1s"}]}))
    from dra_kwok.core.config import load_config_data

    _, issues = load_config_data(doc, target("1.34.4"))
    assert any("DRADeviceTaints" in str(i) and "simulation.faults[0].effect" in str(i) for i in issues), [
        str(i) for i in issues
    ]
