"""Hostile inputs: every bad ConfigMap or DRANodeOverlay is reported (an Event, the overlay's Ready
condition, and the log) and the last good state stays published, untouched (same resourceVersions,
no writes). One controller serves the whole module; each test restores the good inputs.

No other controller may run while it does: DRANodeOverlays are cluster-wide, so a second instance
would publish for this module's overlay too (see test_two_controllers.py). Tests that start their
own controller live in test_bad_input_lifecycle.py."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.faults.support import (
    INSTANCE_TYPE,
    Rest,
    RestError,
    events,
    lines_at,
    log_lines,
    ready_condition,
    ready_reason,
)
from tests.integration.conftest import DRIVER, Scenario
from tests.support.cluster import KubectlError
from tests.support.controller import ControllerProcess, running_controller
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

CM = "dra-kwok-configmap"
CM_KEY = "config.yaml"
Doc = dict[str, Any]


# --- the good inputs -----------------------------------------------------------------------------


def good_config(tag: str) -> Doc:
    return {
        "driver": DRIVER,
        "mappings": [
            {
                "name": "small",
                "nodeSelector": {"matchLabels": {"dra-kwok-test": tag, INSTANCE_TYPE: "gpu-small"}},
                "resourceSlice": {
                    "devices": [
                        {
                            "name": "gpu",
                            "count": 2,
                            "attributes": {"model": "t4", "memory": "16Gi"},
                            "capacity": {"memory": "16Gi"},
                        }
                    ]
                },
            }
        ],
    }


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def edit(tag: str, change: Callable[[Doc], None]) -> str:
    doc = good_config(tag)
    change(doc)
    return dump(doc)


def device(doc: Doc) -> Doc:
    return dict(doc["mappings"][0]["resourceSlice"]["devices"][0])


def set_devices(doc: Doc, devices: list[Doc]) -> None:
    doc["mappings"][0]["resourceSlice"]["devices"] = devices


class World:
    """A controller with the good ConfigMap and a good overlay, one node published from each."""

    def __init__(self, scenario: Scenario, rest: Rest, ctl: ControllerProcess) -> None:
        self.scenario = scenario
        self.rest = rest
        self.ctl = ctl
        self.cm_path = f"/api/v1/namespaces/{scenario.namespace}/configmaps"
        self.overlay = f"{scenario.tag}-good"
        self.mapped = f"{scenario.tag}-mapped"
        self.overlaid = f"{scenario.tag}-overlaid"

    def good_overlay_spec(self) -> Doc:
        return self.scenario.overlay_spec(
            [{"name": "h100", "count": 2, "attributes": {"model": "h100"}}], instance_type="gpu-overlay"
        )

    def set_data(self, data: dict[str, str]) -> str:
        """Replaces the ConfigMap's data (a PUT: no last-applied annotation, so 1 MB values fit);
        returns the new resourceVersion."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CM, "namespace": self.scenario.namespace},
            "data": data,
        }
        try:
            out = self.rest.request("PUT", f"{self.cm_path}/{CM}", body=body)[1]
        except RestError as e:
            if e.status != 404:
                raise
            out = self.rest.create(self.cm_path, body)
        return str(out["metadata"]["resourceVersion"])

    def set_config(self, text: str) -> str:
        return self.set_data({CM_KEY: text})

    def set_overlay(self, spec: Doc) -> None:
        """Applies this module's overlay (deleted once, by the fixture, at the end)."""
        meta = {"name": self.overlay}
        self.scenario.cluster.apply(
            {"apiVersion": "test.karpenter.sh/v1alpha1", "kind": "DRANodeOverlay", "metadata": meta, "spec": spec}
        )

    def restore(self) -> None:
        self.set_config(dump(good_config(self.scenario.tag)))
        self.set_overlay(self.good_overlay_spec())

    def snapshot(self) -> dict[str, str]:
        """Every managed slice, by name, with its resourceVersion."""
        return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in self.scenario.slices()}

    def healthy_within(self, seconds: float) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ctl.health_port}/healthz", timeout=seconds) as r:
                return bool(r.status == 200)
        except OSError:
            return False


