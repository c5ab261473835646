"""The inbox events of polled customer changes: stable ids (the pollers' overlap is stored once), ids and dates only."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from commerce_bridge.connectors.clarity.changes import account_change_event
from commerce_bridge.services.customer_poll import customer_event

ZONE = ZoneInfo("America/Chicago")
ACCOUNT = {"ID": 17, "CustomKey": "ACCT-1", "Name": "Ada Lovelace", "CreatedDate": "2026-12-01T10:00:00",
           "UpdatedDate": "2026-12-07T10:00:00"}


def test_an_account_change_has_an_id_of_its_id_and_date_and_no_personal_data() -> None:
    event = account_change_event(ACCOUNT, ZONE)
    assert event == account_change_event(dict(ACCOUNT), ZONE)
    assert event["id"].startswith("clarity-ac-") and event["type"] == "account.updated"
    assert event["data"] == {"ID": 17, "CustomKey": "ACCT-1", "CreatedDate": "2026-12-01T10:00:00",
                             "UpdatedDate": "2026-12-07T10:00:00"}
    assert account_change_event({**ACCOUNT, "UpdatedDate": "2026-12-01T10:00:00"}, ZONE)["type"] == "account.created"
    assert account_change_event({**ACCOUNT, "UpdatedDate": "2026-12-07T10:00:01"}, ZONE)["id"] != event["id"]


def test_a_contact_change_becomes_an_event_of_its_account() -> None:
    contact = {"ID": 42, "Email1": "ada@example.com", "Phone1": "+14155550101", "UpdatedDate": "2026-12-07T10:00:00"}
    event = account_change_event(contact, ZONE, account_id=17)
    assert event["id"].startswith("clarity-ct-") and event["type"] == "account.updated"
    assert event["data"] == {"ID": 17, "ContactID": 42, "UpdatedDate": "2026-12-07T10:00:00"}
    assert event["id"] != account_change_event(contact, ZONE, account_id=18)["id"]


def test_an_erpnext_change_names_its_customer_and_a_document_of_no_customer_makes_none() -> None:
    row = {"name": "Ada Lovelace-CUST-1", "modified": "2026-12-07 10:00:00.123456", "link_name": "CUST-1"}
    event = customer_event("Contact", row)
    assert event is not None and event == customer_event("Contact", dict(row))
    assert event["data"] == {"customer": "CUST-1", "doctype": "Contact", "name": "Ada Lovelace-CUST-1",
                             "modified": "2026-12-07 10:00:00.123456"}
    assert event["id"] != (customer_event("Address", row) or {})["id"]
    assert customer_event("Contact", {**row, "link_name": None}) is None
    customer = customer_event("Customer", {"name": "CUST-1", "modified": "2026-12-07 10:00:00"})
    assert customer is not None and customer["data"]["customer"] == "CUST-1"
