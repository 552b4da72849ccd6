"""The DRANodeOverlay CRD on a real apiserver: it installs, admits every overlay the controller
accepts without pruning a field, rejects bad overlays at admission with the field named, and takes
the status the controller writes.

Objects are created with dryRun=All and strict field validation (as kubectl does), so nothing is
left behind except the CRD itself, which other tests apply too (server-side apply, idempotent).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from dra_kwok.core.models import OVERLAY_GROUP, OVERLAY_KIND, OVERLAY_PLURAL, OVERLAY_VERSION
from dra_kwok.core.overlay import load_overlay
from dra_kwok.crd import CRD_FILE, CRD_NAME
from tests.support.cluster import Cleanup, Cluster
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DRIVER = "gpu.example.com"

# Typed and shorthand attributes and capacities, counters, taints, count, binding conditions.
VALID: dict[str, Any] = {
    "apiVersion": f"{OVERLAY_GROUP}/{OVERLAY_VERSION}",
    "kind": OVERLAY_KIND,
    "metadata": {"name": "valid"},
    "spec": {
        "weight": 10,
        "requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.48xlarge"]},
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["4"]},
            {"key": "example.com/gpu", "operator": "Exists"},
        ],
        "capacity": {f"{DRIVER}/device": "9"},
        "resourceSlices": [
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "spec": {
                    "driver": DRIVER,
                    "sharedCounters": [{"name": "gpu-counters", "counters": {"memory": {"value": "80Gi"}, "sms": 132}}],
                    "devices": [
                        {
                            "name": "gpu",
                            "count": 8,
                            "driver": DRIVER,
                            "attributes": {
                                "model": "H100",
                                "index": 0,
                                "healthy": True,
                                "cudaVersion": {"version": "12.2.0"},
                                "memoryGi": {"int": 80},
                                "mig": {"bool": False},
                                "vendor": {"string": "nvidia"},
                                f"{DRIVER}/family": "hopper",
                            },
                            "capacity": {
                                "memory": "80Gi",
                                "cores": 8,
                                "bandwidth": {"value": "100G"},
                                "shared": {
                                    "value": "10",
                                    "requestPolicy": {"default": "1", "validRange": {"min": "1", "step": "1"}},
                                },
                            },
                            "allowMultipleAllocations": True,
                            "taints": [
                                {"key": "example.com/unhealthy", "value": "true", "effect": "NoSchedule"},
                                {"key": "maintenance", "effect": "None"},
                            ],
                        },
                        {
                            "name": "slice",
                            "consumesCounters": [
                                {"counterSet": "gpu-counters", "counters": {"memory": "10Gi", "sms": {"value": 16}}}
                            ],
                            "bindsToNode": True,
                            "bindingConditions": ["example.com/ready"],
                            "bindingFailureConditions": ["example.com/failed"],
                        },
                    ],
                },
            }
        ],
    },
}


# --- helpers -----------------------------------------------------------------------------------------


class _Delete:
    """Marks a key to remove."""


DELETE = _Delete()
Path_ = tuple[str | int, ...]
TEMPLATE: Path_ = ("spec", "resourceSlices", 0)
TSPEC: Path_ = (*TEMPLATE, "spec")
DEV0: Path_ = (*TSPEC, "devices", 0)
DEV1: Path_ = (*TSPEC, "devices", 1)
SETS: Path_ = (*TSPEC, "sharedCounters")


def _set(obj: Any, path: Path_, value: Any) -> None:
    for step in path[:-1]:
        obj = obj[step]
    last = path[-1]
    if isinstance(value, _Delete):
        del obj[last]
    elif isinstance(obj, list) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


def field(path: Path_) -> str:
    """The apiserver's spelling of a field path: spec.resourceSlices[0].spec.driver."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


@dataclass(frozen=True)
class Bad:
    """One wrong thing: `changes` applied to VALID make the apiserver reject it naming `field`."""

    id: str
    changes: tuple[tuple[Path_, Any], ...]
    field: str
    # False where admission is stricter than the controller (the controller accepts it).
    model_rejects: bool = True

    def apply(self, obj: dict[str, Any]) -> None:
        for path, value in self.changes:
            _set(obj, path, copy.deepcopy(value))

    def overlay(self) -> dict[str, Any]:
        obj = copy.deepcopy(VALID)
        obj["metadata"]["name"] = f"bad-{self.id}"
        self.apply(obj)
        return obj


