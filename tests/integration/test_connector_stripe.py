"""StripeSdkGateway against the sandbox Stripe stripe_emulator, through the official SDK (real HTTP, real errors)."""

from __future__ import annotations

import httpx
import pytest
import stripe

from commerce_bridge import errors as E
from commerce_bridge.connectors.stripe.gateway import (
    DEFAULT_API_VERSION,
    StripeSdkGateway,
    build_stripe_client,
)


@pytest.fixture
def gateway(stripe_base: str) -> StripeSdkGateway:
    return StripeSdkGateway(build_stripe_client("sk_test_connector", api_base=stripe_base, timeout_s=10))


def fault(stripe_base: str, **body: object) -> None:
    httpx.post(f"{stripe_base}/_sandbox/faults", json=body).raise_for_status()


def pi_params(pm: str = "pm_card_visa", **extra: object) -> dict[str, object]:
    return {"amount": 2000, "currency": "usd", "payment_method": pm, "confirm": True,
            "payment_method_types": ["card"], **extra}


def test_client_pins_the_api_version(stripe_base: str) -> None:
    client = build_stripe_client("sk_test_x", api_base=stripe_base, api_version="2026-10-28.endive")
    assert stripe.api_version == DEFAULT_API_VERSION
    assert client._requestor._options.stripe_version == "2026-10-28.endive"


def test_sdk_does_not_retry_by_itself_even_when_stripe_says_it_may(gateway: StripeSdkGateway, stripe_base: str) -> None:
    fault(stripe_base, kind="server_error", count=1, should_retry=True)
    with pytest.raises(E.UpstreamUnavailable) as info:
        gateway.find_customer_by_email("x@example.com")
    assert info.value.details["should_retry"] is True
    assert gateway.find_customer_by_email("x@example.com") is None  # the fault was used by our one attempt


def test_customer_is_created_found_by_email_and_updated(gateway: StripeSdkGateway) -> None:
    assert gateway.find_customer_by_email("ann@example.com") is None
    created = gateway.create_customer({"email": "ann@example.com", "name": "Ann",
                                       "metadata": {"clarity_user_id": "7"}}, idempotency_key="r1:customer")
    found = gateway.find_customer_by_email("ann@example.com")
    assert found is not None and found["id"] == created["id"]
    updated = gateway.update_customer(created["id"], {"phone": "+15125550100"}, idempotency_key="r1:update")
    assert updated["phone"] == "+15125550100" and updated["metadata"] == {"clarity_user_id": "7"}


def test_payment_intent_created_with_the_same_key_twice_charges_once(gateway: StripeSdkGateway, stripe_base: str) -> None:
    customer = gateway.create_customer({"email": "bo@example.com"}, idempotency_key="r2:customer")
    params = pi_params(customer=customer["id"], capture_method="automatic", receipt_email="bo@example.com",
                       metadata={"clarity_order_key": "WEB-1"})
    first = gateway.create_payment_intent(params, idempotency_key="r2:charge")
    second = gateway.create_payment_intent(params, idempotency_key="r2:charge")
    assert first["id"] == second["id"] and first["status"] == "succeeded"
    charges = httpx.get(f"{stripe_base}/v1/charges", params={"payment_intent": first["id"]},
                        headers={"Authorization": "Bearer sk_test_connector"}).json()["data"]
    assert len(charges) == 1
    events = httpx.get(f"{stripe_base}/v1/events", params={"type": "payment_intent.created"},
                       headers={"Authorization": "Bearer sk_test_connector"}).json()["data"]
    assert [e["request"]["idempotency_key"] for e in events] == ["r2:charge"]  # ours, not the SDK's
    got = gateway.retrieve_payment_intent(first["id"])
    assert isinstance(got["latest_charge"], dict) and got["latest_charge"]["id"] == charges[0]["id"]
    assert gateway.retrieve_charge(charges[0]["id"])["amount"] == 2000


def test_reused_key_with_other_params_is_rejected_with_a_fix(gateway: StripeSdkGateway) -> None:
    gateway.create_payment_intent(pi_params(), idempotency_key="r3:charge")
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.create_payment_intent(pi_params(amount=999), idempotency_key="r3:charge")
    assert isinstance(info.value.__cause__, stripe.IdempotencyError)
    assert "same parameters" in (info.value.suggested_fix or "")