@pytest.fixture(scope="module")
def world(module_scenario: Scenario, rest: Rest) -> Iterator[World]:
    scenario = module_scenario
    with running_controller(
        scenario.cluster.kubeconfig, scenario.namespace, scenario.workdir, managed_by=scenario.managed_by
    ) as ctl:
        w = World(scenario, rest, ctl)
        scenario.cleanup.delete_later("dranodeoverlay", w.overlay)
        w.restore()
        scenario.node(w.mapped, instance_type="gpu-small")
        scenario.node(w.overlaid, instance_type="gpu-overlay")
        wait_until(lambda: scenario.device_names(w.mapped) == ["gpu-0", "gpu-1"], timeout=20, what="the mapping")
        wait_until(lambda: scenario.device_names(w.overlaid) == ["h100-0", "h100-1"], timeout=20, what="the overlay")
        yield w


@pytest.fixture
def good(world: World) -> Iterator[World]:
    """The world with the good inputs in force before and after the test, and nothing pending."""
    world.restore()
    wait_until(lambda: len(world.snapshot()) == 2, timeout=15, what="the two good slices")
    assert world.ctl.alive, world.ctl.log()
    yield world
    world.restore()


def assert_kept(world: World, before: dict[str, str], writes: float) -> None:
    """The last good state is still published, untouched, and nothing was written."""
    time.sleep(0.5)  # room for a wrong write to happen
    assert world.snapshot() == before, "the published slices changed"
    assert world.ctl.writes() == writes, "the controller wrote something"
    assert world.ctl.alive, world.ctl.log()


# --- ConfigMaps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadConfig:
    id: str
    data: Callable[[str], dict[str, str]]  # the ConfigMap's data for a test tag
    expect: tuple[str, ...]  # each must appear in the Event message
    expect_in_log: tuple[str, ...] = field(default=())  # beyond the Event's first five errors

    def __str__(self) -> str:
        return self.id


def text(build: Callable[[str], str], id: str, *expect: str, log: tuple[str, ...] = ()) -> BadConfig:
    return BadConfig(id, lambda tag: {CM_KEY: build(tag)}, expect, log)


def _many_devices(doc: Doc) -> None:
    set_devices(doc, [{"name": f"gpu-{i}"} for i in range(10_000)])


def _bad_attribute_names(doc: Doc) -> None:
    set_devices(doc, [{**device(doc), "attributes": {"compute-capability": "8.0", "a/b/c": 1, "x" * 33: 1}}])


def _bad_device_names(doc: Doc) -> None:
    set_devices(doc, [{"name": "GPU_0"}, {"name": "-gpu"}, {"name": "g" * 64}, {"name": "a" * 61, "count": 100}])


def _duplicates(doc: Doc) -> None:
    set_devices(doc, [{"name": "gpu", "count": 2}, {"name": "gpu-1"}, {"name": "nic"}, {"name": "nic"}])


def _oversized(doc: Doc) -> None:
    huge = "x" * 100_000
    doc["mappings"][0]["nodeSelector"]["matchLabels"]["big"] = huge
    set_devices(doc, [{"name": "n" * 100_000, "attributes": {"serial": huge}}])


def _wrong_types(doc: Doc) -> None:
    dev = device(doc)
    dev["count"] = "8"
    dev["attributes"] = {"model": 7.5, "index": {"int": "zero"}}
    dev["capacity"] = {"memory": 1.5}
    dev["taints"] = "none"
    set_devices(doc, [dev, {"name": True}])
    doc["mappings"].append({"name": "other", "nodeSelector": "gpu-small", "resourceSlice": {"devices": {"a": {}}}})


def _missing_selector(doc: Doc) -> None:
    del doc["mappings"][0]["nodeSelector"]


