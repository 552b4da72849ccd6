from __future__ import annotations

from decimal import Decimal

import pytest

from dra_kwok.core.quantity import parse_quantity, quantity_problem, same_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("4", Decimal(4)),
        ("16Gi", Decimal(16 * 2**30)),
        ("1.5Ki", Decimal(1536)),
        ("80G", Decimal(80 * 10**9)),
        ("500m", Decimal("0.5")),
        ("1k", Decimal(1000)),
        ("2Ei", Decimal(2 * 2**60)),
        ("3E", Decimal(3 * 10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("5e-1", Decimal("0.5")),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
    ],
)
def test_parses_kubernetes_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", " 1", "1 ", "16 Gi", "16gi", "16GB", "1.2.3", "Gi", "1e", "0x10", "1Ki1", "--1"])
def test_rejects_malformed_quantities_naming_the_text_and_examples(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert str(caught.value) == f"{text!r} is not a quantity (examples: 16Gi, 80G, 500m, 4)"


@pytest.mark.parametrize("text", ["\u0661", "1\u0662Gi", "\uff11"])
def test_only_ascii_digits_make_a_quantity(text: str) -> None:
    """Python's `\\d` and Decimal accept any Unicode digit; Kubernetes does not."""
    assert quantity_problem(text) == f"{text!r} is not a quantity (examples: 16Gi, 80G, 500m, 4)"


@pytest.mark.parametrize("text", ["1e9999999", "99e999999", "9" * 1_000_001])
def test_rejects_values_that_overflow_instead_of_crashing(text: str) -> None:
    with pytest.raises(ValueError, match="is out of range for a quantity"):
        parse_quantity(text)


def test_quotes_an_oversized_input_only_in_part() -> None:
    problem = quantity_problem("x" * 100_000)
    assert problem is not None and len(problem) < 200 and problem.startswith("'xxxx")


@pytest.mark.parametrize("value", ["16Gi", "1", 4, 0, -3])
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
