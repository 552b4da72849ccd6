"""A lean list+watch for Nodes, our ResourceSlices and the DRANodeOverlays.

kopf spends ~1 ms of CPU per watch event on machinery for change handlers, per-object workers and
memories that event handlers do not need, and lists every kind again after our own initial sync.
This parses each event and hands it to the handler: the same event types, in the same order.

After a watch gap the apiserver may answer 410 Gone: the collection is listed again and every
object the World holds but the listing lacks (and nothing has reported since the listing began) is
reported DELETED, so a deletion during the gap is not missed. The World, not this watch, says what
is held: it also knows the slices we have just written, whose watch events may not have come yet.

A kind that may not be served (the DRANodeOverlay CRD, deleted or not installed yet) is `optional`:
while the API answers 404 its objects count as deleted and it is listed again after 2, 4, 8, then
every 10 seconds, so a CRD created later takes effect without a restart.

`relisted`, if given, is called after every complete listing but the Reflector's first: the
listing again after 410 Gone, after an optional kind's 404, once the kind is served again. It is
called once the listing's objects (type None) and the DELETED events for what is missing have been
delivered; its exceptions are logged, as the handler's are. It says "this kind's watch had a gap,
now closed by a listing", to check what another watch may have missed in it (kopf's, of the
ConfigMap, never reports a deletion it missed during a gap). A listing that fails part way, or
answers 404, is not complete: an optional kind not served at its first listing has its first
complete listing when it is served.

The API is anything with `KubeApi`'s `list_pages` and `stream` (`WatchApi`), so the Reflector can
be tested against a fake.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson

from . import metrics
from .api import NotFound, Pace, api_error

log = logging.getLogger("dra_kwok.watch")

# (event type, object) -> True when the event changed what is held (a paced watch then reads on
# without pausing: see `Pace`); None or False when it changed nothing or the handler does not say.
Handler = Callable[[str | None, Mapping[str, Any]], bool | None]
# (names listed, monotonic time the listing began) -> names held but gone: `World.missing`
Missing = Callable[[Iterable[str], float], list[str]]
SERVER_TIMEOUT = 600  # seconds the apiserver keeps one watch open
MAX_BACKOFF = 5.0  # a reconnect attempt costs nothing; after an outage, resume within seconds
ABSENT_POLL = 2.0  # seconds before listing again an optional kind the API does not serve,
ABSENT_POLL_MAX = 10.0  # doubling up to this: a CRD created later applies within seconds, cheaply


class WatchContent(Protocol):
    """The body of a streaming response, read as chunks as they come (aiohttp's StreamReader)."""

    def iter_any(self) -> AsyncIterator[bytes]: ...


class WatchResponse(Protocol):
    """What a watch reads of a streaming response: aiohttp.ClientResponse satisfies it."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def content(self) -> WatchContent: ...

    async def read(self) -> bytes: ...


class WatchApi(Protocol):
    """The two calls the Reflector makes: `KubeApi` satisfies it, and so can a test's fake."""

    def list_pages(
        self, path: str, label_selector: str | None = None, limit: int = 500, metadata_only: bool = False
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]: ...

    def stream(
        self,
        path: str,
        query: Mapping[str, str],
        timeout: float,
        metadata_only: bool = False,
        pace: Pace | None = None,
    ) -> AbstractAsyncContextManager[WatchResponse]: ...


class Gone(Exception):
    """The resourceVersion is too old: list again."""


class NotServed(Exception):
    """The API answered 404 for the collection: its CRD is gone. List again (as absent)."""


class Reflector:
    """Lists, then watches from the listing's resourceVersion, delivering every event to `handler`."""

    def __init__(
        self,
        api: WatchApi,
        kind: str,
        path: str,
        handler: Handler,
        missing: Missing,
        label_selector: str | None = None,
        optional: bool = False,
        *,
        relisted: Callable[[], None] | None = None,
        metadata_only: bool = False,
        pace: float = 0.0,
    ):
        self.api = api
        self.kind = kind
        self.path = path
        self.handler = handler
        self.missing = missing
        self.label_selector = label_selector
        self.optional = optional
        self.relisted = relisted  # called after each complete listing but the first
        self.metadata_only = metadata_only  # objects as PartialObjectMetadata: for kinds read by metadata alone
        # the watch body read at most every `pace` seconds while events change nothing (`Pace`); 0: as they come
        self.pace = Pace(pace) if pace > 0 else None
        self.listed_once = False  # a listing has completed: any later one follows a gap
        self.absent = False  # an optional kind the API answered 404 for at the last listing
        self.absent_poll = ABSENT_POLL
        self.resource_version = ""
        self.events_counter = metrics.WATCH_EVENTS.labels(kind=kind)  # looked up once, not per event
        self.reads_counter = metrics.WATCH_READS.labels(kind=kind)

    def _deliver(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """The handler told of one event; whether it changed what is held."""
        try:
            return bool(self.handler(event_type, obj))
        except Exception:  # a bug in one event must not stop the watch
            log.exception("handling a %s event for %s %s failed", event_type, self.kind, _name(obj))
            return True  # not known to have changed nothing

    async def list(self) -> None:
        """Lists the collection a page at a time (events of type None, as an initial listing), and
        reports DELETED for what was held but is not listed."""
        since = time.monotonic()
        listed: list[str] = []
        version = ""
        try:
            pages = self.api.list_pages(self.path, label_selector=self.label_selector, metadata_only=self.metadata_only)
            async for items, page_version in pages:
                version = page_version
                for obj in items:
                    listed.append(_name(obj))
                    self._deliver(None, obj)
        except NotFound:
            if not self.optional:
                raise
            self._not_served(since)
            return
        if self.absent:
            self.absent, self.absent_poll = False, ABSENT_POLL
            log.warning("%s: the API serves %s again; its objects take effect", self.kind, self.path)
        for name in self.missing(listed, since):
            log.info("%s %s was deleted while the watch was down", self.kind, name)
            self._deliver("DELETED", {"metadata": {"name": name}})
        self.resource_version = version  # only once complete: a failed listing is started again
        if self.listed_once and self.relisted is not None:
            try:
                self.relisted()
            except Exception:  # a bug there must not stop the watch, as in the handler
                log.exception("the relisted callback of %s failed", self.kind)
        self.listed_once = True

    def _not_served(self, since: float) -> None:
        """The kind is not served (404): everything held of it is gone; said once per transition."""
        if not self.absent:
            self.absent = True
            log.warning(
                "%s: the API does not serve %s (its CRD is not installed or was deleted): every %s counts "
                "as absent until it is served again (checked again within %.0fs)",
                self.kind,
                self.path,
                self.kind,
                ABSENT_POLL_MAX,
            )
        for name in self.missing([], since):
            self._deliver("DELETED", {"metadata": {"name": name}})
        self.resource_version = ""

    async def run(self) -> None:
        """Watches from the last listing on, for ever; lists again after 410 Gone."""
        failures = 0
        while True:
            try:
                if not self.resource_version:
                    await self.list()
                if self.absent:
                    await asyncio.sleep(self.absent_poll)
                    self.absent_poll = min(ABSENT_POLL_MAX, 2 * self.absent_poll)
                    continue
                await self._watch()
                failures = 0
            except Gone:
                log.info("watch of %s expired (410 Gone): listing again", self.kind)
                self.resource_version = ""
            except NotServed:
                self.resource_version = ""  # the next listing tells whether it is gone for good
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 4)) * (0.8 + 0.4 * random.random())
                log.warning("watch of %s failed (%s); again in %.1fs", self.kind, exc, delay)
                await asyncio.sleep(delay)

    async def _watch(self) -> None:
        query = {
            "watch": "1",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(SERVER_TIMEOUT),
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        async with self.api.stream(
            self.path, query, timeout=SERVER_TIMEOUT + 60, metadata_only=self.metadata_only, pace=self.pace
        ) as resp:
            if resp.status == 410:
                raise Gone()
            if resp.status == 404 and self.optional:
                raise NotServed()
            if resp.status != 200:
                raise api_error(resp.status, resp.reason or "", (await resp.read()).decode()[:500])
            buffer = b""
            pace = self.pace
            async for chunk in resp.content.iter_any():
                self.reads_counter.inc()
                buffer += chunk
                if b"\n" not in chunk:
                    if pace is not None:
                        pace.read_on = True  # the rest of a long event: read it at once
                    continue
                *lines, buffer = buffer.split(b"\n")
                changed = False
                for line in lines:
                    if line.strip() and self._event(orjson.loads(line)):
                        changed = True
                if pace is not None:
                    pace.read_on = changed

    def _event(self, event: Mapping[str, Any]) -> bool:
        """One watch event handled; whether it changed what is held."""
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise api_error(int(obj.get("code") or 500), str(obj.get("reason") or ""), str(obj.get("message") or ""))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if event_type == "BOOKMARK" or event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return False
        self.events_counter.inc()
        return self._deliver(event_type, obj)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
