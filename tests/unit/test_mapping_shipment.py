"""The amount a (partial) shipment lets us capture: properties in every currency, and worked examples."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.money import from_stripe_amount, money_to_decimal, to_stripe_amount
from commerce_bridge.mapping.shipment import (
    capture_amount_for_shipment,
    capture_quantum,
    describe,
    line_shipments,
)
from commerce_bridge.workflows.steps.core import capture_shape

# JPY (zero-decimal) and KWD (three-decimal, Stripe wants the last digit 0) are drawn often on purpose.
CURRENCIES = st.one_of(st.sampled_from(["JPY", "KWD", "BHD", "USD", "MGA", "ISK"]), st.sampled_from(SUPPORTED_CURRENCIES))


def _cef(minor: int, currency: str) -> Decimal:
    """Money as CEF writes it: decimal(18,4), e.g. 19.9900."""
    return money_to_decimal(Money(minor, currency)).quantize(Decimal("0.0001"))


def clarity_order(currency: str, lines: list[tuple[int, int, int, int]], *, tax: int = 0, shipping: int = 0,
                  discount: int = 0) -> dict[str, Any]:
    """A full-projection CEF order; ``lines`` are (ordered, unit price, back-ordered, pre-sold)."""
    subtotal = sum(ordered * price for ordered, price, _, _ in lines)
    items = [{"Sku": f"SKU-{i}", "Quantity": ordered - back - pre, "QuantityBackOrdered": back,
              "QuantityPreSold": pre, "TotalQuantity": ordered, "UnitSoldPrice": _cef(price, currency),
              "ExtendedPrice": _cef(ordered * price, currency)}
             for i, (ordered, price, back, pre) in enumerate(lines)]
    total = subtotal + tax + shipping - discount
    totals = {"SubTotal": _cef(subtotal, currency), "Shipping": _cef(shipping, currency),
              "Tax": _cef(tax, currency), "Discounts": -_cef(discount, currency), "Total": _cef(total, currency)}
    return {"ID": 42, "CustomKey": "WEB-42", "CurrencyKey": currency, "StatusKey": "Shipped", "SalesItems": items,
            "Totals": {k: v for k, v in totals.items() if v}}  # CEF omits zeros


@st.composite
def shipments(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]], list[int], dict[str, int]]:
    """A currency, lines (ordered, unit price), units not shipped per line, and tax/shipping/discount."""
    currency = draw(CURRENCIES)
    lines = draw(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 10**6)), min_size=1, max_size=6))
    waiting = [draw(st.integers(0, ordered)) for ordered, _ in lines]
    tax, shipping = draw(st.integers(0, 10**5)), draw(st.integers(0, 10**5))
    gross = sum(q * p for q, p in lines) + tax + shipping
    discount = draw(st.integers(0, gross))
    return currency, lines, waiting, {"tax": tax, "shipping": shipping, "discount": discount}


def _payload(currency: str, lines: list[tuple[int, int]], waiting: list[int], extra: dict[str, int]) -> dict[str, Any]:
    # split the units that did not ship between back-ordered and pre-sold, as CEF may
    return clarity_order(currency, [(q, p, w - w // 3, w // 3) for (q, p), w in zip(lines, waiting, strict=True)],
                         **extra)


def _authorised(total: int, currency: str) -> Money:
    """What Stripe could have authorised for ``total``: the total, down to a capturable amount."""
    q = capture_quantum(currency)
    return Money(max(total - total % q, 0), currency)


@settings(deadline=None, max_examples=300)
@given(shipments(), st.integers(0, 3 * 10**6))
def test_never_above_capturable_and_always_an_exact_stripe_amount(case: Any, capturable_units: int) -> None:
    currency, lines, waiting, extra = case
    q = capture_quantum(currency)
    capturable = Money(capturable_units - capturable_units % q, currency)
    result = capture_amount_for_shipment(_payload(currency, lines, waiting, extra), capturable)
    assert 0 <= result.amount.minor <= capturable.minor
    assert result.amount.currency == currency and isinstance(result.amount.minor, int)
    assert result.released == capturable - result.amount
    if result.amount.minor:
        stripe_amount, code = to_stripe_amount(result.amount, card=True)  # representable: never a refusal
        assert from_stripe_amount(stripe_amount, code) == result.amount


@settings(deadline=None, max_examples=300)
@given(shipments())
def test_a_complete_shipment_captures_the_full_amount(case: Any) -> None:
    currency, lines, _, extra = case
    payload = _payload(currency, lines, [0] * len(lines), extra)
    total = sum(q * p for q, p in lines) + extra["tax"] + extra["shipping"] - extra["discount"]
    authorised = _authorised(total, currency)
    result = capture_amount_for_shipment(payload, authorised)
    assert not result.partial and result.amount == authorised
    if total % capture_quantum(currency) == 0:
        assert result.amount.minor == total


@settings(deadline=None, max_examples=300)
@given(shipments(), st.data())
def test_shipping_more_units_never_captures_less(case: Any, data: st.DataObject) -> None:
    currency, lines, waiting, extra = case
    fewer_waiting = [data.draw(st.integers(0, w)) for w in waiting]  # more units shipped on every line
    total = sum(q * p for q, p in lines) + extra["tax"] + extra["shipping"] - extra["discount"]
    authorised = _authorised(total, currency)
    less = capture_amount_for_shipment(_payload(currency, lines, waiting, extra), authorised)
    more = capture_amount_for_shipment(_payload(currency, lines, fewer_waiting, extra), authorised)
    assert less.amount.minor <= more.amount.minor


@settings(deadline=None, max_examples=300)
@given(shipments())
def test_the_amount_is_the_exact_share_rounded_down_once(case: Any) -> None:
    currency, lines, waiting, extra = case
    total = sum(q * p for q, p in lines) + extra["tax"] + extra["shipping"] - extra["discount"]
    result = capture_amount_for_shipment(_payload(currency, lines, waiting, extra), Money(10**15, currency))
    ordered, shipped = result.lines_ordered.minor, result.lines_shipped.minor
    assert ordered == sum(q * p for q, p in lines)
    if not ordered:  # every line free: the share is by units
        ordered = sum(q for q, _ in lines)
        shipped = ordered - sum(waiting)
    exact_times_ordered = total * shipped  # the exact share is this / ordered
    q = capture_quantum(currency)
    assert result.amount.minor * ordered <= exact_times_ordered
    assert exact_times_ordered - result.amount.minor * ordered < q * ordered


def test_jpy_partial_capture_is_whole_yen() -> None:
    # 3 x 1500 JPY + 500 shipping, one unit back-ordered: 5000 x 3000 / 4500 = 3333.33 -> 3333
    payload = clarity_order("JPY", [(3, 1500, 1, 0)], shipping=500)
    result = capture_amount_for_shipment(payload, Money(5000, "JPY"))
    assert result.amount == Money(3333, "JPY") and result.partial
    assert result.lines_shipped == Money(3000, "JPY") and result.released == Money(1667, "JPY")
    assert to_stripe_amount(result.amount, card=True) == (3333, "jpy")


def test_kwd_partial_capture_is_rounded_down_to_ten_fils() -> None:
    # 3 x 4.250 KWD + 1.000 shipping, one unit back-ordered: 13.750 x 8.500 / 12.750 = 9.1666... -> 9.160
    payload = clarity_order("KWD", [(3, 4250, 1, 0)], shipping=1000)
    result = capture_amount_for_shipment(payload, Money(13750, "KWD"))
    assert result.amount == Money(9160, "KWD")
    assert to_stripe_amount(result.amount, card=True) == (9160, "kwd")


def test_usd_partial_capture_shares_tax_shipping_and_discount() -> None:
    # lines 25.00 + 8.00 (the mug back-ordered), tax 2.00, shipping 5.00, discount 3.00: total 37.00;
    # 37.00 x 25.00 / 33.00 = 28.0303... -> 28.03 (= 25.00 + 25/33 of (2.00 + 5.00 - 3.00), rounded down)
    payload = clarity_order("USD", [(2, 1250, 0, 0), (1, 800, 1, 0)], tax=200, shipping=500, discount=300)
    result = capture_amount_for_shipment(payload, Money(3700, "USD"))
    assert result.amount == Money(2803, "USD")
    assert [(line.sku, line.ordered, line.shipped) for line in result.lines] == [("SKU-0", 2, 2), ("SKU-1", 1, 0)]
    assert describe(result) == "captures 28.03 of 37.00 USD; 1 x SKU-1 not shipped"


def test_nothing_shipped_captures_nothing_and_pre_sold_units_count_as_not_shipped() -> None:
    payload = clarity_order("EUR", [(2, 1000, 1, 1)], shipping=400)
    result = capture_amount_for_shipment(payload, Money(2400, "EUR"))
    assert result.amount == Money(0, "EUR") and result.released == Money(2400, "EUR")


def test_a_complete_shipment_is_capped_at_what_is_capturable() -> None:
    payload = clarity_order("USD", [(1, 5000, 0, 0)])
    assert capture_amount_for_shipment(payload, Money(4000, "USD")).amount == Money(4000, "USD")
    # the order shrank after authorisation: only its total is captured, Stripe releases the rest
    assert capture_amount_for_shipment(payload, Money(6000, "USD")).amount == Money(5000, "USD")
    assert capture_amount_for_shipment(payload, Money(0, "USD")).amount == Money(0, "USD")


def test_free_lines_are_shared_by_units() -> None:
    # two free samples, one back-ordered, with 4.00 shipping: half the units shipped, half the shipping
    payload = clarity_order("USD", [(2, 0, 1, 0)], shipping=400)
    assert capture_amount_for_shipment(payload, Money(400, "USD")).amount == Money(200, "USD")


def test_the_order_currency_defaults_to_the_payment_intents_and_must_match_it() -> None:
    payload = clarity_order("USD", [(1, 1000, 0, 0)])
    del payload["CurrencyKey"]
    assert capture_amount_for_shipment(payload, Money(1000, "USD")).amount == Money(1000, "USD")
    with pytest.raises(MappingError, match="in USD but its PaymentIntent captures EUR") as info:
        capture_amount_for_shipment(clarity_order("USD", [(1, 1000, 0, 0)]), Money(1000, "EUR"))
    assert info.value.suggested_fix


def test_inconsistent_quantities_and_negative_prices_are_mapping_errors() -> None:
    too_many = clarity_order("USD", [(2, 1000, 0, 0)])
    too_many["SalesItems"][0]["QuantityBackOrdered"] = 3
    with pytest.raises(MappingError, match="3 units back-ordered or pre-sold but only 2 ordered"):
        capture_amount_for_shipment(too_many, Money(2000, "USD"))
    fractional = clarity_order("USD", [(2, 1000, 0, 0)])
    fractional["SalesItems"][0]["QuantityBackOrdered"] = "0.5"
    with pytest.raises(MappingError, match="not a whole number"):
        capture_amount_for_shipment(fractional, Money(2000, "USD"))
    negative = clarity_order("USD", [(1, 3000, 1, 0), (1, 1000, 0, 0)])
    negative["SalesItems"][1].update(UnitSoldPrice="-10.00", ExtendedPrice="-10.00")
    negative["Totals"].update(SubTotal="20.00", Total="20.00")
    with pytest.raises(MappingError, match="negative price") as info:
        capture_amount_for_shipment(negative, Money(2000, "USD"))
    assert info.value.suggested_fix


def test_lines_read_like_order_from_clarity() -> None:
    payload = {"SalesItems": [{"Sku": "A", "Quantity": 2, "UnitCorePrice": "1.50"}, "not an item",
                              {"ProductKey": "B", "Quantity": 0, "UnitCorePrice": "9.00"},
                              {"Sku": "C", "Quantity": 1, "QuantityBackOrdered": 1, "TotalQuantity": 2,
                               "UnitCorePrice": "2.00", "UnitSoldPrice": "1.00"}]}
    lines = line_shipments(payload, "USD")
    assert [(ln.sku, ln.ordered, ln.shipped, ln.unit_price.minor) for ln in lines] == [("A", 2, 2, 150),
                                                                                      ("C", 2, 1, 100)]


@pytest.mark.parametrize(("currency", "quantum"), [("USD", 1), ("JPY", 1), ("KWD", 10), ("BHD", 10), ("MGA", 100),
                                                   ("ISK", 1), ("UGX", 1), ("HUF", 1)])
def test_capture_quantum_is_the_smallest_capturable_amount(currency: str, quantum: int) -> None:
    assert capture_quantum(currency) == quantum
    to_stripe_amount(Money(quantum, currency), card=True)


def test_the_step_output_carries_money_shapes_and_the_unshipped_units() -> None:
    payload = clarity_order("USD", [(4, 975, 1, 0)])
    out = capture_shape(capture_amount_for_shipment(payload, Money(3900, "USD")))
    assert out["amount"] == {"minor": 2925, "currency": "USD"} and out["partial"] is True
    assert out["released"] == {"minor": 975, "currency": "USD"}
    assert out["unshipped"] == [{"sku": "SKU-0", "quantity": 1}]
    assert out["summary"] == "captures 29.25 of 39.00 USD; 1 x SKU-0 not shipped"
