"""Returns refunded in Clarity, as the bridge pays them back: the return's amount and what Stripe may still give.

Rules (issue 12, points 1 and 4; facts/clarity-cef-api.md §4 and §6, facts/stripe.md §5 and §7):

- **The return's amount** is its ``RefundAmount`` when the store set one above zero (the amount CEF's own
  refund action pays back), else its ``Totals.Total``: lines + tax + shipping + handling + fees + discounts
  (CEF writes discounts as negative amounts). Both are CEF decimals read exactly in the return's currency
  (``CurrencyKey``, else the order's); finer than one minor unit is a ``MappingError``, never a rounding.
  The return's totals must add up (``MappingError`` otherwise), so a broken return is never paid.
- **What may still be paid back** is read from the PaymentIntent and its charge, fresh: once captured, the
  charge's ``amount_captured`` minus what its refunds hold (every refund not ``failed`` or ``canceled``).
  A return above that *parks* (``ValidationError`` with the numbers and a fix), whatever the order in
  which the returns arrive: the sum of what is paid back never exceeds what was captured.
- **Not captured yet** (``requires_capture``): the authorisation is captured for the remainder
  (``amount_to_capture`` = capturable - return) and Stripe releases the rest; when nothing remains it
  is canceled instead. Nothing is refunded then, and nothing is booked as paid back.
- A PaymentIntent that took no money (``canceled``, ``requires_payment_method``...) cannot pay a return
  back: it parks too; ``processing`` is transient (``Conflict``: retried until it settles).
- Every amount sent to Stripe must be representable in Stripe's units (three-decimal currencies end in
  0; zero-decimal ones are whole), checked before anything is sent (``to_stripe_amount``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import Conflict, MappingError, ValidationError
from commerce_bridge.mapping.money import format_money, money_from_decimal, to_stripe_amount

__all__ = [
    "RETURN_ID",
    "RETURN_KEY",
    "PaymentState",
    "RefundPlan",
    "ReturnView",
    "order_id_of",
    "plan_refund",
    "records_transaction",
    "return_from_clarity",
]

RETURN_ID = "clarity_return_id"
"""Stripe metadata key of the Clarity return's ID on the refund the bridge made for it."""
RETURN_KEY = "clarity_return_key"
"""Stripe metadata key of the return's key (its CustomKey, else its ID)."""
TOTAL_PARTS = ("SubTotal", "Shipping", "Handling", "Fees", "Tax", "Discounts")


@dataclass(frozen=True, slots=True)
class ReturnView:
    """What the bridge needs of one Clarity SalesReturn."""

    id: int
    key: str
    status: str
    order_id: int | None
    amount: Money
    refund_transaction_id: str = ""


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def order_id_of(ret: Mapping[str, Any]) -> int | None:
    """The return's order: the first of its ``SalesOrderIDs``, else of its ``AssociatedSalesOrders``; None without."""
    ids = ret.get("SalesOrderIDs") or [link.get("SlaveID") for link in ret.get("AssociatedSalesOrders") or []
                                       if isinstance(link, Mapping)]
    ids = [i for i in ids if _text(i)]
    if not ids:
        return None
    try:
        return int(str(ids[0]))
    except ValueError as exc:
        raise MappingError(f"the return's order ID {ids[0]!r} is not a number",
                           suggested_fix="pass the return as GET /Returning/SalesReturn/ID/{id} gives it") from exc


def return_from_clarity(ret: Mapping[str, Any], *, order_currency: str) -> ReturnView:
    """A CEF SalesReturn (full projection) as a ``ReturnView`` with its amount checked.

    Parameters
    ----------
    ret:
        The return's JSON, parsed with exact decimals.
    order_currency:
        The currency of its order (used when the return has no ``CurrencyKey``; must match one it has).

    Raises
    ------
    MappingError
        No ID, another currency than the order's, an amount finer than a minor unit, totals that do not
        add up, or a negative amount.
    """
    if not isinstance(ret, Mapping) or not _text(ret.get("ID")):
        raise MappingError("the Clarity return has no ID",
                           suggested_fix="pass the body of GET /Returning/SalesReturn/ID/{id}")
    try:
        return_id = int(str(ret["ID"]))
    except ValueError as exc:
        raise MappingError(f"the Clarity return's ID {ret['ID']!r} is not a number",
                           suggested_fix="pass the body of GET /Returning/SalesReturn/ID/{id}") from exc
    currency = (_text(ret.get("CurrencyKey")) or _text((ret.get("Currency") or {}).get("CustomKey"))
                or order_currency).upper()
    if currency != order_currency.upper():
        raise MappingError(f"Clarity return {return_id} is in {currency} but its order in {order_currency}",
                           suggested_fix="correct the return's currency in Clarity, then replay")
    totals = ret.get("Totals") or {}
    parts = {name: money_from_decimal(totals.get(name, 0), currency, field=f"Totals.{name}") for name in TOTAL_PARTS}
    computed = sum(parts.values(), Money.zero(currency))
    total = money_from_decimal(totals["Total"], currency, field="Totals.Total") if "Total" in totals else computed
    if total != computed:
        raise MappingError(
            f"Clarity return {return_id}: lines + tax + shipping + discounts = {format_money(computed)} {currency} "
            f"but Totals.Total is {format_money(total)}",
            suggested_fix="correct the return's totals in Clarity (discounts are negative amounts), then replay")
    refund_amount = money_from_decimal(ret.get("RefundAmount") or 0, currency, field="RefundAmount")
    amount = refund_amount if refund_amount.minor > 0 else total
    if amount.minor < 0:
        raise MappingError(f"Clarity return {return_id} asks for a negative refund ({format_money(amount)} {currency})",
                           suggested_fix="correct the return's RefundAmount or totals in Clarity, then replay")
    status = _text(ret.get("StatusKey")) or _text(ret.get("StatusName")) or _text(
        (ret.get("Status") or {}).get("CustomKey"))
    return ReturnView(id=return_id, key=_text(ret.get("CustomKey")) or str(return_id), status=status,
                      order_id=order_id_of(ret), amount=amount,
                      refund_transaction_id=_text(ret.get("RefundTransactionID")))


