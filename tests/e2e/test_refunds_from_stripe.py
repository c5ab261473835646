"""Refunds made in Stripe reach Clarity and ERPNext once, to the cent (issue 12, point 2), on SQLite and PostgreSQL.

One sandbox stack (Stripe emulator, Clarity and ERPNext simulators, mail catcher, the bridge in this process)
per database for the whole module; every test places its own orders. The store has the two refund statuses
of the status map (they are not CEF seeds: an operator adds them).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed
from commerce_bridge.testing import FakeAlertSink
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
_numbers = itertools.count(500)
ALERTS: dict[int, FakeAlertSink] = {}  # per stack: what the bridge's alerter sent


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"refunds-{request.param}")) as stack:
        for name in ("Partially Refunded", "Refunded"):  # the store's own statuses, made by the stack
            r = stack.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrderStatus/Key/{name}",
                                          headers=stack.traffic.session)
            assert r.status_code == 200 and r.json()["Name"] == name, r.text
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack



def paid_order(st: Stack, scenario: str = "paid (USD)") -> tuple[Placed, dict[str, Any]]:
    order = st.traffic.place(next(_numbers), BY_NAME[scenario])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    pi = next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)
    return order, pi


def dashboard_refund(st: Stack, pi: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = st.traffic.stripe.post("/_sandbox/refunds", json={"payment_intent": pi["id"], **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def order_status(st: Stack, order: Placed) -> str:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=st.traffic.session)
    return str(got.json()["StatusKey"])


def sales_return(st: Stack, refund_id: str) -> dict[str, Any] | None:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/Key/{refund_id}", headers=st.traffic.session)
    return got.json() if got.status_code == 200 and got.content else None


def returns_of(st: Stack, order: Placed) -> list[dict[str, Any]]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=st.traffic.session)
    return list(got.json().get("AssociatedSalesReturns") or [])


def erp_docs(st: Stack, doctype: str, field: str, value: str) -> list[dict[str, Any]]:
    r = st.traffic.erp.get(f"/api/resource/{doctype}", params={
        "filters": f'[["{field}", "=", "{value}"]]', "fields": '["*"]', "limit_page_length": 0})
    return list(r.json()["data"])


def booked(st: Stack, refund_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The refund's credit notes and Pay entries in the ERP that are not cancelled."""
    notes = [d for d in erp_docs(st, "Sales Invoice", "remarks", f"Stripe refund {refund_id}") if d["docstatus"] == 1]
    pays = [d for d in erp_docs(st, "Payment Entry", "reference_no", refund_id) if d["docstatus"] == 1]
    return notes, pays


def test_a_partial_refund_then_the_rest_books_two_returns_two_credit_notes_and_two_payments(st: Stack) -> None:
    order, pi = paid_order(st)
    first = dashboard_refund(st, pi, amount=1001, reason="requested_by_customer")
    wait_for("partially refunded", lambda: order_status(st, order) == "Partially Refunded" and booked(st, first["id"])[1], st)
    rest = dashboard_refund(st, pi)  # everything left: 3300 - 1001
    wait_for("refunded", lambda: order_status(st, order) == "Refunded" and booked(st, rest["id"])[1], st)
    assert rest["amount"] == 2299
    for refund, text in ((first, "10.01"), (rest, "22.99")):
        ret = sales_return(st, refund["id"])
        assert ret is not None and ret["StatusKey"] == "Completed" and ret["RefundTransactionID"] == refund["id"]
        assert Decimal(str(ret["RefundAmount"])) == Decimal(text)
        notes, pays = booked(st, refund["id"])
        assert len(notes) == 1 and len(pays) == 1
        assert Decimal(str(notes[0]["grand_total"])) == -Decimal(text) and notes[0]["is_return"] == 1
        assert pays[0]["payment_type"] == "Pay" and Decimal(str(pays[0]["paid_amount"])) == Decimal(text)
        assert Decimal(str(notes[0]["outstanding_amount"])) == 0  # the Pay entry settled the credit note
        # against the invoice the order flow made and its payment paid (CB_ERP_INVOICE_ON=paid): still Paid
        [invoice] = [d for d in erp_docs(st, "Sales Invoice", "po_no", order.key) if d["docstatus"] == 1]
        assert notes[0]["return_against"] == invoice["name"] and invoice["status"] == "Paid"
    assert len(returns_of(st, order)) == 2
    invoice = erp_docs(st, "Sales Invoice", "po_no", order.key)
    assert len(invoice) == 1 and Decimal(str(invoice[0]["grand_total"])) == Decimal("33.00")


