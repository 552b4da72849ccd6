"""Fidelity of the `dra-cpu` and `example-*` profiles on the real control plane: the controller
publishes a node's devices from a ConfigMap mapping that names the profile, the profile's
DeviceClasses are installed as the real charts install them, and ResourceClaims written as the
real drivers' docs and demos write them are allocated by kube-scheduler from our pool (or stay
unallocated once capacity or counters run out, as they would on the real driver).

Claims follow kubernetes-sigs/dra-driver-cpu docs/user/device-attributes.md, docs/user/quickstart.md
and hack/examples/, and kubernetes-sigs/dra-example-driver demo/examples/ (cel-selector,
partitionable-devices, net-consumable-capacity, native-resource-request).

The controller is `dra-kwok run` as in every integration test (the profiles are built in); the
nodes get their profiles from ConfigMap mappings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from dra_kwok.core.profiles.base import Profile
from dra_kwok.core.profiles.cpu import DRA_CPU
from dra_kwok.core.profiles.example import EXAMPLE_CPU, EXAMPLE_GPU, EXAMPLE_NET
from tests.integration.conftest import Scenario
from tests.support.cluster import KubectlError
from tests.support.controller import ControllerProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

TIMEOUT = 60.0  # seconds per scheduling step; a few seconds on an idle machine
PAUSE = "registry.k8s.io/pause:3.10"


class Bench:
    """One test's node published with one profile, that profile's DeviceClasses, and helpers for
    claims and pods on the node."""

    def __init__(self, scenario: Scenario, controller: ControllerProcess) -> None:
        self.scenario = scenario
        self.cluster = scenario.cluster
        self.ns = scenario.namespace
        self.controller = controller
        self.node = scenario.unique("kwok-profile")
        self.pool = f"{self.node}-device-pool"
        self.driver = ""

    def publish(self, profile: Profile, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """The node, a mapping for it with the profile, the profile's DeviceClasses; returns the
        published devices once the pool is complete."""
        self.driver = profile.driver
        for dc in profile.device_classes:
            self.scenario.cleanup.delete_later("deviceclass", dc.name)
            self.cluster.apply(dc.manifest())
        mapping = {
            "name": profile.name,
            "nodeSelector": {"matchLabels": {"dra-kwok-test": self.scenario.tag, "kubernetes.io/hostname": self.node}},
            "resourceSlice": {"profile": {"name": profile.name, "parameters": parameters}},
        }
        self.scenario.config(yaml.safe_dump({"driver": profile.driver, "mappings": [mapping]}))
        self.scenario.node(self.node)
        expected = len(profile.pool(profile.parameters.model_validate(parameters)).devices)

        def complete() -> list[dict[str, Any]] | None:
            slices = [s for s in self.scenario.slices(self.node) if s["spec"]["driver"] == self.driver]
            if not slices or {s["spec"]["pool"]["resourceSliceCount"] for s in slices} != {len(slices)}:
                return None
            devices = [d for s in slices for d in s["spec"].get("devices") or []]
            return devices if len(devices) == expected else None

        return wait_until(complete, timeout=30, what=f"{profile.name}'s pool on {self.node}", describe=self.describe)

    # --- claims and pods -------------------------------------------------------------------------
    def claim(self, name: str, *requests: dict[str, Any], constraints: list[Any] | None = None) -> dict[str, Any]:
        devices: dict[str, Any] = {"requests": list(requests)}
        if constraints:
            devices["constraints"] = constraints
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"devices": devices},
        }

    def pod(self, name: str, claim: str, cpu: str = "10m") -> dict[str, Any]:
        """A pod on our node using ResourceClaim `claim`; `cpu` is the container's request (the
        CPU driver's examples repeat a claim's CPUs there)."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": self.node},
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "c",
                        "image": PAUSE,
                        "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}, "claims": [{"name": "dev"}]},
                    }
                ],
                "resourceClaims": [{"name": "dev", "resourceClaimName": claim}],
            },
        }

    def run(self, pod: str, claim: dict[str, Any], cpu: str = "10m") -> list[dict[str, Any]]:
        """Creates `claim` and a pod using it; once the pod runs on our node, the allocation's
        results (each from our driver and pool)."""
        self.cluster.apply(claim, self.pod(pod, claim["metadata"]["name"], cpu))
        self.wait_running(pod)
        results = self.results(claim["metadata"]["name"])
        assert results, self.describe()
        for r in results:
            assert (r["driver"], r["pool"]) == (self.driver, self.pool), r
        return results

    def stays_pending(self, pod: str, claim: dict[str, Any], cpu: str = "10m") -> None:
        """Creates `claim` and a pod using it; the scheduler finds no devices for it."""
        self.cluster.apply(claim, self.pod(pod, claim["metadata"]["name"], cpu))

        def unschedulable() -> dict[str, Any] | None:
            conds = ((self.get("pod", pod) or {}).get("status") or {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "PodScheduled" and c["reason"] == "Unschedulable"), None)

        wait_until(unschedulable, timeout=TIMEOUT, what=f"pod {pod} to be unschedulable", describe=self.describe)
        assert self.allocation(claim["metadata"]["name"]) is None, self.describe()
        assert not (self.get("pod", pod) or {})["spec"].get("nodeName"), self.describe()

    def delete_pod(self, pod: str, claim: str) -> None:
        self.cluster.kubectl("delete", "pod", pod, "-n", self.ns, "--wait=false")
        wait_until(lambda: self.allocation(claim) is None, timeout=TIMEOUT, what=f"claim {claim} to be deallocated",
                   describe=self.describe)  # fmt: skip

    def wait_running(self, *pods: str) -> None:
        def running() -> bool:
            objs = [self.get("pod", p) or {} for p in pods]
            return all(
                o.get("status", {}).get("phase") == "Running" and o["spec"].get("nodeName") == self.node for o in objs
            )

        wait_until(running, timeout=TIMEOUT, what=f"pods {', '.join(pods)} to run on {self.node}",
                   describe=self.describe)  # fmt: skip

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.cluster.get_json(kind, name, "-n", self.ns)
        except KubectlError as e:
            if "NotFound" in e.stderr:
                return None
            raise
        return obj

    def allocation(self, claim: str) -> dict[str, Any] | None:
        return ((self.get("resourceclaim", claim) or {}).get("status") or {}).get("allocation")

    def results(self, claim: str) -> list[dict[str, Any]]:
        return list(((self.allocation(claim) or {}).get("devices") or {}).get("results") or [])

    def devices(self) -> dict[str, dict[str, Any]]:
        return {
            d["name"]: d
            for s in self.scenario.slices(self.node)
            if s["spec"]["driver"] == self.driver
            for d in s["spec"].get("devices") or []
        }

    def describe(self) -> str:
        out = []
        for kind in ("pods", "resourceclaims"):
            try:
                out.append(self.cluster.kubectl("get", kind, "-n", self.ns, "-o", "yaml"))
            except Exception as e:
                out.append(f"{kind}: {e}")
        try:
            out.append(json.dumps(self.scenario.slices(self.node), indent=1)[:20000])
        except Exception as e:
            out.append(f"slices: {e}")
        out.append(self.controller.log()[-5000:])
        return "\n---\n".join(out)


