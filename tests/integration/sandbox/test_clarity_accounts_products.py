"""Accounts with their contacts and addresses, products and inventory of the Clarity simulator, over HTTP.

One simulator serves the whole module; each test uses its own keys.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer

CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with (
        PeerServer(build_clarity()) as server,
        httpx.Client(base_url=server.url + CLARITY_BASE, timeout=10) as client,
    ):
        login = client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        assert login.status_code == 200, login.text
        yield client


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json(parse_float=Decimal)
    assert body["ActionSucceeded"] is True, body
    return body.get("Result")


def _get(api: httpx.Client, path: str, **params: Any) -> Any:
    query = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()}
    response = api.get(path, params=query)
    assert response.status_code == 200, response.text
    return response.json(parse_float=Decimal)


def test_account_contacts_link_an_account_to_contacts_with_addresses(api: httpx.Client) -> None:
    account_key = _key("ACC")
    account_id = _ok(api.post("/Accounts/Account/Create", json={
        "CustomKey": account_key, "Name": "Acme",
        "AccountContacts": [{"CustomKey": f"{account_key}|bill", "IsBilling": True, "Slave": {
            "CustomKey": f"{account_key}|bill-c", "FirstName": "Ann", "LastName": "Lee", "Email1": "ann@example.com",
            "Phone1": "+1 512 555 0100",
            "Address": {"Street1": "1 Main St", "City": "Austin", "RegionCode": "TX", "PostalCode": "78701",
                        "CountryCode": "US"}}}],
    }))
    account = _get(api, f"/Accounts/Account/ID/{account_id}")
    (link,) = account["AccountContacts"]
    assert link["MasterID"] == account_id and link["MasterKey"] == account_key and link["IsBilling"] is True
    assert link["SlaveEmail"] == "ann@example.com" and link["SlaveFirstName"] == "Ann"
    address = link["Slave"]["Address"]
    assert address["City"] == "Austin" and link["Slave"]["AddressID"] == address["ID"]
    assert _get(api, f"/Geography/Address/ID/{address['ID']}")["Street1"] == "1 Main St"

    ship_id = _ok(api.post("/Accounts/AccountContact/Create", json={
        "MasterKey": account_key, "CustomKey": f"{account_key}|ship",
        "Slave": {"FirstName": "Dock", "LastName": "Two", "Address": {"Street1": "9 Port Rd", "City": "Austin"}}}))
    _ok(api.patch(f"/Accounts/AccountContact/MarkAsPrimaryShipping/ID/{ship_id}"))
    ship = _get(api, f"/Accounts/AccountContact/ID/{ship_id}")
    assert ship["IsPrimary"] is True and "IsBilling" not in ship  # false is omitted
    # CEF sets the flags on that row only; the billing row keeps its flag
    assert _get(api, "/Accounts/AccountContacts", MasterID=account_id, IsBilling="true")["TotalCount"] == 1
    _ok(api.patch(f"/Accounts/AccountContact/MarkAsDefaultBilling/ID/{ship_id}"))
    ship = _get(api, f"/Accounts/AccountContact/ID/{ship_id}")
    assert ship["IsBilling"] is True and "IsPrimary" not in ship
    missing = api.patch("/Accounts/AccountContact/MarkAsDefaultBilling/ID/999999").json()
    assert missing["ActionSucceeded"] is False and missing["Messages"][0].startswith("ERROR!")
    no_account = api.post("/Accounts/AccountContact/Create", json={"MasterID": 999999, "Slave": {"FirstName": "X"}})
    assert no_account.status_code == 400 and no_account.json()["ResponseStatus"]["ErrorCode"] == "CEF-10156"


def test_an_address_update_shows_on_its_contact_and_moves_the_address_cursor(api: httpx.Client) -> None:
    contact_id = _ok(api.post("/Contacts/Contact/Create", json={
        "CustomKey": _key("C"), "FirstName": "Bo", "Email1": "bo@example.com",
        "Address": {"Street1": "5 Elm St", "City": "Dallas", "CountryCode": "US"}}))
    contact = _get(api, f"/Contacts/Contact/ID/{contact_id}")
    address_id = contact["AddressID"]
    since = contact["UpdatedDate"]
    _ok(api.put("/Geography/Address/Update", json={"ID": address_id, "Street1": "6 Elm St"}))
    assert _get(api, f"/Contacts/Contact/ID/{contact_id}")["Address"]["Street1"] == "6 Elm St"
    changed = _get(api, "/Geography/Addresses", ModifiedSince=since)["Results"]
    assert [a["ID"] for a in changed] == [address_id]
    found = _get(api, "/Contacts/Contacts", Email1="BO@example.com", Email1Strict="true")["Results"]
    assert [c["ID"] for c in found] == [contact_id]


def test_products_carry_custom_key_name_price_status_and_a_modified_cursor(api: httpx.Client) -> None:
    sku = _key("SKU")
    product_id = _ok(api.post("/Products/Product/Create", json={
        "CustomKey": sku, "Name": "Mug", "Description": "A mug", "ShortDescription": "mug",
        "PriceBase": "12.5", "UnitOfMeasure": "EA"}))
    product = _get(api, f"/Products/Product/Key/{sku}")
    assert product["ID"] == product_id and product["PriceBase"] == Decimal("12.5000")
    assert product["TypeKey"] == "GENERAL" and product["StatusKey"] == "NORMAL" and product["Active"] is True
    cursor = product["UpdatedDate"]
    time.sleep(0.002)
    _ok(api.post("/Products/Product/Upsert", json={"CustomKey": sku, "Name": "Big mug", "PriceBase": "14"}))
    _ok(api.patch(f"/Products/Product/Deactivate/Key/{sku}"))
    rows = _get(api, "/Products/Products", ModifiedSince=cursor, CustomKey=sku, CustomKeyStrict="true",
                Sorts=[{"field": "UpdatedDate", "dir": "asc"}])["Results"]
    assert len(rows) == 1 and rows[0]["Name"] == "Big mug" and "Active" not in rows[0]
    assert rows[0]["UpdatedDate"] > cursor
    assert sku not in {d["Key"] for d in _get(api, "/Products/ProductsDigest")}  # digest lists active rows only
    _ok(api.patch(f"/Products/Product/Reactivate/Key/{sku}"))
    digest = {d["Key"]: d for d in _get(api, "/Products/ProductsDigest")}
    assert digest[sku]["ID"] == product_id
    assert _get(api, "/Products/Products", TypeKey="GENERAL", IDs=str(product_id))["TotalCount"] == 1


def test_inventory_is_written_per_location_section_and_read_back_calculated(api: httpx.Client) -> None:
    sections = _get(api, "/Inventory/InventoryLocationSections", CustomKey="DEFAULT-MAIN", CustomKeyStrict="true")
    section_id = sections["Results"][0]["ID"]
    sku = _key("STK")
    product_id = _ok(api.post("/Products/Product/Create", json={"CustomKey": sku, "Name": "Stocked"}))
    before = _get(api, f"/Products/Product/ID/{product_id}")["UpdatedDate"]

    assert _ok(api.get(f"/Providers/Inventory/CalculateInventory/{product_id}"))["IsOutOfStock"] is True
    _ok(api.patch("/Providers/Inventory/UpdateInventoryForProduct", json={
        "ID": product_id, "Quantity": 10, "QuantityAllocated": "2.5", "RelevantLocationID": section_id,
        "RelevantHash": 42}))
    stock = _ok(api.get(f"/Providers/Inventory/CalculateInventory/{product_id}"))
    assert stock["QuantityPresent"] == Decimal("10.0000") and stock["QuantityOnHand"] == Decimal("7.5000")
    assert stock["IsOutOfStock"] is False and stock["RelevantLocations"][0]["SlaveID"] == section_id
    # stock lives in its own rows: the product's UpdatedDate does not move
    assert _get(api, f"/Products/Product/ID/{product_id}")["UpdatedDate"] == before

    second = _ok(api.post("/Inventory/InventoryLocationSection/Create", json={
        "CustomKey": _key("SEC"), "Name": "Overflow", "InventoryLocationKey": "DEFAULT"}))
    _ok(api.put("/Providers/Inventory/BulkUpdateInventoryForProducts", json={"InventoryToPush": [
        {"ProductID": product_id, "RelevantLocations": [{"SlaveID": second, "Quantity": 4}]},
        {"ProductID": 999999, "RelevantLocations": [{"SlaveID": second, "Quantity": 1}]},  # skipped, as CEF does
    ]}))
    bulk = _ok(api.post("/Providers/Inventory/BulkCalculateInventory", json={"ProductIDs": [product_id, 999999]}))
    assert list(bulk) == [str(product_id)] and bulk[str(product_id)]["QuantityOnHand"] == Decimal("11.5000")
    counts = _ok(api.post("/Providers/Inventory/BulkCalculateInventoryCount", json={"ProductIDs": [product_id]}))
    assert counts == {str(product_id): Decimal("11.5000")}

    bad = api.patch("/Providers/Inventory/UpdateInventoryForProduct", json={"ID": product_id, "Quantity": 1})
    assert bad.status_code == 400 and bad.json()["ResponseStatus"]["ErrorCode"] == "CEF-10156"
    _ok(api.put("/Products/Product/Update", json={"ID": product_id, "IsDiscontinued": True}))
    assert _ok(api.get(f"/Providers/Inventory/CalculateInventory/{product_id}")) == {
        "ProductID": product_id, "IsDiscontinued": True, "IsOutOfStock": True}


def test_the_read_only_login_may_read_stock_but_not_write_it(api: httpx.Client) -> None:
    with httpx.Client(base_url=str(api.base_url), timeout=10) as viewer:
        assert viewer.post("/auth/identity", json={"UserName": "viewer", "Password": "sandbox-viewer"}).is_success
        product_id = _get(api, "/Products/Products", Paging={"Size": 1, "StartIndex": 1})["Results"][0]["ID"]
        assert viewer.get(f"/Providers/Inventory/CalculateInventory/{product_id}").status_code == 200
        denied = viewer.patch("/Providers/Inventory/UpdateInventoryForProduct",
                              json={"ID": product_id, "Quantity": 1, "RelevantLocationID": 1})
        assert denied.status_code == 403


def test_change_notices_cover_account_contacts_addresses_and_stock() -> None:
    app = build_clarity(webhook_url="http://127.0.0.1:9/unreachable", webhook_secret="s", webhook_backoff_s=60)
    with PeerServer(app) as server, httpx.Client(base_url=server.url + CLARITY_BASE, timeout=10) as client:
        assert client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}).is_success
        account_id = _ok(client.post("/Accounts/Account/Create", json={"CustomKey": "A-1", "Name": "A"}))
        _ok(client.post("/Accounts/AccountContact/Create", json={
            "MasterID": account_id, "Slave": {"FirstName": "Z", "Address": {"Street1": "1 Rd", "City": "X"}}}))
        product_id = _ok(client.post("/Products/Product/Create", json={"CustomKey": "P-1", "Name": "P"}))
        _ok(client.patch("/Providers/Inventory/UpdateInventoryForProduct",
                         json={"ID": product_id, "Quantity": 3, "RelevantLocationID": _default_section(client)}))
        deliveries = httpx.get(f"{server.url}/_sandbox/webhooks").json()["deliveries"]
    types = [d["type"] for d in deliveries]
    assert types == ["account.created", "address.created", "contact.created", "accountcontact.created",
                     "product.created", "inventory.updated"]


def _default_section(client: httpx.Client) -> int:
    found = _get(client, "/Inventory/InventoryLocationSections", CustomKey="DEFAULT-MAIN", CustomKeyStrict="true")
    return int(found["Results"][0]["ID"])
