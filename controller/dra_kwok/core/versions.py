"""What each supported Kubernetes minor (1.34 to 1.37) takes in a ResourceSlice.

One table of facts, read from each release's source (pkg/features/kube_features.go, the
ResourceSlice strategy's dropDisabledFields and pkg/apis/resource/validation at v1.34.4, v1.35.4,
v1.36.3 and v1.37.2), serves validation (fields a version or its gates cannot take are refused
with the version, the field and the gate to enable), rendering (where shared counters go, how many
devices fit a slice), the controller's probe of a live apiserver, the CRD's bounds (the loosest of
all versions) and the support table in docs/versions.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .api_limits import MAX_DEVICES_PER_SLICE
from .models import RESOURCE_API_VERSION

SUPPORTED_MINORS = (34, 35, 36, 37)
OLDEST, NEWEST = SUPPORTED_MINORS[0], SUPPORTED_MINORS[-1]
# The release each minor was checked against, and the local cluster's default for it.
RELEASES = {34: "1.34.4", 35: "1.35.4", 36: "1.36.3", 37: "1.37.2"}


class Stage(StrEnum):
    ALPHA = "alpha"
    BETA = "beta"
    GA = "GA"


@dataclass(frozen=True, slots=True)
class GateState:
    stage: Stage
    default: bool  # on without a flag


A_OFF, B_OFF, B_ON, GA_ON = (
    GateState(Stage.ALPHA, False),
    GateState(Stage.BETA, False),
    GateState(Stage.BETA, True),
    GateState(Stage.GA, True),
)

# Feature gates by minor (absent: the gate does not exist in that minor).
GATES: dict[str, dict[int, GateState]] = {
    "DRAPartitionableDevices": {34: A_OFF, 35: A_OFF, 36: B_ON, 37: B_ON},
    "DRAConsumableCapacity": {34: A_OFF, 35: A_OFF, 36: B_ON, 37: B_ON},
    "DRADeviceBindingConditions": {34: A_OFF, 35: A_OFF, 36: B_ON, 37: B_ON},
    "DRAResourceClaimDeviceStatus": {34: B_ON, 35: B_ON, 36: B_ON, 37: GA_ON},
    "DRADeviceTaints": {34: A_OFF, 35: A_OFF, 36: B_ON, 37: GA_ON},
    # 1.36: beta but off, as it needs resource.k8s.io/v1beta2, which is off by default
    "DRADeviceTaintRules": {35: A_OFF, 36: B_OFF, 37: GA_ON},
    "DRAExtendedResource": {34: A_OFF, 35: A_OFF, 36: B_ON, 37: GA_ON},
    "DRAPrioritizedList": {34: B_ON, 35: B_ON, 36: GA_ON, 37: GA_ON},
    "DRAAdminAccess": {34: B_ON, 35: B_ON, 36: GA_ON, 37: GA_ON},
    "DRAListTypeAttributes": {36: A_OFF, 37: A_OFF},
    "DRAResourcePoolStatus": {36: A_OFF, 37: A_OFF},  # DRAPartitionableDevicesType depends on it
    "DRADeviceCompatibilityGroups": {37: A_OFF},
    "DRAPartitionableDevicesType": {37: A_OFF},
    "DRAOptionalNodeOperations": {37: A_OFF},
}


@dataclass(frozen=True, slots=True)
class Feature:
    """A DRA feature a user can ask for, the gates it needs (all of them) and where it shows."""

    key: str
    title: str
    gates: tuple[str, ...]
    fields: str  # for messages and docs
    in_slices: bool = True  # False: not a ResourceSlice field (docs only)

    def exists(self, minor: int) -> bool:
        return all(minor in GATES[g] for g in self.gates)


TAINTS = Feature("taints", "device taints", ("DRADeviceTaints",), "devices[].taints")
PARTITIONABLE = Feature(
    "partitionable",
    "partitionable devices (shared counters)",
    ("DRAPartitionableDevices",),
    "sharedCounters, devices[].consumesCounters",
)
CONSUMABLE = Feature(
    "consumable",
    "consumable capacity",
    ("DRAConsumableCapacity",),
    "devices[].allowMultipleAllocations, devices[].capacity[].requestPolicy",
)
BINDING = Feature(
    "binding",
    "binding conditions",
    ("DRADeviceBindingConditions", "DRAResourceClaimDeviceStatus"),
    "devices[].bindsToNode, bindingConditions, bindingFailureConditions",
)
EXTENDED = Feature(
    "extended",
    "extended resources backed by devices",
    ("DRAExtendedResource",),
    "DeviceClass spec.extendedResourceName",
    in_slices=False,
)
CLAIM_STATUS = Feature(
    "claim-status",
    "claim device status",
    ("DRAResourceClaimDeviceStatus",),
    "ResourceClaim status.devices",
    in_slices=False,
)
TAINT_RULES = Feature(
    "taint-rules", "DeviceTaintRules", ("DRADeviceTaintRules",), "DeviceTaintRule objects", in_slices=False
)
PRIORITIZED = Feature(
    "prioritized", "prioritized alternatives", ("DRAPrioritizedList",), "claim requests[].firstAvailable", False
)
ADMIN = Feature("admin", "admin access", ("DRAAdminAccess",), "claim requests[].adminAccess", in_slices=False)
LIST_ATTRIBUTES = Feature(
    "list-attributes",
    "list attributes",
    ("DRAListTypeAttributes",),
    "devices[].attributes[].ints/bools/strings/versions",
)
COMPATIBILITY_GROUPS = Feature(
    "compatibility-groups",
    "device compatibility groups",
    ("DRADeviceCompatibilityGroups", "DRAPartitionableDevices"),
    "devices[].consumesCounters[].compatibilityGroups",
)
PARTITION_TYPE = Feature(
    "partition-type",
    "partition types",
    ("DRAPartitionableDevicesType", "DRAPartitionableDevices"),
    "partitionTypeAttribute",
)
SKIP_NODE_OPERATIONS = Feature(
    "skip-node-operations", "optional node operations", ("DRAOptionalNodeOperations",), "skipNodeOperations"
)

FEATURES = (
    TAINTS,
    PARTITIONABLE,
    CONSUMABLE,
    BINDING,
    LIST_ATTRIBUTES,
    COMPATIBILITY_GROUPS,
    PARTITION_TYPE,
    SKIP_NODE_OPERATIONS,
    EXTENDED,
    CLAIM_STATUS,
    TAINT_RULES,
    PRIORITIZED,
    ADMIN,
)
SLICE_FEATURES = tuple(f for f in FEATURES if f.in_slices)


@dataclass(frozen=True, slots=True)
class Limits:
    """The apiserver's bounds on one ResourceSlice (pkg/apis/resource/types.go and validation)."""

    max_devices: int = MAX_DEVICES_PER_SLICE
    max_devices_advanced: int = 64  # when a device has taints or consumes counters (1.36+: or list attributes)
    max_taints: int = 16
    taint_effects: tuple[str, ...] = ("NoSchedule", "NoExecute", "None")
    counters_with_devices: bool = False  # 1.34: counters live in the slice of the devices using them
    max_counter_sets: int | None = 8
    max_counters_per_set: int | None = 32
    max_counters_total: int | None = None  # across all counter sets of a slice
    max_consumptions_per_device: int | None = 2
    max_counters_per_consumption: int | None = 32
    max_counters_per_device: int | None = None  # across a device's consumptions
    max_consumed_counters_per_slice: int | None = None
    max_binding_conditions: int = 4
    max_attributes_and_capacities: int = 32
    max_attribute_values: int | None = None  # 1.36+: 48 per device, list items counted one by one
    lists_are_advanced: bool = False  # 1.36+: list attributes bring a slice down to max_devices_advanced


