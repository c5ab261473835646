"""Stripe emulator: subscriptions and invoices on a test clock, disputes from test cards, balance and payouts."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import assert_shape, control

DAY = 86400
T0 = 1_893_456_000  # 2030-01-01T00:00:00Z


def setup_subscriber(c: stripe.StripeClient, pm: str) -> tuple[Any, Any, Any]:
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "billing"})
    cus = c.v1.customers.create(
        params={"email": "sub@example.com", "test_clock": clock.id, "payment_method": pm}
    )
    pm_id = c.v1.customers.payment_methods.list(cus.id).data[0].id
    c.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm_id}})
    prod = c.v1.products.create(params={"name": "Plan"})
    price = c.v1.prices.create(
        params={
            "product": prod.id,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month"},
        }
    )
    return clock, cus, price


def test_subscription_renews_each_month_when_test_clock_advances(
    stripe_client: stripe.StripeClient, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client
    clock, cus, price = setup_subscriber(c, "pm_card_visa")
    sub = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id, "quantity": 2}]}
    )
    assert sub.status == "active" and sub.items.data[0].current_period_start == T0
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.status == "paid" and inv.amount_paid == 3000 and inv.billing_reason == "subscription_create"
    assert_shape(sub, "subscription", stripe_fixtures)
    assert_shape(inv, "invoice", stripe_fixtures)
    assert_shape(clock, "test_helpers.test_clock", stripe_fixtures)
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 62 * DAY})
    invoices = c.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == [
        "subscription_cycle",
        "subscription_cycle",
        "subscription_create",
    ]
    assert all(i.status == "paid" for i in invoices)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and sub.items.data[0].current_period_start == T0 + (31 + 28) * DAY
    types = [e.type for e in c.v1.events.list(params={"limit": 100}).data]
    assert types.count("invoice.paid") == 3 and "test_helpers.test_clock.ready" in types


def test_failed_renewal_goes_past_due_then_retries_then_cancels(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    clock, cus, price = setup_subscriber(c, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        c.v1.subscriptions.create(
            params={
                "customer": cus.id,
                "items": [{"price": price.id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    # a trial makes the first invoice free, so the first charge happens at renewal
    sub = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id}], "trial_period_days": 7}
    )
    assert sub.status == "trialing"
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 5 * DAY})
    warned = c.v1.events.list(params={"type": "customer.subscription.trial_will_end"}).data
    assert [e.data.object.id for e in warned] == [sub.id]
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 8 * DAY})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (
        inv.status == "open" and inv.attempt_count == 1 and inv.next_payment_attempt == T0 + 7 * DAY + 3 * DAY
    )
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 11 * DAY})
    assert c.v1.invoices.retrieve(inv.id).attempt_count == 2
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 30 * DAY})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.cancellation_details.reason == "payment_failed"
    assert c.v1.invoices.retrieve(inv.id).attempt_count == 4
    failed = c.v1.events.list(params={"type": "invoice.payment_failed", "limit": 100}).data
    assert len([e for e in failed if e.data.object.id == inv.id]) == 4
    deleted = c.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert deleted[0].data.object.id == sub.id


def test_past_due_invoice_paid_with_new_card_reactivates_subscription(
    stripe_client: stripe.StripeClient,
) -> None:
    c = stripe_client
    clock, cus, price = setup_subscriber(c, "pm_card_chargeCustomerFail")
    sub = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id}], "trial_period_days": 3}
    )
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 4 * DAY})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    pm = c.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "5555555555554444", "exp_month": 1, "exp_year": 2032}}
    )
    c.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    inv = c.v1.invoices.pay(sub.latest_invoice, params={"payment_method": pm.id})
    assert inv.status == "paid"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_period_end_and_immediate_cancel(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    clock, cus, price = setup_subscriber(c, "pm_card_visa")
    s1 = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    s2 = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    s1 = c.v1.subscriptions.update(s1.id, params={"cancel_at_period_end": True})
    assert s1.cancel_at == T0 + 31 * DAY
    ev = c.v1.events.list(params={"type": "customer.subscription.updated", "limit": 1}).data[0]
    assert ev.data.previous_attributes.cancel_at_period_end is False
    s2 = c.v1.subscriptions.cancel(s2.id)
    assert s2.status == "canceled"
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 40 * DAY})
    assert c.v1.subscriptions.retrieve(s1.id).status == "canceled"
    assert len(c.v1.invoices.list(params={"subscription": s1.id}).data) == 1


def test_dispute_card_opens_dispute_that_withdraws_funds_and_fee(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client
    pi = c.v1.payment_intents.create(
        params={"amount": 4000, "currency": "usd", "payment_method": "pm_card_createDispute", "confirm": True}
    )
    disputes = c.v1.disputes.list(params={"charge": pi.latest_charge}).data
    assert len(disputes) == 1
    d = c.v1.disputes.retrieve(disputes[0].id)
    assert_shape(d, "dispute", stripe_fixtures)
    assert d.status == "needs_response" and d.reason == "fraudulent" and d.amount == 4000
    assert d.balance_transactions[0].amount == -4000 and d.balance_transactions[0].fee == 1500
    assert c.v1.charges.retrieve(pi.latest_charge).disputed is True
    d = c.v1.disputes.update(d.id, params={"evidence": {"uncategorized_text": "winning_evidence"}})
    d = c.v1.disputes.retrieve(d.id)
    assert d.status == "won" and d.balance_transactions[-1].reporting_category == "dispute_reversal"
    types = [e.type for e in c.v1.events.list(params={"type": "charge.dispute.*", "limit": 100}).data]
    assert set(types) == {
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    }


def test_automatic_payout_reconciles_with_balance_transactions(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client
    amounts = [1000, 2500, 4999]
    pis = [
        c.v1.payment_intents.create(
            params={"amount": a, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
        )
        for a in amounts
    ]
    c.v1.refunds.create(params={"payment_intent": pis[0].id, "amount": 400})
    bal = c.v1.balance.retrieve()
    fees = sum((a * 290 + 5000) // 10000 + 30 for a in amounts)
    assert bal.pending[0].amount == sum(amounts) - fees
    assert bal.available[0].amount == -400
    jobs = control(stripe_url, "POST", "clock/advance", {"days": 3})
    assert len(jobs["payouts_created"]) == 1
    po = c.v1.payouts.retrieve(jobs["payouts_created"][0])
    assert_shape(po, "payout", stripe_fixtures)
    assert po.automatic and po.amount == sum(amounts) - fees - 400
    txns = list(c.v1.balance_transactions.list(params={"payout": po.id, "limit": 2}).auto_paging_iter())
    non_payout = [t for t in txns if t.type != "payout"]
    assert sum(t.net for t in non_payout) == po.amount
    assert sorted(t.type for t in non_payout) == ["charge", "charge", "charge", "refund"]
    assert c.v1.balance.retrieve().available[0].amount == 0
    control(stripe_url, "POST", "clock/advance", {"days": 2})
    po = c.v1.payouts.retrieve(po.id)
    assert po.status == "paid" and po.reconciliation_status == "completed"
    types = [e.type for e in c.v1.events.list(params={"type": "payout.*", "limit": 10}).data]
    assert {"payout.created", "payout.paid", "payout.reconciliation_completed"} <= set(types)
    assert "balance.available" in [e.type for e in c.v1.events.list(params={"limit": 100}).data]
