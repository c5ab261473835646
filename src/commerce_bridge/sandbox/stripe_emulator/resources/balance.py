"""Balance, balance transactions (fees, ``available_on``, conversion into the settlement currency through
``fx.py``) and payouts (automatic and manual, listed by status, failed by the control API); refunds live in
``refunds.py`` and book their transactions through :func:`new_txn`."""

from __future__ import annotations

import heapq
from decimal import Decimal

from .. import fx
from ..errors import invalid_request, state_error
from ..forms import Params, as_int, as_str, metadata_update
from ..ids import new_id
from ..state import Emulator, parse_range
from ..store import Obj
from . import Route

DAY = 86400


def _balance(emu: Emulator) -> dict[str, dict[str, int]]:
    bal: dict[str, dict[str, int]] | None = emu.store.meta.get("balance")
    if bal is None:
        bal = {}
        emu.store.set_meta("balance", bal)
    return bal


def _pending_heap(emu: Emulator) -> list[tuple[int, str]]:
    heap = emu.pending_heap
    if heap is None:
        heap = [
            (t["available_on"], t["id"])
            for t in (emu.store.objects[i] for i in emu.store.index("balance_transaction").ids)
            if t["status"] == "pending"
        ]
        heapq.heapify(heap)
        emu.pending_heap = heap
    return heap


def new_txn(
    emu: Emulator,
    *,
    amount: int,
    currency: str,
    type_: str,
    category: str,
    source: str | None,
    fee: int = 0,
    description: str | None = None,
    immediate: bool = False,
    fee_type: str = "stripe_fee",
    fee_description: str = "Stripe processing fees",
    exchange_rate: Decimal | None = None,
    available_on: int | None = None,
) -> Obj:
    """Record a balance transaction and move the account balance (pending until ``available_on``).

    ``amount``, ``fee`` and ``currency`` are already in the currency the balance moves in (see ``fx.py``).
    ``available_on`` given: the transaction settles then (a partial capture's reversal settles with its charge).
    """
    now = emu.now()
    if available_on is None:
        pending = amount > 0 and not immediate and emu.config.payout_delay_days > 0
        available_on = (now // DAY + emu.config.payout_delay_days) * DAY if pending else now
    else:
        pending = available_on > now
    txn: Obj = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": available_on,
        "balance_type": "payments",
        "created": now,
        "currency": currency,
        "description": description,
        "exchange_rate": fx.as_number(exchange_rate),
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": fee_description,
                    "type": fee_type,
                }
            ]
            if fee
            else []
        ),
        "net": amount - fee,
        "object_type": None,
        "reporting_category": category,
        "source": source,
        "status": "pending" if pending else "available",
        "type": type_,
    }
    del txn["object_type"]
    idx = [f"balance_transaction:type:{type_}"]
    if source:
        idx.append(f"balance_transaction:source:{source}")
    emu.add("balance_transaction", txn, tuple(idx))
    bal = _balance(emu).setdefault(currency, {"available": 0, "pending": 0})
    bal["pending" if pending else "available"] += txn["net"]
    emu.store.set_meta("balance", emu.store.meta["balance"])
    if pending:
        heapq.heappush(_pending_heap(emu), (available_on, txn["id"]))
    else:
        _unpaid(emu).setdefault(currency, []).append(txn["id"])
    return txn


def charge_txn(
    emu: Emulator, charge: Obj, amount: int, *, captured: int | None = None, immediate: bool = False
) -> None:
    """Book a captured charge: the authorised ``amount``, the fee on what was captured, and for a partial
    capture a ``partial_capture_reversal`` of the rest; converted into the settlement currency (``fx.py``)."""
    cap = amount if captured is None else captured
    presentment = charge["currency"]
    currency, rate = fx.charge_settlement(emu, presentment)
    gross, kept = amount, cap
    if rate is not None:
        gross = fx.convert(amount, presentment, currency, rate)
        kept = fx.convert(cap, presentment, currency, rate)
        emu.store.intern(charge["id"])["fx_rate"] = str(rate)
    txn = new_txn(
        emu,
        amount=gross,
        currency=currency,
        type_="charge",
        category="charge",
        source=charge["id"],
        fee=emu.fee(kept),
        description=charge["description"],
        immediate=immediate,
        exchange_rate=rate,
    )
    charge["balance_transaction"] = txn["id"]
    if cap < amount:
        # the reversal is what makes the pair add up to the converted captured amount, whatever the rounding
        new_txn(
            emu,
            amount=kept - gross,
            currency=currency,
            type_="adjustment",
            category="partial_capture_reversal",
            source=charge["id"],
            description="Partial capture reversal",
            exchange_rate=rate,
            available_on=txn["available_on"],  # booked with its charge, paid out with it
        )


