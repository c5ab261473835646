"""``ProductSyncer`` against the sandbox peers (Clarity simulator, Stripe emulator, ERPNext simulator) and our
identity map and cursor store on SQLite and PostgreSQL: a product made where it is missing, a price changed in
ERPNext becoming a new Stripe Price with the same lookup_key, a name changed in Stripe reaching ERPNext and
Clarity, a second sync writing nothing, ``quick`` on an echo reading once, a dry run writing nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge.connectors.clarity.products import ClarityProductGateway
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.connectors.stripe.gateway import build_stripe_client
from commerce_bridge.connectors.stripe.products import StripeProductGateway
from commerce_bridge.errors import ValidationError
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.services.product_sync import ProductSyncer
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap
from tests.support.sync_peers import ERP_KEY, ERP_SECRET, erp_doc, sync_peer_fixtures

STRIPE_KEY = "sk_test_product_sync"
peers, clarity_api, erp_api, stripe_api = sync_peer_fixtures(STRIPE_KEY)


class Counting(httpx.HTTPTransport):
    """A real HTTP transport that records each request it sends (what the sync sent, not what it meant to)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


@pytest.fixture
def syncer(peers: dict[str, str], engine: Engine) -> Iterator[ProductSyncer]:
    clarity = ClarityProductGateway(peers["clarity"], DEFAULT_USER, DEFAULT_PASSWORD,
                                    cursor_store=SqlCursorStore(engine))
    erp = HttpErpGateway(peers["erp"], ERP_KEY, ERP_SECRET)
    stripe = StripeProductGateway(build_stripe_client(STRIPE_KEY, api_base=peers["stripe"], timeout_s=10))
    yield ProductSyncer(clarity=clarity, stripe=stripe, erp=erp, identity=SqlIdentityMap(engine),
                        snapshots=SqlCursorStore(engine), currency="USD", price_list="Standard Selling")
    clarity.close()
    erp.close()


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:8]}"


def clarity_product(api: httpx.Client, code: str, **fields: Any) -> int:
    body = {"ID": 0, "CustomKey": code, "Name": "Blue Widget", "Description": "A blue widget", "Active": True,
            "UnitOfMeasure": "Nos", "PriceBase": "12.50", **fields}
    r = api.post("/Products/Product/Create", json=body)
    assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text
    return int(r.json()["Result"])


def item_prices(api: httpx.Client, code: str) -> list[dict[str, Any]]:
    r = api.get("/api/resource/Item Price", params={
        "filters": f'[["item_code", "=", "{code}"], ["price_list", "=", "Standard Selling"]]', "fields": '["*"]'})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def stripe_prices(api: httpx.Client, product_id: str) -> list[dict[str, Any]]:
    return list(api.get("/v1/prices", params={"product": product_id, "limit": 100}).json()["data"])


def stamps(c: httpx.Client, e: httpx.Client, s: httpx.Client, product_id: int, code: str, prod: str) -> Any:
    """Every modified stamp the sync may move, and the Stripe prices (a new Price is a write)."""
    return (c.get(f"/Products/Product/ID/{product_id}").json().get("UpdatedDate"),
            erp_doc(e, "Item", code)["modified"], [p["modified"] for p in item_prices(e, code)],
            s.get(f"/v1/products/{prod}").json()["updated"],
            sorted((p["id"], p["active"], p["lookup_key"]) for p in stripe_prices(s, prod)))


