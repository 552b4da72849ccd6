"""The only place that talks to the kube-apiserver for writes and listings.

The kubernetes client's async API (`kubernetes.aio`) loads the configuration: kubeconfig or
in-cluster account, TLS settings, credentials (refreshed by its hooks), proxy. Requests then go
over one lean aiohttp session (`Transport`) with that TLS context and those credentials, as raw
JSON: the client's per-request layers (parameter sanitising, its REST wrapper, its own JSON
encoding) and pydantic models of every slice would cost more CPU than the rest of the
controller. Concurrency is bounded by a semaphore (the client has no QPS limiter); 429 honours
Retry-After; 5xx and connection errors back off exponentially.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from yarl import URL

from .. import __version__
from . import metrics
from .health import ApiHealth

log = logging.getLogger("dra_kwok.api")

SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"
OVERLAYS_PATH = "/apis/test.karpenter.sh/v1alpha1/dranodeoverlays"
NODES_PATH = "/api/v1/nodes"
RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 8
CONNECTION_ERROR = "connection error"  # the reason of a request that got no answer
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=30)  # the client's default total
USER_AGENT = f"dra-kwok/{__version__}"


# The metadata-only representation (what controller-runtime's metadata informers ask for).
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class ApiError(Exception):
    """A non-retryable (or retried-out) API failure, with the server's status and message.
    `api_error()` makes the subclass for the status, so callers catch what they handle
    (`except NotFound`) instead of catching everything, checking the status and re-raising."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")


class NotFound(ApiError):
    """404: the object (or, for a collection, its CRD) does not exist."""


class Conflict(ApiError):
    """409: another field manager owns fields we set, or a precondition (UID) failed."""


class Rejected(ApiError):
    """400 or 422: the apiserver refuses the content itself; sending it again cannot help."""


class NotLeading(ApiError):
    """A write refused before it was sent: this replica does not hold the leader Lease (any more)."""

    def __init__(self) -> None:
        super().__init__(0, "NotLeading", "not the leader (the Lease is not renewed): writes are stopped")


_BY_STATUS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 400: Rejected, 422: Rejected}


def api_error(status: int, reason: str, message: str) -> ApiError:
    """The ApiError subclass for `status` (ApiError itself for any other status)."""
    return _BY_STATUS.get(status, ApiError)(status, reason, message)


async def load_api_client(kubeconfig: str | None, pool_size: int) -> aio_client.ApiClient:
    """An ApiClient from a kubeconfig file, $KUBECONFIG, ~/.kube/config, or the in-cluster account."""
    configuration = aio_client.Configuration()
    try:
        await aio_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
    except aio_config.ConfigException:
        if kubeconfig:
            raise
        aio_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = None  # retries are ours: one policy, counted in metrics
    _env_proxy_once(configuration)
    return aio_client.ApiClient(configuration)


def _env_proxy_once(configuration: aio_client.Configuration) -> None:
    """The client's session trusts the environment, so aiohttp reads ~/.netrc (in a thread) and the
    proxy variables on every request. Credentials come from the kubeconfig; the proxy variables are
    read once here instead, by aiohttp's own rules (NO_PROXY included)."""
    configuration.client_session_kwargs = {"trust_env": False}
    if configuration.proxy:
        return
    try:
        proxy, auth = get_env_proxy_for_url(URL(configuration.host))
    except LookupError:
        return
    configuration.proxy = str(proxy)
    if auth is not None:
        configuration.proxy_headers = {"Proxy-Authorization": auth.encode()}


