"""Customer sync readers: Clarity, Stripe and ERPNext shapes into one canonical CustomerRecord."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.customer_record import (
    CustomerRecord,
    from_clarity,
    from_erp,
    from_stripe,
    parse_time,
    restamp,
)
from commerce_bridge.mapping.customer_sync import dedupe_keys

FIXTURES = Path("/work/shared/data/stripe/fixtures3.json")
AUSTIN = Address(line1="1 Main St", city="Austin", country="US", postal_code="78701", region="TX")


def clarity_account() -> dict[str, Any]:
    """An Account full model as the Clarity simulator renders it (AccountContacts with nested Slave)."""
    return {
        "ID": 7, "CustomKey": "ACCT-0007", "Name": "Ann  Lee", "Active": True, "EIN": "12-3456789",
        "CreatedDate": "2026-11-20T09:00:00.000000", "UpdatedDate": "2026-11-27T05:31:11.123456",
        "StatusKey": "NORMAL", "TypeKey": "CUSTOMER",
        "AccountContacts": [
            {"ID": 11, "MasterID": 7, "IsBilling": True, "IsPrimary": False, "Active": True,
             "Slave": {"ID": 21, "FirstName": "Ann", "LastName": "Lee", "FullName": "Ann Lee",
                       "Email1": "Ann.Lee@Example.COM", "Phone1": "(512) 555-0100",
                       "UpdatedDate": "2026-11-27T05:31:12.000000",
                       "Address": {"ID": 31, "Street1": "1 Main St", "City": "Austin", "RegionCode": "TX",
                                   "PostalCode": "78701", "CountryCode": "US",
                                   "UpdatedDate": "2026-11-28T10:00:00.000000"}}},
            {"ID": 12, "MasterID": 7, "IsPrimary": True, "Active": True,
             "Slave": {"ID": 22, "FirstName": "Ann", "LastName": "Lee",
                       "UpdatedDate": "2026-11-26T08:00:00.000000",
                       "Address": {"ID": 32, "Street1": "Unter den Linden 1", "City": "Berlin",
                                   "PostalCode": "10117", "CountryCode": "DE"}}},
        ],
    }


def stripe_customer() -> dict[str, Any]:
    """Stripe's own example Customer (fixtures3.json) filled in with a realistic customer."""
    customer: dict[str, Any] = copy.deepcopy(json.loads(FIXTURES.read_text())["resources"]["customer"])
    customer.update({
        "id": "cus_QXg1o8vcGmoR32", "name": "Ann Lee", "email": "ann.lee@example.com", "phone": "+1 512-555-0100",
        "address": {"line1": "1 Main St", "line2": None, "city": "Austin", "state": "Texas",
                    "postal_code": "78701", "country": "US"},
        "shipping": {"name": "Ann Lee", "phone": None,
                     "address": {"line1": "Unter den Linden 1", "line2": None, "city": "Berlin", "state": None,
                                 "postal_code": "10117", "country": "DE"}},
        "metadata": {"clarity_customer_id": "42", "clarity_account_id": "7", "bridge": "commerce-bridge"},
    })
    return customer


