"""CB_ERP_INVOICE_ON=shipped end to end (issue 13, point 1): the Sales Invoice is made when the order ships.

Until then the Payment Entry is an advance on the Sales Order; the invoice made at shipping takes it
(ERPNext's advances), and a payment made after the invoice (a manual capture at shipping) is allocated to it.
Either way the invoice ends Paid with the Payment Entry allocated to it. A refund before shipping makes the
invoice early, with the advance. One sandbox stack per database for the module: SQLite, and PostgreSQL when
``CB_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from tests.e2e.test_partial_capture import _authorised, _place_manual_order, _ship
from tests.e2e.test_refunds_from_stripe import booked, dashboard_refund, erp_docs, order_status, paid_order
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"shipped-{request.param}"),
                  erp_invoice_on="shipped") as stack:
        engine = stack.container.engine
        assert engine is not None and engine.workflow_vars["clarity.order_shipped"]["invoice_on"] == "shipped"
        yield stack


def invoices(st: Stack, key: str) -> list[dict[str, Any]]:
    return [d for d in erp_docs(st, "Sales Invoice", "po_no", key) if d["docstatus"] == 1 and not d["is_return"]]


def entry(st: Stack, charge_id: str) -> dict[str, Any]:
    [name] = [d["name"] for d in erp_docs(st, "Payment Entry", "reference_no", charge_id) if d["docstatus"] == 1]
    return dict(st.traffic.erp.get(f"/api/resource/Payment Entry/{name}").json()["data"])


def paid_invoice(st: Stack, key: str) -> dict[str, Any]:
    [invoice] = wait_for(f"{key}'s invoice Paid", lambda: (found := invoices(st, key)) and all(
        d["status"] == "Paid" for d in found) and found, st, 90)
    assert Decimal(str(invoice["outstanding_amount"])) == 0
    return dict(invoice)


def test_a_paid_order_is_billed_when_it_ships_and_the_invoice_takes_the_advance(st: Stack) -> None:
    order, pi = paid_order(st)
    charge = pi["latest_charge"]
    wait_for("the payment entry, submitted", lambda: [  # created as a draft, then submitted: wait for both
        d for d in erp_docs(st, "Payment Entry", "reference_no", charge) if d["docstatus"] == 1], st)
    advance = entry(st, charge)
    assert [(r["reference_doctype"], Decimal(str(r["allocated_amount"]))) for r in advance["references"]] == [
        ("Sales Order", Decimal("33.00"))]  # an advance: not billed yet
    assert invoices(st, order.key) == []

    assert order.order_id is not None
    _ship(st, order.order_id, {})

    invoice = paid_invoice(st, order.key)
    assert Decimal(str(invoice["grand_total"])) == Decimal("33.00")
    [row] = entry(st, charge)["references"]
    assert (row["reference_doctype"], row["reference_name"], Decimal(str(row["allocated_amount"]))) == (
        "Sales Invoice", invoice["name"], Decimal("33.00"))
    assert st.container.dead_letters.count_open() == 0


def test_a_manual_capture_order_captured_at_shipping_ends_the_same(st: Stack) -> None:
    placed = _place_manual_order(st, 31)
    order_id, key = placed["OrderID"], placed["OrderKey"]
    pi = _authorised(st, key)

    _ship(st, order_id, {})  # captures; the payment entry comes after the invoice (payment_intent.succeeded)

    invoice = paid_invoice(st, key)
    assert Decimal(str(invoice["grand_total"])) == Decimal("53.40")
    captured = st.traffic.stripe.get(f"/v1/payment_intents/{pi['id']}").json()
    [row] = entry(st, captured["latest_charge"])["references"]
    assert (row["reference_doctype"], row["reference_name"]) == ("Sales Invoice", invoice["name"])
    assert len(erp_docs(st, "Sales Invoice", "po_no", key)) == 1
    assert st.container.dead_letters.count_open() == 0


def test_a_refund_before_shipping_bills_the_order_with_its_advance(st: Stack) -> None:
    order, pi = paid_order(st)
    refund = dashboard_refund(st, pi, amount=1001, reason="requested_by_customer")
    wait_for("partially refunded", lambda: order_status(st, order) == "Partially Refunded"
             and booked(st, refund["id"])[1], st)
    invoice = paid_invoice(st, order.key)  # made by the refund flow, before shipping, with the advance
    notes, _ = booked(st, refund["id"])
    assert notes[0]["return_against"] == invoice["name"] and Decimal(str(notes[0]["outstanding_amount"])) == 0
    [row] = entry(st, pi["latest_charge"])["references"]
    assert (row["reference_doctype"], row["reference_name"]) == ("Sales Invoice", invoice["name"])

    assert order.order_id is not None
    _ship(st, order.order_id, {})
    wait_for("shipped", lambda: order_status(st, order) == "Shipped", st)
    time.sleep(4)  # the shipping run has ended: it found the invoice the refund made
    assert [d["name"] for d in invoices(st, order.key)] == [invoice["name"]]
    assert paid_invoice(st, order.key)["name"] == invoice["name"]
    assert st.container.dead_letters.count_open() == 0
