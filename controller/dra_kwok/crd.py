"""The DRANodeOverlay CustomResourceDefinition (`apiextensions.k8s.io/v1`), built from the core.

Names, limits and formats come from `core` (models, names, versions), so the schema cannot drift
from what the controller accepts; `tests/unit/test_crd.py` checks the schema's fields against the
pydantic models and `crds/` against `render_crd_yaml()` (regenerate with `make crds`).

What the apiserver can check at admission is bounded by what a *structural* schema can say:

* Device attributes, capacities and counters accept both the `resource.k8s.io/v1` form
  (`{string: A100}`, `{value: 80Gi}`) and the shorthand scalar (`A100`, `80Gi`, `8`, `true`). One
  schema node cannot be "an object or a scalar": `anyOf` branches must not carry a `type`, and
  `x-kubernetes-int-or-string` admits neither objects nor booleans. Their values are therefore
  typeless nodes with `x-kubernetes-preserve-unknown-fields: true`, constrained by value
  validations that JSON Schema applies per kind of value: `properties` (with types),
  `maxProperties` and `anyOf` of `required` constrain only the object form, `pattern`/`maxLength`
  only the shorthand string, `multipleOf: 1` only a shorthand number. CEL cannot see typeless
  nodes (the CRD is rejected if a rule sits on one or reads one), so the keys of those maps
  (C identifiers / one-slash domains, DNS-label counter names), the 32 attributes *plus*
  capacities limit, `requestPolicy` needing `allowMultipleAllocations`, and counter references are
  left to the controller, which reports them in the overlay's `Ready` condition.
* Rules that span templates (device names unique in a driver's pool after `count` expansion, at
  most 1024 devices per node and driver, counter sets referenced by devices) need the whole
  overlay and are also the controller's.

Every list, map and string that a CEL rule reads has a `maxItems`/`maxProperties`/`maxLength`, so
the apiserver's static CEL cost estimate stays within its limits.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from .core.api_limits import (
    ATTRIBUTE_VALUE_MAX,
    CONDITION_MESSAGE_MAX,
    CONDITION_REASON_MAX,
    CONDITION_TYPE_MAX,
    DNS1123_LABEL_MAX,
    DNS1123_SUBDOMAIN_MAX,
    DRIVER_NAME_MAX,
    LABEL_NAME_MAX,
    LABEL_VALUE_MAX,
    MAX_COMPATIBILITY_GROUPS,
    MAX_DEVICES_PER_POOL,
    MAX_REQUIREMENTS,
    MAX_WEIGHT,
    MIN_WEIGHT,
)
from .core.models import (
    DRIVER_OWNED_FIELDS,
    LIST_KINDS,
    OVERLAY_GROUP,
    OVERLAY_KIND,
    OVERLAY_PLURAL,
    OVERLAY_VERSION,
    RESOURCE_API_VERSION,
)
from .core.profiles import PROFILES
from .core.simulation import (
    FAULT_EFFECTS,
    MAX_CLAIM_CONDITIONS,
    MAX_FAULT_RULES,
    MAX_HARDWARE_ADDRESS,
    MAX_INTERFACE_NAME,
    MAX_NETWORK_IPS,
)
from .core.versions import LOOSEST

Schema = dict[str, Any]

CRD_NAME: Final = f"{OVERLAY_PLURAL}.{OVERLAY_GROUP}"
CRD_FILE: Final = f"crds/{OVERLAY_GROUP}_{OVERLAY_PLURAL}.yaml"
OVERLAY_SINGULAR: Final = OVERLAY_KIND.lower()
SHORT_NAMES: Final = ("dno",)
CATEGORIES: Final = ("karpenter", "dra-kwok")

# Label keys, condition types and Karpenter's requirement keys: a 253-character DNS prefix, '/', a name,
# bounded as metav1.Condition bounds its type.
QUALIFIED_NAME_MAX: Final = CONDITION_TYPE_MAX
# Attribute strings and versions: 64 bytes of UTF-8 in the apiserver (and models.Attribute); a schema's
# maxLength counts characters, so admission bounds them at 64 characters and the controller the bytes.
ATTRIBUTE_STRING_MAX: Final = ATTRIBUTE_VALUE_MAX

# Limits the core does not have, because they only matter for admission.
# Karpenter NodeOverlay's spec.capacity is unbounded; a bound keeps the CEL cost of its key rules finite.
MAX_OVERLAY_CAPACITY: Final = 32
# A node gets one pool per driver; templates of one driver merge, so a handful is plenty.
MAX_SLICE_TEMPLATES: Final = 16
# Requirement values: Karpenter's schema leaves the list unbounded; CEL reads only its size and first item.
MAX_REQUIREMENT_VALUES: Final = 1024
# Quantity strings (the shorthand and `value`); a quantity is never near this long.
QUANTITY_MAX: Final = 64

# Fields of a real ResourceSlice spec that the driver fills in per node: declared in the schema (so
# pruning does not silently drop them) and rejected by CEL with a message that says why.
DRIVER_OWNED_TEMPLATE_FIELDS: Final = DRIVER_OWNED_FIELDS

# Formats, in the RE2 syntax the apiserver uses (and Python's `re` reads the same way). Each agrees
# with a `core.names` check; tests/unit/test_crd.py compares them on many strings.
_DNS_LABEL_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL_RE: Final = rf"^{_DNS_LABEL_PART}$"
DNS_SUBDOMAIN_RE: Final = rf"^{_DNS_LABEL_PART}(\.{_DNS_LABEL_PART})*$"
# `names.label_name_problem`: an optional DNS-subdomain prefix and '/', then a name of at most 63.
LABEL_NAME_RE: Final = (
    rf"^({_DNS_LABEL_PART}(\.{_DNS_LABEL_PART})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,{LABEL_NAME_MAX - 2}}}"
    r"[A-Za-z0-9])?$"
)
LABEL_VALUE_RE: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
SEMVER_RE: Final = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-((0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
# `core.quantity.parse`, which reads quantities as the apiserver does: a decimal number with an
# optional binary, decimal or exponent suffix, between the spaces JSON decoding trims. A number
# without a digit ("+", ".", "Gi") is read as 0 where Go's fast path takes it: decimal suffixes,
# Ki to Ti, and exponents of -9 or more. Exponents beyond int64 (or whose int32 cast is below -9
# for a number without a digit) match but are refused by the controller (Ready=False/InvalidSpec).
_GO_SPACE = " "
_QUANTITY_SUFFIX = r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)"
_DIGITLESS_SUFFIX = r"(Ki|Mi|Gi|Ti|n|u|m|k|M|G|T|P|E|[eE]\+?[0-9]+|[eE]-0*[0-9])"
QUANTITY_RE: Final = (
    f"^{_GO_SPACE}*"
    rf"([+-]?([0-9]+\.?[0-9]*|\.[0-9]+){_QUANTITY_SUFFIX}?|[+-]?\.?{_DIGITLESS_SUFFIX}|[+-]\.?|\.)"
    f"{_GO_SPACE}*$"
)
UNSIGNED_INTEGER_RE: Final = r"^[0-9]+$"

RESTRICTED_CAPACITY: Final = ("cpu", "memory", "ephemeral-storage", "pods")
TAINT_EFFECTS: Final = ("None", "NoSchedule", "NoExecute")
OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte")

HEADER: Final = (
    "# Generated by `make crds` from controller/dra_kwok/crd.py; do not edit.\n"
    "# The DRANodeOverlay CustomResourceDefinition: ResourceSlice templates for KWOK nodes.\n"
)


def _rule(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> Schema:
    out: Schema = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def _string(description: str, *, max_length: int, pattern: str | None = None) -> Schema:
    out: Schema = {"type": "string", "description": description, "maxLength": max_length}
    if pattern:
        out["pattern"] = pattern
    return out


def _dns_label(description: str) -> Schema:
    return _string(description, max_length=DNS1123_LABEL_MAX, pattern=DNS_LABEL_RE)


def _quantity(description: str) -> Schema:
    """An int-or-string quantity (`8`, `"80Gi"`)."""
    return {
        "description": description,
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "maxLength": QUANTITY_MAX,
        "pattern": QUANTITY_RE,
    }


def _quantity_value(description: str, *, request_policy: bool) -> Schema:
    """`{value: 80Gi}` or the shorthand `80Gi`/`8`: typeless, see the module docstring."""
    properties: Schema = {"value": _quantity("The quantity, e.g. 80Gi, 500m or 8.")}
    if request_policy:
        properties["requestPolicy"] = {
            "type": "object",
            "description": "Consumable capacity's request policy, passed through as written.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    return {
        "description": description,
        # Typeless so that both an object and a scalar are admitted; `properties` and `required`
        # constrain the object form only, `pattern` and `maxLength` the shorthand string only.
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": properties,
        "required": ["value"],
        "pattern": QUANTITY_RE,
        "maxLength": QUANTITY_MAX,
        "multipleOf": 1,
    }


def _attribute_value() -> Schema:
    return {
        "description": (
            "A device attribute: exactly one of int, bool, string or version, a list (ints, bools, "
            "strings, versions; Kubernetes 1.36+ with DRAListTypeAttributes), or the shorthand "
            "scalar (an integer, true/false, or a string of at most 64 bytes of UTF-8)."
        ),
        # Typeless (see the module docstring): the object keys are checked by `properties`,
        # `maxProperties` and the `anyOf` of `required`, none of which apply to a scalar; a
        # shorthand string is bounded by `maxLength`, a number with a fraction fails `multipleOf`.
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "int": {"type": "integer", "format": "int64"},
            "bool": {"type": "boolean"},
            "string": {"type": "string", "maxLength": ATTRIBUTE_STRING_MAX},
            "version": {
                "type": "string",
                "description": "A semantic version (semver 2.0.0), e.g. 1.2.3.",
                "maxLength": ATTRIBUTE_STRING_MAX,
                "pattern": SEMVER_RE,
            },
            "ints": _value_list({"type": "integer", "format": "int64"}),
            "bools": _value_list({"type": "boolean"}),
            "strings": _value_list({"type": "string", "maxLength": ATTRIBUTE_STRING_MAX}),
            "versions": _value_list({"type": "string", "maxLength": ATTRIBUTE_STRING_MAX, "pattern": SEMVER_RE}),
        },
        "minProperties": 1,
        "maxProperties": 1,
        "anyOf": [{"required": [key]} for key in ("int", "bool", "string", "version", *LIST_KINDS)],
        "maxLength": ATTRIBUTE_STRING_MAX,
        "multipleOf": 1,
    }


def _value_list(item: Schema) -> Schema:
    # 48 values per device is the apiserver's bound (1.36+); one list cannot hold more
    return {"type": "array", "minItems": 1, "maxItems": 48, "x-kubernetes-list-type": "atomic", "items": item}


def _counters(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "minProperties": 1,
        "maxProperties": LOOSEST.max_counters_per_set,
        "additionalProperties": _quantity_value(
            "A counter: {value: <quantity>} or the shorthand quantity.", request_policy=False
        ),
    }


def _label_name_list(description: str) -> Schema:
    return {
        "type": "array",
        "description": description,
        "maxItems": LOOSEST.max_binding_conditions,
        "x-kubernetes-list-type": "set",
        "items": _string("A condition type.", max_length=QUALIFIED_NAME_MAX, pattern=LABEL_NAME_RE),
    }


def _requirement() -> Schema:
    return {
        "type": "object",
        "description": "A node label requirement, as in Karpenter's NodeOverlay.",
        "required": ["key", "operator"],
        "properties": {
            "key": _string(
                "The node label key, e.g. node.kubernetes.io/instance-type.",
                max_length=QUALIFIED_NAME_MAX,
                pattern=LABEL_NAME_RE,
            ),
            "operator": {"type": "string", "description": "How the label is compared.", "enum": list(OPERATORS)},
            "values": {
                "type": "array",
                "description": "Label values; one non-negative integer for Gt, Lt, Gte and Lte.",
                "maxItems": MAX_REQUIREMENT_VALUES,
                "x-kubernetes-list-type": "atomic",
                "items": _string("A label value.", max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_RE),
            },
        },
        "x-kubernetes-validations": [
            _rule(
                "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
                "operators In and NotIn need at least one value",
                ".values",
                "FieldValueRequired",
            ),
            _rule(
                "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
                "operators Exists and DoesNotExist take no values (remove 'values')",
                ".values",
            ),
            _rule(
                "!(self.operator in ['Gt', 'Lt', 'Gte', 'Lte']) || "
                f"(has(self.values) && size(self.values) == 1 && self.values[0].matches(r'{UNSIGNED_INTEGER_RE}'))",
                "operators Gt, Lt, Gte and Lte need exactly one value, a non-negative integer such as '4'",
                ".values",
            ),
        ],
    }


def _taint() -> Schema:
    return {
        "type": "object",
        "description": "A device taint; the apiserver fills in timeAdded.",
        "required": ["key", "effect"],
        "properties": {
            "key": _string("The taint key, a label name.", max_length=QUALIFIED_NAME_MAX, pattern=LABEL_NAME_RE),
            "value": _string("The taint value, a label value.", max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_RE),
            "effect": {
                "type": "string",
                "description": "None, NoSchedule or NoExecute (PreferNoSchedule is not a device taint effect).",
                "enum": list(TAINT_EFFECTS),
            },
        },
    }


def _counter_consumption() -> Schema:
    return {
        "type": "object",
        "description": "What the device consumes from one of the pool's shared counter sets.",
        "required": ["counterSet", "counters"],
        "properties": {
            "counterSet": _dns_label("The name of a counter set in the pool's sharedCounters."),
            "counters": _counters("Counter name (a DNS label) to the amount consumed."),
            "compatibilityGroups": {
                "type": "array",
                "description": "Groups of devices of this counter set that may be allocated together "
                "(Kubernetes 1.37+ with DRADeviceCompatibilityGroups).",
                "maxItems": MAX_COMPATIBILITY_GROUPS,
                "x-kubernetes-list-type": "set",
                "items": _dns_label("A group name."),
            },
        },
    }


def _counter_set() -> Schema:
    return {
        "type": "object",
        "description": "Shared counters of partitionable devices.",
        "required": ["name", "counters"],
        "properties": {
            "name": _dns_label("The counter set name, unique in the pool."),
            "counters": _counters("Counter name (a DNS label) to the amount available."),
        },
    }


def _device() -> Schema:
    label_max = DNS1123_LABEL_MAX
    return {
        "type": "object",
        "description": "A device, or with count N devices named <name>-0 ... <name>-<N-1>.",
        "required": ["name"],
        "properties": {
            "name": _dns_label("The device name (a DNS label), unique in the pool."),
            "count": {
                "type": "integer",
                "description": "Expand into this many devices named <name>-<i>.",
                "minimum": 1,
                "maximum": MAX_DEVICES_PER_POOL,
            },
            "attributes": {
                "type": "object",
                "description": "Attribute name (a C identifier, optionally <domain>/) to value.",
                "maxProperties": LOOSEST.max_attributes_and_capacities,
                "additionalProperties": _attribute_value(),
            },
            "capacity": {
                "type": "object",
                "description": "Capacity name (a C identifier, optionally <domain>/) to quantity.",
                "maxProperties": LOOSEST.max_attributes_and_capacities,
                "additionalProperties": _quantity_value(
                    "A capacity: {value: <quantity>, requestPolicy: ...} or the shorthand quantity.",
                    request_policy=True,
                ),
            },
            "consumesCounters": {
                "type": "array",
                "description": "Counters consumed from the pool's shared counter sets.",
                "maxItems": LOOSEST.max_consumptions_per_device,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["counterSet"],
                "items": _counter_consumption(),
            },
            "taints": {
                "type": "array",
                "description": "Device taints.",
                "maxItems": LOOSEST.max_taints,
                "x-kubernetes-list-type": "atomic",
                "items": _taint(),
            },
            "allowMultipleAllocations": {
                "type": "boolean",
                "description": "Allow the device in several claims at once (needed for requestPolicy).",
            },
            "bindsToNode": {"type": "boolean", "description": "Bind the claim to the node on allocation."},
            "bindingConditions": _label_name_list("Conditions that must be True before the pod binds."),
            "bindingFailureConditions": _label_name_list("Conditions that fail the binding when True."),
            "driver": _string(
                "Optional; if set it must equal the template's spec.driver.",
                max_length=DRIVER_NAME_MAX,
                pattern=DNS_SUBDOMAIN_RE,
            ),
        },
        "x-kubernetes-validations": [
            _rule(
                f"!has(self.count) || size(self.name) + 1 + size(string(self.count - 1)) <= {label_max}",
                f"with count, the device names <name>-0 ... <name>-<count-1> must fit in {label_max} "
                "characters; shorten the name",
                ".name",
            ),
            _rule(
                "(has(self.bindingConditions) && size(self.bindingConditions) > 0) == "
                "(has(self.bindingFailureConditions) && size(self.bindingFailureConditions) > 0)",
                "bindingConditions and bindingFailureConditions must be set together",
                ".bindingFailureConditions",
            ),
            _rule(
                "!has(self.bindingConditions) || !has(self.bindingFailureConditions) || "
                "!self.bindingConditions.exists(c, c in self.bindingFailureConditions)",
                "bindingFailureConditions must not repeat a binding condition",
                ".bindingFailureConditions",
            ),
        ],
    }


def _slice_template_spec() -> Schema:
    owned_description = "Filled in by the driver for each node; must not be set in a template."
    owned: Schema = {
        "nodeName": {"type": "string", "description": owned_description, "maxLength": DNS1123_SUBDOMAIN_MAX},
        "pool": {"type": "object", "description": owned_description, "x-kubernetes-preserve-unknown-fields": True},
        "nodeSelector": {
            "type": "object",
            "description": owned_description,
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "allNodes": {"type": "boolean", "description": owned_description},
        "perDeviceNodeSelection": {"type": "boolean", "description": owned_description},
    }
    device = _device()["properties"]
    return {
        "type": "object",
        "description": "The ResourceSlice spec without nodeName and pool, which the driver fills in.",
        # driver is required unless a profile sets it: the first rule below
        "properties": {
            "driver": _string(
                "The DRA driver name: a lowercase DNS subdomain of at most 63 characters (no '/'). "
                "Optional with a profile, which sets it.",
                max_length=DRIVER_NAME_MAX,
                pattern=DNS_SUBDOMAIN_RE,
            ),
            "profile": {
                "type": "object",
                "description": "A real driver's devices (dra-kwok profiles; docs/profiles.md), added to "
                "this template's own.",
                "required": ["name"],
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "The profile (dra-kwok profiles lists them).",
                        "maxLength": DNS1123_LABEL_MAX,
                        **({"enum": sorted(PROFILES)} if PROFILES else {}),
                    },
                    "parameters": {
                        "type": "object",
                        "description": "The profile's parameters (checked by the controller).",
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                    "overrides": {
                        "type": "object",
                        "description": "Merged into every device the profile builds.",
                        "properties": {k: device[k] for k in ("attributes", "capacity", "taints")},
                    },
                },
            },
            "devices": {
                "type": "array",
                "description": "The devices of each matching node's pool for this driver.",
                "maxItems": MAX_DEVICES_PER_POOL,
                # Not a map keyed by name: `gpu` and `gpu` with count 8 (gpu-0 ...) do not clash, and
                # names produced by count are checked across the driver's templates by the controller.
                "x-kubernetes-list-type": "atomic",
                "items": _device(),
            },
            "sharedCounters": {
                "type": "array",
                "description": "Counter sets that partitionable devices consume.",
                "maxItems": LOOSEST.max_counter_sets,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": _counter_set(),
            },
            "partitionTypeAttribute": _string(
                "The string attribute (<domain>/<name>) naming each partitionable device's type, e.g. "
                "gpu.example.com/profile (Kubernetes 1.37+ with DRAPartitionableDevicesType).",
                max_length=QUALIFIED_NAME_MAX,
            ),
            "skipNodeOperations": {
                "type": "array",
                "description": "Node operations skipped for these devices: NodePrepareResources (with "
                "NodeUnprepareResources), NodeUnprepareResources or * (Kubernetes 1.37+ with "
                "DRAOptionalNodeOperations).",
                "maxItems": 3,
                "x-kubernetes-list-type": "set",
                "items": {"type": "string", "enum": ["NodePrepareResources", "NodeUnprepareResources", "*"]},
            },
            **owned,
        },
        "x-kubernetes-validations": [
            _rule(
                "has(self.driver) || has(self.profile)",
                "driver is required (or a profile, which sets it)",
                ".driver",
                "FieldValueRequired",
            ),
            *(
                _rule(
                    f"!has(self.{field})",
                    f"{field} must not be set in a template: the driver fills in nodeName and pool for each node",
                    f".{field}",
                    "FieldValueForbidden",
                )
                for field in DRIVER_OWNED_TEMPLATE_FIELDS
            ),
            _rule(
                "!has(self.devices) || !has(self.driver) || "
                "self.devices.all(d, !has(d.driver) || d.driver == self.driver)",
                "a device's driver must equal spec.driver (or be left out)",
                ".devices",
            ),
            _rule(
                "!has(self.devices) || "
                f"self.devices.map(d, has(d.count) ? d.count : 1).sum() <= {MAX_DEVICES_PER_POOL}",
                f"at most {MAX_DEVICES_PER_POOL} devices (count included) per node and driver",
                ".devices",
            ),
        ],
    }


def _slice_template() -> Schema:
    return {
        "type": "object",
        "description": "A ResourceSlice template; each matching node gets its devices.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": [RESOURCE_API_VERSION]},
            "kind": {"type": "string", "enum": ["ResourceSlice"]},
            "metadata": {
                "type": "object",
                "description": "Ignored: the driver names and labels each slice.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "spec": _slice_template_spec(),
        },
    }


def _duration(description: str) -> Schema:
    return {
        "description": description + " A duration such as 30s, 5m or 1m30s (seconds as a number also work).",
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "maxLength": 32,
    }


def _fraction(description: str) -> Schema:
    return {"type": "number", "description": description, "minimum": 0, "maximum": 1}


def _names_list(description: str) -> Schema:
    return {"type": "array", "description": description, "maxItems": 128, "items": _dns_label("A device name.")}


def _simulation() -> Schema:
    """`simulation`: the driver's behaviour after publishing (core/simulation.py); each part off when unset."""
    free_object: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "type": "object",
        "description": "What the fake driver does after publishing: publish delay, claim status, binding, faults.",
        "properties": {
            "publishDelay": _duration("Publish a node's slices this long after the node appears; MIN-MAX for a range."),
            "claimStatus": {
                "type": "object",
                "description": "Written into ResourceClaim.status.devices for each of our allocated devices.",
                "properties": {
                    "conditions": {
                        "type": "array",
                        "maxItems": MAX_CLAIM_CONDITIONS,
                        "description": "Conditions of each device (default: Ready=True, reason DeviceReady).",
                        "items": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": _string("The condition type.", max_length=316),
                                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                "reason": _string("A CamelCase reason.", max_length=1024),
                                "message": _string("A message.", max_length=32768),
                            },
                        },
                    },
                    "data": {**free_object, "description": "Free-form data per device; placeholders as in attributes."},
                    "networkData": {
                        "type": "object",
                        "description": "Network data per device; placeholders as in attributes.",
                        "properties": {
                            "interfaceName": _string("The interface name.", max_length=MAX_INTERFACE_NAME),
                            "ips": {
                                "type": "array",
                                "maxItems": MAX_NETWORK_IPS,
                                "description": "Addresses in CIDR form (10.9.8.7/24).",
                                "items": _string("An address in CIDR form.", max_length=64),
                            },
                            "hardwareAddress": _string("The hardware address.", max_length=MAX_HARDWARE_ADDRESS),
                        },
                    },
                },
            },
            "binding": {
                "type": "object",
                "description": "Sets the devices' bindingConditions after a delay, or a bindingFailureCondition.",
                "properties": {
                    "delay": _duration("Time from allocation to the conditions being set; MIN-MAX for a range."),
                    "failureFraction": _fraction("Fraction of attempts that fail."),
                    "failDevices": _names_list("Devices whose binding always fails."),
                },
            },
            "faults": {
                "type": "array",
                "maxItems": MAX_FAULT_RULES,
                "description": "Devices that fail and recover over time.",
                "items": {
                    "type": "object",
                    "required": ["effect", "every", "duration"],
                    "properties": {
                        "effect": {"type": "string", "enum": list(FAULT_EFFECTS)},
                        "every": _duration("The period: a device fails at most once in each."),
                        "duration": _duration("How long a fault lasts."),
                        "probability": _fraction("Chance that a device fails in a period (default 1)."),
                        "devices": _names_list("Devices that may fail (default: all)."),
                    },
                },
            },
        },
    }


