"""Manual capture on a partial shipment, end to end against the sandbox peers (issue 4, point 9).

The warehouse ships an order partly the way CEF shows it (the missing units stay on the items as
``QuantityBackOrdered``, then ``PATCH Ship``): the bridge captures only the shipped part, Stripe
releases the rest, Clarity shows the partial payment and the balance due, and the ERP gets a payment
entry for the captured amount. A complete shipment still captures everything. SQLite, and PostgreSQL
when ``CB_TEST_DATABASE_URL`` is set (the ``make_stack`` fixture of test_order_to_cash.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import stripe

from commerce_bridge.domain.money import Money
from commerce_bridge.entrypoints.demo_order_to_cash import STRIPE_KEY, Stack
from commerce_bridge.mapping.shipment import capture_amount_for_shipment
from commerce_bridge.sandbox.traffic import CLARITY_API
from tests.e2e import test_order_to_cash as order_to_cash
from tests.e2e.test_order_to_cash import erp_count, intents_for

pytestmark = pytest.mark.slow
make_stack = order_to_cash.make_stack  # the fixture: SQLite, and PostgreSQL when CB_TEST_DATABASE_URL is set

# 2 x 12.50 + 3 x 8.00 = 49.00 of lines, 5.00 shipping, 2.40 tax, 3.00 discount: 53.40 in all
LINES = [{"Sku": "SKU-TEE", "Quantity": 2, "UnitPrice": "12.50"}, {"Sku": "SKU-MUG", "Quantity": 3, "UnitPrice": "8.00"}]
EXTRAS = {"Shipping": "5.00", "Tax": "2.40", "Discount": "3.00"}


def _place_manual_order(st: Stack, n: int) -> dict[str, Any]:
    r = st.traffic.clarity.post("/_sandbox/checkout", json={
        "Email": f"partial{n}@example.com", "FirstName": "Part", "LastName": f"Ship{n}",
        "BillingAddress": {"Street1": f"{n} Dock St", "City": "Austin", "RegionCode": "TX", "PostalCode": "78701",
                           "CountryCode": "US"},
        "Lines": LINES, "Currency": "USD", **EXTRAS, "PaymentMode": "integration", "PaymentMethod": "pm_card_visa",
        "Attributes": {"CaptureMethod": "manual"}})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _order(st: Stack, order_id: int, parse_float: Callable[[str], Any] = Decimal) -> dict[str, Any]:
    """The full order, amounts as exact decimals (or as text, to send them back)."""
    r = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order_id}", headers=st.traffic.session)
    assert r.status_code == 200, r.text
    return dict(json.loads(r.content, parse_float=parse_float))


def _wait(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _authorised(st: Stack, key: str) -> dict[str, Any]:
    return dict(_wait(f"{key} authorised", lambda: next(
        (pi for pi in intents_for(st, key) if pi["status"] == "requires_capture"), None)))


def _ship(st: Stack, order_id: int, backordered: dict[str, int]) -> None:
    """The warehouse: pick ticket, the missing units back-ordered on their items, then Ship."""
    api, session = st.traffic.clarity, st.traffic.session
    assert api.patch(f"{CLARITY_API}/Ordering/SalesOrder/CreatePickTicket/{order_id}", headers=session).status_code == 200
    if backordered:
        items = []
        for item in _order(st, order_id, parse_float=str)["SalesItems"]:
            waiting = backordered.get(item["Sku"], 0)
            ordered = int(Decimal(item["TotalQuantity"]))  # stays the same: the order keeps its value
            items.append({**item, "Quantity": ordered - waiting, "QuantityBackOrdered": waiting})
        r = api.put(f"{CLARITY_API}/Ordering/SalesOrder/Update", headers=session,
                    json={"ID": order_id, "SalesItems": items})
        assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text
    r = api.patch(f"{CLARITY_API}/Ordering/SalesOrder/Ship/{order_id}", headers=session)
    assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text


def _erp_payment(st: Stack, charge_id: str) -> dict[str, Any]:
    _wait("the ERP payment entry", lambda: erp_count(st, "Payment Entry", "reference_no", charge_id))
    rows = st.traffic.erp.get("/api/resource/Payment Entry", params={
        "filters": f'[["reference_no", "=", "{charge_id}"]]', "fields": '["name", "paid_amount", "reference_no"]'})
    data = rows.json()["data"]
    assert len(data) == 1, data
    return dict(data[0])


def _stripe(st: Stack) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": st.urls["Stripe emulator"]})


def test_partial_shipment_captures_only_the_shipped_part(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    placed = _place_manual_order(st, 1)
    order_id, key = placed["OrderID"], placed["OrderKey"]
    pi = _authorised(st, key)
    assert pi["amount"] == 5340 and pi["capture_method"] == "manual"

    _ship(st, order_id, {"SKU-MUG": 2})  # 2 of the 3 mugs are back-ordered

    shipped = _order(st, order_id)
    assert shipped["StatusKey"] == "Shipped" and shipped["Totals"]["Total"] == Decimal("53.40")
    # 53.40 x (25.00 + 8.00) / 49.00 = 35.963... -> 35.96: the shipped lines plus 33/49 of shipping, tax, discount
    expected = capture_amount_for_shipment(shipped, Money(5340, "USD"))
    assert expected.amount == Money(3596, "USD") and expected.partial

    client = _stripe(st)
    captured = _wait("the capture", lambda: (p := client.v1.payment_intents.retrieve(
        pi["id"], params={"expand": ["latest_charge"]})).status == "succeeded" and p)
    assert captured.amount == 5340 and captured.amount_received == 3596 and captured.amount_capturable == 0
    assert captured.latest_charge.amount_captured == 3596
    categories = sorted(t.reporting_category for t in client.v1.balance_transactions.list(
        params={"source": captured.latest_charge.id}).data)
    assert categories == ["charge", "partial_capture_reversal"], "Stripe released the rest"

    entry = _erp_payment(st, captured.latest_charge.id)
    assert Decimal(str(entry["paid_amount"])) == Decimal("35.96")
    assert erp_count(st, "Sales Order", "po_no", key) == 1
    # Clarity: the payment is the captured amount; the rest stays due (not marked Full Payment Received)
    paid = _wait("the partial payment in Clarity",
                 lambda: (o := _order(st, order_id)).get("StatusKey") == "Partial Payment Received" and o)
    assert paid["BalanceDue"] == Decimal("17.44")
    time.sleep(2)  # the payment run has ended (its last step is the ERP entry): nothing overwrote the status
    assert _order(st, order_id)["StatusKey"] == "Partial Payment Received"
    assert len(intents_for(st, key)) == 1
    assert st.container.dead_letters.count_open() == 0


def test_complete_shipment_still_captures_everything(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    placed = _place_manual_order(st, 2)
    order_id, key = placed["OrderID"], placed["OrderKey"]
    pi = _authorised(st, key)

    _ship(st, order_id, {})

    captured = _wait("the capture", lambda: (p := _stripe(st).v1.payment_intents.retrieve(
        pi["id"], params={"expand": ["latest_charge"]})).status == "succeeded" and p)
    assert captured.amount_received == captured.amount == 5340
    entry = _erp_payment(st, captured.latest_charge.id)
    assert Decimal(str(entry["paid_amount"])) == Decimal("53.40")
    paid = _wait("the full payment in Clarity",
                 lambda: (o := _order(st, order_id)).get("StatusKey") == "Full Payment Received" and o)
    assert Decimal(paid.get("BalanceDue", 0)) == 0
    assert st.container.dead_letters.count_open() == 0
