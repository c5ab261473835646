"""Stripe's currency exponents and amount rules, and how Stripe writes an amount in an error message.

Rules (facts/stripe.md §5):
- amounts are integers in the currency's minor unit as *Stripe* counts it: zero-decimal currencies (JPY,
  KRW, ...) have none, three-decimal ones (BHD, JOD, KWD, OMR, TND) have three;
- a three-decimal amount must end in 0 (5.124 KWD is sent as 5120 or 5130);
- ISK and UGX are sent with two decimals that must be ``00`` (5 ISK is ``500``), so the amount must be
  divisible by 100 (Stripe's code ``invalid_charge_amount_no_decimal_compatible``).
"""

from __future__ import annotations

from .errors import StripeApiError, invalid_request

ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"]
)  # UGX is listed as zero-decimal but is sent like ISK: see TWO_DECIMAL_WHOLE
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
TWO_DECIMAL_WHOLE = frozenset(("isk", "ugx"))
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def exponent(currency: str) -> int:
    """Digits after the decimal point in Stripe's integer amounts for ``currency`` (lower case)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def check_amount(amount: int, currency: str, param: str = "amount") -> None:
    """Refuse an amount Stripe cannot represent in ``currency`` (see the module rules)."""
    if currency in THREE_DECIMAL and amount % 10:
        raise invalid_request(
            f"Amounts in {currency.upper()} must end in 0: the third decimal place is not supported "
            f"(got {amount}).",
            param=param,
        )
    if currency in TWO_DECIMAL_WHOLE and amount % 100:
        raise StripeApiError(
            400,
            "invalid_request_error",
            f"Amounts in {currency.upper()} must be whole units sent with two zero decimals "
            f"(divisible by 100); got {amount}.",
            code="invalid_charge_amount_no_decimal_compatible",
            param=param,
            store_idempotent=False,
        )


def display(amount: int, currency: str) -> str:
    """``$35.01``, ``¥1,000``, ``KWD 5.120``: an amount as the error messages write it."""
    digits = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    text = f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{currency.upper()} {text}"
