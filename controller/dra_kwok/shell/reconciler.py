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

from ..core.fingerprint import fingerprint
from ..core.plan import Apply, Delete, NodePlan, ObservedSlice, PoolPlan
from ..core.published import dropped_fields
from ..core.render import ANNOTATION_SOURCE, LABEL_MANAGED_BY, NodeSlices, RenderError, content_of
from ..core.status import FIELDS_DROPPED, PUBLISH_FAILED
from . import metrics
from .api import SLICES_PATH, ApiError, KubeApi
from .world import PublishProblem, World

log = logging.getLogger("dra_kwok.reconciler")

BUCKET_SIZE = 10.0  # write rounds a node may use in a burst
BUCKET_REFILL = 1.0  # rounds per second
MAX_BACKOFF = 300.0
REJECTED = frozenset({400, 422})  # the apiserver refuses the content itself: sending it again cannot help


def _content_key(desired: NodeSlices | None) -> frozenset[tuple[str, str]]:
    """What a node's desired slices contain, to recognise content the apiserver rejected."""
    if desired is None:
        return frozenset()
    return frozenset((s.name, s.content_print or fingerprint(s.content)) for pool in desired.pools for s in pool.slices)


def _sources(plan: NodePlan) -> tuple[str, ...]:
    found = {
        str(((a.manifest.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SOURCE) or "")
        for p in plan.pools
        for a in p.applies
    }
    return tuple(sorted(found - {""}))


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
            problem = world.publish_problems.get(name)
            if problem is not None and problem.reason == PUBLISH_FAILED:  # what is published is wanted again
                world.rejected.pop(name, None)
                world.set_publish_problem(name, None)
            return
        rejected = world.rejected.get(name)
        if rejected is not None:
            if rejected == _content_key(desired):
                metrics.RECONCILES.labels(result="rejected").inc()
                return  # the same content again: not resent until the configuration or node changes
            del world.rejected[name]
        if not self._take_token(name):
            metrics.RECONCILES.labels(result="throttled").inc()
            self._later(name, 1.0 / BUCKET_REFILL)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("node %s: writing (%s)", name, "; ".join(f"{p.driver}: {p.reason}" for p in plan.pools))
        try:
            dropped = await self.execute(plan)
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
            if exc.status in REJECTED:
                # Rewriting would only bump the pool's generation again and again: keep what the
                # apiserver accepted, say why where users look, and wait for a change.
                metrics.PUBLISH_PROBLEMS.labels(reason="rejected").inc()
                world.rejected[name] = _content_key(desired)
                world.set_publish_problem(name, PublishProblem(PUBLISH_FAILED, _sources(plan), exc.message))
                return
            self._backoff(name)
            return
        metrics.RECONCILES.labels(result="written").inc()
        self.budgets[name].failures = 0
        if dropped:
            metrics.PUBLISH_PROBLEMS.labels(reason="fields_dropped").inc()
        world.set_publish_problem(
            name, PublishProblem(FIELDS_DROPPED, _sources(plan), "; ".join(dropped)) if dropped else None
        )
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

    async def execute(self, plan: NodePlan) -> list[str]:
        """Carries out the plan; returns, per slice whose stored content lacks fields we sent,
        a line naming the slice and those fields."""
        found = await asyncio.gather(*(self._execute_pool(p) for p in plan.pools))
        return [line for lines in found for line in lines]

    async def _execute_pool(self, pool: PoolPlan) -> list[str]:
        for d in pool.pre_deletes:
            await self._delete(d)
        dropped = await asyncio.gather(*(self._apply(a) for a in pool.applies))
        await asyncio.gather(*(self._delete(d) for d in pool.deletes))
        return [line for line in dropped if line]

    async def _apply(self, op: Apply) -> str:
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
        sent = content_of(op.manifest["spec"])
        observed = ObservedSlice.from_api(result, known=(sent, op.content_print))
        self.world.written[op.name] = (observed.resource_version, op.content_print)
        self.world.record_slice(observed, ours=True)
        if observed.content_print == op.content_print:
            return ""
        dropped = dropped_fields(sent, content_of(result.get("spec") or {}))
        if not dropped:
            return ""
        log.warning("the apiserver dropped fields of slice %s: %s", op.name, ", ".join(dropped))
        return f"slice {op.name} lost {', '.join(dropped)}"

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
