"""The built-in profiles, in the order docs/profiles.md lists them."""

from __future__ import annotations

from . import cpu, example
from .base import Profile

ALL: tuple[Profile, ...] = (*cpu.PROFILES, *example.PROFILES)
