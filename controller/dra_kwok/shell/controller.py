"""Wires the pieces together and runs them; each job is a module of its own:

- `startup`: the listing of everything before any watch, so the first decisions see the cluster;
- `watch.Reflector`: Nodes, our ResourceSlices and the DRANodeOverlays, list+watch (a fraction of
  kopf's CPU and memory per event; and the overlay CRD may come and go without stopping us);
- kopf: the ConfigMap, with an `on.event` handler only, which writes nothing onto the watched
  object (no finalizers, no annotations): Nodes are never modified;
- `world.World`: what is known, updated from the events, handing out views for the decision;
- `loading`: a ConfigMap or overlay event into the World, and what came of it into logs and Events;
- `reconciler`: per dirty node, `core.decide.decide()`, then the writes, then the results recorded;
- `status_writer`: overlay status and ConfigMap Events from what the World recorded;
- `endpoints`: /healthz, /readyz, /metrics and the probe that clears /readyz; `events`: Events.

After a watch gap a Reflector lists again (and reports what was deleted meanwhile); kopf does not
report a ConfigMap deleted during a gap, so each such re-listing also asks whether it still exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from kopf._core.engines.peering import Identity  # kopf exports the type only privately

from . import metrics
from .api import ApiError, KubeApi, NotFound, load_api_client
from .claims import CLAIMS_PATH, ClaimWriter
from .endpoints import Endpoints
from .events import EventPoster
from .health import ApiHealth
from .leader import LeaderElector
from .loading import Loader
from .node_overlays import DEVICE_CLASSES_PATH, NODE_OVERLAYS_PATH, NodeOverlayWriter
from .reconciler import Reconciler
from .settings import Settings
from .startup import configmap_path, list_everything, make_reflectors
from .status_writer import StatusWriter
from .version_probe import learn_target
from .watch import Reflector
from .world import World

log = logging.getLogger("dra_kwok.controller")


class Controller:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.world = World(settings)
        self.events = EventPoster()
        self.loader = Loader(self.world, self.events)
        self.health = ApiHealth(settings.unready_after)
        self.endpoints = Endpoints(settings, self.health, lambda: self._mark(self.world.all_nodes()))
        self.api: KubeApi | None = None
        self.target_learned = False  # the World's target is the apiserver's, not the default
        self.reconciler: Reconciler | None = None
        self.ready = False
        self.tasks: list[asyncio.Task[None]] = []
        self.watches: list[Reflector] = []
        self.checking_configmap: asyncio.Task[None] | None = None
        self.claims: ClaimWriter | None = None  # with --simulate-claims
        self.node_overlays: NodeOverlayWriter | None = None  # with --karpenter-node-overlays
        self.elector: LeaderElector | None = None  # with --leader-elect
        self.writer_tasks: list[asyncio.Task[None]] = []  # the leader's
        self.campaign: asyncio.Task[None] | None = None  # the elector's task

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        # kopf retries a failed start (the apiserver unreachable at the initial listing): the
        # listeners and the client are made once, so a retry neither binds the ports again nor
        # leaks a connection pool; /readyz says "starting" meanwhile.
        if not self.endpoints.runners:
            await self.endpoints.serve()
        if self.api is None:
            # and a connection per watch: nodes, slices, overlays, then claims and the two of NodeOverlays
            watches = 3 + int(s.simulate_claims) + 2 * int(s.karpenter_node_overlays)
            client = await load_api_client(s.kubeconfig, s.concurrency + watches)
            self.api = KubeApi(client, s.concurrency, self.health)
            self.events.api = self.endpoints.api = self.api
        if not self.target_learned:
            # Learned once: a start retried after a later step keeps it, one retried because the
            # apiserver could not be reached for it (a pod started before the network) learns it.
            self.world.target = await learn_target(self.api, s.kubernetes_version, s.feature_gates)
            self.target_learned = True
        self.watches = make_reflectors(
            self.api, self.world, self.on_node, self.on_slice, self.on_overlay, self.on_relisted
        )
        # The listing builds the World's long-lived objects by the hundred thousand (measured at
        # 10,000 nodes: 6.3 s of CPU with the collector on, 4 s off): no collection while it runs,
        # then what it built is frozen out of every later collection, so collections triggered by
        # watch events scan only what came after.
        gc.disable()
        try:
            await list_everything(self.api, self.world, self.watches, self.on_configmap_listed)
        finally:
            gc.freeze()
            gc.enable()
        if s.simulate_claims:
            # Claims are listed after the nodes' sources, before any node is decided: deciding a
            # node tells the writer which claims are ours (World.on_claim_pools).
            if self.claims is None:
                self.claims = ClaimWriter(self.world, self.api)
                self.world.on_claim_pools = self.claims.pools_changed
            claims = Reflector(self.api, "claim", CLAIMS_PATH, self.claims.on_claim, self.claims.missing)
            await claims.list()
            self.watches.append(claims)
        if s.karpenter_node_overlays:
            await self._list_node_overlays()
        self.tasks += [asyncio.create_task(w.run(), name=f"watch-{w.kind}") for w in self.watches]
        self.tasks.append(asyncio.create_task(self.endpoints.probe_loop(), name="health-probe"))
        if s.leader_elect:
            # Everything above runs on every replica (a standby's World is current); the writers
            # run on the leader only, and every write is refused unless it holds the Lease.
            if self.elector is None:
                self.elector = LeaderElector(
                    self.api,
                    s.leader_election_namespace or s.configmap_namespace,
                    s.leader_election_id or s.managed_by,
                    s.leader_identity or f"{socket.gethostname()}_{os.getpid()}",
                    s.lease_duration,
                    s.renew_deadline,
                    s.retry_period,
                )
                self.api.may_write = self.events.may_post = self.elector.may_write
            self.campaign = asyncio.create_task(self.elector.run(self._lead, self._stand_by), name="leader")
            self.tasks.append(self.campaign)
        else:
            await self._lead()
        self.ready = True
        self.health.started = True
        self.health.report()
        log.info(
            "started: %d KWOK nodes, %d overlays, %d managed slices, ConfigMap %s/%s %s%s",
            len(self.world.nodes),
            len(self.world.overlays),
            len(self.world.slice_node),
            s.configmap_namespace,
            s.configmap_name,
            "found" if self.world.config.present else "absent (no fallback mappings)",
            "; leader election on: writing once the Lease is ours" if s.leader_elect else "",
        )

    async def _lead(self) -> None:
        """Start the writers: every node decided (writes only where the cluster differs), the
        overlay status, the resync, the claim and NodeOverlay writers."""
        assert self.api is not None
        s = self.settings
        self.reconciler = Reconciler(self.world, self.api, s.workers)
        self.reconciler.start()
        self.reconciler.mark(self.world.all_nodes())
        reconciler = self.reconciler
        status = StatusWriter(self.world, self.api, self.events, s, lambda: not reconciler.idle.is_set())
        self.writer_tasks = [
            asyncio.create_task(status.run(), name="overlay-status"),
            asyncio.create_task(self._resync_loop(), name="resync"),
        ]
        if self.claims is not None:
            self.claims.start()
        if self.node_overlays is not None:
            self.node_overlays.start()

    async def _stand_by(self) -> None:
        """The Lease is lost: writes are already refused (`may_write`); stop the writers."""
        for t in self.writer_tasks:
            t.cancel()
        await asyncio.gather(*self.writer_tasks, return_exceptions=True)
        self.writer_tasks = []
        if self.reconciler is not None:
            reconciler, self.reconciler = self.reconciler, None
            await reconciler.stop()
        if self.claims is not None:
            await self.claims.stop()
        if self.node_overlays is not None:
            await self.node_overlays.stop()

    async def stop(self) -> None:
        self.ready = False
        # The leader refuses writes, stops its writers, then gives the Lease up: a standby takes
        # over at once, with nothing of ours still being written.
        leading = self.elector.fence() if self.elector is not None else False
        if self.campaign is not None:  # no renewal racing the release below
            self.campaign.cancel()
            await asyncio.gather(self.campaign, return_exceptions=True)
        await self._stand_by()
        if leading and self.elector is not None:
            await self.elector.release()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.events.stop()
        if self.api is not None:
            await self.api.close()
        await self.endpoints.stop()

    async def _list_node_overlays(self) -> None:
        """The DeviceClasses and our NodeOverlays, listed before the first pass of the writer."""
        assert self.api is not None
        if self.node_overlays is None:
            self.node_overlays = NodeOverlayWriter(self.world, self.api)
        writer = self.node_overlays
        reflectors = [
            Reflector(self.api, "deviceclass", DEVICE_CLASSES_PATH, writer.on_device_class, writer.missing_classes),
            Reflector(
                self.api,
                "nodeoverlay",
                NODE_OVERLAYS_PATH,
                writer.on_node_overlay,
                writer.missing_node_overlays,
                writer.selector,
                optional=True,
                relisted=writer.kick,
            ),
        ]
        for reflector in reflectors:
            await reflector.list()
        self.watches += reflectors

    async def _resync_loop(self) -> None:
        """Safety net: re-plan every node now and then; writes happen only where something differs.
        Content the apiserver rejected is tried once more then (an admission policy or a feature
        gate may have changed meanwhile): every few minutes, never in a loop."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            metrics.RESYNCS.inc()
            self.world.clear_rejections()
            self._mark(self.world.all_nodes())

    # --- events --------------------------------------------------------------------------------
    def _mark(self, nodes: list[str]) -> None:
        if nodes and self.reconciler is not None:
            self.reconciler.mark(nodes)

    def on_node(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """A Node event from its Reflector; whether it left a node to reconcile (a heartbeat does not)."""
        nodes = self.world.on_node(event_type, obj)
        self._mark(nodes)
        metrics.MANAGED_NODES.set(len(self.world.nodes))
        return bool(nodes)

    def on_slice(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """An event of one of our slices, from its Reflector."""
        self._mark(self.world.on_slice(event_type, obj))
        metrics.MANAGED_SLICES.set(len(self.world.slice_node))

    def on_overlay(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self._mark(self.loader.overlay(event_type, obj))
        if self.node_overlays is not None:
            self.node_overlays.kick()

    async def on_configmap(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A ConfigMap event from kopf."""
        self._mark(await self.loader.configmap(event_type, obj))

    async def on_configmap_listed(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        await self.on_configmap(event_type, obj)

    def on_relisted(self) -> None:
        """A Reflector listed again after a watch gap, which kopf's ConfigMap watch went through
        too: ask the API whether the ConfigMap still exists (kopf's own re-listing reports only
        objects that exist, never one deleted during the gap)."""
        if self.ready and (self.checking_configmap is None or self.checking_configmap.done()):
            self.checking_configmap = asyncio.create_task(self._check_configmap(), name="configmap-check")
            self.tasks.append(self.checking_configmap)
            self.tasks = [t for t in self.tasks if not t.done()]

    async def _check_configmap(self) -> None:
        assert self.api is not None
        s = self.settings
        since = time.monotonic()
        try:
            await self.api.get(configmap_path(s))
        except NotFound:
            if self.world.config_gone_since(since):
                meta = {"name": s.configmap_name, "namespace": s.configmap_namespace}
                await self.on_configmap("DELETED", {"metadata": meta})
        except ApiError as exc:
            log.warning("checking the ConfigMap after a watch gap failed (checked again at the next gap): %s", exc)


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
