"""The API changing under a running controller: the DRANodeOverlay CRD deleted and created again
(also while the controller is down), and its ServiceAccount's permissions or the account itself
removed. The controller keeps running, falls back, recovers by itself, and `/readyz` tells the
truth all along."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dra_kwok.core.render import LABEL_MANAGED_BY
from tests.integration.conftest import CRD_FILE, DRIVER, Scenario
from tests.support.chart import Release, find
from tests.support.cluster import Cluster, kwok_node
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

CRD = "crd/dranodeoverlays.test.karpenter.sh"


def probe(ctl: ControllerProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ctl.health_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.wait_established(CRD)


@pytest.fixture
def crd_restored(scenario: Scenario) -> Iterator[None]:
    """The session's CRD is back after the test, whatever happened in it."""
    yield
    install_crd(scenario.cluster)


def test_the_crd_deleted_and_created_again_needs_no_restart(
    scenario: Scenario, controller: ControllerProcess, crd_restored: None
) -> None:
    cluster = scenario.cluster
    scenario.config(scenario.mapping_config(count=1))  # the fallback: one device
    node = scenario.unique("kwok")
    scenario.node(node)
    overlay = scenario.unique("eight")
    spec = scenario.overlay_spec([{"name": "gpu", "count": 8}])
    scenario.overlay(overlay, spec)
    wait_until(lambda: len(scenario.device_names(node)) == 8, timeout=15, what="the overlay's pool")

    cluster.kubectl("delete", CRD, "--timeout=60s", timeout=90)
    wait_until(
        lambda: len(scenario.device_names(node)) == 1,
        timeout=20,
        what="the node to fall back to the ConfigMap mapping",
        describe=controller.log,
    )
    assert controller.alive, controller.log()
    assert probe(controller, "/healthz") == (200, "ok")
    assert probe(controller, "/readyz")[0] == 200
    wait_until(lambda: "does not serve" in controller.log(), timeout=30, what="a warning that the CRD is gone")
    time.sleep(5)  # two more listings, answered 404 too
    assert controller.log().count("does not serve") == 1, "the warning is logged once, not per retry"

    # Created again, with its overlay: in force within seconds, same process.
    install_crd(cluster)
    scenario.overlay(overlay, spec)
    wait_until(
        lambda: len(scenario.device_names(node)) == 8,
        timeout=20,
        what="the re-created overlay to apply without a restart",
        describe=controller.log,
    )
    assert controller.alive


def test_started_without_the_crd_a_crd_created_later_takes_effect(
    scenario: Scenario, crd_restored: None, tmp_path: Path
) -> None:
    cluster = scenario.cluster
    scenario.config(scenario.mapping_config(count=1))
    node = scenario.unique("kwok")
    scenario.node(node)
    cluster.kubectl("delete", CRD, "--ignore-not-found", "--timeout=60s", timeout=90)
    with scenario.controller() as ctl:
        wait_until(lambda: len(scenario.device_names(node)) == 1, timeout=15, what="the mapping's pool")
        assert probe(ctl, "/readyz")[0] == 200
        install_crd(cluster)
        scenario.overlay(scenario.unique("four"), scenario.overlay_spec([{"name": "gpu", "count": 4}]))
        wait_until(
            lambda: len(scenario.device_names(node)) == 4,
            timeout=20,
            what="an overlay of a CRD created after the start to apply",
            describe=ctl.log,
        )


def test_readyz_fails_while_the_service_account_is_refused_and_recovers_by_itself(
    cluster: Cluster, namespace: str, tmp_path: Path, scenario: Scenario
) -> None:
    release = Release(cluster, scenario.unique("rdy"), namespace, tmp_path)
    try:
        release.install(
            {
                "config": {
                    "driver": DRIVER,
                    "mappings": [
                        {
                            "name": "t4",
                            "nodeSelector": {"matchLabels": {"dra-kwok-test": scenario.tag}},
                            "resourceSlice": {"devices": [{"name": "gpu", "count": 1}]},
                        }
                    ],
                },
            }
        )
        binding = find(release.manifest(), "ClusterRoleBinding")
        ctl = release.controller()
        ctl.start()
        try:
            assert probe(ctl, "/readyz")[0] == 200
            managed_by = ctl.managed_by
            cluster.kubectl("delete", "clusterrolebinding", binding["metadata"]["name"])
            node = scenario.unique("kwok")
            scenario.cleanup.delete_later("node", node)
            cluster.apply(kwok_node(node, labels={"dra-kwok-test": scenario.tag}))
            _, body = wait_until(
                lambda: r if (r := probe(ctl, "/readyz"))[0] == 503 else None,
                timeout=20,
                what="/readyz to fail once writes are forbidden",
                describe=ctl.log,
            )
            assert body.startswith("not ready: forbidden"), body
            assert "resourceslices" in body, body
            assert ctl.metric('dra_kwok_not_ready{reason="forbidden"}') == 1
            assert ctl.metric("dra_kwok_ready") == 0
            assert ctl.log().count("not ready: forbidden") == 1, "logged once per transition"

            cluster.apply(binding)  # permission back: ready again by itself, and the node published
            wait_until(lambda: probe(ctl, "/readyz")[0] == 200, timeout=20, what="/readyz to recover", describe=ctl.log)
            wait_until(
                lambda: cluster.get_json("resourceslices", "-l", f"{LABEL_MANAGED_BY}={managed_by}")["items"] or None,
                timeout=20,
                what="the node's slice once the permission is back",
            )
            assert ctl.metric("dra_kwok_ready") == 1
            assert "ready again" in ctl.log()

            # The account itself deleted: its token is no longer accepted (401), once the
            # apiserver's cache of recent authentications (about 10 s) has let go of it. Each
            # ConfigMap edit changes the node's devices, so a write is tried.
            sa = find(release.manifest(), "ServiceAccount")
            cluster.kubectl("delete", "serviceaccount", sa["metadata"]["name"], "-n", namespace)
            configmap = find(release.manifest(), "ConfigMap")
            text = configmap["data"]["config.yaml"]
            assert "count: 1" in text
            edits = iter(range(2, 100))

            def refused() -> tuple[int, str] | None:
                r = probe(ctl, "/readyz")
                if r[0] == 503:
                    return r
                configmap["data"]["config.yaml"] = text.replace("count: 1", f"count: {next(edits)}")
                cluster.apply(configmap)
                return None

            _, body = wait_until(
                refused, timeout=60, interval=3, what="/readyz to fail once the token is refused", describe=ctl.log
            )
            assert body.startswith("not ready: unauthorized"), body
            assert ctl.alive
        finally:
            ctl.stop()
    finally:
        release.uninstall_without_hooks()
