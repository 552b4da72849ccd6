"""The `dra-cpu` profile publishes what kubernetes-sigs/dra-driver-cpu (main@de98098) publishes:
per-CPU devices or NUMA/socket/machine groups with consumable `dra.cpu/cpu`, with the driver's
names, attribute names and types (pkg/device/builder.go, attributes.go), its device order and
its handling of reserved CPUs, and the chart's DeviceClass."""

from __future__ import annotations

from typing import Any

import pytest

from dra_kwok.core.profiles.cpu import DRA_CPU, parse_cpuset
from tests.unit.core.profiles import support

NUMA = "resource.kubernetes.io/numaNode"


def config(parameters: dict[str, Any]) -> dict[str, Any]:
    return support.mapping_config(DRA_CPU, parameters)


def devices(parameters: dict[str, Any], node: str = "node-a") -> list[dict[str, Any]]:
    """The devices `node` gets from a mapping using the profile (validated and rendered)."""
    return support.published(DRA_CPU, parameters, node).devices


def attr(device: dict[str, Any], name: str) -> Any:
    [value] = device["attributes"][name].values()
    return value


def issues_for(parameters: dict[str, Any]) -> list[str]:
    return support.error_lines(DRA_CPU, parameters)


# --- grouped mode (the driver's default) ---------------------------------------------------------
def test_the_defaults_publish_the_docs_sample_slice_two_numa_groups_of_64_cpus() -> None:
    """docs/user/device-attributes.md, "Grouped mode (default; grouping by NUMA node)", without
    the pcieRoot that only --expose-pcie-roots adds."""
    assert devices({}) == [
        {
            "name": f"cpudevnuma00{n}",
            "allowMultipleAllocations": True,
            "attributes": {
                "dra.cpu/smtEnabled": {"bool": True},
                "dra.cpu/numCPUs": {"int": 64},
                NUMA: {"int": n},
                "dra.cpu/socketID": {"int": 0},
                "dra.net/numaNode": {"int": n},
                "dra.cpu/numaNodeID": {"int": n},
            },
            "capacity": {"dra.cpu/cpu": {"value": "64"}},
        }
        for n in (0, 1)
    ]


def test_example_parameters_pass_validation_and_render() -> None:
    out = devices(DRA_CPU.example)
    assert len(out) == 2 * 8 * 2 - 2  # 32 CPUs, 0-1 reserved
    assert len({d["name"] for d in out}) == len(out)


def test_socket_groups_carry_socket_numcpus_and_smt_only_and_lose_reserved_cpus() -> None:
    out = devices(
        {"sockets": 2, "coresPerSocket": 16, "numaNodesPerSocket": 2, "groupBy": "socket", "reservedCPUs": "0-1,32"}
    )
    # CPUs 0, 1 (socket 0, first threads) and 32 (the sibling of cpu 0) are reserved.
    assert [d["name"] for d in out] == ["cpudevsocket000", "cpudevsocket001"]
    assert out[0]["attributes"] == {
        "dra.cpu/socketID": {"int": 0},
        "dra.cpu/numCPUs": {"int": 29},
        "dra.cpu/smtEnabled": {"bool": True},
    }
    assert out[0]["capacity"] == {"dra.cpu/cpu": {"value": "29"}}
    assert attr(out[1], "dra.cpu/numCPUs") == 32 and out[1]["allowMultipleAllocations"] is True


def test_the_machine_group_is_one_device_of_every_free_cpu() -> None:
    [machine] = devices(
        {
            "sockets": 2,
            "coresPerSocket": 8,
            "threadsPerCore": 1,
            "groupBy": "machine",
            "numaNodesPerSocket": 1,
            "reservedCPUs": "0",
        }
    )
    assert machine == {
        "name": "cpudevmachine",
        "allowMultipleAllocations": True,
        "attributes": {"dra.cpu/smtEnabled": {"bool": False}, "dra.cpu/numCPUs": {"int": 15}},
        "capacity": {"dra.cpu/cpu": {"value": "15"}},
    }


def test_a_group_whose_cpus_are_all_reserved_is_not_published() -> None:
    # 1 socket, 2 NUMA nodes of 2 cores: NUMA 0 is cores 0-1, i.e. CPUs 0, 1 and their siblings 4, 5.
    out = devices({"coresPerSocket": 4, "reservedCPUs": "0-1,4-5"})
    assert [(d["name"], attr(d, NUMA), attr(d, "dra.cpu/numCPUs")) for d in out] == [("cpudevnuma001", 1, 4)]


def test_numa_nodes_of_the_second_socket_have_its_socket_id() -> None:
    out = devices({"sockets": 2, "coresPerSocket": 8, "numaNodesPerSocket": 2})
    assert [(d["name"], attr(d, NUMA), attr(d, "dra.cpu/socketID"), attr(d, "dra.cpu/numCPUs")) for d in out] == [
        ("cpudevnuma000", 0, 0, 8),
        ("cpudevnuma001", 1, 0, 8),
        ("cpudevnuma002", 2, 1, 8),
        ("cpudevnuma003", 3, 1, 8),
    ]