def bad(id: str, path: Path_, value: Any, at: Path_ | None = None, *, model_rejects: bool = True) -> Bad:
    return Bad(id, ((path, value),), field(at if at is not None else path), model_rejects)


REQ: Path_ = ("spec", "requirements")

# Checked by the OpenAPI schema (types, enums, formats, limits): reported all at once.
SCHEMA_CASES = [
    bad("operator", (*REQ, 0, "operator"), "Equals"),
    bad("requirement-key", (*REQ, 0, "key"), "instance type"),
    bad("weight-0", ("spec", "weight"), 0),
    bad("weight-10001", ("spec", "weight"), 10001),
    bad("weight-string", ("spec", "weight"), "10"),
    bad("overlay-capacity-quantity", ("spec", "capacity", f"{DRIVER}/device"), "eight"),
    bad("template-api-version", (*TEMPLATE, "apiVersion"), "resource.k8s.io/v1beta1"),
    bad("template-kind", (*TEMPLATE, "kind"), "Pod"),
    bad("driver-slash", (*TSPEC, "driver"), "karpenter.sh/dra-kwok-driver"),
    bad("driver-uppercase", (*TSPEC, "driver"), "GPU.example.com"),
    bad("driver-too-long", (*TSPEC, "driver"), "a" * 64),
    bad("driver-missing", (*TSPEC, "driver"), DELETE),
    bad("device-name-underscore", (*DEV0, "name"), "nvidia_h100"),
    bad("device-name-missing", (*DEV1, "name"), DELETE),
    bad("count-0", (*DEV0, "count"), 0),
    bad("count-too-many", (*DEV0, "count"), 1025),
    bad("attributes-too-many", (*DEV0, "attributes"), {f"a{i}": i for i in range(33)}),
    bad("attribute-two-types", (*DEV0, "attributes", "vendor"), {"string": "nvidia", "int": 1}),
    bad("attribute-unknown-type", (*DEV0, "attributes", "vendor"), {"text": "nvidia"}),
    bad("attribute-string-too-long", (*DEV0, "attributes", "model"), "x" * 65),
    bad("attribute-typed-string-too-long", (*DEV0, "attributes", "vendor"), {"string": "x" * 65}),
    bad("attribute-float", (*DEV0, "attributes", "model"), 9.5),
    bad("attribute-int-as-string", (*DEV0, "attributes", "memoryGi"), {"int": "80"}),
    bad("attribute-string-as-int", (*DEV0, "attributes", "vendor"), {"string": 5}),
    bad("attribute-version-not-semver", (*DEV0, "attributes", "cudaVersion"), {"version": "12.2"}),
    bad("capacity-quantity", (*DEV0, "capacity", "memory"), "80 GiB"),
    bad("capacity-value-quantity", (*DEV0, "capacity", "bandwidth"), {"value": "fast"}),
    bad(
        "capacity-without-value",
        (*DEV0, "capacity", "bandwidth"),
        {"valu": "100G"},
        (*DEV0, "capacity", "bandwidth", "value"),
    ),
    bad("taint-effect", (*DEV0, "taints", 0, "effect"), "PreferNoSchedule"),
    bad("taint-key", (*DEV0, "taints", 0, "key"), "bad key"),
    bad("taint-value", (*DEV0, "taints", 0, "value"), "not a label value"),
    # The CRD admits the most any supported version takes (16 taints from 1.35, 1.34's 32 counters
    # in any number of sets or consumptions); the controller checks the version it publishes for.
    bad("taints-too-many", (*DEV0, "taints"), [{"key": f"k{i}", "effect": "None"} for i in range(17)]),
    bad("binding-conditions-too-many", (*DEV1, "bindingConditions"), [f"c{i}" for i in range(5)]),
    bad("binding-condition-name", (*DEV1, "bindingConditions"), ["not a condition"], (*DEV1, "bindingConditions", 0)),
    # The apiserver rejects duplicates in a ResourceSlice too, and so does the core.
    bad("binding-conditions-duplicate", (*DEV1, "bindingConditions"), ["a", "a"], (*DEV1, "bindingConditions", 1)),
    bad(
        "consumes-too-many",
        (*DEV1, "consumesCounters"),
        [{"counterSet": f"s{i}", "counters": {"a": 1}} for i in range(33)],
    ),
    bad(
        "consumes-same-set-twice",
        (*DEV1, "consumesCounters"),
        [{"counterSet": "gpu-counters", "counters": {"sms": 1}}] * 2,
        (*DEV1, "consumesCounters", 1),
    ),
    bad("consumes-set-name", (*DEV1, "consumesCounters", 0, "counterSet"), "GPU_counters"),
    bad("counter-set-name", (*SETS, 0, "name"), "GPU_counters"),
    bad("counter-set-empty", (*SETS, 0, "counters"), {}),
    bad("counter-quantity", (*SETS, 0, "counters", "sms"), "many"),
    bad("counter-sets-too-many", SETS, [{"name": f"s{i}", "counters": {"a": 1}} for i in range(33)]),
    bad("counter-sets-same-name", (*SETS, 1), {"name": "gpu-counters", "counters": {"a": 1}}),
    bad("requirements-too-many", REQ, [{"key": f"k{i}", "operator": "Exists"} for i in range(101)]),
    bad("requirements-missing", REQ, DELETE),
    bad("spec-missing", ("spec",), DELETE),
    # Stricter than the controller: Karpenter-style label values, and a bound on the templates.
    bad("requirement-value", (*REQ, 0, "values"), ["g5 48xlarge"], (*REQ, 0, "values", 0), model_rejects=False),
    bad(
        "templates-too-many",
        ("spec", "resourceSlices"),
        [{"spec": {"driver": f"d{i}.example.com"}} for i in range(17)],
        model_rejects=False,
    ),
]

