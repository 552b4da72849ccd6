"""Kubernetes resource quantities, read exactly as the apiserver reads them.

`parse` re-states `ParseQuantity` and `Quantity.String()` of k8s.io/apimachinery/pkg/api/resource
(quantity.go, suffix.go, amount.go): the same strings are accepted (every suffix from `n` to `Ei`,
decimal exponents, signs, the spaces `UnmarshalJSON` trims, even the number-less `Gi` that it
reads as 0), the same are refused, the value is rounded up to 1n and binary values are capped at
2^63-1 as there, and `canonical` is the string the apiserver stores. The apiserver stores
quantities in that canonical form ("1000m" becomes "1"), so comparing what we wrote with what we
read back must compare canonical forms, not what was written.

tests/unit/core/test_quantity.py checks this module against a separate statement of the Go
grammar on generated strings; tests/integration/test_quantity_apiserver.py against a real
apiserver.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .api_limits import INT64_MAX, INT64_MIN
from .issues import shown


class Format(StrEnum):
    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
    BINARY_SI = "BinarySI"  # 12Mi
    DECIMAL_SI = "DecimalSI"  # 12M


# Quantity.UnmarshalJSON trims white space (Go's strings.TrimSpace) off the raw JSON string,
# before any JSON escape is decoded: a tab or a no-break space arrives as `\t` or `\u00a0`
# (JSON encoders escape them; Python's always, Go's for control characters) and is not trimmed,
# so only the plain space is reliably trimmed, whoever sends the object.
GO_SPACE = " "

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {e // 10: s for s, e in _BINARY_SUFFIXES.items()}
_SUFFIX_LETTERS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_MAX_INT64_FACTORS = 18  # digits an int64 holds for sure
_NANO = -9

# The apiserver takes quantities of any size, but needs minutes to store one such as 1e100000
# (it strips the factors of ten one division at a time): longer or larger ones are refused here.
MAX_DIGITS = 1000

EXAMPLES = "examples: 16Gi, 80G, 500m, 100n, 1e3, 4"


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: `mantissa * 10**exponent`, the suffix family it was written in, and
    the written text when the apiserver keeps it as written (it is already canonical)."""

    mantissa: int
    exponent: int
    format: Format
    kept: str | None = None

    @property
    def value(self) -> Decimal:
        return _exact(self.mantissa, self.exponent)

    @property
    def canonical(self) -> str:
        """What the apiserver stores and returns (`Quantity.String()`)."""
        return self.kept if self.kept is not None else _canonical(self.mantissa, self.exponent, self.format)


def _exact(mantissa: int, exponent: int) -> Decimal:
    """`mantissa * 10**exponent` as a Decimal, without the context's rounding."""
    return Decimal((int(mantissa < 0), tuple(int(d) for d in str(abs(mantissa))), exponent))


def _scan(text: str) -> tuple[bool, str, str, str, str]:
    """Go's parseQuantityString: (positive, number part, numerator, denominator, suffix)."""
    positive, pos, end = True, 0, len(text)
    if pos < end and text[0] in "+-":
        positive = text[0] == "+"
        pos += 1
    while pos < end and text[pos] == "0":  # leading zeros
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    if pos >= end:
        return positive, text, num, "", ""
    denom = ""
    if text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
        if pos >= end:
            return positive, text, num, denom, ""
    number, suffix_start = text[:pos], pos
    while pos < end and text[pos] in _SUFFIX_LETTERS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise ValueError("format")
    return positive, number, num, denom, text[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, Format]:
    """(base, exponent, format) of a suffix, as Go's quantitySuffixer.interpret; ValueError if none."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], Format.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[0] in "+-" else digits
        if not body or not set(body) <= _DIGITS:
            raise ValueError("suffix")
        parsed = int(digits)
        if not INT64_MIN <= parsed <= INT64_MAX:  # strconv.ParseInt(..., 10, 64)
            raise ValueError("suffix")
        return 10, _int32(parsed), Format.DECIMAL_EXPONENT  # Go's int32(parsed)
    raise ValueError("suffix")


def _inf_dec(number: str) -> tuple[int, int]:
    """gopkg.in/inf.v0's Dec.SetString of the number part: (unscaled, exponent); ValueError if no digit."""
    body = number[1:] if number[:1] in "+-" else number
    whole, _, fraction = body.partition(".")
    if not (whole + fraction):
        raise ValueError("numeric")
    unscaled = int(whole + fraction)
    return (-unscaled if number.startswith("-") else unscaled), -len(fraction)


