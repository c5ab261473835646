"""``CustomerSyncer`` against the sandbox peers (Clarity simulator, Stripe emulator, ERPNext simulator) and our
identity map and cursor store on SQLite and PostgreSQL: a customer made where it is missing, a change in one
system reaching the other two, a second sync writing nothing, a conflict reported without values."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap
from tests.support import sync_peers
from tests.support.sync_peers import customer_gateways, erp_doc, sync_peer_fixtures

STRIPE_KEY = "sk_test_customer_sync"
peers, clarity_api, erp_api, stripe_api = sync_peer_fixtures(STRIPE_KEY)
clarity_account = partial(sync_peers.clarity_account, tax_id="")  # every account here with an EIN, "" by default


@pytest.fixture
def syncer(peers: dict[str, str], engine: Engine) -> Iterator[CustomerSyncer]:
    with customer_gateways(peers, engine, STRIPE_KEY) as (clarity, stripe, erp):
        yield CustomerSyncer(clarity=clarity, stripe=stripe, erp=erp, identity=SqlIdentityMap(engine),
                             snapshots=SqlCursorStore(engine), policy=SyncPolicy(source_of_truth={"tax_id": "erp"}))


def stamps(api_c: httpx.Client, api_e: httpx.Client, account_id: int, erp_name: str) -> dict[str, Any]:
    """The modified stamps of every document the sync may write."""
    account = api_c.get(f"/Accounts/Account/ID/{account_id}").json()
    customer = erp_doc(api_e, "Customer", erp_name)
    out = {"account": account.get("UpdatedDate"), "customer": customer["modified"],
           "contacts": [(r["ID"], r.get("UpdatedDate"), (r.get("Slave") or {}).get("UpdatedDate"))
                        for r in account.get("AccountContacts") or []]}
    for field in ("customer_primary_contact", "customer_primary_address"):
        if customer.get(field):
            doctype = "Contact" if field.endswith("contact") else "Address"
            out[field] = erp_doc(api_e, doctype, customer[field])["modified"]
    return out


def stripe_updates(api: httpx.Client, customer_id: str) -> int:
    events = api.get("/v1/events", params={"type": "customer.updated", "limit": 100}).json()["data"]
    return sum(1 for e in events if e["data"]["object"]["id"] == customer_id)


def test_a_clarity_account_alone_is_created_in_stripe_and_erpnext_and_a_second_sync_writes_nothing(
        syncer: CustomerSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    account_id = clarity_account(clarity_api, email=email, tax_id="12-3456789")
    outcome = syncer.sync_from("clarity", str(account_id))
    assert outcome.result == "created"
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "unchanged", "stripe": "created", "erp": "created"}
    cus = stripe_api.get(f"/v1/customers/{outcome.changes['stripe'].external_id}").json()
    assert (cus["email"], cus["phone"], cus["address"]["postal_code"]) == (email, "+14155550101", "94105")
    assert cus["metadata"]["clarity_account_id"] == str(account_id)
    assert cus["metadata"]["erp_customer"] == outcome.changes["erp"].external_id
    customer = erp_doc(erp_api, "Customer", outcome.changes["erp"].external_id)
    assert (customer["customer_name"], customer["tax_id"]) == ("Ada Lovelace", "12-3456789")
    contact = erp_doc(erp_api, "Contact", customer["customer_primary_contact"])
    assert (contact["email_id"], contact["mobile_no"]) == (email, "+14155550101")
    address = erp_doc(erp_api, "Address", customer["customer_primary_address"])
    assert (address["pincode"], address["country"]) == ("94105", "United States")

    before = stamps(clarity_api, erp_api, account_id, customer["name"])
    updates = stripe_updates(stripe_api, cus["id"])
    for system, ident in (("clarity", str(account_id)), ("stripe", cus["id"]), ("erp", customer["name"])):
        again = syncer.sync_from(system, ident)
        assert again.result == "unchanged", again
        assert again.entity_id == outcome.entity_id and not again.conflicts
    dry = syncer.sync_from("clarity", str(account_id), dry_run=True)
    assert (dry.result, dry.entity_id, dry.patches) == ("unchanged", outcome.entity_id, {})
    assert stamps(clarity_api, erp_api, account_id, customer["name"]) == before
    assert stripe_updates(stripe_api, cus["id"]) == updates


def test_a_phone_changed_in_erpnext_reaches_clarity_and_stripe(
        syncer: CustomerSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"grace.{uuid.uuid4().hex[:8]}@example.com"
    account_id = clarity_account(clarity_api, email=email)
    first = syncer.sync_from("clarity", str(account_id))
    erp_name, cus_id = first.changes["erp"].external_id, first.changes["stripe"].external_id
    contact = erp_doc(erp_api, "Contact", erp_doc(erp_api, "Customer", erp_name)["customer_primary_contact"])
    rows = [{**r, "is_primary_mobile_no": 0} for r in contact["phone_nos"]]
    rows.append({"phone": "+1 415 555 0199", "is_primary_mobile_no": 1})
    r = erp_api.put(f"/api/resource/Contact/{contact['name']}", json={"phone_nos": rows})
    assert r.status_code == 200, r.text

    outcome = syncer.sync_from("erp", erp_name)
    assert outcome.result == "updated"
    assert outcome.changes["clarity"].fields == ("phone",) and outcome.changes["stripe"].fields == ("phone",)
    assert outcome.changes["erp"].action == "unchanged"
    assert [c.field for c in outcome.conflicts] == ["phone", "phone"]  # the old numbers lost
    account = clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()
    billing = next(r["Slave"] for r in account["AccountContacts"] if r.get("IsBilling"))
    assert billing["Phone1"] == "+14155550199"
    assert stripe_api.get(f"/v1/customers/{cus_id}").json()["phone"] == "+14155550199"
    assert syncer.sync_from("clarity", str(account_id)).result == "unchanged"


def test_a_conflict_is_reported_by_field_and_system_and_the_source_of_truth_wins(
        syncer: CustomerSyncer, clarity_api: httpx.Client, erp_api: httpx.Client,
        caplog: pytest.LogCaptureFixture) -> None:
    email = f"alan.{uuid.uuid4().hex[:8]}@example.com"
    account_id = clarity_account(clarity_api, email=email, tax_id="11-1111111")
    erp_name = syncer.sync_from("clarity", str(account_id)).changes["erp"].external_id
    r = erp_api.put(f"/api/resource/Customer/{erp_name}", json={"tax_id": "22-2222222"})
    assert r.status_code == 200, r.text
    r = clarity_api.put("/Accounts/Account/Update", json={"ID": account_id, "EIN": "33-3333333"})
    assert r.status_code == 200, r.text

    outcome = syncer.sync_from("clarity", str(account_id))
    assert [(c.field, c.system, c.winner) for c in outcome.conflicts] == [("tax_id", "clarity", "erp")]
    assert outcome.changes["clarity"].fields == ("tax_id",)
    assert clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()["EIN"] == "22-2222222"
    assert "33-3333333" not in caplog.text and "22-2222222" not in caplog.text


def test_a_dry_run_reports_the_patches_and_writes_nothing(
        syncer: CustomerSyncer, clarity_api: httpx.Client, stripe_api: httpx.Client, engine: Engine) -> None:
    email = f"kat.{uuid.uuid4().hex[:8]}@example.com"
    account_id = clarity_account(clarity_api, email=email)
    outcome = syncer.sync_from("clarity", str(account_id), dry_run=True)
    assert outcome.dry_run and outcome.entity_id is None  # no id linked yet, and none made
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "unchanged", "stripe": "created", "erp": "created"}
    found = stripe_api.get("/v1/customers/search", params={"query": f"email:'{email}'"}).json()["data"]
    assert found == []
    assert SqlIdentityMap(engine).lookup("customer", "clarity_account", str(account_id)) is None
    assert json.dumps(outcome.patches) == "{}"  # nothing to patch: the two missing ones would be created


def test_a_stripe_customer_alone_is_created_in_clarity_and_erpnext(
        syncer: CustomerSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"Mary.{uuid.uuid4().hex[:8]}@Example.com"
    r = stripe_api.post("/v1/customers", data={
        "email": email, "name": "Mary Somerville", "phone": "+442071234567", "address[line1]": "10 Downing St",
        "address[city]": "London", "address[postal_code]": "SW1A 2AA", "address[country]": "GB",
        "shipping[name]": "Mary Somerville", "shipping[address][line1]": "1 Kew Rd",
        "shipping[address][city]": "Richmond", "shipping[address][postal_code]": "TW9 3AB",
        "shipping[address][country]": "GB"})
    assert r.status_code == 200, r.text
    cus = r.json()
    outcome = syncer.sync_from("stripe", cus["id"])
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "created", "stripe": "updated", "erp": "created"}  # Stripe gets the two new ids
    account = clarity_api.get(f"/Accounts/Account/ID/{outcome.changes['clarity'].external_id}").json()
    assert account["CustomKey"] == f"cb-{outcome.entity_id}" and account["Name"] == "Mary Somerville"
    billing = next(r["Slave"] for r in account["AccountContacts"] if r.get("IsBilling"))
    shipping = next(r["Slave"] for r in account["AccountContacts"] if r.get("IsPrimary"))
    assert (billing["Phone1"], billing["Address"]["PostalCode"]) == ("+442071234567", "SW1A 2AA")
    assert billing["Email1"].casefold() == email.casefold()  # the domain normalised to lower case
    assert shipping["Address"]["City"] == "Richmond"
    customer = erp_doc(erp_api, "Customer", outcome.changes["erp"].external_id)
    addresses = erp_api.get("/api/resource/Address", params={
        "filters": json.dumps([["Dynamic Link", "link_name", "=", customer["name"]]]),
        "fields": json.dumps(["address_type", "city", "is_shipping_address"])}).json()["data"]
    assert sorted((a["address_type"], a["city"]) for a in addresses) == [("Billing", "London"),
                                                                         ("Shipping", "Richmond")]
    metadata = stripe_api.get(f"/v1/customers/{cus['id']}").json()["metadata"]
    assert metadata == {"clarity_account_id": outcome.changes["clarity"].external_id,
                        "erp_customer": customer["name"]}
    for system, ident in (("stripe", cus["id"]), ("clarity", outcome.changes["clarity"].external_id),
                          ("erp", customer["name"])):
        assert syncer.sync_from(system, ident).result == "unchanged"


def test_an_erpnext_customer_alone_is_created_in_clarity_and_stripe_and_a_shared_contact_is_split(
        syncer: CustomerSyncer, clarity_api: httpx.Client, erp_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"emmy.{uuid.uuid4().hex[:8]}@example.com"
    r = erp_api.post("/api/resource/Customer", json={"customer_name": "Emmy Noether", "email_id": email,
                                                      "mobile_no": "+4930123456", "tax_id": "DE123"})
    assert r.status_code == 200, r.text
    name = r.json()["data"]["name"]
    outcome = syncer.sync_from("erp", name)
    assert {s: c.action for s, c in outcome.changes.items()} == {
        "clarity": "created", "stripe": "created", "erp": "unchanged"}
    account_id = int(outcome.changes["clarity"].external_id)
    assert clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()["EIN"] == "DE123"
    assert stripe_api.get(f"/v1/customers/{outcome.changes['stripe'].external_id}").json()["phone"] == "+4930123456"

    # one Clarity contact that is both billing and shipping; ERPNext gets a shipping address of its own
    account = clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()
    row = next(r for r in account["AccountContacts"] if r.get("IsBilling"))
    r = clarity_api.put("/Accounts/AccountContact/Update", json={"ID": row["ID"], "IsPrimary": True})
    assert r.status_code == 200, r.text
    r = erp_api.post("/api/resource/Address", json={
        "address_title": name, "address_type": "Shipping", "address_line1": "Bunsenstr. 3", "city": "Göttingen",
        "pincode": "37073", "country": "Germany", "is_shipping_address": 1,
        "links": [{"link_doctype": "Customer", "link_name": name}]})
    assert r.status_code == 200, r.text
    again = syncer.sync_from("erp", name)
    assert again.changes["clarity"].fields == ("shipping_address",), again
    account = clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()
    rows = [r for r in account["AccountContacts"] if r.get("Active", True)]
    assert [(bool(r.get("IsBilling")), bool(r.get("IsPrimary"))) for r in rows] == [(True, False), (False, True)]
    assert rows[1]["Slave"]["Address"]["City"] == "Göttingen"
    assert syncer.sync_from("clarity", str(account_id)).result == "unchanged"


def test_a_customer_whose_phone_cannot_be_read_fails_naming_the_field(
        syncer: CustomerSyncer, clarity_api: httpx.Client) -> None:
    from commerce_bridge.errors import MappingError

    account_id = clarity_account(clarity_api, email=f"bad.{uuid.uuid4().hex[:8]}@example.com", phone="12")
    with pytest.raises(MappingError) as caught:
        syncer.sync_from("clarity", str(account_id))
    assert caught.value.details["field"] == "phone"


def test_a_quick_sync_of_a_record_in_step_reads_only_it_and_a_changed_one_is_synced_in_full(
        syncer: CustomerSyncer, clarity_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"lise.{uuid.uuid4().hex[:8]}@example.com"
    account_id = clarity_account(clarity_api, email=email)
    first = syncer.sync_from("clarity", str(account_id))
    cus_id = first.changes["stripe"].external_id
    for system, ident in (("clarity", str(account_id)), ("stripe", cus_id),
                          ("erp", first.changes["erp"].external_id)):
        echo = syncer.sync_from(system, ident, quick=True)  # the bridge's own writes coming back
        assert (echo.in_step, echo.result, echo.entity_id) == (True, "unchanged", first.entity_id), system
    r = stripe_api.post(f"/v1/customers/{cus_id}", data={"name": "Lise Meitner"})
    assert r.status_code == 200, r.text
    changed = syncer.sync_from("stripe", cus_id, quick=True)  # a person's change: the read one wins
    assert not changed.in_step and changed.changes["clarity"].fields == ("name",)
    assert clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()["Name"] == "Lise Meitner"
    assert syncer.sync_from("clarity", str(account_id), quick=True).in_step
