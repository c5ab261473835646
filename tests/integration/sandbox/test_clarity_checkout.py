"""The sandbox storefront checkout in both payment modes, against real HTTP peers."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import peer_fixtures
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER, build_app
from commerce_bridge.sandbox.runner import PeerServer

CLARITY_BASE = peer_fixtures.CLARITY_BASE
clarity_api = peer_fixtures.clarity_api
clarity_server = peer_fixtures.clarity_server

CART: dict[str, Any] = {
    "Email": "ann@example.com",
    "FirstName": "Ann",
    "LastName": "Lee",
    "Currency": "USD",
    "BillingAddress": {"Street1": "1 Main St", "City": "Austin", "PostalCode": "78701", "CountryCode": "US"},
    "Lines": [{"Sku": "SKU-A", "Quantity": 2, "UnitPrice": "10.25"}, {"Sku": "SKU-B", "Quantity": 1}],
    "Shipping": "5.00",
    "Tax": "1.50",
    "Discount": "2.00",
}


class StripeLikePeer:
    """A minimal real HTTP server answering ``POST /v1/payment_intents`` like Stripe test mode."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, list[str]]]] = []

        async def create(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            self.requests.append((dict(request.headers), form))
            pm = form["payment_method"][0]
            intent = {
                "id": f"pi_test_{len(self.requests)}",
                "object": "payment_intent",
                "amount": int(form["amount"][0]),
                "currency": form["currency"][0],
                "metadata": {"clarity_order_key": form["metadata[clarity_order_key]"][0]},
                "latest_charge": f"ch_test_{len(self.requests)}",
                "status": "succeeded",
            }
            if pm == "pm_card_chargeDeclined":
                return JSONResponse(
                    {
                        "error": {
                            "type": "card_error",
                            "code": "card_declined",
                            "decline_code": "generic_decline",
                            "message": "Your card was declined.",
                        }
                    },
                    status_code=402,
                )
            if pm == "pm_card_threeDSecure2Required":
                intent.update(status="requires_action", latest_charge=None)
            return JSONResponse(intent)

        self.app = Starlette(routes=[Route("/v1/payment_intents", create, methods=["POST"])])


@pytest.fixture
def stripe_peer() -> Iterator[tuple[StripeLikePeer, PeerServer]]:
    peer = StripeLikePeer()
    with PeerServer(peer.app) as server:
        yield peer, server


def _seed_product(api: httpx.Client) -> None:
    response = api.post(
        "/Products/Product/Create", json={"CustomKey": "SKU-B", "Name": "Widget B", "PriceBase": "7.00"}
    )
    assert response.json()["ActionSucceeded"] is True


def test_integration_mode_places_an_unpaid_order_with_everything_the_bridge_needs(
    clarity_server: PeerServer, clarity_api: httpx.Client
) -> None:
    _seed_product(clarity_api)
    result = httpx.post(
        clarity_server.url + "/_sandbox/checkout", json={**CART, "PaymentMethod": "pm_card_visa"}
    )
    assert result.status_code == 200, result.text
    body = result.json(parse_float=Decimal)
    assert (
        body["Succeeded"] is True and body["OrderKey"].startswith("WEB-") and body["StatusKey"] == "Pending"
    )
    order = clarity_api.get(f"/Ordering/SalesOrder/ID/{body['OrderID']}").json(parse_float=Decimal)
    assert order["CustomKey"] == body["OrderKey"] and order["CurrencyKey"] == "USD"
    assert (
        order["BillingContact"]["Email1"] == "ann@example.com" and order["ShippingContact"]["Address"]["City"]
    )
    assert [(i["Sku"], i["Quantity"], i["UnitSoldPrice"]) for i in order["SalesItems"]] == [
        ("SKU-A", 2, Decimal("10.2500")),
        ("SKU-B", 1, Decimal("7.0000")),
    ]
    assert order["SalesItems"][1]["ProductID"]  # linked to the catalogue product
    assert order["Totals"]["Total"] == Decimal("32.0000") and order["BalanceDue"] == Decimal("32.0000")
    payment = order["SalesOrderPayments"][0]["Slave"]
    assert payment["Token"] == "pm_card_visa" and payment["StatusKey"] == "No Payment Received"
    assert order["SerializableAttributes"]["StripePaymentMethodID"]["Value"] == "pm_card_visa"
    assert order["UserKey"] == "ann@example.com"  # CEF's quirk: UserKey carries the UserName
    users = clarity_api.get("/Contacts/Users", params={"Email": "ann@example.com"}).json()
    assert users["TotalCount"] == 1


def test_stripe_mode_creates_and_confirms_the_payment_intent_with_the_order_key(
    stripe_peer: tuple[StripeLikePeer, PeerServer],
) -> None:
    peer, stripe_server = stripe_peer
    app = build_app(stripe_url=stripe_server.url, stripe_api_key="sk_test_sandbox")
    with PeerServer(app) as server, httpx.Client(base_url=server.url) as client:
        result = client.post(
            "/_sandbox/checkout",
            json={
                **CART,
                "Lines": CART["Lines"][:1],
                "PaymentMode": "stripe",
                "PaymentMethod": "pm_card_visa",
            },
        ).json()
        assert result["Succeeded"] is True and result["PaymentIntentStatus"] == "succeeded"
        headers, form = peer.requests[0]
        assert headers["authorization"] == "Bearer sk_test_sandbox"
        assert headers["idempotency-key"] == f"clarity-checkout-{result['OrderKey']}"
        assert form["metadata[clarity_order_key]"] == [result["OrderKey"]]
        assert form["amount"] == ["2500"] and form["currency"] == ["usd"] and form["confirm"] == ["true"]
        client.post(
            CLARITY_BASE + "/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
        )
        order = client.get(f"{CLARITY_BASE}/Ordering/SalesOrder/ID/{result['OrderID']}").json()
        assert order["StatusKey"] == "Full Payment Received" and "BalanceDue" not in order
        assert order["PaymentTransactionID"] == result["PaymentIntentID"]
        assert order["SalesOrderPayments"][0]["Slave"]["TransactionNumber"] == result["PaymentIntentID"]

        one_line = {**CART, "Lines": CART["Lines"][:1]}
        declined = client.post(
            "/_sandbox/checkout",
            json={**one_line, "PaymentMode": "stripe", "PaymentMethod": "pm_card_chargeDeclined"},
        )
        assert declined.status_code == 402 and declined.json()["StripeError"]["code"] == "card_declined"
        assert client.get(f"{CLARITY_BASE}/Ordering/SalesOrders").json()["TotalCount"] == 1

        pending = client.post(
            "/_sandbox/checkout",
            json={**one_line, "PaymentMode": "stripe", "PaymentMethod": "pm_card_threeDSecure2Required"},
        ).json()
        assert pending["PaymentIntentStatus"] == "requires_action" and pending["StatusKey"] == "Pending"


def test_checkout_rejects_bad_carts(clarity_server: PeerServer) -> None:
    with httpx.Client(base_url=clarity_server.url) as client:
        assert client.post("/_sandbox/checkout", json={**CART, "Lines": []}).status_code == 400
        unknown = client.post("/_sandbox/checkout", json={**CART, "Lines": [{"Sku": "NOPE", "Quantity": 1}]})
        assert unknown.status_code == 400 and "no price" in unknown.json()["ErrorMessages"][0]
        no_stripe = client.post(
            "/_sandbox/checkout", json={**CART, "Lines": CART["Lines"][:1], "PaymentMode": "stripe"}
        )
        assert no_stripe.status_code == 400 and "stripe_url" in no_stripe.json()["ErrorMessages"][0]
        assert client.post("/_sandbox/checkout", json={**CART, "Email": ""}).status_code == 400
