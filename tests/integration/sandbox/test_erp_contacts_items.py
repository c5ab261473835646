"""Contacts, addresses, items, item prices and stock levels (Bin) of the ERPNext simulator, over HTTP.

One simulator serves the whole module; each test uses its own names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.erp_sim.app import build_app
from commerce_bridge.sandbox.runner import PeerServer


@pytest.fixture(scope="module")
def erp() -> Iterator[httpx.Client]:
    with (
        PeerServer(build_app(api_key="k", api_secret="s")) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "token k:s"}, timeout=10) as client,
    ):
        yield client


def _name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json(parse_float=Decimal)["data"]


def _list(erp: httpx.Client, doctype: str, filters: list[Any], fields: list[str] | None = None,
          **extra: Any) -> list[dict[str, Any]]:
    params = {"filters": json.dumps(filters), "fields": json.dumps(fields or ["*"]), "limit_page_length": 0, **extra}
    return _data(erp.get(f"/api/resource/{doctype}", params=params))  # type: ignore[no-any-return]


def _error(response: httpx.Response, status: int, exc_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["exc_type"] == exc_type, body
    return json.loads(json.loads(body["_server_messages"])[0])["message"]  # type: ignore[no-any-return]


def test_contacts_link_to_a_customer_and_derive_their_primary_email_and_phone(erp: httpx.Client) -> None:
    customer = _data(erp.post("/api/resource/Customer", json={"customer_name": _name("Acme")}))["name"]
    contact = _data(erp.post("/api/resource/Contact", json={
        "first_name": "Ann", "last_name": "Lee", "email_id": "ignored@example.com",
        "email_ids": [{"email_id": "ann@example.com"}],
        "phone_nos": [{"phone": "+15125550100", "is_primary_mobile_no": 1}, {"phone": "+15125550199"}],
        "links": [{"link_doctype": "Customer", "link_name": customer},
                  {"link_doctype": "Customer", "link_name": customer}],
    }))
    assert contact["name"] == f"Ann Lee-{customer}" and contact["full_name"] == "Ann Lee"
    assert contact["email_id"] == "ann@example.com" and contact["email_ids"][0]["is_primary"] == 1
    assert contact["mobile_no"] == "+15125550100" and contact["phone"] == ""
    assert len(contact["links"]) == 1 and contact["links"][0]["link_title"] == customer
    again = _data(erp.post("/api/resource/Contact", json={
        "first_name": "Ann", "last_name": "Lee", "links": [{"link_doctype": "Customer", "link_name": customer}]}))
    assert again["name"] == f"Ann Lee-{customer}-1" and again["email_id"] == ""

    linked = _list(erp, "Contact", [["Dynamic Link", "link_name", "=", customer]], ["name", "email_id"])
    assert {c["name"] for c in linked} == {contact["name"], again["name"]}
    by_email = _list(erp, "Contact", [["Contact Email", "email_id", "=", "ann@example.com"]], ["name"])
    assert [c["name"] for c in by_email] == [contact["name"]]

    two_primary = erp.post("/api/resource/Contact", json={"first_name": "X", "email_ids": [
        {"email_id": "a@example.com", "is_primary": 1}, {"email_id": "b@example.com", "is_primary": 1}]})
    assert _error(two_primary, 417, "ValidationError") == "Only one Email ID can be set as primary."
    bad_link = erp.post("/api/resource/Contact", json={
        "first_name": "Y", "links": [{"link_doctype": "Customer", "link_name": "Nobody"}]})
    _error(bad_link, 417, "LinkValidationError")


def test_a_customer_with_email_and_mobile_gets_its_primary_contact_and_address(erp: httpx.Client) -> None:
    customer = _data(erp.post("/api/resource/Customer", json={
        "customer_name": _name("Bo"), "email_id": "bo@example.com", "mobile_no": "+15125550111",
        "address_line1": "1 Main St", "city": "Austin", "country": "United States"}))
    name = customer["name"]
    contact = _data(erp.get(f"/api/resource/Contact/{customer['customer_primary_contact']}"))
    assert contact["name"] == f"{name}-{name}" and contact["email_id"] == "bo@example.com"
    assert contact["mobile_no"] == "+15125550111" and contact["is_primary_contact"] == 1
    address = _data(erp.get(f"/api/resource/Address/{customer['customer_primary_address']}"))
    assert address["name"] == f"{name}-Billing" and address["is_primary_address"] == 1
    no_country = erp.post("/api/resource/Customer", json={"customer_name": _name("Cy"), "address_line1": "2 Rd",
                                                          "city": "Austin"})
    assert "mandatory to create address: Country" in _error(no_country, 417, "ValidationError")


def test_addresses_keep_one_preferred_address_per_linked_customer(erp: httpx.Client) -> None:
    customer = _data(erp.post("/api/resource/Customer", json={"customer_name": _name("Dee")}))["name"]
    link = [{"link_doctype": "Customer", "link_name": customer}]
    first = _data(erp.post("/api/resource/Address", json={
        "address_line1": "1 A St", "city": "Austin", "country": "United States", "is_primary_address": 1,
        "links": link}))
    assert first["name"] == f"{customer}-Billing" and first["address_title"] == customer
    second = _data(erp.post("/api/resource/Address", json={
        "address_line1": "2 B St", "city": "Austin", "country": "United States", "is_primary_address": 1,
        "links": link}))
    assert second["name"] == f"{customer}-Billing-1"
    first_now = _data(erp.get(f"/api/resource/Address/{first['name']}"))
    assert first_now["is_primary_address"] == 0 and first_now["modified"] > first["modified"]
    # both moved past the first one's cursor: the new address and the one that lost its flag
    changed = _list(erp, "Address", [["Dynamic Link", "link_name", "=", customer],
                                     ["modified", ">", first["modified"]]], ["name"])
    assert {a["name"] for a in changed} == {first["name"], second["name"]}
    no_title = erp.post("/api/resource/Address", json={"address_line1": "x", "city": "y", "country": "z"})
    assert _error(no_title, 417, "ValidationError") == "Address Title is mandatory."
    bad_type = erp.post("/api/resource/Address", json={"address_line1": "x", "city": "y", "country": "z",
                                                       "address_type": "Home", "address_title": "T"})
    _error(bad_type, 417, "ValidationError")


def test_items_and_item_prices_follow_the_price_list(erp: httpx.Client) -> None:
    code = f"SKU-{uuid.uuid4().hex[:6]}"
    item = _data(erp.post("/api/resource/Item", json={"item_code": code, "item_name": "Mug", "stock_uom": "Nos"}))
    assert item["description"] == "Mug" and item["disabled"] == 0
    price = _data(erp.post("/api/resource/Item Price", json={
        "item_code": code, "price_list": "Standard Selling", "price_list_rate": "12.5", "currency": "EUR"}))
    assert price["currency"] == "USD" and price["selling"] == 1 and price["buying"] == 0  # from the price list
    assert price["price_list_rate"] == Decimal("12.50") and price["uom"] == "Nos" and price["item_name"] == "Mug"
    dup = erp.post("/api/resource/Item Price", json={"item_code": code, "price_list": "Standard Selling",
                                                      "price_list_rate": 13})
    assert _error(dup, 417, "ItemPriceDuplicateItem").startswith("Item Price appears multiple times")
    updated = _data(erp.put(f"/api/resource/Item Price/{price['name']}", json={"price_list_rate": 14}))
    assert updated["price_list_rate"] == Decimal("14.00") and updated["modified"] > price["modified"]
    rows = _list(erp, "Item Price", [["item_code", "=", code], ["modified", ">", price["modified"]]],
                 ["name", "price_list_rate", "currency"])
    assert rows == [{"name": price["name"], "price_list_rate": Decimal("14.00"), "currency": "USD"}]
    _data(erp.post("/api/resource/Price List", json={"price_list_name": f"Web {code}", "currency": "EUR",
                                                     "selling": 1}))
    euro = _data(erp.post("/api/resource/Item Price", json={"item_code": code, "price_list": f"Web {code}",
                                                            "price_list_rate": 11}))
    assert euro["currency"] == "EUR"
    disabled = _data(erp.put(f"/api/resource/Item/{code}", json={"disabled": 1}))
    assert disabled["disabled"] == 1 and disabled["modified"] > item["modified"]
    no_list = erp.post("/api/resource/Item Price", json={"item_code": code, "price_list": "Nope"})
    _error(no_list, 417, "ValidationError")


def test_stock_moves_through_stock_entries_and_reconciliations_into_bins(erp: httpx.Client) -> None:
    code = f"STK-{uuid.uuid4().hex[:6]}"
    _data(erp.post("/api/resource/Item", json={"item_code": code}))
    receipt = _data(erp.post("/api/resource/Stock Entry", json={
        "stock_entry_type": "Material Receipt", "docstatus": 1,
        "items": [{"item_code": code, "qty": 10, "t_warehouse": "Stores - SB", "basic_rate": 2}]}))
    assert receipt["name"].startswith("MAT-STE-") and receipt["status"] == "Submitted"
    (bin_,) = _list(erp, "Bin", [["item_code", "=", code]])
    assert bin_["warehouse"] == "Stores - SB" and bin_["actual_qty"] == Decimal("10.000000")
    assert bin_["projected_qty"] == Decimal("10.000000")

    too_much = erp.post("/api/resource/Stock Entry", json={
        "stock_entry_type": "Material Issue", "docstatus": 1,
        "items": [{"item_code": code, "qty": 11, "s_warehouse": "Stores - SB"}]})
    _error(too_much, 417, "NegativeStockError")
    reco = _data(erp.post("/api/resource/Stock Reconciliation", json={
        "docstatus": 1, "items": [{"item_code": code, "warehouse": "Stores - SB", "qty": 4}]}))
    assert reco["items"][0]["current_qty"] == Decimal("10.000000")
    (after,) = _list(erp, "Bin", [["item_code", "=", code], ["modified", ">", bin_["modified"]]])
    assert after["actual_qty"] == Decimal("4.000000")
    _data(erp.put(f"/api/resource/Stock Reconciliation/{reco['name']}", json={"docstatus": 2}))
    assert _list(erp, "Bin", [["item_code", "=", code]])[0]["actual_qty"] == Decimal("10.000000")

    _error(erp.post("/api/resource/Bin", json={"item_code": code, "warehouse": "Stores - SB", "actual_qty": 99}),
           403, "PermissionError")
    service = f"SVC-{uuid.uuid4().hex[:6]}"
    _data(erp.post("/api/resource/Item", json={"item_code": service, "is_stock_item": 0}))
    not_stock = erp.post("/api/resource/Stock Entry", json={
        "stock_entry_type": "Material Receipt", "items": [{"item_code": service, "qty": 1,
                                                           "t_warehouse": "Stores - SB"}]})
    assert _error(not_stock, 417, "ValidationError") == f"Item {service} is not a stock Item"
    assert {w["name"] for w in _list(erp, "Warehouse", [["company", "=", "Sandbox Bridge"]], ["name"])} >= {
        "Stores - SB", "Finished Goods - SB"}
