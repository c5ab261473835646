"""Money conversions: exact decimals <-> Money, Money <-> Stripe's integer units, minimums, splitting.

Every conversion is exact. An amount that the target cannot represent raises ``MappingError`` with a
``suggested_fix``; nothing is ever rounded silently. Decimals are built from their text (``str``), never
by float arithmetic. The rules are documented in docs/reference/money-and-currencies.md.

Stripe's units (facts/stripe.md section 5):

* zero-decimal currencies (``STRIPE_ZERO_DECIMAL``): the amount is in whole units (``500`` = ¥500);
* three-decimal currencies (BHD, JOD, KWD, OMR, TND): three decimals and the last digit must be 0;
* ISK and UGX: zero-decimal in practice but sent with two decimals, so the amount is a multiple of
  100 (5 ISK is ``500``);
* HUF and TWD: two decimals for charges; payouts must be a multiple of 100
  (``to_stripe_payout_amount``);
* every other currency: two decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal, Inexact, InvalidOperation
from types import MappingProxyType

from commerce_bridge.domain.currency import minor_digits, normalize_code
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError

__all__ = [
    "CARD_MAX_AMOUNT",
    "DEFAULT_MAX_AMOUNT",
    "MAX_ABS_MINOR",
    "MINIMUM_CHARGE",
    "STRIPE_PAYOUT_WHOLE_UNITS",
    "STRIPE_THREE_DECIMAL",
    "STRIPE_WHOLE_TWO_DECIMAL",
    "STRIPE_ZERO_DECIMAL",
    "allocate",
    "check_charge_amount",
    "format_money",
    "from_stripe_amount",
    "max_amount_for",
    "minimum_charge",
    "money_from_decimal",
    "money_to_decimal",
    "parse_decimal",
    "stripe_exponent",
    "stripe_step",
    "to_stripe_amount",
    "to_stripe_payout_amount",
]

STRIPE_ZERO_DECIMAL: frozenset[str] = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"])
"""Stripe's zero-decimal currencies (UGX is listed there too but follows the ISK rule)."""
STRIPE_THREE_DECIMAL: frozenset[str] = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
"""Three decimals; the Stripe amount must end in 0."""
STRIPE_WHOLE_TWO_DECIMAL: frozenset[str] = frozenset({"ISK", "UGX"})
"""Whole units only, sent with two decimals: the Stripe amount is a multiple of 100."""
STRIPE_PAYOUT_WHOLE_UNITS: frozenset[str] = frozenset({"HUF", "TWD"})
"""Two decimals for charges; payout amounts must be a multiple of 100."""

DEFAULT_MAX_AMOUNT = 99_999_999
"""Stripe's maximum amount for non-card payments: 8 digits (99999999, e.g. $999,999.99)."""
CARD_MAX_AMOUNT = 999_999_999_999
"""Stripe's maximum for most card payments: 12 digits (card networks may limit further; Amex 9 digits)."""
_NON_CARD_MAX_DIGITS = MappingProxyType({"IDR": 12, "COP": 10, "INR": 9})

MAX_ABS_MINOR = 10**18
"""Amounts at or beyond this many minor units are refused as implausible (guards against 1E+999)."""

_EXACT = Context(prec=60, traps=[InvalidOperation, Inexact])

# Stripe's minimum charge per settlement currency, in major units (facts/stripe.md section 5).
_MINIMUMS = {
    "USD": "0.50", "AED": "2.00", "ARS": "0.50", "AUD": "0.50", "BRL": "0.50", "CAD": "0.50",
    "CHF": "0.50", "COP": "0.50", "CZK": "15.00", "DKK": "2.50", "EUR": "0.50", "GBP": "0.30",
    "HKD": "4.00", "HUF": "175.00", "IDR": "0.50", "ILS": "0.50", "INR": "0.50", "JPY": "50",
    "KRW": "50", "MXN": "10", "MYR": "2.00", "NOK": "3.00", "NZD": "0.50", "PHP": "0.50",
    "PLN": "2.00", "RON": "2.00", "RUB": "0.50", "SEK": "3.00", "SGD": "0.50", "THB": "10",
    "ZAR": "0.50",
}


