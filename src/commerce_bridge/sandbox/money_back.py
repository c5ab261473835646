"""The demo's money going back: a return refunded in Clarity, a refund made in the Stripe Dashboard, a dispute
won and one lost, made the way the outside world makes them, and what each system then holds of them.

Rules it keeps:

* it acts only on an order that is paid (and captured) everywhere, and only through the peers' own routes,
  as their people would: the store operator makes a return and moves it to the refund status
  (``/_sandbox/returns``, the status named by the status map's ``clarity_return_statuses.refund``); the
  merchant refunds part of a charge in the Dashboard (``/_sandbox/refunds``); the cardholder's bank opens a
  dispute (``/_sandbox/charges/{id}/dispute``) and, once the bridge has staged its evidence, the merchant
  submits it from the Dashboard with Stripe's test text (``winning_evidence`` wins, ``losing_evidence``
  loses), so the dispute closes at once: no clock needs to move;
* what it reads is every system's record of that money, not the bridge's: Stripe's refunds and disputes,
  Clarity's order status and returns, ERPNext's credit notes, Pay entries and journal entries;
* :func:`problems` says, one line each, what differs from the expected outcome: exactly one refund per
  return and one return per refund (a refund the bridge made never comes back as a second one), amounts
  to the minor unit, the dispute's status, the order's status and one journal per money movement.
  Amounts are integers of minor units; text shows them exactly, with the currency's own decimals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from commerce_bridge.domain.currency import minor_digits

if TYPE_CHECKING:
    from commerce_bridge.sandbox.traffic import Placed, Traffic

CLARITY_API = "/DesktopModules/ClarityEcommerce/API-Admin"
RETURN, REFUND, WON, LOST = "return", "refund", "won", "lost"
"""What happens to the order once it is paid (``Scenario.then``)."""
EVIDENCE = {WON: "winning_evidence", LOST: "losing_evidence"}
"""Stripe's test-mode texts: evidence holding one of them wins or loses the dispute as soon as it is submitted."""


@dataclass(frozen=True)
class StoreStatuses:
    """The store's status names (the bridge's status map: the demo passes the bridge's own)."""

    paid: str = "Full Payment Received"
    partially_refunded: str = "Partially Refunded"
    refunded: str = "Refunded"
    disputed: str = "Disputed"
    chargeback: str = "Chargeback"
    return_refund: str = "Refund Approved"
    return_refunded: str = "Completed"


@dataclass(frozen=True)
class Refund:
    """A Stripe refund of the order's PaymentIntent."""

    id: str
    amount_minor: int
    status: str
    return_key: str  # metadata.clarity_return_key: the bridge made it for that Clarity return


@dataclass(frozen=True)
class Dispute:
    """A Stripe dispute of the order's charge and its balance transactions (id, amount, fee)."""

    id: str
    amount_minor: int
    status: str
    has_evidence: bool
    movements: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Return:
    """A Clarity sales return of the order."""

    key: str
    status: str
    amount_minor: int | None
    transaction: str  # RefundTransactionID: the Stripe refund that paid it back


@dataclass(frozen=True)
class ErpDoc:
    """An ERPNext document of the order's money going back: its name, key and amount (positive)."""

    name: str
    key: str
    amount_minor: int | None


@dataclass
class MoneyBack:
    """What was done to one paid order and what each system holds of it since."""

    then: str
    statuses: StoreStatuses
    stage: str = ""  # "" (nothing done yet), "opened" (a dispute, waiting for the bridge), "done"
    return_key: str = ""  # the Clarity return the store operator made
    dispute_id: str = ""
    was: str = ""  # the order's Clarity status when the dispute's outcome was asked for (the disputed one)
    refunds: list[Refund] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)
    credit_notes: list[ErpDoc] = field(default_factory=list)
    pay_entries: list[ErpDoc] = field(default_factory=list)
    journals: list[ErpDoc] = field(default_factory=list)


