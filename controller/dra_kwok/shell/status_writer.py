"""Writes what the World recorded where users look: each DRANodeOverlay's status (and Events on
its transitions) and, as a ConfigMap has no status, Events on the ConfigMap for failing mappings.
What to write is computed by the core (`core.status`); this module only sends it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..core.status import mapping_failure_events, mapping_failures, overlay_statuses, status_events
from .api import OVERLAYS_PATH, ApiError, NotFound
from .events import EventPoster, configmap_ref, now, overlay_ref
from .settings import Settings
from .world import World

log = logging.getLogger("dra_kwok.status")
MAX_DELAY = 10.0  # seconds an overlay status may lag behind while the queue is busy


class StatusApi(Protocol):
    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any: ...


class StatusWriter:
    """Writes statuses when the World says something they show has changed, at most every
    `settings.status_interval` seconds, and while the reconciler is busy at most every MAX_DELAY
    seconds (conflicts are complete once the queue drains; under constant churn, it writes anyway)."""

    def __init__(
        self, world: World, api: StatusApi, events: EventPoster, settings: Settings, busy: Callable[[], bool]
    ) -> None:
        self.world = world
        self.api = api
        self.events = events
        self.settings = settings
        self.busy = busy
        self.changed = asyncio.Event()
        self.changed.set()  # the first round writes whatever differs from what is on the server
        world.on_change = self.changed.set
        # Event reason -> the mappings a Warning Event named as failing that way
        self.mapping_failures_reported: dict[str, frozenset[str]] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        written_at = 0.0
        while True:
            await self.changed.wait()
            await asyncio.sleep(self.settings.status_interval)  # changes arriving meanwhile: one round
            if self.busy() and loop.time() - written_at < MAX_DELAY:
                continue
            self.changed.clear()
            written_at = loop.time()
            try:
                await self.write()
            except ApiError as exc:
                log.warning("writing overlay status failed: %s", exc)
                self.changed.set()  # tried again in the next round
            except Exception:  # a bug must not stop status and Events for good
                log.exception("computing overlay status failed")
                self.changed.set()

    async def write(self) -> None:
        world = self.world
        outcomes = world.outcomes()
        s = self.settings
        cm = configmap_ref(s.configmap_name, s.configmap_namespace, world.config.uid)
        for reason, failures in mapping_failures(outcomes).items():
            reported = self.mapping_failures_reported.get(reason, frozenset())
            events, self.mapping_failures_reported[reason] = mapping_failure_events(reason, failures, reported)
            for type_, event_reason, message in events:
                if type_ == "Warning":
                    log.warning("ConfigMap %s/%s: %s", s.configmap_namespace, s.configmap_name, message)
                self.events.post(cm, type_, event_reason, message)
        for overlay, status in overlay_statuses(world.overlay_facts(), world.node_labels(), outcomes, now()):
            try:
                await self.api.merge_patch(f"{OVERLAYS_PATH}/{overlay.name}/status", {"status": status}, verb="status")
            except NotFound:
                continue
            for type_, reason, message in status_events(overlay.status, status):
                (log.warning if type_ == "Warning" else log.info)(
                    "DRANodeOverlay %s: %s: %s", overlay.name, reason, message
                )
                self.events.post(overlay_ref(overlay.name, overlay.uid), type_, reason, message)
            world.status_written(overlay.name, overlay.uid, status)
