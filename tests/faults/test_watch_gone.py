"""After a watch gap the apiserver cannot replay (it restarted: its watch cache begins at its new
start), a watch from the old resourceVersion is answered 410 Gone. The Reflector then lists again
and reports as DELETED what was deleted during the gap, which no watch event will ever say. On a
cluster of its own: restarting the shared one's apiserver would disturb other tests."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from dra_kwok.shell.api import NODES_PATH
from dra_kwok.shell.watch import Reflector
from tests.faults.support import Apiserver
from tests.support.cluster import Cluster, running_cluster
from tests.support.reflector import LABEL, Nodes, Recorder, admin_api, stop

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("gone-cluster")) as cluster:
        yield cluster


async def _scenario(cluster: Cluster) -> None:
    tag = secrets.token_hex(4)
    api = await admin_api(cluster)
    rec, nodes = Recorder(), Nodes(api, tag)
    a, b, c = nodes.name("a"), nodes.name("b"), nodes.name("c")
    reflector = Reflector(api, "node", NODES_PATH, rec.handle, rec.missing, f"{LABEL}={tag}")
    try:
        await nodes.create("a")
        await nodes.create("b")
        await reflector.list()
        task = asyncio.create_task(reflector.run())
        await nodes.label("a")
        await rec.wait_for_labelled(a)
        await stop(task)
        before = reflector.resource_version

        # The gap: b deleted, c created, nobody watching; then the apiserver restarts.
        await nodes.delete("b")
        await nodes.create("c")
        apiserver = Apiserver(cluster)
        apiserver.stop()
        await asyncio.to_thread(apiserver.start)

        rec.events.clear()
        task = asyncio.create_task(reflector.run())
        await rec.wait_for((None, c), ("DELETED", b))
        await stop(task)
        # Listed again (type None), not replayed by a watch (which would say ADDED c).
        assert ("ADDED", c) not in rec.events, rec.events
        assert (None, a) in rec.events and rec.held == {a, c}, rec.events
        assert int(reflector.resource_version) > int(before)
    finally:
        await api.close()


def test_watch_gap_past_an_apiserver_restart_lists_again_and_reports_deletions(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    asyncio.run(_scenario(own_cluster))
