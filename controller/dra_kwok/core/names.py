"""Kubernetes name and value formats, and length-safe deterministic names.

The rules are the apiserver's (`dra-api.md` 3.x): validating them here lets a bad template be
rejected with a precise message before anything reaches the API.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from .api_limits import ATTRIBUTE_VALUE_MAX, C_IDENTIFIER_MAX, DEVICE_DOMAIN_MAX, LABEL_NAME_MAX

# Re-exported: tests read them as names.X.
from .api_limits import DNS1123_LABEL_MAX as DNS1123_LABEL_MAX
from .api_limits import DNS1123_SUBDOMAIN_MAX as DNS1123_SUBDOMAIN_MAX
from .api_limits import DRIVER_NAME_MAX as DRIVER_NAME_MAX
from .api_limits import LABEL_VALUE_MAX as LABEL_VALUE_MAX

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,  # \d is ASCII in Go's regexp, not any Unicode digit
)


def dns_label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label, or None if it is one."""
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be at most {DNS1123_LABEL_MAX} characters (has {len(value)})"
    if not _LABEL.fullmatch(value):
        return "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain, or None if it is one."""
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {DNS1123_SUBDOMAIN_MAX} characters (has {len(value)})"
    if not _SUBDOMAIN.fullmatch(value):
        return (
            "must be a DNS subdomain: lowercase letters, digits, '-' and '.', each dot-separated part "
            "starting and ending with a letter or digit"
        )
    return None


def driver_name_problem(value: str) -> str | None:
    """The apiserver's `spec.driver` rule: at most 63 characters, a DNS subdomain once lowercased."""
    if len(value) > DRIVER_NAME_MAX:
        return f"must be at most {DRIVER_NAME_MAX} characters (has {len(value)})"
    problem = dns_subdomain_problem(value.lower())
    if problem:
        return problem
    if value != value.lower():
        return "should be lowercase (the apiserver warns about upper case driver names)"
    return None


def suggest_driver_name(value: str) -> str:
    """A valid driver name close to `value`: `karpenter.sh/dra-kwok-driver` -> `karpenter.sh.dra-kwok-driver`."""
    text = re.sub(r"[^a-z0-9.-]+", ".", value.lower())
    # Each dot-separated part must start and end with a letter or digit ("0:-:0" must not become "0..0").
    text = ".".join(part.strip("-") for part in text.split(".") if part.strip("-"))
    return text[:DRIVER_NAME_MAX].strip(".-") or "example.com"


def c_identifier_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > C_IDENTIFIER_MAX:
        return f"must be at most {C_IDENTIFIER_MAX} characters (has {len(value)})"
    if not _C_IDENTIFIER.fullmatch(value):
        return "must be a C identifier: letters, digits and '_', not starting with a digit"
    return None


def qualified_name_problem(value: str) -> str | None:
    """The rule for attribute, capacity and counter-consumption keys (`validateQualifiedName`)."""
    parts = value.split("/")
    if len(parts) > 2:
        return "must not contain more than one slash"
    if len(parts) == 2:
        domain, ident = parts
        if not domain:
            return "the domain before '/' must not be empty"
        if len(domain) > DEVICE_DOMAIN_MAX:
            return f"the domain before '/' must be at most {DEVICE_DOMAIN_MAX} characters (has {len(domain)})"
        problem = dns_subdomain_problem(domain.lower())
        if problem:
            return f"the domain before '/' {problem}"
        problem = c_identifier_problem(ident)
        return f"the name after '/' {problem}" if problem else None
    return c_identifier_problem(value)


def suggest_identifiers(value: str) -> list[str]:
    """Valid spellings of an invalid key: `compute-capability` -> `compute_capability`, `computeCapability`."""
    domain, _, ident = value.rpartition("/")
    words = [w for w in re.split(r"[^A-Za-z0-9]+", ident) if w]
    if not words:
        return []
    snake = "_".join(words)
    camel = words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    out = []
    for cand in dict.fromkeys([snake, camel]):
        if cand[0].isdigit():
            cand = "_" + cand
        cand = cand[:C_IDENTIFIER_MAX]
        full = f"{domain}/{cand}" if domain else cand
        if qualified_name_problem(full) is None:
            out.append(full)
    return out


def label_name_problem(value: str) -> str | None:
    """A label or taint key: an optional DNS-subdomain prefix and '/', then a name of at most 63."""
    prefix, slash, name = value.rpartition("/")
    if "/" in prefix:
        return "must not contain more than one slash"
    if slash and not prefix:
        return "the prefix before '/' must not be empty"
    if prefix:
        problem = dns_subdomain_problem(prefix)
        if problem:
            return f"the prefix before '/' {problem}"
    if not name:
        return "the name must not be empty"
    if len(name) > LABEL_NAME_MAX:
        return f"the name must be at most {LABEL_NAME_MAX} characters (has {len(name)})"
    if not _LABEL_NAME.fullmatch(name):
        return "the name must be alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > LABEL_VALUE_MAX:
        return f"must be at most {LABEL_VALUE_MAX} characters (has {len(value)})"
    if not _LABEL_VALUE.fullmatch(value):
        return "must be empty or alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


def string_attribute_problem(value: str) -> str | None:
    """The apiserver limits string attributes to 64 bytes (Go's len), which is 64 characters only in ASCII."""
    size = len(value.encode())
    if size <= ATTRIBUTE_VALUE_MAX:
        return None
    has = f"{size}" if size == len(value) else f"{size} bytes, {len(value)} characters"
    return f"must be at most {ATTRIBUTE_VALUE_MAX} bytes of UTF-8 (has {has})"


def semver_problem(value: str) -> str | None:
    if len(value) > ATTRIBUTE_VALUE_MAX:  # a version attribute's bound too
        return f"must be at most {ATTRIBUTE_VALUE_MAX} characters (has {len(value)})"
    if not _SEMVER.fullmatch(value):
        return "must be a semantic version (semver 2.0.0) such as 1.2.3 or 1.2.3-rc.1"
    return None


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# The namespace of per-node device UUIDs ({deviceUUID}): fixed, so a node's UUIDs never change.
DEVICE_UUID_NAMESPACE = uuid.UUID("6f0a7c52-3d6e-4a35-9a53-9d7f3b1c2e10")


def device_uuid(node: str, device: str) -> str:
    """A UUID unique to (node, device) and the same on every render: what {deviceUUID} becomes."""
    return str(uuid.uuid5(DEVICE_UUID_NAMESPACE, f"{node}/{device}"))


def bounded(name: str, limit: int) -> str:
    """`name` if it fits in `limit`, else a prefix plus a hash of the whole, still a valid name.

    Deterministic and collision-resistant, so two long node names never share a slice name.
    """
    if len(name) <= limit:
        return name
    digest = short_hash(name)
    head = name[: limit - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}"


def label_value_for(text: str) -> str:
    """A label value identifying `text` (a node or driver name), hashed when it does not fit."""
    if label_value_problem(text) is None:
        return text
    return bounded(re.sub(r"[^A-Za-z0-9_.-]", "-", text), LABEL_VALUE_MAX).strip("-_.") or short_hash(text)
