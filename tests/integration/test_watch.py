"""The Reflector (the controller's list+watch for Nodes and slices) against the real apiserver:
a listing reports what exists, then the watch every change, in order, nothing twice. Its relisting
after 410 Gone is in tests/faults/test_watch_gone.py (it restarts an apiserver)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dra_kwok.shell.api import NODES_PATH
from dra_kwok.shell.watch import Reflector
from tests.support.cluster import Cleanup, Cluster
from tests.support.reflector import LABEL, Nodes, Recorder, admin_api, stop

pytestmark = pytest.mark.cluster


async def _scenario(cluster: Cluster, tag: str) -> None:
    api = await admin_api(cluster)
    rec, nodes = Recorder(), Nodes(api, tag)
    a, b = nodes.name("a"), nodes.name("b")
    reflector = Reflector(api, "node", NODES_PATH, rec.handle, rec.missing, f"{LABEL}={tag}")
    try:
        await nodes.create("a")
        await reflector.list()
        assert rec.events == [(None, a)], "the listing reports what exists, as type None"
        assert reflector.resource_version.isdigit()

        # kwok's status updates of the nodes come as MODIFIED events in between.
        task = asyncio.create_task(reflector.run())
        await nodes.create("b")
        await nodes.label("a")
        await nodes.delete("a")
        await rec.wait_for(("ADDED", b), ("DELETED", a))
        await stop(task)
        of_a = [t for t, n in rec.events[1:] if n == a]
        assert of_a[-1] == "DELETED" and set(of_a[:-1]) == {"MODIFIED"}, rec.events
        assert next(t for t, n in rec.events if n == b) == "ADDED", rec.events
        assert rec.labelled[0] == ("MODIFIED", a) and rec.labelled[-1] == ("DELETED", a), rec.events
        assert rec.held == {b}
    finally:
        await api.close()


def test_reflector_lists_then_watches_every_change_in_order(cluster: Cluster, cleanup: Cleanup) -> None:
    tag = secrets.token_hex(4)
    for key in ("a", "b"):
        cleanup.delete_later("node", f"watch-{tag}-{key}")
    asyncio.run(_scenario(cluster, tag))


def _reads() -> float:
    return REGISTRY.get_sample_value("dra_kwok_watch_reads_total", {"kind": "node"}) or 0.0


async def _paced_scenario(cluster: Cluster, tag: str, keys: list[str]) -> None:
    """A watch read at most every 0.5 s while nodes are created and labelled a few at a time:
    every event still arrives, in order per node, and reads carry several events each (the
    socket is left unread in between, then read once for all that came)."""
    api = await admin_api(cluster)
    rec, nodes = Recorder(), Nodes(api, tag)
    reflector = Reflector(
        api, "node", NODES_PATH, rec.handle, rec.missing, f"{LABEL}={tag}", pace=0.5, metadata_only=True
    )
    reads_before = _reads()
    try:
        await reflector.list()
        task = asyncio.create_task(reflector.run())
        for key in keys:
            await nodes.create(key)
            await nodes.label(key)
            await asyncio.sleep(0.02)
        await rec.wait_for_labelled(*[nodes.name(k) for k in keys])
        await stop(task)
        reads = _reads() - reads_before
        for key in keys:
            name = nodes.name(key)
            of_it = [t for t, n in rec.events if n == name]
            assert of_it[0] == "ADDED" and set(of_it[1:]) == {"MODIFIED"}, (name, of_it)
        first_labelled = list(dict.fromkeys(n for _, n in rec.labelled))
        assert first_labelled == [nodes.name(k) for k in keys], "the label changes in the order they were made"
        events = len(rec.events)
        assert reads < events / 2, f"{reads} reads for {events} events: the paced watch read each event alone"
    finally:
        await api.close()


def test_paced_watch_loses_nothing_and_reads_many_events_at_once(cluster: Cluster, cleanup: Cleanup) -> None:
    tag = secrets.token_hex(4)
    keys = [f"p{i}" for i in range(12)]
    for key in keys:
        cleanup.delete_later("node", f"watch-{tag}-{key}")
    asyncio.run(_paced_scenario(cluster, tag, keys))


async def _read_on_scenario(cluster: Cluster, tag: str, keys: list[str]) -> float:
    """A watch paced at 10 s whose handler says every event changed something: no read is then
    followed by a pause, so all events arrive while the nodes are made (a single pause would
    hold them for 10 s). Returns the seconds from the first creation to the last event."""
    api = await admin_api(cluster)
    rec, nodes = Recorder(), Nodes(api, tag)

    def changed(event_type: str | None, obj: Mapping[str, Any]) -> bool:
        rec.handle(event_type, obj)
        return True

    reflector = Reflector(api, "node", NODES_PATH, changed, rec.missing, f"{LABEL}={tag}", pace=10, metadata_only=True)
    try:
        await reflector.list()
        task = asyncio.create_task(reflector.run())
        started = time.monotonic()
        for key in keys:
            await nodes.create(key)
            await nodes.label(key)
        await rec.wait_for_labelled(*[nodes.name(k) for k in keys])
        elapsed = time.monotonic() - started
        await stop(task)
        assert list(dict.fromkeys(n for _, n in rec.labelled)) == [nodes.name(k) for k in keys], rec.labelled
        return elapsed
    finally:
        await api.close()


def test_a_paced_watch_reads_on_without_pausing_while_events_change_something(
    cluster: Cluster, cleanup: Cleanup
) -> None:
    tag = secrets.token_hex(4)
    keys = [f"r{i}" for i in range(8)]
    for key in keys:
        cleanup.delete_later("node", f"watch-{tag}-{key}")
    elapsed = asyncio.run(_read_on_scenario(cluster, tag, keys))
    assert elapsed < 10, f"{elapsed:.1f}s for the events of 8 nodes: a read was followed by the 10 s pause"
