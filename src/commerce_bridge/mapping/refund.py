"""Refunds made in Stripe, as the bridge books them: one Refund object -> one return, one credit note, one payment.

Rules (issue 12; facts/stripe.md "Refund"):

- **Amounts come from each Refund object**, never from differences of the charge's cumulative
  ``amount_refunded`` (events arrive late, twice or out of order; a difference of two snapshots can be
  another refund's amount or a negative number).
- A refund's status decides what is booked: ``pending`` and ``requires_action`` are *noted* (a pending
  return in Clarity, a credit note in the ERP), ``succeeded`` completes the books (the return completed
  with its payment, the ERP's Pay entry), ``failed`` and ``canceled`` reverse whatever was booked.
- **Echoes**: a refund whose metadata carries ``bridge: commerce-bridge`` was made by the bridge itself
  (``stripe.refund.create``, ``stripe.return.refund``); it is never booked again as a return made in Stripe.
  Two exceptions (``bookable``), both for a refund the bridge made for a Clarity return
  (``metadata.clarity_return_id``): one that later ``failed`` or was ``canceled`` is handed to the refund
  path *for its reversal only* (those two statuses are final in Stripe, so every step that re-reads it can
  only undo: the return set to the failed status, the Pay entry and credit note cancelled); one that
  ``succeeded`` is handed to it *for its ERP Pay entry only* (a bridge refund that started ``pending`` had
  only its credit note when the return path ran). Neither ever makes a Clarity return (the store's return
  is the refund's), and the ERP records are keyed by the refund id, found before they are made, so nothing
  is booked twice.
- ``requires_action`` (the customer must give Stripe the details to receive the money) is told to
  operations once per refund (``action_alert``: ids, amount, order key and what to do; never the e-mail
  address Stripe wrote to).
- The order's refund state counts every refund that holds money (pending, requires_action, succeeded),
  echoes included: nothing is refunded (``none``), less than the charge (``partially_refunded``), or all
  of it (``refunded``). Active refunds adding up to more than the charge are a ``MappingError``: Stripe
  never allows it, so the data is wrong and nothing is booked.
- The ERP credit note of a refund (``credit_note_rows``) returns the refunded amount against the order's
  invoice, split over its item lines (per item code) and its tax and shipping rows (one part), each part
  in proportion to what earlier credit notes left of it, in whole ERP units (two decimals: 10 fils of
  KWD); the tax part's share is rounded up, so the items keep at least their share and run out last
  (items first when a small amount would give them nothing: ERPNext needs an item row). Only when
  earlier credit notes left less than one ERP unit per item line with tax still to return can a
  credit note not be made (``MappingError``: make it by hand). Each row keeps the invoice's rate and returns a *fraction* of the
  quantity (``-amount / rate``, cut to 9 decimals toward zero), so the row's amount (qty x rate rounded
  to the currency) is exactly the amount given to it, the rows add up to the refund to the minor unit,
  and the quantities returned never add up to more than was sold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.metadata import BRIDGE, BRIDGE_MARK
from commerce_bridge.mapping.money import (
    allocate,
    format_money,
    from_stripe_amount,
    money_from_decimal,
    money_to_decimal,
)
from commerce_bridge.mapping.returns import RETURN_ID, RETURN_KEY

__all__ = [
    "ACTIVE",
    "QTY_DIGITS",
    "REVERSED",
    "RefundView",
    "action_alert",
    "bookable",
    "credit_note_rows",
    "failure_fix",
    "refund_from_stripe",
    "refund_state",
]

ACTIVE = ("pending", "requires_action", "succeeded")
"""Statuses in which a refund holds money (Stripe counts them in ``amount_refunded``)."""
REVERSED = ("failed", "canceled")
"""Statuses in which a refund gave the money back: whatever was booked for it is reversed."""
QTY_DIGITS = 9
"""Decimals of a credit note's fractional quantities."""
ERP_DECIMALS = 2
"""ERPNext's currency precision (frappe's default): a share of a refund is a whole number of these units."""