def _driver(driver: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc["driver"] = driver

    return change


def _set_count(count: int) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        set_devices(doc, [{**device(doc), "count": count}])

    return change


CONFIG_CASES = [
    text(lambda t: "driver: [not valid\nmappings: {", "not-yaml", "not valid YAML at line"),
    text(lambda t: "driver: x\nmappings:\n\t- name: m\n", "tab-indented", "not valid YAML"),
    text(lambda t: dump(good_config(t)) + "\x00\x07", "control-characters", "not valid YAML"),
    text(lambda t: "[" * 5000 + "]" * 5000, "nested-5000-deep", "nested too deeply"),
    text(lambda t: "- driver: x\n- mappings: []\n", "a-list", "must be a mapping", "list"),
    text(lambda t: "just some words", "a-scalar", "must be a mapping", "str"),
    text(lambda t: dump({"driver": DRIVER, "mappings": {"name": "small"}}), "mappings-not-a-list", "must be a list"),
    text(lambda t: edit(t, _missing_selector), "selector-missing", "mappings[0].nodeSelector: is required"),
    text(
        lambda t: edit(t, _driver("karpenter.sh/dra-kwok-driver")),
        "driver-with-slash",
        "invalid driver name",
        "karpenter.sh.dra-kwok-driver",
    ),
    text(lambda t: edit(t, _driver("GPU.Example.com")), "driver-uppercase", "should be lowercase"),
    text(lambda t: edit(t, _driver("d" * 64)), "driver-64-chars", "at most 63 characters"),
    text(
        lambda t: edit(t, _bad_attribute_names),
        "attribute-names",
        "'compute_capability'",
        "more than one slash",
        "at most 32 characters",
    ),
    text(
        lambda t: edit(t, _bad_device_names),
        "device-names",
        "device name 'GPU_0'",
        "device name '-gpu'",
        "at most 63 characters (has 64)",
        "over the 63-character limit",
    ),
    text(lambda t: edit(t, _set_count(10_000)), "count-10000", "less than or equal to 1024"),
    text(lambda t: edit(t, _many_devices), "10000-device-entries", "the pool has 10000 devices"),
    text(lambda t: edit(t, _duplicates), "duplicate-names", "'gpu-1' is also produced by", "'nic' is also produced"),
    text(
        lambda t: edit(t, _oversized),
        "oversized-strings",
        "at most 63 characters (has 100000)",
        "at most 64 bytes of UTF-8 (has 100000)",
    ),
    text(
        lambda t: edit(t, _wrong_types),
        "wrong-types",
        "devices[0].count",
        "devices[0].attributes.model",
        "devices[0].attributes.index.int",
        "devices[0].capacity.memory",
        "devices[0].taints",
        log=("devices[1].name", "mappings[1].nodeSelector: must be a mapping", "mappings[1].resourceSlice.devices"),
    ),
    BadConfig(
        "key-missing",
        lambda t: {"other.yaml": dump(good_config(t))},
        ("has no key 'config.yaml' (keys present: other.yaml)",),
    ),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=str)
def test_bad_configmap_is_reported_and_the_last_good_configuration_kept(good: World, case: BadConfig) -> None:
    world = good
    before, writes = world.snapshot(), world.ctl.writes()
    lines_before = len(log_lines(world.ctl))
    invalid = 'dra_kwok_config_reloads_total{result="invalid",source="configmap"}'
    reloads = world.ctl.metrics().get(invalid, 0.0)

    rv = world.set_data(case.data(world.scenario.tag))

    def event() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in events(world.scenario.cluster, world.scenario.namespace, "InvalidConfiguration", CM)
                if e["involvedObject"].get("resourceVersion") == rv
            ),
            None,
        )

    found = wait_until(event, timeout=20, what="an InvalidConfiguration Event", describe=world.ctl.log)
    message = found["message"]
    assert found["type"] == "Warning"
    assert "the last valid configuration stays in force" in message
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in the Event: {message}"
    assert len(message) <= 1024
    new_lines = log_lines(world.ctl)[lines_before:]
    marker = f"ConfigMap {world.scenario.namespace}/{CM} is invalid"
    logged = [line for line in lines_at(new_lines, "ERROR") if marker in line]
    assert len(logged) == 1, new_lines[-20:]
    for expected in case.expect + case.expect_in_log:
        assert expected in logged[0], f"{expected!r} not in the log line"
    # The user's oversized values are quoted cut short, never echoed whole.
    assert max(len(line) for line in new_lines) < 20_000
    assert world.ctl.metrics().get(invalid, 0.0) == reloads + 1
    assert_kept(world, before, writes)


