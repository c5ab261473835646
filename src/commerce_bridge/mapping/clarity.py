"""Clarity (CEF) payloads <-> domain: sales orders, contacts and addresses, money, AddPayment bodies.

Input is a SalesOrder as ``GET /Ordering/SalesOrder/ID/{id}`` returns it (the *full* projection):
PascalCase, and every empty, zero or false field omitted, so every field is optional here and a
missing amount is zero. Amounts are CEF decimals (``decimal(18,4)``, e.g. ``19.9900``); they must be
parsed exactly (``json.loads(..., parse_float=Decimal)`` or strings) and may not be finer than the
currency's minor unit. The order's totals must add up:
``sum(lines) == Totals.SubTotal`` and ``lines + tax + shipping - discount == Totals.Total``,
else ``MappingError``. Field by field: docs/reference/mappings.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Address, Customer, Order, OrderLine, PaymentSummary
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.metadata import CLARITY_ACCOUNT_SYSTEM, CLARITY_USER_SYSTEM
from commerce_bridge.mapping.money import format_money, money_from_decimal, parse_decimal

STRIPE_PM_ATTRIBUTE = "StripePaymentMethodID"
"""``SerializableAttributes`` key under which the storefront records the Stripe PaymentMethod id."""


def money_from_clarity(value: object, currency: str, *, field: str = "amount") -> Money:
    """A CEF decimal amount (``"19.9900"``, ``Decimal``, int) as Money; finer than a minor unit is an error."""
    return money_from_decimal(value, currency, field=field)


def money_to_clarity(money: Money) -> str:
    """Money as the decimal text CEF accepts (``"19.99"``, ``"1500"`` for JPY)."""
    return format_money(money)


def _text(data: Mapping[str, Any] | None, *names: str) -> str:
    for name in names:
        value = (data or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool) and value:
            return str(value)
    return ""


def _mapping(data: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    value = (data or {}).get(name)
    return value if isinstance(value, Mapping) else {}


def contact_name(contact: Mapping[str, Any] | None) -> str:
    """``FullName``, else ``FirstName LastName``."""
    full = _text(contact, "FullName")
    if full:
        return full
    return " ".join(part for part in (_text(contact, "FirstName"), _text(contact, "LastName")) if part)


def address_from_clarity(contact: Mapping[str, Any] | None) -> Address | None:
    """The ``Address`` of a CEF Contact as a domain Address (None when it has no street and no country).

    ``Street2`` and ``Street3`` are joined into ``line2``; the region is ``RegionCode``, else
    ``RegionKey`` or ``RegionName``; the country is ``CountryCode``, else ``CountryKey``.
    """
    address = _mapping(contact, "Address")
    line1 = _text(address, "Street1")
    country = _text(address, "CountryCode", "CountryKey").upper()
    if not line1 and not country:
        return None
    line2 = ", ".join(part for part in (_text(address, "Street2"), _text(address, "Street3")) if part)
    return Address(line1=line1, line2=line2, city=_text(address, "City"), country=country,
                   postal_code=_text(address, "PostalCode"),
                   region=_text(address, "RegionCode", "RegionKey", "RegionName"),
                   name=contact_name(contact) or _text(address, "Company"))


def customer_from_clarity(order: Mapping[str, Any]) -> Customer:
    """The buyer of a CEF order: billing contact first, then the order's user echo fields.

    ``external_ids`` holds ``clarity`` (the UserID) and ``clarity_account`` (the AccountID) when set.
    The email is taken as is; ``mapping.customer`` validates and normalises it.
    """
    billing = _mapping(order, "BillingContact")
    user = _mapping(order, "User")
    email = _text(billing, "Email1") or _text(order, "UserContactEmail") or _text(user, "Email")
    name = contact_name(billing) or " ".join(
        part for part in (_text(order, "UserContactFirstName"), _text(order, "UserContactLastName")) if part)
    external: dict[str, str] = {}
    if _text(order, "UserID"):
        external[CLARITY_USER_SYSTEM] = _text(order, "UserID")
    if _text(order, "AccountID"):
        external[CLARITY_ACCOUNT_SYSTEM] = _text(order, "AccountID")
    return Customer(email=email, name=name, phone=_text(billing, "Phone1", "Phone2"),
                    billing_address=address_from_clarity(billing), external_ids=external)


def _quantity(item: Mapping[str, Any], position: int) -> int:
    raw = item.get("TotalQuantity", item.get("Quantity", 0))
    quantity = parse_decimal(raw, field=f"SalesItems[{position}].Quantity")
    if quantity != quantity.to_integral_value():
        raise MappingError(f"SalesItems[{position}] has a fractional quantity {quantity}",
                           suggested_fix="sell whole units; fractional quantities cannot be charged per unit")
    if quantity < 0:
        raise MappingError(f"SalesItems[{position}] has a negative quantity {quantity}",
                           suggested_fix="correct the line quantity in Clarity")
    return int(quantity)


def _line(item: Mapping[str, Any], position: int, currency: str) -> OrderLine | None:
    where = f"SalesItems[{position}]"
    quantity = _quantity(item, position)
    sold = item.get("UnitSoldPrice")
    raw_price = sold if sold is not None else item.get("UnitCorePrice", 0)
    unit = money_from_clarity(raw_price, currency, field=f"{where}.UnitSoldPrice")
    sku = _text(item, "Sku", "ProductKey")
    if "ExtendedPrice" in item:
        extended = money_from_clarity(item["ExtendedPrice"], currency, field=f"{where}.ExtendedPrice")
        if extended.minor != unit.minor * quantity:
            raise MappingError(
                f"{where} ({sku or '?'}): ExtendedPrice {format_money(extended)} is not "
                f"{quantity} x {format_money(unit)}",
                suggested_fix="correct the line's unit price or quantity in Clarity")
    if quantity == 0:
        return None
    if not sku:
        raise MappingError(f"{where} has no Sku or ProductKey",
                           suggested_fix="link the line to a product (ProductKey = the SKU) in Clarity")
    return OrderLine(sku=sku, quantity=quantity, unit_price=unit,
                     description=_text(item, "Name", "ProductName", "Description"))


def _payment_links(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The order's ``SalesOrderPayments`` that are objects (a field of another type holds no link)."""
    links = order.get("SalesOrderPayments")
    return [link for link in links if isinstance(link, Mapping)] if isinstance(links, list) else []


