"""A template's `profile:` expanded into the profile's devices before validation: the devices
join the template's own, the driver is the profile's, and every mistake names its field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field

from dra_kwok.core.config import load_config_data
from dra_kwok.core.issues import format_path
from dra_kwok.core.overlay import load_overlay
from dra_kwok.core.profiles import PROFILES, Parameters, Profile, ProfilePool, register
from dra_kwok.core.profiles.expand import expand_template
from dra_kwok.core.render import NodeRef, render
from dra_kwok.core.resolve import Resolution

DRIVER = "test-profile.dra-kwok.example.com"


class _Params(Parameters):
    count: int = Field(default=2, ge=1, le=16)
    model: str = "T-1000"


def _build(p: _Params) -> ProfilePool:
    return ProfilePool(
        devices=[
            {
                "name": f"tpu-{i}",
                "attributes": {"model": {"string": p.model}, "uuid": {"string": "TPU-{deviceUUID}"}},
                "capacity": {"memory": {"value": "16Gi"}},
            }
            for i in range(p.count)
        ]
    )


TEST_PROFILE = Profile(
    name="test-only-profile",
    driver=DRIVER,
    summary="a profile for these tests",
    source="tests/unit/core/profiles/test_expand.py",
    parameters=_Params,
    build=_build,
)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The test profile, for these tests only (the CRD's enum lists the built-in ones)."""
    register(TEST_PROFILE)
    yield
    del PROFILES[TEST_PROFILE.name]


def mapping(body: dict[str, Any]) -> dict[str, Any]:
    return {"mappings": [{"name": "m", "nodeSelector": {"matchLabels": {"a": "b"}}, "resourceSlice": body}]}


def test_the_profile_devices_follow_the_templates_own_and_the_driver_is_the_profiles() -> None:
    body = {"profile": {"name": TEST_PROFILE.name, "parameters": {"count": 3}}, "devices": [{"name": "extra"}]}
    cfg, issues = load_config_data(mapping(body))
    assert cfg is not None, [str(i) for i in issues]
    pool = cfg.mappings[0].pool
    assert pool.driver == DRIVER
    assert [d.name for d in pool.devices] == ["extra", "tpu-0", "tpu-1", "tpu-2"]


def test_uuids_are_per_node_and_device_and_stable() -> None:
    cfg, _ = load_config_data(mapping({"profile": {"name": TEST_PROFILE.name}}))
    assert cfg is not None
    res = Resolution(pools=(cfg.mappings[0].pool,))

    def uuids(node: str) -> list[str]:
        devices = render(NodeRef(node, "u"), res).all_slices()[0].content["devices"]
        return [d["attributes"]["uuid"]["string"] for d in devices]

    a, b = uuids("node-a"), uuids("node-b")
    assert len(set(a + b)) == 4 and all(u.startswith("TPU-") and len(u) == 40 for u in a + b)
    assert uuids("node-a") == a


def test_overrides_merge_into_every_profile_device() -> None:
    body = {
        "profile": {
            "name": TEST_PROFILE.name,
            "overrides": {
                "attributes": {"model": {"string": "T-2000"}, "zone": {"string": "a"}},
                "taints": [{"key": "example.com/unhealthy", "effect": "NoSchedule"}],
            },
        }
    }
    cfg, issues = load_config_data(mapping(body))
    assert cfg is not None, [str(i) for i in issues]
    for dev in cfg.mappings[0].pool.devices:
        assert dev.attributes["model"].string == "T-2000" and dev.attributes["zone"].string == "a"
        assert [t.key for t in dev.taints] == ["example.com/unhealthy"]


@pytest.mark.parametrize(
    ("profile", "path", "message"),
    [
        ({"name": "no-such"}, "mappings[0].resourceSlice.profile.name", "is not a known profile"),
        ({"name": TEST_PROFILE.name, "parameters": {"count": 99}}, "profile.parameters.count", "less than or equal"),
        ({"name": TEST_PROFILE.name, "parameters": {"colour": "red"}}, "profile.parameters.colour", ""),
        ({"name": TEST_PROFILE.name, "overrides": {"name": "x"}}, "profile.overrides.name", "cannot be overridden"),
        ({"name": TEST_PROFILE.name, "bogus": 1}, "profile.bogus", "is not a profile field"),
        ("nvidia", "resourceSlice.profile", "must be a mapping"),
    ],
)
def test_mistakes_name_the_field(profile: Any, path: str, message: str) -> None:
    cfg, issues = load_config_data(mapping({"profile": profile}))
    assert cfg is None
    found = [i for i in issues if format_path(i.path).endswith(path)]
    assert found, [str(i) for i in issues]
    assert message in found[0].message


def test_an_unknown_profile_lists_the_known_ones() -> None:
    _, issues = expand_template({"profile": {"name": "no-such"}}, ("spec",))
    assert issues[0].value == "no-such" and TEST_PROFILE.name in (issues[0].fix or "")


def test_a_driver_that_differs_from_the_profiles_is_refused() -> None:
    cfg, issues = load_config_data(mapping({"driver": "gpu.example.com", "profile": {"name": TEST_PROFILE.name}}))
    assert cfg is None
    (issue,) = issues
    assert format_path(issue.path) == "mappings[0].resourceSlice.driver" and issue.value == "gpu.example.com"
    assert DRIVER in issue.message


def test_an_overlay_template_needs_no_driver_with_a_profile() -> None:
    overlay = {
        "apiVersion": "test.karpenter.sh/v1alpha1",
        "kind": "DRANodeOverlay",
        "metadata": {"name": "o"},
        "spec": {
            "requirements": [],
            "resourceSlices": [{"spec": {"profile": {"name": TEST_PROFILE.name, "parameters": {"count": 1}}}}],
        },
    }
    rule, issues = load_overlay(overlay)
    assert rule is not None, [str(i) for i in issues]
    assert [(p.driver, len(p.devices)) for p in rule.pools] == [(DRIVER, 1)]
    overlay["spec"]["resourceSlices"][0]["spec"]["profile"]["parameters"] = {"count": 0}
    rule, issues = load_overlay(overlay)
    assert rule is None
    assert format_path(issues[0].path) == "spec.resourceSlices[0].spec.profile.parameters.count"