# --- individual mode --------------------------------------------------------------------------------
def test_an_individual_cpu_has_the_drivers_attributes_names_and_types() -> None:
    out = devices(DRA_CPU.example)  # 2 sockets x 8 cores x 2 threads, CPUs 0-1 reserved
    first = out[0]
    assert first == {
        "name": "cpudev000",
        "attributes": {
            NUMA: {"int": 0},
            "dra.cpu/socketID": {"int": 0},
            "dra.cpu/smtEnabled": {"bool": True},
            "dra.cpu/cacheL3ID": {"int": 0},
            "dra.cpu/coreType": {"string": "standard"},
            "dra.cpu/coreID": {"int": 2},
            "dra.cpu/cpuID": {"int": 2},
            "dra.net/numaNode": {"int": 0},
            "dra.cpu/numaNodeID": {"int": 0},
        },
    }
    assert "capacity" not in first and "allowMultipleAllocations" not in first  # builder.go: neither


def test_individual_devices_put_each_cpu_next_to_its_smt_sibling_and_skip_reserved_ones() -> None:
    """builder.go cpuDeviceInfos: groups of a CPU and its sibling ordered by their lowest CPU id;
    a CPU whose sibling is reserved stands alone (here 16 and 17, siblings of 0 and 1)."""
    out = devices(DRA_CPU.example)
    order = [attr(d, "dra.cpu/cpuID") for d in out]
    assert order == [c for core in range(2, 16) for c in (core, core + 16)] + [16, 17]
    assert [d["name"] for d in out] == [f"cpudev{i:03d}" for i in range(30)]
    by_cpu = {attr(d, "dra.cpu/cpuID"): d for d in out}
    # Siblings share core, socket, NUMA node and L3; coreID counts within the socket.
    assert [attr(by_cpu[c], "dra.cpu/coreID") for c in (10, 26)] == [2, 2]
    assert {attr(by_cpu[c], "dra.cpu/socketID") for c in (10, 26)} == {1}
    assert {attr(by_cpu[c], NUMA) for c in (10, 26)} == {1}
    assert {attr(by_cpu[c], "dra.cpu/cacheL3ID") for c in (10, 26)} == {1}


def test_without_smt_cpus_are_in_id_order_and_l3_caches_split_a_socket() -> None:
    out = devices(
        {
            "coresPerSocket": 8,
            "threadsPerCore": 1,
            "numaNodesPerSocket": 1,
            "l3CachesPerSocket": 2,
            "cpuDeviceMode": "individual",
        }
    )
    assert [attr(d, "dra.cpu/cpuID") for d in out] == list(range(8))
    assert [attr(d, "dra.cpu/cacheL3ID") for d in out] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {attr(d, "dra.cpu/smtEnabled") for d in out} == {False}


def test_two_nodes_get_the_same_devices_there_are_no_per_node_ids() -> None:
    assert devices(DRA_CPU.example, "node-a") == devices(DRA_CPU.example, "node-b")


# --- parameters -------------------------------------------------------------------------------------
def test_parse_cpuset_reads_linux_cpu_lists() -> None:
    assert parse_cpuset("") == []
    assert parse_cpuset("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpuset(" 1 , 1-2 ") == [1, 2]
    for bad in ("a", "3-1", "-1", "1-"):
        with pytest.raises(ValueError):
            parse_cpuset(bad)


@pytest.mark.parametrize(
    ("parameters", "field", "words"),
    [
        ({"reservedCPUs": "0-200"}, "reservedCPUs", "CPU 128 does not exist"),
        ({"reservedCPUs": "0-127"}, "reservedCPUs", "every CPU"),
        ({"reservedCPUs": "x"}, "reservedCPUs", "not a CPU number"),
        ({"numaNodesPerSocket": 3}, "numaNodesPerSocket", "divide coresPerSocket (64)"),
        ({"l3CachesPerSocket": 5}, "l3CachesPerSocket", "divide coresPerSocket"),
        ({"threadsPerCore": 4}, "threadsPerCore", "1 or 2"),
        ({"sockets": 0}, "sockets", "greater than or equal to 1"),
        ({"cpuDeviceMode": "per-cpu"}, "cpuDeviceMode", "'grouped' or 'individual'"),
        ({"groupBy": "numa"}, "groupBy", "'numanode', 'socket' or 'machine'"),
        ({"sockets": 8, "coresPerSocket": 128, "cpuDeviceMode": "individual"}, "cpuDeviceMode", "2048 CPUs"),
        ({"numaNodes": 2}, "numaNodes", "Extra inputs"),
    ],
)
def test_bad_parameters_name_their_field(parameters: dict[str, Any], field: str, words: str) -> None:
    found = issues_for(parameters)
    prefix = f"mappings[0].resourceSlice.profile.parameters.{field}: "
    assert any(f.startswith(prefix) and words in f for f in found), found


def test_the_device_class_is_the_charts() -> None:
    """deployment/helm/dra-driver-cpu/templates/deviceclass.yaml."""
    assert [c.manifest() for c in DRA_CPU.device_classes] == [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": "dra.cpu"},
            "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.cpu"'}}]},
        }
    ]
    assert DRA_CPU.driver == "dra.cpu" and "de98098690f25e59d781c1659b5c3e0b0a210c2a" in DRA_CPU.source
