"""ISO 4217 currencies: the number of minor-unit digits of every active code (data, no I/O).

The table is List One of ISO 4217 (current currency and funds codes), written from the published
list. ``MINOR_DIGITS[code]`` is the ISO exponent: USD 2 (1 USD = 100 cents), JPY 0, KWD 3, CLF 4.
A few codes that ISO has withdrawn recently but that payment processors still quote are kept and
listed in ``WITHDRAWN`` (they convert like any other code). Codes whose minor unit ISO gives as
"N.A." (precious metals, SDR, bond-market units, test and "no currency" codes) are in
``NO_MINOR_UNIT``: they are not money the bridge can charge, so ``minor_digits`` rejects them.

This is the *ISO* exponent. Stripe's own exponent differs for a few currencies (zero-decimal MGA,
ISK and UGX sent with two decimals, ...); that translation lives in ``mapping/money.py``.
"""

from __future__ import annotations

from types import MappingProxyType

from commerce_bridge.errors import MappingError

_TWO = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF "
    "CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL "
    "HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
    "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR "
    "SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG"
)
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
# Withdrawn from List One recently, still quoted by processors: Netherlands Antillean guilder
# (replaced by XCG in 2025), Bulgarian lev (euro since 2026-01-01), Cuban convertible peso,
# Sierra Leonean leone before redenomination (SLE), Zimbabwe dollar (replaced by ZWG in 2024).
_WITHDRAWN_TWO = "ANG BGN CUC SLL ZWL"
# ISO minor unit "N.A.": gold, silver, platinum, palladium, bond-market units, SDR, SUCRE, ADB unit,
# the test code and "no currency".
_NO_MINOR = "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX"


def _table() -> dict[str, int]:
    table: dict[str, int] = {}
    for codes, digits in ((_TWO, 2), (_ZERO, 0), (_THREE, 3), (_FOUR, 4), (_WITHDRAWN_TWO, 2)):
        for code in codes.split():
            table[code] = digits
    return dict(sorted(table.items()))


MINOR_DIGITS: MappingProxyType[str, int] = MappingProxyType(_table())
"""ISO 4217 code -> number of minor-unit digits (the ISO exponent)."""

WITHDRAWN: frozenset[str] = frozenset(_WITHDRAWN_TWO.split())
NO_MINOR_UNIT: frozenset[str] = frozenset(_NO_MINOR.split())
SUPPORTED_CURRENCIES: tuple[str, ...] = tuple(MINOR_DIGITS)
"""Every code ``minor_digits`` accepts, sorted."""


def normalize_code(code: object) -> str:
    """``code`` as an upper-case three-letter string, or MappingError (not yet checked against the table)."""
    if not isinstance(code, str):
        raise MappingError(f"currency code must be a string, got {code!r}",
                           suggested_fix="send an ISO 4217 code such as 'USD'")
    text = code.strip().upper()
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise MappingError(f"{code!r} is not an ISO 4217 currency code",
                           suggested_fix="send a three-letter ISO 4217 code such as 'USD', 'EUR' or 'JPY'")
    return text


def minor_digits(code: str) -> int:
    """The ISO 4217 minor-unit digits of ``code`` (any case).

    Raises
    ------
    MappingError
        The code is malformed, unknown, or has no minor unit (``XAU``, ``XXX``, ...).
    """
    text = normalize_code(code)
    digits = MINOR_DIGITS.get(text)
    if digits is not None:
        return digits
    if text in NO_MINOR_UNIT:
        raise MappingError(f"{text} has no minor unit in ISO 4217 and cannot be used for payments",
                           suggested_fix="price the order in a national currency")
    raise MappingError(f"unknown currency code {text!r}",
                       suggested_fix="use an active ISO 4217 code (see docs/reference/money-and-currencies.md); "
                                     "check the currency configured for the store or the order")


def is_known(code: str) -> bool:
    """Whether ``minor_digits(code)`` would succeed."""
    try:
        minor_digits(code)
    except MappingError:
        return False
    return True
