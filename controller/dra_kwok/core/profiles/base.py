"""What a device profile is: the devices one real DRA driver publishes for one node, built from a
few parameters, and the DeviceClasses that driver's chart installs.

A profile builds devices in the same form users write in templates (`devices`, `sharedCounters`),
so they go through the same validation and rendering as hand-written ones. Every name, type and
example value comes from the real driver's public source, cited in the profile's `source`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..names import device_uuid

Body = dict[str, Any]
__all__ = ["Body", "DeviceClassSpec", "Parameters", "Profile", "ProfilePool", "device_uuid"]


class Parameters(BaseModel):
    """A profile's parameters: camelCase in YAML, unknown keys refused, defaults that work."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


@dataclass(frozen=True, slots=True)
class DeviceClassSpec:
    """A DeviceClass the real driver's chart installs: its name, the CEL selector, and the
    extended resource name it maps (DRAExtendedResource), if the real one sets it."""

    name: str
    selector: str
    extended_resource_name: str | None = None

    def manifest(self) -> Body:
        spec: Body = {"selectors": [{"cel": {"expression": self.selector}}]}
        if self.extended_resource_name:
            spec["extendedResourceName"] = self.extended_resource_name
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": self.name},
            "spec": spec,
        }


@dataclass(frozen=True, slots=True)
class ProfilePool:
    """A profile's devices for one node, in template form (camelCase dicts, as users write them)."""

    devices: Sequence[Body]
    shared_counters: Sequence[Body] = ()
    partition_type_attribute: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """One real driver's device shape. `build` turns validated parameters into the devices."""

    name: str  # what users write: `profile: {name: ...}`
    driver: str  # the real driver's name, which the slices carry
    summary: str  # one line, for `dra-kwok profiles` and docs/profiles.md
    source: str  # "<repository> <version>: <files>": where every name and value was read
    parameters: type[Parameters]
    build: Callable[[Any], ProfilePool]  # called with an instance of `parameters`
    device_classes: tuple[DeviceClassSpec, ...] = field(default=())
    example: Body = field(default_factory=dict)  # parameters for the docs' example (checked by a test)

    def pool(self, params: Parameters) -> ProfilePool:
        return self.build(params)


def string(value: str) -> Body:
    return {"string": value}


def integer(value: int) -> Body:
    return {"int": value}


def boolean(value: bool) -> Body:
    return {"bool": value}


def version(value: str) -> Body:
    return {"version": value}


def quantity(value: str) -> Body:
    return {"value": value}
