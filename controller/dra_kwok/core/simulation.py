"""What a source asks the fake driver to do after publishing, as a real driver would: publish a
while after the node appears, fill in claims' device status, set binding conditions after an
attach delay (or fail them), and let devices fail and recover over time.

All of it is off unless a DRANodeOverlay's or a ConfigMap mapping's `simulation` asks for it.
Every random choice is a hash of stable names and times (`unit`), so a restarted controller makes
the same choices again and nothing is lost or invented across restarts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from . import names
from .issues import shown
from .model_base import Model

MAX_FAULT_RULES = 8
MAX_CLAIM_CONDITIONS = 8  # AllocatedDeviceStatusMaxConditions
MAX_NETWORK_IPS = 16
MAX_INTERFACE_NAME = 256
MAX_HARDWARE_ADDRESS = 128
MAX_DATA_BYTES = 10 * 1024
MAX_DURATION_SECONDS = 7 * 24 * 3600.0
FAULT_TAINT_KEY = "dra-kwok.test.karpenter.sh/fault"
FAULT_EFFECTS = ("NoSchedule", "NoExecute", "Remove")
CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("90s", "1m30s", "250ms", "2h"); ValueError naming the fix."""
    value = text.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise ValueError(f"{shown(text)} is not a duration: write e.g. 30s, 5m, 1m30s or 250ms")
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f"{shown(text)} is longer than a week (the most a simulated delay may be)")
    return total