def test_declined_card_raises_upstream_rejected_with_decline_code(gateway: StripeSdkGateway) -> None:
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.create_payment_intent(pi_params("pm_card_chargeDeclinedInsufficientFunds"),
                                      idempotency_key="r4:charge")
    err = info.value
    assert err.details["decline_code"] == "insufficient_funds" and err.details["code"] == "card_declined"
    assert err.details["payment_intent"].startswith("pi_")
    assert err.upstream_request_id and err.upstream_request_id.startswith("req_")
    assert err.suggested_fix and "another card" in err.suggested_fix
    assert isinstance(err.__cause__, stripe.CardError)


def test_manual_capture_partially_then_refund(gateway: StripeSdkGateway) -> None:
    intent = gateway.create_payment_intent(pi_params(capture_method="manual"), idempotency_key="r5:auth")
    assert intent["status"] == "requires_capture"
    captured = gateway.capture_payment_intent(intent["id"], amount_to_capture=1500, idempotency_key="r5:capture")
    assert captured["status"] == "succeeded" and captured["amount_received"] == 1500
    refund = gateway.create_refund({"payment_intent": intent["id"], "amount": 500}, idempotency_key="r5:refund")
    assert refund["status"] == "succeeded" and refund["amount"] == 500
    with pytest.raises(E.UpstreamRejected):
        gateway.create_refund({"payment_intent": intent["id"], "amount": 5000}, idempotency_key="r5:refund2")


def test_cancel_with_reason(gateway: StripeSdkGateway) -> None:
    intent = gateway.create_payment_intent(pi_params(capture_method="manual"), idempotency_key="r6:auth")
    canceled = gateway.cancel_payment_intent(intent["id"], cancellation_reason="requested_by_customer",
                                             idempotency_key="r6:cancel")
    assert canceled["status"] == "canceled" and canceled["cancellation_reason"] == "requested_by_customer"


def test_missing_payment_intent_is_not_found(gateway: StripeSdkGateway) -> None:
    with pytest.raises(E.NotFound) as info:
        gateway.retrieve_payment_intent("pi_doesnotexist")
    assert info.value.details["code"] == "resource_missing"


def test_rate_limit_then_retry_with_the_same_key_succeeds(gateway: StripeSdkGateway, stripe_base: str) -> None:
    fault(stripe_base, kind="rate_limit", count=1, path="/v1/payment_intents", method="POST")
    with pytest.raises(E.RateLimited):
        gateway.create_payment_intent(pi_params(), idempotency_key="r7:charge")
    assert gateway.create_payment_intent(pi_params(), idempotency_key="r7:charge")["status"] == "succeeded"


def test_lock_timeout_is_a_conflict(gateway: StripeSdkGateway, stripe_base: str) -> None:
    fault(stripe_base, kind="lock_timeout", count=1, path="/v1/payment_intents", method="POST")
    with pytest.raises(E.Conflict) as info:
        gateway.create_payment_intent(pi_params(), idempotency_key="r8:charge")
    assert info.value.transient and info.value.details["code"] == "lock_timeout"


def test_server_error_is_unavailable_and_should_retry_false_overrides(gateway: StripeSdkGateway, stripe_base: str) -> None:
    fault(stripe_base, kind="server_error", count=1)
    with pytest.raises(E.UpstreamUnavailable):
        gateway.find_customer_by_email("x@example.com")
    fault(stripe_base, kind="server_error", count=1, should_retry=False)
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.find_customer_by_email("x@example.com")
    assert info.value.details["should_retry"] is False


def test_wrong_key_is_auth_failed(stripe_base: str) -> None:
    bad = StripeSdkGateway(build_stripe_client("sk_live_nope", api_base=stripe_base))
    with pytest.raises(E.UpstreamAuthFailed):
        bad.find_customer_by_email("x@example.com")


def test_connection_refused_is_unavailable() -> None:
    from commerce_bridge.sandbox.runner import free_port

    dead = StripeSdkGateway(build_stripe_client("sk_test_x", api_base=f"http://127.0.0.1:{free_port('127.0.0.1')}",
                                                timeout_s=2))
    with pytest.raises(E.UpstreamUnavailable) as info:
        dead.find_customer_by_email("x@example.com")
    assert isinstance(info.value.__cause__, stripe.APIConnectionError)


def test_the_limiter_hook_runs_before_every_stripe_request(stripe_base: str) -> None:
    calls: list[str] = []
    gw = StripeSdkGateway(build_stripe_client("sk_test_connector", api_base=stripe_base, timeout_s=10),
                          before_request=lambda: calls.append("slot"))
    assert gw.find_customer_by_email("nobody@example.com") is None
    gw.create_customer({"email": "nobody@example.com"}, idempotency_key="k-limit-1")
    # one step (stripe.customer.ensure) made two requests, and took two slots
    assert calls == ["slot", "slot"]
