"""Domain -> ERPNext Customer, Sales Order, Sales Invoice and Payment Entry payloads; ERPNext amounts <-> Money."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Address, Customer, Order, OrderLine, PaymentSummary
from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping.erp import (
    erp_customer,
    erp_payment_entry,
    erp_sales_invoice,
    erp_sales_order,
    money_from_erp,
    money_to_erp,
    sales_order_total,
)

DAY = date(2026, 11, 27)


def _order(currency: str = "USD", *, unit: int = 1250, tax: int = 120, shipping: int = 500, discount: int = 200,
           lines: tuple[OrderLine, ...] | None = None) -> Order:
    def money(minor: int) -> Money:
        return Money(minor, currency)
    lines = lines if lines is not None else (OrderLine("SKU-1", 2, money(unit), "Widget"), OrderLine("SKU-2", 1, money(399)))
    subtotal = sum(li.unit_price.minor * li.quantity for li in lines)
    return Order("1", "WEB-100001", Customer("ann@example.com", "Ann Lee"), lines,
                 money(subtotal + tax + shipping - discount), money(tax), money(shipping), money(discount), "Pending")


def test_sales_order_payload() -> None:
    doc = erp_sales_order(_order(), customer_name="Ann Lee", delivery_date=DAY, transaction_date=DAY,
                          company="ACME", submit=True)
    assert doc == {
        "customer": "Ann Lee", "currency": "USD", "po_no": "WEB-100001", "delivery_date": "2026-11-27",
        "items": [{"item_code": "SKU-1", "qty": 2, "rate": "12.50", "delivery_date": "2026-11-27",
                   "description": "Widget"},
                  {"item_code": "SKU-2", "qty": 1, "rate": "3.99", "delivery_date": "2026-11-27"}],
        "transaction_date": "2026-11-27", "company": "ACME",
        "taxes": [{"charge_type": "Actual", "account_head": "Sales Tax", "description": "Tax", "tax_amount": "1.20"},
                  {"charge_type": "Actual", "account_head": "Freight and Forwarding Charges",
                   "description": "Shipping", "tax_amount": "5.00"}],
        "apply_discount_on": "Grand Total", "discount_amount": "2.00", "docstatus": 1,
    }
    assert sales_order_total(doc) == Money(3319, "USD")


def test_sales_order_without_tax_shipping_or_discount_is_minimal() -> None:
    doc = erp_sales_order(_order("JPY", unit=500, tax=0, shipping=0, discount=0), customer_name="Ann",
                          delivery_date=DAY)
    assert "taxes" not in doc and "discount_amount" not in doc and "docstatus" not in doc
    assert doc["items"][0]["rate"] == "500" and sales_order_total(doc) == Money(1399, "JPY")


def test_precision_refuses_amounts_the_erp_would_round() -> None:
    order = _order("KWD", unit=1125, tax=0, shipping=0, discount=0)
    assert erp_sales_order(order, customer_name="A", delivery_date=DAY)["items"][0]["rate"] == "1.125"
    with pytest.raises(MappingError, match="2 decimals") as info:
        erp_sales_order(order, customer_name="A", delivery_date=DAY, precision=2)
    assert "precision" in (info.value.suggested_fix or "")
    assert money_to_erp(Money(5120, "KWD"), precision=2) == "5.120"
    assert money_to_erp(Money(1999, "USD"), precision=2) == "19.99"


def test_order_without_lines_cannot_go_to_the_erp() -> None:
    with pytest.raises(MappingError):
        erp_sales_order(_order(lines=()), customer_name="A", delivery_date=DAY)


def test_sales_order_total_refuses_fractional_quantities() -> None:
    with pytest.raises(MappingError):
        sales_order_total({"currency": "USD", "items": [{"item_code": "A", "qty": Decimal("1.5"), "rate": "1"}]})


def test_customer_payload() -> None:
    customer = Customer("Ann@Example.com", "Ann Lee", "(512) 555-0100", Address("1 Main St", "Austin", "US"))
    assert erp_customer(customer, customer_group="Individual", territory="United States") == {
        "customer_name": "Ann Lee", "customer_type": "Individual", "email_id": "Ann@example.com",
        "mobile_no": "+15125550100", "customer_group": "Individual", "territory": "United States"}
    assert erp_customer(Customer("x@example.com"))["customer_name"] == "x@example.com"
    with pytest.raises(ValidationError):
        erp_customer(Customer("x"))


def test_payment_entry_payload() -> None:
    usd = Money(3319, "USD")
    payment = PaymentSummary("pi_1", "ch_1", "succeeded", usd, usd, True)
    doc = erp_payment_entry(payment, customer_name="Ann Lee", paid_to_account="Stripe - ACME", posting_date=DAY,
                            sales_order_name="SAL-ORD-2026-00001", mode_of_payment="Stripe", submit=True)
    assert doc == {
        "payment_type": "Receive", "party_type": "Customer", "party": "Ann Lee", "posting_date": "2026-11-27",
        "paid_amount": "33.19", "received_amount": "33.19", "paid_to": "Stripe - ACME",
        "paid_to_account_currency": "USD", "reference_no": "ch_1", "reference_date": "2026-11-27",
        "mode_of_payment": "Stripe", "docstatus": 1,
        "references": [{"reference_doctype": "Sales Order", "reference_name": "SAL-ORD-2026-00001",
                        "allocated_amount": "33.19"}]}
    partial = erp_payment_entry(PaymentSummary("pi_1", "", "succeeded", usd, usd, True), customer_name="A",
                                paid_to_account="S", posting_date=DAY, amount=Money(1000, "USD"))
    assert partial["paid_amount"] == "10.00" and partial["reference_no"] == "pi_1" and "references" not in partial
    with pytest.raises(MappingError):
        erp_payment_entry(PaymentSummary("pi_1", "", "requires_capture", usd, Money(0, "USD"), False),
                          customer_name="A", paid_to_account="S", posting_date=DAY)


def test_payment_entry_is_allocated_to_the_invoice_when_one_is_named() -> None:
    usd = Money(3319, "USD")
    doc = erp_payment_entry(PaymentSummary("pi_1", "ch_1", "succeeded", usd, usd, True), customer_name="A",
                            paid_to_account="S", posting_date=DAY, sales_order_name="SAL-ORD-2026-00001",
                            sales_invoice_name="ACC-SINV-2026-00001")
    assert doc["references"] == [{"reference_doctype": "Sales Invoice", "reference_name": "ACC-SINV-2026-00001",
                                  "allocated_amount": "33.19"}]
    assert doc["reference_no"] == "ch_1"


def test_sales_invoice_bills_the_sales_order_as_it_is() -> None:
    so = {"name": "SAL-ORD-2026-00001", "customer": "Ann Lee", "currency": "USD", "po_no": "WEB-1",
          "items": [{"item_code": "SKU-1", "qty": 2, "rate": "12.50", "amount": "25.00"}, {"item_code": "SKU-2"}],
          "taxes": [{"charge_type": "Actual", "account_head": "Sales Tax", "description": "Tax", "tax_amount": "1.20",
                     "idx": 1}],
          "discount_amount": "2.00", "apply_discount_on": "Net Total"}
    assert erp_sales_invoice(so, posting_date=DAY) == {
        "customer": "Ann Lee", "currency": "USD", "po_no": "WEB-1", "posting_date": "2026-11-27",
        "allocate_advances_automatically": 1,
        "items": [{"item_code": "SKU-1", "qty": 2, "rate": "12.50", "sales_order": "SAL-ORD-2026-00001"},
                  {"item_code": "SKU-2", "qty": 1, "rate": None, "sales_order": "SAL-ORD-2026-00001"}],
        "taxes": [{"charge_type": "Actual", "account_head": "Sales Tax", "description": "Tax", "tax_amount": "1.20"}],
        "apply_discount_on": "Net Total", "discount_amount": "2.00"}
    plain = erp_sales_invoice({**so, "taxes": [], "discount_amount": "0.00"}, posting_date=DAY)
    assert "taxes" not in plain and "discount_amount" not in plain
    assert erp_sales_invoice({**so, "apply_discount_on": None}, posting_date=DAY)["apply_discount_on"] == "Grand Total"
    with pytest.raises(MappingError):
        erp_sales_invoice({**so, "items": "SKU-1"}, posting_date=DAY)


def test_erp_amounts_round_trip() -> None:
    assert money_from_erp(Decimal("30.60"), "USD") == Money(3060, "USD")
    assert money_from_erp("1500", "JPY") == Money(1500, "JPY")
    with pytest.raises(MappingError):
        money_from_erp("30.605", "USD")