def _payment_method_ref(order: Mapping[str, Any]) -> str:
    attribute = _mapping(_mapping(order, "SerializableAttributes"), STRIPE_PM_ATTRIBUTE)
    if _text(attribute, "Value"):
        return _text(attribute, "Value")
    for link in _payment_links(order):
        token = _text(_mapping(link, "Slave"), "Token")
        if token.startswith("pm_"):
            return token
    return ""


def _payment_intent_ref(order: Mapping[str, Any]) -> str:
    candidates = [_text(order, "PaymentTransactionID")]
    for link in _payment_links(order):
        slave = _mapping(link, "Slave")
        candidates += [_text(slave, "TransactionNumber"), _text(slave, "ExternalPaymentID")]
    return next((ref for ref in candidates if ref.startswith("pi_")), "")


def order_from_clarity(payload: Mapping[str, Any], *, default_currency: str | None = None) -> Order:
    """A CEF SalesOrder (full projection) as a domain Order, with its totals checked.

    Parameters
    ----------
    payload:
        The order JSON, parsed with exact decimals.
    default_currency:
        Used when the order has no ``CurrencyKey`` (single-currency stores).

    Raises
    ------
    MappingError
        No ID, no currency, a line without SKU, a fractional quantity, an amount finer than a minor
        unit, or totals that do not add up.
    """
    if not isinstance(payload, Mapping) or not _text(payload, "ID"):
        raise MappingError("the Clarity order has no ID",
                           suggested_fix="pass the body of GET /Ordering/SalesOrder/ID/{id}")
    order_id = _text(payload, "ID")
    currency = (_text(payload, "CurrencyKey") or _text(_mapping(payload, "Currency"), "CustomKey")
                or (default_currency or "")).upper()
    if not currency:
        raise MappingError(f"Clarity order {order_id} has no currency",
                           suggested_fix="set CurrencyKey on the order or configure the store's default currency")
    totals = _mapping(payload, "Totals")

    def total(name: str) -> Money:
        return money_from_clarity(totals.get(name, 0), currency, field=f"Totals.{name}")

    raw_items = payload.get("SalesItems") or []
    if not isinstance(raw_items, list):
        raise MappingError(f"Clarity order {order_id}: SalesItems is not a list",
                           suggested_fix="pass the full order from GET /Ordering/SalesOrder/ID/{id}")
    lines = tuple(line for position, item in enumerate(raw_items)
                  if isinstance(item, Mapping) and (line := _line(item, position, currency)) is not None)
    subtotal, grand_total = total("SubTotal"), total("Total")
    discounts = total("Discounts")
    order = Order(
        external_id=order_id, key=_text(payload, "CustomKey"), customer=customer_from_clarity(payload),
        lines=lines, total=grand_total, tax=total("Tax"),
        shipping=total("Shipping") + total("Handling") + total("Fees"),
        discount=Money(abs(discounts.minor), currency),
        status=_text(payload, "StatusKey", "StatusName") or _text(_mapping(payload, "Status"), "CustomKey", "Name"),
        shipping_address=address_from_clarity(_mapping(payload, "ShippingContact")),
        payment_method_ref=_payment_method_ref(payload), payment_intent_ref=_payment_intent_ref(payload),
        balance_due=money_from_clarity(payload.get("BalanceDue", 0), currency, field="BalanceDue"))
    lines_total = order.lines_total()
    if "SalesItems" not in payload and subtotal.minor:
        raise MappingError(f"Clarity order {order_id} has no SalesItems (a search projection)",
                           suggested_fix="fetch the full order with GET /Ordering/SalesOrder/ID/{id}")
    if lines_total != subtotal:
        raise MappingError(
            f"Clarity order {order_id}: lines add up to {format_money(lines_total)} {currency} but "
            f"Totals.SubTotal is {format_money(subtotal)}",
            suggested_fix="correct the line prices or the subtotal in Clarity, then replay")
    if order.computed_total() != grand_total:
        raise MappingError(
            f"Clarity order {order_id}: lines + tax + shipping - discount = "
            f"{format_money(order.computed_total())} {currency} but Totals.Total is {format_money(grand_total)}",
            suggested_fix="correct the order totals in Clarity (discounts are negative amounts in CEF), then replay",
            details={"order_id": order_id})
    return order


