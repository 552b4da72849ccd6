"""Slice names as docs/configuration.md specifies them, spelled out independently of the core."""

from __future__ import annotations

import hashlib


def multi_slice_name(node: str, driver: str, index: int) -> str:
    """`{node}-{driver}-{h}-{index}`: h is the first 8 hex digits of sha256("{node}/{driver}")."""
    pair = hashlib.sha256(f"{node}/{driver}".encode()).hexdigest()[:8]
    return f"{node}-{driver}-{pair}-{index}"