# Checked by CEL rules, which the apiserver evaluates only once the schema checks pass.
CEL_CASES = [
    bad("in-without-values", (*REQ, 0, "values"), DELETE),
    bad("in-with-empty-values", (*REQ, 0, "values"), []),
    bad("exists-with-values", (*REQ, 2, "values"), ["yes"]),
    bad("gt-not-an-integer", (*REQ, 1, "values"), ["4.5"]),
    bad("gt-negative", (*REQ, 1, "values"), ["-1"]),
    bad("gt-two-values", (*REQ, 1, "values"), ["4", "5"]),
    bad("gt-without-values", (*REQ, 1, "values"), DELETE),
    bad("capacity-cpu", ("spec", "capacity", "cpu"), "4", ("spec", "capacity")),
    bad("capacity-pods", ("spec", "capacity", "pods"), "110", ("spec", "capacity")),
    bad("capacity-name", ("spec", "capacity", "not a resource"), "1", ("spec", "capacity")),
    bad("template-node-name", (*TSPEC, "nodeName"), "node-1"),
    bad("template-pool", (*TSPEC, "pool"), {"name": "pool", "generation": 1, "resourceSliceCount": 1}),
    bad("template-node-selector", (*TSPEC, "nodeSelector"), {"nodeSelectorTerms": [{}]}),
    bad("template-all-nodes", (*TSPEC, "allNodes"), True),
    bad("template-per-device-node-selection", (*TSPEC, "perDeviceNodeSelection"), True),
    bad("device-driver-differs", (*DEV0, "driver"), "other.example.com", (*TSPEC, "devices")),
    bad("devices-too-many", (*TSPEC, "devices", 2), {"name": "more", "count": 1024}, (*TSPEC, "devices")),
    bad("count-name-too-long", (*DEV0, "name"), "a" * 62),
    bad("binding-without-failure", (*DEV1, "bindingFailureConditions"), DELETE),
    bad("binding-failure-without-binding", (*DEV1, "bindingConditions"), DELETE, (*DEV1, "bindingFailureConditions")),
    bad("binding-overlap", (*DEV1, "bindingFailureConditions"), ["example.com/ready"]),
]


def _fixture_overlays() -> Iterator[Any]:
    """The DRANodeOverlays under tests/fixtures that the controller accepts."""
    for path in sorted(FIXTURES.rglob("*.yaml")) if FIXTURES.is_dir() else []:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("kind") == OVERLAY_KIND:
                rule, _ = load_overlay(doc)
                if rule is not None:
                    yield pytest.param(doc, id=f"{path.relative_to(FIXTURES)}#{i}")