LIMITS: dict[int, Limits] = {
    34: Limits(
        max_devices_advanced=128,
        max_taints=4,
        taint_effects=("NoSchedule", "NoExecute"),
        counters_with_devices=True,
        max_counter_sets=None,
        max_counters_per_set=None,
        max_counters_total=32,
        max_consumptions_per_device=None,
        max_counters_per_consumption=None,
        max_counters_per_device=32,
        max_consumed_counters_per_slice=1024,
    ),
    35: Limits(),
    36: Limits(max_attribute_values=48, lists_are_advanced=True),
    37: Limits(max_attribute_values=48, lists_are_advanced=True),
}


def _loosest() -> Limits:
    """Bounds every supported minor allows at least this much of: what the CRD may refuse."""

    def most(values: list[int | None], bound: int) -> int:
        return max(v if v is not None else bound for v in values)

    ls = list(LIMITS.values())
    return Limits(
        max_taints=max(x.max_taints for x in ls),
        # a counter set has at least one counter, so 1.34's 32 counters bound its sets too
        max_counter_sets=most([x.max_counter_sets for x in ls], 32),
        max_counters_per_set=most([x.max_counters_per_set for x in ls], 32),
        max_consumptions_per_device=most([x.max_consumptions_per_device for x in ls], 32),
        max_counters_per_consumption=most([x.max_counters_per_consumption for x in ls], 32),
    )


