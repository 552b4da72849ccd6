"""What the profile tests share: a ConfigMap config with one mapping that names a profile, and
what a node gets from it once validated and rendered by the same code as any template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dra_kwok.core.config import FallbackConfig, load_config_data
from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.profiles import PROFILES, Profile
from dra_kwok.core.render import NodeRef, render
from dra_kwok.core.resolve import Resolution
from dra_kwok.core.versions import DEFAULT_TARGET, Target


def _name(profile: Profile | str) -> str:
    return profile if isinstance(profile, str) else profile.name


def mapping_config(profile: Profile | str, parameters: dict[str, Any]) -> dict[str, Any]:
    """config.yaml data: one mapping whose resourceSlice is the profile with `parameters`. The
    top-level driver, a default for mappings, is another one: the profile's must win."""
    return {
        "driver": "default.example.com",
        "mappings": [
            {
                "name": "m",
                "nodeSelector": {"matchLabels": {"a": "b"}},
                "resourceSlice": {"profile": {"name": _name(profile), "parameters": parameters}},
            }
        ],
    }


def load(
    profile: Profile | str, parameters: dict[str, Any], target: Target = DEFAULT_TARGET
) -> tuple[FallbackConfig | None, list[Issue]]:
    return load_config_data(mapping_config(profile, parameters), target)


def error_lines(profile: Profile | str, parameters: dict[str, Any]) -> list[str]:
    """`<field path>: <message>` of each error the parameters cause."""
    _, issues = load(profile, parameters)
    return [f"{format_path(i.path)}: {i.message}" for i in issues if i.is_error]


@dataclass(frozen=True)
class Published:
    devices: list[dict[str, Any]]
    counters: list[dict[str, Any]]


def published(profile: Profile | str, parameters: dict[str, Any], node: str = "node-a") -> Published:
    """The devices and counter sets `node` gets, across its slices; all of the profile's driver."""
    cfg, issues = load(profile, parameters)
    assert cfg is not None and not [i for i in issues if i.is_error], [str(i) for i in issues]
    slices = render(NodeRef(node, f"uid-{node}"), Resolution(pools=(cfg.mappings[0].pool,))).all_slices()
    assert {s.driver for s in slices} == {PROFILES[_name(profile)].driver}
    return Published(
        [d for s in slices for d in s.content.get("devices") or []],
        [c for s in slices for c in s.content.get("sharedCounters") or []],
    )
