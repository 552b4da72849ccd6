"""Two replicas with leader election (--leader-elect), against the real apiserver: one holds the
Lease and writes, the other stands by with 0 writes; SIGKILL of the leader hands over once the
Lease has expired (never before), with nothing lost or phantom; SIGTERM hands over at once; an
apiserver outage shorter than the lease keeps the leader, one longer makes it stop writing and
exactly one replica leads afterwards, neither process restarting.

Shorter lease timings than the chart's (15/10/2 s) keep the tests short; the failover they measure
scales with the lease duration (docs/operations.md, Leader election).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import NODES, Apiserver, Oracle, Rest, node_manifest
from tests.faults.test_apiserver_outage import config, own_cluster  # a cluster of this module's own
from tests.integration.conftest import Scenario
from tests.support.cluster import Cleanup, Cluster
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

__all__ = ["own_cluster"]  # the fixture

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

LEASE, RENEW, RETRY = 6.0, 4.0, 1.0


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Pair:
    """Two controller processes of one installation (one managed-by value, one Lease)."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        managed_by: str,
        workdir: Path,
        timings: tuple[float, float, float] = (LEASE, RENEW, RETRY),
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.lease = f"lease-{secrets.token_hex(4)}"
        self.lease_duration = timings[0]
        args = (
            "--leader-elect",
            "--leader-election-id", self.lease,
            "--lease-duration", str(timings[0]),
            "--renew-deadline", str(timings[1]),
            "--retry-period", str(timings[2]),
        )  # fmt: skip
        self.ctls = {
            n: ControllerProcess(cluster.kubeconfig, namespace, managed_by, workdir / f"{n}.log", extra_args=args)
            for n in "ab"
        }

    def leading(self, name: str) -> bool:
        return self.ctls[name].metrics().get("dra_kwok_leader") == 1.0

    def leaders(self) -> list[str]:
        return [n for n, c in self.ctls.items() if c.alive and self.leading(n)]

    def holder(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.cluster.get_json("lease", self.lease, "-n", self.namespace)["spec"]
        return spec

    def wait_leader(self, name: str, timeout: float | None = None) -> None:
        timeout = 3 * self.lease_duration if timeout is None else timeout
        wait_until(lambda: self.leaders() == [name], timeout=timeout, what=f"{name} to lead, alone")

    def stop(self) -> None:
        for c in self.ctls.values():
            c.stop()


@pytest.fixture
def pair(scenario: Scenario) -> Iterator[Pair]:
    p = Pair(scenario.cluster, scenario.namespace, scenario.managed_by, scenario.workdir)
    yield p
    p.stop()


def test_the_standby_writes_nothing_and_takes_over_after_the_lease_of_a_killed_leader(
    scenario: Scenario, rest: Rest, pair: Pair
) -> None:
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag, 2)
    scenario.config(oracle.config_text)
    a, b = pair.ctls["a"], pair.ctls["b"]
    a.start()
    pair.wait_leader("a")
    b.start()
    assert not pair.leading("b")

    # 1. The leader publishes 30 nodes; the standby, watching the same events, writes nothing.
    for _ in range(30):
        name = scenario.unique("n")
        scenario.cleanup.delete_later("node", name)
        rest.create(NODES, node_manifest(name, scenario.tag, "gpu-small"))
    oracle.wait_exact(60, "the leader's slices", a)
    time.sleep(2 * RETRY)
    assert a.writes() >= 30 and b.writes() == 0, (a.writes(), b.writes())
    assert pair.holder()["holderIdentity"].endswith(f"_{a.proc.pid if a.proc else 0}")

    # 2. SIGKILL the leader (no release) and create nodes during the gap: the standby takes the
    # Lease once it has not changed for the lease duration, then publishes them.
    last_renew = seconds(pair.holder()["renewTime"])
    a.kill()
    killed = time.time()
    during = []
    for _ in range(5):
        name = scenario.unique("gap")
        scenario.cleanup.delete_later("node", name)
        rest.create(NODES, node_manifest(name, scenario.tag, "gpu-small"))
        during.append((name, time.time()))
        time.sleep(0.5)
    took = oracle.wait_exact(4 * LEASE, "the standby to publish the nodes created during the failover", b)
    spec = pair.holder()
    acquired = seconds(spec["acquireTime"])
    print(
        f"failover after SIGKILL: lease {LEASE:.0f}s; acquired {acquired - killed:.2f}s after the kill, "
        f"{acquired - last_renew:.2f}s after the last renewal; nodes created during the gap published "
        f"{took:.2f}s after the last of them ({time.time() - killed:.2f}s after the kill)"
    )
    assert spec["holderIdentity"].endswith(f"_{b.proc.pid if b.proc else 0}") and spec["leaseTransitions"] == 1
    assert acquired - last_renew >= LEASE, "the standby took over before the Lease had expired"
    assert pair.leading("b")

    # 3. The killed replica comes back as a standby (a new process): it writes nothing.
    a.start()
    time.sleep(3 * RETRY)
    assert pair.leaders() == ["b"] and a.writes() == 0

    # 4. SIGTERM the leader: it gives the Lease up and the standby takes over at once.
    stopped = time.time()
    b.stop()
    pair.wait_leader("a", timeout=LEASE)
    handed = seconds(pair.holder()["acquireTime"]) - stopped
    print(f"failover after SIGTERM: the standby led {handed:.2f}s after the leader was told to stop")
    assert handed < LEASE, f"the Lease was not given up: {handed:.2f}s, the lease is {LEASE:.0f}s"
    name = scenario.unique("after")
    scenario.cleanup.delete_later("node", name)
    rest.create(NODES, node_manifest(name, scenario.tag, "gpu-small"))
    oracle.wait_exact(30, "the new leader to publish a new node", a)


