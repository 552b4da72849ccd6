"""Wires the watches to the World, and runs the reconciler, status writer and resync loop.

Nodes and our ResourceSlices, the kinds that scale with the cluster, are watched by the lean
`watch.Reflector` (a fraction of kopf's CPU and memory per event); the ConfigMap and the
DRANodeOverlays by kopf, used only with `on.event` handlers, which write nothing onto the watched
objects (no finalizers, no annotations): Nodes are never modified. Before any watch starts, the
startup handler lists everything once, so the first reconciliation sees the whole cluster and a
restart converges (deleting slices of vanished nodes, creating missing ones) without duplicates;
the node and slice watches continue from that listing's resourceVersion.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import REGISTRY, generate_latest

from ..core.models import OVERLAY_GROUP, OVERLAY_PLURAL, OVERLAY_VERSION
from ..core.render import LABEL_MANAGED_BY
from ..core.selectors import requirements_match
from ..core.status import overlay_status, same_status
from . import metrics
from .api import NODES_PATH, OVERLAYS_PATH, SLICES_PATH, ApiError, KubeApi, load_api_client
from .reconciler import Reconciler
from .settings import Settings
from .watch import Reflector
from .world import World

log = logging.getLogger("dra_kwok.controller")
COMPONENT = "dra-kwok-driver"
STATUS_MAX_DELAY = 10.0  # seconds an overlay status may lag behind while the queue is busy


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.world = World(settings)
        self.api: KubeApi | None = None
        self.reconciler: Reconciler | None = None
        self.ready = False
        self.tasks: list[asyncio.Task[None]] = []
        self.runners: list[web.AppRunner] = []
        self.status_version = -1
        self.watches: list[Reflector] = []
        self.mapping_failures_reported: frozenset[str] = frozenset()  # mappings a RenderFailed Event named
        self.relisting: asyncio.Task[None] | None = None
        self.relist_at = 0.0
        self.first_listing: dict[str, float] = {}  # kind -> end of kopf's first listing (moving)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        await self._serve()
        client = await load_api_client(s.kubeconfig, s.concurrency + 2)  # and the two watches
        self.api = KubeApi(client, s.concurrency)
        await self._initial_sync()
        self.reconciler = Reconciler(self.world, self.api, s.workers)
        self.reconciler.start()
        self.reconciler.mark(self.world.all_nodes())
        self.tasks += [asyncio.create_task(w.run(), name=f"watch-{w.kind}") for w in self.watches]
        self.tasks += [
            asyncio.create_task(self._status_loop(), name="overlay-status"),
            asyncio.create_task(self._resync_loop(), name="resync"),
        ]
        self.ready = True
        log.info(
            "started: %d KWOK nodes, %d overlays, %d managed slices, ConfigMap %s/%s %s",
            len(self.world.nodes),
            len(self.world.overlays),
            len(self.world.slice_node),
            s.configmap_namespace,
            s.configmap_name,
            "found" if self.world.config.present else "absent (no fallback mappings)",
        )

    async def stop(self) -> None:
        self.ready = False
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.api is not None:
            await self.api.close()
        for r in self.runners:
            await r.cleanup()

    async def _initial_sync(self) -> None:
        """List everything once, before any watch, so the first plans see the whole cluster."""
        assert self.api is not None
        s = self.settings
        self.watches = [
            Reflector(self.api, "node", NODES_PATH, self.on_node, functools.partial(self.world.missing, "node")),
            Reflector(
                self.api,
                "slice",
                SLICES_PATH,
                self.on_slice,
                functools.partial(self.world.missing, "slice"),
                f"{LABEL_MANAGED_BY}={s.managed_by}",
            ),
        ]
        for watch in self.watches:
            await watch.list()
        try:
            async for page, _ in self.api.list_pages(OVERLAYS_PATH):
                for obj in page:
                    self._overlay_event(None, obj)
        except ApiError as exc:
            if not exc.not_found:
                raise
            log.warning("the DRANodeOverlay CRD is not installed: overlays are ignored (install crds/)")
        path = f"/api/v1/namespaces/{s.configmap_namespace}/configmaps/{s.configmap_name}"
        try:
            cm = await self.api.request("GET", path, verb="get")
        except ApiError as exc:
            if not exc.not_found:
                raise
            self.world.on_configmap("DELETED", {})
        else:
            self._configmap_event(None, cm)
        metrics.MANAGED_NODES.set(len(self.world.nodes))
        metrics.MANAGED_SLICES.set(len(self.world.slice_node))

    # --- watch events --------------------------------------------------------------------------
    def _mark(self, nodes: list[str]) -> None:
        if nodes and self.reconciler is not None:
            self.reconciler.mark(nodes)

    def _watch_event(self, kind: str, event_type: str | None) -> None:
        """For the kinds kopf watches (the ConfigMap, overlays). kopf re-lists after a watch gap
        (410 Gone once the apiserver has restarted, or after a long disconnection) with events of
        type None, which report the objects that exist, never those deleted during the gap: soon
        after one, check the API for what is gone. The first listing of each kind (a burst of such
        events) follows our own initial sync: nothing missed."""
        if event_type is not None or not self.ready:
            return
        now = time.monotonic()
        first_listing_until = self.first_listing.get(kind)
        if first_listing_until is None or now < first_listing_until:
            self.first_listing[kind] = now + 5.0
            return
        self.relist_at = now + 2.0  # once kopf's listing has flowed in
        if self.relisting is None or self.relisting.done():
            self.relisting = asyncio.create_task(self._relist_later(), name="relist")
            self.tasks.append(self.relisting)

    async def _relist_later(self) -> None:
        while (wait := self.relist_at - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        try:
            await self.relist()
        except ApiError as exc:
            log.warning("re-listing after a watch gap failed (tried again at the next gap): %s", exc)

    async def relist(self) -> None:
        """Forget the Nodes, slices, overlays and ConfigMap that the API no longer has."""
        assert self.api is not None
        s, world = self.settings, self.world
        since = time.monotonic()
        nodes, _ = await self.api.list_all(NODES_PATH)
        for name in world.missing("node", (n["metadata"]["name"] for n in nodes), since):
            log.info("node %s was deleted while a watch was down", name)
            self.on_node("DELETED", {"metadata": {"name": name}})
        since = time.monotonic()
        slices, _ = await self.api.list_all(SLICES_PATH, label_selector=f"{LABEL_MANAGED_BY}={s.managed_by}")
        for name in world.missing("slice", (i["metadata"]["name"] for i in slices), since):
            log.info("slice %s was deleted while a watch was down", name)
            self.on_slice("DELETED", {"metadata": {"name": name}})
        since = time.monotonic()
        try:
            overlays, _ = await self.api.list_all(OVERLAYS_PATH)
        except ApiError as exc:
            if not exc.not_found:
                raise
            overlays = []
        for name in world.missing("overlay", (o["metadata"]["name"] for o in overlays), since):
            log.info("DRANodeOverlay %s was deleted while a watch was down", name)
            self.on_overlay("DELETED", {"metadata": {"name": name}})
        since = time.monotonic()
        path = f"/api/v1/namespaces/{s.configmap_namespace}/configmaps/{s.configmap_name}"
        try:
            await self.api.request("GET", path, verb="get")
        except ApiError as exc:
            if not exc.not_found:
                raise
            if world.config.present and world.touched.get(("configmap", ""), 0.0) < since:
                meta = {"name": s.configmap_name, "namespace": s.configmap_namespace}
                self.on_configmap("DELETED", {"metadata": meta})

    def on_node(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A Node event from its Reflector (which lists again after a gap by itself)."""
        self._mark(self.world.on_node(event_type, obj))
        metrics.MANAGED_NODES.set(len(self.world.nodes))

    def on_slice(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """An event of one of our slices, from its Reflector."""
        self._mark(self.world.on_slice(event_type, obj))
        metrics.MANAGED_SLICES.set(len(self.world.slice_node))

    def on_configmap(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self._watch_event("configmap", event_type)
        self._configmap_event(event_type, obj)

    def _configmap_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        changed, dirty = self.world.on_configmap(event_type, obj)
        cfg = self.world.config
        if event_type == "DELETED":
            metrics.CONFIG_RELOADS.labels(source="configmap", result="deleted").inc()
        elif not cfg.valid and cfg.warned_version != cfg.resource_version:
            cfg.warned_version = cfg.resource_version
            metrics.CONFIG_RELOADS.labels(source="configmap", result="invalid").inc()
            errs = [str(i) for i in cfg.issues if i.is_error]
            kept = "the last valid configuration stays in force" if cfg.config else "no mapping is applied yet"
            log.error(
                "ConfigMap %s/%s is invalid (%s): %s",
                self.settings.configmap_namespace,
                self.settings.configmap_name,
                kept,
                "; ".join(errs),
            )
            self._event(obj, "Warning", "InvalidConfiguration", f"{len(errs)} error(s), {kept}: " + "; ".join(errs[:5]))
        elif changed:
            metrics.CONFIG_RELOADS.labels(source="configmap", result="loaded").inc()
            warns = [str(i) for i in cfg.issues if not i.is_error]
            for w in warns:
                log.warning("ConfigMap %s/%s: %s", self.settings.configmap_namespace, self.settings.configmap_name, w)
            if warns:
                self._event(obj, "Warning", "ConfigurationWarnings", "; ".join(warns[:5]))
            log.info("configuration loaded: %d mapping(s)", len(cfg.config.mappings) if cfg.config else 0)
        self._mark(dirty)

    def on_overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self._watch_event("overlay", event_type)
        self._overlay_event(event_type, obj)

    def _overlay_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
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
                self._event(obj, "Warning", "InvalidSpec", "; ".join(errs[:5]))
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
                self._event(obj, "Warning", "SpecWarnings", "; ".join(warns[:5]))
        if changed or dirty:
            self._mark(dirty)

    # --- status and events ---------------------------------------------------------------------
    async def _status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        written_at = 0.0
        while True:
            await asyncio.sleep(self.settings.status_interval)
            if self.world.version == self.status_version or self.api is None:
                continue
            busy = self.reconciler is not None and not self.reconciler.idle.is_set()
            if busy and loop.time() - written_at < STATUS_MAX_DELAY:
                continue  # conflicts are complete once the queue drains; under constant churn, write anyway
            written_at = loop.time()
            self.status_version = self.world.version
            try:
                await self._write_statuses()
            except ApiError as exc:
                log.warning("writing overlay status failed: %s", exc)
                self.status_version = -1

    async def _write_statuses(self) -> None:
        assert self.api is not None
        losses: dict[str, list[Any]] = {}
        for conflicts in self.world.conflicts.values():
            for c in conflicts:
                losses.setdefault(c.overlay, []).append(c)
        failures: dict[str, list[tuple[str, str]]] = {}
        mapping_failures: dict[str, list[tuple[str, str]]] = {}
        for node, (sources, problem) in self.world.render_failures.items():
            for source in sources:
                kind, _, name = source.partition("/")
                into = failures if kind == "overlay" else mapping_failures
                into.setdefault(name, []).append((node, problem))
        self._report_mapping_failures(mapping_failures)
        now = _now()
        for state in list(self.world.overlays.values()):
            matched = 0
            if state.rule is not None:
                reqs = state.rule.requirements
                matched = sum(1 for n in self.world.nodes.values() if requirements_match(reqs, n.labels))
            status = overlay_status(
                generation=state.generation,
                valid=state.valid,
                issues=state.issues,
                applied_generation=state.applied_generation if state.rule is not None else None,
                matched_nodes=matched,
                conflicts=losses.get(state.name, []),
                previous=state.status,
                now=now,
                render_failures=failures.get(state.name, ()),
            )
            if same_status(status, state.status):
                continue
            try:
                await self.api.merge_patch(f"{OVERLAYS_PATH}/{state.name}/status", {"status": status}, verb="status")
            except ApiError as exc:
                if exc.not_found:
                    continue
                raise
            state.status = status

    def _report_mapping_failures(self, failures: Mapping[str, list[tuple[str, str]]]) -> None:
        """A ConfigMap has no status: a Warning Event `RenderFailed` on it when a mapping starts
        failing to render for some node (once per new set of failing mappings, not per node)."""
        failing = frozenset(failures)
        new = failing - self.mapping_failures_reported
        self.mapping_failures_reported = failing
        if not new:
            return
        s = self.settings
        parts = []
        for name in sorted(new):
            node, problem = min(failures[name])
            parts.append(
                f"mapping {name}: cannot publish for {len(failures[name])} node(s), which keep what they had; "
                f"node {node}: {problem}"
            )
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": s.configmap_name, "namespace": s.configmap_namespace, "uid": self.world.config.uid},
        }
        self._event(cm, "Warning", "RenderFailed", "; ".join(parts))

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.api is None:
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace") or None,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        api = self.api

        async def post() -> None:
            try:
                await api.post(f"/api/v1/namespaces/{namespace}/events", body, verb="event")
            except ApiError as exc:
                log.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc)

        self.tasks.append(asyncio.create_task(post()))
        self.tasks = [t for t in self.tasks if not t.done()]

    async def _resync_loop(self) -> None:
        """Safety net: re-plan every node now and then; writes happen only where something differs."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            metrics.RESYNCS.inc()
            self._mark(self.world.all_nodes())

    # --- health and metrics --------------------------------------------------------------------
    async def _serve(self) -> None:
        s = self.settings
        if s.health_port:
            app = web.Application()
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            await self._start_app(app, s.health_port)
        if s.metrics_port:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            await self._start_app(app, s.metrics_port)

    async def _start_app(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.bind_address, port).start()
        self.runners.append(runner)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.Response(text="ready" if self.ready else "starting", status=200 if self.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": METRICS_CONTENT_TYPE})


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds, on every watch event, a deep copy of the object (its "essence") and diffs it
    against the last handled one, for change handlers (`on.create/update/...`). We register event
    handlers only, so that work, a deep copy of every node and every slice with all its devices
    on each event, was thrown away: skip it. A change handler would need kopf's storage back."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """kopf handlers: event handlers only, so nothing is ever written onto the watched objects."""
    registry = kopf.OperatorRegistry()
    s = controller.settings

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry does not get kopf's default login handlers; same order as ours:
        # an explicit kubeconfig, else the in-cluster service account, else $KUBECONFIG/~/.kube.
        if s.kubeconfig:
            info: kopf.ConnectionInfo | None = kopf.login_with_kubeconfig(**kwargs)
            return info
        info = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events, on our own objects only
        settings.scanning.disabled = True  # no CRD/namespace scanning: fewer permissions
        settings.persistence.diffbase_storage = _NoDiffBase()  # no change handlers: no essences to diff
        # Memory at thousands of nodes: kopf lists each kind in one response unless chunked, and a
        # per-object worker holds the object's last event body until it has been idle this long.
        settings.watching.chunk_size = 500
        settings.queueing.idle_timeout = 0.5
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.networking.request_timeout = 60
        settings.watching.field_selectors["configmaps"] = f"metadata.name={s.configmap_name}"
        await controller.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await controller.stop()

    @kopf.on.event(OVERLAY_GROUP, OVERLAY_VERSION, OVERLAY_PLURAL, registry=registry)
    async def overlay_event(event: Mapping[str, Any], **_: Any) -> None:
        controller.on_overlay(event.get("type"), event.get("object") or {})

    @kopf.on.event("v1", "configmaps", registry=registry)
    async def configmap_event(event: Mapping[str, Any], **_: Any) -> None:
        obj = event.get("object") or {}
        if (obj.get("metadata") or {}).get("name") == s.configmap_name:
            controller.on_configmap(event.get("type"), obj)

    return registry


async def run(settings: Settings, stop_flag: asyncio.Event | None = None) -> None:
    """Run the controller until stopped (SIGINT/SIGTERM, or `stop_flag`)."""
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it
    controller = Controller(settings)
    registry = build_registry(controller)
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=False,
        namespaces=[settings.configmap_namespace],
        stop_flag=stop_flag,
    )
