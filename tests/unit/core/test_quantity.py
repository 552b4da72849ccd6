"""Quantities as the apiserver reads and stores them: Go's own test tables
(k8s.io/apimachinery/pkg/api/resource/quantity_test.go), and a property test against a separate
statement of the Go grammar (tests/strategies.py) on generated strings. The stored canonical forms
are compared with a real apiserver in tests/integration/test_quantity_apiserver.py."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dra_kwok.core.quantity import (
    MAX_DIGITS,
    canonical_quantity,
    parse,
    parse_quantity,
    quantity_problem,
    quantity_surprise,
    same_quantity,
)
from tests import strategies as gen

NOT_A_QUANTITY = "{!r} is not a quantity (examples: 16Gi, 80G, 500m, 100n, 1e3, 4)"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("4", Decimal(4)),
        ("16Gi", Decimal(16 * 2**30)),
        ("1.5Ki", Decimal(1536)),
        ("80G", Decimal(80 * 10**9)),
        ("500m", Decimal("0.5")),
        ("100n", Decimal("1e-7")),
        ("5u", Decimal("5e-6")),
        ("1k", Decimal(1000)),
        ("2Ei", Decimal(2 * 2**60)),
        ("3E", Decimal(3 * 10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("5e-1", Decimal("0.5")),
        ("1.3E+6", Decimal(1_300_000)),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
        ("1.G", Decimal(10**9)),
        # Go's table: rounded up to 1n, binary values capped at 2^63-1
        ("3.001n", Decimal("4e-9")),
        ("0.00000012345", Decimal("124e-9")),
        ("0.5e-9", Decimal("1e-9")),
        ("9Ei", Decimal(2**63 - 1)),
        ("9223372036854775807Ki", Decimal(2**63 - 1)),
        ("0.000000000001Ki", Decimal("2e-9")),
        ("100.035Ki", Decimal("102435.84")),
        # JSON decoding trims spaces
        (" 16Gi", Decimal(16 * 2**30)),
        ("1  ", Decimal(1)),
        # the scanner reads a missing number as 0
        ("Gi", Decimal(0)),
        ("+", Decimal(0)),
        ("-.", Decimal(0)),
        ("e5", Decimal(0)),
        # the exponent is an int32 in Go
        ("1e4294967296", Decimal(1)),
    ],
)
def test_parses_what_the_apiserver_parses(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    # Go's invalid table, then the scanner's and the suffixes' limits
    ["1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-"]
    + ["", " ", "16 Gi", "16gi", "16GB", "1.2.3", "1e", "0x10", "1Ki1", "--1", "1K", "1ee3", "1e+", "1e1.5"]
    + ["Pi", "Ei", "e-10", "1e99999999999999999999", "\x1c1"]
    # other white space reaches the apiserver JSON-escaped (\t, \u00a0), and is not trimmed
    + ["1\t", "\t1", "\n1", "\xa01", "1\u3000"],
)
def test_refuses_what_the_apiserver_refuses(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert str(caught.value) == NOT_A_QUANTITY.format(text)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # Go's TestQuantityString and TestQuantityParseEmit: canonical forms are kept as written
        *((s, s) for s in ["1Gi", "300Mi", "6Ki", "1001Gi", "1Ti", "5", "500m", "1G", "1m", "80m", "1080m"]),
        *((s, s) for s in ["300M", "1T", "1234567M", "1234567m", "3k", "1025", "0", "1e9", "1e-3", "1e-9"]),
        *((s, s) for s in ["80e-3", "300e6", "1e12", "1e3", "3e3", "1n", "80n", "1080n", "1u", "80u", "1080u"]),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        ("-1024Mi", "-1Gi"),
        ("-.001Ki", "-1024m"),
        # others
        ("1.5", "1500m"),
        ("1.5Gi", "1536Mi"),
        ("1000m", "1"),
        ("0.5Ki", "512"),
        ("1.1Ki", "1126400m"),
        ("1000e0", "1e3"),
        ("1e1", "10"),
        ("0.1n", "1n"),
        ("00", "0"),
        ("Gi", "0"),
        (" 16Gi ", "16Gi"),
        ("8192Ei", "9223372036854775807"),
        # kept as written when already canonical: the sign and leading zeros stay
        ("+1", "+1"),
        ("01", "01"),
        ("1.", "1."),
        ("-1Ki", "-1Ki"),
        # past E there is no suffix, and the apiserver writes the bare number
        ("1000E", "1"),
    ],
)
def test_canonical_form_is_what_the_apiserver_stores(text: str, stored: str) -> None:
    assert canonical_quantity(text) == stored


@pytest.mark.parametrize(
    ("text", "surprise"),
    [
        ("Gi", "'Gi' has no number: the apiserver reads it as 0"),
        ("+", "'+' has no number: the apiserver reads it as 0"),
        ("1000E", "'1000E' is stored by the apiserver as '1', a different value"),
        ("0.1n", "'0.1n' is stored by the apiserver as '1n', a different value"),
        ("9Ei", "'9Ei' is stored by the apiserver as '9223372036854775807', a different value"),
        ("1e4294967296", "'1e4294967296' is stored by the apiserver as '1e4294967296', a different value"),
    ],
)
def test_surprising_readings_are_explained(text: str, surprise: str) -> None:
    assert quantity_surprise(text) == surprise


@pytest.mark.parametrize("text", ["16Gi", "1.5", "+1", "01", " 4 ", "100n", "1e5000", 4])
def test_ordinary_quantities_are_no_surprise(text: object) -> None:
    assert quantity_surprise(text) is None


@pytest.mark.parametrize("text", ["\u0661", "1\u0662Gi", "\uff11"])
def test_only_ascii_digits_make_a_quantity(text: str) -> None:
    """Python's `\\d` and Decimal accept any Unicode digit; Kubernetes does not."""
    assert quantity_problem(text) == NOT_A_QUANTITY.format(text)


