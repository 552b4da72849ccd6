"""A digest of slice content that is equal for equal content however quantities are spelled:
what the planner compares instead of whole device lists."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from .quantity import canonical_quantity

_QUANTITY_KEYS = frozenset({"value", "default", "min", "max", "step"})
_NORMALIZED_KEYS = _QUANTITY_KEYS | {"validValues"}
_SCALARS = (bool, int, float)


@functools.lru_cache(maxsize=4096)
def _canonical_quantity(value: str) -> str:
    """A quantity string as the apiserver stores it (`1024Mi` and `1Gi` alike, `1000E` as the
    apiserver's `1`), so what we wrote and what we read back compare equal; not a quantity: as is."""
    try:
        return canonical_quantity(value)
    except ValueError:
        return value


def _normalize(value: Any, key: str = "", quantities: bool = True) -> Any:
    """A form in which two spellings of the same content compare equal (quantities by value,
    server-filled taint times and empty fields ignored). A taint's `value` is a label value, not
    a quantity, so nothing under `taints` is compared by quantity.

    Every watch event of a slice goes through here, so scalar members of a mapping are handled
    inline rather than by a recursive call each."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if v is None or k == "timeAdded" or v == [] or v == {}:
                continue
            if isinstance(v, str):
                out[k] = _canonical_quantity(v) if quantities and k in _NORMALIZED_KEYS else v
            elif isinstance(v, _SCALARS):
                out[k] = v
            else:
                out[k] = _normalize(v, k, quantities and k != "taints")
        return out
    if isinstance(value, list):
        return [_normalize(v, key, quantities) for v in value]
    if isinstance(value, str):
        return _canonical_quantity(value) if quantities and key in _NORMALIZED_KEYS else value
    if isinstance(value, Decimal):
        return str(value)
    return value


def fingerprint(content: Mapping[str, Any]) -> str:
    """A short digest of slice content, canonical across quantity spellings. Compared within
    one process only (never stored), so the encoding may change between versions: orjson's,
    with sorted keys, costs a tenth of the standard library's (at a restart, every slice listed)."""
    return hashlib.sha256(orjson.dumps(_normalize(content), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
