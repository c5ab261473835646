"""Money <-> decimals and Money <-> Stripe units: the special currencies, limits and minimums."""

from __future__ import annotations

from decimal import Decimal

import pytest

from commerce_bridge.domain.currency import (
    MINOR_DIGITS,
    NO_MINOR_UNIT,
    SUPPORTED_CURRENCIES,
    WITHDRAWN,
    is_known,
    minor_digits,
    normalize_code,
)
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.money import (
    CARD_MAX_AMOUNT,
    DEFAULT_MAX_AMOUNT,
    MINIMUM_CHARGE,
    allocate,
    check_charge_amount,
    format_money,
    from_stripe_amount,
    max_amount_for,
    minimum_charge,
    money_from_decimal,
    money_to_decimal,
    parse_decimal,
    stripe_exponent,
    stripe_step,
    to_stripe_amount,
    to_stripe_payout_amount,
)
from tests.support import stripe_currencies as facts

# -- the ISO table -------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "digits"), [
    ("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("ISK", 0), ("UGX", 0), ("KWD", 3), ("BHD", 3),
    ("IQD", 3), ("LYD", 3), ("CLF", 4), ("UYW", 4), ("MGA", 2), ("HUF", 2), ("XCG", 2), ("ZWG", 2),
    ("SLE", 2), ("VED", 2), ("UYI", 0), ("XOF", 0), ("xpf", 0),
])
def test_iso_minor_digits_match_the_published_list(code: str, digits: int) -> None:
    assert minor_digits(code) == digits


def test_iso_table_holds_every_active_code_and_no_na_code() -> None:
    assert len(MINOR_DIGITS) >= 160
    assert set(SUPPORTED_CURRENCIES) == set(MINOR_DIGITS)
    assert not NO_MINOR_UNIT & set(MINOR_DIGITS)
    assert set(MINOR_DIGITS) >= WITHDRAWN
    assert all(len(code) == 3 and code.isupper() for code in MINOR_DIGITS)


@pytest.mark.parametrize("code", ["ABC", "XAU", "XXX"])
def test_unknown_or_unitless_currency_is_a_mapping_error_with_a_fix(code: str) -> None:
    with pytest.raises(MappingError) as info:
        minor_digits(code)
    assert info.value.suggested_fix
    assert not is_known(code)


@pytest.mark.parametrize("code", ["US", "USDD", "U$D", 840, None, "€UR"])
def test_malformed_currency_code_is_a_mapping_error(code: object) -> None:
    with pytest.raises(MappingError) as info:
        normalize_code(code)
    assert info.value.suggested_fix


def test_known_currency_is_known_in_any_case() -> None:
    assert is_known("usd") and normalize_code(" eur ") == "EUR"


# -- decimals ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "code", "minor"), [
    ("19.9900", "USD", 1999), (Decimal("19.99"), "USD", 1999), (20, "USD", 2000), ("1500", "JPY", 1500),
    ("1500.0000", "JPY", 1500), ("5.1200", "KWD", 5120), ("5.124", "KWD", 5124), ("-2.00", "USD", -200),
    (29.09, "USD", 2909), ("0", "EUR", 0), (" 7.5 ", "eur", 750), ("1.2345", "CLF", 12345),
])
def test_decimal_amounts_become_exact_money(value: object, code: str, minor: int) -> None:
    assert money_from_decimal(value, code) == Money(minor, code.upper())


@pytest.mark.parametrize(("value", "code"), [
    ("19.995", "USD"), ("19.9901", "USD"), ("5.5", "JPY"), ("5.5", "ISK"), ("1.0005", "KWD"),
])
def test_amount_finer_than_one_minor_unit_is_refused_not_rounded(value: str, code: str) -> None:
    with pytest.raises(MappingError) as info:
        money_from_decimal(value, code, field="Totals.Total")
    assert "finer than one minor unit" in str(info.value)
    assert "never rounds" in (info.value.suggested_fix or "")
    assert info.value.details["field"] == "Totals.Total"


@pytest.mark.parametrize("value", [None, True, "abc", "NaN", "Infinity", float("nan"), float("inf"), [1], 0.1 + 0.2])
def test_non_numbers_and_arithmetic_floats_are_refused(value: object) -> None:
    with pytest.raises(MappingError) as info:
        parse_decimal(value)
    assert info.value.suggested_fix


def test_implausibly_large_amounts_are_refused() -> None:
    with pytest.raises(MappingError, match="implausibly large"):
        money_from_decimal("1E+40", "USD")
    with pytest.raises(MappingError, match="implausibly large"):
        money_from_decimal("1" * 70, "USD")


def test_very_long_but_exact_decimal_is_accepted() -> None:
    assert money_from_decimal("1." + "0" * 80, "USD") == Money(100, "USD")
    with pytest.raises(MappingError, match="finer"):
        money_from_decimal("1." + "0" * 80 + "1", "USD")


