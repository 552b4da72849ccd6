"""Karpenter NodeOverlays kept in step with the DRANodeOverlays (with --karpenter-node-overlays):
one per DRANodeOverlay whose devices a DeviceClass with an extended resource counts, so
Karpenter's scheduling simulation gives the instance types the overlay covers that capacity.

The core decides (`core.node_overlays.derive`); this module holds what it needs (the
DeviceClasses and our NodeOverlays, both watched) and writes: server-side apply of each desired
NodeOverlay whose spec differs, delete of ours that nothing desires. Each NodeOverlay is owned by
its DRANodeOverlay, so the garbage collector removes it with the DRANodeOverlay even while we
are not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from ..core.node_overlays import LABEL_SOURCE, PLURAL_PATH, CountingClass, counting_class, derive
from ..core.render import LABEL_MANAGED_BY
from ..core.versions import EXTENDED
from . import metrics
from .api import ApiError, Conflict, NotFound, Rejected
from .world import World

log = logging.getLogger("dra_kwok.node_overlays")

DEVICE_CLASSES_PATH = "/apis/resource.k8s.io/v1/deviceclasses"
NODE_OVERLAYS_PATH = PLURAL_PATH
RETRY = 5.0  # seconds after a failed pass, doubling up to RETRY_MAX
RETRY_MAX = 120.0


class OverlayApi(Protocol):
    async def apply(
        self, path: str, name: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> dict[str, Any]: ...

    async def delete(self, path: str, name: str, uid: str | None = None) -> bool: ...


def _held(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a NodeOverlay we compare with the desired one: spec, our labels, the owner."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    owners = tuple((o.get("kind"), o.get("name"), o.get("uid")) for o in meta.get("ownerReferences") or [])
    spec = obj.get("spec") or {}
    return (
        repr(sorted((spec.get("capacity") or {}).items())),
        repr(spec.get("requirements") or []),
        spec.get("weight"),
        tuple(sorted(labels.items())),
        owners,
    )


class NodeOverlayWriter:
    """Holds the DeviceClasses and our NodeOverlays, and makes the latter what the overlays want."""

    def __init__(self, world: World, api: OverlayApi) -> None:
        self.world = world
        self.api = api
        self.classes: dict[str, CountingClass] = {}
        # our NodeOverlays: name -> (what is compared, uid, the DRANodeOverlay it was derived from)
        self.held: dict[str, tuple[tuple[Any, ...], str, str]] = {}
        self.wanted = asyncio.Event()
        self.notes_said: set[str] = set()
        self.absent_said = False
        self.conflicts_said: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    @property
    def selector(self) -> str:
        return f"{LABEL_MANAGED_BY}={self.world.settings.managed_by}"

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="node-overlays")
        self.kick()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def kick(self) -> None:
        self.wanted.set()

    # --- events --------------------------------------------------------------------------------
    def on_device_class(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if event_type == "DELETED":
            changed = self.classes.pop(name, None) is not None
        else:
            cls = counting_class(obj, self.world.target.has(EXTENDED))
            changed = self.classes.get(name) != cls
            self.classes[name] = cls
        if changed:
            self.kick()

    def missing_classes(self, present: Any, since: float) -> list[str]:
        listed = set(present)
        return [name for name in self.classes if name not in listed]

    def on_node_overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if event_type == "DELETED":
            if self.held.pop(name, None) is not None:
                self.kick()  # deleted by somebody else while still desired: made again
            return
        held = (_held(obj), str(meta.get("uid") or ""), str((meta.get("labels") or {}).get(LABEL_SOURCE) or ""))
        if self.held.get(name) != held:
            self.held[name] = held
            self.kick()
        self.absent_said = False  # served (again)

    def missing_node_overlays(self, present: Any, since: float) -> list[str]:
        listed = set(present)
        return [name for name in self.held if name not in listed]

    # --- decisions and writes ------------------------------------------------------------------
    def desired(self) -> dict[str, dict[str, Any]]:
        """name -> manifest, for every DRANodeOverlay with a valid spec (its last good one)."""
        out: dict[str, dict[str, Any]] = {}
        classes = list(self.classes.values())
        for state in self.world.overlays.values():
            if state.rule is None:
                continue
            derived, notes = derive(state.rule, state.uid, classes)
            for note in notes:
                if note not in self.notes_said:
                    self.notes_said.add(note)
                    log.warning("DRANodeOverlay %s: %s", state.name, note)
            if derived is not None:
                out[derived.name] = derived.manifest(LABEL_MANAGED_BY, self.world.settings.managed_by)
        return out

    async def _run(self) -> None:
        failures = 0
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            try:
                done = await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("keeping Karpenter NodeOverlays failed")
                done = False
            if done:
                failures = 0
                continue
            # Tried again later; sooner when the NodeOverlays' Reflector sees a change (kick).
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wanted.wait(), min(RETRY_MAX, RETRY * 2 ** (failures - 1)))
            self.wanted.set()

    def _kept(self, name: str) -> bool:
        """A NodeOverlay nothing desires, kept because its DRANodeOverlay exists but has not had a
        valid spec since we started (after a restart with an invalid edit): we do not know what it
        last said, so what it said before stays, as its slices do."""
        state = self.world.overlays.get(self.held[name][2])
        return state is not None and state.rule is None

    async def sync(self) -> bool:
        """One pass; False when something is to be tried again."""
        desired = self.desired()
        kept = [n for n in self.held if n not in desired and self._kept(n)]
        metrics.NODE_OVERLAYS.set(len(desired) + len(kept))
        ok = True
        manager = self.world.settings.field_manager
        for name, manifest in desired.items():
            held = self.held.get(name)
            if held is not None and held[0] == _held(manifest):
                continue
            try:
                # Not forced: a NodeOverlay of this name that another installation (or a person)
                # keeps is left to them.
                await self.api.apply(PLURAL_PATH, name, manifest, manager, force=False)
            except NotFound:
                self._absent()
                return False
            except Conflict as exc:
                metrics.NODE_OVERLAY_WRITES.labels(result="conflict").inc()
                if name not in self.conflicts_said:
                    self.conflicts_said.add(name)
                    log.warning(
                        "NodeOverlay %s is kept by another field manager, left as it is: %s; fix: delete it, or "
                        "turn karpenter.nodeOverlays off in the other installation",
                        name,
                        exc.message,
                    )
                continue
            except Rejected as exc:
                # The content itself is refused (Karpenter's CRD rules): sending it again cannot help;
                # the next change of the DRANodeOverlay or a DeviceClass tries again.
                metrics.NODE_OVERLAY_WRITES.labels(result="rejected").inc()
                log.error("NodeOverlay %s: refused by the apiserver, not written: %s", name, exc.message)
                continue
            except ApiError as exc:
                metrics.NODE_OVERLAY_WRITES.labels(result="error").inc()
                log.error("NodeOverlay %s: not written: %s; again later", name, exc)
                ok = False
                continue
            metrics.NODE_OVERLAY_WRITES.labels(result="applied").inc()
            log.info(
                "NodeOverlay %s applied: capacity %s for instance types matching %s",
                name,
                manifest["spec"]["capacity"],
                manifest["spec"]["requirements"],
            )
            # Recorded now, so the echo of our own write is not taken for somebody else's change.
            uid = self.held[name][1] if name in self.held else ""
            self.held[name] = (_held(manifest), uid, manifest["metadata"]["labels"][LABEL_SOURCE])
        for name in [n for n in self.held if n not in desired and n not in kept]:
            try:
                await self.api.delete(PLURAL_PATH, name, self.held[name][1] or None)
            except ApiError as exc:
                log.warning("NodeOverlay %s: not deleted: %s", name, exc)
                ok = False
                continue
            metrics.NODE_OVERLAY_WRITES.labels(result="deleted").inc()
            log.info("NodeOverlay %s deleted: no DRANodeOverlay derives it any more", name)
            self.held.pop(name, None)
        return ok

    def _absent(self) -> None:
        if not self.absent_said:
            self.absent_said = True
            log.error(
                "Karpenter's NodeOverlay API (%s) is not served: no NodeOverlay is derived for Karpenter; fix: "
                "install Karpenter's CRDs (karpenter.sh_nodeoverlays.yaml), or turn this off "
                "(chart: karpenter.nodeOverlays.enabled=false; flag --karpenter-node-overlays)",
                PLURAL_PATH,
            )
