"""Drives a `dra_kwok.shell.watch.Reflector` in a test: records its events as the World would
hold them, and waits for expected ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dra_kwok.shell.api import KubeApi, load_api_client
from tests.support.cluster import Cluster, kwok_node

TIMEOUT = 30.0
LABEL = "dra-kwok-test"


class Recorder:
    """The Reflector's handler and `missing` callback: holds what exists, as the World would."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, str]] = []
        self.labelled: list[tuple[str | None, str]] = []  # the events whose object has the label `extra`
        self.held: set[str] = set()
        self.changed = asyncio.Event()

    def handle(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.events.append((event_type, name))
        if "extra" in (obj["metadata"].get("labels") or {}):
            self.labelled.append((event_type, name))
        if event_type == "DELETED":
            self.held.discard(name)
        else:
            self.held.add(name)
        self.changed.set()

    def missing(self, listed: Iterable[str], since: float) -> list[str]:
        present = set(listed)
        return sorted(n for n in self.held if n not in present)

    async def wait_for(self, *expected: tuple[str | None, str]) -> None:
        """Until each (type, name) has been seen, by any event of that type: kwok's status
        updates are MODIFIED events too, so a MODIFIED seen need not be the test's own change."""
        await self._wait(lambda: all(e in self.events for e in expected), expected)

    async def wait_for_labelled(self, *names: str) -> None:
        """Until an event of each named node shows the label `extra` that `Nodes.label` sets."""
        await self._wait(lambda: set(names) <= {n for _, n in self.labelled}, names)

    async def _wait(self, done: Callable[[], bool], expected: object) -> None:
        async def seen() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(seen(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"waited {TIMEOUT}s for {expected}; events: {self.events}") from None


class Nodes:
    """Creates and deletes this test's labelled KWOK nodes through the controller's own KubeApi."""

    def __init__(self, api: KubeApi, tag: str) -> None:
        self.api = api
        self.tag = tag

    def name(self, key: str) -> str:
        return f"watch-{self.tag}-{key}"

    async def create(self, key: str) -> None:
        body = kwok_node(self.name(key), labels={LABEL: self.tag})
        await self.api.request("POST", "/api/v1/nodes", body=body, verb="create")

    async def label(self, key: str) -> None:
        patch = {"metadata": {"labels": {"extra": "1"}}}
        path = f"/api/v1/nodes/{self.name(key)}"
        await self.api.request("PATCH", path, body=patch, verb="patch", content_type="application/merge-patch+json")

    async def delete(self, key: str) -> None:
        await self.api.request("DELETE", f"/api/v1/nodes/{self.name(key)}", verb="delete")


async def admin_api(cluster: Cluster) -> KubeApi:
    return KubeApi(await load_api_client(str(cluster.kubeconfig), 4), 2)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