@pytest.mark.parametrize(("money", "text"), [
    (Money(1999, "USD"), "19.99"), (Money(1500, "JPY"), "1500"), (Money(5120, "KWD"), "5.120"),
    (Money(0, "USD"), "0.00"), (Money(-5, "USD"), "-0.05"), (Money(12345, "CLF"), "1.2345"),
])
def test_money_formats_with_the_currency_decimals(money: Money, text: str) -> None:
    assert format_money(money) == text
    assert money_to_decimal(money) == Decimal(text)


# -- Stripe units --------------------------------------------------------------------------------

@pytest.mark.parametrize(("money", "amount", "code"), [
    (Money(1000, "USD"), 1000, "usd"), (Money(10, "JPY"), 10, "jpy"), (Money(5120, "KWD"), 5120, "kwd"),
    (Money(5, "ISK"), 500, "isk"), (Money(5, "UGX"), 500, "ugx"), (Money(500, "MGA"), 5, "mga"),
    (Money(17550, "HUF"), 17550, "huf"), (Money(12340, "IQD"), 1234, "iqd"), (Money(12300, "CLF"), 123, "clf"),
    (Money(7, "UYI"), 700, "uyi"), (Money(0, "EUR"), 0, "eur"),
])
def test_money_converts_to_stripe_units_for_special_currencies(money: Money, amount: int, code: str) -> None:
    assert to_stripe_amount(money) == (amount, code)
    assert from_stripe_amount(amount, code) == money


def test_three_decimal_amount_not_ending_in_zero_is_refused_with_both_neighbours() -> None:
    with pytest.raises(MappingError) as info:
        to_stripe_amount(Money(5124, "KWD"))
    assert "last digit must be 0" in str(info.value)
    assert "5.120 KWD or 5.130 KWD" in (info.value.suggested_fix or "")


def test_zero_decimal_stripe_currency_with_iso_fraction_is_refused() -> None:
    with pytest.raises(MappingError) as info:
        to_stripe_amount(Money(550, "MGA"))
    assert "5.00 MGA or 6.00 MGA" in (info.value.suggested_fix or "")


@pytest.mark.parametrize(("amount", "code"), [(550, "isk"), (5125, "kwd"), (101, "ugx"), (1.5, "usd"), (True, "usd")])
def test_stripe_amounts_that_break_the_currency_rule_are_refused(amount: object, code: str) -> None:
    with pytest.raises(MappingError):
        from_stripe_amount(amount, code)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", facts.SPECIAL)
def test_every_special_currency_follows_stripes_rules(code: str) -> None:
    # facts/stripe.md section 5, written out in tests/support/stripe_currencies.py
    assert (stripe_exponent(code), stripe_step(code)) == (facts.exponent(code), facts.step(code))
    smallest = Money(1, code)  # one ISO minor unit
    if facts.exponent(code) < minor_digits(code) or facts.step(code) > 10 ** (facts.exponent(code) - minor_digits(code)):
        with pytest.raises(MappingError) as info:  # a fils of KWD, a fraction of MGA: refused, never rounded
            to_stripe_amount(smallest)
        assert "never rounds" in (info.value.suggested_fix or "")
    else:
        assert to_stripe_amount(smallest) == (10 ** (facts.exponent(code) - minor_digits(code)), code.lower())
    if code in facts.PAYOUT_WHOLE_UNITS:  # two decimals, like their ISO exponent
        assert to_stripe_amount(Money(101, code)) == (101, code.lower())  # a charge of 1.01 may carry a fraction...
        with pytest.raises(MappingError):
            to_stripe_payout_amount(Money(101, code))  # ...a payout may not
    one = Money(10 ** minor_digits(code), code)
    assert to_stripe_payout_amount(one) == (10 ** facts.exponent(code), code.lower())


def test_stripe_exponents_and_steps() -> None:
    assert [stripe_exponent(c) for c in ("JPY", "KWD", "USD", "ISK", "UGX", "MGA")] == [0, 3, 2, 2, 2, 0]
    assert [stripe_step(c) for c in ("JPY", "KWD", "USD", "ISK", "UGX")] == [1, 10, 1, 100, 100]


def test_maximum_is_eight_digits_by_default_and_twelve_for_cards() -> None:
    assert max_amount_for("USD") == DEFAULT_MAX_AMOUNT == 99_999_999
    assert max_amount_for("USD", card=True) == CARD_MAX_AMOUNT == 999_999_999_999
    assert max_amount_for("IDR") == 10**12 - 1 and max_amount_for("COP") == 10**10 - 1
    assert max_amount_for("INR") == 10**9 - 1
    assert to_stripe_amount(Money(99_999_999, "USD")) == (99_999_999, "usd")
    with pytest.raises(MappingError, match="maximum"):
        to_stripe_amount(Money(100_000_000, "USD"))
    assert to_stripe_amount(Money(100_000_000, "USD"), card=True)[0] == 100_000_000
    with pytest.raises(MappingError):
        to_stripe_amount(Money(1001, "USD"), max_amount=1000)