def test_a_clarity_product_alone_is_created_in_erpnext_and_stripe_and_a_second_sync_writes_nothing(
        syncer: ProductSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    code = sku()
    product_id = clarity_product(clarity_api, code)
    outcome = syncer.sync_from("clarity", str(product_id))
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "unchanged", "erp": "created", "stripe": "created"}, outcome
    assert outcome.changes["erp"].external_id == code
    item = erp_doc(erp_api, "Item", code)
    assert (item["item_name"], item["description"], item["disabled"], item["stock_uom"]) == (
        "Blue Widget", "A blue widget", 0, "Nos")
    assert [(p["currency"], float(p["price_list_rate"])) for p in item_prices(erp_api, code)] == [("USD", 12.5)]
    prod = stripe_api.get(f"/v1/products/{outcome.changes['stripe'].external_id}").json()
    assert prod["metadata"] == {"item_code": code, "clarity_product_id": str(product_id)}
    assert (prod["name"], prod["description"], prod["active"], prod["unit_label"]) == (
        "Blue Widget", "A blue widget", True, "Nos")
    prices = stripe_prices(stripe_api, prod["id"])
    assert [(p["currency"], p["unit_amount"], p["lookup_key"], p["active"]) for p in prices] == [
        ("usd", 1250, f"cb:{code}:usd", True)]
    assert prod["default_price"] == prices[0]["id"]

    before = stamps(clarity_api, erp_api, stripe_api, product_id, code, prod["id"])
    for system, ident in (("clarity", str(product_id)), ("stripe", prod["id"]), ("erp", code),
                          ("stripe", prices[0]["id"])):
        again = syncer.sync_from(system, ident)
        assert again.result == "unchanged", again
        assert again.entity_id == outcome.entity_id and not again.conflicts
    dry = syncer.sync_from("erp", code, dry_run=True)
    assert (dry.result, dry.entity_id, dry.patches) == ("unchanged", outcome.entity_id, {})
    assert stamps(clarity_api, erp_api, stripe_api, product_id, code, prod["id"]) == before


def test_a_price_changed_in_erpnext_becomes_a_new_stripe_price_with_the_same_lookup_key_and_reaches_clarity(
        syncer: ProductSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    code = sku()
    product_id = clarity_product(clarity_api, code)
    first = syncer.sync_from("clarity", str(product_id))
    prod_id = first.changes["stripe"].external_id
    old = stripe_prices(stripe_api, prod_id)[0]
    row = item_prices(erp_api, code)[0]
    r = erp_api.put(f"/api/resource/Item Price/{row['name']}", json={"price_list_rate": 13.99})
    assert r.status_code == 200, r.text

    dry = syncer.sync_from("erp", code, dry_run=True)
    assert dry.patches == {"clarity": {"PriceBase": "13.99"}, "stripe": {"prices": {"USD": 1399}}}
    assert stripe_prices(stripe_api, prod_id) == [old]  # the dry run wrote nothing

    outcome = syncer.sync_from("erp", code)
    assert outcome.changes["stripe"].fields == ("prices.USD",) and outcome.changes["clarity"].action == "updated"
    prices = {p["id"]: p for p in stripe_prices(stripe_api, prod_id)}
    new = next(p for p in prices.values() if p["id"] != old["id"])
    assert (new["unit_amount"], new["lookup_key"], new["active"]) == (1399, f"cb:{code}:usd", True)
    assert (prices[old["id"]]["active"], prices[old["id"]]["lookup_key"]) == (False, None)  # kept, inactive
    assert stripe_api.get(f"/v1/products/{prod_id}").json()["default_price"] == new["id"]
    assert clarity_api.get(f"/Products/Product/ID/{product_id}").json()["PriceBase"] == 13.99

    # the bridge's own writes coming back: the new price's event, the Clarity product's poll
    for system, ident in (("stripe", new["id"]), ("clarity", str(product_id)), ("erp", code)):
        assert syncer.sync_from(system, ident).result == "unchanged"
    assert len(stripe_prices(stripe_api, prod_id)) == 2


def test_a_name_changed_in_stripe_reaches_erpnext_and_clarity_and_its_echo_is_read_once(
        syncer: ProductSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client,
        peers: dict[str, str], engine: Engine) -> None:
    code = sku()
    product_id = clarity_product(clarity_api, code)
    prod_id = syncer.sync_from("clarity", str(product_id)).changes["stripe"].external_id
    r = stripe_api.post(f"/v1/products/{prod_id}", data={"name": "Red Widget"})
    assert r.status_code == 200, r.text
    outcome = syncer.sync_from("stripe", prod_id, quick=True)
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "updated", "erp": "updated", "stripe": "unchanged"}
    assert erp_doc(erp_api, "Item", code)["item_name"] == "Red Widget"
    assert clarity_api.get(f"/Products/Product/ID/{product_id}").json()["Name"] == "Red Widget"

    # the ERPNext write comes back (the item poller): quick reads that one item and writes nothing
    erp_http, stripe_calls = Counting(), []
    stripe = StripeProductGateway(build_stripe_client(STRIPE_KEY, api_base=peers["stripe"], timeout_s=10),
                                  before_request=lambda: stripe_calls.append(1))
    clarity = ClarityProductGateway(peers["clarity"], DEFAULT_USER, DEFAULT_PASSWORD,
                                    cursor_store=SqlCursorStore(engine))
    echo_syncer = ProductSyncer(clarity=clarity, stripe=stripe,
                                erp=HttpErpGateway(peers["erp"], ERP_KEY, ERP_SECRET, transport=erp_http),
                                identity=SqlIdentityMap(engine), snapshots=SqlCursorStore(engine))
    echo = echo_syncer.sync_from("erp", code, quick=True)
    assert echo.in_step and echo.result == "unchanged"
    # the Item and its prices (and the price list's currency, once): nothing else, and no write anywhere
    assert all(call.startswith("GET ") for call in erp_http.calls) and len(erp_http.calls) <= 3, erp_http.calls
    assert stripe_calls == [] and clarity.session_id is None
    clarity.close()


