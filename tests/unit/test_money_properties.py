"""Property tests: every money conversion round-trips for every currency; splits sum exactly."""

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
    STRIPE_PAYOUT_WHOLE_UNITS,
    allocate,
    format_money,
    from_stripe_amount,
    money_from_decimal,
    money_to_decimal,
    stripe_exponent,
    stripe_step,
    to_stripe_amount,
    to_stripe_payout_amount,
)

currencies = st.sampled_from(SUPPORTED_CURRENCIES)
minors = st.integers(min_value=-(10**15), max_value=10**15)


@settings(deadline=None)
@given(minors, currencies)
def test_decimal_text_round_trips_for_every_currency(minor: int, code: str) -> None:
    money = Money(minor, code)
    assert money_from_decimal(format_money(money), code) == money
    assert money_from_decimal(money_to_decimal(money), code.lower()) == money


@settings(deadline=None)
@given(minors, currencies, st.integers(min_value=0, max_value=4))
def test_trailing_zeros_never_change_the_amount(minor: int, code: str, zeros: int) -> None:
    text = format_money(Money(minor, code))
    padded = text + ("." if "." not in text and zeros else "") + "0" * zeros
    assert money_from_decimal(padded, code) == Money(minor, code)


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=99_999_999), currencies)
def test_every_valid_stripe_amount_round_trips(units: int, code: str) -> None:
    amount = units - units % stripe_step(code)
    try:
        money = from_stripe_amount(amount, code.lower())
    except MappingError:
        # only possible when Stripe's exponent is above the ISO one and the amount has a fraction
        assert stripe_exponent(code) > minor_digits(code)
        assert amount % 10 ** (stripe_exponent(code) - minor_digits(code))
        return
    assert to_stripe_amount(money) == (amount, code.lower())


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9), currencies)
def test_money_to_stripe_round_trips_or_refuses_without_rounding(minor: int, code: str) -> None:
    money = Money(minor, code)
    try:
        amount, lower = to_stripe_amount(money, card=True)
    except MappingError as exc:
        assert exc.suggested_fix
        return
    assert lower == code.lower()
    assert from_stripe_amount(amount, lower) == money
    # the Stripe amount means the same decimal value as the ISO amount
    assert Decimal(amount).scaleb(-stripe_exponent(code)) == money_to_decimal(money)


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
    assert amount == 10 ** stripe_exponent(code) and lower == code.lower()
    assert from_stripe_amount(amount, lower) == one


@settings(deadline=None)
@given(minors, currencies)
def test_clarity_and_erp_amounts_round_trip_for_every_currency(minor: int, code: str) -> None:
    money = Money(minor, code)
    assert money_from_clarity(money_to_clarity(money), code) == money
    assert money_from_clarity(money_to_decimal(money).quantize(Decimal(10) ** -max(minor_digits(code), 4)),
                              code) == money  # CEF's decimal(18,4) form, e.g. 19.9900
    assert money_from_erp(money_to_erp(money), code) == money


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9), currencies)
def test_payout_amounts_round_trip_or_refuse(minor: int, code: str) -> None:
    money = Money(minor, code)
    try:
        amount, lower = to_stripe_payout_amount(money)
    except MappingError as exc:
        assert exc.suggested_fix
        return
    assert from_stripe_amount(amount, lower) == money
    if code in STRIPE_PAYOUT_WHOLE_UNITS:
        assert amount % 100 == 0
