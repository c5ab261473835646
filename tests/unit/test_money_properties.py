"""Property tests: every money conversion round-trips for every currency; splits sum exactly.

Currencies are drawn at random from the whole ISO table, and every currency with a Stripe rule of its own
(``tests/support/stripe_currencies.py``: zero- and three-decimal, ISK/UGX, HUF/TWD payouts, and those
whose Stripe exponent is not the ISO one) runs as explicit examples on every run, at the amounts where
its rule bites. What Stripe accepts is checked against the rules as facts/stripe.md states them.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES, minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.clarity import money_from_clarity, money_to_clarity
from commerce_bridge.mapping.erp import money_from_erp, money_to_erp
from commerce_bridge.mapping.money import (
    CARD_MAX_AMOUNT,
    allocate,
    format_money,
    from_stripe_amount,
    money_from_decimal,
    money_to_decimal,
    to_stripe_amount,
    to_stripe_payout_amount,
)
from tests.support.stripe_currencies import (
    EDGE_AMOUNTS,
    PAYOUT_WHOLE_UNITS,
    SPECIAL,
    exponent,
    special_examples,
    step,
)

currencies = st.sampled_from(SUPPORTED_CURRENCIES)
minors = st.integers(min_value=-(10**15), max_value=10**15)
SIGNED_EDGES = (*EDGE_AMOUNTS, -5124, -(10**15), 10**15)


def stripe_units(minor: int, code: str) -> int | None:
    """The Stripe amount of ``minor`` ISO units by the rules of facts/stripe.md, or None if it has none."""
    iso, exp = minor_digits(code), exponent(code)
    if exp >= iso:
        amount = minor * 10 ** (exp - iso)
    elif minor % 10 ** (iso - exp):
        return None  # 5.50 MGA: Stripe takes MGA in whole units
    else:
        amount = minor // 10 ** (iso - exp)
    return None if amount % step(code) else amount  # 5.124 KWD, 550 ISK in Stripe units


def test_every_special_currency_is_an_example_of_every_property() -> None:
    # the examples run on every run; a random draw reaches one of ~180 codes only by chance
    for test in (test_decimal_text_round_trips_for_every_currency, test_trailing_zeros_never_change_the_amount,
                 test_every_valid_stripe_amount_round_trips, test_money_to_stripe_round_trips_or_refuses_without_rounding,
                 test_allocate_sums_exactly_and_stays_near_the_exact_share,
                 test_clarity_and_erp_amounts_round_trip_for_every_currency, test_payout_amounts_round_trip_or_refuse):
        examples = test.hypothesis_explicit_examples  # type: ignore[attr-defined]
        assert {e.args[1] for e in examples} == set(SPECIAL), test.__name__


@special_examples(*SIGNED_EDGES)
@settings(deadline=None)
@given(minors, currencies)
def test_decimal_text_round_trips_for_every_currency(minor: int, code: str) -> None:
    money = Money(minor, code)
    assert money_from_decimal(format_money(money), code) == money
    assert money_from_decimal(money_to_decimal(money), code.lower()) == money


@special_examples(*SIGNED_EDGES, then=(3,))
@settings(deadline=None)
@given(minors, currencies, st.integers(min_value=0, max_value=4))
def test_trailing_zeros_never_change_the_amount(minor: int, code: str, zeros: int) -> None:
    text = format_money(Money(minor, code))
    padded = text + ("." if "." not in text and zeros else "") + "0" * zeros
    assert money_from_decimal(padded, code) == Money(minor, code)


@special_examples()
@settings(deadline=None)
@given(st.integers(min_value=0, max_value=99_999_999), currencies)
def test_every_valid_stripe_amount_round_trips(units: int, code: str) -> None:
    amount = units - units % step(code)
    iso, exp = minor_digits(code), exponent(code)
    try:
        money = from_stripe_amount(amount, code.lower())
    except MappingError:
        # only when Stripe's exponent is above the ISO one and the amount has a fraction ISO lacks (750 UYI)
        assert exp > iso and amount % 10 ** (exp - iso)
        return
    assert to_stripe_amount(money) == (amount, code.lower())
    assert money_to_decimal(money) == Decimal(amount).scaleb(-exp)  # the same value in both units


@special_examples()
@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9), currencies)
def test_money_to_stripe_round_trips_or_refuses_without_rounding(minor: int, code: str) -> None:
    money = Money(minor, code)
    expected = stripe_units(minor, code)
    try:
        amount, lower = to_stripe_amount(money, card=True)
    except MappingError as exc:
        assert exc.suggested_fix
        assert expected is None or expected > CARD_MAX_AMOUNT, f"{format_money(money)} {code} is {expected}"
        return
    assert (amount, lower) == (expected, code.lower())
    assert from_stripe_amount(amount, lower) == money
    # the Stripe amount means the same decimal value as the ISO amount
    assert Decimal(amount).scaleb(-exponent(code)) == money_to_decimal(money)


@special_examples(*SIGNED_EDGES, then=([1, 2, 3],))
@settings(deadline=None)
@given(minors, currencies, st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))
def test_allocate_sums_exactly_and_stays_near_the_exact_share(minor: int, code: str, weights: list[int]) -> None:
    if sum(weights) == 0:
        weights = [*weights, 1]
    parts = allocate(Money(minor, code), weights)
    assert len(parts) == len(weights)
    assert sum(p.minor for p in parts) == minor
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Decimal(minor) * weight / total
        assert abs(Decimal(part.minor) - exact) < 1
        assert part.currency == code


@pytest.mark.parametrize("code", SUPPORTED_CURRENCIES)
def test_one_major_unit_converts_to_stripe_for_every_currency(code: str) -> None:
    one = Money(10 ** minor_digits(code), code)
    amount, lower = to_stripe_amount(one)
    assert amount == 10 ** exponent(code) and lower == code.lower()  # 1 ISK is 100, 1 KWD 1000, 1 MGA 1
    assert from_stripe_amount(amount, lower) == one


@special_examples(*SIGNED_EDGES)
@settings(deadline=None)
@given(minors, currencies)
def test_clarity_and_erp_amounts_round_trip_for_every_currency(minor: int, code: str) -> None:
    money = Money(minor, code)
    assert money_from_clarity(money_to_clarity(money), code) == money
    assert money_from_clarity(money_to_decimal(money).quantize(Decimal(10) ** -max(minor_digits(code), 4)),
                              code) == money  # CEF's decimal(18,4) form, e.g. 19.9900
    assert money_from_erp(money_to_erp(money), code) == money


@special_examples()
@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9), currencies)
def test_payout_amounts_round_trip_or_refuse(minor: int, code: str) -> None:
    money = Money(minor, code)
    expected = stripe_units(minor, code)
    whole_units_only = code in PAYOUT_WHOLE_UNITS
    try:
        amount, lower = to_stripe_payout_amount(money)
    except MappingError as exc:
        assert exc.suggested_fix
        assert expected is None or expected > CARD_MAX_AMOUNT or (whole_units_only and expected % 100), (
            f"{format_money(money)} {code} can be paid out as {expected}")
        return
    assert amount == expected
    assert from_stripe_amount(amount, lower) == money
    if whole_units_only:
        assert amount % 100 == 0
