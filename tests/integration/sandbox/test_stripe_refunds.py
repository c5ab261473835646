"""Stripe emulator through the official SDK: refunds (partial, idempotent, capped), their status lifecycle,
balance transactions and events, Dashboard refunds and the refund test cards, in 2-, 0- and 3-decimal
currencies."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import WebhookReceiver, assert_shape, control, shape_problems

# fields Stripe adds to a refund only in the states that use them (absent from its example object)
REFUND_OPTIONAL = {"failure_reason", "failure_balance_transaction", "pending_reason", "next_action"}


def pay(c: stripe.StripeClient, amount: int, currency: str = "usd", pm: str = "pm_card_visa") -> Any:
    return c.v1.payment_intents.create(
        params={"amount": amount, "currency": currency, "payment_method": pm, "confirm": True}
    )


def raw(obj: Any) -> dict[str, Any]:
    return json.loads(obj.last_response.body)  # type: ignore[no-any-return]


def assert_refund_shape(obj: Any, fixtures: dict[str, Any], present: frozenset[str] = frozenset()) -> None:
    data = raw(obj) if not isinstance(obj, dict) else obj
    assert present <= set(data), f"missing {present - set(data)}"
    assert not (set(data) & REFUND_OPTIONAL) - present, "state-only fields present in the wrong state"
    problems = shape_problems({k: v for k, v in data.items() if k not in REFUND_OPTIONAL}, fixtures["refund"])
    assert not problems, problems


def types_in_order(c: stripe.StripeClient, prefix: str = "") -> list[str]:
    events = c.v1.events.list(params={"limit": 100}).data
    return [e.type for e in reversed(events) if e.type.startswith(prefix)]


def test_refund_by_payment_intent_is_partial_idempotent_and_shaped_like_stripe(
    stripe_client: stripe.StripeClient, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    pi = pay(stripe_client, 6000)
    params = {"payment_intent": pi.id, "amount": 2500, "reason": "requested_by_customer",
              "metadata": {"clarity_return_key": "RMA-1"}}  # fmt: skip
    r1 = c.refunds.create(params=params, options={"idempotency_key": "ret-RMA-1"})
    again = c.refunds.create(params=params, options={"idempotency_key": "ret-RMA-1"})
    assert again.id == r1.id and again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        c.refunds.create(params={**params, "amount": 2600}, options={"idempotency_key": "ret-RMA-1"})
    assert_refund_shape(r1, stripe_fixtures)
    assert (r1.status, r1.amount, r1.charge, r1.payment_intent) == (
        "succeeded",
        2500,
        pi.latest_charge,
        pi.id,
    )
    assert r1.metadata.to_dict() == {"clarity_return_key": "RMA-1"} and r1.reason == "requested_by_customer"
    txn = c.balance_transactions.retrieve(r1.balance_transaction)
    assert_shape(txn, "balance_transaction", stripe_fixtures)
    assert (txn.type, txn.reporting_category, txn.amount, txn.fee, txn.net, txn.source) == (
        "refund", "refund", -2500, 0, -2500, r1.id,
    )  # fmt: skip
    ch = c.charges.retrieve(pi.latest_charge)
    assert (ch.amount_refunded, ch.refunded) == (2500, False)
    assert [r.id for r in ch.refunds.data] == [r1.id]
    r2 = c.refunds.create(params={"charge": ch.id})
    assert r2.amount == 3500 and c.charges.retrieve(ch.id).refunded is True
    assert [r.id for r in c.refunds.list(params={"payment_intent": pi.id}).data] == [r2.id, r1.id]
    assert [r.id for r in c.refunds.list(params={"charge": ch.id, "limit": 1}).data] == [r2.id]
    updated = c.refunds.update(r1.id, params={"metadata": {"note": "x"}})
    assert updated.metadata.to_dict() == {"clarity_return_key": "RMA-1", "note": "x"}
    assert c.refunds.retrieve(r1.id).metadata["note"] == "x"


def test_refunding_more_than_is_left_gives_stripes_errors(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client.v1
    pi = pay(stripe_client, 6000)
    with pytest.raises(stripe.InvalidRequestError) as first:
        c.refunds.create(params={"payment_intent": pi.id, "amount": 6001})
    assert first.value.user_message == "Refund amount ($60.01) is greater than charge amount ($60.00)"
    assert (first.value.param, first.value.code, first.value.http_status) == ("amount", None, 400)
    c.refunds.create(params={"payment_intent": pi.id, "amount": 2500})
    with pytest.raises(stripe.InvalidRequestError) as later:
        c.refunds.create(params={"payment_intent": pi.id, "amount": 3501})
    assert later.value.user_message == (
        "Refund amount ($35.01) is greater than unrefunded amount on charge ($35.00)"
    )
    c.refunds.create(params={"payment_intent": pi.id})
    with pytest.raises(stripe.InvalidRequestError) as done:
        c.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert done.value.code == "charge_already_refunded"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        c.refunds.create(params={"charge": "ch_nope"})
    assert missing.value.code == "resource_missing" and missing.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as reason:
        c.refunds.create(params={"payment_intent": pay(stripe_client, 100).id, "reason": "changed_mind"})
    assert reason.value.param == "reason"


def test_refund_events_follow_stripes_order_with_cumulative_charge_totals(
    stripe_client: stripe.StripeClient,
    stripe_webhook: tuple[WebhookReceiver, str],
    stripe_fixtures: dict[str, Any],
) -> None:
    receiver, secret = stripe_webhook
    pi = pay(stripe_client, 6000)
    r1 = stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2500})
    stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 3500})
    assert types_in_order(stripe_client, "refund.") + types_in_order(stripe_client, "charge.refund") == [
        "refund.created", "refund.created", "charge.refunded", "charge.refunded",
    ]  # fmt: skip
    ordered = [t for t in types_in_order(stripe_client) if "refund" in t]
    assert ordered == ["refund.created", "charge.refunded", "refund.created", "charge.refunded"]
    evs = receiver.wait_for(lambda evs: sum(e["type"] == "charge.refunded" for e in evs) == 2)
    for headers, body in receiver.requests:
        stripe.Webhook.construct_event(body, headers["stripe-signature"], secret)
    refunded = [e for e in evs if e["type"] == "charge.refunded"]
    totals = sorted(
        (e["data"]["object"]["amount_refunded"], e["data"]["object"]["refunded"]) for e in refunded
    )
    assert totals == [(2500, False), (6000, True)]
    prevs = sorted(e["data"]["previous_attributes"]["amount_refunded"] for e in refunded)
    assert prevs == [0, 2500]
    created = next(e for e in evs if e["type"] == "refund.created" and e["data"]["object"]["id"] == r1.id)
    assert_refund_shape(created["data"]["object"], stripe_fixtures)
    assert created["request"]["id"] and "previous_attributes" not in created["data"]


def test_pending_refund_card_settles_and_refund_fail_card_fails_with_reversal(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    slow = c.refunds.create(
        params={"payment_intent": pay(stripe_client, 1000, pm="pm_card_pendingRefund").id}
    )
    assert_refund_shape(slow, stripe_fixtures, frozenset({"pending_reason"}))
    assert slow.status == "pending" and slow.pending_reason == "processing"
    bad_pi = pay(stripe_client, 2000, pm="pm_card_refundFail")
    bad = c.refunds.create(params={"payment_intent": bad_pi.id, "amount": 1500})
    assert bad.status == "succeeded" and c.charges.retrieve(bad_pi.latest_charge).amount_refunded == 1500
    jobs = control(stripe_url, "POST", "clock/advance", {"seconds": 1})
    assert sorted(jobs["refunds_moved"]) == sorted([slow.id, bad.id])
    assert c.refunds.retrieve(slow.id).status == "succeeded"
    failed = c.refunds.retrieve(bad.id)
    assert_refund_shape(failed, stripe_fixtures, frozenset({"failure_reason", "failure_balance_transaction"}))
    assert failed.status == "failed" and failed.failure_reason == "expired_or_canceled_card"
    back = c.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert (back.type, back.reporting_category, back.amount, back.source) == (
        "refund_failure", "refund_failure", 1500, bad.id,
    )  # fmt: skip
    ch = c.charges.retrieve(bad_pi.latest_charge)
    assert (ch.amount_refunded, ch.refunded) == (0, False)
    assert types_in_order(stripe_client, "refund.") == [
        "refund.created", "refund.created", "refund.updated", "refund.updated", "refund.failed",
    ]  # fmt: skip
    updates = [e for e in c.events.list(params={"type": "charge.refund.updated"}).data]
    assert {e.data.previous_attributes.status for e in updates} == {"pending", "succeeded"}
    assert control(stripe_url, "POST", "clock/advance", {"seconds": 1})["refunds_moved"] == []


def test_dashboard_refunds_and_back_office_moves_follow_the_lifecycle(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client.v1
    pi = pay(stripe_client, 5000)
    dash = control(
        stripe_url, "POST", "refunds", {"payment_intent": pi.id, "amount": 1000, "status": "pending"}
    )
    assert dash["status"] == "pending" and dash["metadata"] == {}
    created = c.events.list(params={"type": "refund.created"}).data[0]
    assert created.request.id and created.request.idempotency_key is None
    failed = control(
        stripe_url, "POST", f"refunds/{dash['id']}/fail", {"failure_reason": "insufficient_funds"}
    )
    assert failed["failure_reason"] == "insufficient_funds" and failed["failure_balance_transaction"]
    waiting = control(stripe_url, "POST", "refunds", {"charge": pi.latest_charge, "amount": 700,
                                                      "status": "requires_action"})  # fmt: skip
    assert waiting["next_action"]["type"] == "display_details"
    assert c.charges.retrieve(pi.latest_charge).amount_refunded == 700
    canceled = c.refunds.cancel(waiting["id"])
    assert_refund_shape(canceled, stripe_fixtures, frozenset({"failure_balance_transaction"}))
    assert canceled.status == "canceled" and c.charges.retrieve(pi.latest_charge).amount_refunded == 0
    done = c.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.refunds.cancel(done.id)
    assert "Only refunds with a status of requires_action can be canceled" in str(info.value.user_message)
    # the control API answers Stripe-shaped errors too
    resp = httpx.post(f"{stripe_url}/_sandbox/refunds/{done.id}/require_action")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "refund_unexpected_state"
    resp = httpx.post(f"{stripe_url}/_sandbox/refunds/{done.id}/fail", json={"failure_reason": "because"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "failure_reason"
    assert control(stripe_url, "POST", f"refunds/{done.id}/fail", {})["failure_reason"] == "unknown"


@pytest.mark.parametrize(
    ("currency", "charged", "too_much", "message"),
    [
        ("jpy", 1000, 1001, "Refund amount (¥1,001) is greater than charge amount (¥1,000)"),
        ("kwd", 5120, 5130, "Refund amount (KWD 5.130) is greater than charge amount (KWD 5.120)"),
    ],
)
def test_zero_and_three_decimal_refunds_are_exact(
    stripe_client: stripe.StripeClient, currency: str, charged: int, too_much: int, message: str
) -> None:
    c = stripe_client.v1
    pi = pay(stripe_client, charged, currency)
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.refunds.create(params={"payment_intent": pi.id, "amount": too_much})
    assert info.value.user_message == message
    part = c.refunds.create(params={"payment_intent": pi.id, "amount": charged - 10 * 37})
    assert (part.amount, part.currency) == (charged - 370, currency)
    txn = c.balance_transactions.retrieve(part.balance_transaction)
    assert (txn.amount, txn.currency) == (-(charged - 370), currency)
    rest = c.refunds.create(params={"payment_intent": pi.id})
    assert rest.amount == 370 and c.charges.retrieve(pi.latest_charge).amount_refunded == charged


def test_three_decimal_and_whole_unit_currencies_refuse_unrepresentable_amounts(
    stripe_client: stripe.StripeClient,
) -> None:
    c = stripe_client.v1
    kwd = pay(stripe_client, 5120, "kwd")
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.refunds.create(params={"payment_intent": kwd.id, "amount": 125})
    assert info.value.param == "amount" and "must end in 0" in str(info.value.user_message)
    isk = pay(stripe_client, 50000, "isk")
    with pytest.raises(stripe.InvalidRequestError) as whole:
        c.refunds.create(params={"payment_intent": isk.id, "amount": 150})
    assert whole.value.code == "invalid_charge_amount_no_decimal_compatible"
    assert c.refunds.create(params={"payment_intent": isk.id, "amount": 200}).amount == 200
