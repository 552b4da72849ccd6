"""The faults annotation a user puts on a KWOK Node to fail devices on demand. The controller only
reads it (it writes nothing onto Nodes); `dra-kwok fault` writes it for the user.

    dra-kwok.test.karpenter.sh/faults: "gpu-0=NoExecute@2026-12-01T10:00:00Z,gpu.nvidia.com/gpu-1=Remove"

Each entry is DEVICE=EFFECT, where DEVICE is a device name (any of the node's drivers) or
DRIVER/DEVICE, EFFECT is NoSchedule, NoExecute or Remove, and the optional @TIME (RFC 3339, UTC)
is when the fault began: the taint's timeAdded, from which the controller-manager counts
tolerationSeconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from . import names
from .issues import shown

FAULTS_ANNOTATION = "dra-kwok.test.karpenter.sh/faults"
FAULT_EFFECTS = ("NoSchedule", "NoExecute", "Remove")


@dataclass(frozen=True, slots=True)
class RequestedFault:
    driver: str | None
    device: str
    effect: str
    since: datetime | None = None

    @property
    def target(self) -> str:
        return f"{self.driver}/{self.device}" if self.driver else self.device

    def text(self) -> str:
        stamp = f"@{self.since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}" if self.since else ""
        return f"{self.target}={self.effect}{stamp}"


def parse_entry(entry: str) -> tuple[RequestedFault | None, str | None]:
    """One DEVICE=EFFECT[@TIME] entry, or the problem with it (naming the entry and the fix)."""
    target, sep, rest = entry.partition("=")
    if not sep:
        return None, f"fault {shown(entry)}: write DEVICE=EFFECT, e.g. gpu-0=NoExecute"
    effect, at, stamp = rest.partition("@")
    if effect not in FAULT_EFFECTS:
        return None, f"fault {shown(entry)}: effect must be NoSchedule, NoExecute or Remove (got {shown(effect)})"
    driver, slash, device = target.rpartition("/")
    if problem := names.dns_label_problem(device):
        return None, f"fault {shown(entry)}: device name {shown(device)} {problem}"
    if slash and (problem := names.driver_name_problem(driver)):
        return None, f"fault {shown(entry)}: driver {shown(driver)} {problem}"
    since = None
    if at:
        try:
            since = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None, f"fault {shown(entry)}: time {shown(stamp)} is not RFC 3339; write e.g. 2026-12-01T10:00:00Z"
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    return RequestedFault(driver or None, device, effect, since), None


def parse_faults(value: str) -> tuple[list[RequestedFault], list[str]]:
    """The entries of an annotation value and a problem per bad entry (good entries still count)."""
    entries: list[RequestedFault] = []
    problems: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        fault, problem = parse_entry(entry)
        if fault is not None:
            entries.append(fault)
        if problem is not None:
            problems.append(problem)
    return entries, problems


def format_faults(entries: Iterable[RequestedFault]) -> str:
    return ",".join(e.text() for e in entries)


def merge_faults(
    current: str, additions: Sequence[RequestedFault], removals: Sequence[str], now: datetime
) -> tuple[str, list[str]]:
    """The annotation value with `additions` (stamped `now` where they have no time; replacing an
    entry for the same device) and without the devices in `removals`; and problems of the
    current value's bad entries (dropped)."""
    held, problems = parse_faults(current)
    gone = set(removals)
    replaced = {a.target for a in additions}
    kept = [e for e in held if e.target not in gone and e.device not in gone and e.target not in replaced]
    stamped = [a if a.since is not None else RequestedFault(a.driver, a.device, a.effect, now) for a in additions]
    return format_faults([*kept, *stamped]), problems