def test_unknown_keys_are_errors_and_never_reach_the_api(good: World) -> None:
    """A misspelt key is an error (a typo such as `cont: 2` would otherwise change what is
    published without a word): every one is named with the nearest field, and the last good
    configuration stays in force."""
    world = good
    before, writes = world.snapshot(), world.ctl.writes()
    doc = good_config(world.scenario.tag)
    doc["mapingz"] = []
    doc["mappings"][0]["resourceSlice"]["sharedCounter"] = []
    doc["mappings"][0]["resourceSlice"]["devices"][0]["atributes"] = {"model": "a100"}
    rv = world.set_config(dump(doc))

    def invalid() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in events(world.scenario.cluster, world.scenario.namespace, "InvalidConfiguration", CM)
                if e["involvedObject"].get("resourceVersion") == rv
            ),
            None,
        )

    message = wait_until(invalid, timeout=20, what="an InvalidConfiguration Event", describe=world.ctl.log)["message"]
    assert "the last valid configuration stays in force" in message, message
    rs = "mappings[0].resourceSlice"
    for path, near in (("mapingz", "mappings"), (f"{rs}.sharedCounter", "sharedCounters"),
                       (f"{rs}.devices[0].atributes", "attributes")):  # fmt: skip
        assert f"{path}: unknown field; fix: did you mean {near!r}?" in message, message
    wait_until(
        lambda: "mappings[0].resourceSlice.devices[0].atributes: unknown field" in world.ctl.log(),
        timeout=10,
        what="the error in the log",
    )
    assert_kept(world, before, writes)
    assert "atributes" not in json.dumps(world.scenario.slices())


def test_oversized_mapping_name_is_rejected_up_front(good: World) -> None:
    """A mapping's name goes into each slice's `source` annotation, which the apiserver limits
    (256 KiB for all annotations): such a configuration can never be published, so it must be
    rejected when it is loaded, like any other invalid value, not retried forever at write time."""
    world = good
    before, writes = world.snapshot(), world.ctl.writes()
    doc = good_config(world.scenario.tag)
    doc["mappings"][0]["name"] = "m" * 300_000
    rv = world.set_config(dump(doc))
    found = wait_until(
        lambda: next(
            (
                e
                for e in events(world.scenario.cluster, world.scenario.namespace, None, CM)
                if e["involvedObject"].get("resourceVersion") == rv
            ),
            None,
        ),
        timeout=10,
        what="an Event about the configuration",
        describe=lambda: "\n".join(log_lines(world.ctl)[-10:])[:5000],
    )
    assert found["reason"] == "InvalidConfiguration", found["message"][:500]
    assert_kept(world, before, writes)


# --- DRANodeOverlays ---------------------------------------------------------------------------


def test_overlay_rejected_at_admission_changes_nothing(good: World) -> None:
    world = good
    before, writes = world.snapshot(), world.ctl.writes()
    generation = world.scenario.cluster.get_json("dranodeoverlay", world.overlay)["metadata"]["generation"]
    spec = world.good_overlay_spec()
    spec["weight"] = 0
    spec["requirements"][0]["operator"] = "Equals"
    spec["capacity"] = {"cpu": "4"}
    tmpl = spec["resourceSlices"][0]
    tmpl["kind"] = "Pod"
    tmpl["spec"]["driver"] = "Bad/Driver"
    tmpl["spec"]["nodeName"] = "node-1"
    tmpl["spec"]["devices"] = [
        {
            "name": "GPU_0",
            "count": 0,
            "attributes": {"model": 7.5, "v": {"version": "1.2"}},
            "capacity": {"memory": "80 GiB"},
            "taints": [{"key": "bad key", "effect": "Sometimes"}],
        }
    ]
    with pytest.raises(KubectlError) as err:
        world.set_overlay(spec)
    assert "is invalid" in err.value.stderr
    for path in ("spec.weight", "spec.requirements[0].operator", "devices[0].name", "devices[0].count"):
        assert path in err.value.stderr
    obj = world.scenario.cluster.get_json("dranodeoverlay", world.overlay)
    assert obj["metadata"]["generation"] == generation
    ready = ready_condition(world.scenario.cluster, world.overlay)
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Applied")
    assert_kept(world, before, writes)


