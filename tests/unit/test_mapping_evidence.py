"""Dispute evidence mapping: a Clarity order as Stripe's evidence fields, within limits, never card data."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.evidence import (
    COMBINED_TEXT_LIMIT,
    FILE_FIELDS,
    LONG_TEXT_LIMIT,
    SHORT_TEXT_LIMIT,
    TEXT_FIELDS,
    SentMail,
    blank_fields_only,
    evidence_chars,
    evidence_digest,
    evidence_from_order,
    scrub_card_numbers,
    sent_mail_entity,
    sent_mail_link,
    sent_mails,
)

VISA = "4242424242424242"
AMEX = "378282246310005"


def clarity_order(**extra: Any) -> dict[str, Any]:
    """A shipped order as GET /Ordering/SalesOrder/Key/{key} returns it (full projection)."""
    contact = {"FirstName": "Ann", "LastName": "Lee", "Email1": "ann@example.com", "Phone1": "+15125550100",
               "Address": {"Street1": "1 Main St", "Street2": "Apt 2", "City": "Austin", "RegionCode": "TX",
                           "PostalCode": "78701", "CountryCode": "US"}}
    ship_to = {"FirstName": "Bob", "LastName": "Lee",
               "Address": {"Street1": "9 Side Rd", "City": "Dallas", "RegionCode": "TX", "PostalCode": "75201",
                           "CountryCode": "US"}}
    order: dict[str, Any] = {
        "ID": 42, "CustomKey": "WEB-100001", "CurrencyKey": "USD", "StatusKey": "Shipped",
        "CreatedDate": "2026-12-01T10:00:00", "ActualShipDate": "2026-12-02T08:30:00", "TrackingNumber": "1Z999AA1",
        "BillingContact": contact, "ShippingContact": ship_to,
        "Totals": {"SubTotal": "31.5000", "Shipping": "5.0000", "Tax": "1.2000", "Discounts": "-2.0000",
                   "Total": "35.7000"},
        "SalesItems": [{"Sku": "SKU-1", "Name": "Widget", "Quantity": "2.0000", "UnitCorePrice": "12.5000"},
                       {"Sku": "SKU-2", "Name": "Gadget", "Quantity": 1, "UnitCorePrice": "6.5000"}],
        "SerializableAttributes": {"ShippingCarrier": {"Key": "ShippingCarrier", "Value": "UPS"},
                                   "CustomerIPAddress": {"Key": "CustomerIPAddress", "Value": "203.0.113.9"}},
    }
    order.update(extra)
    return order


def luhn_runs(text: str) -> list[str]:
    """Every run of 13-19 digits (spaces or dashes between them allowed) that passes the Luhn check."""
    found = []
    for match in re.finditer(r"\d(?:[ -]?\d){12,18}", text):
        digits = re.sub(r"\D", "", match.group())
        total = sum(int(c) if i % 2 == 0 else (int(c) * 2 - 9 if int(c) > 4 else int(c) * 2)
                    for i, c in enumerate(reversed(digits)))
        if total % 10 == 0:
            found.append(digits)
    return found


def test_a_shipped_order_fills_every_field_the_bridge_knows() -> None:
    mails = [SentMail("2026-12-01T10:05:00Z", "Please confirm your payment for order WEB-100001")]
    ev = evidence_from_order(clarity_order(), mails=mails, charge_id="ch_1")
    assert {k: v for k, v in ev.items() if k != "uncategorized_text"} == {
        "customer_name": "Ann Lee",
        "customer_email_address": "ann@example.com",
        "billing_address": "Ann Lee, 1 Main St, Apt 2, Austin, TX 78701, US",
        "shipping_address": "Bob Lee, 9 Side Rd, Dallas, TX 75201, US",
        "shipping_carrier": "UPS",
        "shipping_tracking_number": "1Z999AA1",
        "shipping_date": "2026-12-02",
        "product_description": "2 x Widget (SKU-1)\n1 x Gadget (SKU-2)",
        "customer_purchase_ip": "203.0.113.9",
    }
    assert ev["uncategorized_text"] == (
        "Order WEB-100001 (Clarity order 42), placed 2026-12-01 10:00:00 (store time).\n"
        "Placed from IP address 203.0.113.9.\n"
        "Receipt:\n"
        "  2 x Widget (SKU-1) at 12.50 USD\n"
        "  1 x Gadget (SKU-2) at 6.50 USD\n"
        "  Shipping: 5.00 USD\n"
        "  Tax: 1.20 USD\n"
        "  Discount: -2.00 USD\n"
        "  Total: 35.70 USD, paid with Stripe charge ch_1\n"
        "E-mails the shop sent to the customer:\n"
        "  2026-12-01T10:05:00Z Please confirm your payment for order WEB-100001")
    assert list(ev) == [f for f in TEXT_FIELDS if f in ev]  # in the documented order
    assert not FILE_FIELDS & ev.keys(), "receipt and customer_communication take File ids, never text"


def test_an_order_not_shipped_yet_has_no_shipping_evidence_but_its_address() -> None:
    order = clarity_order(SerializableAttributes={})
    for name in ("ActualShipDate", "TrackingNumber"):
        order.pop(name)
    ev = evidence_from_order(order)
    assert not {"shipping_carrier", "shipping_tracking_number", "shipping_date", "customer_purchase_ip"} & ev.keys()
    assert ev["shipping_address"].startswith("Bob Lee")
    assert "IP address" not in ev["uncategorized_text"] and "E-mails" not in ev["uncategorized_text"]


def test_missing_data_is_left_out_never_invented() -> None:
    assert evidence_from_order({"ID": 7, "UserContactEmail": "x@example.com"}) == {
        "customer_email_address": "x@example.com",
        "uncategorized_text": "Order (Clarity order 7).\nReceipt: not available (the order's currency, items or "
                              "totals are not consistent in Clarity)."}


def test_a_shipping_address_same_as_billing_is_the_billing_address() -> None:
    order = clarity_order(ShippingSameAsBilling=True)
    order.pop("ShippingContact")
    assert evidence_from_order(order)["shipping_address"] == "Ann Lee, 1 Main St, Apt 2, Austin, TX 78701, US"


def test_an_ip_that_is_not_an_ip_address_is_left_out_and_attribute_names_come_from_the_workflow() -> None:
    attrs = {"ShippingCarrier": {"Value": "UPS"}, "CustomerIPAddress": {"Value": "not-an-ip"},
             "Carrier": {"Value": "DHL"}, "ClientIP": {"Value": "2001:db8::1"}}
    assert "customer_purchase_ip" not in evidence_from_order(clarity_order(SerializableAttributes=attrs))
    ev = evidence_from_order(clarity_order(SerializableAttributes=attrs), carrier_attribute="Carrier",
                             ip_attribute="ClientIP")
    assert (ev["shipping_carrier"], ev["customer_purchase_ip"]) == ("DHL", "2001:db8::1")


def test_an_order_whose_totals_do_not_add_up_still_gives_evidence_without_a_receipt() -> None:
    ev = evidence_from_order(clarity_order(Totals={"SubTotal": "1.0000", "Total": "1.0000"}))
    assert "Receipt: not available" in ev["uncategorized_text"] and ev["customer_name"] == "Ann Lee"


def test_an_order_that_is_not_an_object_is_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        evidence_from_order(["not", "an", "order"])  # type: ignore[arg-type]


def test_no_card_data_gets_in_from_items_attributes_payments_or_a_tracking_number() -> None:
    payment = {"Slave": {"Last4CardDigits": "4242", "CardType": "Visa", "CardHolderName": "ANN Q CARDHOLDER",
                         "ExpirationMonth": 12, "ExpirationYear": 2031, "Token": "pm_card_visa"}}
    order = clarity_order(
        TrackingNumber="4242 4242 4242 4242", SalesOrderPayments=[payment],
        SalesItems=[{"Sku": "SKU-1", "Name": f"Gift card {VISA}", "Quantity": 1, "UnitCorePrice": "31.5000"}],
        SerializableAttributes={"ShippingCarrier": {"Value": f"UPS {AMEX[:4]}-{AMEX[4:10]}-{AMEX[10:]}"}},
        BillingContact={**clarity_order()["BillingContact"], "LastName": "Lee 5555-5555-5555-4444"})
    mails = [SentMail("2026-12-01T10:05:00Z", f"card {VISA} declined")]
    ev = evidence_from_order(order, mails=mails)
    text = "\n".join(ev.values())
    assert luhn_runs(text) == []
    assert "4242" not in text and "ANN Q CARDHOLDER" not in text and "2031" not in text and "Visa" not in text
    assert "shipping_tracking_number" not in ev  # a card number is not a tracking number
    assert "[card number removed]" in ev["product_description"] and "[card number removed]" in ev["shipping_carrier"]


@pytest.mark.parametrize(("text", "kept"), [
    ("order 1234567890123", True),  # 13 digits, not Luhn-valid
    ("tracking 123456789012", True),  # 12 digits: too short for a card
    ("ref 40874138443622436890", True),  # 20 digits, no 13-19 of them pass the check
    (f"glued 1{VISA}7", False),  # a card number inside a longer run of digits
    (f"pan {VISA}", False), (f"pan {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]}", False),
    (f"amex {AMEX}", False), ("maestro 6759-6498-2643-8453", False),
])
def test_scrubbing_removes_card_numbers_only(text: str, kept: bool) -> None:
    assert (scrub_card_numbers(text) == text) is kept
    assert VISA not in scrub_card_numbers(text) and AMEX not in scrub_card_numbers(text)


def test_an_identifier_is_only_scrubbed_when_it_is_a_card_number_itself() -> None:
    usps = "9400111899223100000011"  # 22 digits; some 13-19 of them pass the Luhn check
    assert scrub_card_numbers(usps) != usps and scrub_card_numbers(usps, strict=False) == usps
    assert "shipping_tracking_number" in evidence_from_order(clarity_order(TrackingNumber=usps))


def test_long_lists_are_cut_to_stripe_s_limits_saying_how_many_were_left_out() -> None:
    items = [{"Sku": f"SKU-{n}", "Name": f"Item number {n} " + "x" * 80, "Quantity": 1, "UnitCorePrice": "1.0000"}
             for n in range(1000)]
    mails = [SentMail(f"2026-12-01T10:{n % 60:02d}:00Z", f"Reminder {n}: order WEB-100001 " + "y" * 100)
             for n in range(1000)]
    order = clarity_order(SalesItems=items, Totals={"SubTotal": "1000.0000", "Total": "1000.0000"})
    ev = evidence_from_order(order, mails=mails)
    assert len(ev["product_description"]) <= LONG_TEXT_LIMIT and len(ev["uncategorized_text"]) <= LONG_TEXT_LIMIT
    assert re.search(r"\((\d+) more items not listed\)$", ev["product_description"])
    shown = ev["product_description"].count("\n")
    assert ev["product_description"].endswith(f"({1000 - shown} more items not listed)")
    assert evidence_chars(ev) <= COMBINED_TEXT_LIMIT


def test_a_field_without_a_stripe_limit_is_cut_at_the_bridge_s_bound() -> None:
    ev = evidence_from_order(clarity_order(BillingContact={"FullName": "N" * 9000, "Email1": "a@example.com"}))
    assert len(ev["customer_name"]) == SHORT_TEXT_LIMIT and ev["customer_name"].endswith("…")


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30_000)


@settings(max_examples=40, deadline=None)
@given(name=_text, street=_text, item=_text, tracking=_text, carrier=_text,
       pan=st.sampled_from([VISA, AMEX, "5555555555554444", "6011111111111117"]),
       n_items=st.integers(0, 400), n_mails=st.integers(0, 400))
def test_any_order_gives_evidence_within_every_limit_and_free_of_card_numbers(
        name: str, street: str, item: str, tracking: str, carrier: str, pan: str, n_items: int, n_mails: int) -> None:
    order = clarity_order(
        BillingContact={"FullName": f"{name} {pan}", "Email1": "a@example.com", "Address": {"Street1": street}},
        ShippingContact={"FullName": name, "Address": {"Street1": f"{street} {pan}", "CountryCode": "US"}},
        SalesItems=[{"Sku": f"S{n}", "Name": f"{item} {pan}", "Quantity": 1} for n in range(n_items)],
        TrackingNumber=tracking, SerializableAttributes={"ShippingCarrier": {"Value": carrier + pan}})
    mails = [SentMail("2026-12-01T00:00:00Z", f"{item[:200]} {pan}") for _ in range(n_mails)]
    ev = evidence_from_order(order, mails=mails)
    assert evidence_chars(ev) <= COMBINED_TEXT_LIMIT
    for field, value in ev.items():
        assert value, field
        assert len(value) <= (LONG_TEXT_LIMIT if field in ("product_description", "uncategorized_text")
                              else SHORT_TEXT_LIMIT), field
        assert pan not in re.sub(r"[ -]", "", value), field


def test_only_blank_fields_are_filled_never_what_the_dispute_has() -> None:
    current = {"customer_name": "Typed by a person", "shipping_carrier": None, "receipt": "file_1",
               "uncategorized_text": ""}
    proposed = {"customer_name": "Ann Lee", "shipping_carrier": "UPS", "uncategorized_text": "Order ...",
                "receipt": "not a file"}
    assert blank_fields_only(current, proposed) == {"shipping_carrier": "UPS", "uncategorized_text": "Order ..."}
    assert blank_fields_only(None, {"customer_name": "Ann", "billing_address": ""}) == {"customer_name": "Ann"}


def test_the_digest_is_the_same_for_the_same_content_and_differs_with_submit_or_fields() -> None:
    a = evidence_digest("dp_1", {"customer_name": "Ann", "shipping_carrier": "UPS"}, False)
    assert a == evidence_digest("dp_1", {"shipping_carrier": "UPS", "customer_name": "Ann"}, False)
    assert len({a, evidence_digest("dp_1", {"customer_name": "Ann", "shipping_carrier": "UPS"}, True),
                evidence_digest("dp_2", {"customer_name": "Ann", "shipping_carrier": "UPS"}, False),
                evidence_digest("dp_1", {"customer_name": "Ann"}, False)}) == 4


def test_a_sent_mail_record_fits_the_identity_map_and_reads_back_oldest_first() -> None:
    later = sent_mail_link("<" + "r" * 300 + "@commerce-bridge>", "S" * 400, datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    first = sent_mail_link("<run.step@commerce-bridge>", "Order WEB-1 was cancelled",
                           datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC))
    for system, external in (later, first):
        assert len(system) <= 40 and len(external) <= 255
    assert first[0] != later[0]
    links = dict([later, first, ("stripe", "cus_1")])
    assert len(sent_mail_entity("W" * 128)) <= 64 and sent_mail_entity("WEB-1") != sent_mail_entity("WEB-2")
    assert sent_mails(links) == [SentMail("2026-12-01T09:00:05Z", "Order WEB-1 was cancelled"),
                                 SentMail("2026-12-02T09:00:00Z", "S" * 234)]


def test_an_item_with_a_huge_name_or_an_odd_quantity_is_still_described_within_the_limit() -> None:
    items = [{"Sku": "BIG", "Name": "z" * 30_000, "Quantity": 1}, {"Sku": "ODD", "Quantity": "about two"},
             {"ProductKey": "NOQ", "ProductName": "No quantity"}, {"Sku": "INF", "Quantity": "Infinity"}]
    ev = evidence_from_order(clarity_order(SalesItems=items))
    assert len(ev["product_description"]) == LONG_TEXT_LIMIT and ev["product_description"].endswith("…")
    small = evidence_from_order(clarity_order(SalesItems=items[1:]))
    assert small["product_description"] == "ODD\nNo quantity (NOQ)\nINF"