def test_a_stripe_product_with_its_sku_in_metadata_is_created_in_clarity_and_erpnext(
        syncer: ProductSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    code = sku()
    prod = stripe_api.post("/v1/products", data={"name": "Green Widget", "metadata[item_code]": code}).json()
    r = stripe_api.post("/v1/prices", data={"product": prod["id"], "currency": "usd", "unit_amount": 700})
    assert r.status_code == 200, r.text
    outcome = syncer.sync_from("stripe", prod["id"])
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "created", "erp": "created", "stripe": "updated"}
    clarity = clarity_api.get(f"/Products/Product/ID/{outcome.changes['clarity'].external_id}").json()
    assert (clarity["CustomKey"], clarity["Name"], clarity["PriceBase"], clarity.get("Active")) == (
        code, "Green Widget", 7.0, True)
    assert erp_doc(erp_api, "Item", code)["item_name"] == "Green Widget"
    assert [float(p["price_list_rate"]) for p in item_prices(erp_api, code)] == [7.0]
    meta = stripe_api.get(f"/v1/products/{prod['id']}").json()["metadata"]
    assert meta["clarity_product_id"] == outcome.changes["clarity"].external_id
    assert syncer.sync_from("erp", code).result == "unchanged"


def test_a_product_deactivated_in_erpnext_is_deactivated_in_stripe_and_clarity(
        syncer: ProductSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    code = sku()
    product_id = clarity_product(clarity_api, code)
    prod_id = syncer.sync_from("clarity", str(product_id)).changes["stripe"].external_id
    assert erp_api.put(f"/api/resource/Item/{code}", json={"disabled": 1}).status_code == 200
    syncer.sync_from("erp", code)
    assert stripe_api.get(f"/v1/products/{prod_id}").json()["active"] is False
    assert clarity_api.get(f"/Products/Product/ID/{product_id}").json().get("Active") is None  # CEF omits false
    assert len(stripe_prices(stripe_api, prod_id)) == 1  # nothing deleted


def test_a_product_without_sku_is_refused_and_nothing_is_written(
        syncer: ProductSyncer, clarity_api: httpx.Client, stripe_api: httpx.Client) -> None:
    prod = stripe_api.post("/v1/products", data={"name": "No SKU"}).json()
    with pytest.raises(ValidationError) as caught:
        syncer.sync_from("stripe", prod["id"])
    assert "metadata[item_code]" in (caught.value.suggested_fix or "")
    assert stripe_api.get(f"/v1/products/{prod['id']}").json()["updated"] == prod["updated"]


def test_a_stripe_product_named_only_by_its_prices_lookup_key_gets_its_sku_in_metadata(
        syncer: ProductSyncer, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    code = sku()
    prod = stripe_api.post("/v1/products", data={"name": "Keyed Widget"}).json()
    price = stripe_api.post("/v1/prices", data={"product": prod["id"], "currency": "usd", "unit_amount": 450,
                                                "lookup_key": f"cb:{code}:usd"}).json()
    outcome = syncer.sync_from("stripe", price["id"])
    assert outcome.source_id == prod["id"] and outcome.changes["erp"].external_id == code
    assert stripe_api.get(f"/v1/products/{prod['id']}").json()["metadata"]["item_code"] == code
    assert [float(p["price_list_rate"]) for p in item_prices(erp_api, code)] == [4.5]
    assert [p["id"] for p in stripe_prices(stripe_api, prod["id"])] == [price["id"]]  # the same price kept