def add_payment_body(order_id: str | int, payment: PaymentSummary, *, amount: Money | None = None,
                     payment_method_key: str = "Credit Card") -> dict[str, Any]:
    """The body of ``PATCH /Ordering/SalesOrder/AddPayment`` for a Stripe payment.

    ``TransactionNumber`` is the Stripe charge id (the PaymentIntent id when there is no charge);
    ``ExternalPaymentID`` is the PaymentIntent id. ``Amount`` defaults to the amount received.
    """
    paid = amount if amount is not None else payment.amount_received
    model: dict[str, Any] = {
        "Amount": money_to_clarity(paid),
        "TransactionNumber": payment.charge_id or payment.intent_id,
        "PaymentMethodKey": payment_method_key,
        "StatusKey": "Payment Received",
        "Authorized": True,
        "Received": payment.captured,
    }
    if payment.intent_id:
        model["ExternalPaymentID"] = payment.intent_id
    if payment.customer_id:
        model["ExternalCustomerID"] = payment.customer_id
    return {"ID": int(order_id), "Payment": model}


def decimal_from_clarity(value: object, *, field: str = "value") -> Decimal:
    """An exact Decimal from a CEF number (quantities, rates); see ``mapping.money.parse_decimal``."""
    return parse_decimal(value, field=field)
