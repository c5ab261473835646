"""Contract test of the Stripe error table: every row, built from real ``stripe.StripeError`` instances."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe
from stripe.oauth_error import InvalidGrantError

from commerce_bridge import errors as E
from commerce_bridge.connectors.stripe.errors import classify_stripe_error, translate_stripe_errors
from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.services.gateways import StripeGateway
from tests.support.ports import assert_implements


def body(**error: Any) -> dict[str, Any]:
    return {"error": error}


def make(cls: type[stripe.StripeError], status: int, error: dict[str, Any], headers: dict[str, str] | None = None,
         **kw: Any) -> stripe.StripeError:
    """Build the error the way the SDK's requestor does (message, body, status, json, headers)."""
    hdrs = {"request-id": "req_123", **(headers or {})}
    raw = json.dumps(body(**error))
    msg = error.get("message", "boom")
    if cls in (stripe.CardError, stripe.InvalidRequestError):
        return cls(msg, error.get("param"), error.get("code"), raw, status, body(**error), hdrs)
    return cls(msg, raw, status, body(**error), hdrs, **kw)


ROWS: list[tuple[str, stripe.StripeError, type[E.BridgeError]]] = [
    ("card declined", make(stripe.CardError, 402, {"type": "card_error", "code": "card_declined",
                                                   "decline_code": "insufficient_funds",
                                                   "payment_intent": {"id": "pi_1"}}), E.UpstreamRejected),
    ("rate limit", make(stripe.RateLimitError, 429, {"type": "invalid_request_error", "code": "rate_limit"},
                        {"Retry-After": "2"}), E.RateLimited),
    ("lock timeout", make(stripe.RateLimitError, 429, {"type": "invalid_request_error", "code": "lock_timeout"}),
     E.Conflict),
    ("connection", stripe.APIConnectionError("refused", should_retry=True),  # type: ignore[no-untyped-call]
     E.UpstreamUnavailable),
    ("api error 500", make(stripe.APIError, 500, {"type": "api_error"}), E.UpstreamUnavailable),
    ("api error 409", make(stripe.APIError, 409, {"type": "invalid_request_error",
                                                  "code": "idempotency_key_in_use"}), E.Conflict),
    ("api error 503", make(stripe.APIError, 503, {"type": "api_error"}), E.UpstreamUnavailable),
    ("404 resource_missing", make(stripe.InvalidRequestError, 404,
                                  {"type": "invalid_request_error", "code": "resource_missing", "param": "id"}),
     E.NotFound),
    ("400 parameter_invalid", make(stripe.InvalidRequestError, 400,
                                   {"type": "invalid_request_error", "code": "parameter_invalid_integer",
                                    "param": "amount"}), E.UpstreamRejected),
    ("idempotency", make(stripe.IdempotencyError, 400, {"type": "idempotency_error"}), E.UpstreamRejected),
    ("authentication", make(stripe.AuthenticationError, 401, {"type": "invalid_request_error"}),
     E.UpstreamAuthFailed),
    ("permission", make(stripe.PermissionError, 403, {"type": "invalid_request_error"}), E.UpstreamAuthFailed),
    ("oauth", InvalidGrantError("invalid_grant", "bad grant"), E.UpstreamAuthFailed),  # type: ignore[no-untyped-call]
    ("signature", stripe.SignatureVerificationError("bad", "t=1,v1=x"), E.SignatureInvalid),  # type: ignore[no-untyped-call]
    ("other StripeError", stripe.StripeError("odd"), E.UpstreamUnavailable),
]


@pytest.mark.parametrize("name, exc, cls", ROWS, ids=[r[0] for r in ROWS])
def test_every_row_maps_to_its_class(name: str, exc: stripe.StripeError, cls: type[E.BridgeError]) -> None:
    with pytest.raises(cls) as info, translate_stripe_errors():
        raise exc
    assert type(info.value) is cls
    assert info.value.__cause__ is exc
    if exc.headers:
        assert info.value.upstream_request_id == "req_123"


def test_card_error_carries_decline_code_and_a_fix() -> None:
    err = classify_stripe_error(ROWS[0][1])
    assert err.details["decline_code"] == "insufficient_funds"
    assert err.details["code"] == "card_declined"
    assert err.details["payment_intent"] == "pi_1"
    assert err.suggested_fix and "another card" in err.suggested_fix


def test_rate_limit_reads_retry_after() -> None:
    err = classify_stripe_error(ROWS[1][1])
    assert isinstance(err, E.RateLimited) and err.retry_after == 2.0


def test_should_retry_true_makes_a_permanent_answer_transient() -> None:
    exc = make(stripe.InvalidRequestError, 400, {"type": "invalid_request_error", "code": "x"},
               {"Stripe-Should-Retry": "true"})
    err = classify_stripe_error(exc)
    assert type(err) is E.UpstreamUnavailable and err.details["should_retry"] is True


def test_should_retry_false_makes_a_transient_answer_permanent() -> None:
    exc = make(stripe.APIError, 500, {"type": "api_error"}, {"Stripe-Should-Retry": "false"})
    err = classify_stripe_error(exc)
    assert type(err) is E.UpstreamRejected and err.details["should_retry"] is False


def test_idempotency_error_explains_the_param_mismatch() -> None:
    err = classify_stripe_error(dict((r[0], r[1]) for r in ROWS)["idempotency"])
    assert err.suggested_fix and "different parameters" in err.suggested_fix


def test_non_stripe_errors_pass_through() -> None:
    with pytest.raises(KeyError), translate_stripe_errors():
        raise KeyError("bug")


def test_the_gateway_implements_the_port() -> None:
    assert_implements(StripeSdkGateway(build_stripe_client("sk_test_x", api_base="http://127.0.0.1:9")), StripeGateway)