@pytest.mark.parametrize("text", ["1" + "0" * MAX_DIGITS + "e1", "9" * 1_000_001, "1" * 25 + "e990"])
def test_refuses_values_the_apiserver_would_take_minutes_to_store(text: str) -> None:
    with pytest.raises(ValueError, match="is out of range for a quantity"):
        parse_quantity(text)


def test_huge_exponents_the_apiserver_keeps_cheap_are_accepted() -> None:
    assert canonical_quantity("1e5000") == "100e4998"
    assert canonical_quantity("1e-2147483648") == "1e-9"


def test_quotes_an_oversized_input_only_in_part() -> None:
    problem = quantity_problem("x" * 100_000)
    assert problem is not None and len(problem) < 200 and problem.startswith("'xxxx")


@pytest.mark.parametrize("value", ["16Gi", "1", 4, 0, -3, "100n", "5u"])
def test_accepts_quantity_strings_and_integers(value: object) -> None:
    assert quantity_problem(value) is None


@pytest.mark.parametrize("value", [True, None, [1], {"value": "1"}])
def test_rejects_other_types(value: object) -> None:
    assert quantity_problem(value) == "must be a quantity string such as 16Gi or 500m, or an integer"


def test_tells_to_quote_a_number_with_a_fraction() -> None:
    assert quantity_problem(1.5) == 'a number with a fraction (1.5) must be quoted to be a quantity ("1.5")'


@pytest.mark.parametrize(
    ("a", "b"),
    [("1Gi", "1024Mi"), ("1000m", "1"), (1, "1"), ("1k", "1000"), ("1e3", "1k"), ("0.5", "500m"), ("2Ki", "2048")],
)
def test_same_quantity_compares_values_not_spellings(a: object, b: object) -> None:
    assert same_quantity(a, b)
    assert same_quantity(b, a)


@pytest.mark.parametrize(("a", "b"), [("1Gi", "1G"), ("1", "2"), ("1m", "1")])
def test_different_values_are_not_the_same_quantity(a: str, b: str) -> None:
    assert not same_quantity(a, b)


def test_same_quantity_falls_back_to_text_for_malformed_values() -> None:
    assert same_quantity("banana", "banana")
    assert not same_quantity("banana", "1")


# --- against the statement of the Go grammar ----------------------------------------------------


def _ours(text: str) -> Fraction | None:
    try:
        return Fraction(parse_quantity(text))
    except ValueError:
        return None


@settings(max_examples=1500, deadline=None)
@given(gen.quantity_strings())
@example("Ti")
@example("Pi")
@example("e-9")
@example("e-10")
@example(".e3")
@example("-")
@example("1.e-3")
def test_accepts_and_values_exactly_what_the_go_grammar_does(text: str) -> None:
    assert _ours(text) == gen.apiserver_quantity_value(text)


@settings(max_examples=800, deadline=None)
@given(st.text(alphabet="0159.+-eEinumkKMGTPi \t", max_size=8))
def test_arbitrary_short_strings_agree_with_the_go_grammar(text: str) -> None:
    assert _ours(text) == gen.apiserver_quantity_value(text)


@settings(max_examples=800, deadline=None)
@given(gen.quantity_strings())
def test_the_canonical_form_is_stable_and_means_the_same(text: str) -> None:
    try:
        q = parse(text)
    except ValueError:
        return
    stored = q.canonical
    assert canonical_quantity(stored) == stored  # what the apiserver stores, it stores again
    if quantity_surprise(text) is None:
        assert parse_quantity(stored) == q.value
    assert stored.strip() == stored
