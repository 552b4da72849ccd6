"""One Karpenter end-to-end run's objects and steps (tests/e2e/test_karpenter*.py): Karpenter's
KWOK provider as a process, our chart installed with `replicaCount: 0` and the controller run as
its Deployment would run it, a KWOKNodeClass and a NodePool, all named after the test's namespace
so runs sharing a cluster never clash.

The chart is installed with the DeviceClass of the test's driver naming an extended resource
(`Flow.resource`) and `karpenter.nodeOverlays.enabled`, so the controller keeps a Karpenter
NodeOverlay per DRANodeOverlay; Karpenter runs with the NodeOverlay and StaticCapacity gates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dra_kwok.core.render import LABEL_MANAGED_BY
from tests.support.chart import Release
from tests.support.cluster import Cleanup, Cluster, KubectlError
from tests.support.controller import ControllerProcess
from tests.support.karpenter import (
    INSTANCE_TYPE,
    NODEPOOL_LABEL,
    KarpenterProcess,
    claim_template,
    complete_pools,
    condition,
    driver_values,
    force_remove,
    install_crds,
    kwok_node_class,
    node_pool,
    running_karpenter,
    summarize,
)
from tests.support.wait import wait_until

# Two instance types of Karpenter's KWOK provider (kwok/cloudprovider/instance_types.json): one
# covered by a DRANodeOverlay, one only by the ConfigMap; a third one for the NodeClaim made by hand.
OVERLAY_TYPE = "c-4x-amd64-linux"
MAPPING_TYPE = "m-8x-amd64-linux"
GATE_TYPE = "c-2x-amd64-linux"
TAG_LABEL = "dra-kwok-test"
# Karpenter's alpha gates the flows use: NodeOverlay (it applies NodeOverlays' capacity to instance
# types) and StaticCapacity (NodePools with spec.replicas).
KARPENTER_GATES = {"FEATURE_GATES": "NodeOverlay=true,StaticCapacity=true"}
TIMEOUT = 90.0  # per step; each takes 1-30 s on a 2-core machine


class Flow:
    """One run's objects, named after its namespace so nothing clashes with other tests, and the
    helpers its steps share."""

    def __init__(self, cluster: Cluster, namespace: str, workdir: Path) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.workdir = workdir
        self.tag = namespace
        self.labels = {TAG_LABEL: namespace}
        self.selector = f"{TAG_LABEL}={namespace}"
        # Only the test's pods tolerate this, so Karpenter launches nothing from the NodePool for
        # anybody else's pending pods, and nobody else's pods land on these nodes.
        self.taint = {"key": "dra-kwok.test/karpenter-e2e", "value": namespace, "effect": "NoSchedule"}
        self.driver = f"gpu.{namespace}.e2e.dra-kwok.test"
        # The extended resource the chart's DeviceClass for the driver names (extendedResourceName):
        # the resource pods ask for in resources.requests, and the derived NodeOverlays' capacity.
        self.resource = f"{namespace}.e2e.dra-kwok.test/gpu"
        self.nodepool = f"e2e-{namespace}"
        self.nodeclass = f"e2e-{namespace}"
        self.overlay = f"{namespace}-c4x"
        self.gate_claim = f"gate-{namespace}"
        self.static_pool = f"static-{namespace}"
        self.release = Release(cluster, f"dk-{namespace}", namespace, workdir)
        self.values = driver_values(self.driver, [self.mapping("m8x-gpus", MAPPING_TYPE, count=2)], self.resource)
        self.managed_by = ""  # from the release's Deployment once installed
        self.karpenter: KarpenterProcess | None = None
        self.controller: ControllerProcess | None = None
        self.timings: dict[str, float] = {}
        self.overlay_devices = 1

    # --- configuration --------------------------------------------------------------------------
    def mapping(self, name: str, instance_type: str, count: int) -> dict[str, Any]:
        return {
            "name": name,
            "nodeSelector": {"matchLabels": {INSTANCE_TYPE: instance_type, TAG_LABEL: self.tag}},
            "resourceSlice": {
                "devices": [
                    {"name": "gpu", "count": count, "attributes": {"model": "T4"}, "capacity": {"memory": "16Gi"}}
                ]
            },
        }

    def overlay_object(self, devices: int = 1) -> dict[str, Any]:
        """The DRANodeOverlay for OVERLAY_TYPE: `devices` A100s (one named gpu-0, more with count)."""
        device: dict[str, Any] = {
            "name": "gpu-0" if devices == 1 else "gpu",
            "attributes": {"model": {"string": "A100"}},
            "capacity": {"memory": {"value": "40Gi"}},
        }
        if devices > 1:
            device["count"] = devices
        return {
            "apiVersion": "test.karpenter.sh/v1alpha1",
            "kind": "DRANodeOverlay",
            "metadata": {"name": self.overlay},
            "spec": {
                "weight": 10,
                "requirements": [
                    {"key": INSTANCE_TYPE, "operator": "In", "values": [OVERLAY_TYPE]},
                    {"key": TAG_LABEL, "operator": "In", "values": [self.tag]},
                ],
                "resourceSlices": [
                    {
                        "spec": {
                            "driver": self.driver,
                            "devices": [device],
                        }
                    }
                ],
            },
        }

    # --- reading --------------------------------------------------------------------------------
    def describe(self) -> str:
        text = summarize(self.cluster, self.ns, self.managed_by, self.selector)
        if self.karpenter is not None:
            text += "\n--- karpenter errors:\n" + "\n".join(self.karpenter.errors()[-20:])
        if self.controller is not None:
            text += "\n--- controller log:\n" + self.controller.log()[-5000:]
        return text

    def wait(self, probe: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        return wait_until(probe, timeout=timeout, what=what, describe=self.describe, interval=0.5)

    def pool_claims(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json("nodeclaims", "-l", f"{NODEPOOL_LABEL}={self.nodepool}")[
            "items"
        ]
        return items

    def slices_of(self, node: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json("resourceslices", "-l", f"{LABEL_MANAGED_BY}={self.managed_by}")["items"]
        return [s for s in items if s["spec"].get("nodeName") == node]

    def all_slices(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json(
            "resourceslices", "-l", f"{LABEL_MANAGED_BY}={self.managed_by}"
        )["items"]
        return items

    def has_one_complete_pool(self, node: str, devices: int) -> bool:
        return list(complete_pools(self.slices_of(node)).values()) == [devices]

    def pods(self, app: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json("pods", "-n", self.ns, "-l", f"app={app}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def running(self, app: str, replicas: int) -> list[dict[str, Any]] | None:
        pods = self.pods(app)
        ok = len(pods) == replicas and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    def allocation(self, pod: dict[str, Any]) -> tuple[str, str, str] | None:
        """(driver, pool, device) allocated to the pod's claim."""
        [status] = [s for s in pod["status"].get("resourceClaimStatuses") or [] if s["name"] == "dev"] or [None]
        if not status or not status.get("resourceClaimName"):
            return None
        claim = self.cluster.get_json("resourceclaim", status["resourceClaimName"], "-n", self.ns)
        results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
        if len(results) != 1:
            return None
        return results[0]["driver"], results[0]["pool"], results[0]["device"]

    def gone(self, kind: str, name: str) -> bool:
        try:
            self.cluster.kubectl("get", kind, name)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return True
            raise
        return False

    def karpenter_events(self, reason: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json("events", "-A", "--field-selector", f"reason={reason}")["items"]
        return [
            e for e in items if "karpenter" in (e.get("source", {}).get("component") or e.get("reportingComponent", ""))
        ]

    def step(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        print(f"step {name}: {self.timings[name]:.1f}s")

    # --- teardown -------------------------------------------------------------------------------
    def remove_karpenter_objects(self) -> None:
        """While Karpenter still runs: delete the NodePool and the hand-made NodeClaim and let it
        terminate their nodes (its finalizers); whatever is left is force-removed afterwards."""
        doomed = [("nodepool", self.nodepool), ("nodepool", self.static_pool), ("nodeclaim", self.gate_claim)]
        for kind, name in doomed:
            self.cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        try:
            wait_until(
                lambda: not self.cluster.get_json("nodeclaims", "-l", self.selector)["items"],
                timeout=60,
                what="Karpenter to remove the test's NodeClaims",
            )
        except AssertionError as e:
            print(f"teardown: {e}")


@pytest.fixture
def flow(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, cleanup: Cleanup, tmp_path: Path
) -> Iterator[Flow]:
    """Karpenter and our controller running, the CRDs installed, the chart released with one
    ConfigMap mapping, the DRANodeOverlay, KWOKNodeClass and NodePool applied. Torn down in reverse,
    with Karpenter still running while its NodeClaims go. Parametrized indirectly, the parameter is
    the number of devices of the DRANodeOverlay (default 1)."""
    f = Flow(cluster, namespace, tmp_path)
    f.overlay_devices = int(getattr(request, "param", 1))
    started = time.monotonic()
    install_crds(cluster)
    with ExitStack() as stack:
        f.release.install(f.values)
        stack.callback(f.release.uninstall_without_hooks)
        ctl = f.release.controller()
        f.managed_by = ctl.managed_by
        f.controller = ctl.start()
        stack.callback(ctl.stop)
        cleanup.delete_later("dranodeoverlay", f.overlay)
        cleanup.delete_later("kwoknodeclass", f.nodeclass)
        # Last resort, after Karpenter has stopped: nothing of the test may stay behind with a finalizer.
        stack.callback(force_remove, cluster, "nodes", f.selector)
        stack.callback(force_remove, cluster, "nodeclaims", f.selector)
        f.karpenter = stack.enter_context(running_karpenter(cluster, tmp_path, env=KARPENTER_GATES))
        stack.callback(f.remove_karpenter_objects)
        cluster.apply(
            f.overlay_object(f.overlay_devices),
            kwok_node_class(f.nodeclass),
            node_pool(f.nodepool, f.nodeclass, [OVERLAY_TYPE, MAPPING_TYPE], f.labels, f.taint),
            claim_template("gpu", namespace, f.driver),
        )
        f.wait(
            lambda: condition(cluster.get_json("nodepool", f.nodepool), "Ready").get("status") == "True",
            f"NodePool {f.nodepool} to become Ready",
        )
        f.step("setup", started)
        yield f
    print("timings: " + json.dumps({k: round(v, 1) for k, v in f.timings.items()}))
