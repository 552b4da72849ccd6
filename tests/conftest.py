"""Shared fixtures. The `cluster` fixture starts a real local cluster on first use only, so unit
tests (which never ask for it) run without one; tests that use it must be marked `cluster`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cleanup, Cluster, existing_cluster, expected_kube_version, running_cluster

# Point this at a kubeconfig (e.g. .cluster/kubeconfig after `make cluster`) to run the cluster
# tests against that cluster instead of starting a fresh one; saves ~30 s per run while iterating.
REUSE_ENV = "DRA_KWOK_KUBECONFIG"

# Fixtures that (transitively) need the cluster; a test using any of them must be marked.
CLUSTER_FIXTURES = {"cluster", "namespace", "cleanup"}


def pytest_report_header(config: pytest.Config) -> str:
    """Which Kubernetes the cluster tests run against (make test-versions runs each minor)."""
    reuse = os.environ.get(REUSE_ENV)
    where = f"the cluster of {reuse}" if reuse else "a fresh local cluster (hack/cluster.sh)"
    return f"Kubernetes {expected_kube_version()} (KUBE_VERSION), on {where}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fails collection when a test reaches the cluster without the `cluster` marker (so
    `-m 'not cluster'` really runs without one), or when a unit test reaches it at all."""
    problems = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if not fixtures & CLUSTER_FIXTURES:
            continue
        if item.get_closest_marker("cluster") is None:
            problems.append(f"{item.nodeid} uses the cluster but is not marked @pytest.mark.cluster")
        if Path(item.path).is_relative_to(Path(__file__).parent / "unit"):
            problems.append(f"{item.nodeid} is a unit test but uses the cluster")
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the whole test run, deleted at the end even when tests fail. If it cannot
    start, every test using it errors (with hack/cluster.sh's output), it is never skipped."""
    reuse = os.environ.get(REUSE_ENV)
    if reuse:
        yield existing_cluster(Path(reuse))
        return
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"test-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    # Pods need the namespace's `default` ServiceAccount (ServiceAccount admission is on), which
    # the controller-manager creates asynchronously.
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """`unique_name("node")` -> e.g. "node-3f9a1c2e": DNS-1123 names that never clash between
    tests or with leftovers of earlier runs (cluster-scoped objects such as Nodes)."""

    def make(prefix: str) -> str:
        return f"{prefix}-{secrets.token_hex(4)}"

    return make


@pytest.fixture
def cleanup(cluster: Cluster) -> Iterator[Cleanup]:
    """`cleanup.delete_later("node", name)`: deleted after the test, even if it fails."""
    registry = Cleanup(cluster)
    yield registry
    registry.run()