class Overlays:
    """The DRANodeOverlay API (cluster-scoped), creating with dryRun=All and strict field validation."""

    def __init__(self, api: k8s_client.CustomObjectsApi) -> None:
        self.api = api

    def create(self, body: dict[str, Any], *, dry_run: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.api.create_cluster_custom_object(
            OVERLAY_GROUP,
            OVERLAY_VERSION,
            OVERLAY_PLURAL,
            body,
            dry_run="All" if dry_run else None,
            field_validation="Strict",
        )
        return result

    def rejection(self, body: dict[str, Any]) -> tuple[int, str]:
        """The status code and message of a create that must fail."""
        try:
            self.create(body)
        except ApiException as e:
            return e.status, str(json.loads(e.body).get("message", e.body))
        pytest.fail(f"the apiserver accepted {body['metadata']['name']}:\n{yaml.safe_dump(body)}")


@pytest.fixture(scope="module")
def overlays(cluster: Cluster) -> Overlays:
    """Installs the committed CRD (server-side apply, as other tests may) and waits until it serves."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=dra-kwok-tests",
        "-f",
        str(REPO_ROOT / CRD_FILE),
    )
    cluster.wait_established(f"crd/{CRD_NAME}", timeout=60)
    api = Overlays(k8s_client.CustomObjectsApi(cluster.api_client()))
    # Established comes a moment before the new resource is served everywhere.
    probe = {**copy.deepcopy(VALID), "metadata": {"name": "probe"}}
    wait_until(lambda: api.create(probe), timeout=30, what=f"{OVERLAY_PLURAL} to be served")
    return api


# --- tests -------------------------------------------------------------------------------------------


def test_crd_applies_idempotently(cluster: Cluster, overlays: Overlays) -> None:
    out = cluster.kubectl("apply", "--server-side", "--field-manager=dra-kwok-tests", "-f", str(REPO_ROOT / CRD_FILE))
    assert "serverside-applied" in out
    crd = cluster.get_json("crd", CRD_NAME)
    assert crd["spec"]["names"]["shortNames"] == ["dno"]


@pytest.mark.parametrize("overlay", [pytest.param(VALID, id="inline"), *_fixture_overlays()])
def test_admits_what_the_controller_accepts_without_pruning(overlays: Overlays, overlay: dict[str, Any]) -> None:
    rule, issues = load_overlay(overlay)
    assert rule is not None, issues
    created = overlays.create(overlay)
    # Nothing pruned or defaulted: every field the controller reads reaches it as written.
    assert created["spec"] == overlay["spec"]


@pytest.mark.parametrize("case", SCHEMA_CASES + CEL_CASES, ids=lambda c: c.id)
def test_rejects_at_admission_naming_the_field(overlays: Overlays, case: Bad) -> None:
    obj = case.overlay()
    rule, issues = load_overlay(obj) if "spec" in obj else (None, [])
    if case.model_rejects:
        assert rule is None, f"the controller accepts what admission rejects: {issues}"
    else:
        assert rule is not None, f"the controller now rejects {case.id} too: set model_rejects=True ({issues})"
    status, message = overlays.rejection(obj)
    assert status == 422, message
    assert case.field in message, f"the rejection does not name {case.field}:\n{message}"


def _everything_wrong(cases: list[Bad], name: str) -> dict[str, Any]:
    """VALID with many cases applied at once; the cases touch disjoint fields."""
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = name
    for case in cases:
        case.apply(obj)
    return obj


# Disjoint subsets: one overlay with every one of these wrong.
ALL_AT_ONCE_SCHEMA = [
    "operator",
    "weight-0",
    "overlay-capacity-quantity",
    "template-api-version",
    "driver-uppercase",
    "count-0",
    "attribute-float",
    "attribute-version-not-semver",
    "capacity-quantity",
    "taint-effect",
    "binding-conditions-too-many",
    "consumes-set-name",
    "counter-set-empty",
]
ALL_AT_ONCE_CEL = [
    "in-without-values",
    "gt-not-an-integer",
    "exists-with-values",
    "capacity-cpu",
    "template-node-name",
    "template-pool",
    "device-driver-differs",
    "count-name-too-long",
    "binding-overlap",
]


@pytest.mark.parametrize(
    ("ids", "cases"), [(ALL_AT_ONCE_SCHEMA, SCHEMA_CASES), (ALL_AT_ONCE_CEL, CEL_CASES)], ids=["schema", "cel"]
)
def test_rejects_an_overlay_with_everything_wrong_naming_every_field(
    overlays: Overlays, ids: list[str], cases: list[Bad]
) -> None:
    chosen = [c for c in cases if c.id in ids]
    assert len(chosen) == len(ids)
    status, message = overlays.rejection(_everything_wrong(chosen, "everything-wrong"))
    assert status == 422, message
    missing = [c.field for c in chosen if c.field not in message]
    assert not missing, f"the rejection does not name {missing}:\n{message}"


def test_rejects_unknown_fields_with_strict_validation(overlays: Overlays) -> None:
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = "typo"
    _set(obj, (*DEV0, "atributes"), {"model": "H100"})
    status, message = overlays.rejection(obj)
    assert status == 400, message
    assert 'unknown field "spec.resourceSlices[0].spec.devices[0].atributes"' in message


def test_a_misspelt_requirements_pruned_by_a_lax_client_is_refused_not_a_catch_all(overlays: Overlays) -> None:
    """A client without strict field validation (`kubectl apply --validate=warn`, most libraries)
    gets the unknown field pruned: the overlay must then be refused, not match every node."""
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = "typo-requirements"
    obj["spec"]["requirments"] = obj["spec"].pop("requirements")
    assert load_overlay(obj)[0] is None
    for validation in ("Ignore", "Warn"):
        with pytest.raises(ApiException) as err:
            overlays.api.create_cluster_custom_object(
                OVERLAY_GROUP, OVERLAY_VERSION, OVERLAY_PLURAL, obj, dry_run="All", field_validation=validation
            )
        assert err.value.status == 422, err.value.body
        assert "spec.requirements: Required value" in json.loads(err.value.body)["message"]


def test_an_explicit_empty_requirements_is_admitted_and_kept(overlays: Overlays) -> None:
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = "every-node"
    obj["spec"]["requirements"] = []
    rule, issues = load_overlay(obj)
    assert rule is not None and rule.requirements == (), issues
    assert overlays.create(obj)["spec"]["requirements"] == []


def test_status_subresource_and_printer_columns(
    cluster: Cluster, overlays: Overlays, unique_name: Callable[[str], str], cleanup: Cleanup
) -> None:
    """The controller's status (a metav1.Condition and matchedNodes) is accepted and printed."""
    name = unique_name("overlay")
    obj = {**copy.deepcopy(VALID), "metadata": {"name": name}}
    cleanup.delete_later(f"{OVERLAY_PLURAL}.{OVERLAY_GROUP}", name)
    created = overlays.create(obj, dry_run=False)
    status = {
        "observedGeneration": created["metadata"]["generation"],
        "matchedNodes": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Applied",
                "message": "valid; 3 nodes",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": created["metadata"]["generation"],
            }
        ],
    }
    overlays.api.patch_cluster_custom_object_status(
        OVERLAY_GROUP, OVERLAY_VERSION, OVERLAY_PLURAL, name, {"status": status}
    )
    assert cluster.get_json(f"{OVERLAY_PLURAL}.{OVERLAY_GROUP}", name)["status"] == status
    header, row = cluster.kubectl("get", "dno", name).splitlines()
    assert header.split() == ["NAME", "WEIGHT", "NODES", "READY", "REASON", "AGE"]
    assert row.split()[:5] == [name, "10", "3", "True", "Applied"]
    # A status the schema does not allow is rejected, naming the field.
    with pytest.raises(ApiException) as err:
        overlays.api.patch_cluster_custom_object_status(
            OVERLAY_GROUP,
            OVERLAY_VERSION,
            OVERLAY_PLURAL,
            name,
            {"status": {"conditions": [{**status["conditions"][0], "status": "Maybe"}]}},
        )
    assert err.value.status == 422
    assert "status.conditions[0].status" in json.loads(err.value.body)["message"]
