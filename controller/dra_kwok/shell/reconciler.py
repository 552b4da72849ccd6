"""The work queue: dirty nodes in, each decided by the core (`decide`), its writes carried out,
and what became of them recorded in the World.

A node is queued at most once; a node that becomes dirty while being reconciled is queued again
when its worker finishes, so the last event always wins. Each node has a write budget (a token
bucket) so that a concurrent writer fighting over a slice cannot drive us into a hot loop, and
failing nodes back off exponentially.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.decide import Outcome, Simulated, WriteResult, decide
from ..core.plan import Apply, Delete, NodePlan, ObservedSlice, PoolPlan
from ..core.published import dropped_fields
from ..core.render import LABEL_MANAGED_BY, content_of
from . import metrics
from .api import SLICES_PATH, ApiError, Conflict, NotFound, Rejected
from .world import World

log = logging.getLogger("dra_kwok.reconciler")

BUCKET_SIZE = 10.0  # write rounds a node may use in a burst
BUCKET_REFILL = 1.0  # rounds per second
MAX_BACKOFF = 300.0
WAKE_SLACK = 0.05  # seconds after a delay or fault ends before the node is decided again


class SliceApi(Protocol):
    """The part of `KubeApi` the reconciler writes through (a fake stands in for it in unit tests)."""

    async def apply(
        self, path: str, name: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> dict[str, Any]: ...

    async def delete(self, path: str, name: str, uid: str | None = None) -> bool: ...

    async def get(self, path: str, verb: str = "get") -> Any: ...


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
    def __init__(self, world: World, api: SliceApi, workers: int) -> None:
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
        self.delays: dict[str, float] = {}  # node -> its publishDelay, until first published
        self.wakes: dict[str, tuple[float, asyncio.TimerHandle]] = {}  # node -> when time alone changes it
        self.faults_active: dict[str, int] = {}
        self.fault_problems_said: dict[str, tuple[str, ...]] = {}

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
        """One node: ask the core what to do (`decide`), record it, carry out its writes, record
        what became of them. Nothing here decides what a node should have."""
        world = self.world
        decision = decide(world.view(name), world.sources(), time.time())
        world.record(decision)
        self._simulated(name, decision.simulated)
        outcome = decision.outcome
        if outcome is Outcome.RENDER_FAILED:
            log.error("cannot render slices for node %s: %s", name, decision.error)
            metrics.RECONCILE_ERRORS.labels(reason="render").inc()
            metrics.RECONCILES.labels(result="error").inc()
            return  # nothing is written; a configuration change re-queues the node
        if outcome is Outcome.IN_SYNC:
            metrics.RECONCILES.labels(result="in_sync").inc()
            self._published(name, decision.simulated.withheld)
            return
        if outcome is Outcome.REJECTED:
            metrics.RECONCILES.labels(result="rejected").inc()
            return  # the same content again: not resent until the configuration or node changes
        if not self._take_token(name):
            metrics.RECONCILES.labels(result="throttled").inc()
            self._later(name, 1.0 / BUCKET_REFILL)
            return
        plan = decision.plan
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
        except Rejected as exc:
            # Rewriting would only bump the pool's generation again and again: keep what the
            # apiserver accepted, say why where users look, and wait for a change.
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(reason=f"api_{exc.status}").inc()
            log.error("writing slices for node %s failed: %s", name, exc)
            metrics.PUBLISH_PROBLEMS.labels(reason="rejected").inc()
            world.record_result(decision, WriteResult(refused=exc.message))
            return
        except ApiError as exc:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_ERRORS.labels(reason=f"api_{exc.status}").inc()
            level = logging.WARNING if isinstance(exc, Conflict) or exc.status >= 500 else logging.ERROR
            log.log(level, "writing slices for node %s failed: %s", name, exc)
            self._backoff(name)
            return
        metrics.RECONCILES.labels(result="written").inc()
        self.budgets[name].failures = 0
        if dropped:
            metrics.PUBLISH_PROBLEMS.labels(reason="fields_dropped").inc()
        world.record_result(decision, WriteResult(dropped=tuple(dropped)))
        # Every write of the plan is done: the node has what was decided (no second pass needed).
        self._published(name, decision.simulated.withheld)

    def _simulated(self, name: str, sim: Simulated) -> None:
        """Carry out what the simulation decided beyond writes: wake the node when time alone
        changes it, say faults that cannot be applied (once per change), count active faults."""
        if sim.wake_at is not None:
            self._wake(name, sim.wake_at)
        if self.fault_problems_said.get(name, ()) != sim.fault_problems:
            for problem in sim.fault_problems:
                log.warning("node %s: %s", name, problem)
            metrics.FAULT_PROBLEMS.inc(len(sim.fault_problems))
            if sim.fault_problems:
                self.fault_problems_said[name] = sim.fault_problems
            else:
                self.fault_problems_said.pop(name, None)
        if self.faults_active.get(name, 0) != sim.faults_active:
            if sim.faults_active:
                self.faults_active[name] = sim.faults_active
            else:
                self.faults_active.pop(name, None)
            metrics.FAULTS_ACTIVE.set(sum(self.faults_active.values()))
        if sim.publish_delay is not None:
            self.delays[name] = sim.publish_delay

    def _wake(self, name: str, at: float) -> None:
        held = self.wakes.get(name)
        if held is not None and held[0] <= at and not held[1].cancelled():
            return  # an earlier wake-up is due: the decision then asks for the next one
        if held is not None:
            held[1].cancel()
        delay = max(0.0, at - time.time()) + WAKE_SLACK
        self.wakes[name] = (at, asyncio.get_running_loop().call_later(delay, self._woken, name))

    def _woken(self, name: str) -> None:
        self.wakes.pop(name, None)
        self.mark([name])

    def _published(self, name: str, withheld: bool) -> None:
        if withheld:
            return  # a pool waits for its publishDelay: not published yet
        latency = self.world.take_publish_latency(name)
        if latency is not None:
            metrics.PUBLISH_LATENCY.observe(latency)
            delay = self.delays.pop(name, None)
            created = self.world.created(name)
            if delay is not None and created is not None:
                metrics.PUBLISH_DELAY.labels(kind="configured").observe(delay)
                metrics.PUBLISH_DELAY.labels(kind="actual").observe(max(0.0, time.time() - created))
        if not self.world.knows(name):
            self.budgets.pop(name, None)
            self.delays.pop(name, None)
            held = self.wakes.pop(name, None)
            if held is not None:
                held[1].cancel()

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
        except Conflict:
            await self._not_foreign(op.name)
            result = await self.api.apply(SLICES_PATH, op.name, op.manifest, manager)
        metrics.API_WRITES.labels(verb="apply").inc()
        sent = content_of(op.manifest["spec"])
        observed = ObservedSlice.from_api(result, known=(sent, op.content_print))
        self.world.record_applied(observed, op.content_print)
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
            current = await self.api.get(f"{SLICES_PATH}/{name}")
        except NotFound:
            return
        owner = ((current.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY)
        if owner is not None and owner != self.world.settings.managed_by:
            raise ForeignSlice(name, owner)

    async def _delete(self, op: Delete) -> None:
        with contextlib.suppress(Conflict):  # the UID precondition failed: a newer object has the name
            await self.api.delete(SLICES_PATH, op.name, op.uid)
        metrics.API_WRITES.labels(verb="delete").inc()
        self.world.forget_slice(op.name)