LOOSEST = _loosest()


@dataclass(frozen=True, slots=True)
class Target:
    """The Kubernetes a configuration is checked and rendered for: a minor and its enabled gates."""

    minor: int
    gates: frozenset[str]
    version: str = ""  # "1.34.4" when known
    how: str = "defaults"  # how the gates are known: "defaults", "flags", "the apiserver"

    @property
    def name(self) -> str:
        return f"Kubernetes {self.version or f'1.{self.minor}'}"

    @property
    def limits(self) -> Limits:
        return LIMITS[self.minor]

    def has(self, feature: Feature) -> bool:
        return feature.exists(self.minor) and all(g in self.gates for g in feature.gates)

    def why_not(self, feature: Feature) -> tuple[str, str]:
        """(what is missing, the fix) for a feature this target lacks."""
        if not feature.exists(self.minor):
            first = next((m for m in SUPPORTED_MINORS if feature.exists(m)), None)
            return (
                f"{self.name} has no {feature.title} (new in 1.{first})",
                f"remove it, or run Kubernetes 1.{first} or later with " + _gates_text(feature, first or NEWEST),
            )
        off = [g for g in feature.gates if g not in self.gates]
        parts = []
        for g in off:
            state = GATES[g][self.minor]
            default = "on by default, switched off" if state.default else "off by default"
            parts.append(f"{g} ({state.stage}, {default})")
        seen = " (as the apiserver answered)" if self.how == "the apiserver" else ""
        return (
            f"{self.name} drops {feature.title} unless feature gate{'s' if len(off) > 1 else ''} "
            f"{' and '.join(parts)} {'are' if len(off) > 1 else 'is'} enabled{seen}",
            f"enable {' and '.join(off)} on kube-apiserver, kube-scheduler and kube-controller-manager "
            f"(--feature-gates={','.join(f'{g}=true' for g in off)}), or remove {feature.fields}",
        )

    def describe(self) -> str:
        """One line for the log: the version and each slice feature on or off."""
        states = ", ".join(f"{f.key} {'on' if self.has(f) else 'off'}" for f in SLICE_FEATURES)
        return f"{self.name} (gates from {self.how}): {states}"


def _gates_text(feature: Feature, minor: int) -> str:
    return " and ".join(f"{g} ({GATES[g][minor].stage})" for g in feature.gates if minor in GATES[g])


def default_gates(minor: int) -> frozenset[str]:
    return frozenset(g for g, by_minor in GATES.items() if minor in by_minor and by_minor[minor].default)


_VERSION = re.compile(r"^v?1\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")


class VersionError(ValueError):
    """A version or gate list that cannot be targeted; the message says what is supported."""


def parse_version(text: str) -> tuple[int, str]:
    """("1.34.4" | "v1.34.4" | "1.34" | "v1.34.4-gke.1") -> (34, "1.34.4")."""
    m = _VERSION.match(text.strip())
    if not m:
        raise VersionError(f"{text!r} is not a Kubernetes version; write it as 1.{NEWEST} or 1.{NEWEST}.2")
    minor = int(m.group(1))
    if minor not in LIMITS:
        raise VersionError(f"Kubernetes 1.{minor} is not supported: dra-kwok-driver supports 1.{OLDEST} to 1.{NEWEST}")
    return minor, f"1.{minor}" + (f".{m.group(2)}" if m.group(2) else "")