@dataclass(frozen=True, slots=True)
class RefundView:
    """What the bridge needs of one Stripe Refund."""

    id: str
    status: str
    amount: Money
    reason: str = ""
    failure_reason: str = ""
    echo: bool = False
    return_id: str = ""
    """The Clarity return the bridge made this refund for (``metadata.clarity_return_id``), else empty."""
    return_key: str = ""
    """That return's key (``metadata.clarity_return_key``)."""

    @property
    def completes_bridge_return(self) -> bool:
        """A refund the bridge made for a Clarity return that succeeded: its ERP Pay entry may still be missing."""
        return self.echo and bool(self.return_id) and self.status == "succeeded"

    @property
    def reverses_bridge_return(self) -> bool:
        """A refund the bridge made for a Clarity return that failed or was canceled: its books are undone."""
        return self.echo and bool(self.return_id) and self.status in REVERSED


def refund_from_stripe(obj: Mapping[str, Any]) -> RefundView:
    """A Stripe Refund object (as the API returns it) as a ``RefundView``; the amount in exact minor units.

    Raises
    ------
    MappingError
        No id, no currency, or an amount that is not an integer.
    """
    refund_id, currency = str(obj.get("id") or ""), str(obj.get("currency") or "").upper()
    amount = obj.get("amount")
    if not refund_id or not currency or isinstance(amount, bool) or not isinstance(amount, int):
        raise MappingError(f"refund {refund_id or '?'} has no id, currency or integer amount",
                           suggested_fix="the refund must be read from Stripe's API (GET /v1/refunds/{id})")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    echo = metadata.get(BRIDGE) == BRIDGE_MARK
    return RefundView(id=refund_id, status=str(obj.get("status") or ""), amount=from_stripe_amount(amount, currency),
                      reason=str(obj.get("reason") or ""), failure_reason=str(obj.get("failure_reason") or ""),
                      echo=echo, return_id=str(metadata.get(RETURN_ID) or "") if echo else "",
                      return_key=str(metadata.get(RETURN_KEY) or "") if echo else "")


def bookable(refunds: Sequence[RefundView]) -> list[RefundView]:
    """The refunds the refund path books: those not made by the bridge, and the bridge's own refunds of Clarity
    returns that failed or were canceled (for their reversal) or succeeded (for their Pay entry; see the module
    rules)."""
    return [r for r in refunds if not r.echo or r.reverses_bridge_return or r.completes_bridge_return]


def refund_state(charge_amount: Money, refunds: Sequence[RefundView]) -> tuple[Money, str]:
    """The money the active refunds hold and the order's refund state (``none``, ``partially_refunded``, ``refunded``).

    Raises
    ------
    MappingError
        A refund in another currency than the charge, or active refunds over the charge's amount.
    """
    total = Money.zero(charge_amount.currency)
    for refund in refunds:
        if refund.status in ACTIVE:
            total = total + refund.amount  # MappingError for another currency
    if total.minor > charge_amount.minor:
        raise MappingError(f"the charge's active refunds add up to {total.minor} minor units, more than its "
                           f"{charge_amount.minor}", suggested_fix="check the charge's refunds in Stripe")
    if total.minor == 0:
        return total, "none"
    return total, "refunded" if total.minor >= charge_amount.minor else "partially_refunded"


def _rows(doc: Mapping[str, Any], table: str) -> list[Mapping[str, Any]]:
    rows = doc.get(table) or []
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise MappingError(f"the invoice's {table} is not a list of rows",
                           suggested_fix="pass the Sales Invoice as ERPNext returns it")
    return rows


def _returnable(invoice: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]],
                currency: str) -> tuple[dict[str, tuple[Money, Decimal]], Money, str | None]:
    """Per item code: (value left to return, highest rate); tax value left; the first tax row's account."""
    items: dict[str, tuple[Money, Decimal]] = {}
    for row in _rows(invoice, "items"):
        code = str(row.get("item_code"))
        value = money_from_decimal(row.get("amount", 0), currency, field="amount")
        rate = Decimal(str(row.get("rate", 0)))
        left, best = items.get(code, (Money.zero(currency), Decimal(0)))
        items[code] = (left + value, max(best, rate))
    taxes = [money_from_decimal(r.get("tax_amount", 0), currency, field="tax_amount") for r in _rows(invoice, "taxes")]
    tax_left = sum(taxes, Money.zero(currency))
    tax_rows = _rows(invoice, "taxes")
    account = str(tax_rows[0].get("account_head")) if tax_rows and tax_rows[0].get("account_head") else None
    for note in earlier:
        for row in _rows(note, "items"):
            code = str(row.get("item_code"))
            if code in items:
                left, rate = items[code]
                items[code] = (left + money_from_decimal(row.get("amount", 0), currency, field="amount"), rate)
        for row in _rows(note, "taxes"):
            tax_left = tax_left + money_from_decimal(row.get("tax_amount", 0), currency, field="tax_amount")
    return items, tax_left, account


