"""The fixed limits of the APIs dra-kwok reads and writes, each defined once, with its source.

Kubernetes' name formats (k8s.io/apimachinery pkg/util/validation), the ResourceSlice bounds of
resource.k8s.io (pkg/apis/resource/types.go), metav1.Condition and Karpenter's NodeOverlay (whose
requirements and weight a DRANodeOverlay takes as they are). Only bounds that are the same in every
supported minor are here: those that differ (devices per slice when devices have taints or
counters, taints per device, counter sets, binding conditions ...) are `versions.Limits`, per minor.
Last, dra-kwok's own bounds on what it accepts. The defaults (names, the KWOK node rule) are in
`defaults`.
"""

from __future__ import annotations

from typing import Final

# --- Kubernetes names: k8s.io/apimachinery pkg/util/validation/validation.go ----------------------
DNS1123_LABEL_MAX: Final = 63  # DNS1123LabelMaxLength
DNS1123_SUBDOMAIN_MAX: Final = 253  # DNS1123SubdomainMaxLength
LABEL_VALUE_MAX: Final = 63  # LabelValueMaxLength
LABEL_NAME_MAX: Final = 63  # qualifiedNameMaxLength: a label key's name, after the optional prefix and '/'

# --- resource.k8s.io: kubernetes pkg/apis/resource/types.go ---------------------------------------
DRIVER_NAME_MAX: Final = 63  # DriverNameMaxLength
DEVICE_DOMAIN_MAX: Final = 63  # DeviceMaxDomainLength: the domain of an attribute or capacity name
C_IDENTIFIER_MAX: Final = 32  # DeviceMaxIDLength: the identifier of an attribute or capacity name
ATTRIBUTE_VALUE_MAX: Final = 64  # DeviceAttributeMaxValueLength: string and version values (Go's len: bytes)
MAX_DEVICES_PER_SLICE: Final = 128  # ResourceSliceMaxDevices (fewer with taints or counters: versions.Limits)
POOL_NAME_MAX: Final = DNS1123_SUBDOMAIN_MAX  # PoolNameMaxLength
# At most 2 compatibilityGroups per counter consumption: 1.37's pkg/apis/resource validation, the only
# minor with the field (DRADeviceCompatibilityGroups).
MAX_COMPATIBILITY_GROUPS: Final = 2
# Integer attributes (DeviceAttribute.IntValue), generations and quantity exponents are Go int64s.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# --- metav1.Condition: k8s.io/apimachinery pkg/apis/meta/v1/types.go (kubebuilder markers) --------
# type: +kubebuilder:validation:MaxLength=316, one short of a label key at its longest (253 + '/' + 63)
CONDITION_TYPE_MAX: Final = 316
CONDITION_REASON_MAX: Final = 1024  # reason: +kubebuilder:validation:MaxLength=1024
CONDITION_MESSAGE_MAX: Final = 32768  # message: +kubebuilder:validation:MaxLength=32768

# --- Karpenter's NodeOverlay: kubernetes-sigs/karpenter pkg/apis/v1alpha1/nodeoverlay.go ----------
MAX_REQUIREMENTS: Final = 100  # spec.requirements: +kubebuilder:validation:MaxItems:=100
MIN_WEIGHT: Final = 1  # spec.weight: +kubebuilder:validation:Minimum:=1
MAX_WEIGHT: Final = 10000  # spec.weight: +kubebuilder:validation:Maximum:=10000

# --- dra-kwok's own bounds (DRANodeOverlay templates, config.yaml) --------------------------------
# Devices of one pool (one node and driver), `count` included.
MAX_DEVICES_PER_POOL: Final = 1024
# A mapping's name goes into each slice's source annotation, which the apiserver bounds.
MAX_MAPPING_NAME: Final = 253
