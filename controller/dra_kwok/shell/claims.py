"""ResourceClaims of our simulated pools: watched (with --simulate-claims), each decided by the
core (`claims.decide_claim`) and our status.devices entries applied under our field manager on
the claim's status subresource, so other drivers' entries are left alone.

A claim is looked at when it changes, when a binding delay ends, and (for devices without
binding conditions, whose status a real driver writes after the pod lands) until its pod is
bound to the node: the pod is read, never watched, so the cost is one GET per such claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..core.claims import ClaimView, decide_claim, status_apply
from . import metrics
from .api import ApiError, NotFound, Rejected
from .world import World

log = logging.getLogger("dra_kwok.claims")

CLAIMS_PATH = "/apis/resource.k8s.io/v1/resourceclaims"
WORKERS = 4
POD_RETRY_FIRST = 0.5  # seconds until a pod not yet bound is read again, doubling
POD_RETRY_MAX = 10.0
WAKE_SLACK = 0.05


def claims_path(namespace: str) -> str:
    return f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"


class ClaimApi(Protocol):
    async def apply(
        self, path: str, name: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> dict[str, Any]: ...

    async def get(self, path: str, verb: str = "get") -> Any: ...


class ClaimWriter:
    """Holds the allocated claims that have devices of our simulated pools and writes their status."""

    def __init__(self, world: World, api: ClaimApi) -> None:
        self.world = world
        self.api = api
        self.claims: dict[str, ClaimView] = {}  # "namespace/name" -> the allocated claim as last seen
        self.by_pool: dict[str, set[str]] = {}  # pool name -> the claims with devices in it
        self.first_seen: dict[str, float] = {}  # allocation without a timestamp: when first seen allocated
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.pod_retry: dict[str, float] = {}
        self.wakes: dict[str, asyncio.TimerHandle] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.forbidden_said = False
        self.idle = asyncio.Event()
        self.idle.set()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker(), name=f"claims-{i}") for i in range(WORKERS)]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for h in self.wakes.values():
            h.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- events --------------------------------------------------------------------------------
    def on_claim(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if event_type == "DELETED":
            self._forget(key)
            return
        view = ClaimView.from_api(obj, self.first_seen.get(key))
        if not view.devices:
            self._forget(key)  # not allocated (or deallocated): the apiserver dropped its device status
            return
        if key not in self.first_seen and view.allocated_at is not None:
            self.first_seen[key] = view.allocated_at
        # Every allocated claim is held, ours or not yet known to be: a node decided later (at
        # startup, or a new overlay) may make it ours (`pools_changed`).
        self._unindex(key)
        self.claims[key] = view
        for pool in {d.pool for d in view.devices}:
            self.by_pool.setdefault(pool, set()).add(key)
        metrics.CLAIMS_HELD.set(len(self.claims))
        if any(self.world.claim_pool(d.driver, d.pool) for d in view.devices):
            self.mark(key)

    def missing(self, present: Any, since: float) -> list[str]:
        listed = set(present)
        gone = [k for k in self.claims if k not in listed]
        for key in gone:
            self._forget(key)
        return []

    def pools_changed(self, pool: str) -> None:
        """The simulation of a node's pools changed (the World says so): its claims are looked at again."""
        for key in self.by_pool.get(pool, ()):
            self.mark(key)

    def _unindex(self, key: str) -> None:
        held = self.claims.get(key)
        for pool in {d.pool for d in held.devices} if held else ():
            keys = self.by_pool.get(pool)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_pool[pool]

    def _forget(self, key: str) -> None:
        self._unindex(key)
        if self.claims.pop(key, None) is not None:
            metrics.CLAIMS_HELD.set(len(self.claims))
        self.first_seen.pop(key, None)
        self.pod_retry.pop(key, None)
        handle = self.wakes.pop(key, None)
        if handle is not None:
            handle.cancel()

    def mark(self, key: str) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)
            self.idle.clear()

    def _later(self, key: str, delay: float) -> None:
        handle = self.wakes.pop(key, None)
        if handle is not None:
            handle.cancel()
        self.wakes[key] = asyncio.get_running_loop().call_later(delay, self._woken, key)

    def _woken(self, key: str) -> None:
        self.wakes.pop(key, None)
        if key in self.claims:
            self.mark(key)

    # --- work ----------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            try:
                await self.process(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error writing the status of claim %s", key)
            finally:
                self.queue.task_done()
                if not self.queued:
                    self.idle.set()

    async def process(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        lookup = self.world.claim_pool
        decision = decide_claim(claim, lookup, None, time.time())
        if decision.needs_pod:
            bound = await self._pod_bound(claim)
            decision = decide_claim(claim, lookup, bound, time.time())
            if not bound:
                delay = self.pod_retry.get(key, POD_RETRY_FIRST)
                self.pod_retry[key] = min(POD_RETRY_MAX, delay * 2)
                self._later(key, delay)
        for problem in decision.problems:
            log.warning("claim %s: %s", key, problem)
        if decision.wake_at is not None:
            self._later(key, max(0.0, decision.wake_at - time.time()) + WAKE_SLACK)
        if decision.entries is None:
            return
        try:
            await self.api.apply(
                claims_path(claim.namespace),
                f"{claim.name}/status",
                status_apply(claim, decision.entries),
                self.world.settings.field_manager,
            )
        except NotFound:
            self._forget(key)
            return
        except Rejected as exc:
            # Deallocated meanwhile ("must be an allocated device"), or not allowed to write for
            # a driver (1.36+: resourceclaims/driver arbitrary-node:patch): the next event decides.
            metrics.CLAIM_STATUS_WRITES.labels(result="rejected").inc()
            if "resourceclaims/driver" in exc.message and not self.forbidden_said:
                self.forbidden_said = True
                log.error(
                    "claim %s: not allowed to write status.devices: %s; fix: grant verb arbitrary-node:patch on "
                    "resourceclaims/driver for the drivers (chart: simulation.claims.enabled=true, "
                    "simulation.claims.drivers)",
                    key,
                    exc.message,
                )
            else:
                log.info("claim %s: status not written: %s", key, exc.message)
            return
        except ApiError as exc:
            metrics.CLAIM_STATUS_WRITES.labels(result="error").inc()
            log.warning("claim %s: writing status failed: %s; retrying", key, exc)
            self._later(key, 1.0)
            return
        metrics.CLAIM_STATUS_WRITES.labels(result="written").inc()
        if decision.bound:
            metrics.BINDING_CONDITIONS.labels(result="set").inc(decision.bound)
        if decision.failed:
            metrics.BINDING_CONDITIONS.labels(result="failed").inc(decision.failed)
        self.pod_retry.pop(key, None)

    async def _pod_bound(self, claim: ClaimView) -> bool:
        """Whether a pod reserving the claim is bound to the node of our devices."""
        nodes = {found[1] for d in claim.devices if (found := self.world.claim_pool(d.driver, d.pool))}
        for name, uid in claim.reserved_pods:
            try:
                pod = await self.api.get(f"/api/v1/namespaces/{claim.namespace}/pods/{name}")
            except NotFound:
                continue
            meta = pod.get("metadata") or {}
            if uid and meta.get("uid") != uid:
                continue
            if (pod.get("spec") or {}).get("nodeName") in nodes:
                return True
        return False