def amount_text(minor: int | None, currency: str) -> str:
    """``minor`` units as an exact decimal with the code: ``12.50 USD``, ``4.250 KWD``, ``500 JPY``."""
    if minor is None:
        return "no amount"
    return f"{Decimal(minor).scaleb(-minor_digits(currency)):f} {currency.upper()}"


def to_minor(value: Any, currency: str) -> int | None:
    """A decimal amount a peer wrote (``"12.5"``, ``-12.5``, ``"1500.0"``) in minor units; None if not exact."""
    try:
        scaled = Decimal(str(value)).scaleb(minor_digits(currency))
    except (InvalidOperation, ValueError):
        return None
    return int(scaled) if scaled.is_finite() and scaled == scaled.to_integral_value() else None


def expected_back(o: Placed) -> int:
    """The minor units the scenario gives back: the returned lines' prices, or the Dashboard refund."""
    s = o.scenario
    if s.then == REFUND:
        return s.refund_minor
    prices = {sku: price for sku, _, price in s.lines}
    total = sum((Decimal(prices[sku]) * qty for sku, qty in s.returned), Decimal(0))
    return to_minor(total, s.currency) or 0


# -- acting: the store operator, the merchant and the cardholder's bank ------------------------------------

def act(traffic: Traffic, o: Placed, charge_id: str) -> None:
    """Do the scenario's next step on ``o`` (paid everywhere), once the previous one had its effect."""
    back = o.back
    if back is None or back.stage == "done" or not o.intent_id:
        return
    s = o.scenario
    if back.stage == "":
        if s.then == RETURN:
            back.return_key = f"RMA-{o.key}"
            r = traffic.clarity.post("/_sandbox/returns", json={
                "SalesOrderID": o.order_id, "CustomKey": back.return_key,
                "Lines": [{"Sku": sku, "Quantity": qty} for sku, qty in s.returned],
                "Status": back.statuses.return_refund})
            _ok(o, r, "the Clarity return")
            back.stage = "done"
        elif s.then == REFUND:
            r = traffic.stripe.post("/_sandbox/refunds", json={
                "payment_intent": o.intent_id, "amount": s.refund_minor, "reason": "requested_by_customer"})
            _ok(o, r, "the Dashboard refund")
            back.stage = "done"
        elif s.then in EVIDENCE and charge_id:
            r = traffic.stripe.post(f"/_sandbox/charges/{charge_id}/dispute", json={"reason": s.dispute_reason})
            if _ok(o, r, "the dispute"):
                back.dispute_id = str(r.json()["id"])
            back.stage = "opened"
    elif back.stage == "opened" and back.dispute_id:
        # the bank decides once the merchant answered: wait for the bridge's evidence (staged) and the order's
        # disputed status, then submit from the Dashboard with Stripe's test text for the outcome
        dispute = traffic.stripe.get(f"/v1/disputes/{back.dispute_id}").json()
        if o.clarity_status != back.statuses.disputed or not dispute.get("evidence_details", {}).get("has_evidence"):
            return
        text = str((dispute.get("evidence") or {}).get("uncategorized_text") or "")
        r = traffic.stripe.post(f"/v1/disputes/{back.dispute_id}", data={
            "evidence[uncategorized_text]": f"{text}\n{EVIDENCE[s.then]}".strip(), "submit": "true"})
        _ok(o, r, "the dispute's evidence")
        back.was, back.stage = o.clarity_status, "done"


def _ok(o: Placed, r: Any, what: str) -> bool:
    if r.status_code == 200:
        return True
    o.error = f"{what} was refused ({r.status_code}): {r.text[:160]}"
    return False


# -- reading: every system's records of that money ----------------------------------------------------------