def _round_up_to_nano(magnitude: int, exponent: int) -> tuple[int, int]:
    """A non-negative `magnitude * 10**exponent` rounded up to a multiple of 10**-9."""
    if exponent >= _NANO or magnitude == 0:
        return magnitude, exponent
    shift = _NANO - exponent
    if shift > len(str(magnitude)):  # below 1n whatever the digits: rounds up to 1n
        return 1, _NANO
    return -(-magnitude // 10**shift), _NANO


def _parse(text: str) -> Quantity:
    """Go's ParseQuantity on an already trimmed string; ValueError if it refuses it."""
    if not text:
        raise ValueError("empty")
    if text == "0":
        return Quantity(0, 0, Format.DECIMAL_SI, "0")
    positive, number, num, denom, suffix = _scan(text)
    base, exponent, fmt = _interpret(suffix)

    precision, scale, mantissa = 0, 0, 1
    if fmt is Format.BINARY_SI:
        if exponent >= 0 and not denom:
            mantissa = 1 << exponent
            precision = 15 - len(num) - exponent * 3 // 10 - 1
        else:
            precision = -1
    else:
        scale = exponent
        precision = _MAX_INT64_FACTORS - (len(num) + len(denom))
    if precision >= 0:
        scale -= len(denom)
        if scale >= _NANO:
            shifted = num + denom
            value = int(shifted)
            result = value * mantissa
            if result <= INT64_MAX:
                if not positive:
                    result = -result
                if fmt is Format.BINARY_SI:
                    reuse = exponent % 10 == 0 and value & 0x07 != 0
                else:
                    reuse = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
                return Quantity(result, scale, fmt, text if reuse else None)

    unscaled, exp10 = _inf_dec(number)
    if base == 10:
        exp10 += exponent
    else:
        unscaled <<= exponent
    negative, magnitude = unscaled < 0, abs(unscaled)
    if magnitude and len(str(magnitude)) + exp10 > MAX_DIGITS:
        raise ValueError("range")
    magnitude, exp10 = _round_up_to_nano(magnitude, exp10)
    if fmt is Format.BINARY_SI:  # exp10 is -9..0 here: it comes from the fraction digits only
        scaled = 10**-exp10
        if magnitude > INT64_MAX * scaled:
            magnitude, exp10 = INT64_MAX, 0
        elif 0 < magnitude < scaled:
            fmt = Format.DECIMAL_SI
    return Quantity(-magnitude if negative else magnitude, exp10, fmt)


def _int32(value: int) -> int:
    """Go's int32 arithmetic wraps around."""
    return (value + 2**31) % 2**32 - 2**31


def _without_factors(value: int, factor: int) -> tuple[int, int]:
    times = 0
    while value and value % factor == 0:
        value //= factor
        times += 1
    return value, times


def _canonical(mantissa: int, exponent: int, fmt: Format) -> str:
    """Go's Quantity.CanonicalizeBytes: the largest suffix that loses nothing, no fraction digits."""
    if mantissa == 0:
        return "0"
    if fmt is Format.BINARY_SI:
        whole, fraction = divmod(abs(mantissa), 10**-exponent) if exponent < 0 else (abs(mantissa) * 10**exponent, 0)
        if whole < 1024 or fraction:
            fmt = Format.DECIMAL_SI  # small or fractional values are shown in decimal
        else:
            number, power = _without_factors(whole, 1024)
            return f"{'-' if mantissa < 0 else ''}{number}{_BINARY_BY_EXPONENT.get(power, '')}"
    number, times = _without_factors(mantissa, 10)
    exponent = _int32(exponent + times)
    while _int32(exponent) % 3:  # Go lowers the exponent (an int32) to a multiple of 3
        number *= 10
        exponent = _int32(exponent - 1)
    if fmt is Format.DECIMAL_EXPONENT:
        return f"{number}e{exponent}" if exponent else str(number)
    # Beyond E the apiserver finds no suffix and writes the bare number (1000E is stored as 1).
    return f"{number}{_DECIMAL_BY_EXPONENT.get(exponent, '')}"


def parse(text: str) -> Quantity:
    """A quantity string as the apiserver reads it from JSON; ValueError naming the text if it
    refuses it (or, past MAX_DIGITS, would take minutes to store it)."""
    if not isinstance(text, str):
        raise ValueError(f"{shown(text)} is not a quantity ({EXAMPLES})")
    return _parse_cached(text)


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Quantity:
    trimmed = text.strip(GO_SPACE)
    try:
        if len(trimmed) > MAX_DIGITS:
            _interpret(_scan(trimmed)[4])  # a malformed one is "not a quantity", however long
            raise ValueError("range")
        return _parse(trimmed)
    except ValueError as exc:
        if str(exc) == "range":
            raise ValueError(
                f"{shown(text)} is out of range for a quantity (at most {MAX_DIGITS} characters and digits)"
            ) from None
        raise ValueError(f"{shown(text)} is not a quantity ({EXAMPLES})") from None


def parse_quantity(text: str) -> Decimal:
    """The value the apiserver holds for a quantity string such as `16Gi`, `500m`, `100n` or
    `1e3`; ValueError if it refuses the string."""
    return parse(text).value


def canonical_quantity(text: str) -> str:
    """The string the apiserver stores for a quantity (`1.5Gi` → `1536Mi`); ValueError if malformed."""
    return parse(text).canonical


def quantity_problem(value: object) -> str | None:
    """Why `value` (a string or an integer from YAML) is not a quantity, or None."""
    if isinstance(value, float):
        return f'a number with a fraction ({value}) must be quoted to be a quantity ("{value}")'
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "must be a quantity string such as 16Gi or 500m, or an integer"
    if isinstance(value, int):
        return None
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def quantity_surprise(value: object) -> str | None:
    """Why the apiserver will store a valid quantity as something other than what it seems to say
    (no number at all, rounded up to 1n, capped at 2^63-1, no suffix beyond E, an exponent past
    int32), or None."""
    return _surprise(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=8192)
def _surprise(value: str) -> str | None:
    try:
        q = parse(value)
    except ValueError:
        return None
    text = value.strip(GO_SPACE)
    if text == "0":
        return None
    _, number, _, _, suffix = _scan(text)
    if not any(c in _DIGITS for c in text[: len(text) - len(suffix)]):
        return f"{shown(value)} has no number: the apiserver reads it as 0"
    unscaled, exp10 = _inf_dec(number)
    if suffix in _BINARY_SUFFIXES:
        written = _exact(unscaled << _BINARY_SUFFIXES[suffix], exp10)
    else:
        exponent = _DECIMAL_SUFFIXES[suffix] if suffix in _DECIMAL_SUFFIXES else int(suffix[1:])
        written = _exact(unscaled, exp10 + exponent)
    stored = q.canonical
    if parse(stored).value != written:
        return f"{shown(value)} is stored by the apiserver as {stored!r}, a different value"
    return None


def same_quantity(a: object, b: object) -> bool:
    """True if two quantity spellings have the same value (`1000m` and `1`)."""
    try:
        return parse_quantity(str(a)) == parse_quantity(str(b))
    except ValueError:
        return str(a) == str(b)
