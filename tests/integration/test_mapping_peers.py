"""The mappings against the real sandbox peers: a Clarity order -> Stripe (official SDK) -> Clarity -> ERPNext.

The peers run as real servers on free loopback ports (PeerServer); nothing is mocked. This checks that
the payloads the mappings build are accepted as they are and that the totals survive every hop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe

from commerce_bridge.domain.money import Money
from commerce_bridge.mapping.clarity import add_payment_body, order_from_clarity
from commerce_bridge.mapping.erp import erp_customer, erp_payment_entry, erp_sales_order, money_from_erp
from commerce_bridge.mapping.metadata import order_ref_from_metadata
from commerce_bridge.mapping.money import money_to_decimal
from commerce_bridge.mapping.status import StatusMap
from commerce_bridge.mapping.stripe import customer_params, payment_intent_params, payment_summary_from_stripe
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe

CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"


class Peers:
    def __init__(self, clarity: httpx.Client, erp: httpx.Client, stripe_client: stripe.StripeClient) -> None:
        self.clarity = clarity
        self.erp = erp
        self.stripe = stripe_client


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with (PeerServer(build_clarity()) as clarity_srv, PeerServer(build_erp(api_key="k", api_secret="s")) as erp_srv,
          PeerServer(build_stripe()) as stripe_srv,
          httpx.Client(base_url=clarity_srv.url, timeout=10) as clarity,
          httpx.Client(base_url=erp_srv.url, timeout=10, headers={"Authorization": "token k:s"}) as erp):
        login = clarity.post(CLARITY_BASE + "/auth/identity", json={"UserName": DEFAULT_USER,
                                                                   "Password": DEFAULT_PASSWORD})
        assert login.status_code == 200, login.text
        yield Peers(clarity, erp, stripe.StripeClient("sk_test_emulator", base_addresses={"api": stripe_srv.url}))


def _json(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return json.loads(response.content, parse_float=Decimal)


CASES = [
    ("USD", [("SKU-U1", 2, "12.50"), ("SKU-U2", 1, "3.99")], "5.00", "1.20", "2.00", 3319),
    ("JPY", [("SKU-J1", 3, "1500")], "500", "0", "100", 4900),
    ("KWD", [("SKU-K1", 2, "1.250"), ("SKU-K2", 1, "0.990")], "0.500", "0", "0.250", 3740),
    ("ISK", [("SKU-I1", 1, "2500")], "0", "0", "0", 2500),
]


@pytest.mark.parametrize(("currency", "lines", "shipping", "tax", "discount", "total_minor"), CASES)
def test_order_to_cash_payloads_are_accepted_by_every_peer(
    peers: Peers, currency: str, lines: list[tuple[str, int, str]], shipping: str, tax: str, discount: str,
    total_minor: int,
) -> None:
    checkout = _json(peers.clarity.post("/_sandbox/checkout", json={
        "Email": f"Ann.{currency}@Example.com", "FirstName": "Ann", "LastName": "Lee", "Phone": "+1 512 555 0100",
        "BillingAddress": {"Street1": "1 Main St", "City": "Austin", "RegionCode": "TX", "PostalCode": "78701",
                           "CountryCode": "US"},
        "Lines": [{"Sku": sku, "Quantity": qty, "UnitPrice": price} for sku, qty, price in lines],
        "Currency": currency, "Shipping": shipping, "Tax": tax, "Discount": discount,
        "PaymentMethod": "pm_card_visa"}))
    raw = _json(peers.clarity.get(f"{CLARITY_BASE}/Ordering/SalesOrder/ID/{checkout['OrderID']}"))
    order = order_from_clarity(raw)
    assert order.total == Money(total_minor, currency) and order.status == "Pending"

    # Stripe, through the official SDK, with the params exactly as mapped
    customer = peers.stripe.v1.customers.create(params=customer_params(order.customer))  # type: ignore[arg-type]
    intent = peers.stripe.v1.payment_intents.create(
        params=payment_intent_params(order, customer_id=customer.id))  # type: ignore[arg-type]
    fetched = peers.stripe.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    summary = payment_summary_from_stripe(fetched.to_dict())
    assert summary.status == "succeeded" and summary.captured and summary.charge_id.startswith("ch_")
    assert summary.amount_received == order.total and summary.customer_id == customer.id
    ref = order_ref_from_metadata(summary.metadata)
    assert ref is not None and (ref.order_id, ref.order_key) == (order.external_id, order.key)
    target = StatusMap.default().clarity_status_for("payment_intent", summary.status)
    assert target == "Full Payment Received" and StatusMap.default().should_update_clarity(order.status, target)

    # back to Clarity: AddPayment with the charge id
    added = _json(peers.clarity.patch(f"{CLARITY_BASE}/Ordering/SalesOrder/AddPayment",
                                      json=add_payment_body(order.external_id, summary)))
    assert added["ActionSucceeded"] is True, added
    paid = order_from_clarity(_json(peers.clarity.get(f"{CLARITY_BASE}/Ordering/SalesOrder/ID/{order.external_id}")))
    assert paid.status == target and paid.balance_due == Money(0, currency) and paid.total == order.total

    # ERPNext: customer, items, sales order, payment entry
    erp_name = _json(peers.erp.post("/api/resource/Customer", json=erp_customer(order.customer)))["data"]["name"]
    for line in order.lines:
        item = peers.erp.post("/api/resource/Item", json={"item_code": line.sku})
        assert item.status_code in (200, 409), item.text
    sales_order = _json(peers.erp.post("/api/resource/Sales Order", json=erp_sales_order(
        order, customer_name=erp_name, delivery_date=date(2026, 12, 1), submit=True)))["data"]
    assert money_from_erp(sales_order["grand_total"], currency) == order.total
    assert sales_order["po_no"] == order.key
    entry = _json(peers.erp.post("/api/resource/Payment Entry", json=erp_payment_entry(
        summary, customer_name=erp_name, paid_to_account="Stripe", posting_date=date(2026, 11, 27),
        sales_order_name=sales_order["name"], submit=True)))["data"]
    assert Decimal(entry["paid_amount"]) == money_to_decimal(order.total)
    advanced = _json(peers.erp.get(f"/api/resource/Sales Order/{sales_order['name']}"))["data"]
    assert money_from_erp(advanced["advance_paid"], currency) == order.total