# -- decimals ------------------------------------------------------------------------------------

def parse_decimal(value: object, *, field: str = "amount") -> Decimal:
    """An exact ``Decimal`` from a JSON-ish amount: ``Decimal``, ``int``, numeric ``str`` or a tame ``float``.

    A ``float`` is accepted only through its shortest text form (``repr``) and only when that text
    has at most 15 significant digits, i.e. when it is exactly the decimal a JSON parser read; a
    float that is the result of arithmetic (``0.1 + 0.2``) is refused. Parse JSON with
    ``parse_float=Decimal`` to avoid floats altogether.

    Raises
    ------
    MappingError
        Not a finite number.
    """
    if isinstance(value, bool) or value is None:
        raise MappingError(f"{field} must be a number, got {value!r}",
                           suggested_fix=f"send {field} as a decimal number such as 19.99")
    result: Decimal
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MappingError(f"{field} is not a number: {value!r}",
                               suggested_fix=f"send {field} as a decimal number such as 19.99") from exc
    elif isinstance(value, float):
        text = repr(value)
        result = Decimal(text) if value == value and abs(value) != float("inf") else Decimal("NaN")
        if result.is_finite() and len(result.normalize().as_tuple().digits) > 15:
            raise MappingError(f"{field} {text} is a binary float with no exact decimal meaning",
                               suggested_fix="parse the payload with json.loads(..., parse_float=Decimal)")
    else:
        raise MappingError(f"{field} must be a number, got {type(value).__name__}",
                           suggested_fix=f"send {field} as a decimal number such as 19.99")
    if not result.is_finite():
        raise MappingError(f"{field} is not a finite number: {value!r}",
                           suggested_fix=f"send {field} as a decimal number such as 19.99")
    return result


def money_from_decimal(value: object, currency: str, *, field: str = "amount") -> Money:
    """``value`` (major units, e.g. ``"19.9900"``) of ``currency`` as exact Money.

    Trailing zeros are irrelevant (``19.9900`` USD is 1999 cents); a non-zero digit finer than the
    currency's minor unit (``19.995`` USD, ``5.5`` JPY) is a MappingError.
    """
    code = normalize_code(currency)
    digits = minor_digits(code)
    amount = parse_decimal(value, field=field)
    if amount and amount.adjusted() + digits >= 18:
        raise MappingError(f"{field} {amount} {code} is implausibly large",
                           suggested_fix=f"check {field}; amounts must be below 10^18 minor units")
    try:
        scaled = amount.scaleb(digits, context=_EXACT)
        minor = scaled.to_integral_exact(context=_EXACT)
    except (Inexact, InvalidOperation):
        scaled = Decimal(1).scaleb(-1)  # forces the error below
        minor = Decimal(0)
    if scaled != minor:
        raise MappingError(
            f"{field} {amount} {code} is finer than one minor unit ({code} has {digits} decimals)",
            suggested_fix=f"correct {field} to at most {digits} decimal places; the bridge never rounds money",
            details={"field": field, "value": str(amount), "currency": code})
    return Money(int(minor), code)


def money_to_decimal(money: Money) -> Decimal:
    """``money`` in major units with exactly the currency's number of decimals (``Decimal('19.99')``)."""
    return Decimal(money.minor).scaleb(-minor_digits(money.currency), context=_EXACT)


def format_money(money: Money) -> str:
    """Plain decimal text in major units: ``"19.99"``, ``"1500"`` (JPY), ``"5.120"`` (KWD)."""
    return f"{money_to_decimal(money):f}"


def _label(money: Money) -> str:
    return f"{format_money(money)} {money.currency}"


# -- Stripe units --------------------------------------------------------------------------------

def stripe_exponent(currency: str) -> int:
    """How many decimals Stripe's integer amount carries for ``currency``."""
    code = normalize_code(currency)
    if code in STRIPE_ZERO_DECIMAL:
        return 0
    if code in STRIPE_THREE_DECIMAL:
        return 3
    return 2


