"""Typed device templates, ConfigMap configuration and DRANodeOverlay specs.

One device model serves both sources, and accepts both the real `resource.k8s.io/v1` form
(`attributes: {model: {string: A100}}`, `capacity: {memory: {value: 80Gi}}`) and the seeds'
shorthand (`attributes: {model: A100}`, `capacity: {memory: 80Gi}`, `count: 8`). Shorthand is
normalised to the v1 form on input, so everything downstream sees one shape.

Field-level format rules live here as validators; rules that span fields (counter references,
duplicate names, size limits) live in `validation`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from . import names
from .api_limits import DNS1123_LABEL_MAX, MAX_COMPATIBILITY_GROUPS, MAX_MAPPING_NAME

# Re-exported: tests read them from here.
from .api_limits import INT64_MAX as INT64_MAX
from .api_limits import INT64_MIN as INT64_MIN
from .api_limits import MAX_DEVICES_PER_POOL as MAX_DEVICES_PER_POOL
from .api_limits import MAX_REQUIREMENTS as MAX_REQUIREMENTS
from .api_limits import MAX_WEIGHT as MAX_WEIGHT
from .api_limits import MIN_WEIGHT as MIN_WEIGHT
from .issues import shown
from .model_base import Model as Model
from .quantity import quantity_problem
from .simulation import Simulation

RESOURCE_API_VERSION = "resource.k8s.io/v1"
OVERLAY_GROUP = "test.karpenter.sh"
OVERLAY_VERSION = "v1alpha1"
OVERLAY_KIND = "DRANodeOverlay"
OVERLAY_PLURAL = "dranodeoverlays"


def _quantity(value: Any) -> str:
    problem = quantity_problem(value)
    if problem:
        raise ValueError(problem)
    return str(value)


Quantity = Annotated[str, BeforeValidator(_quantity)]


def _value_shorthand(value: Any) -> Any:
    """The shorthand `80Gi` for `{value: 80Gi}` (capacities and counters). Any other non-mapping
    is wrapped too, so that `memory: 1.5` is reported as a bad quantity, not as a bad mapping."""
    return value if isinstance(value, dict) else {"value": value}


LIST_KINDS = ("ints", "bools", "strings", "versions")  # list attributes (DRAListTypeAttributes, 1.36+)


class Attribute(Model):
    """A device attribute: exactly one of int, bool, string or version, or (1.36 and later, with
    DRAListTypeAttributes) one non-empty list of them."""

    int_: StrictInt | None = Field(default=None, alias="int")
    bool_: StrictBool | None = Field(default=None, alias="bool")
    string: StrictStr | None = None
    version: StrictStr | None = None
    ints: list[StrictInt] | None = None
    bools: list[StrictBool] | None = None
    strings: list[StrictStr] | None = None
    versions: list[StrictStr] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # YAML keeps ints and bools typed; every other scalar is a string attribute.
        if isinstance(value, bool):
            return {"bool": value}
        if isinstance(value, int):
            return {"int": value}
        if isinstance(value, str):
            return {"string": value}
        if isinstance(value, float):
            raise ValueError(
                f"a number with a fraction ({value}) is not an attribute type; quote it to make a "
                f'string ("{value}"), or write {{version: "{value}.0"}} for a version'
            )
        if isinstance(value, date):
            raise ValueError(f'a date ({value}) is not an attribute type; quote it to make a string ("{value}")')
        if isinstance(value, dict):
            for key in ("string", "version"):
                if isinstance(value.get(key), float | int | date) and not isinstance(value.get(key), bool):
                    raise ValueError(f'{key} must be text: quote the value ({key}: "{value[key]}")')
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Attribute:
        set_ = [k for k, v in self._all_items() if v is not None]
        if len(set_) != 1:
            raise ValueError(
                f"exactly one of int, bool, string or version (or a list: {', '.join(LIST_KINDS)}) must be set "
                f"(found {set_ or 'none'})"
            )
        values = self.value_list
        if values is not None:
            if not values:
                raise ValueError(f"{set_[0]} must not be empty")
            if self.ints and not all(INT64_MIN <= v <= INT64_MAX for v in self.ints):
                raise ValueError(f"int values must fit in 64 bits ({INT64_MIN} to {INT64_MAX})")
            for text in self.strings or []:
                if problem := names.string_attribute_problem(text):
                    raise ValueError(f"string values {problem}")
            for text in self.versions or []:
                if problem := names.semver_problem(text):
                    raise ValueError(f"version {shown(text)} {problem}")
            return self
        if self.int_ is not None and not INT64_MIN <= self.int_ <= INT64_MAX:
            raise ValueError(f"int values must fit in 64 bits ({INT64_MIN} to {INT64_MAX})")
        if self.string is not None:
            problem = names.string_attribute_problem(self.string)
            if problem:
                raise ValueError(f"string values {problem}")
        if self.version is not None:
            problem = names.semver_problem(self.version)
            if problem:
                raise ValueError(f"version {shown(self.version)} {problem}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.api_items())

    @property
    def value_list(self) -> list[Any] | None:
        """The values of a list attribute; None for a single value."""
        return next((v for v in (self.ints, self.bools, self.strings, self.versions) if v is not None), None)

    def _all_items(self) -> list[tuple[str, Any]]:
        return [
            ("int", self.int_),
            ("bool", self.bool_),
            ("string", self.string),
            ("version", self.version),
            ("ints", self.ints),
            ("bools", self.bools),
            ("strings", self.strings),
            ("versions", self.versions),
        ]

    def api_items(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self._all_items() if v is not None]


class Capacity(Model):
    """A device capacity; `requestPolicy` (consumable capacity) is passed through as written."""

    value: Quantity
    request_policy: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _value_shorthand(value)


class Counter(Model):
    value: Quantity

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _value_shorthand(value)


def _dns_label(value: str) -> str:
    problem = names.dns_label_problem(value)
    if problem:
        raise ValueError(f"{shown(value)} {problem}")
    return value


def _qualified_name(key: str) -> str:
    problem = names.qualified_name_problem(key)
    if problem:
        fixes = names.suggest_identifiers(key)
        hint = f"; use {' or '.join(repr(f) for f in fixes)}" if fixes else ""
        raise ValueError(f"invalid name {shown(key)}: {problem}{hint}")
    return key


DnsLabel = Annotated[StrictStr, AfterValidator(_dns_label)]
# Attribute and capacity keys; validated as dict keys so every bad key is reported, not just the first.
QualifiedName = Annotated[StrictStr, AfterValidator(_qualified_name)]


class CounterSet(Model):
    """Shared counters of a partitionable device (`sharedCounters[]`)."""

    name: DnsLabel
    counters: Annotated[dict[DnsLabel, Counter], Field(min_length=1)]


class CounterConsumption(Model):
    """What one device consumes from a counter set (`consumesCounters[]`); `compatibilityGroups`
    (1.37, DRADeviceCompatibilityGroups) limit which devices of the set are allocated together."""

    counter_set: DnsLabel
    counters: Annotated[dict[DnsLabel, Counter], Field(min_length=1)]
    compatibility_groups: Annotated[list[DnsLabel], Field(max_length=MAX_COMPATIBILITY_GROUPS)] = Field(
        default_factory=list
    )

    @field_validator("compatibility_groups")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("group names must be unique")
        return value


class Taint(Model):
    key: StrictStr
    value: StrictStr | None = None
    effect: Literal["NoSchedule", "NoExecute", "None"]

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        problem = names.label_name_problem(value)
        if problem:
            raise ValueError(f"taint key {shown(value)}: {problem}")
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None) -> str | None:
        problem = names.label_value_problem(value or "")
        if problem:
            raise ValueError(f"taint value {shown(value)}: {problem}")
        return value


class DeviceTemplate(Model):
    """One device, or with `count` N devices named `{name}-0` … `{name}-{N-1}`."""

    name: StrictStr
    count: Annotated[StrictInt, Field(ge=1, le=MAX_DEVICES_PER_POOL)] | None = None
    attributes: dict[QualifiedName, Attribute] = Field(default_factory=dict)
    capacity: dict[QualifiedName, Capacity] = Field(default_factory=dict)
    consumes_counters: list[CounterConsumption] = Field(default_factory=list)
    taints: list[Taint] = Field(default_factory=list)
    allow_multiple_allocations: StrictBool | None = None
    binds_to_node: StrictBool | None = None
    binding_conditions: list[StrictStr] = Field(default_factory=list)
    binding_failure_conditions: list[StrictStr] = Field(default_factory=list)
    # The seed's overlay example repeats the driver on each device; accepted if it agrees.
    driver: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = names.dns_label_problem(value)
        if problem:
            raise ValueError(f"device name {shown(value)} {problem}")
        return value

    @model_validator(mode="after")
    def _expanded_names_fit(self) -> DeviceTemplate:
        if self.count is not None:
            last = f"{self.name}-{self.count - 1}"
            if len(last) > DNS1123_LABEL_MAX:
                raise ValueError(
                    f"with count {self.count} the device names reach {last!r} ({len(last)} characters), "
                    f"over the {DNS1123_LABEL_MAX}-character limit; shorten the name"
                )
        return self

    @property
    def instances(self) -> int:
        return 1 if self.count is None else self.count

    def device_names(self) -> list[str]:
        if self.count is None:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(self.count)]


def _check_key_and_values(key: str, operator: str, values: list[str]) -> None:
    """The rules label selectors and NodeOverlay requirements share."""
    problem = names.label_name_problem(key)
    if problem:
        raise ValueError(f"key {shown(key)}: {problem}")
    if operator in ("In", "NotIn") and not values:
        raise ValueError(f"operator {operator} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"operator {operator} takes no values (remove 'values')")


class LabelSelectorRequirement(Model):
    key: StrictStr
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        _check_key_and_values(self.key, self.operator, self.values)
        return self


class LabelSelector(Model):
    """A Kubernetes label selector (`matchLabels` AND `matchExpressions`)."""

    match_labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    @field_validator("match_labels", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # `instance-type: 8` in YAML is an int; a label value is always a string.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) if v is not None else v for k, v in value.items()
            }
        return value

    @field_validator("match_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [
            f"label {shown(key)}={shown(val)}: {problem}"
            for key, val in value.items()
            if (problem := names.label_name_problem(key) or names.label_value_problem(val))
        ]
        if problems:  # every bad label at once, not only the first
            raise ValueError("; ".join(problems))
        return value


SkipNodeOperation = Literal["NodePrepareResources", "NodeUnprepareResources", "*"]


def _fully_qualified_name(key: str) -> str:
    if "/" not in key:
        raise ValueError(f"{shown(key)} needs a domain: write it as <domain>/<name>, e.g. gpu.example.com/profile")
    return _qualified_name(key)


class ProfileOverrides(Model):
    """Merged into every device a profile builds."""

    attributes: dict[QualifiedName, Attribute] = Field(default_factory=dict)
    capacity: dict[QualifiedName, Capacity] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)


class ProfileRef(Model):
    """A device profile of a real driver (`core/profiles`): its devices join the template's.
    Expanded before the template is validated (`profiles.expand`), so a validated template never
    has one; declared here so the CRD's schema is the models'."""

    name: StrictStr
    parameters: dict[str, Any] = Field(default_factory=dict)
    overrides: ProfileOverrides | None = None


class PoolTemplate(Model):
    """Devices and shared counters for one driver: the body of a ResourceSlice template. The
    1.37 alpha slice fields `partitionTypeAttribute` (DRAPartitionableDevicesType) and
    `skipNodeOperations` (DRAOptionalNodeOperations) apply to the driver's whole pool. A
    `profile` adds a real driver's devices (and sets the driver)."""

    profile: ProfileRef | None = None
    devices: list[DeviceTemplate] = Field(default_factory=list)
    shared_counters: list[CounterSet] = Field(default_factory=list)
    partition_type_attribute: Annotated[StrictStr, AfterValidator(_fully_qualified_name)] | None = None
    skip_node_operations: list[SkipNodeOperation] = Field(default_factory=list)

    @field_validator("skip_node_operations")
    @classmethod
    def _prepare_needs_unprepare(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not list an operation twice")
        if "NodePrepareResources" in value and not {"NodeUnprepareResources", "*"} & set(value):
            raise ValueError("NodePrepareResources may be skipped only with NodeUnprepareResources (or '*')")
        return value


class MappingSlice(PoolTemplate):
    """A mapping's `resourceSlice`; `driver` defaults to the configuration's top-level driver."""

    driver: StrictStr | None = None


class Mapping(Model):
    """A ConfigMap rule: nodes matching `nodeSelector` get `resourceSlice`."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=MAX_MAPPING_NAME)]
    node_selector: LabelSelector
    resource_slice: MappingSlice
    simulation: Simulation | None = None


class DriverConfig(Model):
    """The ConfigMap's `config.yaml`: a default driver and mappings, first match wins."""

    driver: StrictStr | None = None
    mappings: list[Mapping] = Field(default_factory=list)


NodeSelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte"]


class Requirement(Model):
    """A NodeOverlay requirement, with Karpenter's validation."""

    key: StrictStr
    operator: NodeSelectorOperator
    values: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Requirement:
        _check_key_and_values(self.key, self.operator, self.values)
        if self.operator in ("Gt", "Lt", "Gte", "Lte") and (
            len(self.values) != 1 or not (self.values[0].isascii() and self.values[0].isdigit())
        ):
            raise ValueError(f"operator {self.operator} needs exactly one non-negative integer value, e.g. ['4']")
        return self


DRIVER_OWNED_FIELDS = ("nodeName", "pool", "nodeSelector", "allNodes", "perDeviceNodeSelection")


class SliceTemplateSpec(PoolTemplate):
    driver: StrictStr

    FORBIDDEN_KEYS: ClassVar[dict[str, str]] = {
        key: "must not be set in a template: the driver fills in nodeName and pool for each node"
        for key in DRIVER_OWNED_FIELDS
    }


class SliceTemplate(Model):
    """An embedded ResourceSlice template (`spec.resourceSlices[]` of a DRANodeOverlay)."""

    api_version: Literal["resource.k8s.io/v1"] = "resource.k8s.io/v1"
    kind: Literal["ResourceSlice"] = "ResourceSlice"
    metadata: dict[str, Any] | None = None
    spec: SliceTemplateSpec


class OverlaySpec(Model):
    """DRANodeOverlay spec: Karpenter NodeOverlay's requirements and weight, plus slice templates."""

    # Required: an overlay for every KWOK node says so (`requirements: []`), so a misspelt or
    # pruned `requirements` cannot make it a catch-all.
    requirements: Annotated[list[Requirement], Field(max_length=MAX_REQUIREMENTS)]
    weight: Annotated[StrictInt, Field(ge=MIN_WEIGHT, le=MAX_WEIGHT)] | None = None
    capacity: dict[str, Quantity] = Field(default_factory=dict)
    resource_slices: list[SliceTemplate] = Field(default_factory=list)
    simulation: Simulation | None = None

    @property
    def effective_weight(self) -> int:
        """Karpenter counts an unset weight as 0."""
        return self.weight or 0

    @field_validator("capacity")
    @classmethod
    def _extended_only(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for key in value:
            if key in ("cpu", "memory", "ephemeral-storage", "pods"):
                problems.append(f"capacity {key!r} is restricted: only extended resources (domain/name) may be set")
            elif problem := names.label_name_problem(key):
                problems.append(f"capacity name {shown(key)}: {problem}")
        if problems:  # every bad name at once, not only the first
            raise ValueError("; ".join(problems))
        return value
