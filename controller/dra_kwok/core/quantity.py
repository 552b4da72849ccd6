"""Kubernetes resource quantities: parsing for validation and value comparison.

The apiserver stores quantities in canonical form ("1000m" becomes "1"), so comparing what we
wrote with what we read back must compare values, not strings.
"""

from __future__ import annotations

import re
from decimal import Decimal, DecimalException, InvalidOperation

from .issues import shown

_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$",
    re.ASCII,  # Kubernetes takes ASCII digits only
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)}
_DECIMAL |= {"T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity string such as `16Gi`, `500m` or `1e3`; ValueError if malformed."""
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match or text != text.strip():
        raise ValueError(f"{shown(text)} is not a quantity (examples: 16Gi, 80G, 500m, 4)")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"{shown(text)} is not a quantity") from exc
    suffix = match["suffix"] or ""
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix in _DECIMAL:
            return number * _DECIMAL[suffix]
        if suffix:
            return number * (Decimal(10) ** int(suffix[1:]))
        return +number
    except DecimalException as exc:  # an exponent such as 1e9999999 overflows Decimal
        raise ValueError(f"{shown(text)} is out of range for a quantity") from exc


def quantity_problem(value: object) -> str | None:
    """Why `value` (a string or an integer from YAML) is not a quantity, or None."""
    if isinstance(value, float):
        return f'a number with a fraction ({value}) must be quoted to be a quantity ("{value}")'
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "must be a quantity string such as 16Gi or 500m, or an integer"
    if isinstance(value, int):
        return None
    try:
        parse_quantity(value)
    except ValueError as exc:
        return str(exc)
    return None


def same_quantity(a: object, b: object) -> bool:
    """True if two quantity spellings have the same value (`1000m` and `1`)."""
    try:
        return parse_quantity(str(a)) == parse_quantity(str(b))
    except ValueError:
        return str(a) == str(b)