# The apiserver takes 10-18 s to stop and start again here (the longer on a busy machine): the
# outage test's lease is long enough that a short outage is shorter than the renew deadline.
OUTAGE_LEASE, OUTAGE_RENEW, OUTAGE_RETRY = 45.0, 35.0, 3.0


def test_an_outage_shorter_than_the_lease_keeps_the_leader_and_a_longer_one_ends_with_one_leader(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    namespace = f"leader-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    scenario = Scenario(cluster, namespace, Cleanup(cluster), tmp_path)
    rest = Rest(cluster)
    oracle = Oracle(rest, scenario.tag, scenario.managed_by)
    oracle.config_text = config(scenario.tag, 2)
    scenario.config(oracle.config_text)
    for _ in range(10):
        rest.create(NODES, node_manifest(scenario.unique("n"), scenario.tag, "gpu-small"))
    pair = Pair(cluster, namespace, scenario.managed_by, tmp_path, (OUTAGE_LEASE, OUTAGE_RENEW, OUTAGE_RETRY))
    a, b = pair.ctls["a"], pair.ctls["b"]
    apiserver = Apiserver(cluster)
    try:
        a.start()
        pair.wait_leader("a")
        b.start()
        oracle.wait_exact(60, "the initial slices", a)
        pids = {n: c.proc.pid for n, c in pair.ctls.items() if c.proc}

        # 1. Shorter than the renew deadline: nobody notices beyond retries; a still leads.
        transitions = a.metrics().get("dra_kwok_leader_transitions_total")
        stopped = apiserver.stop()
        time.sleep(2.0)
        apiserver.start()
        short = time.monotonic() - stopped
        print(f"short outage: {short:.1f}s (renew deadline {OUTAGE_RENEW:.0f}s)")
        assert short < OUTAGE_RENEW - 2 * OUTAGE_RETRY, "the apiserver took too long to restart for this test"
        time.sleep(2 * OUTAGE_RETRY)
        assert pair.leaders() == ["a"] and a.metrics().get("dra_kwok_leader_transitions_total") == transitions
        assert b.writes() == 0

        # 2. Longer than the lease: the leader stops writing at its renew deadline (no write
        # refused by the fence went out: the count of writes stays flat from then on) and, once the
        # apiserver is back, exactly one replica leads and the slices follow a change.
        writes_before = a.writes()
        stopped = apiserver.stop()
        while time.monotonic() - stopped < OUTAGE_LEASE + 5:
            assert a.alive and b.alive, "a replica exited during the outage"
            time.sleep(0.5)
        assert not pair.leading("a") and not pair.leading("b"), "a replica still says it leads, cut off"
        assert a.writes() == writes_before
        apiserver.start()
        print(f"long outage: {time.monotonic() - stopped:.1f}s")
        wait_until(lambda: len(pair.leaders()) == 1, timeout=3 * OUTAGE_LEASE, what="one leader after the outage")
        [leader] = pair.leaders()
        other = "b" if leader == "a" else "a"
        oracle.config_text = config(scenario.tag, 3)
        scenario.config(oracle.config_text)
        oracle.wait_exact(60, "the change after the outage", pair.ctls[leader])
        time.sleep(2 * OUTAGE_RETRY)
        assert pair.leaders() == [leader]
        standby_writes = pair.ctls[other].writes()
        print(f"after the outage: {leader} leads; writes by the standby since its start: {standby_writes:.0f}")
        assert {n: c.proc.pid for n, c in pair.ctls.items() if c.proc} == pids, "a replica restarted"
    finally:
        pair.stop()
        if not apiserver.healthy():
            apiserver.start()
