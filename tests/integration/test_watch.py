"""The Reflector (the controller's list+watch for Nodes and slices) against the real apiserver:
a listing reports what exists, then the watch every change, in order, nothing twice. Its relisting
after 410 Gone is in tests/faults/test_watch_gone.py (it restarts an apiserver)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

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
