"""The naive arm of the money-back benchmark's payout flow: ``stripe.payout_reconciled`` with no durability.

``bench/_naive_money_back.py`` (the order flow, refunds and disputes with no durability) plus, on the same
webhook endpoint, what the built-in workflow ``stripe.payout_reconciled`` does for ``payout.paid`` and
``payout.reconciliation_completed`` (the workflow's filter: ``reconciliation_status`` not ``in_progress``),
with the same HTTP calls in the same order through the official clients:

* Stripe (SDK): ``GET /v1/payouts/{id}``; ``GET /v1/balance_transactions?payout=…&limit=100&expand[]=data.source``,
  every page (``starting_after``); ``GET /v1/payment_intents/{id}?expand[]=latest_charge`` for a refund or
  dispute whose source has no ``metadata.clarity_order_key`` (once per PaymentIntent and run, as the bridge
  caches it);
* ERPNext (httpx), per page of transactions and only for kinds the page holds: the received Payment Entries
  (``reference_no in [charge ids]``, ``payment_type`` Receive), the paid ones (``reference_no in [refund ids]``,
  Pay), the failed-payout reversals and the dispute journals (Journal Entry ``cheque_no in [...]``); then the
  payout's Journal Entry: found by ``cheque_no`` = payout id (list, and the document when there is one), kept
  when its rows are the ones computed, else found again, created and submitted (``erp_ensure``: list, POST,
  GET, PUT), as ``PayoutReconciler.post`` and ``HttpErpGateway._ensure`` do.

The journal is computed in plain Python, not by the bridge's polars core: per transaction (except the payout's
own), what the other documents booked (G gross, F fee) is taken off: clearing ``net - (G - F)``, the counter
account ``-(amount - G)`` (receivable, refunds or disputes; suspense when nothing booked it), fees (dispute
fees for a dispute line) ``fee - F``; then bank ``+P`` and clearing ``-P``; summed per account, zero sums left
out. No matching rules, no exceptions, no proof, no FX: one currency, what this benchmark pays out. Nothing is
recorded anywhere but the ERP; both events of a payout make the same calls, the second finding the entry and
posting nothing. One ``threading.Lock`` per payout stands for the bridge's key lock.

    python bench/_naive_payouts.py --port 8001 --events events.jsonl ...   (the options of _naive_order.py)
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _naive_money_back import NaiveMoneyBack
from _naive_order import main
from commerce_bridge.domain.money import Money
from commerce_bridge.mapping.erp import money_from_erp, money_to_erp
from commerce_bridge.mapping.money import format_money, from_stripe_amount

PAYOUT_EVENTS = {"payout.paid", "payout.reconciliation_completed"}
ORDER_KEY = "clarity_order_key"
CHUNK = 100
ACCOUNTS = {  # the sandbox chart's, as the bridge's defaults name them
    "clearing": "Stripe Clearing - SB", "bank": "Stripe Payouts Bank - SB", "receivable": "Debtors - SB",
    "fees": "Stripe Fees - SB", "dispute_fees": "Stripe Fees - SB", "refunds": "Sales Returns and Refunds - SB",
    "disputes": "Disputed Funds - SB", "suspense": "Stripe Reconciliation Suspense - SB",
}
COUNTER = {"charge": "receivable", "refund": "refunds", "dispute": "disputes"}
CHARGES, REFUNDS, FAILURES = ("charge", "payment"), ("refund", "payment_refund"), ("payout_failure", "payout_cancel")
DISPUTES = ("dispute", "dispute_reversal")


def _source(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    src = txn.get("source")
    return src if isinstance(src, Mapping) else {"id": src}


def _minor(amount: Any, currency: str) -> int:
    return from_stripe_amount(int(amount), currency).minor


def _category(txn: Mapping[str, Any]) -> str:
    if txn.get("reporting_category") in DISPUTES:
        return "dispute"
    kind = txn.get("type")
    return "charge" if kind in CHARGES else "refund" if kind in REFUNDS else "other"


def _norm(value: Any) -> str:
    return str(Decimal(str(value or 0)).normalize())


def journal_lines(payout: Mapping[str, Any], txns: Sequence[Mapping[str, Any]],
                  booked: Mapping[str, tuple[int, int]]) -> list[tuple[str, int, list[str]]]:
    """The payout's journal, summed per account: [(account, signed minor units, the refs it sums)]."""
    sums: dict[str, list[Any]] = {}

    def add(role: str, ref: str, amount: int) -> None:
        if amount:
            line = sums.setdefault(ACCOUNTS[role], [0, set()])
            line[0] += amount
            line[1].add(ref)

    for t in txns:
        if t.get("type") == "payout":
            continue
        currency = str(t["currency"])
        amount, fee, net = (_minor(t[k], currency) for k in ("amount", "fee", "net"))
        category = _category(t)
        gross, booked_fee = booked.get(str(t["id"]), (0, 0))
        add("clearing", t["id"], net - (gross - booked_fee))
        add(COUNTER.get(category, "suspense") if str(t["id"]) in booked else "suspense", t["id"], -(amount - gross))
        add("dispute_fees" if category == "dispute" else "fees", t["id"], fee - booked_fee)
    paid = _minor(payout["amount"], str(payout["currency"]))
    add("bank", payout["id"], paid)
    add("clearing", payout["id"], -paid)
    return [(account, amount, sorted(refs)) for account, (amount, refs) in sorted(sums.items()) if amount]