def settle(emu: Emulator) -> int:
    """Move pending transactions whose ``available_on`` has come to available; emit ``balance.available``."""
    heap = _pending_heap(emu)
    now = emu.now()
    moved = 0
    bal = _balance(emu)
    while heap and heap[0][0] <= now:
        _, tid = heapq.heappop(heap)
        txn = emu.store.objects.get(tid)
        if txn is None or txn["status"] != "pending":
            continue
        txn["status"] = "available"
        emu.store.touch(tid)
        b = bal.setdefault(txn["currency"], {"available": 0, "pending": 0})
        b["pending"] -= txn["net"]
        b["available"] += txn["net"]
        _unpaid(emu).setdefault(txn["currency"], []).append(tid)
        moved += 1
    if moved:
        emu.store.set_meta("balance", bal)
        emu.emit("balance.available", balance_obj(emu))
    return moved


def balance_obj(emu: Emulator) -> Obj:
    default = emu.config.settlement_currency or emu.config.currency
    bal = _balance(emu) or {default: {"available": 0, "pending": 0}}
    return {
        "object": "balance",
        "available": [
            {"amount": b["available"], "currency": c, "source_types": {"card": b["available"]}}
            for c, b in bal.items()
        ],
        "connect_reserved": [{"amount": 0, "currency": c} for c in bal],
        "livemode": False,
        "pending": [
            {"amount": b["pending"], "currency": c, "source_types": {"card": b["pending"]}}
            for c, b in bal.items()
        ],
    }


def get_balance(emu: Emulator, p: Params) -> Obj:
    settle(emu)
    return balance_obj(emu)


def list_txns(emu: Emulator, p: Params) -> Obj:
    url = "/v1/balance_transactions"
    payout = as_str(p, "payout")
    source = as_str(p, "source")
    type_ = as_str(p, "type")
    currency = as_str(p, "currency")
    pred = (lambda t: t["currency"] == currency) if currency else None
    if payout:
        po = emu.get("payout", payout, "payout")
        if not po["automatic"]:
            raise invalid_request(
                "Balance transaction history can only be filtered on automatic transfers, not manual.",
                param="payout",
            )
        return emu.list_page(f"balance_transaction:payout:{payout}", p, url, pred)
    if source:
        return emu.list_page(f"balance_transaction:source:{source}", p, url, pred)
    if type_:
        return emu.list_page(f"balance_transaction:type:{type_}", p, url, pred)
    return emu.list_page("balance_transaction", p, url, pred)


# -- payouts -------------------------------------------------------------------------------------------
def _payout_obj(emu: Emulator, amount: int, currency: str, automatic: bool, p: Params) -> Obj:
    now = emu.now()
    return {
        "id": new_id("po"),
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": (now // DAY + 1) * DAY,
        "automatic": automatic,
        "balance_transaction": None,
        "created": now,
        "currency": currency,
        "description": as_str(p, "description", "STRIPE PAYOUT"),
        "destination": "ba_1SandboxBankAcct000000",
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": metadata_update({}, p.get("metadata")),
        "method": as_str(p, "method", "standard"),
        "original_payout": None,
        "payout_method": None,
        "reconciliation_status": "not_applicable" if not automatic else "in_progress",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": as_str(p, "statement_descriptor"),
        "status": "pending",
        "trace_id": None,
        "type": "bank_account",
    }


def _book_payout(emu: Emulator, po: Obj) -> None:
    txn = new_txn(
        emu,
        amount=-po["amount"],
        currency=po["currency"],
        type_="payout",
        category="payout",
        source=po["id"],
        description=po["description"],
    )
    po["balance_transaction"] = txn["id"]
    emu.add("payout", po)
    if po["automatic"]:
        emu.store.add_to_index(txn["id"], f"balance_transaction:payout:{po['id']}")
    emu.emit("payout.created", po)


