"""Wires the watches to the World, and runs the reconciler, status writer and resync loop.

Nodes, our ResourceSlices and the DRANodeOverlays are watched by the lean `watch.Reflector` (a
fraction of kopf's CPU and memory per event; and the overlay CRD may come and go without stopping
us); the ConfigMap by kopf, used only with an `on.event` handler, which writes nothing onto the
watched object (no finalizers, no annotations): Nodes are never modified. Before any watch starts,
the startup handler lists everything once, so the first reconciliation sees the whole cluster and
a restart converges (deleting slices of vanished nodes and sources, creating missing ones) without
duplicates; the Reflectors continue from that listing's resourceVersion.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from kopf._core.engines.peering import Identity  # kopf exports the type only privately
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import REGISTRY, generate_latest

from ..core.config import load_config_text
from ..core.models import OVERLAY_GROUP, OVERLAY_KIND, OVERLAY_VERSION
from ..core.render import LABEL_MANAGED_BY
from ..core.selectors import requirements_match
from ..core.status import FIELDS_DROPPED, PUBLISH_FAILED, overlay_status, same_status, status_events
from ..core.versions import Target
from . import metrics
from .api import NODES_PATH, OVERLAYS_PATH, SLICES_PATH, ApiError, KubeApi, load_api_client
from .health import PROBE_INTERVAL, ApiHealth, Permission
from .reconciler import Reconciler
from .settings import Settings
from .version_probe import learn_target
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
        self.health = ApiHealth(settings.unready_after)
        self.probing: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.runners: list[web.AppRunner] = []
        self.status_version = -1
        self.watches: list[Reflector] = []
        # Event reason -> the mappings a Warning Event named as failing that way
        self.mapping_failures_reported: dict[str, frozenset[str]] = {}
        self.relisting: asyncio.Task[None] | None = None
        self.relist_at = 0.0
        self.first_listing_until: float | None = None  # end of kopf's first ConfigMap listing (moving)
        self.target: Target | None = None  # learned at the first start

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        # kopf retries a failed start (the apiserver unreachable at the initial listing): the
        # listeners and the client are made once, so a retry neither binds the ports again nor
        # leaks a connection pool; /readyz says "starting" meanwhile.
        if not self.runners:
            await self._serve()
        if self.api is None:
            client = await load_api_client(s.kubeconfig, s.concurrency + 3)  # and the three watches
            self.api = KubeApi(client, s.concurrency, self.health)
        if self.target is None:
            self.target = await learn_target(self.api, s.kubernetes_version, s.feature_gates)
            self.world.target = self.target
        await self._initial_sync()
        self.reconciler = Reconciler(self.world, self.api, s.workers)
        self.reconciler.start()
        self.reconciler.mark(self.world.all_nodes())
        self.tasks += [asyncio.create_task(w.run(), name=f"watch-{w.kind}") for w in self.watches]
        self.tasks += [
            asyncio.create_task(self._status_loop(), name="overlay-status"),
            asyncio.create_task(self._resync_loop(), name="resync"),
            asyncio.create_task(self._probe_loop(), name="health-probe"),
        ]
        self.ready = True
        self.health.started = True
        self.health.report()
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
            Reflector(
                self.api,
                "overlay",
                OVERLAYS_PATH,
                self.on_overlay,
                functools.partial(self.world.missing, "overlay"),
                optional=True,  # the CRD may be deleted, or installed after us
            ),
        ]
        for watch in self.watches:
            await watch.list()
        path = f"/api/v1/namespaces/{s.configmap_namespace}/configmaps/{s.configmap_name}"
        try:
            cm = await self.api.request("GET", path, verb="get")
        except ApiError as exc:
            if not exc.not_found:
                raise
            self.world.on_configmap("DELETED", {})
        else:
            await self._configmap_event(None, cm)
        metrics.MANAGED_NODES.set(len(self.world.nodes))
        metrics.MANAGED_SLICES.set(len(self.world.slice_node))

    # --- watch events --------------------------------------------------------------------------
    def _mark(self, nodes: list[str]) -> None:
        if nodes and self.reconciler is not None:
            self.reconciler.mark(nodes)

    def _watch_event(self, event_type: str | None) -> None:
        """For the ConfigMap, the one kind kopf watches. kopf re-lists after a watch gap (410 Gone
        once the apiserver has restarted, or after a long disconnection) with events of type None,
        which report an object that exists, never one deleted during the gap: soon after one,
        check the API for whether it is gone. The first listing (a burst of such events) follows
        our own initial sync: nothing missed."""
        if event_type is not None or not self.ready:
            return
        now = time.monotonic()
        if self.first_listing_until is None or now < self.first_listing_until:
            self.first_listing_until = now + 5.0
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
        """Forget the ConfigMap if the API no longer has it (the Reflectors do this for the rest)."""
        assert self.api is not None
        s, world = self.settings, self.world
        since = time.monotonic()
        path = f"/api/v1/namespaces/{s.configmap_namespace}/configmaps/{s.configmap_name}"
        try:
            await self.api.request("GET", path, verb="get")
        except ApiError as exc:
            if not exc.not_found:
                raise
            if world.config.present and world.touched.get(("configmap", ""), 0.0) < since:
                meta = {"name": s.configmap_name, "namespace": s.configmap_namespace}
                await self.on_configmap("DELETED", {"metadata": meta})

    def on_node(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A Node event from its Reflector (which lists again after a gap by itself)."""
        self._mark(self.world.on_node(event_type, obj))
        metrics.MANAGED_NODES.set(len(self.world.nodes))

    def on_slice(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """An event of one of our slices, from its Reflector."""
        self._mark(self.world.on_slice(event_type, obj))
        metrics.MANAGED_SLICES.set(len(self.world.slice_node))

    async def on_configmap(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self._watch_event(event_type)
        await self._configmap_event(event_type, obj)

    async def _configmap_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A ConfigMap event. Its text is parsed only when it changed, and in a worker thread: a
        1 MB config.yaml takes a while, during which nodes keep converging and probes answer."""
        loaded = None
        if event_type != "DELETED":
            text, issues, same = self.world.configmap_text(obj)
            if same:
                return
            config = None
            if text is not None:
                with metrics.CONFIG_PARSE.time():
                    config, issues = await asyncio.to_thread(load_config_text, text, self.world.target)
            loaded = (text, config, issues)
        was_invalid = self.world.config.present and not self.world.config.valid
        changed, dirty = self.world.on_configmap(event_type, obj, loaded)
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
            count = len(cfg.config.mappings) if cfg.config else 0
            log.info("configuration loaded: %d mapping(s)", count)
            if was_invalid:
                self._event(obj, "Normal", "ConfigurationValid", f"valid again: {count} mapping(s) in force")
        self._mark(dirty)

    def on_overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """An overlay event from its Reflector (which reports every overlay deleted while the CRD
        is not served)."""
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
            except Exception:  # a bug must not stop status and Events for good
                log.exception("computing overlay status failed")
                self.status_version = -1

    async def _write_statuses(self) -> None:
        assert self.api is not None
        world = self.world
        losses: dict[str, list[Any]] = {}
        for conflicts in world.conflicts.values():
            for c in conflicts:
                losses.setdefault(c.overlay, []).append(c)
        failures: dict[str, list[tuple[str, str]]] = {}
        mapping_failures: dict[str, list[tuple[str, str]]] = {}
        for node, (sources, problem) in world.render_failures.items():
            for source in sources:
                kind, _, name = source.partition("/")
                into = failures if kind == "overlay" else mapping_failures
                into.setdefault(name, []).append((node, problem))
        publish: dict[str, list[tuple[str, str, str]]] = {}
        mapping_publish: dict[str, dict[str, list[tuple[str, str]]]] = {}
        for node, p in world.publish_problems.items():
            for source in p.sources:
                kind, _, name = source.partition("/")
                if kind == "overlay":
                    publish.setdefault(name, []).append((node, p.reason, p.message))
                else:
                    mapping_publish.setdefault(p.reason, {}).setdefault(name, []).append((node, p.message))
        self._report_mapping_failures("RenderFailed", mapping_failures)
        for reason in (PUBLISH_FAILED, FIELDS_DROPPED):
            self._report_mapping_failures(reason, mapping_publish.get(reason, {}))
        now = _now()
        for state in list(world.overlays.values()):
            reqs = state.requirements
            matched = 0 if reqs is None else sum(1 for n in world.nodes.values() if requirements_match(reqs, n.labels))
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
                publish_failures=publish.get(state.name, ()),
            )
            if same_status(status, state.status):
                continue
            previous = state.status  # the watch event of the write below may replace it meanwhile
            try:
                await self.api.merge_patch(f"{OVERLAYS_PATH}/{state.name}/status", {"status": status}, verb="status")
            except ApiError as exc:
                if exc.not_found:
                    continue
                raise
            overlay = {
                "apiVersion": f"{OVERLAY_GROUP}/{OVERLAY_VERSION}",
                "kind": OVERLAY_KIND,
                "metadata": {"name": state.name, "uid": state.uid},
            }
            for type_, reason, message in status_events(previous, status):
                (log.warning if type_ == "Warning" else log.info)(
                    "DRANodeOverlay %s: %s: %s", state.name, reason, message
                )
                self._event(overlay, type_, reason, message)
            state.status = status

    def _report_mapping_failures(self, reason: str, failures: Mapping[str, list[tuple[str, str]]]) -> None:
        """A ConfigMap has no status: a Warning Event on it (RenderFailed, PublishFailed,
        FieldsDropped) when a mapping starts failing for some node (once per new set of failing
        mappings, not per node), and a Normal one when none fails that way any more."""
        failing = frozenset(failures)
        before = self.mapping_failures_reported.get(reason, frozenset())
        new = failing - before
        self.mapping_failures_reported[reason] = failing
        s = self.settings
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": s.configmap_name, "namespace": s.configmap_namespace, "uid": self.world.config.uid},
        }
        if before and not failing:
            self._event(cm, "Normal", f"{reason}Resolved", f"no mapping has {reason} any more")
        if not new:
            return
        what = {
            "RenderFailed": "cannot publish for",
            PUBLISH_FAILED: "the apiserver rejected the slices of",
            FIELDS_DROPPED: "the apiserver dropped fields of the slices of",
        }[reason]
        parts = []
        for name in sorted(new):
            node, problem = min(failures[name])
            count = len(failures[name])
            parts.append(f"mapping {name}: {what} {count} node(s), which keep what they had; node {node}: {problem}")
        log.warning("ConfigMap %s/%s: %s", s.configmap_namespace, s.configmap_name, "; ".join(parts))
        self._event(cm, "Warning", reason, "; ".join(parts))

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
        """Safety net: re-plan every node now and then; writes happen only where something differs.
        Content the apiserver rejected is tried once more then (an admission policy or a feature
        gate may have changed meanwhile): every few minutes, never in a loop."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            metrics.RESYNCS.inc()
            self.world.rejected.clear()
            self._mark(self.world.all_nodes())

    # --- health and metrics --------------------------------------------------------------------
    async def _serve(self) -> None:
        s = self.settings
        if s.health_port is not None:
            app = web.Application()
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            await self._start_app(app, s.health_port, "health")
        if s.metrics_port is not None:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            await self._start_app(app, s.metrics_port, "metrics")

    async def _start_app(self, app: web.Application, port: int, what: str) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.bind_address, port).start()
        self.runners.append(runner)
        for address in runner.addresses:  # the port really bound: port 0 takes any free one
            log.info("serving %s on port %d (%s)", what, address[1], address[0])

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready while the apiserver accepts our requests (see health.py); the body says why not."""
        if self.health.idle_check_due() and (self.probing is None or self.probing.done()):
            self.probing = asyncio.create_task(self._probe(), name="health-idle-check")
            await asyncio.wait({self.probing}, timeout=2.0)
        problem = self.health.problem
        return web.Response(text=f"not ready: {problem}" if problem else "ready", status=503 if problem else 200)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if self.health.needs_probe and (self.probing is None or self.probing.done()):
                self.probing = asyncio.create_task(self._probe(), name="health-probe-once")
                await asyncio.wait({self.probing})

    async def _probe(self) -> None:
        """Ask the apiserver whether each refused permission is granted now (any answer also
        shows the credentials work and the apiserver is reachable). When one is, every node is
        planned again, so writes that failed do not wait out their backoff."""
        if self.api is None:
            return
        checks = list(self.health.forbidden) or [Permission("list", "", "nodes")]
        granted = False
        for perm in checks:
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": perm.attributes()},
            }
            try:
                answer = await self.api.post(
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, verb="review"
                )
            except ApiError:
                return  # recorded by the API client: still not ready
            if ((answer or {}).get("status") or {}).get("allowed") and perm in self.health.forbidden:
                self.health.allowed(perm)
                granted = True
        if granted:
            self._mark(self.world.all_nodes())

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
        if info is not None:
            # kopf's own login names https://kubernetes.default.svc (cluster DNS); the kubernetes
            # client, which does our writes, uses the address the kubelet gives every pod: one
            # apiserver address for both.
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
            if host and port:
                server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
                info = dataclasses.replace(info, server=server)
            return info
        info = kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.on.startup(registry=registry, backoff=5.0)  # retried every 5 s if the initial listing fails
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

    @kopf.on.event("v1", "configmaps", registry=registry)
    async def configmap_event(event: Mapping[str, Any], **_: Any) -> None:
        obj = event.get("object") or {}
        if (obj.get("metadata") or {}).get("name") == s.configmap_name:
            await controller.on_configmap(event.get("type"), obj)

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
        # kopf's default identity asks getpass.getuser(), which fails for a uid that /etc/passwd
        # does not list (OpenShift runs pods as arbitrary uids): name it without a user name.
        identity=Identity(f"{socket.gethostname()}@{os.getpid()}"),
    )
