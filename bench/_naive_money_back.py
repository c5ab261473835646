"""The naive arm of the money-back benchmark: the bridge's refund and dispute flows, with no durability.

``bench/_naive_order.py`` (the order flow with no durability, which the orders of the setup go through) plus,
on the same webhook endpoint, what the built-in workflows ``stripe.refund_recorded`` and
``stripe.dispute_recorded`` do for each of their events, with the same HTTP calls in the same order (the
reads again under a lock included) through the official clients: the Stripe SDK to read the charge, its
refunds, the PaymentIntent and the dispute; httpx for the Clarity sales return, ManuallyRefund, status and
notes and for the ERPNext Sales Invoice, credit note, Pay entry and Journal Entries. Its state is in memory:
the ERP customers of the orders it took through the order flow, the order status before a dispute, the alerts
sent, and one ``threading.Lock`` per charge or dispute instead of the bridge's key locks (two events of one
refund arrive together; without a lock both would create its credit note). No database, no inbox, no engine,
no retries, no dead-letter queue: a failure is written to ``--events`` and that event is lost.

Every money-back delivery appends ``{"start": <event id>}`` before the endpoint answers and ``{"end": <event
id>}`` once its calls are done (``{"error": ...}`` on failure), so the benchmark knows the arm is idle
without asking it; an alert is one JSON log line, as the bridge's default log sink writes it.

    python bench/_naive_money_back.py --port 8001 --events events.jsonl ...   (the options of _naive_order.py)
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _naive_order import Naive, main
from commerce_bridge.connectors.clarity.gateway import ACTIONS_BY_STATUS, LOOKUP_TABLES
from commerce_bridge.mapping.clarity import money_to_clarity, order_from_clarity
from commerce_bridge.mapping.customer import normalized_customer
from commerce_bridge.mapping.dispute import (
    DisputeAccounts,
    chargeback_key,
    clarity_state,
    dispute_from_stripe,
    dispute_note,
    dispute_summary,
    journal_doc,
    planned_journals,
    status_target,
)
from commerce_bridge.mapping.erp import DEFAULT_TAX_ACCOUNT, erp_sales_invoice, money_to_erp
from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.mapping.refund import (
    ACTIVE,
    bookable,
    credit_note_rows,
    refund_from_stripe,
    refund_state,
)

REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refunded", "charge.refund.updated"}
DISPUTE_EVENTS = {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.funds_withdrawn",
                  "charge.dispute.funds_reinstated", "charge.dispute.closed"}
STATUS = {"partially_refunded": "Partially Refunded", "refunded": "Refunded", "paid": "Full Payment Received",
          "disputed": "Disputed", "chargeback": "Chargeback"}  # the status map's defaults
ACCOUNTS = DisputeAccounts()
log = logging.getLogger("naive-money-back")


class NaiveMoneyBack(Naive):
    """``Naive`` (the order flow) plus the refund and dispute flows on its webhook endpoint."""

    def __init__(self, a: Any) -> None:
        super().__init__(a)
        self.status_ids: dict[str, int] = {}
        self.status_before: dict[str, str] = {}  # dispute id -> the order's status before it
        self.alerted: set[str] = set()

    # -- small helpers: the gateways' calls, by hand ------------------------------------------------
    def cef_or_none(self, path: str) -> dict[str, Any] | None:
        """GET a model; None on 404 or an empty answer (the gateway's find_*_by_key)."""
        r = self.clarity.get(path, headers={"X-ss-pid": self.session, "X-ss-id": self.session,
                                            "Accept": "application/json"})
        if r.status_code == 404 or not r.content:
            return None
        r.raise_for_status()
        return dict(json.loads(r.content, parse_float=str))

    def order_by_key(self, key: str) -> dict[str, Any]:
        found = self.search_orders({"CustomKey": key, "CustomKeyStrict": "true"}, size=2)
        rows = [r for r in found.get("Results") or [] if r.get("CustomKey") == key]
        if not rows:
            raise LookupError(f"Clarity has no order {key}")
        return self.get_order(int(rows[0]["ID"]))

    def set_status(self, order_id: int, status_key: str) -> None:
        if not self.status_ids:  # the gateway's lookups, read once
            for entities in LOOKUP_TABLES.values():
                rows = self.cef("GET", f"/Ordering/{entities}", params={
                    "Paging": json.dumps({"Size": 200, "StartIndex": 1})}).get("Results") or []
                if entities == LOOKUP_TABLES["status"]:
                    for r in rows:
                        for name in (r.get("CustomKey"), r.get("Name")):
                            if name:
                                self.status_ids.setdefault(str(name).lower(), int(r["ID"]))
        status_id = self.status_ids[status_key.lower()]
        action = ACTIONS_BY_STATUS.get(status_key)
        if action is not None:
            self.cef("PATCH", f"/Ordering/SalesOrder/{action}/{order_id}")
            return
        if self.get_order(order_id).get("StatusID") != status_id:
            self.cef("PUT", "/Ordering/SalesOrder/Update", body={"ID": order_id, "StatusID": status_id})

    def find_by(self, doctype: str, field: str, value: Any) -> dict[str, Any] | None:
        path = f"/api/resource/{quote(doctype, safe='')}"
        rows = self.erp_call("GET", path, params={
            "fields": json.dumps(["name"]), "limit_page_length": 1, "order_by": "creation asc",
            "filters": json.dumps([[field, "=", value], ["docstatus", "!=", 2]])})
        return dict(self.erp_call("GET", f"{path}/{quote(rows[0]['name'], safe='')}")) if rows else None

    def refunds_of(self, charge_id: str) -> tuple[dict[str, Any], list[Any]]:
        charge = self.stripe.v1.charges.retrieve(charge_id).to_dict()
        page = self.stripe.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return charge, [refund_from_stripe(r.to_dict()) for r in reversed(page.data)]

    def refund(self, refund_id: str) -> Any:
        return refund_from_stripe(self.stripe.v1.refunds.retrieve(refund_id).to_dict())

    def order_key_of(self, payment_intent_id: str | None) -> str:
        if not payment_intent_id:
            return ""
        pi = self.stripe.v1.payment_intents.retrieve(payment_intent_id, params={"expand": ["latest_charge"]}).to_dict()
        return str((pi.get("metadata") or {}).get("clarity_order_key") or "")

    # -- stripe.refund_recorded ---------------------------------------------------------------------
    def refund_recorded(self, obj: Mapping[str, Any]) -> None:
        charge_id = str(obj["id"] if obj.get("object") == "charge" else obj["charge"])
        with self.lock(f"charge:{charge_id}"):  # in memory: one event of a charge at a time
            charge, refunds = self.refunds_of(charge_id)  # refunds
            order_key = self.order_key_of(charge.get("payment_intent"))
            to_book = bookable(refunds)
            if not order_key or not to_book:
                return
            raw = self.order_by_key(order_key)  # find
            order_id = int(raw["ID"])
            for r in to_book:  # returns (the step reads the refund, then again under its lock)
                self.refund(r.id)
                r = self.refund(r.id)
                found = self.cef_or_none(f"/Returning/SalesReturn/Key/{quote(r.id, safe='')}")
                amount = money_to_clarity(r.amount)
                if r.status in ACTIVE:
                    if found is None:
                        found = self.cef("POST", "/Providers/Returning/Actions/CreateSalesReturn", body={
                            "CustomKey": r.id, "SalesOrderIDs": [order_id], "RefundAmount": amount,
                            "RefundTransactionID": r.id, "CurrencyKey": r.amount.currency, "StatusKey": "Pending",
                            "Description": f"Stripe refund {r.id}" + (f": {r.reason}" if r.reason else "")})["Result"]
                    if r.status == "succeeded" and found.get("StatusKey") != "Completed":
                        payment = {"Amount": amount, "TransactionNumber": r.id, "StatusKey": "Payment Received"}
                        self.cef("POST", "/Providers/Returning/Actions/ManuallyRefund", body={
                            "ID": int(found["ID"]), "SalesReturnPayments": [{"Slave": payment}],
                            "RefundAmount": amount, "RefundTransactionID": r.id})
            charge, refunds = self.refunds_of(charge_id)  # mark_refunded
            currency = str(charge.get("currency") or "").upper()
            _, state = refund_state(from_stripe_amount(int(charge.get("amount_captured") or 0), currency), refunds)
            current = self.get_order(order_id).get("StatusKey")
            target = {"partially_refunded": STATUS["partially_refunded"], "refunded": STATUS["refunded"]}.get(state)
            if target is None and current in (STATUS["partially_refunded"], STATUS["refunded"]):
                target = STATUS["paid"]
            if target is not None and target != current:
                self.set_status(order_id, target)
            customer_seen, _ = normalized_customer(order_from_clarity(raw).customer)  # order (core.validate.order)
            customer = self.erp_customers.get(customer_seen.email)  # erp_customer: the order flow's, in memory
            so = self.find_by("Sales Order", "po_no", order_key)  # erp_order (found: made by the order flow)
            if so is None or customer is None:
                raise LookupError(f"order {order_key} has no ERP sales order or customer in memory")
            so = self.erp_call("GET", f"/api/resource/Sales%20Order/{quote(so['name'], safe='')}")  # erp_invoice
            invoice = self.erp_ensure("Sales Invoice", erp_sales_invoice(so, posting_date=datetime.now(UTC).date()),
                                      "po_no", submit=True)
            for r in to_book:  # erp_refunds
                self.book(str(invoice["name"]), customer, self.refund(r.id))

    def book(self, invoice_name: str, customer: str, r: Any) -> None:
        remarks = f"Stripe refund {r.id}"
        note = self.find_by("Sales Invoice", "remarks", remarks)
        payment = self.find_by("Payment Entry", "reference_no", r.id)
        today = datetime.now(UTC).date().isoformat()
        if r.status not in ACTIVE:
            return  # failed or canceled refunds are not in this benchmark
        if note is None:
            inv_path = "/api/resource/Sales%20Invoice"
            invoice = self.erp_call("GET", f"{inv_path}/{quote(invoice_name, safe='')}")
            rows = self.erp_call("GET", inv_path, params={"fields": json.dumps(["name"]), "limit_page_length": 0,
                                                          "filters": json.dumps([
                                                              ["return_against", "=", invoice_name],
                                                              ["is_return", "=", 1], ["docstatus", "=", 1]])})
            earlier = [self.erp_call("GET", f"{inv_path}/{quote(row['name'], safe='')}") for row in rows]
            items, taxes = credit_note_rows(invoice, earlier, r.amount, tax_account=DEFAULT_TAX_ACCOUNT)
            note = self.erp_ensure("Sales Invoice", {
                "customer": customer, "currency": r.amount.currency, "is_return": 1, "return_against": invoice_name,
                "update_outstanding_for_self": 1, "remarks": remarks, "posting_date": today,
                "items": [{k: v for k, v in row.items() if k != "amount"} for row in items],
                **({"taxes": taxes} if taxes else {})}, "remarks", submit=True)
        if r.status == "succeeded" and payment is None:
            paid = money_to_erp(r.amount, field="paid_amount")
            self.erp_ensure("Payment Entry", {
                "payment_type": "Pay", "party_type": "Customer", "party": customer, "posting_date": today,
                "paid_amount": paid, "received_amount": paid, "paid_from": "Stripe Clearing - SB",
                "paid_from_account_currency": r.amount.currency, "reference_no": r.id, "reference_date": today,
                "references": [{"reference_doctype": "Sales Invoice", "reference_name": note["name"],
                                "allocated_amount": money_to_erp(-r.amount, field="allocated_amount")}]},
                "reference_no", submit=True)

    # -- stripe.dispute_recorded --------------------------------------------------------------------
    def dispute(self, dispute_id: str) -> Any:
        return dispute_from_stripe(self.stripe.v1.disputes.retrieve(dispute_id).to_dict())

    def dispute_recorded(self, obj: Mapping[str, Any]) -> None:
        dispute_id = str(obj["id"])
        with self.lock(f"dispute:{dispute_id}"):
            view = self.dispute(dispute_id)  # dispute
            order_key = self.order_key_of(view.payment_intent_id)
            self.alert("dispute.created", view, order_key)  # alert
            if not order_key:
                return
            order_id = int(self.order_by_key(order_key)["ID"])  # find
            view = self.dispute(dispute_id)  # status
            current = self.get_order(order_id).get("StatusKey")
            before = self.status_before.get(dispute_id)
            if clarity_state(view) != "restored" and before is None and current not in (
                    STATUS["disputed"], STATUS["chargeback"]) and current:
                before = self.status_before[dispute_id] = str(current)
            target = status_target(view, current, before, disputed_status=STATUS["disputed"],
                                   chargeback_status=STATUS["chargeback"])
            if target is not None:
                self.set_status(order_id, target)
            key, text = dispute_note(self.dispute(dispute_id))  # note
            if self.cef_or_none(f"/Structure/Note/Key/{quote(key, safe='')}") is None:
                self.cef("POST", "/Structure/Note/Create", body={
                    "CustomKey": key, "Note1": text, "SalesOrderID": order_id, "TypeKey": "Order Note"})
            view = self.dispute(dispute_id)  # journals
            for planned in planned_journals(view, ACCOUNTS, order_key=order_key):
                when = datetime.fromtimestamp(planned.created, UTC) if planned.created else datetime.now(UTC)
                self.erp_ensure("Journal Entry", journal_doc(planned, posting_date=when.date()), "cheque_no",
                                submit=True)
            if view.status != "lost":
                stale = self.find_by("Journal Entry", "cheque_no", chargeback_key(dispute_id))
                if stale is not None:
                    self.erp_call("PUT", f"/api/resource/Journal%20Entry/{quote(stale['name'], safe='')}",
                                  body={"docstatus": 2})
            if view.status == "lost":  # lost_alert
                self.alert("dispute.lost", view, order_key)

    def alert(self, kind: str, view: Any, order_key: str) -> None:
        mark = f"{kind}:{view.id}"
        if mark not in self.alerted:
            self.alerted.add(mark)
            log.warning(json.dumps({"alert": kind, "title": dispute_summary(view, order_key), "key": mark}))

    # -- the webhook endpoint -----------------------------------------------------------------------
    def handle(self, flow: Any, event_id: str, obj: Mapping[str, Any]) -> None:
        try:
            flow(obj)
        except Exception as exc:  # no retry, no dead-letter queue: the event is simply lost
            self.note(error=f"{event_id}: {type(exc).__name__}: {exc}"[:500])
        finally:
            self.note(end=event_id)

    def on_event(self, event: stripe.Event) -> None:
        if event.type == "payment_intent.succeeded":
            super().on_event(event)
            return
        data = event.data.to_dict()
        obj = data["object"]
        flow = (self.refund_recorded if event.type in REFUND_EVENTS else self.dispute_recorded
                if event.type in DISPUTE_EVENTS and (event.type != "charge.dispute.updated" or (
                    (data.get("previous_attributes") or {}).get("status"))) else None)
        if flow is not None and obj.get("id"):
            self.note(start=event.id)
            self.pool.submit(self.handle, flow, event.id, obj)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    main(NaiveMoneyBack)
