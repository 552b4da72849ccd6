"""Fixtures for the fault and bad-input suite. The per-test `scenario` and `controller` fixtures
and the session-wide `overlay_crd` come from tests/integration/conftest.py; `module_scenario` is
the same kind of world shared by the tests of one module (one namespace, one managed-by value)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.faults.support import Rest
from tests.integration.conftest import Scenario, controller, overlay_crd, scenario  # noqa: F401  (fixtures)
from tests.support.cluster import Cleanup, Cluster


@pytest.fixture(scope="module")
def module_scenario(
    cluster: Cluster,
    overlay_crd: None,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    namespace = f"fault-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    cleanup = Cleanup(cluster)
    yield Scenario(cluster, namespace, cleanup, tmp_path_factory.mktemp(namespace))
    cleanup.run()
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="session")
def rest(cluster: Cluster) -> Rest:
    return Rest(cluster)