def unit(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts`: the same node, device and time give the same choice."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value} is negative: a duration is 0s or more")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 30s")
    return parse_duration(value)


def _delay(value: Any) -> tuple[float, float]:
    """A fixed delay (`10s`) or a range (`5s-20s`, `{min: 5s, max: 20s}`) as (low, high) seconds."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, dict) and value and set(value) <= {"min", "max"}:
        low, high = value.get("min", 0), value.get("max", value.get("min", 0))
    elif isinstance(value, str) and "-" in value:
        low, _, high = value.partition("-")
    else:
        low = high = value
    lo, hi = _duration(low), _duration(high)
    if hi < lo:
        raise ValueError(f"{shown(str(value))}: the end of the range is before its start; write it as MIN-MAX")
    return (lo, hi)


def _delay_text(value: tuple[float, float]) -> str:
    low, high = value
    return f"{low:g}s" if low == high else f"{low:g}s-{high:g}s"


# A delay: each node or claim gets its own in the range (`pick`), the same one after a restart.
Delay = Annotated[tuple[float, float], BeforeValidator(_delay), PlainSerializer(_delay_text)]


def pick(delay: tuple[float, float], *parts: str) -> float:
    """The delay in `delay` for the thing named by `parts`."""
    low, high = delay
    if high == low:
        return low
    return low + (high - low) * unit("delay", *parts)


Fraction = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]


class ClaimCondition(Model):
    """A condition written on each of our devices in a claim's status.devices."""

    type: StrictStr
    status: Literal["True", "False", "Unknown"] = "True"
    reason: StrictStr = "Simulated"
    message: Annotated[StrictStr, Field(max_length=32768)] = ""

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if problem := names.qualified_name_problem(value):
            raise ValueError(f"condition type {shown(value)}: {problem}")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not CONDITION_REASON.match(value) or len(value) > 1024:
            raise ValueError(
                f"reason {shown(value)} must start with a letter and hold only letters, digits, '_', ',' and ':' "
                "(e.g. DeviceReady)"
            )
        return value


def _default_conditions() -> list[ClaimCondition]:
    return [ClaimCondition(type="Ready", reason="DeviceReady")]


def _ip_problem(text: str) -> str | None:
    if "{" in text:
        return None  # filled in per device; checked then
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return f"{shown(text)} must be an address in CIDR form, e.g. 10.9.8.7/24 or 2001:db8::1/64"
    if "/" not in text:
        return f"{shown(text)} needs a prefix length, e.g. {text}/24"
    canonical = f"{iface.ip}/{iface.network.prefixlen}"
    if canonical != text:
        return f"{shown(text)} must be in canonical form: {canonical}"
    return None


ip_problem = _ip_problem


class NetworkData(Model):
    """`networkData` of each device's status entry; placeholders as in attributes."""

    interface_name: Annotated[StrictStr, Field(max_length=MAX_INTERFACE_NAME)] | None = None
    ips: Annotated[list[StrictStr], Field(max_length=MAX_NETWORK_IPS)] = Field(default_factory=list)
    hardware_address: Annotated[StrictStr, Field(max_length=MAX_HARDWARE_ADDRESS)] | None = None

    @field_validator("ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        problems = [p for ip in value if (p := _ip_problem(ip))]
        if problems:
            raise ValueError("; ".join(problems))
        if len(set(value)) != len(value):
            raise ValueError("addresses must be unique")
        return value


class ClaimStatus(Model):
    """What a real driver's node plugin writes into `ResourceClaim.status.devices` for each
    device it prepared: conditions, free-form `data` and `networkData`."""

    conditions: Annotated[list[ClaimCondition], Field(max_length=MAX_CLAIM_CONDITIONS)] = Field(
        default_factory=_default_conditions
    )
    data: dict[str, Any] | None = None
    network_data: NetworkData | None = None

    @field_validator("conditions")
    @classmethod
    def _unique_types(cls, value: list[ClaimCondition]) -> list[ClaimCondition]:
        types = [c.type for c in value]
        if len(set(types)) != len(types):
            raise ValueError("condition types must be unique")
        return value

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_DATA_BYTES:
            raise ValueError(f"is larger than the apiserver's {MAX_DATA_BYTES} bytes for a device's data")
        return value


class Binding(Model):
    """For devices published with `bindingConditions`: set them True on the claim `delay` after
    the allocation (the scheduler's PreBind then binds the pod), or set the first of the
    device's `bindingFailureConditions` for `failureFraction` of the attempts or always for the
    devices in `failDevices` (PreBind fails, the scheduler deallocates and tries again)."""

    delay: Delay = (0.0, 0.0)
    failure_fraction: Fraction = 0
    fail_devices: list[StrictStr] = Field(default_factory=list)

    @field_validator("fail_devices")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        problems = [f"device name {shown(v)} {p}" for v in value if (p := names.dns_label_problem(v))]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class FaultRule(Model):
    """Devices fail on their own: time is cut into periods of `every`; in each, a device fails
    with `probability`, for `duration`, at a moment fixed by a hash of the node, the device and
    the period. A failed device gets a taint (NoSchedule: no new allocations; NoExecute: the
    controller-manager evicts its pods) or is removed from its slice (Remove)."""

    effect: Literal["NoSchedule", "NoExecute", "Remove"]
    every: Annotated[float, Field(gt=0)]
    duration: Annotated[float, Field(gt=0)]
    probability: Fraction = 1
    devices: list[StrictStr] = Field(default_factory=list)  # empty: every device of the pool

    @field_validator("every", "duration", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)

    @model_validator(mode="after")
    def _fits(self) -> FaultRule:
        if self.duration > self.every:
            raise ValueError(
                f"duration ({self.duration:g}s) is longer than every ({self.every:g}s): a device fails at most "
                "once per period; make duration shorter or every longer"
            )
        if self.every < 1:
            raise ValueError(f"every ({self.every:g}s) must be at least 1s")
        problems = [f"device name {shown(v)} {p}" for v in self.devices if (p := names.dns_label_problem(v))]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Simulation(Model):
    """`simulation` of a DRANodeOverlay or a ConfigMap mapping; each part is off when unset."""

    publish_delay: Delay | None = None
    claim_status: ClaimStatus | None = None
    binding: Binding | None = None
    faults: Annotated[list[FaultRule], Field(max_length=MAX_FAULT_RULES)] = Field(default_factory=list)

    @property
    def needs_claims(self) -> bool:
        """Whether it asks for writes to ResourceClaims (the controller's --simulate-claims)."""
        return self.claim_status is not None or self.binding is not None

    @property
    def taints(self) -> bool:
        """Whether its faults may add taints to devices (slices are laid out for them)."""
        return any(f.effect != "Remove" for f in self.faults)