@pytest.fixture
def bench(scenario: Scenario, controller: ControllerProcess) -> Bench:
    """The conftest's controller: `dra-kwok run`, as every integration test starts it."""
    return Bench(scenario, controller)


def capacity_request(device_class: str, requests: dict[str, str], name: str = "req", **more: Any) -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": device_class, "capacity": {"requests": requests}, **more}}


def cel(expression: str) -> list[dict[str, Any]]:
    return [{"cel": {"expression": expression}}]


# --- dra-cpu ----------------------------------------------------------------------------------------
def test_dra_cpu_grouped_numa_devices_are_shared_until_their_cpus_are_used_up(bench: Bench) -> None:
    # One socket, two NUMA nodes of 2 cores x 2 threads: cpudevnuma000 and cpudevnuma001, 4 CPUs each.
    devices = bench.publish(DRA_CPU, {"coresPerSocket": 4})
    assert {d["name"]: d["capacity"] for d in devices} == {
        "cpudevnuma000": {"dra.cpu/cpu": {"value": "4"}},
        "cpudevnuma001": {"dra.cpu/cpu": {"value": "4"}},
    }
    numa0 = 'device.attributes["resource.kubernetes.io"].numaNode == 0'  # docs/user/device-attributes.md
    # "cpus-on-numa0", with all 4 CPUs of NUMA node 0; the pod repeats them in its cpu request.
    claim = bench.claim("cpus-on-numa0", capacity_request("dra.cpu", {"dra.cpu/cpu": "4"}, selectors=cel(numa0)))
    [result] = bench.run("numa0", claim, cpu="4")
    assert result["device"] == "cpudevnuma000"
    assert result["consumedCapacity"] == {"dra.cpu/cpu": "4"} and result.get("shareID"), result
    # NUMA node 0 has no CPU left.
    more = bench.claim("one-more-on-numa0", capacity_request("dra.cpu", {"dra.cpu/cpu": "1"}, selectors=cel(numa0)))
    bench.stays_pending("numa0-more", more, cpu="1")
    # docs/user/quickstart.md "exclusive-cpus": two CPUs from any group, here NUMA node 1.
    [result] = bench.run("quickstart", bench.claim("exclusive-cpus", capacity_request("dra.cpu", {"dra.cpu/cpu": "2"})),
                         cpu="2")  # fmt: skip
    assert result["device"] == "cpudevnuma001" and result["consumedCapacity"] == {"dra.cpu/cpu": "2"}


