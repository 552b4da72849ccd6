"""Fixtures for tests that run the controller against the local cluster."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_kwok.core.render import LABEL_MANAGED_BY, LABEL_NODE
from tests.support.cluster import Cleanup, Cluster, kwok_node
from tests.support.controller import ControllerProcess, running_controller

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "test.karpenter.sh_dranodeoverlays.yaml"
DRIVER = "gpu.dra-kwok.example.com"


@pytest.fixture(scope="session")
def overlay_crd(cluster: Cluster) -> None:
    """The DRANodeOverlay CRD, installed once per run (server-side apply is idempotent)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.wait_established("crd/dranodeoverlays.test.karpenter.sh")


class Scenario:
    """One test's world: a namespace for the ConfigMap, a label that only its nodes carry, a
    controller instance with its own managed-by value, and helpers to read what it published."""

    def __init__(self, cluster: Cluster, namespace: str, cleanup: Cleanup, workdir: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.cleanup = cleanup
        self.workdir = workdir
        self.tag = namespace  # value of the `dra-kwok-test` label on this test's nodes
        self.managed_by = f"dra-kwok-{namespace}"

    # --- objects --------------------------------------------------------------------------------
    def node(self, name: str, instance_type: str = "gpu-small", **labels: str) -> dict[str, Any]:
        self.cleanup.delete_later("node", name)
        obj = kwok_node(
            name, labels={"dra-kwok-test": self.tag, "node.kubernetes.io/instance-type": instance_type, **labels}
        )
        self.cluster.apply(obj)
        return self.cluster.get_json("node", name)  # type: ignore[no-any-return]

    def config(self, text: str) -> None:
        self.cluster.apply(self.configmap(text))

    def configmap(self, text: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dra-kwok-configmap", "namespace": self.namespace},
            "data": {"config.yaml": text},
        }

    def mapping_config(self, count: int = 2, instance_type: str = "gpu-small", extra: str = "") -> str:
        return (
            yaml.safe_dump(
                {
                    "driver": DRIVER,
                    "mappings": [
                        {
                            "name": "small",
                            "nodeSelector": {
                                "matchLabels": {
                                    "dra-kwok-test": self.tag,
                                    "node.kubernetes.io/instance-type": instance_type,
                                }
                            },
                            "resourceSlice": {
                                "devices": [
                                    {
                                        "name": "gpu",
                                        "count": count,
                                        "attributes": {"model": "t4", "memory": "16Gi"},
                                        "capacity": {"memory": "16Gi"},
                                    }
                                ]
                            },
                        }
                    ],
                }
            )
            + extra
        )

    def overlay(self, name: str, spec: dict[str, Any]) -> None:
        self.cleanup.delete_later("dranodeoverlay", name)
        self.cluster.apply(
            {
                "apiVersion": "test.karpenter.sh/v1alpha1",
                "kind": "DRANodeOverlay",
                "metadata": {"name": name},
                "spec": spec,
            }
        )

    def overlay_spec(
        self,
        devices: list[dict[str, Any]],
        weight: int | None = 10,
        instance_type: str = "gpu-small",
        driver: str = DRIVER,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "requirements": [
                {"key": "dra-kwok-test", "operator": "In", "values": [self.tag]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [instance_type]},
            ],
            "resourceSlices": [
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceSlice",
                    "spec": {"driver": driver, "devices": devices},
                }
            ],
        }
        if weight is not None:
            spec["weight"] = weight
        return spec

    # --- reading ----------------------------------------------------------------------------------
    def slices(self, node: str | None = None) -> list[dict[str, Any]]:
        selector = f"{LABEL_MANAGED_BY}={self.managed_by}"
        if node:
            selector += f",{LABEL_NODE}={node}"
        items: list[dict[str, Any]] = self.cluster.get_json("resourceslices", "-l", selector)["items"]
        return sorted(items, key=lambda s: s["metadata"]["name"])

    def device_names(self, node: str) -> list[str]:
        return sorted(d["name"] for s in self.slices(node) for d in s["spec"].get("devices") or [])

    def controller(self, *extra_args: str) -> Any:
        return running_controller(
            self.cluster.kubeconfig, self.namespace, self.workdir, extra_args, managed_by=self.managed_by
        )

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def scenario(cluster: Cluster, namespace: str, cleanup: Cleanup, tmp_path: Path, overlay_crd: None) -> Scenario:
    return Scenario(cluster, namespace, cleanup, tmp_path)


@pytest.fixture
def controller(scenario: Scenario) -> Iterator[ControllerProcess]:
    with scenario.controller() as ctl:
        yield ctl


Probe = Callable[[], Any]
