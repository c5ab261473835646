"""Domain -> ERPNext payloads: Customer, Sales Order, Sales Invoice and Payment Entry; ERPNext amounts <-> Money.

ERPNext (frappe) takes currency amounts as decimals in major units. The payloads carry them as
decimal *strings* with the currency's digits (``"30.60"``, ``"1500"`` for JPY, ``"5.120"`` for KWD),
which frappe parses exactly and which stay JSON-able for step checkpoints. A Sales Order's grand total
(``sum(qty x rate) + taxes - discount_amount``) equals the order total; ``sales_order_total``
recomputes it from a payload. Frappe stores currency fields at the site's currency precision
(2 by default): pass ``precision`` to have an amount that needs more digits refused instead of
rounded by the ERP. Field by field: docs/reference/mappings.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Customer, Order, PaymentSummary
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.customer import normalize_email, normalize_phone
from commerce_bridge.mapping.money import format_money, money_from_decimal

DEFAULT_TAX_ACCOUNT = "Sales Tax"
DEFAULT_SHIPPING_ACCOUNT = "Freight and Forwarding Charges"


def money_to_erp(money: Money, *, precision: int | None = None, field: str = "amount") -> str:
    """Money as ERPNext decimal text; with ``precision``, an amount needing more decimals is an error."""
    if precision is not None and minor_digits(money.currency) > precision:
        quantum = 10 ** (minor_digits(money.currency) - precision)
        if money.minor % quantum:
            raise MappingError(
                f"{field} {format_money(money)} {money.currency} needs more than the ERP's {precision} decimals",
                suggested_fix=f"raise the ERP's currency precision to {minor_digits(money.currency)} "
                              "(System Settings) or change the price",
                details={"field": field, "precision": precision})
    return format_money(money)


def money_from_erp(value: object, currency: str, *, field: str = "amount") -> Money:
    """An ERPNext amount (number or text) as Money; finer than a minor unit is an error."""
    return money_from_decimal(value, currency, field=field)


def erp_customer(customer: Customer, *, customer_type: str = "Individual",
                 customer_group: str | None = None, territory: str | None = None) -> dict[str, Any]:
    """An ERPNext Customer document: name (or the email when nameless), type, email and mobile.

    Raises
    ------
    ValidationError
        Invalid email.
    """
    email = normalize_email(customer.email)
    doc: dict[str, Any] = {"customer_name": customer.name.strip() or email, "customer_type": customer_type,
                           "email_id": email}
    region = customer.billing_address.country if customer.billing_address else None
    phone, _warning = normalize_phone(customer.phone, region)
    if phone:
        doc["mobile_no"] = phone
    if customer_group:
        doc["customer_group"] = customer_group
    if territory:
        doc["territory"] = territory
    return doc


def erp_sales_order(order: Order, *, customer_name: str, delivery_date: date,
                    transaction_date: date | None = None, tax_account: str = DEFAULT_TAX_ACCOUNT,
                    shipping_account: str = DEFAULT_SHIPPING_ACCOUNT, company: str | None = None,
                    precision: int | None = None, submit: bool = False) -> dict[str, Any]:
    """An ERPNext Sales Order for ``order``.

    Items carry ``item_code`` (the SKU), ``qty`` and ``rate``; tax and shipping are ``Actual`` rows
    in ``taxes`` on the given account heads; the discount is ``discount_amount`` on the grand total;
    ``po_no`` is the Clarity order key (the ERP's lookup key for idempotency).
    """
    if not order.lines:
        raise MappingError(f"order {order.key or order.external_id} has no lines for the ERP",
                           suggested_fix="an ERPNext Sales Order needs at least one item")

    def amount(money: Money, field: str) -> str:
        return money_to_erp(money, precision=precision, field=field)

    when = delivery_date.isoformat()
    doc: dict[str, Any] = {
        "customer": customer_name,
        "currency": order.currency,
        "po_no": order.key or order.external_id,
        "delivery_date": when,
        "items": [
            {"item_code": line.sku, "qty": line.quantity, "rate": amount(line.unit_price, f"items[{i}].rate"),
             "delivery_date": when, **({"description": line.description} if line.description else {})}
            for i, line in enumerate(order.lines)
        ],
    }
    if transaction_date is not None:
        doc["transaction_date"] = transaction_date.isoformat()
    if company:
        doc["company"] = company
    taxes = []
    if order.tax.minor:
        taxes.append({"charge_type": "Actual", "account_head": tax_account, "description": "Tax",
                      "tax_amount": amount(order.tax, "tax")})
    if order.shipping.minor:
        taxes.append({"charge_type": "Actual", "account_head": shipping_account, "description": "Shipping",
                      "tax_amount": amount(order.shipping, "shipping")})
    if taxes:
        doc["taxes"] = taxes
    if order.discount.minor:
        doc["apply_discount_on"] = "Grand Total"
        doc["discount_amount"] = amount(order.discount, "discount")
    if submit:
        doc["docstatus"] = 1
    return doc


def _rows(doc: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    rows = doc.get(name) or []
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise MappingError(f"the Sales Order's {name} is not a list of rows",
                           suggested_fix=f"pass the Sales Order as ERPNext returns it ({name}: [{{...}}, ...])")
    return rows


def sales_order_total(doc: Mapping[str, Any]) -> Money:
    """The grand total a Sales Order payload adds up to (exact): items + taxes - discount."""
    currency = str(doc.get("currency") or "")
    total = Money.zero(money_from_erp(0, currency).currency)
    for row in _rows(doc, "items"):
        rate = money_from_erp(row.get("rate", 0), currency, field="rate")
        qty = row.get("qty", 1)
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise MappingError(f"item {row.get('item_code')!r} has a non-integer qty {qty!r}",
                               suggested_fix="use whole quantities")
        total = total + Money(rate.minor * qty, total.currency)
    for row in _rows(doc, "taxes"):
        total = total + money_from_erp(row.get("tax_amount", 0), currency, field="tax_amount")
    return total - money_from_erp(doc.get("discount_amount", 0), currency, field="discount_amount")


def erp_sales_invoice(sales_order: Mapping[str, Any], *, posting_date: date) -> dict[str, Any]:
    """An ERPNext Sales Invoice billing a submitted Sales Order as it is, as ERPNext's "make Sales Invoice" does.

    ``sales_order`` is the Sales Order as ERPNext returns it: its items (each row naming the order in
    ``sales_order``), tax and shipping rows and discount are copied; ``po_no`` (the Clarity order key) is the
    invoice's key too, so every flow that bills the order finds the same invoice. ``allocate_advances_automatically``
    has ERPNext allocate the payments already made against the order (advances) to the invoice.
    """
    items = [{"item_code": row["item_code"], "qty": row.get("qty", 1), "rate": row.get("rate"),
              "sales_order": sales_order["name"]} for row in _rows(sales_order, "items")]
    doc: dict[str, Any] = {"customer": sales_order["customer"], "currency": sales_order.get("currency"),
                           "po_no": sales_order["po_no"], "items": items, "posting_date": posting_date.isoformat(),
                           "allocate_advances_automatically": 1}
    taxes = [{k: row[k] for k in ("charge_type", "account_head", "description", "tax_amount") if k in row}
             for row in _rows(sales_order, "taxes")]
    if taxes:
        doc["taxes"] = taxes
    if sales_order.get("discount_amount") not in (None, 0, "0", "0.00"):
        doc["apply_discount_on"] = sales_order.get("apply_discount_on") or "Grand Total"
        doc["discount_amount"] = sales_order["discount_amount"]
    return doc


def erp_payment_entry(payment: PaymentSummary, *, customer_name: str, paid_to_account: str, posting_date: date,
                      sales_order_name: str | None = None, sales_invoice_name: str | None = None,
                      amount: Money | None = None, mode_of_payment: str | None = None, precision: int | None = None,
                      submit: bool = False) -> dict[str, Any]:
    """An ERPNext Payment Entry (Receive) for a Stripe payment, allocated to the Sales Invoice if named, else to
    the Sales Order if named (an advance), else unallocated.

    ``reference_no`` is the Stripe charge id (the PaymentIntent id when there is no charge). The whole amount
    is allocated (ERPNext refuses more than the invoice's outstanding amount).

    Raises
    ------
    MappingError
        Nothing received (ERPNext requires a positive ``paid_amount``).
    """
    paid = amount if amount is not None else payment.amount_received
    if paid.minor <= 0:
        raise MappingError(f"payment {payment.intent_id or payment.charge_id} has received nothing to record",
                           suggested_fix="record the Payment Entry once the payment is captured")
    text = money_to_erp(paid, precision=precision, field="paid_amount")
    doc: dict[str, Any] = {
        "payment_type": "Receive",
        "party_type": "Customer",
        "party": customer_name,
        "posting_date": posting_date.isoformat(),
        "paid_amount": text,
        "received_amount": text,
        "paid_to": paid_to_account,
        "paid_to_account_currency": paid.currency,
        "reference_no": payment.charge_id or payment.intent_id,
        "reference_date": posting_date.isoformat(),
    }
    if mode_of_payment:
        doc["mode_of_payment"] = mode_of_payment
    if sales_invoice_name or sales_order_name:
        doc["references"] = [{"reference_doctype": "Sales Invoice" if sales_invoice_name else "Sales Order",
                              "reference_name": sales_invoice_name or sales_order_name, "allocated_amount": text}]
    if submit:
        doc["docstatus"] = 1
    return doc
