"""Polling with an explicit timeout and a failure message that shows the state at the deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    describe: Callable[[], str] | None = None,
    interval: float = 0.5,
) -> T:
    """Calls `probe` until it returns something other than None/False and returns that value.
    After `timeout` seconds fails with `what` plus `describe()` (e.g. the object's YAML)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as e:  # a probe may fail transiently (object not created yet, ...)
            last_error = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    details = ""
    if describe is not None:
        try:
            details = describe()
        except Exception as e:
            details = f"(could not describe the state: {e})"
    error = f"\nlast probe error: {last_error}" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{error}\n{details}")