def parse_gates(text: str) -> dict[str, bool]:
    """`--feature-gates` syntax: "A=true,B=false"; only gates this table knows are accepted."""
    out: dict[str, bool] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise VersionError(f"feature gate {item!r}: write Name=true or Name=false")
        if name not in GATES:
            raise VersionError(f"unknown DRA feature gate {name!r}; known: {', '.join(sorted(GATES))}")
        out[name] = value.lower() == "true"
    return out


def target(version: str | int = NEWEST, gates: Mapping[str, bool] | None = None, how: str = "") -> Target:
    """The target for a version with its default gates, changed by `gates`."""
    minor, text = parse_version(version) if isinstance(version, str) else (version, "")
    if minor not in LIMITS:
        raise VersionError(f"Kubernetes 1.{minor} is not supported: 1.{OLDEST} to 1.{NEWEST}")
    base = Target(minor, default_gates(minor), text, "defaults")
    return with_gates(base, gates or {}, how or ("flags" if gates else "defaults"))


def with_gates(base: Target, gates: Mapping[str, bool], how: str) -> Target:
    """`base` with `gates` switched on or off (each must exist in its minor)."""
    enabled = set(base.gates)
    for g, on in gates.items():
        if base.minor not in GATES.get(g, {}):
            raise VersionError(f"Kubernetes 1.{base.minor} has no feature gate {g}")
        (enabled.add if on else enabled.discard)(g)
    return Target(base.minor, frozenset(enabled), base.version, how)


DEFAULT_TARGET = target(NEWEST)


# --- the probe of a live apiserver ----------------------------------------------------------------
PROBE_DRIVER = "probe.dra-kwok.test.karpenter.sh"
PROBE_KEY = "dra-kwok.test.karpenter.sh/probe"


def probe_specs(minor: int) -> dict[str, dict[str, object]]:
    """For each slice feature, the spec of a ResourceSlice that uses it (sent with dryRun=All:
    nothing is stored). An apiserver whose gate is off drops the field and answers 201."""
    counters = [{"name": "probe", "counters": {"c": {"value": "1"}}}]
    use: dict[str, object] = {"counterSet": "probe", "counters": {"c": {"value": "1"}}}
    consumer: dict[str, object] = {"name": "probe", "consumesCounters": [use]}
    partitionable: dict[str, object] = (
        {"sharedCounters": counters, "devices": [consumer]}
        if LIMITS[minor].counters_with_devices
        else {"sharedCounters": counters}
    )
    key = PROBE_KEY.replace("/probe", "/type")
    specs: dict[str, dict[str, object]] = {
        TAINTS.key: {"devices": [{"name": "probe", "taints": [{"key": PROBE_KEY, "effect": "NoSchedule"}]}]},
        PARTITIONABLE.key: partitionable,
        CONSUMABLE.key: {"devices": [{"name": "probe", "allowMultipleAllocations": True}]},
        BINDING.key: {
            "devices": [
                {
                    "name": "probe",
                    "bindsToNode": True,
                    "bindingConditions": [PROBE_KEY],
                    "bindingFailureConditions": [f"{PROBE_KEY}-failed"],
                }
            ]
        },
        LIST_ATTRIBUTES.key: {"devices": [{"name": "probe", "attributes": {"probe": {"strings": ["a"]}}}]},
        COMPATIBILITY_GROUPS.key: {
            "devices": [{"name": "probe", "consumesCounters": [{**use, "compatibilityGroups": ["a"]}]}]
        },
        PARTITION_TYPE.key: {
            "partitionTypeAttribute": key,
            "devices": [{**consumer, "attributes": {key: {"string": "full"}}}],
        },
        SKIP_NODE_OPERATIONS.key: {"skipNodeOperations": ["*"], "devices": [{"name": "probe"}]},
    }
    return {k: v for k, v in specs.items() if _BY_KEY[k].exists(minor)}