def read(traffic: Traffic, o: Placed, order: dict[str, Any]) -> None:
    """Read Stripe's refunds and disputes, Clarity's returns and ERPNext's documents of ``o``'s money going back.

    ``order``: the Clarity order as just read (its full projection lists its returns).
    """
    back = o.back
    if back is None or back.stage == "" or not o.intent_id:
        return
    cur = o.scenario.currency
    refunds = traffic.stripe.get("/v1/refunds", params={"payment_intent": o.intent_id, "limit": 100}).json()
    back.refunds = [Refund(r["id"], int(r["amount"]), str(r["status"]),
                           str((r.get("metadata") or {}).get("clarity_return_key") or ""))
                    for r in refunds.get("data") or []]
    disputes = traffic.stripe.get("/v1/disputes", params={"payment_intent": o.intent_id, "limit": 100}).json()
    back.disputes = [Dispute(d["id"], int(d["amount"]), str(d["status"]),
                             bool((d.get("evidence_details") or {}).get("has_evidence")),
                             tuple((t["id"], int(t["amount"]), int(t.get("fee") or 0))
                                   for t in d.get("balance_transactions") or []))
                     for d in disputes.get("data") or []]
    back.returns = []
    for link in order.get("AssociatedSalesReturns") or []:
        got = traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/ID/{link['SlaveID']}", headers=traffic.session)
        if got.status_code == 200 and got.content:
            ret = got.json()
            amount = ret.get("RefundAmount")
            back.returns.append(Return(str(ret.get("CustomKey") or ""), str(ret.get("StatusKey") or ""),
                                       to_minor(amount, cur) if amount is not None else None,
                                       str(ret.get("RefundTransactionID") or "")))
    invoices = _erp(traffic, "Sales Invoice", [["po_no", "=", o.key], ["is_return", "=", 0]])
    back.credit_notes = [ErpDoc(d["name"], str(d.get("remarks") or ""), _positive(d.get("grand_total"), cur))
                         for inv in invoices
                         for d in _erp(traffic, "Sales Invoice", [["return_against", "=", inv["name"]],
                                                                  ["is_return", "=", 1]])]
    back.pay_entries = [ErpDoc(d["name"], str(d.get("reference_no") or ""), _positive(d.get("paid_amount"), cur))
                        for r in back.refunds
                        for d in _erp(traffic, "Payment Entry", [["reference_no", "=", r.id]])]
    journals = [ErpDoc(d["name"], str(d.get("cheque_no") or ""), _positive(d.get("total_debit"), cur))
                for dispute in back.disputes
                for d in _erp(traffic, "Journal Entry", [["user_remark", "like", f"%{dispute.id}%"]])]
    order_of = [key for dispute in back.disputes for key, _, _ in dispute.movements]  # as the money moved
    back.journals = sorted(journals, key=lambda j: order_of.index(j.key) if j.key in order_of else len(order_of))


def _positive(value: Any, currency: str) -> int | None:
    minor = to_minor(value if value is not None else "", currency)
    return abs(minor) if minor is not None else None


def _erp(traffic: Traffic, doctype: str, filters: list[list[Any]]) -> list[dict[str, Any]]:
    """The submitted documents of ``doctype`` matching ``filters`` (cancelled and draft ones are not the books)."""
    r = traffic.erp.get(f"/api/resource/{doctype}", params={
        "filters": json.dumps([*filters, ["docstatus", "=", 1]]), "fields": '["*"]', "limit_page_length": 0})
    return list(r.json().get("data") or []) if r.status_code == 200 else []


# -- judging: what differs from the expected outcome --------------------------------------------------------

Money = Callable[[int | None, str], str]
"""How a text shows an amount: (minor units or None, currency) -> text; :func:`amount_text` by default."""


def problems(o: Placed, money: Money = amount_text) -> list[str]:
    """What each system holds of ``o``'s money going back that differs from the expected outcome (none: done).

    ``money`` writes the amounts (the demo passes its own, ``$12.50``).
    """
    back = o.back
    if back is None:
        return []
    if back.stage != "done":
        return ["still waiting for the bridge (dispute not yet marked in Clarity, or its evidence not staged)"
                if back.stage == "opened" else "nothing given back yet"]
    if back.then in (RETURN, REFUND):
        return _refund_problems(o, back, money)
    return _dispute_problems(o, back, money)


