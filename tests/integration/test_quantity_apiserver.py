"""Quantities on a real apiserver: every generated string our parser accepts is accepted there and
stored in the canonical form `core.quantity` predicts, and every string it refuses is refused.

Accepted strings travel in batches, as the capacities of one ResourceSlice (32 per device, up to
128 devices), created for real, read back and deleted; refused ones are sent one by one with
dryRun, since the apiserver stops decoding at the first bad quantity.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from dra_kwok.core.quantity import canonical_quantity, quantity_problem
from tests import strategies as gen
from tests.support.cluster import Cluster

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "resource.k8s.io", "v1", "resourceslices"
PER_DEVICE = 32

# The unit tests' edge cases, so they are checked against the real thing too.
EDGES = [
    "100n",
    "5u",
    "1m",
    "1",
    "1k",
    "1M",
    "1G",
    "1T",
    "1P",
    "1E",
    "1Ki",
    "1Mi",
    "1Gi",
    "1Ti",
    "1Pi",
    "1Ei",
    "1e3",
    "1E-3",
    "1.3E+6",
    "+1",
    "-1",
    ".5",
    "1.",
    "1.G",
    "01",
    "-01",
    "3.001n",
    "0.00000012345",
    "0.5e-9",
    "9Ei",
    "9223372036854775807Ki",
    "0.000000000001Ki",
    "100.035Ki",
    "1.5",
    "1.5Gi",
    "1000m",
    "0.5Ki",
    "1.1Ki",
    "1000e0",
    "1e1",
    "0.1n",
    "00",
    "Gi",
    "Ti",
    "+",
    "-",
    ".",
    "-.",
    "+.",
    "e5",
    "e-9",
    "1000E",
    "8192Ei",
    "1e4294967296",
    "1e5000",
    " 16Gi ",
    "1  ",
    "1\t",
    "\xa01",
    "Pi",
    "Ei",
    "e-10",
    ".e-10",
    "1e",
    "1K",
    "1ee3",
    "1e+",
    "16gi",
    "16GB",
    "0x10",
    "--1",
    "1.2.3",
    "",
    " ",
    "16 Gi",
    "\x1c1",
]


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> k8s_client.CustomObjectsApi:
    return k8s_client.CustomObjectsApi(cluster.api_client())


def _slice(name: str, quantities: list[str]) -> dict[str, Any]:
    devices = [
        {"name": f"d{i}", "capacity": {f"c{j}": {"value": q} for j, q in enumerate(chunk)}}
        for i, chunk in enumerate(quantities[k : k + PER_DEVICE] for k in range(0, len(quantities), PER_DEVICE))
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": "quantities.example.com",
            "allNodes": True,
            "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def _stored(api: k8s_client.CustomObjectsApi, name: str, quantities: list[str]) -> Iterator[tuple[str, str]]:
    """(written, stored) for each quantity, from a slice created, read back and deleted."""
    api.create_cluster_custom_object(GROUP, VERSION, PLURAL, _slice(name, quantities))
    try:
        got = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    finally:
        api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    for i, device in enumerate(got["spec"]["devices"]):
        for j, q in enumerate(quantities[i * PER_DEVICE : (i + 1) * PER_DEVICE]):
            yield q, device["capacity"][f"c{j}"]["value"]


def _refused(api: k8s_client.CustomObjectsApi, quantity: str) -> str | None:
    """The apiserver's error for a slice holding this quantity, or None if it accepts it."""
    try:
        api.create_cluster_custom_object(GROUP, VERSION, PLURAL, _slice("refused", [quantity]), dry_run="All")
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return str(json.loads(exc.body).get("message"))
    return None


def check(api: k8s_client.CustomObjectsApi, name: str, quantities: list[str]) -> None:
    accepted = [q for q in dict.fromkeys(quantities) if quantity_problem(q) is None]
    refused = [q for q in dict.fromkeys(quantities) if quantity_problem(q) is not None]
    try:
        stored = list(_stored(api, name, accepted))
    except ApiException as exc:  # name the strings it refuses, one request each
        refused_there = {q: why for q in accepted if (why := _refused(api, q)) is not None}
        assert refused_there, exc.body
        pytest.fail(f"the apiserver refuses what the parser accepts: {refused_there!r}")
    wrong = [(q, there, canonical_quantity(q)) for q, there in stored if there != canonical_quantity(q)]
    assert not wrong, "(written, stored by the apiserver, predicted): " + repr(wrong)
    admitted = [q for q in refused if _refused(api, q) is None]
    assert not admitted, f"the apiserver accepts what the parser refuses: {admitted!r}"


def test_the_edge_cases(api: k8s_client.CustomObjectsApi) -> None:
    check(api, "quantity-edges", EDGES)


# No shrinking: each example costs API requests, and the failure message lists every bad string.
@settings(
    max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, phases=[Phase.generate]
)
@given(st.lists(gen.quantity_strings(), min_size=300, max_size=600, unique=True))
def test_generated_quantities(api: k8s_client.CustomObjectsApi, quantities: list[str]) -> None:
    assume(sum(quantity_problem(q) is None for q in quantities) >= 100)
    # about 40 refused strings per batch, each a request: keep the batch's refused ones bounded
    refused = [q for q in quantities if quantity_problem(q) is not None][:40]
    check(api, "quantity-batch", [q for q in quantities if quantity_problem(q) is None] + refused)