def _past_admission(world: World) -> Doc:
    """Everything wrong that the CRD cannot see (rules across fields and templates), one per driver."""
    spec = world.good_overlay_spec()

    def tmpl(driver: str, devices: list[Doc], **extra: Any) -> Doc:
        body = {"driver": driver, "devices": devices, **extra}
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "spec": body}

    spec["resourceSlices"] = [
        tmpl(DRIVER, [{"name": "gpu", "count": 2}, {"name": "gpu-1"}]),
        tmpl("a.example.com", [{"name": "x"}]),
        tmpl("a.example.com", [{"name": "x"}]),
        tmpl("b.example.com", [{"name": "y", "consumesCounters": [{"counterSet": "nope", "counters": {"c": "1"}}]}]),
        tmpl(
            "c.example.com",
            [{"name": "z", "consumesCounters": [{"counterSet": "s", "counters": {"zz": "1"}}]}],
            sharedCounters=[{"name": "s", "counters": {"c": "1"}}],
        ),
        tmpl("d.example.com", [{"name": "w", "capacity": {"bw": {"value": "8", "requestPolicy": {"default": "1"}}}}]),
        tmpl("e.example.com", [{"name": "big", "count": 1000}]),
        tmpl("e.example.com", [{"name": "more", "count": 100}]),
        tmpl(
            "f.example.com",
            [{"name": "v", "attributes": {f"a{i}": i for i in range(20)}, "capacity": dict.fromkeys(CAPS, "1")}],
        ),
    ]
    return spec


CAPS = [f"c{i}" for i in range(20)]
PAST_ADMISSION_ERRORS = [
    "spec.resourceSlices[0].spec.devices[1].name: device name 'gpu-1' is also produced by",
    "spec.resourceSlices[2].spec.devices[0].name: device name 'x' is also produced by spec.resourceSlices[1]",
    "spec.resourceSlices[3].spec.devices[0].consumesCounters[0].counterSet: no counter set of this name",
    "spec.resourceSlices[4].spec.devices[0].consumesCounters[0].counters.zz: counter set 's' has no counter",
    "spec.resourceSlices[5].spec.devices[0].capacity.bw.requestPolicy: requestPolicy needs allowMultipleAllocations",
    "the pool has 1100 devices",
    "spec.resourceSlices[8].spec.devices[0]: 40 attributes and capacities",
]


def test_overlay_wrong_past_admission_is_ready_false_and_the_last_good_spec_kept(good: World) -> None:
    world = good
    cluster = world.scenario.cluster
    before, writes = world.snapshot(), world.ctl.writes()
    lines_before = len(log_lines(world.ctl))
    world.set_overlay(_past_admission(world))  # admitted
    generation = cluster.get_json("dranodeoverlay", world.overlay)["metadata"]["generation"]

    def invalid() -> dict[str, Any] | None:
        r = ready_condition(cluster, world.overlay)
        ok = r and r["reason"] == "InvalidSpec" and r["_observedGeneration"] == generation
        return r if ok else None

    ready = wait_until(invalid, timeout=20, what="Ready=False InvalidSpec", describe=world.ctl.log)
    assert ready["status"] == "False"
    assert ready["observedGeneration"] == generation
    assert f"and {len(PAST_ADMISSION_ERRORS) - 3} more" in ready["message"]
    assert f"The last valid spec (generation {generation - 1}) stays in force" in ready["message"]
    assert PAST_ADMISSION_ERRORS[0] in ready["message"]
    evs = events(cluster, "default", "InvalidSpec", world.overlay)
    evs = [e for e in evs if PAST_ADMISSION_ERRORS[0] in e["message"]]
    assert evs and evs[-1]["type"] == "Warning", "an InvalidSpec Event"
    logged = [
        line for line in log_lines(world.ctl)[lines_before:] if f"DRANodeOverlay {world.overlay} is invalid" in line
    ]
    assert len(logged) == 1
    missing = [e for e in PAST_ADMISSION_ERRORS if e not in logged[0]]
    assert not missing, f"not in the log: {missing}"
    assert_kept(world, before, writes)

    # Fixed again: Ready, and still nothing to write (the good spec's slices are in place).
    world.set_overlay(world.good_overlay_spec())
    wait_until(
        lambda: ready_reason(cluster, world.overlay) == "Applied",
        timeout=20,
        what="Ready again",
    )
    assert world.snapshot() == before and world.ctl.writes() == writes