def probe_manifest(name: str, spec: Mapping[str, object]) -> dict[str, object]:
    return {
        "apiVersion": RESOURCE_API_VERSION,
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": PROBE_DRIVER,
            "pool": {"name": "probe", "generation": 1, "resourceSliceCount": 1},
            "nodeName": name,
            **spec,
        },
    }


_BY_KEY = {f.key: f for f in FEATURES}


def probe_kept(feature: str, stored_spec: Mapping[str, Any]) -> bool:
    """Whether the apiserver kept the probed field in the object it answered with."""
    devices = [d for d in stored_spec.get("devices") or [] if isinstance(d, Mapping)]
    first: Mapping[str, Any] = devices[0] if devices else {}
    uses = first.get("consumesCounters") or [{}]
    kept = {
        TAINTS.key: lambda: bool(first.get("taints")),
        PARTITIONABLE.key: lambda: bool(stored_spec.get("sharedCounters")),
        CONSUMABLE.key: lambda: bool(first.get("allowMultipleAllocations")),
        BINDING.key: lambda: bool(first.get("bindingConditions")),
        LIST_ATTRIBUTES.key: lambda: bool(((first.get("attributes") or {}).get("probe") or {}).get("strings")),
        COMPATIBILITY_GROUPS.key: lambda: bool(uses[0].get("compatibilityGroups")),
        PARTITION_TYPE.key: lambda: bool(stored_spec.get("partitionTypeAttribute")),
        SKIP_NODE_OPERATIONS.key: lambda: bool(stored_spec.get("skipNodeOperations")),
    }
    return kept[feature]()


def probed_target(version: str, answers: Mapping[str, bool]) -> Target:
    """The target for a live apiserver: its version's defaults, corrected by what it kept of each
    probe (`answers`: feature key -> kept; a feature missing from it was not learned)."""
    base = target(version)
    enabled = set(base.gates)
    for key, kept in answers.items():
        feature = _BY_KEY[key]
        if kept:
            enabled |= set(feature.gates)
        elif base.has(feature):
            # dropped: at least one of its gates is off; blame the feature's own gate
            enabled.discard(feature.gates[0])
    return Target(base.minor, frozenset(enabled), base.version, "the apiserver")


# --- the support table ------------------------------------------------------------------------------
def support_cell(feature: Feature, minor: int) -> str:
    if not feature.exists(minor):
        return "not available"
    needed = [g for g in feature.gates if not GATES[g][minor].default]
    if not needed:
        stages = {GATES[g][minor].stage for g in feature.gates}
        return "works" + (" (GA)" if stages == {Stage.GA} else "")
    return "needs " + " and ".join(f"{g} ({GATES[g][minor].stage})" for g in needed)


def support_table_markdown() -> str:
    """The feature-by-minor table of docs/versions.md, built from the data above."""
    head = "| feature | fields | " + " | ".join(f"1.{m}" for m in SUPPORTED_MINORS) + " |"
    rule = "|---|---|" + "---|" * len(SUPPORTED_MINORS)
    rows = [
        f"| {f.title} | {f.fields} | " + " | ".join(support_cell(f, m) for m in SUPPORTED_MINORS) + " |"
        for f in FEATURES
    ]
    limits = [
        "| taint effects | devices[].taints[].effect | "
        + " | ".join(", ".join(LIMITS[m].taint_effects) for m in SUPPORTED_MINORS) + " |",
        "| taints per device | devices[].taints | " + " | ".join(str(LIMITS[m].max_taints) for m in SUPPORTED_MINORS)
        + " |",
        "| where shared counters go | sharedCounters | "
        + " | ".join("with the devices that use them (one slice)" if LIMITS[m].counters_with_devices
                     else "a slice of their own" for m in SUPPORTED_MINORS) + " |",
        "| devices per slice (with taints or counters) | devices | "
        + " | ".join(f"{LIMITS[m].max_devices} ({LIMITS[m].max_devices_advanced})" for m in SUPPORTED_MINORS) + " |",
    ]  # fmt: skip
    return "\n".join([head, rule, *rows, *limits]) + "\n"
