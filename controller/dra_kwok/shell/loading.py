"""The configuration's events: a ConfigMap or DRANodeOverlay event is loaded into the World, and
what came of it is said where users look (the log, a metric, an Event on the object). Returns
the nodes to reconcile; an invalid version changes nothing already published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..core.config import load_config_text
from . import metrics
from .events import EventPoster
from .world import World

log = logging.getLogger("dra_kwok.loading")


class Loader:
    def __init__(self, world: World, events: EventPoster) -> None:
        self.world = world
        self.events = events

    async def configmap(self, event_type: str | None, obj: Mapping[str, Any]) -> list[str]:
        """A ConfigMap event. Its text is parsed only when it changed, and in a worker thread: a
        1 MB config.yaml takes a while, during which nodes keep converging and probes answer."""
        world, s = self.world, self.world.settings
        loaded = None
        if event_type != "DELETED":
            text, issues, same = world.configmap_text(obj)
            if same:
                return []
            config = None
            if text is not None:
                with metrics.CONFIG_PARSE.time():
                    config, issues = await asyncio.to_thread(load_config_text, text, world.target)
            loaded = (text, config, issues)
        was_invalid = world.config.present and not world.config.valid
        changed, dirty = world.on_configmap(event_type, obj, loaded)
        cfg = world.config
        where = f"{s.configmap_namespace}/{s.configmap_name}"
        if event_type == "DELETED":
            metrics.CONFIG_RELOADS.labels(source="configmap", result="deleted").inc()
        elif not cfg.valid and cfg.warned_version != cfg.resource_version:
            cfg.warned_version = cfg.resource_version
            metrics.CONFIG_RELOADS.labels(source="configmap", result="invalid").inc()
            errs = [str(i) for i in cfg.issues if i.is_error]
            kept = "the last valid configuration stays in force" if cfg.config else "no mapping is applied yet"
            log.error("ConfigMap %s is invalid (%s): %s", where, kept, "; ".join(errs))
            self.events.post(
                obj, "Warning", "InvalidConfiguration", f"{len(errs)} error(s), {kept}: " + "; ".join(errs[:5])
            )
        elif changed:
            metrics.CONFIG_RELOADS.labels(source="configmap", result="loaded").inc()
            warns = [str(i) for i in cfg.issues if not i.is_error]
            for w in warns:
                log.warning("ConfigMap %s: %s", where, w)
            if warns:
                self.events.post(obj, "Warning", "ConfigurationWarnings", "; ".join(warns[:5]))
            count = len(cfg.config.mappings) if cfg.config else 0
            log.info("configuration loaded: %d mapping(s)", count)
            if was_invalid:
                self.events.post(obj, "Normal", "ConfigurationValid", f"valid again: {count} mapping(s) in force")
        return dirty

    def overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> list[str]:
        """An overlay event (the Reflector reports every overlay deleted while the CRD is not served)."""
        changed, dirty = self.world.on_overlay(event_type, obj)
        name = (obj.get("metadata") or {}).get("name", "")
        state = self.world.overlays.get(name)
        if state is not None and state.warned_generation != state.generation:
            state.warned_generation = state.generation
            errs = [str(i) for i in state.issues if i.is_error]
            warns = [str(i) for i in state.issues if not i.is_error]
            if errs:
                metrics.CONFIG_RELOADS.labels(source="overlay", result="invalid").inc()
                log.error("DRANodeOverlay %s is invalid: %s", name, "; ".join(errs))
                self.events.post(obj, "Warning", "InvalidSpec", "; ".join(errs[:5]))
            elif state.rule is not None:
                metrics.CONFIG_RELOADS.labels(source="overlay", result="loaded").inc()
                log.info(
                    "DRANodeOverlay %s loaded (generation %d, weight %d, drivers %s)",
                    name,
                    state.generation,
                    state.rule.weight,
                    ", ".join(sorted(state.rule.drivers)) or "none",
                )
            for w in warns:
                log.warning("DRANodeOverlay %s: %s", name, w)
            if warns:
                self.events.post(obj, "Warning", "SpecWarnings", "; ".join(warns[:5]))
        return dirty if changed or dirty else []
