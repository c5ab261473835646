"""Money as people write it (the demo's table): the currency's ISO exponent, thousands grouped, never rounded."""

from __future__ import annotations

import pytest

from commerce_bridge.entrypoints.money_text import decimal_money_text, money_text


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (150000, "JPY", "¥150,000"),
    (12750, "KWD", "KWD 12.750"),
    (3300, "USD", "$33.00"),
    (123456789, "EUR", "€1,234,567.89"),
    (5, "BHD", "BHD 0.005"),
    (-1999, "gbp", "-£19.99"),
    (12345, "CLF", "CLF 1.2345"),
    (0, "ISK", "ISK 0"),
])
def test_minor_units_as_people_write_them(minor: int, currency: str, text: str) -> None:
    assert money_text(minor, currency) == text


@pytest.mark.parametrize(("value", "currency", "text"), [
    ("1500.0", "JPY", "¥1,500"),  # what a JSON float's text looks like: exact, no float arithmetic
    ("12.75", "KWD", "KWD 12.750"),
    ("33.0", "USD", "$33.00"),
    ("0", "USD", "$0.00"),
    ("5.5", "JPY", "5.5 JPY"),  # finer than a yen: shown as given, never rounded
    ("19.995", "USD", "19.995 USD"),
    ("n/a", "USD", "n/a USD"),
    ("12", "XAU", "12 XAU"),  # no minor unit in ISO 4217
])
def test_decimal_text_is_never_rounded(value: str, currency: str, text: str) -> None:
    assert decimal_money_text(value, currency) == text