def test_mapping_placeholder_too_long_for_a_node_is_a_configmap_event_and_nothing_is_written(good: World) -> None:
    """The same in a ConfigMap mapping. A ConfigMap has no status: a Warning Event `RenderFailed`
    on it names the mapping, the node and the fix, once; the node keeps its last slices."""
    world = good
    cluster, namespace = world.scenario.cluster, world.scenario.namespace
    before, writes = world.snapshot(), world.ctl.writes()
    cfg = good_config(world.scenario.tag)
    cfg["mappings"][0]["resourceSlice"]["devices"][0]["attributes"]["uuid"] = "{nodeName}" * 5
    world.set_config(dump(cfg))
    found = wait_until(
        lambda: next(iter(events(cluster, namespace, "RenderFailed", CM)), None),
        timeout=15,
        what="a RenderFailed Event on the ConfigMap",
        describe=world.ctl.log,
    )
    message = found["message"]
    assert found["type"] == "Warning" and found["involvedObject"]["kind"] == "ConfigMap"
    assert message.startswith("mapping small: cannot publish for 1 node(s), which keep what they had; ")
    assert f"node {world.mapped}: devices.gpu-0.attributes.uuid" in message and "use {nodeHash}" in message
    assert_kept(world, before, writes)

    # A second node failing on the same mapping is not a new Event (one per mapping, not per node).
    extra = world.scenario.unique("extra")
    world.scenario.node(extra, instance_type="gpu-small")
    wait_until(
        lambda: f"cannot render slices for node {extra}" in world.ctl.log(), timeout=15, what="the second failure"
    )
    time.sleep(2.5)  # past the status loop's next pass (1 s)
    cluster.kubectl("delete", "node", extra)
    assert len(events(cluster, namespace, "RenderFailed", CM)) == 1
    assert world.snapshot() == before and world.ctl.writes() == writes


def test_placeholder_too_long_for_a_node_is_reported_and_nothing_is_written(good: World) -> None:
    """`{nodeName}` five times is over the 64-byte limit for this node's name: valid as a template,
    it cannot be rendered for the node, which keeps its last published slices. The overlay's Ready
    condition says so, naming the node and the fix, and recovers when the template is fixed."""
    world = good
    before, writes = world.snapshot(), world.ctl.writes()
    errors = world.ctl.metric('dra_kwok_reconcile_errors_total{reason="render"}')
    spec = world.good_overlay_spec()
    spec["resourceSlices"][0]["spec"]["devices"][0]["attributes"]["uuid"] = "{nodeName}" * 5
    world.set_overlay(spec)
    wait_until(
        lambda: f"cannot render slices for node {world.overlaid}" in world.ctl.log(),
        timeout=15,
        what="the render error in the log",
    )
    assert world.ctl.metric('dra_kwok_reconcile_errors_total{reason="render"}') > errors
    assert "use {nodeHash}" in world.ctl.log()
    cond = wait_until(
        lambda: (c := ready_condition(world.scenario.cluster, world.overlay)) and c["reason"] == "RenderFailed" and c,
        timeout=15,
        what="Ready=False RenderFailed",
    )
    assert cond["status"] == "False"
    assert f"node {world.overlaid}: devices." in cond["message"] and "use {nodeHash}" in cond["message"], cond
    assert_kept(world, before, writes)

    world.set_overlay(world.good_overlay_spec())
    wait_until(
        lambda: ready_reason(world.scenario.cluster, world.overlay) == "Applied", timeout=15, what="Applied again"
    )
    assert world.snapshot() == before
