"""The customer sync's pollers against the simulators: Clarity's changed accounts and the accounts of changed contacts
(``HttpClarityGateway.poll_changed_accounts``), ERPNext's changed Customers and the Customers of changed Contacts and
Addresses (``services.customer_poll.customer_poll``); each change once, ids and dates only in the events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.services.customer_poll import customer_poll
from tests.integration.test_connector_clarity import API, ZONE, MemoryCursors, make_gateway

ERP_KEY, ERP_SECRET = "test-key", "test-secret"


@pytest.fixture
def clarity() -> Iterator[PeerServer]:
    with PeerServer(build_clarity(timezone=ZONE)) as server:
        yield server


@pytest.fixture
def erp() -> Iterator[PeerServer]:
    with PeerServer(build_erp(api_key=ERP_KEY, api_secret=ERP_SECRET)) as server:
        yield server


def _clarity_api(server: PeerServer) -> httpx.Client:
    client = httpx.Client(base_url=server.url + API, timeout=10)
    r = client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
    assert r.status_code == 200, r.text
    return client


def test_changed_accounts_and_the_accounts_of_changed_contacts_are_polled_once_each(clarity: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = make_gateway(clarity, cursors, poll_overlap_s=600, page_size=2)
    api = _clarity_api(clarity)
    assert gw.poll_changed_accounts(lambda events: None).events == []  # the first poll starts from now
    made = api.post("/Accounts/Account/Create", json={
        "ID": 0, "CustomKey": f"ACCT-{uuid.uuid4().hex[:8]}", "Name": "Ada Lovelace",
        "AccountContacts": [{"Slave": {"FirstName": "Ada", "Email1": "ada@example.com", "Phone1": "+14155550101"},
                             "IsBilling": True}]})
    assert made.status_code == 200 and made.json()["ActionSucceeded"], made.text
    account_id = int(made.json()["Result"])
    first = gw.poll_changed_accounts(lambda events: None).events
    mine = [e for e in first if e["data"]["ID"] == account_id]
    assert {e["type"] for e in mine} <= {"account.created", "account.updated"} and mine
    assert all(set(e["data"]) <= {"ID", "CustomKey", "CreatedDate", "UpdatedDate", "ContactID"} for e in first)
    assert gw.poll_changed_accounts(lambda events: None).events == []  # the overlap re-read them: nothing new

    contact = next(r["Slave"] for r in api.get(f"/Accounts/Account/ID/{account_id}").json()["AccountContacts"])
    body = {k: v for k, v in contact.items() if not isinstance(v, list)}
    assert api.put("/Contacts/Contact/Update", json={**body, "Phone1": "+14155550102"}).status_code == 200
    [event] = gw.poll_changed_accounts(lambda events: None).events
    assert (event["type"], event["data"]["ID"], event["data"]["ContactID"]) == (
        "account.updated", account_id, contact["ID"])
    assert event["id"].startswith("clarity-ct-") and "Phone1" not in event["data"]
    assert {"clarity.accounts", "clarity.contacts"} <= set(cursors.values)


def test_erpnext_customers_and_their_contacts_and_addresses_are_polled_once_each(erp: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = HttpErpGateway(erp.url, ERP_KEY, ERP_SECRET)
    api = httpx.Client(base_url=erp.url, headers={"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"}, timeout=10)
    r = api.post("/api/resource/Customer", json={"customer_name": "Before", "email_id": "before@example.com"})
    assert r.status_code == 200, r.text
    before: list[dict[str, Any]] = []
    poll = customer_poll(gw, cursors, page_size=2)
    poll(before.extend)
    assert before == []  # the first cycle starts from the latest change: the customers before are the backfill's
    r = api.post("/api/resource/Customer", json={"customer_name": "Emmy Noether", "email_id": "emmy@example.com",
                                                  "mobile_no": "+4930123456"})
    assert r.status_code == 200, r.text
    name = r.json()["data"]["name"]
    seen: list[dict[str, Any]] = []
    poll(seen.extend)
    assert {(e["data"]["doctype"], e["data"]["customer"]) for e in seen} >= {("Customer", name), ("Contact", name)}
    assert all(e["type"] == "customer.updated" and set(e["data"]) == {"customer", "doctype", "name", "modified"}
               for e in seen)
    again: list[dict[str, Any]] = []
    poll(again.extend)  # the boundary's documents come again, with the same ids: the inbox stores them once
    assert {e["id"] for e in again} <= {e["id"] for e in seen}

    r = api.post("/api/resource/Address", json={
        "address_title": name, "address_type": "Billing", "address_line1": "Bunsenstr. 3", "city": "Göttingen",
        "pincode": "37073", "country": "Germany", "links": [{"link_doctype": "Customer", "link_name": name}]})
    assert r.status_code == 200, r.text
    later: list[dict[str, Any]] = []
    poll(later.extend)
    assert ("Address", name) in {(e["data"]["doctype"], e["data"]["customer"]) for e in later}
    assert set(cursors.values) == {"erp.customers", "erp.customer_contacts", "erp.customer_addresses"}
