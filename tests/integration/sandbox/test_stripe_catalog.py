"""Customers, products and prices of the Stripe emulator through the official SDK: updates and their events,
price immutability and lookup keys, list filters and search."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import WebhookReceiver, assert_shape


def _events(receiver: WebhookReceiver, type_: str, n: int = 1) -> list[dict[str, object]]:
    evs = receiver.wait_for(lambda evs: sum(e["type"] == type_ for e in evs) >= n)
    return [e for e in evs if e["type"] == type_]


def test_customer_update_emits_customer_updated_with_previous_attributes(
    stripe_client: stripe.StripeClient, stripe_webhook: tuple[WebhookReceiver, str], stripe_fixtures: dict[str, Any]
) -> None:
    receiver, _secret = stripe_webhook
    c = stripe_client.v1
    cus = c.customers.create(params={"email": "ann@example.com", "name": "Ann", "metadata": {"clarity_id": "7"}})
    updated = c.customers.update(cus.id, params={
        "name": "Ann Lee", "phone": "+15125550100",
        "address": {"line1": "1 Main St", "city": "Austin", "postal_code": "78701", "country": "US"}})
    assert_shape(updated, "customer", stripe_fixtures)
    assert updated.address is not None and updated.address.city == "Austin"
    assert updated.metadata is not None and updated.metadata["clarity_id"] == "7"
    (event,) = _events(receiver, "customer.updated")
    data = event["data"]
    assert isinstance(data, dict)
    assert data["previous_attributes"] == {"name": "Ann", "phone": None, "address": None}
    assert data["object"]["name"] == "Ann Lee"
    c.customers.update(cus.id, params={"name": "Ann Lee"})  # nothing changes: no event
    c.customers.update(cus.id, params={"email": "ann.lee@example.com"})
    second = _events(receiver, "customer.updated", 2)[1]["data"]
    assert isinstance(second, dict) and second["previous_attributes"] == {"email": "ann@example.com"}
    assert [x.id for x in c.customers.list(params={"email": "ann.lee@example.com"}).data] == [cus.id]


def test_products_are_created_updated_listed_and_found_by_metadata(
    stripe_client: stripe.StripeClient, stripe_webhook: tuple[WebhookReceiver, str], stripe_fixtures: dict[str, Any]
) -> None:
    receiver, _secret = stripe_webhook
    c = stripe_client.v1
    mug = c.products.create(params={"name": "Mug", "metadata": {"erp_item_code": "SKU-1"}})
    assert_shape(mug, "product", stripe_fixtures)
    tee = c.products.create(params={"id": "prod_SKU-2", "name": "Tee", "metadata": {"erp_item_code": "SKU-2"}})
    assert tee.id == "prod_SKU-2"
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        c.products.create(params={"id": "prod_SKU-2", "name": "Again"})
    updated = c.products.update(mug.id, params={"description": "A mug", "active": False})
    assert updated.description == "A mug" and updated.active is False and updated.updated >= mug.updated
    (event,) = _events(receiver, "product.updated")
    data = event["data"]
    assert isinstance(data, dict) and data["previous_attributes"] == {"description": None, "active": True}
    assert [p.id for p in c.products.list(params={"active": False}).data] == [mug.id]
    assert [p.id for p in c.products.list(params={"ids": [tee.id]}).data] == [tee.id]
    found = c.products.search(params={"query": "metadata['erp_item_code']:'SKU-2'"})
    assert [p.id for p in found.data] == [tee.id]
    both = c.products.search(params={"query": "name~'mug' OR name:'tee'", "limit": 1})
    assert both.has_more and both.next_page
    rest = c.products.search(params={"query": "name~'mug' OR name:'tee'", "limit": 1, "page": both.next_page})
    assert {both.data[0].id, rest.data[0].id} == {mug.id, tee.id} and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError):
        c.products.search(params={"query": "sku:'SKU-2'"})


def test_prices_are_immutable_except_active_metadata_nickname_and_lookup_key(
    stripe_client: stripe.StripeClient, stripe_webhook: tuple[WebhookReceiver, str], stripe_fixtures: dict[str, Any]
) -> None:
    receiver, _secret = stripe_webhook
    c = stripe_client.v1
    prod = c.products.create(params={"name": "Mug"})
    old = c.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1250,
                                  "lookup_key": "SKU-1:usd", "metadata": {"erp_price": "ip-1"}})
    assert_shape(old, "price", stripe_fixtures)
    _events(receiver, "price.created")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.prices.update(old.id, params={"unit_amount": 1300})  # type: ignore[arg-type]
    assert exc.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key"):
        c.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1300,
                                "lookup_key": "SKU-1:usd"})
    new = c.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1300,
                                  "lookup_key": "SKU-1:usd", "transfer_lookup_key": True})
    assert c.prices.retrieve(old.id).lookup_key is None
    moved = _events(receiver, "price.updated")[0]["data"]
    assert isinstance(moved, dict) and moved["previous_attributes"] == {"lookup_key": "SKU-1:usd"}
    c.prices.update(old.id, params={"active": False, "metadata": {"erp_price": ""}})
    assert [p.id for p in c.prices.list(params={"lookup_keys": ["SKU-1:usd"]}).data] == [new.id]
    assert [p.id for p in c.prices.list(params={"product": prod.id, "active": True}).data] == [new.id]
    assert {p.id for p in c.prices.list(params={"product": prod.id}).data} == {old.id, new.id}
    assert [p.id for p in c.prices.search(params={"query": f"product:'{prod.id}' AND active:'true'"}).data] == [
        new.id]
    c.products.update(prod.id, params={"default_price": new.id})
    with pytest.raises(stripe.InvalidRequestError, match="not active"):
        c.products.update(prod.id, params={"default_price": old.id})
    with pytest.raises(stripe.InvalidRequestError, match="user-created prices"):
        c.products.delete(prod.id)
    assert c.prices.update(new.id, params={"tax_behavior": "exclusive"}).tax_behavior == "exclusive"
    with pytest.raises(stripe.InvalidRequestError, match="cannot be changed"):
        c.prices.update(new.id, params={"tax_behavior": "inclusive"})
