"""Settlement currency and currency conversion of balance transactions.

Rules (facts/stripe.md §5 and §8; docs.stripe.com/currencies/conversions and /currencies/disputes-refunds):
- with ``Config.settlement_currency`` unset (the default) nothing is converted: every balance transaction is
  in its charge's currency and ``exchange_rate`` is null;
- with it set, Stripe converts every payment in another (presentment) currency into the settlement
  currency when the charge is captured, at that moment's rate: the balance transaction is in the
  settlement currency, ``exchange_rate`` is the rate (amount in A × rate = amount in B, in major units),
  and the fee is computed on the converted amount; ``Config.fx_rates`` maps a presentment currency to
  the rate as decimal text (``{"eur": "1.084350"}``);
- conversion between Stripe units: ``amount × rate × 10^(settlement exponent − presentment exponent)``,
  rounded half-up (away from zero) to a whole minor unit, with Decimal arithmetic (see :func:`convert`);
- refunds, dispute withdrawals and dispute reinstatements of a converted charge settle in the charge's
  settlement currency and convert at the rate of the moment they happen, as Stripe documents (the amount
  you receive "is converted back ... at the current exchange rate"); while ``fx_rates`` is unchanged
  that is the charge's own rate; if the currency has lost its rate since, the charge's rate is used;
  a refund failure puts back exactly what its refund took (same amount, currency and rate);
- a charge in a currency with no rate while a settlement currency is set is refused before anything
  is created (400 ``invalid_request_error``, ``param: currency``): Stripe always converts, so the
  emulator will not invent a rate nor settle in the presentment currency;
- payouts are per balance currency, so with a settlement currency set, converted charges are paid out
  in it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .currencies import exponent
from .errors import invalid_request

if TYPE_CHECKING:
    from .state import Emulator
    from .store import Obj


def parse_rates(value: Any) -> dict[str, str]:
    """Validate ``fx_rates`` from config: lower-case currency -> positive decimal text."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_request("fx_rates must be an object of currency -> rate", param="fx_rates")
    out: dict[str, str] = {}
    for cur, rate in value.items():
        text = str(rate).strip()
        try:
            ok = Decimal(text).is_finite() and Decimal(text) > 0
        except InvalidOperation:
            ok = False
        if not ok or isinstance(rate, bool):
            raise invalid_request(
                f"fx_rates.{cur} must be a positive decimal, got {rate!r}", param="fx_rates"
            )
        out[str(cur).lower()] = text
    return out


def parse_settlement(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise invalid_request(
            f"settlement_currency must be a 3-letter code, got {value!r}", param="settlement_currency"
        )
    return value.lower()


def convert(amount: int, src: str, dst: str, rate: Decimal) -> int:
    """``amount`` (Stripe units of ``src``) in Stripe units of ``dst``, rounded half-up away from zero."""
    scaled = Decimal(amount) * rate * Decimal(10) ** (exponent(dst) - exponent(src))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def charge_settlement(emu: Emulator, currency: str) -> tuple[str, Decimal | None]:
    """Where a new charge in ``currency`` settles: ``(currency, None)``, or the settlement currency and rate.

    Raises the 400 of the module rules when a settlement currency is set and ``currency`` has no rate.
    """
    target = emu.config.settlement_currency
    if not target or currency == target:
        return currency, None
    text = emu.config.fx_rates.get(currency)
    if text is None:
        raise invalid_request(
            f"The sandbox has no exchange rate from {currency.upper()} to the settlement currency "
            f"{target.upper()}: Stripe converts every charge into the settlement currency, so set "
            f'fx_rates["{currency}"] with POST /_sandbox/config (or leave settlement_currency unset).',
            param="currency",
        )
    return target, Decimal(text)


def follow_up_settlement(emu: Emulator, charge: Obj) -> tuple[str, Decimal | None]:
    """Where a refund or dispute movement of ``charge`` settles: like its charge, at the current rate."""
    txn_id = charge.get("balance_transaction")
    txn = emu.store.objects.get(txn_id) if isinstance(txn_id, str) else None
    if txn is None or txn.get("exchange_rate") is None:
        return charge["currency"], None
    target = txn["currency"]
    text = emu.config.fx_rates.get(charge["currency"]) if emu.config.settlement_currency == target else None
    if text is None:
        text = emu.store.intern(charge["id"]).get("fx_rate") or str(txn["exchange_rate"])
    return target, Decimal(text)


def as_number(rate: Decimal | None) -> float | None:
    """The rate as Stripe sends ``exchange_rate``: a JSON number."""
    return None if rate is None else float(rate)