def _unpaid(emu: Emulator) -> dict[str, list[str]]:
    """Available transactions per currency not yet included in an automatic payout."""
    unpaid = emu.unpaid
    if unpaid is None:
        unpaid = {}
        for tid in emu.store.index("balance_transaction").ids:
            t = emu.store.objects[tid]
            if t["status"] == "available" and not emu.store.internal.get(tid, {}).get("payout"):
                unpaid.setdefault(t["currency"], []).append(tid)
        emu.unpaid = unpaid
    return unpaid


def run_automatic_payouts(emu: Emulator) -> list[Obj]:
    """Pay out the whole available balance of each currency; links the paid-out transactions to the payout."""
    settle(emu)
    out: list[Obj] = []
    unpaid = _unpaid(emu)
    for currency, b in list(_balance(emu).items()):
        if b["available"] <= 0:
            continue
        po = _payout_obj(emu, b["available"], currency, True, {})
        members = unpaid.pop(currency, [])
        for tid in members:
            emu.store.intern(tid)["payout"] = po["id"]
            emu.store.add_to_index(tid, f"balance_transaction:payout:{po['id']}")
        _book_payout(emu, po)
        emu.store.intern(po["balance_transaction"])["payout"] = po["id"]
        rest = unpaid.get(currency, [])
        if po["balance_transaction"] in rest:
            rest.remove(po["balance_transaction"])
        emu.store.add_to_index(po["id"], "payout:open")
        out.append(po)
    return out


def advance_payouts(emu: Emulator) -> None:
    """Mark automatic and manual payouts whose ``arrival_date`` has passed as paid."""
    now = emu.now()
    for pid in emu.store.index("payout:open").ids[:]:
        po = emu.store.objects[pid]
        if po["status"] in ("pending", "in_transit") and po["arrival_date"] <= now:
            prev = emu.changed(
                po,
                {
                    "status": "paid",
                    "reconciliation_status": "completed" if po["automatic"] else "not_applicable",
                },
            )
            emu.store.touch(pid)
            emu.emit("payout.updated", po, prev)
            emu.emit("payout.paid", po)
            if po["automatic"]:
                emu.emit("payout.reconciliation_completed", po)
            emu.store.index("payout:open").remove(emu.store.keys[pid], pid)


def create_payout(emu: Emulator, p: Params) -> Obj:
    amount = as_int(p, "amount", required=True)
    currency = (as_str(p, "currency", required=True) or "").lower()
    assert amount is not None
    settle(emu)
    avail = _balance(emu).get(currency, {}).get("available", 0)
    if amount < 1 or amount > avail:
        raise invalid_request(
            f"You have insufficient funds in your Stripe account for this transfer. Your card balance is too low. "
            f"(available {avail} {currency})",
            param="amount",
            code="balance_insufficient",
        )
    po = _payout_obj(emu, amount, currency, False, p)
    _book_payout(emu, po)
    emu.store.add_to_index(po["id"], "payout:open")
    return po


def cancel_payout(emu: Emulator, p: Params, pid: str) -> Obj:
    po = emu.get("payout", pid)
    if po["status"] != "pending" or po["automatic"]:
        raise state_error(
            f"Payout {pid} cannot be canceled (status {po['status']}).", code="payout_not_cancelable"
        )
    new_txn(
        emu,
        amount=po["amount"],
        currency=po["currency"],
        type_="payout_cancel",
        category="payout_reversal",
        source=pid,
        immediate=True,
    )
    emu.update("payout.updated", po, {"status": "canceled"})
    emu.emit("payout.canceled", po)
    return po


PAYOUT_STATUSES = ("pending", "in_transit", "paid", "failed", "canceled")


def list_payouts(emu: Emulator, p: Params) -> Obj:
    """``GET /v1/payouts`` with Stripe's filters ``status``, ``arrival_date`` and ``created`` (ranges)."""
    status = as_str(p, "status")
    if status is not None and status not in PAYOUT_STATUSES:
        raise invalid_request(f"Invalid status: must be one of {', '.join(PAYOUT_STATUSES)}", param="status")
    arrival = parse_range(p.get("arrival_date"), "arrival_date")

    def wanted(po: Obj) -> bool:
        if status is not None and po["status"] != status:
            return False
        if arrival:
            t = po["arrival_date"]
            for op, bound in arrival.items():
                if not {"gt": t > bound, "gte": t >= bound, "lt": t < bound, "lte": t <= bound}[op]:
                    return False
        return True

    pred = wanted if status is not None or arrival else None
    return emu.list_page("payout", p, "/v1/payouts", pred)


