"""Partial shipments of a Clarity (CEF) order: which units went out, and how much of the authorisation to capture.

**How a partial shipment shows in Clarity.** CEF has no shipment entity and ``PATCH
/Ordering/SalesOrder/Ship/{ID}`` only sets the status; what did *not* ship is said per sales item
(facts/clarity-cef-api.md section 3.3): ``TotalQuantity = Quantity + QuantityBackOrdered +
QuantityPreSold`` and the line is priced on ``TotalQuantity``. An order marked **Shipped** whose
items still have ``QuantityBackOrdered`` (or ``QuantityPreSold``) above zero has therefore shipped
``TotalQuantity - QuantityBackOrdered - QuantityPreSold`` units of each line, while its totals still
describe the whole order. ``SplitSalesOrder`` (children of type "Sales Order Child", the parent
moves to Split) is not used: the facts do not say how items, totals or the payment are divided
between the children, and each child reaching Shipped would ask for a capture of the same
PaymentIntent, which Stripe allows only once.

**How much to capture.** The shipped lines at their sold price (``UnitSoldPrice``, else
``UnitCorePrice``), plus the same proportion of tax, shipping, handling and fees, minus the same
proportion of the discount. That is ``Totals.Total x shipped line value / ordered line value``
(by units instead of value when every line is free), computed exactly as a fraction of integers
and rounded **once, down**, to the smallest amount Stripe can capture in the currency (one minor
unit; 10 for three-decimal currencies; 100 ISO minor units where Stripe is zero-decimal but ISO has
decimals). It is never more than ``amount_capturable``, it never falls when more units ship, and
a complete shipment captures ``Totals.Total`` (the whole authorisation when the two are equal).
Stripe releases what is not captured; see docs/reference/mappings.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.clarity import decimal_from_clarity, money_from_clarity, order_from_clarity
from commerce_bridge.mapping.money import format_money, stripe_exponent, stripe_step

__all__ = [
    "LineShipment",
    "ShipmentCapture",
    "capture_amount_for_shipment",
    "capture_quantum",
    "describe",
    "line_shipments",
]

_NOT_SHIPPED = ("QuantityBackOrdered", "QuantityPreSold")


@dataclass(frozen=True, slots=True)
class LineShipment:
    """One sales item: units ordered (``TotalQuantity``) and units shipped, at its sold unit price."""

    sku: str
    ordered: int
    shipped: int
    unit_price: Money

    @property
    def unshipped(self) -> int:
        return self.ordered - self.shipped


@dataclass(frozen=True, slots=True)
class ShipmentCapture:
    """What a (partial) shipment allows to capture, with the figures it was computed from."""

    amount: Money  # what to capture now (zero when nothing shipped)
    capturable: Money  # the PaymentIntent's amount_capturable
    order_total: Money  # Totals.Total
    lines_ordered: Money  # sum of unit price x ordered units
    lines_shipped: Money  # sum of unit price x shipped units
    lines: tuple[LineShipment, ...]

    @property
    def partial(self) -> bool:
        """Some units of some line did not ship."""
        return any(line.unshipped for line in self.lines)

    @property
    def released(self) -> Money:
        """What Stripe releases when ``amount`` is captured."""
        return self.capturable - self.amount


def capture_quantum(currency: str) -> int:
    """The smallest amount Stripe can capture in ``currency``, in ISO minor units.

    1 for most currencies (JPY included, whose ISO and Stripe units are both yen), 10 for the
    three-decimal ones (KWD: Stripe wants the last digit 0), 100 for a currency that Stripe takes
    in whole units while ISO has two decimals (MGA). ISK and UGX: 1 (ISO has no decimals; Stripe's
    multiple-of-100 rule is about its own two-decimal units).
    """
    iso, exponent, step = minor_digits(currency), stripe_exponent(currency), stripe_step(currency)
    if exponent >= iso:
        scale = 10 ** (exponent - iso)
        return step // gcd(step, scale)
    return int(10 ** (iso - exponent)) * step


def _whole(item: Mapping[str, Any], name: str, position: int, default: object = 0) -> int:
    value = decimal_from_clarity(item.get(name, default), field=f"SalesItems[{position}].{name}")
    if value != value.to_integral_value() or value < 0:
        raise MappingError(f"SalesItems[{position}].{name} is {value}, not a whole number of units",
                           suggested_fix=f"correct {name} of the line in Clarity, then replay")
    return int(value)


def line_shipments(payload: Mapping[str, Any], currency: str) -> tuple[LineShipment, ...]:
    """The order's lines with ordered and shipped units (lines with nothing ordered are left out).

    Ordered is ``TotalQuantity`` (else ``Quantity``, as ``order_from_clarity`` reads it); shipped is
    ordered minus ``QuantityBackOrdered`` minus ``QuantityPreSold`` (each absent = 0).

    Raises
    ------
    MappingError
        A fractional or negative quantity, more units back-ordered or pre-sold than ordered, or an
        amount finer than the currency's minor unit.
    """
    lines: list[LineShipment] = []
    items = payload.get("SalesItems") or []
    if not isinstance(items, list):
        raise MappingError("the Clarity order's SalesItems is not a list",
                           suggested_fix="pass the full order from GET /Ordering/SalesOrder/ID/{id}")
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        ordered = _whole(item, "TotalQuantity", position, item.get("Quantity", 0))
        waiting = sum(_whole(item, name, position) for name in _NOT_SHIPPED)
        sku = str(item.get("Sku") or item.get("ProductKey") or "").strip()
        if waiting > ordered:
            raise MappingError(
                f"SalesItems[{position}] ({sku or '?'}): {waiting} units back-ordered or pre-sold "
                f"but only {ordered} ordered",
                suggested_fix="correct QuantityBackOrdered / QuantityPreSold of the line in Clarity, then replay")
        if ordered == 0:
            continue
        sold = item.get("UnitSoldPrice")
        price = money_from_clarity(sold if sold is not None else item.get("UnitCorePrice", 0), currency,
                                   field=f"SalesItems[{position}].UnitSoldPrice")
        lines.append(LineShipment(sku=sku, ordered=ordered, shipped=ordered - waiting, unit_price=price))
    return tuple(lines)


def _share(total: int, lines: tuple[LineShipment, ...]) -> int:
    """``total`` x shipped / ordered, by line value (by units when every line is free), rounded down."""
    ordered = sum(line.unit_price.minor * line.ordered for line in lines)
    shipped = sum(line.unit_price.minor * line.shipped for line in lines)
    if ordered == 0:
        ordered = sum(line.ordered for line in lines)
        shipped = sum(line.shipped for line in lines)
    return total * shipped // ordered


def capture_amount_for_shipment(payload: Mapping[str, Any], capturable: Money) -> ShipmentCapture:
    """How much of an authorisation a Clarity order's shipment allows to capture (see the module docstring).

    Parameters
    ----------
    payload:
        The order as ``GET /Ordering/SalesOrder/ID/{id}`` returns it (full projection, exact decimals).
    capturable:
        The PaymentIntent's ``amount_capturable``; its currency is the order's when the order has no
        ``CurrencyKey``.

    Returns
    -------
    ShipmentCapture
        ``amount`` <= ``capturable``; zero when nothing shipped or nothing can be captured.

    Raises
    ------
    MappingError
        The order does not map (``order_from_clarity``: totals, currency, SKUs), its currency is not
        the PaymentIntent's, a quantity is inconsistent, or a partly shipped order has a line with a
        negative price (its share cannot be apportioned).
    """
    order = order_from_clarity(payload, default_currency=capturable.currency)
    if order.currency != capturable.currency:
        raise MappingError(
            f"Clarity order {order.key or order.external_id} is in {order.currency} but its PaymentIntent "
            f"captures {capturable.currency}",
            suggested_fix="capture the PaymentIntent by hand in the Stripe Dashboard; the bridge never converts")
    lines = line_shipments(payload, order.currency)
    partial = any(line.unshipped for line in lines)
    if partial and any(line.unit_price.minor < 0 for line in lines):
        raise MappingError(
            f"Clarity order {order.key or order.external_id} shipped partly and has a line with a negative price",
            suggested_fix="capture the shipped part by hand in the Stripe Dashboard (put discounts in the "
                          "order's Discounts, not in line prices)")
    total = order.total.minor
    amount = 0
    if total > 0 and capturable.minor > 0:
        amount = min(_share(total, lines) if partial else total, capturable.minor)
        amount -= amount % capture_quantum(order.currency)
    currency = order.currency
    return ShipmentCapture(
        amount=Money(amount, currency), capturable=capturable, order_total=order.total,
        lines_ordered=Money(sum(line.unit_price.minor * line.ordered for line in lines), currency),
        lines_shipped=Money(sum(line.unit_price.minor * line.shipped for line in lines), currency),
        lines=lines)


def describe(capture: ShipmentCapture) -> str:
    """One line for logs and run output: ``"captures 29.25 of 39.00 USD; 1 x SKU-MUG not shipped"``."""
    waiting = ", ".join(f"{line.unshipped} x {line.sku}" for line in capture.lines if line.unshipped)
    text = f"captures {format_money(capture.amount)} of {format_money(capture.capturable)} {capture.amount.currency}"
    return f"{text}; {waiting} not shipped" if waiting else text
