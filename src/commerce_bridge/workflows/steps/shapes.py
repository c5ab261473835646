"""The JSON shapes steps exchange (money, address, customer, order), to and from domain objects.

Step outputs are checkpointed as JSON, so domain objects cross step boundaries in these shapes
(described for users in the generated step reference: :data:`SHAPES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Address, Customer, Order, OrderLine
from commerce_bridge.errors import ValidationError

SHAPES = """\
Shapes that several step types share:

- **money**: `{"minor": 1999, "currency": "USD"}`: an integer number of minor units of an upper-case
  ISO 4217 currency. Never a float. Connectors convert to and from each vendor's units.
- **address**: `{"line1", "line2", "city", "region", "postal_code", "country", "name"}`; `country` is
  ISO 3166-1 alpha-2.
- **customer**: `{"email", "name", "phone", "billing_address": address, "external_ids": {system: id}}`;
  `email` is normalised (trimmed, lower case).
- **order** (the output of `core.validate.order`): `{"external_id"` (the Clarity ID, a string), `"key"`
  (the Clarity CustomKey), `"status"`, `"currency"`, `"total"`, `"tax"`, `"shipping"`, `"discount"`
  (money; total = lines + tax + shipping - discount), `"lines": [{"sku", "quantity", "unit_price": money,
  "description"}]`, `"customer": customer`, `"shipping_address": address`, `"payment_method_ref"` (a
  Stripe PaymentMethod id, never card data), `"needs_payment"` (bool)`}`.
"""


def money_shape(m: Money | None) -> dict[str, Any] | None:
    return None if m is None else {"minor": m.minor, "currency": m.currency}


def money_from_shape(value: Any, *, field: str = "amount") -> Money:
    if not isinstance(value, Mapping) or "minor" not in value or "currency" not in value:
        raise ValidationError(f"{field} must be money: {{'minor': int, 'currency': 'USD'}}, got {value!r}")
    return Money(value["minor"], value["currency"])


def address_shape(a: Address | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"line1": a.line1, "line2": a.line2, "city": a.city, "region": a.region,
            "postal_code": a.postal_code, "country": a.country, "name": a.name}


def address_from_shape(value: Any) -> Address | None:
    if not value:
        return None
    return Address(line1=value.get("line1", ""), city=value.get("city", ""), country=value.get("country", ""),
                   postal_code=value.get("postal_code", ""), line2=value.get("line2", ""),
                   region=value.get("region", ""), name=value.get("name", ""))


def customer_shape(c: Customer) -> dict[str, Any]:
    return {"email": c.email, "name": c.name, "phone": c.phone,
            "billing_address": address_shape(c.billing_address), "external_ids": dict(c.external_ids)}


def customer_from_shape(value: Any) -> Customer:
    if not isinstance(value, Mapping) or not value.get("email"):
        raise ValidationError("customer must be an object with an email")
    return Customer(email=value["email"], name=value.get("name", ""), phone=value.get("phone", ""),
                    billing_address=address_from_shape(value.get("billing_address")),
                    external_ids=dict(value.get("external_ids") or {}))


def order_shape(o: Order, *, needs_payment: bool) -> dict[str, Any]:
    return {
        "external_id": o.external_id, "key": o.key, "status": o.status, "currency": o.currency,
        "total": money_shape(o.total), "tax": money_shape(o.tax), "shipping": money_shape(o.shipping),
        "discount": money_shape(o.discount), "balance_due": money_shape(o.balance_due),
        "lines": [{"sku": ln.sku, "quantity": ln.quantity, "unit_price": money_shape(ln.unit_price),
                   "description": ln.description} for ln in o.lines],
        "customer": customer_shape(o.customer), "shipping_address": address_shape(o.shipping_address),
        "payment_method_ref": o.payment_method_ref, "payment_intent_ref": o.payment_intent_ref,
        "needs_payment": needs_payment,
    }


def order_from_shape(value: Any) -> Order:
    if not isinstance(value, Mapping) or "key" not in value:
        raise ValidationError("order must be the output of core.validate.order")
    return Order(
        external_id=str(value["external_id"]), key=value["key"], customer=customer_from_shape(value["customer"]),
        lines=tuple(OrderLine(sku=ln["sku"], quantity=ln["quantity"],
                              unit_price=money_from_shape(ln["unit_price"], field="unit_price"),
                              description=ln.get("description", "")) for ln in value["lines"]),
        total=money_from_shape(value["total"], field="total"), tax=money_from_shape(value["tax"], field="tax"),
        shipping=money_from_shape(value["shipping"], field="shipping"),
        discount=money_from_shape(value["discount"], field="discount"), status=value.get("status", ""),
        shipping_address=address_from_shape(value.get("shipping_address")),
        payment_method_ref=value.get("payment_method_ref", ""),
        payment_intent_ref=value.get("payment_intent_ref", ""),
        balance_due=money_from_shape(value["balance_due"]) if value.get("balance_due") else None,
    )