def stripe_step(currency: str) -> int:
    """Stripe amounts of ``currency`` must be a multiple of this (10 for three-decimal, 100 for ISK/UGX)."""
    code = normalize_code(currency)
    if code in STRIPE_THREE_DECIMAL:
        return 10
    if code in STRIPE_WHOLE_TWO_DECIMAL:
        return 100
    return 1


def max_amount_for(currency: str, *, card: bool = False) -> int:
    """Stripe's largest amount: 12 digits for cards, else 8 digits (IDR 12, COP 10, INR 9)."""
    if card:
        return CARD_MAX_AMOUNT
    digits: int = _NON_CARD_MAX_DIGITS.get(normalize_code(currency), 8)
    return int(10**digits) - 1


def _neighbours(money: Money, quantum: int) -> str:
    low = money.minor - money.minor % quantum
    return f"{_label(Money(low, money.currency))} or {_label(Money(low + quantum, money.currency))}"


def to_stripe_amount(money: Money, *, card: bool = False, max_amount: int | None = None) -> tuple[int, str]:
    """``money`` as Stripe's ``(amount, currency)``: an integer in Stripe's units and the lower-case code.

    Parameters
    ----------
    money:
        The amount (ISO minor units).
    card:
        The payment is by card: the default maximum is 999999999999 (12 digits) instead of 99999999.
    max_amount:
        Override the maximum Stripe amount (in Stripe's units).

    Raises
    ------
    MappingError
        Unknown currency, a value Stripe cannot represent (5.124 KWD, 5.50 MGA), or over the maximum.
    """
    code = money.currency
    iso = minor_digits(code)
    exponent = stripe_exponent(code)
    if exponent >= iso:
        amount = money.minor * 10 ** (exponent - iso)
    else:
        quantum = 10 ** (iso - exponent)
        amount, rest = divmod(money.minor, quantum)
        if rest:
            raise MappingError(
                f"{_label(money)} cannot be charged: Stripe takes {code} in whole units",
                suggested_fix=f"change the amount to {_neighbours(money, quantum)}; the bridge never rounds",
                details={"currency": code, "minor": money.minor})
    step = stripe_step(code)
    if amount % step:
        quantum = step  # only reached when Stripe's exponent equals the ISO one (three-decimal)
        rule = "the last digit must be 0" if code in STRIPE_THREE_DECIMAL else "it must be a whole amount"
        raise MappingError(
            f"{_label(money)} cannot be represented in Stripe ({code}: {rule})",
            suggested_fix=f"change the amount to {_neighbours(money, quantum)}; the bridge never rounds",
            details={"currency": code, "minor": money.minor})
    limit = max_amount if max_amount is not None else max_amount_for(code, card=card)
    if abs(amount) > limit:
        raise MappingError(
            f"{_label(money)} is over Stripe's maximum amount ({limit} in Stripe units)",
            suggested_fix="split the order into several payments or use a payment method with a higher limit",
            details={"currency": code, "stripe_amount": amount, "max_amount": limit})
    return amount, code.lower()


def from_stripe_amount(amount: int, currency: str) -> Money:
    """Stripe's integer ``amount`` of ``currency`` (any case) as Money in ISO minor units.

    Raises
    ------
    MappingError
        Not an integer, unknown currency, or a value that breaks the currency's Stripe rule
        (550 ISK, 5125 KWD).
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MappingError(f"Stripe amount must be an integer, got {amount!r}",
                           suggested_fix="read amounts from Stripe as integers")
    code = normalize_code(currency)
    iso = minor_digits(code)
    exponent = stripe_exponent(code)
    step = stripe_step(code)
    if amount % step:
        raise MappingError(f"Stripe amount {amount} {code} is not a multiple of {step}",
                           suggested_fix=f"{code} amounts in Stripe are multiples of {step}; check the source",
                           details={"currency": code, "stripe_amount": amount})
    if exponent >= iso:
        minor, rest = divmod(amount, 10 ** (exponent - iso))
        if rest:
            raise MappingError(f"Stripe amount {amount} {code} has a fraction {code} does not have",
                               suggested_fix=f"{code} has {iso} decimals; check the source",
                               details={"currency": code, "stripe_amount": amount})
    else:
        minor = amount * 10 ** (iso - exponent)
    return Money(minor, code)


def to_stripe_payout_amount(money: Money) -> tuple[int, str]:
    """``money`` as a Stripe payout amount: like ``to_stripe_amount``, and HUF/TWD must be whole units.

    Raises
    ------
    MappingError
        As ``to_stripe_amount``; or a HUF/TWD amount with a fraction (Stripe pays these out in whole
        units, so the amount must be a multiple of 100).
    """
    amount, code = to_stripe_amount(money, max_amount=CARD_MAX_AMOUNT)
    if money.currency in STRIPE_PAYOUT_WHOLE_UNITS and amount % 100:
        raise MappingError(
            f"{_label(money)} cannot be paid out: Stripe pays {money.currency} out in whole units",
            suggested_fix=f"pay out {_neighbours(money, 100)}",
            details={"currency": money.currency, "stripe_amount": amount})
    return amount, code


# -- minimums ------------------------------------------------------------------------------------

MINIMUM_CHARGE: MappingProxyType[str, Money] = MappingProxyType(
    {code: money_from_decimal(text, code) for code, text in _MINIMUMS.items()})
"""Stripe's minimum charge per settlement currency."""