class NaivePayouts(NaiveMoneyBack):
    """``NaiveMoneyBack`` plus the payout flow on its webhook endpoint."""

    # -- Stripe ---------------------------------------------------------------------------------------
    def payout_pages(self, payout_id: str) -> Iterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {"payout": payout_id, "limit": CHUNK, "expand": ["data.source"]}
        while True:
            page = self.stripe.v1.balance_transactions.list(params=params)  # type: ignore[arg-type]
            if page.data:
                yield [t.to_dict() for t in page.data]
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}

    def order_key(self, src: Mapping[str, Any], cache: dict[str, str]) -> str | None:
        key = (src.get("metadata") or {}).get(ORDER_KEY)
        if key:
            return str(key)
        pi = src.get("payment_intent")
        pi_id = pi.get("id") if isinstance(pi, Mapping) else pi
        if not pi_id:
            return None
        if pi_id not in cache:
            found = self.stripe.v1.payment_intents.retrieve(str(pi_id), params={"expand": ["latest_charge"]})
            cache[pi_id] = str((found.to_dict().get("metadata") or {}).get(ORDER_KEY) or "")
        return cache[pi_id] or None

    # -- ERPNext ----------------------------------------------------------------------------------------
    def entries(self, doctype: str, key_field: str, keys: list[str], extra: list[list[Any]],
                fields: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            rows = self.erp_call("GET", f"/api/resource/{quote(doctype, safe='')}", params={
                "fields": json.dumps([key_field, *fields]), "limit_page_length": len(chunk) * 4,
                "filters": json.dumps([[key_field, "in", chunk], ["docstatus", "=", 1], *extra])})
            for row in rows:
                found.setdefault(str(row[key_field]), row)
        return found

    def booked_on(self, page: list[dict[str, Any]], booked: dict[str, tuple[int, int]]) -> None:
        """What the other flows booked for the page's transactions: {txn id: (gross, fee)}."""
        charges = {str(_source(t).get("id")): t for t in page if t.get("type") in CHARGES}
        refunds = {str(_source(t).get("id")): t for t in page if t.get("type") in REFUNDS}
        movements = {str(t["id"]): t for t in page if t.get("reporting_category") in DISPUTES}
        received = self.entries("Payment Entry", "reference_no", sorted(charges), [["payment_type", "=", "Receive"]],
                                ["name", "paid_amount", "paid_to_account_currency"])
        for charge_id, entry in received.items():
            txn = charges[charge_id]
            currency = str(entry.get("paid_to_account_currency") or txn["currency"]).upper()
            if currency == str(txn["currency"]).upper():
                booked[str(txn["id"])] = (money_from_erp(entry["paid_amount"], currency).minor, 0)
        paid_back = self.entries("Payment Entry", "reference_no", sorted(refunds), [["payment_type", "=", "Pay"]],
                                 ["name", "paid_amount", "paid_from_account_currency"])
        for refund_id, entry in paid_back.items():
            txn = refunds[refund_id]
            currency = str(entry.get("paid_from_account_currency") or txn["currency"]).upper()
            if currency == str(txn["currency"]).upper():
                booked[str(txn["id"])] = (-money_from_erp(entry["paid_amount"], currency).minor, 0)
        failures = {f"{_source(t).get('id')}:failed": t for t in page if t.get("type") in FAILURES}
        moved = {**{str(failures[k]["id"]): failures[k]
                    for k in self.entries("Journal Entry", "cheque_no", sorted(failures), [], ["name"])},
                 **{k: movements[k] for k in self.entries("Journal Entry", "cheque_no", sorted(movements), [],
                                                          ["name"])}}
        for txn_id, txn in moved.items():
            currency = str(txn["currency"])
            booked[txn_id] = (_minor(txn["amount"], currency), _minor(txn["fee"], currency))

    # -- stripe.payout_reconciled ----------------------------------------------------------------------
    def payout_reconciled(self, obj: Mapping[str, Any]) -> None:
        payout_id = str(obj["id"])
        with self.lock(f"payout:{payout_id}"):
            payout = self.stripe.v1.payouts.retrieve(payout_id).to_dict()  # reconcile
            if not payout.get("automatic") or payout.get("status") not in ("paid", "in_transit"):
                return  # the bridge records not_reconcilable or refuses; neither happens in this benchmark
            txns: list[dict[str, Any]] = []
            booked: dict[str, tuple[int, int]] = {}
            keys: dict[str, str | None] = {}
            cache: dict[str, str] = {}
            for page in self.payout_pages(payout_id):
                for t in page:  # the order of each charge, refund and dispute, as the bridge's columns ask
                    src = _source(t)
                    if str(src.get("id")) not in keys:
                        keys[str(src.get("id"))] = (self.order_key(src, cache)
                                                    if src.get("object") in ("charge", "refund", "dispute") else None)
                self.booked_on(page, booked)
                txns.extend(page)
            lines = journal_lines(payout, txns, booked)
            doc = self.journal_doc(payout, lines, len(txns))
            path = "/api/resource/Journal%20Entry"  # journal (PayoutReconciler.post)
            found = self.find_by("Journal Entry", "cheque_no", payout_id)
            if found is not None and doc is not None and _rows(found) == _rows(doc):
                return
            if found is not None and int(found.get("docstatus") or 0) == 1:
                self.erp_call("GET", f"{path}/{quote(str(found['name']), safe='')}")
                self.erp_call("PUT", f"{path}/{quote(str(found['name']), safe='')}", body={"docstatus": 2})
            if doc is not None:
                self.erp_ensure("Journal Entry", doc, "cheque_no", submit=True)

    @staticmethod
    def journal_doc(payout: Mapping[str, Any], lines: list[tuple[str, int, list[str]]],
                    count: int) -> dict[str, Any] | None:
        if not lines:
            return None
        currency = str(payout["currency"]).upper()
        when = payout.get("arrival_date")
        day = (datetime.fromtimestamp(int(when), UTC).date() if when else date.today()).isoformat()
        zero = money_to_erp(Money(0, currency), precision=2, field="amount")
        rows = []
        for account, amount, refs in lines:
            text = money_to_erp(Money(abs(amount), currency), precision=2, field="amount")
            rows.append({"account": account, "debit_in_account_currency": text if amount > 0 else zero,
                         "credit_in_account_currency": zero if amount > 0 else text,
                         "user_remark": f"{len(refs)} Stripe transaction(s): " + ", ".join(refs[:5])
                                        + (" ..." if len(refs) > 5 else "")})
        total = Money(_minor(payout["amount"], currency), currency)
        return {"voucher_type": "Journal Entry", "posting_date": day, "cheque_no": payout["id"], "cheque_date": day,
                "user_remark": f"Stripe payout {payout['id']} of {format_money(total)} {currency}: {count} "
                               "transactions, 0 exception(s) (closed)",
                "accounts": rows}

    # -- the webhook endpoint ------------------------------------------------------------------------
    def on_event(self, event: stripe.Event) -> None:
        if event.type not in PAYOUT_EVENTS:
            super().on_event(event)
            return
        obj = event.data.to_dict()["object"]
        if obj.get("id") and obj.get("reconciliation_status") != "in_progress":  # the workflow's filter
            self.note(start=event.id)
            self.pool.submit(self.handle, self.payout_reconciled, event.id, obj)


def _rows(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((str(r["account"]), _norm(r.get("debit_in_account_currency")),
                   _norm(r.get("credit_in_account_currency"))) for r in doc.get("accounts") or ())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    main(NaivePayouts)
