"""Stripe emulator through the official SDK: disputes opened by the bank (control API), staged and submitted
evidence, funds withdrawn and reinstated, closes won/lost/warning_closed, early fraud warnings, and
redelivery of an event."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import WebhookReceiver, assert_shape, control, shape_problems

DUE = 1_900_000_000


def charge_of(c: stripe.StripeClient, amount: int = 4000, currency: str = "usd") -> Any:
    pi = c.v1.payment_intents.create(
        params={"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": True}
    )
    return c.v1.charges.retrieve(pi.latest_charge)


def dispute_types(c: stripe.StripeClient) -> list[str]:
    events = c.v1.events.list(params={"type": "charge.dispute.*", "limit": 100}).data
    return [e.type for e in reversed(events)]


def test_bank_opens_a_dispute_evidence_is_staged_then_it_is_won(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    ch = charge_of(stripe_client)
    opened = control(stripe_url, "POST", f"charges/{ch.id}/dispute",
                     {"reason": "product_not_received", "amount": 3000, "evidence_due_by": DUE})  # fmt: skip
    d = c.disputes.retrieve(opened["id"])
    assert_shape(d, "dispute", stripe_fixtures)
    assert (d.status, d.reason, d.amount, d.evidence_details.due_by) == ("needs_response", "product_not_received",
                                                                         3000, DUE)  # fmt: skip
    withdrawal = c.balance_transactions.retrieve(d.balance_transactions[0].id)
    assert_shape(withdrawal, "balance_transaction", stripe_fixtures)
    assert (withdrawal.type, withdrawal.reporting_category, withdrawal.amount, withdrawal.fee, withdrawal.net) == (
        "adjustment", "dispute", -3000, 1500, -4500,
    )  # fmt: skip
    assert withdrawal.fee_details[0].type == "stripe_fee" and withdrawal.source == d.id
    assert c.charges.retrieve(ch.id).disputed is True
    staged = c.disputes.update(d.id, params={"evidence": {"shipping_tracking_number": "1Z999", "product_description":
                                                          "Blue mug"}, "submit": False})  # fmt: skip
    assert staged.status == "needs_response" and staged.evidence.shipping_tracking_number == "1Z999"
    assert staged.evidence_details.has_evidence and staged.evidence_details.submission_count == 0
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        c.disputes.update(d.id, params={"evidence": {"shoe_size": "9"}})
    assert unknown.value.param == "evidence[shoe_size]"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        c.refunds.create(params={"charge": ch.id, "amount": 100})
    assert refused.value.code == "charge_disputed"
    submitted = c.disputes.update(d.id, params={"submit": True})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    won = control(stripe_url, "POST", f"disputes/{d.id}/resolve", {"outcome": "won"})
    assert won["status"] == "won"
    reversal = c.balance_transactions.retrieve(won["balance_transactions"][-1]["id"])
    assert (reversal.reporting_category, reversal.amount, reversal.fee) == ("dispute_reversal", 3000, 0)
    assert dispute_types(stripe_client) == [
        "charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated",
        "charge.dispute.updated", "charge.dispute.funds_reinstated", "charge.dispute.closed",
    ]  # fmt: skip
    closed = c.events.list(params={"type": "charge.dispute.closed"}).data[0]
    assert closed.data.previous_attributes.status == "under_review"
    assert [x.id for x in c.disputes.list(params={"payment_intent": ch.payment_intent}).data] == [d.id]
    resp = httpx.post(f"{stripe_url}/_sandbox/disputes/{d.id}/resolve", json={"outcome": "lost"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "dispute_already_closed"


def test_lost_chargeback_keeps_funds_withdrawn_and_inquiry_closes_as_warning(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    c = stripe_client.v1
    lost_charge = charge_of(stripe_client, 2500)
    lost = control(stripe_url, "POST", f"charges/{lost_charge.id}/dispute", {"reason": "fraudulent"})
    assert lost["amount"] == 2500
    closed = c.disputes.close(lost["id"])
    assert closed.status == "lost" and len(closed.balance_transactions) == 1
    assert "charge.dispute.funds_reinstated" not in dispute_types(stripe_client)
    asked = charge_of(stripe_client, 1800)
    inquiry = control(
        stripe_url, "POST", f"charges/{asked.id}/dispute", {"reason": "general", "inquiry": True}
    )
    assert inquiry["status"] == "warning_needs_response" and inquiry["balance_transactions"] == []
    assert inquiry["is_charge_refundable"] is True
    review = c.disputes.update(inquiry["id"], params={"evidence": {"uncategorized_text": "order shipped"}})
    assert review.status == "warning_under_review"
    resp = httpx.post(f"{stripe_url}/_sandbox/disputes/{inquiry['id']}/resolve", json={"outcome": "lost"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "outcome"
    done = control(stripe_url, "POST", f"disputes/{inquiry['id']}/resolve", {"outcome": "warning_closed"})
    assert done["status"] == "warning_closed" and done["balance_transactions"] == []
    second = httpx.post(f"{stripe_url}/_sandbox/charges/{asked.id}/dispute", json={"reason": "general"})
    assert second.status_code == 400 and second.json()["error"]["code"] == "charge_already_disputed"
    bad = httpx.post(f"{stripe_url}/_sandbox/charges/{charge_of(stripe_client).id}/dispute",
                     json={"reason": "bored", "amount": 1})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "reason"


def test_dispute_amounts_are_exact_in_zero_decimal_currencies(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    ch = charge_of(stripe_client, 12000, "jpy")
    d = control(stripe_url, "POST", f"charges/{ch.id}/dispute", {"reason": "duplicate", "amount": 12000})
    txn = stripe_client.v1.balance_transactions.retrieve(d["balance_transactions"][0]["id"])
    assert (txn.currency, txn.amount) == ("jpy", -12000)
    too_big = httpx.post(f"{stripe_url}/_sandbox/charges/{charge_of(stripe_client, 500, 'jpy').id}/dispute",
                         json={"amount": 501})  # fmt: skip
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "amount"


def test_early_fraud_warning_is_listed_and_turns_non_actionable_on_full_refund(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    ch = charge_of(stripe_client, 3000)
    made = control(
        stripe_url, "POST", f"charges/{ch.id}/early_fraud_warning", {"fraud_type": "made_with_stolen_card"}
    )
    efw = c.radar.early_fraud_warnings.retrieve(made["id"])
    data = json.loads(efw.last_response.body)
    assert data.pop("payment_intent") == ch.payment_intent  # Stripe adds it when the charge has one
    assert not shape_problems(data, stripe_fixtures["radar.early_fraud_warning"])
    assert efw.id.startswith("issfr_") and efw.actionable and efw.fraud_type == "made_with_stolen_card"
    assert [w.id for w in c.radar.early_fraud_warnings.list(params={"charge": ch.id}).data] == [efw.id]
    by_pi = c.radar.early_fraud_warnings.list(params={"payment_intent": ch.payment_intent}).data
    assert [w.id for w in by_pi] == [efw.id]
    c.refunds.create(params={"charge": ch.id, "amount": 1000})
    assert c.radar.early_fraud_warnings.retrieve(efw.id).actionable is True
    c.refunds.create(params={"charge": ch.id})
    assert c.radar.early_fraud_warnings.retrieve(efw.id).actionable is False
    types = [e.type for e in reversed(c.events.list(params={"type": "radar.early_fraud_warning.*"}).data)]
    assert types == ["radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"]
    resp = httpx.post(
        f"{stripe_url}/_sandbox/charges/{ch.id}/early_fraud_warning", json={"fraud_type": "hunch"}
    )
    assert resp.status_code == 400
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.radar.early_fraud_warnings.retrieve("issfr_missing")
    assert info.value.code == "resource_missing"


def test_dispute_turns_the_charges_fraud_warning_non_actionable(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    ch = charge_of(stripe_client)
    efw = control(stripe_url, "POST", f"charges/{ch.id}/early_fraud_warning", {})
    assert efw["fraud_type"] == "unauthorized_use_of_card"
    control(stripe_url, "POST", f"charges/{ch.id}/dispute", {"reason": "fraudulent"})
    assert stripe_client.v1.radar.early_fraud_warnings.retrieve(efw["id"]).actionable is False


def test_resend_delivers_the_same_event_again_for_dedupe_tests(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_webhook: tuple[WebhookReceiver, str]
) -> None:
    receiver, secret = stripe_webhook
    ch = charge_of(stripe_client, 900)
    stripe_client.v1.refunds.create(params={"charge": ch.id})
    evs = receiver.wait_for(lambda evs: any(e["type"] == "charge.refunded" for e in evs))
    refunded = next(e for e in evs if e["type"] == "charge.refunded")
    assert control(stripe_url, "POST", f"events/{refunded['id']}/resend")["queued"] == 1
    evs = receiver.wait_for(lambda evs: sum(e["id"] == refunded["id"] for e in evs) == 2)
    for headers, body in receiver.requests:
        stripe.Webhook.construct_event(body, headers["stripe-signature"], secret)
    copies = [e for e in evs if e["id"] == refunded["id"]]
    first, again = ({k: v for k, v in e.items() if k != "pending_webhooks"} for e in copies)
    assert first == again  # the same event; only pending_webhooks moved on
    missing = httpx.post(f"{stripe_url}/_sandbox/events/evt_missing/resend")
    assert missing.status_code == 404
