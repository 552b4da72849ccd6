"""The built-in profiles, in the order docs/profiles.md lists them."""

from __future__ import annotations

from . import cpu, example, nvidia
from .base import Profile

ALL: tuple[Profile, ...] = (*nvidia.PROFILES, *cpu.PROFILES, *example.PROFILES)