PAYOUT_FAILURES = {
    "account_closed": "The bank account has been closed.",
    "account_frozen": "The bank account has been frozen.",
    "bank_account_restricted": "The bank account has restrictions on either the type, or the number, of payouts "
    "allowed. This normally indicates that the bank account is a savings or other non-checking account.",
    "bank_ownership_changed": "The destination bank account is no longer valid because its branch has changed "
    "ownership.",
    "could_not_process": "The bank could not process this payout.",
    "debit_not_authorized": "Debit transactions are not approved on the bank account. (Stripe requires bank "
    "accounts to be set up for both credit and debit payouts.)",
    "declined": "The bank has declined this transfer. Please contact the bank before retrying.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "invalid_account_number": "The routing number seems correct, but the account number is invalid.",
    "incorrect_account_holder_name": "Your bank notified us that the bank account holder name on file is "
    "incorrect.",
    "incorrect_account_holder_address": "Your bank notified us that the bank account holder address on file is "
    "incorrect.",
    "incorrect_account_holder_tax_id": "Your bank notified us that the bank account holder tax ID on file is "
    "incorrect.",
    "invalid_currency": "The bank was unable to process this payout because of its currency. This is probably "
    "because the bank account cannot accept payments in that currency.",
    "no_account": "The bank account details on file are probably incorrect. No bank account could be located "
    "with those details.",
    "unsupported_card": "The bank no longer supports payouts to this card.",
}
"""Stripe's payout ``failure_code`` values and their ``failure_message`` (Stripe's payout failure table)."""


def fail_payout(emu: Emulator, pid: str, failure_code: str = "account_closed") -> Obj:
    """``POST /_sandbox/payouts/{id}/fail``: the bank returns a payout (pending, in transit, or already paid).

    As at Stripe: ``status`` becomes ``failed`` with ``failure_code``/``failure_message``; a ``payout_failure``
    balance transaction (reporting category ``payout_reversal``, available at once) puts the amount back in
    the balance and is named by ``failure_balance_transaction``; events ``payout.updated`` (with
    ``previous_attributes``) then ``payout.failed``. The returned funds are paid out again by the next
    automatic payout, whose transaction list holds the ``payout_failure`` line; the failed payout's own list
    is unchanged.
    """
    po = emu.get("payout", pid)
    if po["status"] not in ("pending", "in_transit", "paid"):
        raise state_error(
            f"Payout {pid} cannot fail (status {po['status']}).", code="payout_unexpected_state"
        )
    message = PAYOUT_FAILURES.get(failure_code)
    if message is None:
        raise invalid_request(
            f"Invalid failure_code: {failure_code} (one of {', '.join(sorted(PAYOUT_FAILURES))})",
            param="failure_code",
        )
    txn = new_txn(
        emu,
        amount=po["amount"],
        currency=po["currency"],
        type_="payout_failure",
        category="payout_reversal",
        source=pid,
        description=f"Payout failure ({failure_code})",
        immediate=True,
    )
    open_idx = emu.store.index("payout:open")
    if pid in open_idx.ids:
        open_idx.remove(emu.store.keys[pid], pid)
    emu.update(
        "payout.updated",
        po,
        {
            "status": "failed",
            "failure_code": failure_code,
            "failure_message": message,
            "failure_balance_transaction": txn["id"],
        },
    )
    emu.emit("payout.failed", po)
    return po


ROUTES: list[Route] = [
    ("GET", "/v1/balance", get_balance),
    ("GET", "/v1/balance_transactions", list_txns),
    ("GET", "/v1/balance_transactions/{id}", lambda emu, p, i: emu.get("balance_transaction", i)),
    ("POST", "/v1/payouts", create_payout),
    ("GET", "/v1/payouts", list_payouts),
    ("GET", "/v1/payouts/{id}", lambda emu, p, i: emu.get("payout", i)),
    ("POST", "/v1/payouts/{id}/cancel", cancel_payout),
]
