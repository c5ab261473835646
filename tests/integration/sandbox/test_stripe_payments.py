"""Stripe emulator through the official SDK: customers, PaymentIntents, declines, 3-D Secure, capture, refunds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import assert_shape, control

VISA = {
    "type": "card",
    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
}


def card(number: str) -> dict[str, Any]:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}


def test_customer_create_update_list_search_when_using_sdk(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client.v1.customers
    a = c.create(params={"email": "ann@example.com", "name": "Ann", "metadata": {"clarity_id": "42"}})
    c.create(params={"email": "bob@example.com"})
    assert a.id.startswith("cus_")
    upd = c.update(a.id, params={"metadata": {"clarity_id": "", "erp": "7"}, "phone": "+15555550100"})
    assert upd.metadata.to_dict() == {"erp": "7"} and upd.phone == "+15555550100"
    assert c.retrieve(a.id).name == "Ann"
    found = c.search(params={"query": "email:'ann@example.com'"})
    assert [x.id for x in found.data] == [a.id]
    listed = c.list(params={"limit": 1})
    assert len(listed.data) == 1 and listed.has_more
    assert [x.id for x in c.list(params={"email": "bob@example.com"}).data] != [a.id]
    deleted = c.delete(a.id)
    assert deleted.deleted is True


def test_payment_intent_succeeds_with_charge_outcome_and_fee_when_card_is_visa(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "o-1"},
            "expand": ["latest_charge.balance_transaction", "payment_method"],
        }
    )
    assert pi.status == "succeeded" and pi.amount_received == 2000
    assert pi.client_secret.startswith(pi.id + "_secret_")
    ch = pi.latest_charge
    assert ch.outcome.network_status == "approved_by_network" and ch.outcome.type == "authorized"
    assert ch.outcome.risk_level == "normal" and isinstance(ch.outcome.risk_score, int)
    assert ch.payment_method_details.card.checks.cvc_check == "pass"
    txn = ch.balance_transaction
    assert txn.fee == 2000 * 290 // 10000 + 30 and txn.net == 2000 - txn.fee
    assert txn.status == "pending" and txn.available_on > txn.created
    assert pi.payment_method.card.last4 == "4242"


@pytest.mark.parametrize(
    ("number", "code", "decline_code"),
    [
        ("4000000000000002", "card_declined", "generic_decline"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("4000000000009987", "card_declined", "lost_card"),
        ("4000000000009979", "card_declined", "stolen_card"),
        ("4000000000000069", "expired_card", "expired_card"),
        ("4000000000000127", "incorrect_cvc", "incorrect_cvc"),
        ("4000000000000119", "processing_error", "processing_error"),
        ("4100000000000019", "card_declined", "fraudulent"),
        ("4000000000004954", "card_declined", "fraudulent"),
    ],
)
def test_confirm_raises_card_error_when_card_is_a_decline_test_card(
    stripe_client: stripe.StripeClient, number: str, code: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={"amount": 1500, "currency": "usd", "payment_method_data": card(number), "confirm": True}
        )
    err = info.value
    assert err.http_status == 402 and err.code == code
    assert err.error is not None and err.error.type == "card_error" and err.error.decline_code == decline_code
    pi = stripe_client.v1.payment_intents.retrieve(
        err.error.payment_intent.id, params={"expand": ["latest_charge"]}
    )
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.decline_code == decline_code
    assert pi.latest_charge.status == "failed" and pi.latest_charge.failure_code == code
    if number in ("4100000000000019", "4000000000004954"):
        assert pi.latest_charge.outcome.type == "blocked" and pi.latest_charge.outcome.risk_level == "highest"
    else:
        assert pi.latest_charge.outcome.network_status == "declined_by_network"


def test_elevated_risk_card_succeeds_with_elevated_risk_level(stripe_client: stripe.StripeClient) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "payment_method": "pm_card_riskLevelElevated",
            "confirm": True,
            "expand": ["latest_charge"],
        }
    )
    assert pi.status == "succeeded"
    assert (
        pi.latest_charge.outcome.risk_level == "elevated" and pi.latest_charge.outcome.type == "manual_review"
    )


def test_declined_payment_can_be_retried_with_a_good_card(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 900,
                "currency": "eur",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    pid = info.value.error.payment_intent.id
    pi = stripe_client.v1.payment_intents.confirm(pid, params={"payment_method": "pm_card_mastercard"})
    assert pi.status == "succeeded" and pi.last_payment_error is None


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_three_d_secure_challenge_completes_or_fails_when_sandbox_is_told(
    stripe_client: stripe.StripeClient, stripe_url: str, outcome: str
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_threeDSecure2Required",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action" and pi.next_action.type == "use_stripe_sdk"
    control(stripe_url, "POST", f"payment_intents/{pi.id}/3ds", {"outcome": outcome})
    after = stripe_client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    if outcome == "succeed":
        assert after.status == "succeeded"
        assert after.latest_charge.payment_method_details.card.three_d_secure.result == "authenticated"
    else:
        assert after.status == "requires_payment_method"
        assert after.last_payment_error.code == "payment_intent_authentication_failure"


def test_manual_capture_partial_then_refunds_never_exceed_captured(
    stripe_client: stripe.StripeClient,
) -> None:
    pis = stripe_client.v1.payment_intents
    pi = pis.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "capture_method": "manual",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert pi.status == "requires_capture" and pi.amount_capturable == 10000
    with pytest.raises(stripe.InvalidRequestError):
        pis.capture(pi.id, params={"amount_to_capture": 10001})
    cap = pis.capture(pi.id, params={"amount_to_capture": 6000, "expand": ["latest_charge"]})
    assert cap.status == "succeeded" and cap.amount_received == 6000
    assert cap.latest_charge.captured and cap.latest_charge.amount_captured == 6000
    txns = stripe_client.v1.balance_transactions.list(params={"source": cap.latest_charge.id}).data
    cats = sorted(t.reporting_category for t in txns)
    assert cats == ["charge", "partial_capture_reversal"]
    assert sum(t.net for t in txns) == 6000 - (6000 * 290 + 5000) // 10000 - 30
    r1 = stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2500})
    assert r1.status == "succeeded" and r1.amount == 2500
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 3501})
    assert info.value.param == "amount"
    r2 = stripe_client.v1.refunds.create(params={"charge": cap.latest_charge.id})
    assert r2.amount == 3500
    ch = stripe_client.v1.charges.retrieve(cap.latest_charge.id)
    assert ch.refunded and ch.amount_refunded == 6000
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.refunds.create(params={"charge": ch.id, "amount": 1})


def test_cancel_records_reason_and_refuses_succeeded_intents(stripe_client: stripe.StripeClient) -> None:
    pis = stripe_client.v1.payment_intents
    pi = pis.create(
        params={
            "amount": 700,
            "currency": "usd",
            "capture_method": "manual",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    c = pis.cancel(pi.id, params={"cancellation_reason": "requested_by_customer"})
    assert c.status == "canceled" and c.cancellation_reason == "requested_by_customer" and c.canceled_at
    done = pis.create(
        params={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        pis.cancel(done.id)
    assert info.value.code == "payment_intent_unexpected_state"


def test_payment_methods_from_card_numbers_attach_and_list_by_customer(
    stripe_client: stripe.StripeClient,
) -> None:
    cus = stripe_client.v1.customers.create(params={"email": "pm@example.com"})
    pm = stripe_client.v1.payment_methods.create(params=VISA)
    assert pm.id.startswith("pm_") and pm.card.brand == "visa" and pm.card.last4 == "4242"
    stripe_client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    listed = stripe_client.v1.customers.payment_methods.list(cus.id)
    assert [x.id for x in listed.data] == [pm.id]
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.payment_methods.create(params=card("4242424242424241"))
    assert info.value.code == "incorrect_number"


def test_objects_match_stripe_example_shapes_for_each_resource(
    stripe_client: stripe.StripeClient, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    cus = c.customers.create(params={"email": "shape@example.com"})
    prod = c.products.create(params={"name": "T-shirt"})
    price = c.prices.create(
        params={
            "product": prod.id,
            "unit_amount": 2000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    pm = c.payment_methods.create(params=VISA)
    pi = c.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": pm.id,
            "confirm": True,
        }
    )
    charge = c.charges.retrieve(pi.latest_charge)
    refund = c.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    txn = c.balance_transactions.retrieve(charge.balance_transaction)
    event = c.events.retrieve(c.events.list(params={"limit": 1}).data[0].id)
    ep = c.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]})
    pairs = [
        (cus, "customer"),
        (prod, "product"),
        (price, "price"),
        (pm, "payment_method"),
        (pi, "payment_intent"),
        (charge, "charge"),
        (refund, "refund"),
        (txn, "balance_transaction"),
        (event, "event"),
        (c.webhook_endpoints.retrieve(ep.id), "webhook_endpoint"),
        (c.balance.retrieve(), "balance"),
        (c.customers.delete(cus.id), "deleted_customer"),
    ]
    for obj, resource in pairs:
        assert_shape(obj, resource, stripe_fixtures)


def test_search_payment_intents_and_charges_by_metadata_and_status(
    stripe_client: stripe.StripeClient,
) -> None:
    c = stripe_client.v1
    ok = c.payment_intents.create(
        params={
            "amount": 800,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "A-1"},
        }
    )
    c.payment_intents.create(params={"amount": 900, "currency": "usd", "metadata": {"order_id": "A-2"}})
    found = c.payment_intents.search(params={"query": "metadata['order_id']:'A-1'"}).data
    assert [p.id for p in found] == [ok.id]
    waiting = c.payment_intents.search(params={"query": "status:'requires_payment_method'"}).data
    assert [p.metadata["order_id"] for p in waiting] == ["A-2"]
    charges = c.charges.search(params={"query": f"payment_intent:'{ok.id}' AND status:'succeeded'"}).data
    assert [ch.id for ch in charges] == [ok.latest_charge]
    with pytest.raises(stripe.InvalidRequestError):
        c.charges.search(params={"query": "bogus query"})


def test_three_d_secure_with_return_url_redirects_back_after_the_challenge(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            "return_url": "http://shop.test/return?o=1",
        }
    )
    assert pi.status == "requires_action" and pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == "http://shop.test/return?o=1"
    r = httpx.get(pi.next_action.redirect_to_url.url, params={"outcome": "succeed"})
    assert r.status_code == 302
    assert r.headers["location"].startswith(f"http://shop.test/return?o=1&payment_intent={pi.id}&")
    assert r.headers["location"].endswith("redirect_status=succeeded")
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