def credit_note_rows(invoice: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], amount: Money, *,
                     tax_account: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``items`` and ``taxes`` rows of a credit note returning ``amount`` against ``invoice``.

    Parameters
    ----------
    invoice:
        The submitted Sales Invoice (items with ``item_code``, ``rate``, ``amount``; taxes with ``tax_amount``).
    earlier:
        The submitted credit notes already made against it (their negative rows use up what is left).
    amount:
        The refund, positive, in the invoice's currency.
    tax_account:
        The account head of the tax row when the invoice has none of its own.

    Returns
    -------
    (items, taxes)
        Negative quantities (fractions, ``QTY_DIGITS`` decimals) at the invoice's rates; negative tax
        amounts. Row amounts (qty x rate, rounded to the currency) add up to ``-amount`` exactly.

    Raises
    ------
    MappingError
        ``amount`` is not positive, or more than the invoice has left to return.
    """
    if amount.minor <= 0:
        raise MappingError(f"a credit note needs a positive amount, got {amount.minor}")
    items_left, tax_left, account = _returnable(invoice, earlier, amount.currency)
    codes = list(items_left)
    capacities = [max(items_left[c][0].minor, 0) if items_left[c][1] > 0 else 0 for c in codes]
    capacities.append(max(tax_left.minor, 0))
    if amount.minor > sum(capacities):
        raise MappingError(
            f"the refund of {amount.minor} minor units is more than the invoice {invoice.get('name')} has left to "
            "return", suggested_fix="check the invoice and the credit notes already made against it in ERPNext")
    shares = _split(amount, capacities)
    if not any(share.minor for share in shares[:-1]):  # ERPNext needs an item row: items first
        shares = _items_first(amount, capacities)
    item_rows: list[dict[str, Any]] = []
    for code, share in zip(codes, shares, strict=False):
        if share.minor == 0:
            continue
        rate = items_left[code][1]
        value = money_to_decimal(share)
        qty = (value / rate).quantize(Decimal(1).scaleb(-QTY_DIGITS), rounding=ROUND_DOWN)
        item_rows.append({"item_code": code, "qty": f"{-qty:f}", "rate": f"{rate:f}", "amount": f"{-value:f}"})
    tax_rows: list[dict[str, Any]] = []
    if shares[-1].minor:
        tax_rows.append({"charge_type": "Actual", "account_head": account or tax_account, "description": "Refund",
                         "tax_amount": f"{-money_to_decimal(shares[-1]):f}"})
    if not item_rows:
        raise MappingError(f"nothing is left to return on the items of invoice {invoice.get('name')}",
                           suggested_fix="make the credit note in ERPNext by hand, then discard this entry")
    return item_rows, tax_rows


def _quantum(currency: str) -> int:
    """Minor units per ERP unit: ERPNext keeps two decimals, so 10 fils for a three-decimal currency."""
    return int(10 ** max(minor_digits(currency) - ERP_DECIMALS, 0))


def _split(amount: Money, capacities: list[int]) -> list[Money]:
    """``amount`` in proportion to what is left of each part, in whole ERP units (never above a part's rest)."""
    q = _quantum(amount.currency)
    if amount.minor % q:
        raise MappingError(f"{amount.minor} minor units of {amount.currency} need more than the ERP's "
                           f"{ERP_DECIMALS} decimals", suggested_fix="raise the ERP's currency precision")
    units = [c // q for c in capacities]
    if not any(units):
        return [Money.zero(amount.currency) for _ in capacities]
    total, want = sum(units), amount.minor // q
    # the tax part takes its share rounded up, so the items keep at least theirs and never run out first
    tax = min(units[-1], -(-want * units[-1] // total))
    items = units[:-1]
    parts = allocate(Money(want - tax, amount.currency), items) if any(items) else [Money.zero(amount.currency)] * len(
        items)
    return [Money(m.minor * q, amount.currency) for m in parts] + [Money(tax * q, amount.currency)]


def _items_first(amount: Money, capacities: list[int]) -> list[Money]:
    """``amount`` given to the parts in order, each up to its rest (the tax part last)."""
    remaining, shares = amount.minor, []
    for capacity in capacities:
        take = min(capacity, remaining)
        shares.append(Money(take, amount.currency))
        remaining -= take
    return shares


_FIXES = {
    "lost_or_stolen_card": "the card was reported lost or stolen: pay the customer back another way (bank transfer, "
                           "store credit), record it in Clarity and ERPNext, then discard this entry",
    "expired_or_canceled_card": "the card expired or was closed: pay the customer back another way (bank transfer, "
                                "store credit), record it in Clarity and ERPNext, then discard this entry",
    "insufficient_funds": "your Stripe balance could not cover the refund: add funds to the balance, refund again "
                          "in Stripe (the new refund is booked like any other), then discard this entry",
    "declined": "the card's bank declined the refund: pay the customer back another way, record it in Clarity and "
                "ERPNext, then discard this entry",
    "charge_for_pending_refund_disputed": "the customer disputed the charge while the refund was pending: handle "
                                          "the dispute (it returns the money), do not refund again; then discard "
                                          "this entry",
    "merchant_request": "the refund was stopped at your request: refund again in Stripe if the customer is still "
                        "owed, then discard this entry",
}


def failure_fix(status: str, failure_reason: str, *, return_key: str = "", retry_status: str = "") -> str:
    """The suggested fix for a refund that ``failed`` (Stripe's ``failure_reason``) or was ``canceled``.

    With ``return_key`` (a refund the bridge made for that Clarity return) the fix is said in Clarity's
    terms: the return was set to the refund-failed status; moving it back to ``retry_status`` makes the
    bridge refund it again (a new refund), or it is paid back another way.
    """
    if return_key:
        again = (f"move return {return_key} back to {retry_status} in Clarity and the bridge refunds it again"
                 if retry_status else f"refund return {return_key} again")
        if status == "canceled":
            return (f"the refund was canceled before the money left: {again} if the customer is still owed, then "
                    "discard this entry")
        if failure_reason in ("insufficient_funds", "merchant_request"):
            first = "add funds to the Stripe balance, then " if failure_reason == "insufficient_funds" else ""
            return f"{first}{again} if the customer is still owed, then discard this entry"
        if failure_reason == "charge_for_pending_refund_disputed":
            return _FIXES[failure_reason]
        return (f"the card cannot take the refund ({failure_reason or 'unknown reason'}): pay the customer back "
                f"another way (bank transfer, store credit), record it on return {return_key} in Clarity and in "
                "ERPNext, then discard this entry; do not move the return back to the refund status")
    if status == "canceled":
        return ("the refund was canceled before the money left: refund again in Stripe if the customer is still "
                "owed, then discard this entry")
    return _FIXES.get(failure_reason, "ask Stripe support why the refund failed, pay the customer back another way, "
                                      "record it in Clarity and ERPNext, then discard this entry")


def action_alert(refund: RefundView, *, order_key: str = "", charge_id: str = "") -> tuple[str, dict[str, Any]]:
    """The title and details of the alert for a refund in ``requires_action`` (no personal data).

    Stripe asks the customer (by e-mail) for the details it needs to send the money, usually because the
    card can no longer take it; until they answer, the refund holds the money and nothing is paid out.
    """
    amount = f"{format_money(refund.amount)} {refund.amount.currency}"
    where = f"order {order_key}" if order_key else "no known order"
    made = "a refund made in Stripe"
    if refund.echo:
        made = f"the bridge's refund of Clarity return {refund.return_key or refund.return_id}" if (
            refund.return_key or refund.return_id) else "a refund the bridge made"
    todo = ("Stripe e-mailed the customer for the details it needs to pay this refund out: ask the customer to "
            "answer Stripe's e-mail; if they cannot, cancel the refund in the Stripe Dashboard and pay them back "
            "another way (the bridge then reverses what it booked)")
    title = f"Stripe refund {refund.id} ({amount}, {where}) requires action"
    details: dict[str, Any] = {"refund": refund.id, "status": refund.status, "amount_minor": refund.amount.minor,
                               "currency": refund.amount.currency, "order_key": order_key or None,
                               "charge": charge_id or None, "made_by": made, "what_to_do": todo}
    if refund.return_key or refund.return_id:
        details["clarity_return_key"] = refund.return_key or None
        details["clarity_return_id"] = refund.return_id or None
    return title, details