class Transport:
    """One aiohttp session to the apiserver with the kubernetes client's TLS context, proxy and
    credentials (asked for per request, so the client's refresh hooks, e.g. a rotated in-cluster
    token, still apply), and none of its per-request layers."""

    def __init__(self, configuration: aio_client.Configuration, ssl_context: ssl.SSLContext) -> None:
        self._configuration = configuration
        self._ssl = ssl_context  # built by the client's own rules: CA, client certificate, verify flags
        self._base = str(configuration.host).rstrip("/")
        self._server_hostname: str | None = configuration.tls_server_name or None
        self._proxy: str | None = configuration.proxy or None
        self._proxy_headers: Mapping[str, str] | None = configuration.proxy_headers or None
        self._pool_size = int(configuration.connection_pool_maxsize or 100)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str],
        data: bytes | None = None,
        timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,
    ) -> aiohttp.ClientResponse:
        """The response, its body unread: the caller reads it (or streams it) and releases it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, ssl=self._ssl),
                trust_env=False,  # the proxy variables were read once (_env_proxy_once)
                read_bufsize=2**21,  # a watch event can be larger than aiohttp's default buffer
                headers={"User-Agent": USER_AGENT},
            )
        sent = dict(headers)
        bearer = (await self._configuration.auth_settings()).get("BearerToken")
        if bearer is not None and bearer["value"]:
            sent[bearer["key"]] = bearer["value"]
        return await self._session.request(
            method,
            self._base + path,
            params=query or None,
            headers=sent,
            data=data,
            timeout=timeout,
            proxy=self._proxy,
            proxy_headers=self._proxy_headers,
            server_hostname=self._server_hostname,
        )


class KubeApi:
    """Raw JSON requests with bounded concurrency and retries."""

    def __init__(self, api_client: aio_client.ApiClient, concurrency: int, health: ApiHealth | None = None) -> None:
        self._client = api_client
        self._transport = Transport(api_client.configuration, api_client.rest_client.ssl_context)
        self._inflight = asyncio.Semaphore(concurrency)
        self.health = health  # told every answer (and every connection error), for /readyz
        # With leader election: whether writes may go out now (checked before each one is sent).
        self.may_write: Callable[[], bool] | None = None

    async def close(self) -> None:
        await self._transport.close()
        await self._client.close()  # type: ignore[no-untyped-call]

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str = "",
        fenced: bool = True,
        accept: str = "application/json",
    ) -> Any:
        """Send one request; returns the decoded JSON body (None when empty). A write (`fenced`,
        anything but GET) raises NotLeading, unsent, while `may_write` says no: the leader Lease's
        own requests are the only unfenced writes."""
        if fenced and method != "GET":
            self._fence()
        headers = {"Accept": accept, "Content-Type": content_type}
        data = None if body is None else orjson.dumps(body)
        delay = 0.2
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1 and fenced and method != "GET":
                self._fence()  # the Lease may have been lost while this write waited to be retried
            status, reason, text, retry_after = await self._send(method, path, query, headers, data)
            metrics.API_REQUESTS.labels(verb=verb or method.lower(), code=str(status)).inc()
            if self.health is not None:
                self.health.record(
                    verb or method.lower(),
                    path,
                    0 if reason.startswith(CONNECTION_ERROR) else status,
                    _message(text) if status in (401, 403) else "",
                )
            if 200 <= status < 300:
                return orjson.loads(text) if text else None
            if status not in RETRYABLE or attempt == MAX_ATTEMPTS:
                raise api_error(status, reason, _message(text))
            wait = retry_after if status == 429 and retry_after is not None else delay
            wait = min(wait, 10.0) * (0.8 + 0.4 * random.random())
            log.debug("%s %s: %s %s, retrying in %.2fs", method, path, status, reason, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fence(self) -> None:
        if self.may_write is not None and not self.may_write():
            raise NotLeading()

    async def _send(
        self, method: str, path: str, query: Mapping[str, str] | None, headers: dict[str, str], data: bytes | None
    ) -> tuple[int, str, bytes, float | None]:
        async with self._inflight:
            try:
                resp = await self._transport.open(method, path, query, headers, data)
                try:
                    text = await resp.read()
                finally:
                    resp.release()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return 503, f"{CONNECTION_ERROR} ({type(exc).__name__})", str(exc).encode(), None
        retry = resp.headers.get("Retry-After")
        return resp.status, resp.reason or "", text, float(retry) if retry and retry.isdigit() else None

    async def list_all(
        self, path: str, label_selector: str | None = None, field_selector: str | None = None, limit: int = 500
    ) -> tuple[list[dict[str, Any]], str]:
        """Every item of a collection, paged; and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", path, query=query, verb="list")
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items, (page.get("metadata") or {}).get("resourceVersion", "")
            query["continue"] = cont

    async def list_pages(
        self, path: str, label_selector: str | None = None, limit: int = 500, metadata_only: bool = False
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """The items of a collection a page at a time, with the list's resourceVersion: only one
        page is held in memory, which at thousands of nodes (kilobytes of managedFields each) is
        most of a restart's peak RSS. `metadata_only`: each item's metadata alone
        (PartialObjectMetadata), all that the controller reads of a Node."""
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        accept = METADATA_LIST if metadata_only else "application/json"
        while True:
            page = await self.request("GET", path, query=query, verb="list", accept=accept)
            meta = page.get("metadata") or {}
            yield page.get("items") or [], meta.get("resourceVersion", "")
            cont = meta.get("continue")
            if not cont:
                return
            query["continue"] = cont

    @contextlib.asynccontextmanager
    async def stream(
        self,
        path: str,
        query: Mapping[str, str],
        timeout: float,
        metadata_only: bool = False,
        pace: Pace | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse | PacedResponse]:
        """A streaming GET (a watch), outside the concurrency limit: it stays open for minutes.
        `metadata_only`: events carry PartialObjectMetadata (a Node's status heartbeat is then a
        small event: no conditions, images or capacity to decode). `pace`: the body is read at
        that pace (`PacedResponse`)."""
        headers = {"Accept": METADATA if metadata_only else "application/json"}
        try:
            resp = await self._transport.open(
                "GET", path, query, headers, timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=30)
            )
        except (TimeoutError, aiohttp.ClientError, OSError):
            if self.health is not None:
                self.health.record("watch", path, 0)
            raise
        metrics.API_REQUESTS.labels(verb="watch", code=str(resp.status)).inc()
        if self.health is not None:
            self.health.record("watch", path, resp.status, resp.reason or "")
        try:
            yield PacedResponse(resp, pace) if pace is not None and pace.seconds > 0 else resp
        finally:
            resp.close()

    async def apply(
        self, path: str, name: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply under our field manager; with `force`, taking ownership of the fields
        we set from any other manager, else failing with 409 when another manager owns them."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            f"{path}/{name}",
            query={"fieldManager": field_manager, "force": "true" if force else "false"},
            body=manifest,
            content_type="application/apply-patch+yaml",
            verb="apply",
        )
        return result

    async def delete(self, path: str, name: str, uid: str | None = None) -> bool:
        """Delete with a UID precondition; False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}  # type: ignore[assignment]
        try:
            await self.request("DELETE", f"{path}/{name}", body=body, verb="delete")
        except NotFound:
            return False
        return True

    async def get(self, path: str, verb: str = "get") -> Any:
        return await self.request("GET", path, verb=verb)

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json", verb=verb)

    async def post(self, path: str, body: Mapping[str, Any], verb: str = "create") -> Any:
        return await self.request("POST", path, body=body, verb=verb)


def _message(body: bytes) -> str:
    """The Status message of an error body, or the start of the body as text."""
    text = body.decode(errors="replace")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text[:500]
    return str(data.get("message") or text)[:2000] if isinstance(data, dict) else text[:500]


# A read at least this large means the socket's receive buffer (128 KiB by Linux's default) was
# filling during the pause: pausing again would soon block the apiserver's sending to us, and a
# watcher that does not keep up delays the apiserver's delivery of the kind to every watcher.
BACKLOG_BYTES = 64 * 1024


@dataclass
class Pace:
    """How a watch body is read: at most once per `seconds`, except that the next read follows at
    once after a read that changed what is held (`read_on`, set by the reader: nodes created or
    relabelled in a burst are handled as they come) or after a large one (a backlog). Only reads
    that carried nothing to act on, such as status heartbeats, are followed by a pause."""

    seconds: float
    read_on: bool = False

    def pause_after(self, read_bytes: int) -> float:
        """Seconds to leave the socket unread after a read of `read_bytes` bytes."""
        if self.read_on or read_bytes >= BACKLOG_BYTES:
            return 0.0
        return self.seconds


class PacedContent:
    """A watch body read at a `Pace`. During a pause the socket is left unread (the transport
    paused), so the events that came meanwhile arrive as one socket read, one TLS decryption, one
    HTTP parse and one wake-up of the reader, instead of one of each per event: at thousands of
    heartbeating nodes, that fixed cost per read is most of the controller's idle CPU. An event
    waits at most `pace.seconds` longer; nothing is dropped (TCP holds it)."""

    def __init__(self, resp: aiohttp.ClientResponse, pace: Pace) -> None:
        self._resp = resp
        self._pace = pace

    async def iter_any(self) -> AsyncIterator[bytes]:
        connection = self._resp.connection
        transport = connection.transport if connection is not None else None
        async for chunk in self._resp.content.iter_any():
            yield chunk
            pause = self._pace.pause_after(len(chunk))  # asked after the reader handled the chunk
            if pause <= 0 or transport is None or transport.is_closing():
                continue
            transport.pause_reading()
            try:
                await asyncio.sleep(pause)
            finally:
                if not transport.is_closing():
                    transport.resume_reading()


class PacedResponse:
    """A streaming response whose body is a `PacedContent`; what a watch reads of it."""

    def __init__(self, resp: aiohttp.ClientResponse, pace: Pace) -> None:
        self._resp = resp
        self.content = PacedContent(resp, pace)

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def reason(self) -> str | None:
        return self._resp.reason

    async def read(self) -> bytes:
        return await self._resp.read()
