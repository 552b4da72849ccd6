"""What the apiserver kept of a slice we applied: fields it dropped silently.

An apiserver drops fields of a feature it does not enable (a gate off: binding conditions on 1.34,
device taints without DRADeviceTaints) or does not know (a newer version's field), and answers
200: the response, compared with what was sent, is the only place this shows. Values it rewrote
(canonical quantities) and fields it added (defaults) are not dropping; empty values are not
sent meaningfully (Go's omitempty removes them), so their absence is not either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_REPORTED = 10


def _empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value == {} or value == []


def dropped_fields(sent: Any, stored: Any, path: str = "spec") -> list[str]:
    """Paths (`spec.devices[0].bindingConditions`) present and non-empty in `sent` but missing
    from `stored`; at most MAX_REPORTED, in order."""
    out: list[str] = []
    _walk(sent, stored, path, out)
    return out


def _walk(sent: Any, stored: Any, path: str, out: list[str]) -> None:
    if len(out) >= MAX_REPORTED:
        return
    if isinstance(sent, Mapping):
        if not isinstance(stored, Mapping):
            return
        for key, value in sent.items():
            here = f"{path}.{key}"
            if key not in stored:
                if not _empty(value):
                    out.append(here)
                    if len(out) >= MAX_REPORTED:
                        return
                continue
            _walk(value, stored[key], here, out)
    elif isinstance(sent, Sequence) and not isinstance(sent, str):
        if not isinstance(stored, Sequence) or isinstance(stored, str):
            return
        for i, value in enumerate(sent):
            if i >= len(stored):
                if not _empty(value):
                    out.append(f"{path}[{i}]")
                continue
            _walk(value, stored[i], f"{path}[{i}]", out)
