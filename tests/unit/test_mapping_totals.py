"""Property tests: totals are preserved Clarity -> domain -> Stripe and -> ERPNext, in every currency."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.clarity import money_to_clarity, order_from_clarity
from commerce_bridge.mapping.erp import erp_sales_order, sales_order_total
from commerce_bridge.mapping.money import allocate, from_stripe_amount, money_to_decimal, to_stripe_amount

line_st = st.tuples(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=10**7))


def _cef(money: Money) -> Decimal:
    """Money as CEF writes it: decimal(18,4), e.g. 19.9900."""
    return money_to_decimal(money).quantize(Decimal("0.0001"))


@st.composite
def clarity_orders(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(SUPPORTED_CURRENCIES))
    lines = draw(st.lists(line_st, min_size=1, max_size=8))
    tax, shipping, handling, discount = (draw(st.integers(min_value=0, max_value=10**6)) for _ in range(4))
    def money(minor: int) -> Money:
        return Money(minor, currency)
    subtotal = sum(q * p for q, p in lines)
    items = [{"Sku": f"SKU-{i}", "Quantity": q, "TotalQuantity": q, "UnitCorePrice": _cef(money(p)),
              "UnitSoldPrice": _cef(money(p)), "ExtendedPrice": _cef(money(q * p))} for i, (q, p) in enumerate(lines)]
    total = subtotal + tax + shipping + handling - discount
    totals = {"SubTotal": _cef(money(subtotal)), "Shipping": _cef(money(shipping)), "Handling": _cef(money(handling)),
              "Discounts": -_cef(money(discount)), "Tax": _cef(money(tax)), "Total": _cef(money(total))}
    # CEF omits zeros
    return {"ID": 7, "CustomKey": "WEB-7", "CurrencyKey": currency, "SalesItems": items,
            "Totals": {k: v for k, v in totals.items() if v}}


@settings(deadline=None)
@given(clarity_orders())
def test_totals_are_preserved_clarity_to_domain_to_stripe_and_erp(payload: dict[str, Any]) -> None:
    order = order_from_clarity(payload)
    assert order.computed_total() == order.total
    assert money_to_decimal(order.total) == Decimal(payload["Totals"].get("Total", 0))
    # Stripe: the same value, or a refusal (never a rounding)
    try:
        amount, code = to_stripe_amount(order.total, card=True)
    except MappingError as exc:
        assert exc.suggested_fix
    else:
        assert from_stripe_amount(amount, code) == order.total
    # ERPNext: items + taxes - discount = the order total, exactly
    doc = erp_sales_order(order, customer_name="C", delivery_date=date(2026, 11, 27))
    assert sales_order_total(doc) == order.total
    # back to Clarity text
    assert Decimal(money_to_clarity(order.total)) == money_to_decimal(order.total)


@settings(deadline=None)
@given(clarity_orders(), st.integers(min_value=0, max_value=10**6))
def test_a_refund_split_across_lines_sums_exactly(payload: dict[str, Any], refund_units: int) -> None:
    order = order_from_clarity(payload)
    refund = Money(min(refund_units, max(order.total.minor, 0)), order.currency)
    weights = [line.unit_price.minor * line.quantity for line in order.lines]
    if sum(weights) == 0:
        weights = [line.quantity for line in order.lines]
    parts = allocate(refund, weights)
    assert sum(p.minor for p in parts) == refund.minor
