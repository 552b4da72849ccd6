"""What the benchmark observes, from watch events stamped on receipt: when each node's pool became
complete (optionally with a given content marker), when its slices were gone, when nodes appeared
and disappeared. No I/O here; `observe` feeds it from a list+watch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .kube import Kube

MARKER_ATTRIBUTE = "model"  # every benchmark device carries {model: {string: <marker>}}


@dataclass(frozen=True, slots=True)
class SliceInfo:
    generation: int
    count: int
    pool: str
    marker: str | None


def slice_info(obj: dict[str, Any]) -> SliceInfo:
    spec = obj.get("spec") or {}
    pool = spec.get("pool") or {}
    devices = spec.get("devices") or []
    markers = {((d.get("attributes") or {}).get(MARKER_ATTRIBUTE) or {}).get("string") for d in devices}
    return SliceInfo(
        int(pool.get("generation") or 0),
        int(pool.get("resourceSliceCount") or 0),
        str(pool.get("name") or ""),
        markers.pop() if len(markers) == 1 else None,
    )


def pool_complete(slices: Iterable[SliceInfo], marker: str | None = None) -> bool:
    """The scheduler's rule (one generation, as many slices as resourceSliceCount says), and every
    device carries `marker` when one is given."""
    infos = list(slices)
    if not infos:
        return False
    if len({(s.generation, s.count, s.pool) for s in infos}) != 1 or infos[0].count != len(infos):
        return False
    return marker is None or all(s.marker == marker for s in infos)


@dataclass
class SliceTracker:
    """Per node: its slices now, when its pool first became complete (with `marker`, if set),
    and when its last slice went away."""

    marker: str | None = None
    slices: dict[str, dict[str, SliceInfo]] = field(default_factory=dict)  # node -> slice -> info
    complete_at: dict[str, float] = field(default_factory=dict)
    gone_at: dict[str, float] = field(default_factory=dict)
    events: int = 0
    failure: BaseException | None = None  # the watch died: waiters raise it
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_marker(self, marker: str | None, now: float) -> None:
        """A new content target: completion times restart from here."""
        self.marker = marker
        self.complete_at = {n: now for n, s in self.slices.items() if pool_complete(s.values(), marker)}
        self._changed.set()

    def on_event(self, now: float, event_type: str, obj: dict[str, Any]) -> None:
        self.events += 1
        name = obj["metadata"]["name"]
        node = (obj.get("spec") or {}).get("nodeName") or ""
        if not node:
            return
        node_slices = self.slices.setdefault(node, {})
        if event_type == "DELETED":
            node_slices.pop(name, None)
        else:
            node_slices[name] = slice_info(obj)
        if not node_slices:
            del self.slices[node]
            self.gone_at[node] = now
        else:
            self.gone_at.pop(node, None)
            if node not in self.complete_at and pool_complete(node_slices.values(), self.marker):
                self.complete_at[node] = now
        self._changed.set()

    async def wait_for(self, done: Any, timeout: float) -> None:
        """Until `done()` is true, re-checked after every event; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while not done():
                if self.failure is not None:
                    raise RuntimeError("the slice watch failed") from self.failure
                self._changed.clear()
                await self._changed.wait()

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        self._changed.set()

    async def wait_complete(self, nodes: Iterable[str], timeout: float) -> float:
        """The receipt time of the event that completed the last of `nodes`."""
        wanted = set(nodes)
        await self.wait_for(lambda: wanted <= self.complete_at.keys(), timeout)
        return max(self.complete_at[n] for n in wanted)

    async def wait_gone(self, nodes: Iterable[str], timeout: float) -> None:
        wanted = set(nodes)
        await self.wait_for(lambda: not wanted & self.slices.keys(), timeout)


@dataclass
class NodeTracker:
    added_at: dict[str, float] = field(default_factory=dict)
    deleted_at: dict[str, float] = field(default_factory=dict)
    events: int = 0

    def on_event(self, now: float, event_type: str, obj: dict[str, Any]) -> None:
        self.events += 1
        name = obj["metadata"]["name"]
        if event_type == "ADDED":
            self.added_at.setdefault(name, now)
        elif event_type == "DELETED":
            self.deleted_at.setdefault(name, now)


@contextlib.asynccontextmanager
async def observe(
    kube: Kube, path: str, label_selector: str, tracker: SliceTracker | NodeTracker
) -> AsyncIterator[None]:
    """Lists (fed as ADDED at list time) and then watches `path` into `tracker` for the block."""
    items, rv = await kube.list(path, label_selector)
    now = time.monotonic()
    for obj in items:
        tracker.on_event(now, "ADDED", obj)

    async def pump() -> None:
        try:
            async for t, event_type, obj in kube.watch(path, label_selector, rv):
                tracker.on_event(t, event_type, obj)
        except Exception as exc:
            if isinstance(tracker, SliceTracker):
                tracker.fail(exc)
            raise

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises the watch's own failure, if it had one
