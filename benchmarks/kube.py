"""A minimal async Kubernetes client on aiohttp: the benchmark's load generator, observer and
"ceiling" (the fastest a client can publish the same slices, with nothing in between).

Deliberately tiny: JSON in, JSON out, one connection pool whose size is the concurrency, no
retries beyond what a benchmark needs (a 429 or 5xx is retried after a short pause and counted).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SLICES = "/apis/resource.k8s.io/v1/resourceslices"
NODES = "/api/v1/nodes"


class KubeError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: {status} {text[:300]}")


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None


def load_credentials(kubeconfig: Path) -> Credentials:
    """The current context's server and credentials (client certificate data or a bearer token)."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])["context"]
    cluster = next(c for c in cfg["clusters"] if c["name"] == ctx["cluster"])["cluster"]
    user = next(u for u in cfg["users"] if u["name"] == ctx["user"])["user"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    if "client-certificate-data" in user:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert"), Path(tmp, "key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            os.chmod(key, 0o600)
            context.load_cert_chain(cert, key)
    return Credentials(cluster["server"], context, user.get("token"))


class Kube:
    """`async with Kube(kubeconfig, concurrency) as kube`: requests with at most `concurrency` in flight."""

    def __init__(self, kubeconfig: Path, concurrency: int = 32, user_agent: str = "dra-kwok-bench") -> None:
        self.creds = load_credentials(kubeconfig)
        self.concurrency = concurrency
        self.user_agent = user_agent
        self.retries = 0
        self._sem = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.creds.token:
            headers["Authorization"] = f"Bearer {self.creds.token}"
        self._session = aiohttp.ClientSession(
            base_url=self.creds.server,
            headers=headers,
            connector=aiohttp.TCPConnector(limit=self.concurrency, ssl=self.creds.ssl_context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with Kube(...)`"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        ok_missing: bool = False,
    ) -> Any:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        reconnected = False
        for attempt in range(10):
            try:
                async with (
                    self._sem,
                    self.session.request(method, path, data=data, params=params, headers=headers) as resp,
                ):
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == 9:
                    raise
                self.retries += 1
                reconnected = True
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if 200 <= status < 300:
                return json.loads(text) if text else None
            if status == 404 and ok_missing:
                return None
            if status == 409 and method == "POST" and reconnected:
                return await self.request("GET", f"{path}/{body['metadata']['name']}")  # our first try went through
            if status in (429, 500, 502, 503, 504) and attempt < 9:
                self.retries += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            raise KubeError(method, path, status, text)
        raise AssertionError("unreachable")

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def apply(self, path: str, name: str, body: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply, forcing ownership (as the controller does)."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            f"{path}/{name}",
            body,
            params={"fieldManager": field_manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        return result

    async def delete(self, path: str, name: str) -> None:
        await self.request("DELETE", f"{path}/{name}", ok_missing=True)

    async def delete_all(self, path: str, label_selector: str) -> int:
        """Deletes every object matching the selector, one DELETE each, in parallel: a
        deletecollection of thousands of nodes can outlast the apiserver's request timeout."""
        items, _ = await self.list(path, label_selector)
        await asyncio.gather(*(self.delete(path, o["metadata"]["name"]) for o in items))
        return len(items)

    async def list(self, path: str, label_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        params = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", path, params=params)
            items += page.get("items") or []
            cont = page["metadata"].get("continue")
            if not cont:
                return items, page["metadata"]["resourceVersion"]
            params["continue"] = cont

    async def raw(self, path: str) -> str:
        async with self.session.get(path, headers={"Accept": "text/plain"}) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise KubeError("GET", path, resp.status, text)
            return text

    async def watch(
        self, path: str, label_selector: str | None, resource_version: str
    ) -> AsyncIterator[tuple[float, str, dict[str, Any]]]:
        """(receipt time, event type, object) from `resource_version` on, reconnecting at the server
        timeout. Bookmarks only move the resourceVersion. Receipt time is taken when a line is
        complete, before it is parsed."""
        rv = resource_version
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "3600"}
            if label_selector:
                params["labelSelector"] = label_selector
            async with self.session.get(path, params=params) as resp:
                if resp.status != 200:
                    raise KubeError("WATCH", path, resp.status, await resp.text())
                buf = b""
                async for chunk in resp.content.iter_any():
                    now = time.monotonic()
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise KubeError("WATCH", path, int(obj.get("code") or 0), str(obj.get("message")))
                        rv = obj["metadata"].get("resourceVersion") or rv
                        if event["type"] != "BOOKMARK":
                            yield now, event["type"], obj