def _overlay_spec() -> Schema:
    restricted = ", ".join(f"'{name}'" for name in RESTRICTED_CAPACITY)
    return {
        "type": "object",
        "description": "Which nodes (requirements, weight) get which ResourceSlices.",
        # Required, so that a misspelt `requirements` (pruned by a client without strict field
        # validation) is refused instead of making the overlay match every KWOK node.
        "required": ["requirements"],
        "properties": {
            "requirements": {
                "type": "array",
                "description": (
                    "Node label requirements, all of which a node must meet. Required: write [] to match "
                    "every KWOK node."
                ),
                "maxItems": MAX_REQUIREMENTS,
                "x-kubernetes-list-type": "atomic",
                "items": _requirement(),
            },
            "weight": {
                "type": "integer",
                "format": "int32",
                "description": "Precedence among overlays matching the same node (higher wins; unset counts as 0).",
                "minimum": MIN_WEIGHT,
                "maximum": MAX_WEIGHT,
            },
            "capacity": {
                "type": "object",
                "description": "Extended resources Karpenter should plan with (e.g. <driver>/device: 8).",
                "maxProperties": MAX_OVERLAY_CAPACITY,
                "additionalProperties": _quantity("A quantity."),
                "x-kubernetes-validations": [
                    _rule(
                        f"self.all(k, !(k in [{restricted}]))",
                        "cpu, memory, ephemeral-storage and pods are restricted: only extended resources "
                        "(domain/name) may be set",
                        reason="FieldValueForbidden",
                    ),
                    _rule(
                        f"self.all(k, k.matches(r'{LABEL_NAME_RE}'))",
                        "capacity names must be resource names such as example.com/device",
                    ),
                ],
            },
            "resourceSlices": {
                "type": "array",
                "description": "ResourceSlice templates; templates of one driver merge into one pool.",
                "maxItems": MAX_SLICE_TEMPLATES,
                "x-kubernetes-list-type": "atomic",
                "items": _slice_template(),
            },
            "simulation": _simulation(),
        },
    }