def test_a_full_dashboard_refund_in_a_three_decimal_currency_is_exact(st: Stack) -> None:
    order, pi = paid_order(st, "paid (KWD)")
    refund = dashboard_refund(st, pi)
    wait_for("refunded", lambda: order_status(st, order) == "Refunded" and booked(st, refund["id"])[1], st)
    ret = sales_return(st, refund["id"])
    assert ret is not None and Decimal(str(ret["RefundAmount"])) == Decimal("12.750")
    notes, pays = booked(st, refund["id"])
    assert Decimal(str(notes[0]["grand_total"])) == Decimal("-12.75")
    assert Decimal(str(pays[0]["paid_amount"])) == Decimal("12.75")


def test_duplicated_and_reordered_refund_events_book_each_refund_once(st: Stack) -> None:
    order, pi = paid_order(st, "paid (JPY)")
    st.traffic.stripe.post("/_sandbox/webhooks/options",
                           json={"shuffle": True, "shuffle_window_ms": 400, "duplicate_probability": 1.0, "seed": 12})
    try:
        refund = dashboard_refund(st, pi, amount=500)
        wait_for("partially refunded", lambda: booked(st, refund["id"])[1], st)
        # the charge.refunded event again, then refund.created again (reordered, as Stripe may deliver them)
        events = st.traffic.stripe.get("/v1/events", params={"limit": 50}).json()["data"]
        mine = [e for e in events if e["data"]["object"].get("id") in (refund["id"], refund["charge"])
                and e["type"] in ("charge.refunded", "refund.created")]
        for event in sorted(mine, key=lambda e: e["type"] != "charge.refunded"):
            st.traffic.stripe.post(f"/_sandbox/events/{event['id']}/resend").raise_for_status()
        st.traffic.stripe.post("/_sandbox/webhooks/drain", json={"timeout": 10})
        time.sleep(3)
    finally:
        st.traffic.stripe.post("/_sandbox/webhooks/options", json={"shuffle": False, "duplicate_probability": 0.0})
    assert order_status(st, order) == "Partially Refunded"
    assert len(returns_of(st, order)) == 1
    notes, pays = booked(st, refund["id"])
    assert len(notes) == 1 and len(pays) == 1 and Decimal(str(pays[0]["paid_amount"])) == Decimal("500")
    assert st.container.dead_letters.count_open() == 0 or all(
        "refund" not in e["run_id"] for e in st.container.dead_letters.list())


def test_a_pending_refund_that_fails_is_booked_then_reversed_with_a_dead_letter_entry(st: Stack) -> None:
    order, pi = paid_order(st)
    refund = dashboard_refund(st, pi, amount=700, status="pending")
    wait_for("the pending refund noted", lambda: booked(st, refund["id"])[0] and sales_return(st, refund["id"]), st)
    ret = sales_return(st, refund["id"])
    assert ret is not None and ret["StatusKey"] == "Pending"
    assert order_status(st, order) == "Partially Refunded" and booked(st, refund["id"])[1] == []
    before = {e["id"] for e in st.container.dead_letters.list()}
    st.traffic.stripe.post(f"/_sandbox/refunds/{refund['id']}/fail",
                           json={"failure_reason": "expired_or_canceled_card"}).raise_for_status()
    entry = wait_for("the dead-letter entry", lambda: next(
        (e for e in st.container.dead_letters.list() if e["id"] not in before and refund["id"] in e["error_message"]),
        None), st)
    assert "expired_or_canceled_card" in entry["error_message"] and entry["error_code"] == "upstream_rejected"
    assert "another way" in entry["suggested_fix"]  # the fix for that failure reason
    # the engine alerts after it stored the entry and the run's status: wait for it, do not race it
    wait_for("an alert for the entry", lambda: any(
        m.kind == "dlq.new" and any(a.details.get("dlq_id") == entry["id"] for a in m.alerts)
        for m in ALERTS[id(st)].messages), st)
    wait_for("the books reversed", lambda: booked(st, refund["id"]) == ([], []), st)
    ret = sales_return(st, refund["id"])
    assert ret is not None and ret["StatusKey"] == "Void"
    wait_for("paid again", lambda: order_status(st, order) == "Full Payment Received", st)


def test_a_refund_the_bridge_made_for_a_voided_order_makes_no_return(st: Stack) -> None:
    order, pi = paid_order(st)
    r = st.traffic.clarity.patch(f"{CLARITY_API}/Ordering/SalesOrder/Void/{order.order_id}", headers=st.traffic.session)
    assert r.status_code == 200
    refunds = wait_for("the bridge's refund", lambda: st.traffic.stripe.get(
        "/v1/refunds", params={"payment_intent": pi["id"]}).json()["data"], st)
    assert refunds[0]["metadata"].get("bridge") == "commerce-bridge"
    time.sleep(4)  # the refund's events have been processed
    assert returns_of(st, order) == [] and booked(st, refunds[0]["id"]) == ([], [])
    assert order_status(st, order) == "Void"