def _refund_problems(o: Placed, back: MoneyBack, amount: Money) -> list[str]:
    cur, want = o.scenario.currency, expected_back(o)
    out: list[str] = []
    want_text = amount(want, cur)
    if len(back.refunds) != 1:
        found = ", ".join(amount(r.amount_minor, cur) for r in back.refunds) or "none"
        out.append(f"Stripe: expected one refund of {want_text}, found {len(back.refunds)} ({found})")
    for r in back.refunds:
        if r.amount_minor != want or r.status != "succeeded":
            out.append(f"Stripe: refund {r.id} is {amount(r.amount_minor, cur)} {r.status}, "
                       f"expected {want_text} succeeded")
        if back.then == RETURN and r.return_key != back.return_key:
            out.append(f"Stripe: refund {r.id} names return {r.return_key or 'none'}, expected {back.return_key}")
    if len(back.returns) != 1:
        out.append(f"Clarity: expected one return on the order, found {len(back.returns)} "
                   f"({', '.join(r.key for r in back.returns) or 'none'})")
    refund_ids = {r.id for r in back.refunds}
    for ret in back.returns:
        if back.then == RETURN and ret.key != back.return_key:
            continue  # counted above
        if (ret.status != back.statuses.return_refunded or ret.amount_minor != want
                or ret.transaction not in refund_ids):
            out.append(f"Clarity: return {ret.key} is {ret.status or 'no status'}, "
                       f"{amount(ret.amount_minor, cur)}, refund {ret.transaction or 'none'}; expected "
                       f"{back.statuses.return_refunded}, {want_text}, the Stripe refund")
    total = to_minor(o.total, cur)
    status = back.statuses.refunded if total is not None and want >= total else back.statuses.partially_refunded
    if o.clarity_status != status:
        out.append(f"Clarity: order status {o.clarity_status or 'none'}, expected {status}")
    for what, docs in (("credit note", back.credit_notes), ("Pay entry", back.pay_entries)):
        amounts = [d.amount_minor for d in docs]
        if amounts != [want] * len(refund_ids) or not docs:
            found = ", ".join(f"{d.name} {amount(d.amount_minor, cur)}" for d in docs) or "none"
            out.append(f"ERPNext: expected one {what} of {want_text} per refund, found {found}")
    return out


def _dispute_problems(o: Placed, back: MoneyBack, amount: Money) -> list[str]:
    cur = o.scenario.currency
    if len(back.disputes) != 1:
        return [f"Stripe: expected one dispute, found {len(back.disputes)}"]
    [d] = back.disputes
    out: list[str] = []
    if d.status != back.then:
        out.append(f"Stripe: dispute {d.id} is {d.status}, expected {back.then}")
    status = back.statuses.paid if back.then == WON else back.statuses.chargeback
    if o.clarity_status != status:
        out.append(f"Clarity: order status {o.clarity_status or 'none'}, expected {status}"
                   + (" (its status before the dispute)" if back.then == WON else ""))
    if back.refunds:
        out.append(f"Stripe: expected no refund, found {len(back.refunds)}")
    # one journal per money movement: the withdrawal (amount + fee), then the reinstatement or the chargeback
    expected = {key: -amount + fee if amount < 0 else amount for key, amount, fee in d.movements}
    if back.then == LOST:
        expected[f"{d.id}:chargeback"] = d.amount_minor
    found = {j.key: j.amount_minor for j in back.journals}
    if len(back.journals) != len(found) or found != expected:
        def listing(m: dict[str, int | None]) -> str:
            return ", ".join(f"{k} {amount(v, cur)}" for k, v in sorted(m.items())) or "none"
        out.append(f"ERPNext: journal entries {listing(found)}; expected {listing(dict(expected))}")
    return out