def _condition() -> Schema:
    """metav1.Condition."""
    return {
        "type": "object",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": _string("The condition type, e.g. Ready.", max_length=QUALIFIED_NAME_MAX, pattern=LABEL_NAME_RE),
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "reason": _string(
                "A CamelCase reason.",
                max_length=CONDITION_REASON_MAX,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            )
            | {"minLength": 1},
            "message": {"type": "string", "maxLength": CONDITION_MESSAGE_MAX},
        },
    }


def _overlay_status() -> Schema:
    return {
        "type": "object",
        "description": "Written by the controller.",
        "properties": {
            "conditions": {
                "type": "array",
                "description": "Ready: the overlay is valid and applied (False with the reasons otherwise).",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": _condition(),
            },
            "matchedNodes": {
                "type": "integer",
                "format": "int32",
                "description": "The number of nodes whose ResourceSlices come from this overlay.",
                "minimum": 0,
            },
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }


def overlay_crd() -> dict[str, Any]:
    """The DRANodeOverlay CustomResourceDefinition as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": OVERLAY_GROUP,
            "names": {
                "kind": OVERLAY_KIND,
                "listKind": f"{OVERLAY_KIND}List",
                "plural": OVERLAY_PLURAL,
                "singular": OVERLAY_SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": OVERLAY_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Weight", "type": "integer", "jsonPath": ".spec.weight"},
                        {"name": "Nodes", "type": "integer", "jsonPath": ".status.matchedNodes"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "description": "Why it is applied or not: Applied, InvalidSpec, RenderFailed, Conflict.",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "DRANodeOverlay gives the KWOK nodes that meet its requirements the ResourceSlices "
                                "of its templates (Karpenter NodeOverlay style); the highest weight wins per driver."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _overlay_spec(),
                                "status": _overlay_status(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as the YAML committed in crds/ (`make crds`; the CLI's `dra-kwok crd`)."""
    # No line folding: CEL rules and patterns stay on one line each, as written here.
    body = yaml.safe_dump(overlay_crd(), sort_keys=False, width=1_000_000, allow_unicode=True)
    return HEADER + "---\n" + body