def minimum_charge(currency: str) -> Money | None:
    """Stripe's minimum charge in ``currency`` as settlement currency, or None when none is published."""
    return MINIMUM_CHARGE.get(normalize_code(currency))


def check_charge_amount(money: Money, *, settlement_currency: str | None = None, card: bool = True,
                        max_amount: int | None = None) -> int:
    """Check that Stripe can charge ``money``; return the Stripe amount.

    The amount must be positive, representable (``to_stripe_amount``), within the maximum (card
    payments by default) and at least Stripe's minimum. The minimum applies in the *settlement*
    currency: it is checked when ``settlement_currency`` is None or equals the charge currency; a
    charge that Stripe converts into another settlement currency can only be checked by Stripe after
    conversion, so it is not checked here.

    Raises
    ------
    MappingError
        With a ``suggested_fix`` naming the minimum or the rule that failed.
    """
    amount, _ = to_stripe_amount(money, card=card, max_amount=max_amount)
    if money.minor <= 0:
        raise MappingError(f"cannot charge {_label(money)}: the amount must be positive",
                           suggested_fix="check the order total; zero or negative totals are not charged")
    settles_in = normalize_code(settlement_currency) if settlement_currency else money.currency
    if settles_in != money.currency:
        return amount
    minimum = MINIMUM_CHARGE.get(settles_in)
    if minimum is not None and money.minor < minimum.minor:
        raise MappingError(
            f"{_label(money)} is below Stripe's minimum charge of {_label(minimum)}",
            suggested_fix=f"the minimum charge in {settles_in} is {_label(minimum)}; raise the order total "
                          "or collect the payment another way",
            details={"currency": settles_in, "minimum_minor": minimum.minor, "minor": money.minor})
    return amount


# -- splitting -----------------------------------------------------------------------------------

def allocate(money: Money, weights: Sequence[int]) -> list[Money]:
    """Split ``money`` in proportion to ``weights`` so that the parts sum exactly to ``money``.

    Largest remainder method: each part gets the floor of its exact share; the minor units left
    over go one each to the parts with the largest fractional remainders (earlier parts win ties).
    A negative amount is split like its absolute value and negated.

    Raises
    ------
    MappingError
        No weights, a negative or non-integer weight, or all weights zero.
    """
    if not weights:
        raise MappingError("cannot split an amount over no parts", suggested_fix="pass at least one weight")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise MappingError(f"split weights must be non-negative integers, got {weight!r}",
                               suggested_fix="use line amounts in minor units or quantities as weights")
    total_weight = sum(weights)
    if total_weight == 0:
        raise MappingError("cannot split an amount when every weight is zero",
                           suggested_fix="give at least one part a positive weight")
    sign = -1 if money.minor < 0 else 1
    units = abs(money.minor)
    shares = [divmod(units * weight, total_weight) for weight in weights]
    parts = [quotient for quotient, _ in shares]
    left = units - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-shares[i][1], i))
    for index in order[:left]:
        parts[index] += 1
    return [Money(sign * part, money.currency) for part in parts]
