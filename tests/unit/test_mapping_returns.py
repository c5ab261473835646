"""Returns refunded in Clarity: the return's amount and the over-refund guard (mapping/returns.py).

The property tests play returns against one payment in any order, as the bridge decides them one after
the other under the PaymentIntent's lock: what is paid back never exceeds what was captured (or
authorised), each return is paid whole or parks, and only the returns that fit are paid.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import Conflict, MappingError, ValidationError
from commerce_bridge.mapping.returns import (
    PaymentState,
    plan_refund,
    records_transaction,
    return_from_clarity,
)
from commerce_bridge.mapping.status import StatusMap

# the step of an amount Stripe can represent, in ISO minor units (KWD: the last digit must be 0)
STEP = {"USD": 1, "JPY": 1, "KWD": 10}


def clarity_return(**fields: Any) -> dict[str, Any]:
    return {"ID": 7, "CustomKey": "RMA-7", "StatusKey": "Refund Approved", "SalesOrderIDs": [42], **fields}


def paid(minor: int, currency: str = "USD", refunded: int = 0) -> PaymentState:
    return PaymentState("succeeded", Money.zero(currency), Money(minor, currency), Money(refunded, currency))


def authorised(minor: int, currency: str = "USD") -> PaymentState:
    return PaymentState("requires_capture", Money(minor, currency), Money.zero(currency), Money.zero(currency))


def test_the_refund_amount_the_store_set_is_what_is_paid_back() -> None:
    ret = return_from_clarity(clarity_return(RefundAmount="12.5000", Totals={"SubTotal": "20.0000", "Total": "20"}),
                              order_currency="USD")
    assert (ret.id, ret.key, ret.order_id, ret.status, ret.amount) == (7, "RMA-7", 42, "Refund Approved",
                                                                       Money(1250, "USD"))


def test_without_a_refund_amount_the_return_pays_lines_tax_and_shipping_less_discounts() -> None:
    totals = {"SubTotal": "20.0000", "Tax": "1.6500", "Shipping": "5.0000", "Discounts": "-2.0000",
              "Total": "24.6500"}
    assert return_from_clarity(clarity_return(Totals=totals), order_currency="USD").amount == Money(2465, "USD")


@pytest.mark.parametrize(("text", "currency", "minor"), [("1500", "JPY", 1500), ("12.750", "KWD", 12750),
                                                         ("0.0100", "USD", 1)])
def test_amounts_are_exact_in_zero_two_and_three_decimal_currencies(text: str, currency: str, minor: int) -> None:
    ret = return_from_clarity(clarity_return(RefundAmount=text, CurrencyKey=currency), order_currency=currency)
    assert ret.amount == Money(minor, currency)


def test_a_return_without_a_custom_key_is_keyed_by_its_id_and_its_order_comes_from_the_links() -> None:
    ret = return_from_clarity({"ID": 9, "AssociatedSalesOrders": [{"SlaveID": 5}], "RefundAmount": "1"},
                              order_currency="USD")
    assert (ret.key, ret.order_id) == ("9", 5)


@pytest.mark.parametrize(("fields", "says"), [
    ({"RefundAmount": "5.5", "CurrencyKey": "JPY"}, "finer than one minor unit"),
    ({"Totals": {"SubTotal": "10", "Tax": "1", "Total": "12"}}, "Totals.Total is 12"),
    ({"RefundAmount": "1", "CurrencyKey": "EUR"}, "is in EUR but its order in JPY"),
    ({"ID": None}, "has no ID"),
    ({"ID": "R-1"}, "ID 'R-1' is not a number"),
])
def test_a_broken_return_is_a_mapping_error_never_a_rounding(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(MappingError, match=says):
        return_from_clarity(clarity_return(**fields), order_currency="JPY")


def test_a_captured_payment_is_refunded_for_the_return() -> None:
    plan = plan_refund(Money(1000, "USD"), paid(3300, refunded=2300))
    assert (plan.action, plan.amount, plan.to_capture) == ("refund", Money(1000, "USD"), None)


def test_a_return_over_what_is_left_parks_with_the_numbers() -> None:
    with pytest.raises(ValidationError) as info:
        plan_refund(Money(1001, "USD"), paid(3300, refunded=2300), return_key="RMA-7")
    err = info.value
    assert "asks for 10.01 USD but only 10.00 USD is left (captured 33.00, already refunded 23.00)" in err.message
    assert err.details.items() >= {"code": "return_over_refund", "return_minor": 1001, "captured_minor": 3300,
                                   "refunded_minor": 2300, "remaining_minor": 1000, "currency": "USD"}.items()
    assert err.suggested_fix and "at most 10.00 USD" in err.suggested_fix


def test_an_uncaptured_payment_is_captured_for_the_remainder_or_canceled() -> None:
    plan = plan_refund(Money(1200, "USD"), authorised(3300))
    assert (plan.action, plan.to_capture) == ("capture", Money(2100, "USD"))
    assert plan_refund(Money(3300, "USD"), authorised(3300)).action == "cancel"
    with pytest.raises(ValidationError, match=r"only 33\.00 USD is authorised"):
        plan_refund(Money(3301, "USD"), authorised(3300))


def test_payments_that_took_no_money_park_and_processing_ones_are_retried() -> None:
    with pytest.raises(ValidationError, match="it took no money"):
        plan_refund(Money(100, "USD"), PaymentState("canceled", *(Money.zero("USD"),) * 3))
    with pytest.raises(Conflict):
        plan_refund(Money(100, "USD"), PaymentState("processing", *(Money.zero("USD"),) * 3))
    assert plan_refund(Money(0, "USD"), paid(100)).action == "none"


def test_an_amount_stripe_cannot_represent_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(MappingError, match="last digit must be 0"):
        plan_refund(Money(5125, "KWD"), paid(12750, "KWD"))
    with pytest.raises(MappingError, match="is in USD but its payment in JPY"):
        plan_refund(Money(5, "USD"), paid(500, "JPY"))


def _play(currency: str, charge: int, returns: list[int], *, captured: bool) -> list[bool]:
    """Decide ``returns`` one after the other against one payment: paid (True) or parked (False), in order."""
    step = STEP[currency]
    decided = []
    state = paid(charge, currency) if captured else authorised(charge, currency)
    for minor in returns:
        try:
            plan = plan_refund(Money(minor, currency), state)
        except ValidationError:
            decided.append(False)
            continue
        assert plan.amount.minor == minor and minor % step == 0
        decided.append(True)
        if plan.action == "refund":
            state = paid(state.captured.minor, currency, refunded=state.refunded.minor + minor)
        elif plan.action == "capture":  # captured for the remainder: the rest of the money stays with the customer
            assert plan.to_capture is not None and plan.to_capture.minor + minor == charge
            state = paid(plan.to_capture.minor, currency)
        else:
            assert plan.action == "cancel" and minor == charge
            state = PaymentState("canceled", *(Money.zero(currency),) * 3)
    return decided


@st.composite
def returns_of_a_payment(draw: st.DrawFn) -> tuple[str, int, list[int]]:
    currency = draw(st.sampled_from(sorted(STEP)))
    step = STEP[currency]
    charge = draw(st.integers(1, 100_000)) * step
    returns = draw(st.lists(st.integers(1, charge // step + 20).map(lambda n: n * step), min_size=1, max_size=8))
    return currency, charge, returns


@settings(max_examples=300, deadline=None)
@given(returns_of_a_payment(), st.randoms(use_true_random=False), st.booleans())
def test_returns_in_any_order_never_pay_back_more_than_the_charge(
        case: tuple[str, int, list[int]], rnd: Any, captured: bool) -> None:
    currency, charge, returns = case
    order = list(returns)
    rnd.shuffle(order)
    decided = _play(currency, charge, order, captured=captured)
    assert sum(m for m, ok in zip(order, decided, strict=True) if ok) <= charge
    left = charge  # a return is paid whole exactly when it fits into what the earlier ones left
    for minor, ok in zip(order, decided, strict=True):
        assert ok == (minor <= left)
        left -= minor if ok else 0


@settings(max_examples=200, deadline=None)
@given(returns_of_a_payment())
def test_partial_refunds_that_fit_are_all_paid_whatever_their_order(case: tuple[str, int, list[int]]) -> None:
    currency, charge, returns = case
    fitting: list[int] = []
    for minor in returns:  # a set of returns that together fit into the charge
        if sum(fitting) + minor <= charge:
            fitting.append(minor)
    for order in (fitting, list(reversed(fitting))):
        assert all(_play(currency, charge, order, captured=True))


def test_a_return_without_an_order_or_with_a_bad_order_id_or_a_negative_amount() -> None:
    assert return_from_clarity({"ID": 3, "RefundAmount": "1"}, order_currency="USD").order_id is None
    with pytest.raises(MappingError, match="order ID 'x' is not a number"):
        return_from_clarity({"ID": 3, "SalesOrderIDs": ["x"]}, order_currency="USD")
    with pytest.raises(MappingError, match="negative refund"):
        return_from_clarity({"ID": 3, "Totals": {"SubTotal": "1", "Discounts": "-2", "Total": "-1"}},
                            order_currency="USD")


def test_the_status_map_names_the_return_statuses_and_refuses_bad_ones() -> None:
    assert StatusMap.default().workflow_vars()["return_refund_status"] == "Refund Approved"
    renamed = StatusMap.from_config({"clarity_return_statuses": {"refund": "Refund OK", "refunded": "Refunded"}})
    assert (renamed.workflow_vars()["return_refund_status"], renamed.to_config()["clarity_return_statuses"]) == (
        "Refund OK", {"refund": "Refund OK", "refunded": "Refunded"})
    with pytest.raises(ValidationError, match="is not a return state"):
        StatusMap.from_config({"clarity_return_statuses": {"approved": "Refund OK"}})
    with pytest.raises(ValidationError, match="must be different statuses"):
        StatusMap.from_config({"clarity_return_statuses": {"refund": "Done", "refunded": "Done"}})
    with pytest.raises(ValidationError, match="gives no return_refunded_status"):
        StatusMap.from_config({"clarity_return_statuses": {"refund": "Refund OK"}}).workflow_vars()


def test_a_return_records_a_transaction_by_its_refund_id_or_a_payment() -> None:
    assert records_transaction({"RefundTransactionID": "re_1"}, "re_1")
    assert records_transaction({"SalesReturnPayments": [{"Slave": {"TransactionNumber": "pi_2"}}, "junk"]}, "pi_2")
    assert not records_transaction({"RefundTransactionID": "re_1", "SalesReturnPayments": [{"Slave": None}]}, "re_9")
