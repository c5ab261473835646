"""Stripe emulator through the official SDK: dispute evidence updates as Stripe takes them (merged fields,
staged then submitted once, refused once under review or closed, File-upload fields, Stripe's limits), and
the request log that shows which updates were carried out and which were idempotent replays."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import control


def disputed(c: stripe.StripeClient, url: str, amount: int = 4000) -> Any:
    pi = c.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    return control(url, "POST", f"charges/{pi.latest_charge}/dispute", {"reason": "product_not_received"})


def test_evidence_is_merged_staged_then_submitted_once_and_refused_afterwards(
        stripe_client: stripe.StripeClient, stripe_url: str) -> None:
    c = stripe_client.v1
    d = disputed(stripe_client, stripe_url)
    c.disputes.update(d["id"], params={"evidence": {"customer_name": "Ann Lee", "shipping_carrier": "UPS"},
                                       "submit": False})
    staged = c.disputes.update(d["id"], params={"evidence": {"shipping_carrier": "", "product_description": "Mug"},
                                                "submit": False})
    ev = staged.evidence
    assert (ev.customer_name, ev.shipping_carrier, ev.product_description) == ("Ann Lee", None, "Mug")
    assert staged.status == "needs_response" and staged.evidence_details.has_evidence
    assert staged.evidence_details.submission_count == 0
    submitted = c.disputes.update(d["id"], params={"submit": True})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    for params in ({"submit": True}, {"evidence": {"uncategorized_text": "more"}, "submit": False}):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            c.disputes.update(d["id"], params=params)  # type: ignore[arg-type]
        assert refused.value.code == "dispute_unexpected_state"
    assert c.disputes.update(d["id"], params={"metadata": {"note": "kept"}}).metadata["note"] == "kept"
    closed = c.disputes.close(disputed(stripe_client, stripe_url)["id"])
    with pytest.raises(stripe.InvalidRequestError):
        c.disputes.update(closed.id, params={"evidence": {"customer_name": "Ann"}, "submit": False})


def test_file_fields_and_stripe_s_text_limits_are_enforced(stripe_client: stripe.StripeClient,
                                                            stripe_url: str) -> None:
    c = stripe_client.v1
    d = disputed(stripe_client, stripe_url)
    with pytest.raises(stripe.InvalidRequestError) as no_file:
        c.disputes.update(d["id"], params={"evidence": {"receipt": "Order WEB-1, 35.70 USD"}, "submit": False})
    assert (no_file.value.code, no_file.value.param) == ("resource_missing", "evidence[receipt]")
    with pytest.raises(stripe.InvalidRequestError) as too_long:
        c.disputes.update(d["id"], params={"evidence": {"uncategorized_text": "x" * 20_001}, "submit": False})
    assert too_long.value.param == "evidence[uncategorized_text]"
    fields = ("access_activity_log", "cancellation_rebuttal", "duplicate_charge_explanation", "product_description",
              "refund_policy_disclosure", "refund_refusal_explanation", "uncategorized_text")
    full: Any = {"evidence": dict.fromkeys(fields, "y" * 20_000), "submit": False}
    c.disputes.update(d["id"], params=full)
    with pytest.raises(stripe.InvalidRequestError) as combined:  # 7 x 20,000 + 10,001 > 150,000
        c.disputes.update(d["id"], params={"evidence": {"cancellation_policy_disclosure": "z" * 10_001},
                                           "submit": False})
    assert combined.value.param == "evidence" and "150,000" in str(combined.value)
    assert c.disputes.retrieve(d["id"]).evidence.cancellation_policy_disclosure is None


def test_the_request_log_tells_updates_from_idempotent_replays(stripe_client: stripe.StripeClient,
                                                               stripe_url: str) -> None:
    d = disputed(stripe_client, stripe_url)
    for _ in range(2):
        stripe_client.v1.disputes.update(d["id"], params={"evidence": {"customer_name": "Ann"}, "submit": False},
                                         options={"idempotency_key": f"evidence-{d['id']}"})
    log = httpx.get(f"{stripe_url}/_sandbox/requests",
                    params={"method": "POST", "path": f"/v1/disputes/{d['id']}"}).json()["data"]
    assert [(r["status"], r["replayed"], r["idempotency_key"]) for r in log] == [
        (200, False, f"evidence-{d['id']}"), (200, True, f"evidence-{d['id']}")]
    assert all(r["request_id"].startswith("req_") for r in log)
