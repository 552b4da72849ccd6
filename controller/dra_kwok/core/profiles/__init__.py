"""Device profiles of the real DRA drivers (see base.py and docs/profiles.md): `PROFILES` by name.

Each module holds one driver's profiles and cites the source it follows; `expand` turns a
template's `profile:` into the devices the profile builds, before the template is validated.
"""

from __future__ import annotations

from .base import DeviceClassSpec, Parameters, Profile, ProfilePool, device_uuid

PROFILES: dict[str, Profile] = {}


def register(*profiles: Profile) -> None:
    for p in profiles:
        if p.name in PROFILES:
            raise ValueError(f"profile {p.name} registered twice")
        PROFILES[p.name] = p


def _load() -> None:
    """The built-in profiles, one module per real driver."""
    from . import builtin

    register(*builtin.ALL)


_load()

__all__ = ["PROFILES", "DeviceClassSpec", "Parameters", "Profile", "ProfilePool", "device_uuid", "register"]
