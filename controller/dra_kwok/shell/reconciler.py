"""The work queue: dirty nodes in, plans carried out, observed state updated from the responses.

A node is queued at most once; a node that becomes dirty while being reconciled is queued again
when its worker finishes, so the last event always wins. Each node has a write budget (a token
bucket) so that a concurrent writer fighting over a slice cannot drive us into a hot loop, and
failing nodes back off exponentially.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..core.plan import Apply, Delete, NodePlan, ObservedSlice, PoolPlan
from ..core.render import LABEL_MANAGED_BY, RenderError, content_of
from . import metrics
from .api import SLICES_PATH, ApiError, KubeApi
from .world import World

log = logging.getLogger("dra_kwok.reconciler")

BUCKET_SIZE = 10.0  # write rounds a node may use in a burst
BUCKET_REFILL = 1.0  # rounds per second
MAX_BACKOFF = 300.0


class ForeignSlice(Exception):
    """A slice we were about to apply carries another installation's managed-by label."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        super().__init__(f"slice {name} is managed by {owner!r}, another installation: left alone")


@dataclass(slots=True)
class _Budget:
    tokens: float
    stamp: float
    failures: int = 0


class Reconciler:
    def __init__(self, world: World, api: KubeApi, workers: int) -> None:
        self.world = world
        self.api = api
        self.workers = workers
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.running: set[str] = set()
        self.again: set[str] = set()
        self.budgets: dict[str, _Budget] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.idle = asyncio.Event()
        self.idle.set()
        self.foreign_warned: set[str] = set()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker(), name=f"reconcile-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def mark(self, nodes: Iterable[str]) -> None:
        for node in nodes:
            if node in self.running:
                self.again.add(node)
            elif node not in self.queued:
                self.queued.add(node)
                self.queue.put_nowait(node)
                self.idle.clear()
        metrics.QUEUE_DEPTH.set(len(self.queued))

    def _later(self, node: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.mark, [node])

    async def _worker(self) -> None:
        while True:
            node = await self.queue.get()
            self.queued.discard(node)
            self.running.add(node)
            metrics.QUEUE_DEPTH.set(len(self.queued))
            try:
                await self.reconcile(node)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the worker; the node is retried with backoff
                log.exception("unexpected error reconciling node %s", node)
                metrics.RECONCILE_ERRORS.labels(reason="internal").inc()
                self._backoff(node)
            finally:
                self.running.discard(node)
                if node in self.again:
                    self.again.discard(node)
                    self.mark([node])
                self.queue.task_done()
                if not self.queued and not self.running:
                    self.idle.set()

    async def reconcile(self, name: str) -> None:
        world = self.world
        try:
            desired = world.desired(name)
        except RenderError as exc:
            log.error("cannot render slices for node %s: %s", name, exc)
            metrics.RECONCILE_ERRORS.labels(reason="render").inc()
            metrics.RECONCILES.labels(result="error").inc()
            return  # nothing is written; a configuration change re-queues the node
        plan = world.plan(name, desired)
        if plan.in_sync:
            metrics.RECONCILES.labels(result="in_sync").inc()
            self._published(name)
            return
        if not self._take_token(name):
            metrics.RECONCILES.labels(result="throttled").inc()
            self._later(name, 1.0 / BUCKET_REFILL)
            return
        try:
            await self.execute(plan)
        except ForeignSlice as exc:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(reason="foreign").inc()
            if exc.name not in self.foreign_warned:
                self.foreign_warned.add(exc.name)
                log.warning("node %s: %s", name, exc)
            self._backoff(name)
            return
        except ApiError as exc:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(reason=f"api_{exc.status}").inc()
            level = logging.WARNING if exc.conflict or exc.status >= 500 else logging.ERROR
            log.log(level, "writing slices for node %s failed: %s", name, exc)
            self._backoff(name)
            return
        metrics.RECONCILES.labels(result="written").inc()
        self.budgets[name].failures = 0
        # Re-plan once: if the writes converged, this finds the node in sync and records latency.
        self.mark([name])

    def _published(self, name: str) -> None:
        node = self.world.nodes.get(name)
        if node is not None and node.latency_pending:
            node.latency_pending = False
            metrics.PUBLISH_LATENCY.observe(time.monotonic() - node.seen_at)
        if name not in self.world.nodes and name not in self.world.slices:
            self.budgets.pop(name, None)

    def _take_token(self, name: str) -> bool:
        now = time.monotonic()
        b = self.budgets.get(name)
        if b is None:
            b = self.budgets[name] = _Budget(BUCKET_SIZE, now)
        b.tokens = min(BUCKET_SIZE, b.tokens + (now - b.stamp) * BUCKET_REFILL)
        b.stamp = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def _backoff(self, name: str) -> None:
        b = self.budgets.setdefault(name, _Budget(BUCKET_SIZE, time.monotonic()))
        b.failures += 1
        self._later(name, min(MAX_BACKOFF, 0.5 * 2 ** min(b.failures, 10)))

    async def execute(self, plan: NodePlan) -> None:
        await asyncio.gather(*(self._execute_pool(p) for p in plan.pools))

    async def _execute_pool(self, pool: PoolPlan) -> None:
        for d in pool.pre_deletes:
            await self._delete(d)
        await asyncio.gather(*(self._apply(a) for a in pool.applies))
        await asyncio.gather(*(self._delete(d) for d in pool.deletes))

    async def _apply(self, op: Apply) -> None:
        manager = self.world.settings.field_manager
        try:
            # Unforced first: a 409 means another manager owns fields we set (someone edited the
            # slice, or another installation publishes it), which is rare and worth a look.
            result = await self.api.apply(SLICES_PATH, op.name, op.manifest, manager, force=False)
        except ApiError as exc:
            if not exc.conflict:
                raise
            await self._not_foreign(op.name)
            result = await self.api.apply(SLICES_PATH, op.name, op.manifest, manager)
        metrics.API_WRITES.labels(verb="apply").inc()
        observed = ObservedSlice.from_api(result, known=(content_of(op.manifest["spec"]), op.content_print))
        self.world.written[op.name] = (observed.resource_version, op.content_print)
        self.world.record_slice(observed, ours=True)

    async def _not_foreign(self, name: str) -> None:
        """A conflicting slice may be another installation's: DRANodeOverlays are cluster-wide, so
        installations with other managed-by values publish for the same nodes under the same names.
        A forced apply would take it over, and the other installation (whose watch would see it go)
        would take it back, forever. The first to publish keeps it; anyone else's edit is repaired."""
        try:
            current = await self.api.request("GET", f"{SLICES_PATH}/{name}", verb="get")
        except ApiError as exc:
            if exc.not_found:
                return
            raise
        owner = ((current.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY)
        if owner is not None and owner != self.world.settings.managed_by:
            raise ForeignSlice(name, owner)

    async def _delete(self, op: Delete) -> None:
        try:
            await self.api.delete(SLICES_PATH, op.name, op.uid)
        except ApiError as exc:
            if not exc.conflict:  # 409: the UID precondition failed, a newer object has the name
                raise
        metrics.API_WRITES.labels(verb="delete").inc()
        self.world.forget_slice(op.name)
