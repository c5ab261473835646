"""Domain -> Stripe params (Customer, PaymentIntent, capture) and Stripe PaymentIntent/Charge -> PaymentSummary."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Address, CaptureMode, Customer, Order, OrderLine
from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping.stripe import (
    capture_params,
    check_order_for_payment,
    customer_params,
    payment_intent_params,
    payment_summary_from_stripe,
    shipping_params,
)

FIXTURES = Path(os.environ.get("CB_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared") / "data" / "stripe" / "fixtures3.json"
AUSTIN = Address("1 Main St", "Austin", "US", "78701", region="TX", name="Ann Lee")


def _resource(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"][name]
    return copy.deepcopy(data)


def _order(total: int = 3319, currency: str = "USD", **changes: Any) -> Order:
    def money(minor: int) -> Money:
        return Money(minor, currency)
    customer = Customer("Ann@Example.com", "Ann Lee", "+1 512 555 0100", AUSTIN,
                        {"clarity": "3", "clarity_account": "9"})
    fields: dict[str, Any] = dict(
        external_id="1", key="WEB-100001", customer=customer,
        lines=(OrderLine("SKU-1", 2, money(1250)), OrderLine("SKU-2", 1, money(total - 2500))),
        total=money(total), tax=money(0), shipping=money(0), discount=money(0), status="Pending",
        shipping_address=AUSTIN, payment_method_ref="pm_card_visa")
    fields.update(changes)
    return Order(**fields)


def test_payment_intent_params_for_an_order() -> None:
    params = payment_intent_params(_order(), customer_id="cus_1")
    assert params == {
        "amount": 3319, "currency": "usd", "confirm": True, "capture_method": "automatic",
        "payment_method_types": ["card"], "payment_method": "pm_card_visa", "customer": "cus_1",
        "metadata": {"clarity_order_id": "1", "clarity_order_key": "WEB-100001", "clarity_customer_id": "3",
                     "clarity_account_id": "9", "bridge": "commerce-bridge"},
        "description": "Clarity order WEB-100001", "receipt_email": "Ann@example.com",
        "shipping": {"name": "Ann Lee", "phone": "+15125550100",
                     "address": {"line1": "1 Main St", "city": "Austin", "state": "TX", "postal_code": "78701",
                                 "country": "US"}},
    }


def test_manual_capture_special_currencies_and_options() -> None:
    params = payment_intent_params(_order(5120, "KWD"), capture=CaptureMode.MANUAL, confirm=False,
                                   payment_method="", receipt_email=False, description="x",
                                   metadata_extra={"note": "n" * 600}, truncate_metadata=["note"])
    assert (params["amount"], params["currency"], params["capture_method"]) == (5120, "kwd", "manual")
    assert "payment_method" not in params and "receipt_email" not in params and "customer" not in params
    assert len(params["metadata"]["note"]) == 500
    assert payment_intent_params(_order(3000, "ISK"))["amount"] == 300000
    no_ship = payment_intent_params(_order(shipping_address=None))
    assert "shipping" not in no_ship


@pytest.mark.parametrize(("order", "kwargs", "fragment"), [
    (_order(5124, "KWD"), {}, "last digit must be 0"),
    (replace(_order(), lines=(OrderLine("A", 1, Money(49, "USD")),), total=Money(49, "USD")), {}, "minimum"),
    (_order(payment_method_ref=""), {}, "no Stripe payment method"),
    (_order(), {"amount": Money(100, "EUR")}, "cannot charge EUR"),
    (_order(), {"payment_method_types": ["sepa_debit"], "amount": Money(100_000_000, "USD")}, "maximum"),
])
def test_payment_intent_params_refuse_what_stripe_cannot_take(order: Order, kwargs: dict[str, Any],
                                                             fragment: str) -> None:
    with pytest.raises(MappingError, match=fragment) as info:
        payment_intent_params(order, **kwargs)
    assert info.value.suggested_fix


def test_invalid_receipt_email_or_shipping_address_is_a_validation_error() -> None:
    bad_email = _order(customer=Customer("not-an-email"))
    with pytest.raises(ValidationError):
        payment_intent_params(bad_email)
    bad_address = _order(shipping_address=Address("1 Main St", "Austin", "US", "90210", region="TX"))
    with pytest.raises(ValidationError, match="postal_code"):
        payment_intent_params(bad_address)
    assert payment_intent_params(bad_address, validate_address=False)["shipping"]["address"]["postal_code"] == "90210"


def test_customer_params() -> None:
    assert customer_params(_order().customer) == {
        "email": "Ann@example.com", "name": "Ann Lee", "phone": "+15125550100",
        "address": {"line1": "1 Main St", "city": "Austin", "state": "TX", "postal_code": "78701", "country": "US"},
        "metadata": {"clarity_customer_id": "3", "clarity_account_id": "9", "bridge": "commerce-bridge"}}
    bare = customer_params(Customer("b@example.com", phone="12"))
    assert bare == {"email": "b@example.com", "metadata": {"bridge": "commerce-bridge"}}
    with pytest.raises(ValidationError):
        customer_params(Customer("nope"))


def test_shipping_name_falls_back_to_the_customer() -> None:
    order = _order(shipping_address=Address("1 Main St", "Austin", "US", "78701", region="TX"),
                   customer=Customer("c@example.com"))
    shipping = shipping_params(order)
    assert shipping is not None and shipping["name"] == "c@example.com" and "phone" not in shipping


def test_capture_params() -> None:
    assert capture_params() == {}
    assert capture_params(Money(1000, "USD")) == {"amount_to_capture": 1000}
    with pytest.raises(MappingError):
        capture_params(Money(0, "USD"))


def test_check_order_for_payment_reports_every_problem() -> None:
    check_order_for_payment(_order())
    broken = replace(_order(customer=Customer("bad"), shipping_address=Address("", "", "US", "1", region="TX")),
                     total=Money(10, "USD"))
    with pytest.raises(ValidationError) as info:
        check_order_for_payment(broken)
    assert len(info.value.errors) == 4  # totals, minimum, email, address
    with pytest.raises(ValidationError, match="email"):
        check_order_for_payment(_order(customer=Customer("bad")))
    check_order_for_payment(_order(customer=Customer("ok@example.com", billing_address=Address("x", "", "US"))),
                            validate_address=False)


def test_summary_of_a_succeeded_intent_with_an_expanded_charge() -> None:
    charge = _resource("charge")
    charge.update(id="ch_1", amount=3319, amount_captured=3319, captured=True, payment_intent="pi_1",
                  outcome={"risk_level": "normal", "type": "authorized"})
    intent = _resource("payment_intent")
    intent.update(id="pi_1", amount=3319, amount_received=3319, status="succeeded", latest_charge=charge,
                  last_payment_error=None, customer="cus_1", payment_method={"id": "pm_1"},
                  metadata={"clarity_order_key": "WEB-100001"})
    summary = payment_summary_from_stripe(intent)
    assert (summary.intent_id, summary.charge_id, summary.status) == ("pi_1", "ch_1", "succeeded")
    assert summary.amount == summary.amount_received == Money(3319, "USD")
    assert summary.captured and summary.risk_level == "normal"
    assert (summary.customer_id, summary.payment_method_id) == ("cus_1", "pm_1")
    assert summary.metadata == {"clarity_order_key": "WEB-100001"} and summary.last_error_code == ""


def test_summary_of_a_declined_intent() -> None:
    intent = _resource("payment_intent")
    intent.update(id="pi_2", amount=5120, currency="kwd", latest_charge="ch_2",
                  last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"})
    summary = payment_summary_from_stripe(intent)
    assert summary.amount == Money(5120, "KWD") and summary.amount_received == Money(0, "KWD")
    assert (summary.charge_id, summary.captured) == ("ch_2", False)
    assert (summary.last_error_code, summary.decline_code) == ("card_declined", "insufficient_funds")
    failed_charge = {"id": "ch_2", "captured": False, "failure_code": "expired_card"}
    intent["last_payment_error"] = None
    assert payment_summary_from_stripe(intent, failed_charge).last_error_code == "expired_card"


def test_summary_of_a_charge_alone() -> None:
    charge = _resource("charge")
    charge.update(id="ch_3", amount=500, currency="isk", captured=True, payment_intent={"id": "pi_3"},
                  outcome={"risk_level": "elevated"}, failure_code=None)
    charge.pop("amount_captured")
    summary = payment_summary_from_stripe(charge)
    assert (summary.intent_id, summary.charge_id) == ("pi_3", "ch_3")
    assert summary.amount == summary.amount_received == Money(5, "ISK")
    assert summary.risk_level == "elevated"
    charge.update(captured=False)
    assert payment_summary_from_stripe(charge).amount_received == Money(0, "ISK")


@pytest.mark.parametrize("obj", [{"object": "refund", "currency": "usd"}, {"object": "charge"}])
def test_summary_of_something_else_is_a_mapping_error(obj: dict[str, Any]) -> None:
    with pytest.raises(MappingError):
        payment_summary_from_stripe(obj)


def test_summary_refuses_amounts_that_break_the_currency_rule() -> None:
    intent = _resource("payment_intent")
    intent.update(amount=550, currency="isk")
    with pytest.raises(MappingError):
        payment_summary_from_stripe(intent)