def test_dra_cpu_individual_cpus_are_allocated_by_count_and_numa_selector(bench: Bench) -> None:
    # Two sockets of 4 cores x 2 threads, one NUMA node each, CPU 0 reserved: 15 devices.
    published = bench.publish(DRA_CPU, {"sockets": 2, "coresPerSocket": 4, "numaNodesPerSocket": 1,
                                        "cpuDeviceMode": "individual", "reservedCPUs": "0"})  # fmt: skip
    assert len(published) == 15 and "cpudev014" in {d["name"] for d in published}
    numa1 = 'device.attributes["resource.kubernetes.io"].numaNode == 1'
    # hack/examples/pod_with_resource_claim_individual_mode.yaml "cpu-request-4-cpus", on NUMA node 1.
    request = {"name": "req-dummy", "exactly": {"deviceClassName": "dra.cpu", "count": 4, "selectors": cel(numa1)}}
    results = bench.run("four", bench.claim("cpu-request-4-cpus", request), cpu="4")
    devices = bench.devices()
    cpus = [devices[r["device"]]["attributes"] for r in results]
    assert len({r["device"] for r in results}) == 4
    assert all(a["resource.kubernetes.io/numaNode"] == {"int": 1} and a["dra.cpu/socketID"] == {"int": 1} for a in cpus)
    # NUMA node 1 has 8 CPUs (4-7 and their siblings 12-15): 4 are left, 5 cannot be had.
    request = {"name": "req-dummy", "exactly": {"deviceClassName": "dra.cpu", "count": 5, "selectors": cel(numa1)}}
    bench.stays_pending("five", bench.claim("cpu-request-5-cpus", request), cpu="5")


# --- example-gpu ----------------------------------------------------------------------------------
def test_example_gpu_is_allocated_by_the_cel_selector_demo(bench: Bench) -> None:
    devices = bench.publish(EXAMPLE_GPU, {})
    assert sorted(d["name"] for d in devices) == [f"gpu-{i}" for i in range(8)]
    # demo/examples/cel-selector/cel-selector.yaml
    request = {
        "name": "gpu",
        "exactly": {
            "deviceClassName": "gpu.example.com",
            "selectors": cel("device.attributes['gpu.example.com'].model == 'LATEST-GPU-MODEL'")
            + cel("device.capacity['gpu.example.com'].memory.compareTo(quantity('4Gi')) >= 0"),
        },
    }
    [result] = bench.run("pod0", bench.claim("single-gpu-cel", request))
    assert result["device"] in {f"gpu-{i}" for i in range(8)}