def records_transaction(ret: Mapping[str, Any], transaction_number: str) -> bool:
    """Whether the return already records ``transaction_number`` (its ``RefundTransactionID`` or a payment's)."""
    if _text(ret.get("RefundTransactionID")) == transaction_number:
        return True
    links = ret.get("SalesReturnPayments") or []
    return any(isinstance(link, Mapping) and isinstance(link.get("Slave"), Mapping)
               and _text(link["Slave"].get("TransactionNumber")) == transaction_number for link in links)


@dataclass(frozen=True, slots=True)
class PaymentState:
    """The order's PaymentIntent as the guard needs it, read fresh from Stripe (ISO minor units)."""

    status: str
    capturable: Money
    """``amount_capturable`` (what an uncaptured PaymentIntent may still capture)."""
    captured: Money
    """The charge's ``amount_captured`` (zero before capture)."""
    refunded: Money
    """What the charge's refunds hold (those not ``failed`` or ``canceled``)."""

    @property
    def remaining(self) -> Money:
        """What may still be paid back: the captured money no refund holds, or the authorisation."""
        if self.status == "requires_capture":
            return self.capturable
        return self.captured - self.refunded


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """What to do in Stripe for one return: ``refund``, ``capture`` (the remainder), ``cancel`` or ``none``."""

    action: str
    amount: Money
    """The return's amount (what the customer gets back, or is no longer charged)."""
    to_capture: Money | None = None
    """For ``capture``: the remainder to capture (``amount_to_capture``)."""


def _park(amount: Money, payment: PaymentState, return_key: str) -> ValidationError:
    cur = amount.currency
    remaining = payment.remaining
    numbers = {"code": "return_over_refund", "return_key": return_key, "currency": cur,
               "return_minor": amount.minor, "captured_minor": payment.captured.minor,
               "refunded_minor": payment.refunded.minor, "capturable_minor": payment.capturable.minor,
               "remaining_minor": remaining.minor, "payment_status": payment.status}
    if payment.status == "requires_capture":
        told = f"only {format_money(payment.capturable)} {cur} is authorised and not captured"
    else:
        told = (f"only {format_money(remaining)} {cur} is left (captured {format_money(payment.captured)}, "
                f"already refunded {format_money(payment.refunded)})")
    return ValidationError(
        f"Clarity return {return_key} asks for {format_money(amount)} {cur} but {told}",
        suggested_fix=f"lower the return's RefundAmount in Clarity to at most {format_money(remaining)} {cur} "
                      "(pay any difference back another way), then replay this entry; or discard it",
        details=numbers)


def plan_refund(amount: Money, payment: PaymentState, *, return_key: str = "") -> RefundPlan:
    """What Stripe must do to pay ``amount`` back, never more than ``payment`` still holds.

    Raises
    ------
    ValidationError
        ``amount`` is more than what remains (the run parks with the numbers), or the PaymentIntent took
        no money (``canceled``, ``requires_payment_method``, ...).
    Conflict
        The PaymentIntent is ``processing``: retried until it settles.
    MappingError
        Another currency, or an amount Stripe cannot represent (5.125 KWD).
    """
    for other in (payment.capturable, payment.captured, payment.refunded):
        if other.currency != amount.currency:
            raise MappingError(f"the return is in {amount.currency} but its payment in {other.currency}",
                               suggested_fix="correct the return's currency in Clarity, then replay")
    if amount.minor <= 0:
        return RefundPlan("none", amount)
    to_stripe_amount(amount)  # representable in Stripe's units, or MappingError before anything is sent
    if payment.status == "processing":
        raise Conflict("the order's payment is still processing; the return is paid back once it settles")
    if payment.status == "requires_capture":
        if amount.minor > payment.capturable.minor:
            raise _park(amount, payment, return_key)
        rest = payment.capturable - amount
        if rest.minor == 0:
            return RefundPlan("cancel", amount)
        to_stripe_amount(rest)
        return RefundPlan("capture", amount, to_capture=rest)
    if payment.status != "succeeded":
        raise ValidationError(
            f"Clarity return {return_key}: the order's PaymentIntent is {payment.status}, it took no money to pay back",
            suggested_fix="the order was never paid through Stripe: settle the return by hand, then discard this entry",
            details={"code": "return_not_paid", "payment_status": payment.status, "return_key": return_key})
    if amount.minor > payment.remaining.minor:
        raise _park(amount, payment, return_key)
    return RefundPlan("refund", amount)
