"""Stripe emulator through the official SDK: settlement currency and FX on balance transactions, a payout's
transactions listed page by page with their sources, payout arrival events, and payout failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import WebhookReceiver, assert_shape, control

EUR_RATE = "1.084350"
JPY_RATE = "0.006712"
DEFAULTS: dict[str, Any] = {
    "payout_delay_days": 2,
    "auto_payouts": True,
    "settlement_currency": None,
    "fx_rates": {},
}


@pytest.fixture(autouse=True)
def restore_config(stripe_url: str) -> Iterator[None]:
    """The server is shared by the module: every test starts and ends with the default settings."""
    control(stripe_url, "POST", "config", DEFAULTS)
    yield
    control(stripe_url, "POST", "config", DEFAULTS)


def fee(amount: int) -> int:
    return (amount * 290 + 5000) // 10000 + 30


def half_up(amount: int, rate: str, scale: int = 1) -> int:
    return int((Decimal(amount) * Decimal(rate) * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def pay(c: stripe.StripeClient, amount: int, currency: str = "usd") -> Any:
    return c.v1.payment_intents.create(
        params={"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": True}
    )


def txn_of(c: stripe.StripeClient, charge_id: str) -> Any:
    txn_id: Any = c.v1.charges.retrieve(charge_id).balance_transaction
    return c.v1.balance_transactions.retrieve(txn_id)


def test_converted_charge_settles_in_settlement_currency_with_rate_and_fee_when_settlement_is_set(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client
    config = control(
        stripe_url,
        "POST",
        "config",
        {"settlement_currency": "USD", "fx_rates": {"EUR": EUR_RATE, "jpy": JPY_RATE}},
    )
    assert config["settlement_currency"] == "usd" and config["fx_rates"] == {"eur": EUR_RATE, "jpy": JPY_RATE}
    eur = pay(c, 10000, "eur")
    txn = txn_of(c, eur.latest_charge)
    assert_shape(txn, "balance_transaction", stripe_fixtures)
    assert (txn.currency, txn.amount, txn.exchange_rate) == ("usd", 10844, float(EUR_RATE))  # 10843.5 up
    raw = json.loads(txn.last_response.body, parse_float=str)
    assert raw["exchange_rate"] == "1.08435"  # a JSON number, as Stripe sends it
    assert (txn.fee, txn.net, txn.fee_details[0].currency) == (fee(10844), 10844 - fee(10844), "usd")
    assert (
        c.v1.charges.retrieve(eur.latest_charge).currency == "eur"
    )  # the charge keeps its presentment currency
    jpy = txn_of(c, pay(c, 1000, "jpy").latest_charge)  # zero-decimal to two-decimal: 1000 * 0.006712 * 100
    assert (jpy.currency, jpy.amount, jpy.fee) == ("usd", 671, fee(671))
    usd = txn_of(c, pay(c, 2000).latest_charge)
    assert (usd.currency, usd.amount, usd.exchange_rate) == ("usd", 2000, None)
    with pytest.raises(stripe.InvalidRequestError) as no_rate:
        pay(c, 2000, "gbp")
    assert no_rate.value.param == "currency" and "fx_rates" in str(no_rate.value.user_message)
    assert len(c.v1.payment_intents.list(params={"limit": 10}).data) == 3  # nothing was made for GBP
    assert [b.currency for b in c.v1.balance.retrieve().pending] == ["usd"]


def test_refunds_partial_capture_and_disputes_convert_and_pay_out_in_settlement_currency_when_settlement_is_set(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    c = stripe_client
    control(
        stripe_url,
        "POST",
        "config",
        {"settlement_currency": "usd", "fx_rates": {"eur": EUR_RATE}, "payout_delay_days": 0},
    )
    paid = pay(c, 10000, "eur")
    refund: Any = c.v1.refunds.create(params={"payment_intent": paid.id, "amount": 2500})
    rtxn = c.v1.balance_transactions.retrieve(refund.balance_transaction)
    assert (rtxn.currency, rtxn.amount, rtxn.exchange_rate, rtxn.fee) == ("usd", -2711, float(EUR_RATE), 0)
    assert refund.currency == "eur" and refund.amount == 2500
    failed = control(stripe_url, "POST", f"refunds/{refund.id}/fail", {"failure_reason": "declined"})
    back = c.v1.balance_transactions.retrieve(failed["failure_balance_transaction"])
    assert (back.type, back.currency, back.amount, back.exchange_rate) == (
        "refund_failure",
        "usd",
        2711,
        float(EUR_RATE),
    )
    auth: Any = c.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    c.v1.payment_intents.capture(auth.id, params={"amount_to_capture": 3001})
    pair = c.v1.balance_transactions.list(params={"source": auth.latest_charge}).data
    by_category = {t.reporting_category: t for t in pair}
    gross, kept = half_up(5000, EUR_RATE), half_up(3001, EUR_RATE)
    assert (by_category["charge"].amount, by_category["charge"].fee) == (gross, fee(kept))
    reversal = by_category["partial_capture_reversal"]
    assert (reversal.currency, reversal.amount, reversal.type) == ("usd", kept - gross, "adjustment")
    disputed = pay(c, 4000, "eur")
    opened = control(
        stripe_url, "POST", f"charges/{disputed.latest_charge}/dispute", {"reason": "fraudulent"}
    )
    withdrawal = c.v1.balance_transactions.retrieve(opened["balance_transactions"][0]["id"])
    assert (withdrawal.currency, withdrawal.amount, withdrawal.fee, withdrawal.reporting_category) == (
        "usd",
        -half_up(4000, EUR_RATE),
        1500,
        "dispute",
    )
    assert withdrawal.fee_details[0].description == "Dispute fee"
    # Stripe converts refunds and disputes at the rate of the moment they happen
    control(stripe_url, "POST", "config", {"fx_rates": {"eur": "1.100000"}})
    won = control(stripe_url, "POST", f"disputes/{opened['id']}/resolve", {"outcome": "won"})
    reinstated = c.v1.balance_transactions.retrieve(won["balance_transactions"][1]["id"])
    assert (reinstated.reporting_category, reinstated.amount, reinstated.exchange_rate) == (
        "dispute_reversal",
        4400,
        1.1,
    )
    late: Any = c.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1000})
    assert c.v1.balance_transactions.retrieve(late.balance_transaction).amount == -1100
    jobs = control(stripe_url, "POST", "payouts/run")
    assert len(jobs["payouts_created"]) == 1
    po = c.v1.payouts.retrieve(jobs["payouts_created"][0])
    assert po.currency == "usd"
    lines = list(c.v1.balance_transactions.list(params={"payout": po.id, "limit": 100}).auto_paging_iter())
    assert {t.currency for t in lines} == {"usd"}
    assert sum(t.net for t in lines if t.type != "payout") == po.amount
    assert c.v1.balance.retrieve().available[0].amount == 0


def test_charge_keeps_its_currency_when_no_settlement_currency_is_set(
    stripe_client: stripe.StripeClient,
) -> None:
    txn = txn_of(stripe_client, pay(stripe_client, 10000, "eur").latest_charge)
    assert (txn.currency, txn.amount, txn.exchange_rate) == ("eur", 10000, None)


def test_config_refuses_bad_settlement_currency_and_rates(stripe_url: str) -> None:
    for body in (
        {"settlement_currency": "dollars"},
        {"fx_rates": {"eur": "-1"}},
        {"fx_rates": {"eur": "abc"}},
        {"fx_rates": ["eur"]},
    ):
        assert httpx.post(f"{stripe_url}/_sandbox/config", json=body).status_code == 400


def test_payout_transactions_list_every_kind_with_sources_over_several_pages_when_paged_by_sdk(
    stripe_client: stripe.StripeClient, stripe_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = stripe_client
    control(stripe_url, "POST", "config", {"payout_delay_days": 0})
    control(stripe_url, "POST", "prefill", {"payment_intents": 120})
    refunded = pay(c, 5000)
    refund = c.v1.refunds.create(params={"payment_intent": refunded.id, "amount": 1200})
    auth: Any = c.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    c.v1.payment_intents.capture(auth.id, params={"amount_to_capture": 2000})
    won = control(
        stripe_url, "POST", f"charges/{pay(c, 4000).latest_charge}/dispute", {"reason": "fraudulent"}
    )
    control(stripe_url, "POST", f"disputes/{won['id']}/resolve", {"outcome": "won"})
    lost = control(stripe_url, "POST", f"charges/{pay(c, 2500).latest_charge}/dispute", {"reason": "general"})
    control(stripe_url, "POST", f"disputes/{lost['id']}/resolve", {"outcome": "lost"})
    jobs = control(stripe_url, "POST", "payouts/run")
    po = c.v1.payouts.retrieve(jobs["payouts_created"][0])
    listed_before = len(
        control(stripe_url, "GET", "requests?method=GET&path=/v1/balance_transactions")["data"]
    )

    monkeypatch.setattr(stripe, "api_key", "sk_test_emulator")
    monkeypatch.setattr(stripe, "api_base", stripe_url)
    txns: list[Any] = list(
        stripe.BalanceTransaction.list(payout=po.id, limit=100, expand=["data.source"]).auto_paging_iter()
    )
    pages = len(control(stripe_url, "GET", "requests?method=GET&path=/v1/balance_transactions")["data"])
    assert pages - listed_before == 2
    assert len(txns) == len({t.id for t in txns}) == 120 + 4 + 1 + 1 + 2 + 1 + 1
    # charges, a refund, a partial capture reversal, two dispute withdrawals, a reinstatement, the payout
    kinds = {(t.type, t.reporting_category, t.source.object) for t in txns}
    assert kinds == {
        ("charge", "charge", "charge"),
        ("refund", "refund", "refund"),
        ("adjustment", "partial_capture_reversal", "charge"),
        ("adjustment", "dispute", "dispute"),
        ("adjustment", "dispute_reversal", "dispute"),
        ("payout", "payout", "payout"),
    }
    by_source = {(t.source.id, t.reporting_category): t for t in txns}
    assert by_source[(refund.id, "refund")].amount == -1200
    assert (
        by_source[(won["id"], "dispute")].fee == 1500
        and by_source[(won["id"], "dispute_reversal")].amount == 4000
    )
    assert by_source[(lost["id"], "dispute")].net == -2500 - 1500
    own = by_source[(po.id, "payout")]
    assert own.amount == -po.amount and own.source.amount == po.amount
    assert sum(t.net for t in txns if t.type != "payout") == po.amount
    sdk = list(
        c.v1.balance_transactions.list(
            params={"payout": po.id, "limit": 7, "expand": ["data.source"]}
        ).auto_paging_iter()
    )
    assert [t.id for t in sdk] == [t.id for t in txns]


def test_payout_is_paid_and_reconciled_when_clock_passes_its_arrival_date(
    stripe_client: stripe.StripeClient, stripe_url: str, stripe_webhook: tuple[WebhookReceiver, str]
) -> None:
    receiver, _ = stripe_webhook
    c = stripe_client
    pay(c, 3000)
    control(stripe_url, "POST", "clock/advance", {"days": 3})  # settles, then the automatic payout
    po = c.v1.payouts.list(params={"limit": 1}).data[0]
    assert (po.status, po.automatic, po.reconciliation_status) == ("pending", True, "in_progress")
    assert c.v1.payouts.list(params={"status": "paid"}).data == []
    control(stripe_url, "POST", "clock/advance", {"to": po.arrival_date})
    evs = receiver.wait_for(lambda es: any(e["type"] == "payout.reconciliation_completed" for e in es))
    mine = [e for e in evs if e["type"].startswith("payout.") and e["data"]["object"]["id"] == po.id]
    assert [e["type"] for e in mine] == [
        "payout.created",
        "payout.updated",
        "payout.paid",
        "payout.reconciliation_completed",
    ]
    assert mine[1]["data"]["previous_attributes"]["status"] == "pending"
    assert mine[2]["data"]["object"]["status"] == "paid"
    assert mine[3]["data"]["object"]["reconciliation_status"] == "completed"
    assert [p.id for p in c.v1.payouts.list(params={"status": "paid"}).data] == [po.id]


def test_failed_payout_credits_the_balance_back_and_is_paid_out_again_when_bank_returns_it(
    stripe_client: stripe.StripeClient,
    stripe_url: str,
    stripe_webhook: tuple[WebhookReceiver, str],
    stripe_fixtures: dict[str, Any],
) -> None:
    receiver, _ = stripe_webhook
    c = stripe_client
    control(stripe_url, "POST", "config", {"payout_delay_days": 0})
    pay(c, 5000)
    po = c.v1.payouts.retrieve(control(stripe_url, "POST", "payouts/run")["payouts_created"][0])
    control(stripe_url, "POST", "clock/advance", {"to": po.arrival_date})
    assert c.v1.payouts.retrieve(po.id).status == "paid"
    failed = control(stripe_url, "POST", f"payouts/{po.id}/fail", {})
    assert (failed["status"], failed["failure_code"]) == ("failed", "account_closed")
    assert failed["failure_message"] == "The bank account has been closed."
    po = c.v1.payouts.retrieve(po.id, params={"expand": ["failure_balance_transaction"]})
    back: Any = po.failure_balance_transaction
    assert_shape(po, "payout", stripe_fixtures)
    assert (back.type, back.reporting_category, back.amount, back.net, back.source, back.status) == (
        "payout_failure",
        "payout_reversal",
        po.amount,
        po.amount,
        po.id,
        "available",
    )
    assert c.v1.balance.retrieve().available[0].amount == po.amount
    evs = receiver.wait_for(lambda es: any(e["type"] == "payout.failed" for e in es))
    tail = [e for e in evs if e["type"] in ("payout.updated", "payout.failed")][-2:]
    assert [e["type"] for e in tail] == ["payout.updated", "payout.failed"]
    assert tail[0]["data"]["previous_attributes"]["status"] == "paid"
    assert tail[1]["data"]["object"]["failure_balance_transaction"] == back.id
    assert {t.type for t in c.v1.balance_transactions.list(params={"payout": po.id}).data} == {
        "charge",
        "payout",
    }
    again = c.v1.payouts.retrieve(control(stripe_url, "POST", "payouts/run")["payouts_created"][0])
    assert again.amount == po.amount
    lines: list[Any] = c.v1.balance_transactions.list(
        params={"payout": again.id, "expand": ["data.source"]}
    ).data
    assert {(t.type, t.source.id) for t in lines} == {("payout_failure", po.id), ("payout", again.id)}
    assert [p.id for p in c.v1.payouts.list(params={"status": "failed"}).data] == [po.id]


def test_payout_in_transit_fails_and_never_becomes_paid_when_failed_before_arrival(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    c = stripe_client
    control(stripe_url, "POST", "config", {"payout_delay_days": 0})
    pay(c, 2000)
    po_id = control(stripe_url, "POST", "payouts/run")["payouts_created"][0]
    bad = httpx.post(f"{stripe_url}/_sandbox/payouts/{po_id}/fail", json={"failure_code": "lost_in_the_post"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "failure_code"
    failed = control(stripe_url, "POST", f"payouts/{po_id}/fail", {"failure_code": "no_account"})
    assert (
        failed["failure_code"] == "no_account"
        and "No bank account could be located" in failed["failure_message"]
    )
    control(stripe_url, "POST", "clock/advance", {"days": 2})
    assert c.v1.payouts.retrieve(po_id).status == "failed"
    again = httpx.post(f"{stripe_url}/_sandbox/payouts/{po_id}/fail", json={})
    assert again.status_code == 400 and again.json()["error"]["code"] == "payout_unexpected_state"


def test_partial_capture_reversal_settles_with_its_charge_and_is_paid_out_in_the_same_payout(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    c = stripe_client
    pi = c.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa",
                                             "confirm": True, "capture_method": "manual"})
    captured = c.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 3000})
    charge_id = str(captured.latest_charge)
    pair = [t for t in c.v1.balance_transactions.list(params={"source": charge_id, "limit": 10}).data]
    assert sorted(t.reporting_category for t in pair) == ["charge", "partial_capture_reversal"]
    assert {t.available_on for t in pair} == {pair[0].available_on} and {t.status for t in pair} == {"pending"}
    control(stripe_url, "POST", "clock/advance", {"days": 3})
    po = c.v1.payouts.list(params={"limit": 1}).data[0]
    listed = {t.id for t in c.v1.balance_transactions.list(params={"payout": po.id, "limit": 100}).data}
    assert {t.id for t in pair} <= listed  # the charge and its reversal in one payout: 3000 net of the fee
