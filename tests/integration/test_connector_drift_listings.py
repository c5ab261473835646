"""The listings the drift check reads, through the real connectors against the sandbox peers: Stripe's charges,
refunds (charge expanded) and disputes by ``created`` window, every page; Clarity's orders and returns changed since
a time (``ModifiedSince``, by ID, 1-based pages) and found by CustomKeys or IDs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.sandbox.runner import PeerServer
from tests.integration.test_connector_clarity import checkout, make_gateway
from tests.integration.test_connector_clarity_returns import clarity, operator_return, receiver  # noqa: F401


def paid(gw: StripeSdkGateway, n: int) -> dict[str, Any]:
    return gw.create_payment_intent({"amount": 1000 + n, "currency": "usd", "payment_method": "pm_card_visa",
                                     "confirm": True, "payment_method_types": ["card"],
                                     "metadata": {"clarity_order_key": f"WEB-{n}"}}, idempotency_key=f"drift:{n}")


def test_stripe_listings_page_through_the_created_window(stripe_base: str) -> None:
    gw = StripeSdkGateway(build_stripe_client("sk_test_drift", api_base=stripe_base, timeout_s=10))
    start = int(time.time()) - 1
    intents = [paid(gw, n) for n in range(5)]
    charges = [str(pi["latest_charge"]) for pi in intents]
    gw.create_refund({"charge": charges[0], "amount": 300}, idempotency_key="drift:r1")
    gw.create_refund({"charge": charges[1]}, idempotency_key="drift:r2")
    r = httpx.post(f"{stripe_base}/_sandbox/charges/{charges[2]}/dispute", json={"reason": "fraudulent"})
    assert r.status_code == 200, r.text

    pages = list(gw.list_charges(created_gte=start, page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [c for p in pages for c in p]
    assert sorted(c["id"] for c in listed) == sorted(charges)
    assert {c["metadata"]["clarity_order_key"] for c in listed} == {f"WEB-{n}" for n in range(5)}
    assert list(gw.list_charges(created_gte=start + 3600)) == []
    assert list(gw.list_charges(created_gte=start, created_lte=start - 1)) == []

    refunds = [r for p in gw.list_all_refunds(created_gte=start, page_size=1) for r in p]
    assert sorted(r["amount"] for r in refunds) == [300, 1001]
    assert all(isinstance(r["charge"], dict) and r["charge"]["metadata"]["clarity_order_key"] for r in refunds)

    [dispute] = [d for p in gw.list_disputes(created_gte=start) for d in p]
    assert dispute["charge"] == charges[2] and dispute["balance_transactions"][0]["amount"] < 0


def test_clarity_changed_orders_and_returns_page_by_id_and_are_found_by_key_or_id(clarity: PeerServer) -> None:  # noqa: F811
    gw = make_gateway(clarity, page_size=2)
    since = datetime.now(UTC) - timedelta(seconds=5)
    made = [checkout(clarity, email=f"d{i}@example.com") for i in range(3)]
    pages = list(gw.orders_changed(since, page_size=2))
    assert [len(p) for p in pages] == [2, 1]
    rows = [o for p in pages for o in p]
    assert [o["ID"] for o in rows] == [m["OrderID"] for m in made]
    assert all(o["CustomKey"] and o["Totals"]["Total"] and o["CurrencyKey"] == "USD" for o in rows)
    assert list(gw.orders_changed(since, until=since - timedelta(seconds=1))) == []
    assert list(gw.orders_changed(datetime.now(UTC) + timedelta(hours=1))) == []

    found = gw.find_orders(keys=[made[0]["OrderKey"], "WEB-NOPE"])
    assert [o["ID"] for o in found] == [made[0]["OrderID"]]
    assert sorted(o["ID"] for o in gw.find_orders(ids=[made[1]["OrderID"], made[2]["OrderID"]])) == [
        made[1]["OrderID"], made[2]["OrderID"]]

    returns = [operator_return(clarity, m["OrderID"], CustomKey=f"RET-{i}") for i, m in enumerate(made[:2])]
    listed = [r for p in gw.returns_changed(since, page_size=1) for r in p]
    assert [r["ID"] for r in listed] == [r["ID"] for r in returns]
    assert [r["ID"] for r in gw.find_returns(keys=["RET-1"])] == [returns[1]["ID"]]
    assert [r["CustomKey"] for r in gw.find_returns(ids=[returns[0]["ID"]])] == ["RET-0"]