def erp_docs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Customer, primary Contact and billing Address as the ERP simulator returns them."""
    customer = {"name": "Ann Lee", "doctype": "Customer", "customer_name": "Ann Lee", "customer_type": "Individual",
                "tax_id": "DE123456789", "email_id": "ann.lee@example.com", "mobile_no": "+15125550100",
                "customer_primary_contact": "Ann Lee-Ann Lee", "modified": "2026-12-01 10:00:00.000000"}
    contact = {"name": "Ann Lee-Ann Lee", "doctype": "Contact", "first_name": "Ann Lee",
               "email_id": "ann.lee@example.com", "mobile_no": "5125550100", "phone": "",
               "email_ids": [{"email_id": "ann.lee@example.com", "is_primary": 1}],
               "modified": "2026-12-02 10:00:00.000000"}
    address = {"name": "Ann Lee-Billing", "doctype": "Address", "address_title": "Ann Lee", "address_type": "Billing",
               "address_line1": "1 Main St", "city": "Austin", "state": "TX", "pincode": "78701",
               "country": "United States", "modified": "2026-12-03 10:00:00.000000"}
    return customer, contact, address


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_clarity_reader_takes_the_account_and_its_billing_and_shipping_contacts() -> None:
    record = from_clarity(clarity_account(), user={"ID": 42, "Email": "other@example.com",
                                                   "UpdatedDate": "2026-11-29T00:00:00"})
    assert record.system == "clarity"
    assert record.name == "Ann Lee"
    assert (record.email, record.email_display) == ("Ann.Lee@example.com", "Ann.Lee@Example.COM")
    assert record.phone == "+15125550100"  # national form read with the billing country
    assert record.billing_address == AUSTIN
    assert record.shipping_address == Address("Unter den Linden 1", "Berlin", "DE", "10117")
    assert record.tax_id == "12-3456789"
    assert dict(record.ids) == {"clarity": "42", "clarity_account": "7", "clarity_key": "ACCT-0007"}
    assert record.updated_at["name"] == at("2026-11-27T05:31:11.123456")
    assert record.updated_at["email"] == at("2026-11-27T05:31:12")
    assert record.updated_at["billing_address"] == at("2026-11-28T10:00:00")  # the Address row's own time
    assert record.updated_at["shipping_address"] == at("2026-11-26T08:00:00")  # no row time: the contact's


def test_clarity_reader_uses_the_user_email_when_the_contact_has_none_and_reads_dates_in_the_server_zone() -> None:
    account = clarity_account()
    del account["AccountContacts"][0]["Slave"]["Email1"]
    record = from_clarity(account, user={"ID": 42, "Email": "ann@example.com", "UpdatedDate": "2026-11-29T00:00:00"},
                          tz=timezone(timedelta(hours=-6)))
    assert record.email == "ann@example.com"
    assert record.updated_at["email"] == at("2026-11-29T06:00:00")


def test_stripe_reader_on_the_fixture_shape() -> None:
    record = from_stripe(stripe_customer(), updated_at=1_795_760_000)
    assert record.name == "Ann Lee"
    assert record.email == "ann.lee@example.com"
    assert record.phone == "+15125550100"
    assert record.billing_address == AUSTIN  # Texas -> TX
    assert record.shipping_address == Address("Unter den Linden 1", "Berlin", "DE", "10117")
    assert record.tax_id == ""
    assert dict(record.ids) == {"clarity": "42", "clarity_account": "7", "stripe": "cus_QXg1o8vcGmoR32"}
    assert set(record.updated_at) == {"name", "email", "phone", "billing_address", "shipping_address"}


def test_stripe_reader_on_the_bare_fixture_gives_an_empty_record() -> None:
    bare = json.loads(FIXTURES.read_text())["resources"]["customer"]
    record = from_stripe(bare, updated_at=datetime(2026, 12, 7, tzinfo=UTC))
    assert (record.name, record.email, record.phone, record.billing_address, record.shipping_address) == (
        "", "", "", None, None)
    assert dedupe_keys(record) == ["stripe:cus_QXg1o8vcGmoR32"]


def test_erp_reader_takes_email_and_phone_from_the_contact() -> None:
    customer, contact, address = erp_docs()
    record = from_erp(customer, contact, address)
    assert (record.name, record.email, record.phone, record.tax_id) == (
        "Ann Lee", "ann.lee@example.com", "+15125550100", "DE123456789")
    assert record.billing_address == AUSTIN
    assert record.shipping_address is None
    assert dict(record.ids) == {"erp": "Ann Lee"}
    assert record.updated_at["name"] == at("2026-12-01T10:00:00")
    assert record.updated_at["phone"] == at("2026-12-02T10:00:00")
    assert record.updated_at["billing_address"] == at("2026-12-03T10:00:00")


def test_erp_reader_without_contact_uses_the_customer_fields() -> None:
    customer, _contact, _address = erp_docs()
    record = from_erp(customer)
    assert record.email == "ann.lee@example.com"
    assert record.updated_at["email"] == at("2026-12-01T10:00:00")


def test_unparseable_phone_is_a_mapping_error_with_a_fix() -> None:
    customer = stripe_customer() | {"phone": "call me maybe"}
    with pytest.raises(MappingError) as info:
        from_stripe(customer, updated_at=0)
    assert info.value.details["field"] == "phone"
    assert "international form" in (info.value.suggested_fix or "")


def test_national_phone_without_a_country_is_a_mapping_error_not_a_guess() -> None:
    customer, contact, _address = erp_docs()
    with pytest.raises(MappingError) as info:
        from_erp(customer, contact)
    assert "no country" in info.value.message
    assert info.value.suggested_fix


def test_invalid_email_is_a_mapping_error_with_a_fix() -> None:
    account = clarity_account()
    account["AccountContacts"][0]["Slave"]["Email1"] = "ann at example"
    with pytest.raises(MappingError) as info:
        from_clarity(account)
    assert info.value.details == {"system": "clarity", "field": "email"}
    assert info.value.suggested_fix


def test_invalid_address_is_a_mapping_error_naming_the_field() -> None:
    customer, contact, address = erp_docs()
    with pytest.raises(MappingError) as info:
        from_erp(customer, contact, shipping_address=address | {"pincode": "ABCDE"})
    assert "shipping_address.postal_code" in info.value.details["fields"]
    assert "postal_code" in info.value.message
    assert info.value.suggested_fix


def test_unreadable_date_is_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        parse_time("yesterday", field="modified")
    assert parse_time("2026-12-07T12:00:00Z") == datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_restamp_keeps_the_time_of_unchanged_fields() -> None:
    first = from_stripe(stripe_customer(), updated_at=1_000)
    second = from_stripe(stripe_customer() | {"name": "Ann B. Lee"}, updated_at=2_000)
    stamped = restamp(second, first)
    assert stamped.updated_at["name"] == datetime.fromtimestamp(2_000, UTC)
    assert stamped.updated_at["email"] == datetime.fromtimestamp(1_000, UTC)
    assert restamp(second, None) is second


def test_dedupe_keys_cover_email_custom_key_and_ids() -> None:
    record = from_clarity(clarity_account(), user={"ID": 42})
    assert dedupe_keys(record) == ["email:ann.lee@example.com", "clarity:42", "clarity_account:7",
                                   "clarity_key:ACCT-0007"]
    gmail = CustomerRecord(system="erp", email="A.nn+shop@GoogleMail.com", ids={"erp": "Ann Lee"})
    assert dedupe_keys(gmail) == ["email:ann@gmail.com", "erp:Ann Lee"]


def test_clarity_account_without_contacts_has_no_email_phone_or_addresses() -> None:
    account = clarity_account()
    del account["AccountContacts"]
    record = from_clarity(account)
    assert (record.email, record.phone, record.billing_address, record.shipping_address) == ("", "", None, None)
    assert set(record.updated_at) == {"name", "tax_id"}


def test_parse_time_reads_naive_datetimes_in_the_zone_and_refuses_other_types() -> None:
    naive = datetime(2026, 12, 7, 12)
    assert parse_time(naive, timezone(timedelta(hours=1))) == datetime(2026, 12, 7, 11, tzinfo=UTC)
    assert parse_time(None) is None
    with pytest.raises(MappingError):
        parse_time(1.5)
