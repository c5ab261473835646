"""Products and prices both ways in a running bridge (issue 14, point 4), on SQLite and PostgreSQL, with
CB_PRODUCT_SYNC on: a change made in Clarity, Stripe or ERPNext reaches the two others through the Clarity products
poller, the ERPNext items poller (Items and Item Prices of the selling list), the Stripe webhooks and the workflows
(`clarity.product_changed`, `erp.item_changed`, `stripe.product_changed`, step `product.sync`). The syncer's rules
are tested against the peers in tests/integration/test_product_sync_peers.py; the pollers' cycles in
tests/unit/test_product_change_events.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow
POLL_S = 0.5
PRICE_LIST = "Standard Selling"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"products-{request.param}"),
                  clarity_products_poll_interval_s=POLL_S, erp_items_poll_interval_s=POLL_S,
                  product_sync=True, erp_selling_price_list=PRICE_LIST) as stack:
        cursors = stack.container.cursors
        assert cursors is not None
        # the pollers' first cycles start from now (what exists before is the backfill's): wait for them
        wait_for("the product pollers' first cycles", lambda: all(
            cursors.get(name) for name in ("clarity.products", "erp.items", "erp.item_prices")), stack, 30)
        yield stack


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:8].upper()}"


# ---- the three systems, as the test reads and edits them ---------------------------------------------------

def clarity_product(st: Stack, code: str) -> dict[str, Any] | None:
    found = _ok(st.traffic.clarity.get(f"{CLARITY_API}/Products/Products", headers=st.traffic.session, params={
        "CustomKey": code, "CustomKeyStrict": "true"}))["Results"]
    if not found:
        return None
    return dict(_ok(st.traffic.clarity.get(f"{CLARITY_API}/Products/Product/ID/{found[0]['ID']}",
                                           headers=st.traffic.session)))


def erp_item(st: Stack, code: str) -> dict[str, Any] | None:
    r = st.traffic.erp.get(f"/api/resource/Item/{code}")
    return dict(r.json()["data"]) if r.status_code == 200 else None


def erp_price(st: Stack, code: str) -> dict[str, Any] | None:
    rows = _ok(st.traffic.erp.get("/api/resource/Item Price", params={
        "filters": f'[["item_code", "=", "{code}"], ["price_list", "=", "{PRICE_LIST}"]]', "fields": '["*"]'}))["data"]
    return dict(rows[0]) if rows else None


def stripe_product(st: Stack, code: str) -> dict[str, Any] | None:
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"starting_after": after} if after else {})}
        page = _ok(st.traffic.stripe.get("/v1/products", params=params))
        for product in page["data"]:
            if product.get("metadata", {}).get("item_code") == code:
                return dict(product)
        if not page.get("has_more") or not page["data"]:
            return None
        after = page["data"][-1]["id"]


def stripe_amounts(st: Stack, product_id: str) -> list[tuple[str, int]]:
    """(currency, unit_amount) of the product's active prices."""
    prices = _ok(st.traffic.stripe.get("/v1/prices", params={"product": product_id, "active": "true",
                                                              "limit": 100}))["data"]
    return sorted((p["currency"].upper(), int(p["unit_amount"])) for p in prices)


def views(st: Stack, code: str) -> dict[str, tuple[str, int | None]] | None:
    """(name, USD price in cents) of the product as each system holds it; None while one lacks it."""
    product, item, price, prod = clarity_product(st, code), erp_item(st, code), erp_price(st, code), \
        stripe_product(st, code)
    if product is None or item is None or price is None or prod is None:
        return None
    amounts = dict(stripe_amounts(st, prod["id"]))
    return {"clarity": (product["Name"], int(Decimal(str(product["PriceBase"])) * 100)),
            "erp": (item["item_name"], int(Decimal(str(price["price_list_rate"])) * 100)),
            "stripe": (prod["name"], amounts.get("USD"))}


def agreed(st: Stack, code: str, name: str, cents: int) -> bool:
    seen = views(st, code)
    return seen is not None and set(seen.values()) == {(name, cents)}


def new_clarity_product(st: Stack, name: str = "Blue Widget", price: str = "12.50") -> str:
    code = sku()
    made = _ok(st.traffic.clarity.post(f"{CLARITY_API}/Products/Product/Create", headers=st.traffic.session, json={
        "ID": 0, "CustomKey": code, "Name": name, "Description": "A widget", "Active": True, "UnitOfMeasure": "Nos",
        "PriceBase": price}))
    assert made["ActionSucceeded"], made
    wait_for("the Clarity product in ERPNext and Stripe", lambda: agreed(st, code, name,
                                                                         int(Decimal(price) * 100)), st, 60)
    return code


# ---- the tests ----------------------------------------------------------------------------------------------

def test_a_price_changed_in_erpnext_reaches_clarity_and_stripe(st: Stack) -> None:
    code = new_clarity_product(st)
    price = erp_price(st, code)
    assert price is not None
    _ok(st.traffic.erp.put(f"/api/resource/Item Price/{price['name']}", json={"price_list_rate": 14.75}))
    wait_for("the ERPNext price everywhere", lambda: agreed(st, code, "Blue Widget", 1475), st, 30)
    prod = stripe_product(st, code)
    assert prod is not None and stripe_amounts(st, prod["id"]) == [("USD", 1475)]  # the old Price is inactive


def test_a_name_changed_in_clarity_reaches_erpnext_and_stripe(st: Stack) -> None:
    code = new_clarity_product(st)
    product = clarity_product(st, code)
    assert product is not None
    body = {k: v for k, v in product.items() if not isinstance(v, list)}
    _ok(st.traffic.clarity.put(f"{CLARITY_API}/Products/Product/Update", headers=st.traffic.session,
                               json={**body, "Name": "Green Widget"}))
    wait_for("the Clarity name everywhere", lambda: agreed(st, code, "Green Widget", 1250), st, 30)


def test_a_product_created_in_stripe_with_an_item_code_appears_in_clarity_and_erpnext(st: Stack) -> None:
    code = sku()
    prod = _ok(st.traffic.stripe.post("/v1/products", data={"name": "Red Widget", "metadata[item_code]": code}))
    _ok(st.traffic.stripe.post("/v1/prices", data={"product": prod["id"], "currency": "usd", "unit_amount": 990}))
    wait_for("the Stripe product in Clarity and ERPNext", lambda: agreed(st, code, "Red Widget", 990), st, 60)