def test_example_gpu_partitions_and_the_full_gpu_exhaust_the_shared_counters(bench: Bench) -> None:
    devices = bench.publish(EXAMPLE_GPU, {"numDevices": 1, "gpuPartitions": 2})
    assert sorted(d["name"] for d in devices) == ["gpu-0-full", "gpu-0-partition-0", "gpu-0-partition-1"]
    gpu = "gpu.example.com"
    # The full GPU (the only device with all 80Gi) takes every counter: no partition is left.
    whole = {"name": "gpu", "exactly": {"deviceClassName": gpu,
             "selectors": cel(f"device.capacity['{gpu}'].memory.compareTo(quantity('80Gi')) >= 0")}}  # fmt: skip
    [result] = bench.run("whole", bench.claim("whole-gpu", whole))
    assert result["device"] == "gpu-0-full"
    partition = {"name": "gpu", "exactly": {"deviceClassName": gpu,
                 "selectors": cel(f"device.capacity['{gpu}'].memory.compareTo(quantity('80Gi')) < 0")}}  # fmt: skip
    bench.stays_pending("part", bench.claim("one-partition", partition))
    # Freed, the counters give the waiting pod a partition; then the demo's claim of 2 partitions
    # (demo/examples/partitionable-devices) finds one partition's worth left, and waits.
    bench.delete_pod("whole", "whole-gpu")
    bench.wait_running("part")
    [result] = bench.results("one-partition")
    assert result["device"] in {"gpu-0-partition-0", "gpu-0-partition-1"}
    two = {"name": "gpu-partition", "exactly": {"deviceClassName": gpu, "count": 2}}
    bench.stays_pending("pod0", bench.claim("gpu-partitions", two))
    # One more partition fits exactly.
    [last] = bench.run("last", bench.claim("last-partition", partition))
    assert {result["device"], last["device"]} == {"gpu-0-partition-0", "gpu-0-partition-1"}


# --- example-net ----------------------------------------------------------------------------------
def test_example_net_nic_is_shared_until_its_bandwidth_is_used_up(bench: Bench) -> None:
    [nic] = bench.publish(EXAMPLE_NET, {"numDevices": 1})
    assert nic["name"] == "nic-0" and nic["allowMultipleAllocations"] is True
    net = "net.example.com"
    # demo/examples/net-consumable-capacity: 10G in / 5G out and 5G in / 5G out share the one NIC.
    for pod, claim, ingress in (("pod0", "nic-10g-in-5g-out", "10G"), ("pod1", "nic-5g-in-5g-out", "5G")):
        request = capacity_request(net, {"ingressBandwidth": ingress, "egressBandwidth": "5G"}, name="nic")
        [result] = bench.run(pod, bench.claim(claim, request))
        assert result["device"] == "nic-0" and result.get("shareID"), result
        consumed = result["consumedCapacity"]
        assert (consumed["ingressBandwidth"], consumed["egressBandwidth"]) == (ingress, "5G"), result
        assert consumed.get("vfs", "1") == "1", result  # requestPolicy default and only valid value
    # 15G of 100G ingress are taken: 90G more do not fit.
    request = capacity_request(net, {"ingressBandwidth": "90G", "egressBandwidth": "5G"}, name="nic")
    bench.stays_pending("pod2", bench.claim("nic-90g-in", request))


# --- example-cpu ----------------------------------------------------------------------------------
def test_example_cpu_numa_devices_give_out_their_cpu_capacity(bench: Bench) -> None:
    devices = bench.publish(EXAMPLE_CPU, {"numaNodes": 2, "cpusPerNUMANode": 1})
    assert sorted(d["name"] for d in devices) == ["numa-0", "numa-1"]
    cpu = "cpu.example.com"
    # demo/examples/native-resource-request "two-cpus": two requests of 1 CPU; one per NUMA device here.
    claim = bench.claim(
        "two-cpus",
        capacity_request(cpu, {"cpu.example.com/cpu": "1"}, name="cpu0"),
        capacity_request(cpu, {"cpu.example.com/cpu": "1"}, name="cpu1"),
    )
    results = bench.run("pod0", claim)
    assert sorted(r["device"] for r in results) == ["numa-0", "numa-1"]
    assert all(r["consumedCapacity"] == {"cpu.example.com/cpu": "1"} for r in results), results
    bench.stays_pending("pod1", bench.claim("one-more", capacity_request(cpu, {"cpu.example.com/cpu": "1"})))
