"""Karpenter NodeOverlays derived from DRANodeOverlays (chart: karpenter.nodeOverlays.enabled), on
the real apiserver with Karpenter's NodeOverlay CRD from the pinned module (its CEL rules check
what we write) and the chart's RBAC only. What Karpenter does with them is in
tests/e2e/test_karpenter_demand.py."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_kwok.core.node_overlays import IMPLICIT_PREFIX, node_overlay_name
from tests.integration.test_chart import NO_NODE
from tests.support.chart import Release
from tests.support.cluster import Cleanup, Cluster, KubectlError
from tests.support.controller import ControllerProcess
from tests.support.karpenter import INSTANCE_TYPE, karpenter_crd_files
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster]

TIMEOUT = 30.0


@pytest.fixture
def node_overlay_crd(cluster: Cluster) -> None:
    [crd] = [f for f in karpenter_crd_files() if f.name == "karpenter.sh_nodeoverlays.yaml"]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cluster.wait_established(f"crd/{yaml.safe_load(crd.read_text())['metadata']['name']}", timeout=60)


@pytest.fixture
def release(cluster: Cluster, namespace: str, unique_name: Callable[[str], str], tmp_path: Path) -> Iterator[Release]:
    rel = Release(cluster, unique_name("dk"), namespace, tmp_path)
    yield rel
    rel.uninstall_without_hooks()


class Derivation:
    def __init__(self, cluster: Cluster, release: Release, unique_name: Callable[[str], str]) -> None:
        self.cluster = cluster
        self.release = release
        self.driver = f"{unique_name('gpu')}.no.dra-kwok.test"
        self.resource = f"{unique_name('res')}.dra-kwok.test/gpu"
        self.instance_type = unique_name("it")
        self.overlay = unique_name("ov")
        self.name = node_overlay_name(self.overlay)
        self.controller: ControllerProcess | None = None

    def values(self) -> dict[str, Any]:
        return {
            "replicaCount": 0,
            "cleanupJob": {"nodeSelector": NO_NODE},
            "config": {"driver": self.driver, "mappings": []},
            "deviceClasses": [{"name": self.driver, "driver": self.driver, "extendedResourceName": self.resource}],
            "karpenter": {"nodeOverlays": {"enabled": True}},
        }

    def apply_overlay(self, count: int, weight: int = 5, name: str | None = None) -> None:
        self.cluster.apply(
            {
                "apiVersion": "test.karpenter.sh/v1alpha1",
                "kind": "DRANodeOverlay",
                "metadata": {"name": name or self.overlay},
                "spec": {
                    "weight": weight,
                    "requirements": [{"key": INSTANCE_TYPE, "operator": "In", "values": [self.instance_type]}],
                    "resourceSlices": [
                        {
                            "spec": {
                                "driver": self.driver,
                                "devices": [
                                    {"name": "gpu", "count": count, "attributes": {"kind": {"string": "gpu"}}},
                                    {"name": "nic", "attributes": {"kind": {"string": "nic"}}},
                                ],
                            }
                        }
                    ],
                },
            }
        )

    def get(self, name: str | None = None) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.cluster.get_json("nodeoverlay", name or self.name)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return None
            raise
        return obj

    def capacity(self, name: str | None = None) -> dict[str, str] | None:
        obj = self.get(name)
        return None if obj is None else dict(obj["spec"].get("capacity") or {})

    def writes(self, result: str) -> float:
        assert self.controller is not None
        return self.controller.metrics().get(f'dra_kwok_node_overlay_writes_total{{result="{result}"}}', 0.0)


def test_a_node_overlay_follows_its_dranodeoverlay_and_the_device_classes_with_the_charts_rbac(
    cluster: Cluster,
    node_overlay_crd: None,
    release: Release,
    unique_name: Callable[[str], str],
    cleanup: Cleanup,
) -> None:
    d = Derivation(cluster, release, unique_name)
    release.install(d.values())
    d.controller = release.controller().start()
    try:
        _run(d, cluster, cleanup, unique_name)
    finally:
        code = d.controller.stop()
        assert code in (0, -signal.SIGTERM), f"controller exited with {code}:\n{d.controller.log()}"


def _run(d: Derivation, cluster: Cluster, cleanup: Cleanup, unique_name: Callable[[str], str]) -> None:
    assert d.controller is not None
    cleanup.delete_later("dranodeoverlay", d.overlay)
    implicit = IMPLICIT_PREFIX + d.driver

    # 1. Derived: the chart's DeviceClass selects every device of the driver (4 GPUs + 1 NIC).
    d.apply_overlay(count=4)
    wait_until(lambda: d.capacity() == {d.resource: "5", implicit: "5"}, timeout=TIMEOUT, what="the NodeOverlay")
    obj = d.get()
    assert obj is not None
    source = cluster.get_json("dranodeoverlay", d.overlay)
    assert obj["spec"]["requirements"] == source["spec"]["requirements"] and obj["spec"]["weight"] == 5
    [owner] = obj["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("DRANodeOverlay", d.overlay, source["metadata"]["uid"])
    assert obj["metadata"]["labels"]["dra-kwok.test.karpenter.sh/managed-by"] == d.controller.managed_by
    assert d.writes("applied") == 1

    # 2. The DRANodeOverlay changes (6 GPUs, weight 7): the NodeOverlay follows, one write.
    d.apply_overlay(count=6, weight=7)
    wait_until(lambda: d.capacity() == {d.resource: "7", implicit: "7"}, timeout=TIMEOUT, what="the new count")
    assert (d.get() or {})["spec"]["weight"] == 7 and d.writes("applied") == 2

    # 3. A DeviceClass with an attribute selector and its own extended resource: counted too,
    # only the GPUs; gone again with the class.
    gpus_only = unique_name("gpus")
    gpu_resource = f"{unique_name('only')}.dra-kwok.test/gpu"
    expression = f"device.driver == '{d.driver}' && device.attributes['{d.driver}'].kind == 'gpu'"
    cluster.apply(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": gpus_only},
            "spec": {"selectors": [{"cel": {"expression": expression}}], "extendedResourceName": gpu_resource},
        }
    )
    cleanup.delete_later("deviceclass", gpus_only)
    both = {d.resource: "7", implicit: "7", gpu_resource: "6", IMPLICIT_PREFIX + gpus_only: "6"}
    wait_until(lambda: d.capacity() == both, timeout=TIMEOUT, what="the second class counted")
    cluster.kubectl("delete", "deviceclass", gpus_only)
    wait_until(lambda: d.capacity() == {d.resource: "7", implicit: "7"}, timeout=TIMEOUT, what="the class gone")

    # 4. An invalid edit of the DRANodeOverlay (a device named like one of gpu's 6: valid to the
    # schema, not as a pool) keeps the last good spec's NodeOverlay, as it keeps its slices.
    cluster.kubectl(
        "patch", "dranodeoverlay", d.overlay, "--type=json",
        "-p", '[{"op": "add", "path": "/spec/resourceSlices/0/spec/devices/-", "value": {"name": "gpu-1"}}]',
    )  # fmt: skip

    def invalid() -> bool:
        st = cluster.get_json("dranodeoverlay", d.overlay).get("status") or {}
        ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
        return bool(ready.get("reason") == "InvalidSpec" and st.get("observedGeneration") == 3)

    wait_until(invalid, timeout=TIMEOUT, what="the overlay's status to say InvalidSpec")
    assert d.capacity() == {d.resource: "7", implicit: "7"}

    # 5. A restart while the DRANodeOverlay is invalid writes nothing and keeps the NodeOverlay:
    # the last valid spec is not known to the new process, so what it said stays (as the slices).
    # Fixed again, the NodeOverlay follows; a further restart writes nothing.
    d.controller.stop()
    d.controller.start()
    wait_until(lambda: d.controller is not None and d.controller.metrics().get("dra_kwok_node_overlays") == 1,
               timeout=TIMEOUT, what="the restarted controller to keep the NodeOverlay")  # fmt: skip
    assert d.capacity() == {d.resource: "7", implicit: "7"}
    assert d.writes("applied") == 0 and d.writes("deleted") == 0, d.controller.log()
    d.apply_overlay(count=2, weight=7)
    wait_until(lambda: d.capacity() == {d.resource: "3", implicit: "3"}, timeout=TIMEOUT, what="the fixed spec")
    d.controller.stop()
    d.controller.start()
    wait_until(lambda: d.controller is not None and d.controller.metrics().get("dra_kwok_node_overlays") == 1,
               timeout=TIMEOUT, what="the restarted controller to desire the NodeOverlay")  # fmt: skip
    assert d.writes("applied") == 0 and d.writes("deleted") == 0, d.controller.log()

    # 6. Deleted with its DRANodeOverlay: by us while we run; by the garbage collector (the owner
    # reference) while we do not.
    cluster.kubectl("delete", "dranodeoverlay", d.overlay)
    wait_until(lambda: d.get() is None, timeout=TIMEOUT, what="the NodeOverlay to go with its DRANodeOverlay")
    second = unique_name("ov2")
    cleanup.delete_later("dranodeoverlay", second)
    d.apply_overlay(count=1, name=second)
    wait_until(lambda: d.get(node_overlay_name(second)) is not None, timeout=TIMEOUT, what="the second NodeOverlay")
    d.controller.stop()
    cluster.kubectl("delete", "dranodeoverlay", second)
    wait_until(
        lambda: d.get(node_overlay_name(second)) is None,
        timeout=60,
        what="the garbage collector to delete the NodeOverlay of a deleted DRANodeOverlay",
    )
    d.controller.start()
