"""Balance, balance transactions (fees, ``available_on``) and payouts (automatic and manual); refunds live in
``refunds.py`` and book their transactions through :func:`new_txn`."""

from __future__ import annotations

import heapq

from ..errors import invalid_request, state_error
from ..forms import Params, as_int, as_str, metadata_update
from ..ids import new_id
from ..state import Emulator
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
) -> Obj:
    """Record a balance transaction and move the account balance (pending until ``available_on``)."""
    now = emu.now()
    pending = amount > 0 and not immediate and emu.config.payout_delay_days > 0
    available_on = (now // DAY + emu.config.payout_delay_days) * DAY if pending else now
    txn: Obj = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": available_on,
        "balance_type": "payments",
        "created": now,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
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
    cap = amount if captured is None else captured
    txn = new_txn(
        emu,
        amount=amount,
        currency=charge["currency"],
        type_="charge",
        category="charge",
        source=charge["id"],
        fee=emu.fee(cap),
        description=charge["description"],
        immediate=immediate,
    )
    charge["balance_transaction"] = txn["id"]
    if cap < amount:
        new_txn(
            emu,
            amount=cap - amount,
            currency=charge["currency"],
            type_="adjustment",
            category="partial_capture_reversal",
            source=charge["id"],
            description="Partial capture reversal",
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
    bal = _balance(emu) or {emu.config.currency: {"available": 0, "pending": 0}}
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


ROUTES: list[Route] = [
    ("GET", "/v1/balance", get_balance),
    ("GET", "/v1/balance_transactions", list_txns),
    ("GET", "/v1/balance_transactions/{id}", lambda emu, p, i: emu.get("balance_transaction", i)),
    ("POST", "/v1/payouts", create_payout),
    ("GET", "/v1/payouts", lambda emu, p: emu.list_page("payout", p, "/v1/payouts")),
    ("GET", "/v1/payouts/{id}", lambda emu, p, i: emu.get("payout", i)),
    ("POST", "/v1/payouts/{id}/cancel", cancel_payout),
]
