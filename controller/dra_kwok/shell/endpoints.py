"""The HTTP endpoints (/healthz, /readyz, /metrics) and the probe that clears /readyz: when a
permission was refused or the apiserver went quiet, ask it again (see health.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import REGISTRY, generate_latest

from .api import ApiError
from .health import PROBE_INTERVAL, ApiHealth, Permission
from .settings import Settings

log = logging.getLogger("dra_kwok.endpoints")
REVIEWS_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class ReviewApi(Protocol):
    async def post(self, path: str, body: Mapping[str, Any], verb: str = "create") -> Any: ...


class Endpoints:
    """Serves health and metrics from the start (before the API client exists: /readyz says
    "starting"), and probes the apiserver when health asks for it. `granted` is called when a
    refused permission is granted again, so failed writes need not wait out their backoff."""

    def __init__(self, settings: Settings, health: ApiHealth, granted: Callable[[], None]) -> None:
        self.settings = settings
        self.health = health
        self.granted = granted
        self.api: ReviewApi | None = None
        self.runners: list[web.AppRunner] = []
        self.probing: asyncio.Task[None] | None = None

    async def serve(self) -> None:
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

    async def stop(self) -> None:
        for r in self.runners:
            await r.cleanup()

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
            self.probing = asyncio.create_task(self.probe(), name="health-idle-check")
            await asyncio.wait({self.probing}, timeout=2.0)
        problem = self.health.problem
        return web.Response(text=f"not ready: {problem}" if problem else "ready", status=503 if problem else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if self.health.needs_probe and (self.probing is None or self.probing.done()):
                self.probing = asyncio.create_task(self.probe(), name="health-probe-once")
                await asyncio.wait({self.probing})

    async def probe(self) -> None:
        """Ask the apiserver whether each refused permission is granted now (any answer also
        shows the credentials work and the apiserver is reachable)."""
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
                answer = await self.api.post(REVIEWS_PATH, review, verb="review")
            except ApiError:
                return  # recorded by the API client: still not ready
            if ((answer or {}).get("status") or {}).get("allowed") and perm in self.health.forbidden:
                self.health.allowed(perm)
                granted = True
        if granted:
            self.granted()
