"""Lease-based leader election (with --leader-elect): of the replicas, one leads and writes; the
others watch, keep their World current and stand by.

The leader renews the Lease every `retry_period`; once it has not renewed for `renew_deadline`
its writes are refused (`may_write`, checked by the API writer before every write) and its
writers are stopped, so it has stopped writing before a standby may take the Lease, which
happens `lease_duration` after the standby last saw it change. It then campaigns again, as a
standby, in the same process (an apiserver outage longer than the lease costs no restart). On
shutdown the leader gives the Lease up, so a standby takes over at once (rolling updates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..core.lease import LeaseRecord, held_spec, may_acquire, released_spec
from . import metrics
from .api import ApiError, Conflict, KubeApi, NotFound

log = logging.getLogger("dra_kwok.leader")

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


def leases_path(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError(
                f"leader election needs retry period ({retry_period}s) < renew deadline ({renew_deadline}s) "
                f"< lease duration ({lease_duration}s)"
            )
        self.api = api
        self.path = leases_path(namespace)
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.leading = False
        self.last_renew = 0.0  # when (clock) the last successful renewal was sent
        self.record: LeaseRecord | None = None
        self.seen_since = 0.0  # when the record was first seen in its current version
        self.holder_said = ""

    def may_write(self) -> bool:
        """Whether writes may go out now: leading, and renewed within the renew deadline."""
        return self.leading and self.clock() - self.last_renew < self.renew_deadline

    async def run(self, on_started: Callable[[], Awaitable[None]], on_stopped: Callable[[], Awaitable[None]]) -> None:
        """Campaign, lead, and after losing the Lease campaign again; for ever."""
        metrics.LEADER.set(0)
        while True:
            await self._acquire()
            log.info("leading: holding Lease %s as %s", self.name, self.identity)
            metrics.LEADER.set(1)
            metrics.LEADER_TRANSITIONS.inc()
            await on_started()
            await self._renew_until_lost()
            self.leading = False
            metrics.LEADER.set(0)
            await on_stopped()

    def fence(self) -> bool:
        """Refuse writes from now on (shutdown); whether this replica was leading."""
        was, self.leading = self.leading, False
        metrics.LEADER.set(0)
        return was

    async def release(self) -> None:
        """Give the Lease up, after `fence` and the writers' stop (shutdown): a standby may take
        it at once."""
        if self.record is None or self.record.holder != self.identity:
            return
        body = self._lease(released_spec(self.record, time.time()), self.record.resource_version)
        try:
            await asyncio.wait_for(self._put(body), timeout=2.0)
            log.info("gave up Lease %s", self.name)
        except (TimeoutError, ApiError) as exc:
            log.warning("could not give up Lease %s (a standby takes it once it expires): %s", self.name, exc)

    # --- campaigning ---------------------------------------------------------------------------
    async def _acquire(self) -> None:
        while True:
            started = self.clock()
            try:
                if await self._try_once():
                    return
            except ApiError as exc:
                log.warning("leader election: reading or taking Lease %s failed: %s", self.name, exc)
            await asyncio.sleep(max(0.0, self.retry_period - (self.clock() - started)))

    async def _observe(self) -> LeaseRecord | None:
        try:
            obj = await self.api.request("GET", f"{self.path}/{self.name}", verb="lease", fenced=False)
        except NotFound:
            self.record = None
            return None
        record = LeaseRecord.from_api(obj)
        if self.record is None or record.version != self.record.version:
            self.seen_since = self.clock()
        self.record = record
        return record

    async def _try_once(self) -> bool:
        record = await self._observe()
        if not may_acquire(record, self.identity, self.seen_since, self.clock()):
            if record is not None and record.holder != self.holder_said:
                self.holder_said = record.holder
                log.info("standing by: Lease %s is held by %s", self.name, record.holder)
            return False
        sent = self.clock()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": held_spec(record, self.identity, self.lease_duration, time.time()),
        }
        try:
            if record is None:
                obj = await self.api.request("POST", self.path, body=body, verb="lease", fenced=False)
            else:
                body["metadata"]["resourceVersion"] = record.resource_version
                obj = await self._put(body)
        except Conflict:
            return False  # somebody else was faster (or renewed): observe again
        self.record = LeaseRecord.from_api(obj)
        self.seen_since = self.last_renew = sent
        self.leading = True
        return True

    # --- leading -------------------------------------------------------------------------------
    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                remaining = self.last_renew + self.renew_deadline - self.clock()
                if remaining <= 0:
                    log.error(
                        "lost Lease %s: not renewed for %.0fs (the apiserver unreachable?): writes stopped; "
                        "standing by",
                        self.name,
                        self.renew_deadline,
                    )
                    return
                try:
                    if await asyncio.wait_for(self._renew(), timeout=remaining):
                        break
                    log.error("lost Lease %s: another replica holds it now; writes stopped; standing by", self.name)
                    return
                except (TimeoutError, ApiError) as exc:
                    log.warning("renewing Lease %s failed (%s); again", self.name, exc)
                    await asyncio.sleep(min(self.retry_period / 2, max(0.0, remaining)))

    async def _renew(self) -> bool:
        """One renewal; False when the Lease is not ours any more."""
        assert self.record is not None
        sent = self.clock()
        spec = held_spec(self.record, self.identity, self.lease_duration, time.time())
        try:
            obj = await self._put(self._lease(spec, self.record.resource_version))
        except Conflict:
            record = await self._observe()  # changed meanwhile: still ours (our own write) or not?
            if record is not None and record.holder == self.identity:
                return await self._renew()
            return False
        self.record = LeaseRecord.from_api(obj)
        self.last_renew = sent
        return True

    def _lease(self, spec: Mapping[str, Any], resource_version: str = "") -> dict[str, Any]:
        """The Lease to send; with `resource_version`, an update that fails (409) if it changed."""
        metadata: dict[str, Any] = {"name": self.name}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": dict(spec)}

    async def _put(self, body: Mapping[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = await self.api.request(
            "PUT", f"{self.path}/{self.name}", body=body, verb="lease", fenced=False
        )
        return obj
