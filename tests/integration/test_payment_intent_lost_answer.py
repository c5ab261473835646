"""``stripe.payment_intent.create`` when Stripe made the PaymentIntent but every answer was lost, against the
sandbox Stripe stripe_emulator (real HTTP, the real SDK gateway) and our database (SQLite and PostgreSQL).

The stripe_emulator's ``drop_response`` fault carries a create out and then closes the connection, so the step
sees only connection errors and links nothing. A run (a ``dlq replay`` of the same run, or a new run of
the order) more than 24 h later, when Stripe has forgotten the idempotency key, must find that
PaymentIntent by its ``clarity_order_key`` metadata instead of making a second one. The first attempt
of an order makes no search request (search has its own limit of 20 reads/s).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.errors import RateLimited, UpstreamRejected, UpstreamUnavailable, ValidationError
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.locks import SqlKeyLocks
from commerce_bridge.workflows.steps import stripe as stripe_steps
from tests.support.orders import order_shape as order

KEY = "sk_test_lost"
SEARCH = "/v1/payment_intents/search"



@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[PeerServer]:
    # like Stripe's, its search sees a PaymentIntent only a while after it was made
    with PeerServer(build_app(search_lag_s=60)) as server:
        yield server


@pytest.fixture
def gateway(stripe_base: str) -> StripeSdkGateway:
    return StripeSdkGateway(build_stripe_client(KEY, api_base=stripe_base, timeout_s=10))


@pytest.fixture
def identity(engine: Engine) -> SqlIdentityMap:
    return SqlIdentityMap(engine)


@pytest.fixture
def create(gateway: StripeSdkGateway, engine: Engine, identity: SqlIdentityMap) -> Action:
    return stripe_steps.actions(gateway, SqlKeyLocks(engine), identity)["stripe.payment_intent.create"]


@pytest.fixture
def customer_id(gateway: StripeSdkGateway) -> str:
    return str(gateway.create_customer({"email": "ann@example.com"}, idempotency_key="lost-customer")["id"])


def ctx(run: str) -> StepContext:
    return StepContext(run_id=run, step_id="payment", attempt=1, source="clarity", event_id=run, event_type=None,
                       event={})


def fault(stripe_base: str, kind: str, path: str, count: int = 1, method: str | None = None) -> None:
    httpx.post(f"{stripe_base}/_sandbox/faults",
               json={"kind": kind, "path": path, "count": count, "method": method}).raise_for_status()


def armed_faults(stripe_base: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{stripe_base}/_sandbox/faults").json()["faults"])


def intents(stripe_base: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{stripe_base}/v1/payment_intents", params={"limit": 100},
                     headers={"Authorization": f"Bearer {KEY}"}).json()
    return list(page["data"])


def linked(identity: SqlIdentityMap, key: str) -> str | None:
    return identity.external("payment", identity.entity_for_key("payment", key), "stripe")


def lose_every_answer(create: Action, stripe_base: str, customer_id: str, key: str, pm: str = "pm_card_visa",
                      attempts: int = 3) -> None:
    """Run 1's attempts of the step: Stripe carries the create out, every answer is lost on the way.

    The engine retries the step within seconds, before the search can see the PaymentIntent: the retries
    send the create again with the same idempotency key, and Stripe replays (and the fault loses) its
    first answer; there is still one PaymentIntent.
    """
    fault(stripe_base, "drop_response", "/v1/payment_intents", count=attempts, method="POST")
    for _ in range(attempts):
        with pytest.raises(UpstreamUnavailable):
            create(ctx("run-1"), {"order": order(key, pm), "customer_id": customer_id})
    assert armed_faults(stripe_base) == []
    assert len(intents(stripe_base)) == 1


def a_day_later(stripe_base: str) -> None:
    """25 h on the stripe_emulator's account clock: Stripe has forgotten run 1's idempotency key."""
    httpx.post(f"{stripe_base}/_sandbox/clock/advance", json={"seconds": 25 * 3600}).raise_for_status()


@pytest.mark.parametrize("later_run", ["run-1", "run-2"], ids=["dlq-replay-same-key", "new-run"])
def test_a_create_whose_answer_was_lost_is_found_a_day_later_and_linked_not_made_again(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str, later_run: str) -> None:
    lose_every_answer(create, stripe_base, customer_id, "WEB-1")
    [made] = intents(stripe_base)  # Stripe did make it; nothing is linked to the order
    assert made["status"] == "succeeded" and made["metadata"]["clarity_order_key"] == "WEB-1"
    assert linked(identity, "WEB-1") is None
    a_day_later(stripe_base)

    again = create(ctx(later_run), {"order": order("WEB-1"), "customer_id": customer_id})

    assert (again["id"], again["status"], again["reused"]) == (made["id"], "succeeded", True)
    assert [pi["id"] for pi in intents(stripe_base)] == [made["id"]]  # exactly one PaymentIntent for the order
    assert linked(identity, "WEB-1") == made["id"]
    # and from now on the link answers, without a search
    fault(stripe_base, "server_error", SEARCH)
    assert create(ctx("run-3"), {"order": order("WEB-1"), "customer_id": customer_id})["id"] == made["id"]
    assert len(armed_faults(stripe_base)) == 1


def test_the_first_attempt_of_an_order_makes_no_search_request(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    # a search request would meet this fault and fail the step: the fault still armed means none was made
    fault(stripe_base, "server_error", SEARCH, count=1)
    made = create(ctx("run-1"), {"order": order("WEB-2"), "customer_id": customer_id})
    assert (made["status"], made["reused"]) == ("succeeded", False)
    reused = create(ctx("run-2"), {"order": order("WEB-2"), "customer_id": customer_id})
    assert (reused["id"], reused["reused"]) == (made["id"], True)
    other = create(ctx("run-3"), {"order": order("WEB-3"), "customer_id": customer_id})
    assert other["reused"] is False
    assert [f["path"] for f in armed_faults(stripe_base)] == [SEARCH]
    assert linked(identity, "WEB-2") == made["id"] and linked(identity, "WEB-3") == other["id"]


def test_after_a_lost_answer_the_step_searches_before_it_creates_and_a_failed_search_creates_nothing(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    # the create never reached Stripe's work (a 429 comes before it), but the step cannot know that
    fault(stripe_base, "rate_limit", "/v1/payment_intents", method="POST")
    with pytest.raises(RateLimited):
        create(ctx("run-1"), {"order": order("WEB-4"), "customer_id": customer_id})
    assert intents(stripe_base) == []
    a_day_later(stripe_base)
    fault(stripe_base, "server_error", SEARCH)
    with pytest.raises(UpstreamUnavailable):  # the search failed: no blind create
        create(ctx("run-2"), {"order": order("WEB-4"), "customer_id": customer_id})
    assert intents(stripe_base) == [] and armed_faults(stripe_base) == []
    made = create(ctx("run-2"), {"order": order("WEB-4"), "customer_id": customer_id})  # searched, found none
    assert (made["status"], made["reused"]) == ("succeeded", False)
    assert [pi["id"] for pi in intents(stripe_base)] == [made["id"]]
    assert linked(identity, "WEB-4") == made["id"]


def test_a_lost_decline_found_later_is_handled_like_a_decline_and_nothing_is_created(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    lose_every_answer(create, stripe_base, customer_id, "WEB-5", pm="pm_card_chargeDeclined")
    [made] = intents(stripe_base)
    assert made["status"] == "requires_payment_method"
    a_day_later(stripe_base)
    with pytest.raises(UpstreamRejected) as info:
        create(ctx("run-2"), {"order": order("WEB-5", "pm_card_visa"), "customer_id": customer_id})
    assert (info.value.details["payment_intent"], info.value.details["status"]) == (
        made["id"], "requires_payment_method")
    assert info.value.details["decline_code"] == "generic_decline"
    assert [pi["id"] for pi in intents(stripe_base)] == [made["id"]]
    assert linked(identity, "WEB-5") == made["id"]


def test_a_lost_create_for_another_amount_is_not_reused_for_the_edited_order(
        create: Action, customer_id: str, stripe_base: str) -> None:
    lose_every_answer(create, stripe_base, customer_id, "WEB-6", attempts=1)
    a_day_later(stripe_base)
    with pytest.raises(ValidationError) as info:
        create(ctx("run-2"), {"order": order("WEB-6", total_minor=4500), "customer_id": customer_id})
    assert "4500" in str(info.value) and "3000" in str(info.value)
    assert len(intents(stripe_base)) == 1


def test_a_decline_stripe_answered_leaves_no_search_behind_a_later_run_charges_anew(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    with pytest.raises(UpstreamRejected):
        create(ctx("run-1"), {"order": order("WEB-7", "pm_card_chargeDeclined"), "customer_id": customer_id})
    [declined] = intents(stripe_base)
    a_day_later(stripe_base)
    fault(stripe_base, "server_error", SEARCH)  # the order's answer was not lost: no search
    made = create(ctx("run-2"), {"order": order("WEB-7", "pm_card_visa"), "customer_id": customer_id})
    assert (made["status"], made["reused"]) == ("succeeded", False) and made["id"] != declined["id"]
    assert len(armed_faults(stripe_base)) == 1
    assert linked(identity, "WEB-7") == made["id"]


def test_another_run_soon_after_a_lost_answer_sends_the_first_key_and_gets_that_payment_intent(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    # A second run of the order (another event) within the minute Stripe's search needs to see the
    # PaymentIntent: its own key would make a second one; the first create's key makes Stripe answer
    # with the PaymentIntent it made.
    lose_every_answer(create, stripe_base, customer_id, "WEB-8", attempts=1)
    [made] = intents(stripe_base)
    again = create(ctx("run-2"), {"order": order("WEB-8"), "customer_id": customer_id})
    assert again["id"] == made["id"]
    assert [pi["id"] for pi in intents(stripe_base)] == [made["id"]]
    assert linked(identity, "WEB-8") == made["id"]


def test_a_key_longer_than_stripe_allows_is_shortened_the_same_way_every_time(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    long_run = "clarity:" + "e" * 400  # run ids may be long; Stripe takes keys of at most 255 characters
    fault(stripe_base, "drop_response", "/v1/payment_intents", count=1, method="POST")
    with pytest.raises(UpstreamUnavailable):
        create(ctx(long_run), {"order": order("WEB-9"), "customer_id": customer_id})
    made = create(ctx(long_run), {"order": order("WEB-9"), "customer_id": customer_id})  # the retry
    assert [pi["id"] for pi in intents(stripe_base)] == [made["id"]]


def test_the_gateway_shortens_every_long_key_the_same_way(gateway: StripeSdkGateway) -> None:
    key = "clarity:" + "k" * 400 + ":customer"
    first = gateway.create_customer({"email": "long@example.com"}, idempotency_key=key)
    again = gateway.create_customer({"email": "long@example.com"}, idempotency_key=key)  # a retry: replayed
    other = gateway.create_customer({"email": "long@example.com"}, idempotency_key=key[:-1] + "X")
    assert first["id"] == again["id"] != other["id"]


PER_ORDER_KEY = {"idempotency_key": "clarity-order:WEB-10:payment"}  # as clarity.order_to_cash sends it


def test_a_new_try_after_a_decline_gets_a_new_payment_intent_not_the_stored_decline(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    # The order is put back to Pending with another card within 24 h: its run sends the per-order key
    # again. Before, Stripe answered with the declined try's stored 402 (same parameters) or an
    # idempotency_error (another card), so the order could not be paid for a day.
    with pytest.raises(UpstreamRejected):
        create(ctx("run-1"), {"order": order("WEB-10", "pm_card_chargeDeclined"), "customer_id": customer_id,
                              **PER_ORDER_KEY})
    [declined] = intents(stripe_base)
    with pytest.raises(UpstreamRejected):  # the same card again: a new decline, not the stored one
        create(ctx("run-2"), {"order": order("WEB-10", "pm_card_chargeDeclined"), "customer_id": customer_id,
                              **PER_ORDER_KEY})
    assert len(intents(stripe_base)) == 2
    made = create(ctx("run-3"), {"order": order("WEB-10", "pm_card_visa"), "customer_id": customer_id,
                                 **PER_ORDER_KEY})
    assert made["status"] == "succeeded" and made["id"] != declined["id"] and len(intents(stripe_base)) == 3
    assert linked(identity, "WEB-10") == made["id"]


def test_after_a_decline_a_lost_create_that_never_ran_is_not_taken_for_the_declined_try(
        create: Action, identity: SqlIdentityMap, customer_id: str, stripe_base: str) -> None:
    with pytest.raises(UpstreamRejected):
        create(ctx("run-1"), {"order": order("WEB-11", "pm_card_chargeDeclined"), "customer_id": customer_id})
    [declined] = intents(stripe_base)
    fault(stripe_base, "rate_limit", "/v1/payment_intents", method="POST")  # the next try never runs
    with pytest.raises(RateLimited):
        create(ctx("run-2"), {"order": order("WEB-11", "pm_card_visa"), "customer_id": customer_id})
    a_day_later(stripe_base)
    # the search finds only the declined try: it is not the lost one, so a PaymentIntent is made
    made = create(ctx("run-3"), {"order": order("WEB-11", "pm_card_visa"), "customer_id": customer_id})
    assert made["status"] == "succeeded" and made["id"] != declined["id"]
    assert linked(identity, "WEB-11") == made["id"]
