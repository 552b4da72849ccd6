"""The built-in profiles, in the order docs/profiles.md lists them."""

from __future__ import annotations

from . import amd, cpu, example, intel, nvidia, tpu
from .base import Profile

ALL: tuple[Profile, ...] = (
    *nvidia.PROFILES,
    *amd.PROFILES,
    *intel.PROFILES,
    *tpu.PROFILES,
    *cpu.PROFILES,
    *example.PROFILES,
)
