"""``stripe.payment_intent.create`` with ``existing_id``, against the sandbox Stripe stripe_emulator (real HTTP,
through the real SDK gateway): a PaymentIntent that has taken or may still take money is reused and
nothing is created, whatever its status; one that can take none is refused like a decline; one for
another amount is refused for a person to look at. The stripe_emulator's list of PaymentIntents shows that no
call made a second one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.errors import NotFound, UpstreamRejected, ValidationError
from commerce_bridge.mapping.stripe import payment_intent_params
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.store import db as store_db
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.locks import SqlKeyLocks
from commerce_bridge.workflows.steps import stripe as stripe_steps
from commerce_bridge.workflows.steps.shapes import order_from_shape
from tests.support.orders import order_shape as order


@pytest.fixture
def gateway(stripe_base: str) -> StripeSdkGateway:
    return StripeSdkGateway(build_stripe_client("sk_test_reuse", api_base=stripe_base, timeout_s=10))


@pytest.fixture
def create(gateway: StripeSdkGateway, tmp_path: Path) -> Iterator[Action]:
    engine = store_db.make_engine(f"sqlite:///{tmp_path / 'locks.sqlite'}")  # the actions' key locks
    store_db.upgrade(engine)
    yield stripe_steps.actions(gateway, SqlKeyLocks(engine), SqlIdentityMap(engine))["stripe.payment_intent.create"]
    engine.dispose()


@pytest.fixture
def customer_id(gateway: StripeSdkGateway) -> str:
    return str(gateway.create_customer({"email": "ann@example.com"}, idempotency_key="reuse-customer")["id"])


def ctx(run: str) -> StepContext:
    return StepContext(run_id=run, step_id="payment", attempt=1, source="clarity", event_id=run, event_type=None,
                       event={})


def intent_ids(stripe_base: str) -> list[str]:
    page = httpx.get(f"{stripe_base}/v1/payment_intents", params={"limit": 100},
                     headers={"Authorization": "Bearer sk_test_reuse"}).json()
    return sorted(pi["id"] for pi in page["data"])


def first_run(create: Action, customer_id: str, key: str, pm: str, capture: str = "automatic") -> dict[str, Any]:
    out: dict[str, Any] = create(ctx(f"run-1-{key}"), {"order": order(key, pm), "customer_id": customer_id,
                                                        "capture_method": capture,
                                                        "idempotency_key": f"clarity-order:{key}:payment"})
    assert out["reused"] is False
    return out


@pytest.mark.parametrize(("pm", "capture", "status"), [
    ("pm_card_visa", "automatic", "succeeded"),
    ("pm_card_visa", "manual", "requires_capture"),
    ("pm_card_threeDSecure2Required", "automatic", "requires_action"),
])
def test_a_payment_intent_that_took_or_may_take_money_is_reused(
        create: Action, customer_id: str, stripe_base: str, pm: str, capture: str, status: str) -> None:
    made = first_run(create, customer_id, "WEB-1", pm, capture)
    assert made["status"] == status
    # a later run: a new idempotency key (as after Stripe's 24 h) and the linked id
    again = create(ctx("run-2"), {"order": order("WEB-1", pm), "customer_id": customer_id, "capture_method": capture,
                                  "existing_id": made["id"], "idempotency_key": "a-key-stripe-never-saw"})
    assert again == {**made, "reused": True}
    assert intent_ids(stripe_base) == [made["id"]]


def test_an_unconfirmed_payment_intent_is_reused_not_confirmed_again(
        create: Action, gateway: StripeSdkGateway, customer_id: str, stripe_base: str) -> None:
    params = payment_intent_params(order_from_shape(order("WEB-2", "pm_card_visa")), customer_id=customer_id,
                                   confirm=False, payment_method="pm_card_visa")
    pi = gateway.create_payment_intent(params, idempotency_key="unconfirmed")
    assert pi["status"] == "requires_confirmation"
    again = create(ctx("run-2"), {"order": order("WEB-2", "pm_card_visa"), "customer_id": customer_id,
                                  "existing_id": pi["id"]})
    assert (again["id"], again["status"], again["reused"]) == (pi["id"], "requires_confirmation", True)
    assert intent_ids(stripe_base) == [pi["id"]]


def test_a_failed_3ds_payment_intent_is_refused_like_a_decline_and_nothing_is_created(
        create: Action, customer_id: str, stripe_base: str) -> None:
    made = first_run(create, customer_id, "WEB-3", "pm_card_threeDSecure2Required")
    httpx.post(f"{stripe_base}/_sandbox/payment_intents/{made['id']}/3ds", json={"outcome": "fail"}).raise_for_status()
    with pytest.raises(UpstreamRejected) as info:
        create(ctx("run-2"), {"order": order("WEB-3", "pm_card_threeDSecure2Required"), "customer_id": customer_id,
                              "existing_id": made["id"]})
    details = info.value.details
    assert (details["payment_intent"], details["status"]) == (made["id"], "requires_payment_method")
    assert details["decline_code"]  # what the decline e-mail quotes
    assert info.value.suggested_fix
    assert intent_ids(stripe_base) == [made["id"]]


def test_a_canceled_payment_intent_is_refused_like_a_decline_and_nothing_is_created(
        create: Action, gateway: StripeSdkGateway, customer_id: str, stripe_base: str) -> None:
    made = first_run(create, customer_id, "WEB-4", "pm_card_visa", capture="manual")
    gateway.cancel_payment_intent(made["id"], cancellation_reason="abandoned", idempotency_key="cancel-it")
    with pytest.raises(UpstreamRejected) as info:
        create(ctx("run-2"), {"order": order("WEB-4", "pm_card_visa"), "customer_id": customer_id,
                              "capture_method": "manual", "existing_id": made["id"]})
    assert (info.value.details["status"], info.value.details["decline_code"]) == ("canceled", "canceled")
    assert intent_ids(stripe_base) == [made["id"]]


def test_a_payment_intent_for_another_amount_is_not_reused_for_the_edited_order(
        create: Action, customer_id: str, stripe_base: str) -> None:
    made = first_run(create, customer_id, "WEB-5", "pm_card_threeDSecure2Required")
    with pytest.raises(ValidationError) as info:
        create(ctx("run-2"), {"order": order("WEB-5", "pm_card_threeDSecure2Required", total_minor=4500),
                              "customer_id": customer_id, "existing_id": made["id"]})
    assert "4500" in str(info.value) and "3000" in str(info.value) and info.value.suggested_fix
    assert intent_ids(stripe_base) == [made["id"]]


def test_an_unknown_existing_id_is_not_found_and_nothing_is_created(
        create: Action, customer_id: str, stripe_base: str) -> None:
    with pytest.raises(NotFound):
        create(ctx("run-1"), {"order": order("WEB-6", "pm_card_visa"), "customer_id": customer_id,
                              "existing_id": "pi_doesnotexist"})
    assert intent_ids(stripe_base) == []


def test_without_existing_id_the_step_creates_as_before(create: Action, customer_id: str, stripe_base: str) -> None:
    made = create(ctx("run-1"), {"order": order("WEB-7", "pm_card_visa"), "customer_id": customer_id,
                                 "existing_id": None})
    assert (made["status"], made["reused"]) == ("succeeded", False)
    assert intent_ids(stripe_base) == [made["id"]]


def test_the_step_links_what_it_creates_so_a_later_run_reuses_it_without_existing_id(
        create: Action, customer_id: str, stripe_base: str) -> None:
    made = first_run(create, customer_id, "WEB-8", "pm_card_threeDSecure2Required")
    # a later run whose identity lookup happened before the link (or that has no lookup step at all),
    # a day later: a key Stripe never saw
    again = create(ctx("run-2"), {"order": order("WEB-8", "pm_card_threeDSecure2Required"),
                                  "customer_id": customer_id, "idempotency_key": "a-key-stripe-never-saw"})
    assert again == {**made, "reused": True}
    assert intent_ids(stripe_base) == [made["id"]]


def test_runs_at_once_for_one_order_with_different_keys_make_one_payment_intent(
        create: Action, customer_id: str, stripe_base: str) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(n: int) -> None:
        barrier.wait()
        try:
            results.append(create(ctx(f"run-{n}"), {"order": order("WEB-9", "pm_card_visa"), "customer_id": customer_id,
                                                    "idempotency_key": f"key-{n}"}))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r["id"] for r in results}) == 1
    assert sorted(r["reused"] for r in results) == [False, True, True, True]
    assert intent_ids(stripe_base) == [results[0]["id"]]