def test_payouts_of_huf_and_twd_must_be_whole_units() -> None:
    assert to_stripe_payout_amount(Money(17500, "HUF")) == (17500, "huf")
    assert to_stripe_payout_amount(Money(1999, "USD")) == (1999, "usd")
    with pytest.raises(MappingError) as info:
        to_stripe_payout_amount(Money(17550, "TWD"))
    assert "175.00 TWD or 176.00 TWD" in (info.value.suggested_fix or "")
    assert to_stripe_amount(Money(17550, "TWD")) == (17550, "twd")  # charges may use two decimals


# -- minimums ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "minor"), [
    ("USD", 50), ("GBP", 30), ("JPY", 50), ("KRW", 50), ("HUF", 17500), ("MXN", 1000), ("THB", 1000),
    ("CZK", 1500), ("DKK", 250), ("HKD", 400),
])
def test_minimum_charges_follow_the_table(code: str, minor: int) -> None:
    assert MINIMUM_CHARGE[code] == Money(minor, code)
    assert check_charge_amount(Money(minor, code)) == to_stripe_amount(Money(minor, code))[0]
    with pytest.raises(MappingError) as info:
        check_charge_amount(Money(minor - 1, code))
    assert f"minimum charge in {code} is {format_money(MINIMUM_CHARGE[code])} {code}" in (
        info.value.suggested_fix or "")


def test_minimum_applies_in_the_settlement_currency_only() -> None:
    assert check_charge_amount(Money(10, "USD"), settlement_currency="EUR") == 10
    with pytest.raises(MappingError):
        check_charge_amount(Money(10, "USD"), settlement_currency="usd")
    assert minimum_charge("KWD") is None and check_charge_amount(Money(10, "KWD")) == 10
    assert minimum_charge("usd") == Money(50, "USD")


@pytest.mark.parametrize("minor", [0, -100])
def test_zero_or_negative_charge_is_refused(minor: int) -> None:
    with pytest.raises(MappingError, match="positive"):
        check_charge_amount(Money(minor, "USD"))


def test_check_charge_amount_uses_the_card_maximum_by_default() -> None:
    assert check_charge_amount(Money(10**10, "USD")) == 10**10
    with pytest.raises(MappingError, match="maximum"):
        check_charge_amount(Money(10**10, "USD"), card=False)


# -- allocate ------------------------------------------------------------------------------------

def test_allocate_gives_leftover_units_to_the_largest_remainders() -> None:
    assert allocate(Money(100, "USD"), [1, 1, 1]) == [Money(34, "USD"), Money(33, "USD"), Money(33, "USD")]
    assert allocate(Money(10, "JPY"), [1, 2]) == [Money(3, "JPY"), Money(7, "JPY")]
    assert allocate(Money(-100, "USD"), [1, 1, 1]) == [Money(-34, "USD"), Money(-33, "USD"), Money(-33, "USD")]
    assert allocate(Money(5, "USD"), [0, 3]) == [Money(0, "USD"), Money(5, "USD")]


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 2], [1.5], [True]])
def test_allocate_refuses_bad_weights(weights: list[object]) -> None:
    with pytest.raises(MappingError):
        allocate(Money(100, "USD"), weights)  # type: ignore[arg-type]


# -- the Money value itself ----------------------------------------------------------------------

@pytest.mark.parametrize(("minor", "currency"), [(1.5, "USD"), (True, "USD"), (1, "usd"), (1, "US"), (1, 840)])
def test_money_refuses_floats_and_bad_codes(minor: object, currency: object) -> None:
    with pytest.raises(MappingError):
        Money(minor, currency)  # type: ignore[arg-type]


def test_money_arithmetic_stays_in_one_currency() -> None:
    assert Money(5, "USD") + Money(3, "USD") - Money(1, "USD") == Money(7, "USD")
    assert -Money(5, "USD") == Money(-5, "USD")
    with pytest.raises(MappingError, match="cannot combine"):
        Money(5, "USD") + Money(5, "EUR")


def test_stripe_amount_with_a_fraction_the_iso_currency_lacks_is_refused() -> None:
    # UYI has no decimals in ISO 4217 but Stripe would count it in hundredths
    assert from_stripe_amount(700, "uyi") == Money(7, "UYI")
    with pytest.raises(MappingError, match="fraction"):
        from_stripe_amount(750, "uyi")
