"""Money as people write it, for what the command line shows: ``$33.00``, ``¥1,500``, ``KWD 12.750``.

Rules it keeps:

- the number of decimals is the currency's ISO 4217 exponent (``domain/currency.py``), never guessed;
- amounts are integers of minor units or exact decimals, never floats; an amount finer than the
  currency's minor unit is shown as given, with its code, not rounded;
- a symbol only where it names one currency unambiguously in these screens (``$`` is USD, ``¥`` JPY);
  every other currency is written with its code, thousands grouped with commas.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.errors import MappingError

__all__ = ["SYMBOLS", "decimal_money_text", "money_text"]

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def money_text(minor: int, currency: str) -> str:
    """``minor`` units of ``currency`` as people write them: ``money_text(150000, "JPY")`` -> ``¥150,000``."""
    code = currency.upper()
    digits = minor_digits(code)
    whole, fraction = divmod(abs(minor), 10**digits)
    number = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    sign = "-" if minor < 0 else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"


def decimal_money_text(value: str, currency: str) -> str:
    """A decimal amount in major units (text, as a peer sent it: ``"12.75"``, ``"1500.0"``) as :func:`money_text`.

    Text that is not a number, a code that is not a currency, or an amount finer than the currency's
    minor unit comes back as it was given (with the code), never rounded.
    """
    try:
        digits = minor_digits(currency)
        scaled = Decimal(value.strip()).scaleb(digits)
    except (InvalidOperation, MappingError, ValueError):
        return f"{value} {currency}".strip()
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        return f"{value} {currency.upper()}"
    return money_text(int(scaled), currency)
