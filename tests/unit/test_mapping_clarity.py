"""Clarity SalesOrder JSON -> domain Order (totals checked), contacts, money and AddPayment bodies."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Address, PaymentSummary
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.clarity import (
    add_payment_body,
    address_from_clarity,
    customer_from_clarity,
    decimal_from_clarity,
    money_from_clarity,
    money_to_clarity,
    order_from_clarity,
)

# The shape GET /Ordering/SalesOrder/ID/{id} returns from the simulator (trimmed), decimals as CEF writes them.
ORDER_JSON = """{
 "ID": 1, "Active": true, "CustomKey": "WEB-100001", "UserID": 3, "AccountID": 9, "CurrencyKey": "USD",
 "SalesItems": [
  {"Sku": "SKU-1", "ProductKey": "SKU-1", "Quantity": 2, "UnitCorePrice": 12.5000, "UnitSoldPrice": 12.5000,
   "Name": "Widget", "ID": 1, "TotalQuantity": 2, "ExtendedPrice": 25.0000, "Active": true},
  {"ProductKey": "SKU-2", "Quantity": 1, "UnitCorePrice": 3.9900, "ID": 2, "TotalQuantity": 1,
   "ExtendedPrice": 3.9900}
 ],
 "Totals": {"SubTotal": 28.9900, "Shipping": 5.0000, "Discounts": -2.0000, "Tax": 1.2000, "Total": 33.1900},
 "BalanceDue": 33.1900,
 "SerializableAttributes": {"StripePaymentMethodID": {"Key": "StripePaymentMethodID", "Value": "pm_card_visa"}},
 "StatusKey": "Pending", "StatusName": "Pending",
 "UserKey": "Ann@Example.com", "UserContactEmail": "Ann@Example.com", "UserContactFirstName": "Ann",
 "UserContactLastName": "Lee",
 "BillingContact": {"ID": 2, "FirstName": "Ann", "LastName": "Lee", "Email1": "Ann@Example.com",
  "Phone1": "+1 512 555 0100", "FullName": "Ann Lee",
  "Address": {"Street1": "1 Main St", "City": "Austin", "RegionCode": "TX", "PostalCode": "78701",
              "CountryCode": "US", "ID": 1}},
 "ShippingContact": {"ID": 3, "FirstName": "Bo", "LastName": "Lee",
  "Address": {"Street1": "2 Side St", "Street2": "Unit 4", "Street3": "Back door", "City": "Austin",
              "RegionCode": "TX", "PostalCode": "78702", "CountryCode": "us", "ID": 2}},
 "SalesOrderPayments": [{"ID": 1, "MasterID": 1, "SlaveID": 1,
  "Slave": {"ID": 1, "Amount": 33.1900, "Token": "pm_card_visa", "StatusKey": "No Payment Received"}}]
}"""


def _payload() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ORDER_JSON, parse_float=Decimal)
    return data


def test_simulator_order_maps_to_the_domain() -> None:
    order = order_from_clarity(_payload())
    def usd(minor: int) -> Money:
        return Money(minor, "USD")
    assert (order.external_id, order.key, order.status, order.currency) == ("1", "WEB-100001", "Pending", "USD")
    assert [(li.sku, li.quantity, li.unit_price, li.description) for li in order.lines] == [
        ("SKU-1", 2, usd(1250), "Widget"), ("SKU-2", 1, usd(399), "")]
    assert (order.total, order.tax, order.shipping, order.discount) == (usd(3319), usd(120), usd(500), usd(200))
    assert order.balance_due == usd(3319) and order.computed_total() == order.total
    assert order.payment_method_ref == "pm_card_visa" and order.payment_intent_ref == ""
    assert order.customer.email == "Ann@Example.com" and order.customer.name == "Ann Lee"
    assert order.customer.phone == "+1 512 555 0100"
    assert order.customer.external_ids == {"clarity": "3", "clarity_account": "9"}
    assert order.customer.billing_address == Address("1 Main St", "Austin", "US", "78701", region="TX",
                                                     name="Ann Lee")
    assert order.shipping_address == Address("2 Side St", "Austin", "US", "78702", line2="Unit 4, Back door",
                                             region="TX", name="Bo Lee")


def test_missing_fields_are_zero_or_empty_as_cef_omits_them() -> None:
    payload = {"ID": 5, "CurrencyKey": "jpy", "SalesItems": [
        {"Sku": "A", "Quantity": 3, "UnitSoldPrice": "500", "ExtendedPrice": "1500"},
        {"Sku": "FREE", "Quantity": 1}, {"Sku": "GONE"}],
        "Totals": {"SubTotal": "1500", "Total": "1500"}}
    order = order_from_clarity(payload)
    assert [li.sku for li in order.lines] == ["A", "FREE"]
    assert order.lines[1].unit_price == Money(0, "JPY")
    assert order.tax == order.shipping == order.discount == order.balance_due == Money(0, "JPY")
    assert order.key == "" and order.status == "" and order.shipping_address is None
    assert order.customer.email == "" and order.customer.billing_address is None


def test_handling_and_fees_count_as_shipping_and_status_falls_back_to_the_nested_status() -> None:
    payload = _payload()
    payload["Totals"].update({"Handling": Decimal("1.00"), "Fees": Decimal("0.50"), "Total": Decimal("34.69")})
    del payload["StatusKey"], payload["StatusName"]
    payload["Status"] = {"CustomKey": "On Hold"}
    order = order_from_clarity(payload)
    assert order.shipping == Money(650, "USD") and order.status == "On Hold"


def test_payment_references_fall_back_to_the_payment_rows() -> None:
    payload = _payload()
    del payload["SerializableAttributes"]
    payload["SalesOrderPayments"][0]["Slave"]["TransactionNumber"] = "pi_123"
    order = order_from_clarity(payload)
    assert order.payment_method_ref == "pm_card_visa" and order.payment_intent_ref == "pi_123"
    payload["SalesOrderPayments"] = ["junk", {"Slave": {"Token": "cus_legacy"}}]
    payload["PaymentTransactionID"] = "ch_legacy"
    order = order_from_clarity(payload)
    assert order.payment_method_ref == "" and order.payment_intent_ref == ""


def test_currency_can_come_from_the_nested_currency_or_the_store_default() -> None:
    payload = _payload()
    del payload["CurrencyKey"]
    payload["Currency"] = {"CustomKey": "usd"}
    assert order_from_clarity(payload).currency == "USD"
    del payload["Currency"]
    assert order_from_clarity(payload, default_currency="usd").currency == "USD"
    with pytest.raises(MappingError, match="no currency") as info:
        order_from_clarity(payload)
    assert info.value.suggested_fix


def _mutated(change: Any) -> dict[str, Any]:
    payload = copy.deepcopy(_payload())
    change(payload)
    return payload


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda p: p["Totals"].update(Total=Decimal("33.20")), "Totals.Total"),
    (lambda p: p["Totals"].update(SubTotal=Decimal("29.00")), "SubTotal"),
    (lambda p: p["Totals"].update(Discounts=Decimal("2.00"), Total=Decimal("37.19")), "Totals.Total"),
    (lambda p: p["SalesItems"][0].update(ExtendedPrice=Decimal("26")), "ExtendedPrice"),
    (lambda p: p["SalesItems"][0].update(TotalQuantity=Decimal("1.5")), "fractional"),
    (lambda p: p["SalesItems"][0].update(TotalQuantity=-1), "negative"),
    (lambda p: p["SalesItems"][1].pop("ProductKey"), "no Sku"),
    (lambda p: p["SalesItems"][0].update(UnitSoldPrice=Decimal("12.505")), "finer than one minor unit"),
    (lambda p: p.update(SalesItems={"x": 1}), "not a list"),
    (lambda p: p.pop("SalesItems"), "search"),
    (lambda p: p.pop("ID"), "no ID"),
    (lambda p: p["Totals"].update(Tax=29.000000000000004), "binary float"),
])
def test_inconsistent_or_unrepresentable_orders_are_mapping_errors(change: Any, fragment: str) -> None:
    with pytest.raises(MappingError, match=fragment) as info:
        order_from_clarity(_mutated(change))
    assert info.value.suggested_fix


def test_non_mapping_payload_is_refused() -> None:
    with pytest.raises(MappingError):
        order_from_clarity([])  # type: ignore[arg-type]


def test_money_helpers() -> None:
    assert money_from_clarity("19.9900", "usd") == Money(1999, "USD")
    assert money_to_clarity(Money(1999, "USD")) == "19.99"
    assert money_to_clarity(Money(1500, "JPY")) == "1500"
    assert decimal_from_clarity("2.0000") == Decimal("2")
    with pytest.raises(MappingError):
        money_from_clarity("19.9950", "USD")


def test_contact_helpers() -> None:
    assert address_from_clarity(None) is None and address_from_clarity({"Address": {"City": "x"}}) is None
    assert address_from_clarity({"Address": {"Street1": "1 A St", "CountryKey": "de", "Company": "ACME"}}) == Address(
        "1 A St", "", "DE", name="ACME")
    customer = customer_from_clarity({"UserContactEmail": "u@example.com", "UserContactFirstName": "U",
                                      "User": {"Email": "x@example.com"}})
    assert customer.email == "u@example.com" and customer.name == "U" and customer.external_ids == {}


def test_add_payment_body_uses_the_charge_id_as_transaction_number() -> None:
    usd = Money(3319, "USD")
    payment = PaymentSummary("pi_1", "ch_1", "succeeded", usd, usd, True, customer_id="cus_1")
    assert add_payment_body("1", payment) == {"ID": 1, "Payment": {
        "Amount": "33.19", "TransactionNumber": "ch_1", "PaymentMethodKey": "Credit Card",
        "StatusKey": "Payment Received", "Authorized": True, "Received": True, "ExternalPaymentID": "pi_1",
        "ExternalCustomerID": "cus_1"}}
    bare = PaymentSummary("pi_2", "", "requires_capture", usd, Money(0, "USD"), False)
    body = add_payment_body(2, bare, amount=Money(1000, "USD"))
    assert body["Payment"]["TransactionNumber"] == "pi_2" and body["Payment"]["Amount"] == "10.00"
    assert body["Payment"]["Received"] is False and "ExternalCustomerID" not in body["Payment"]
    only_charge = PaymentSummary("", "ch_9", "succeeded", usd, usd, True)
    assert "ExternalPaymentID" not in add_payment_body(3, only_charge)["Payment"]
