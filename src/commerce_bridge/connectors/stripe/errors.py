"""The Stripe connector's error table: ``stripe.StripeError`` subclasses -> the bridge's error tree (one place).

========================================  ==========================  ==========================================
Stripe error                              ours                        notes
========================================  ==========================  ==========================================
CardError (402)                           UpstreamRejected            ``details``: code, decline_code, advice_code,
                                                                      payment_intent, charge; a suggested fix
RateLimitError 429 ``lock_timeout``       Conflict                    another request holds the object's lock:
                                                                      transient, retry with the same key
RateLimitError (429), other codes         RateLimited                 ``retry_after`` from ``Retry-After``
APIConnectionError                        UpstreamUnavailable         timeouts, refused connections
APIError 409 (idempotency_key_in_use)     Conflict                    a concurrent request with the same key
APIError (5xx, or any unexpected status)  UpstreamUnavailable
InvalidRequestError 404 resource_missing  NotFound
InvalidRequestError (other)               UpstreamRejected            ``details``: code, param
IdempotencyError                          UpstreamRejected            same key, other params: a bug upstream of us
AuthenticationError, PermissionError      UpstreamAuthFailed          (also OAuth errors)
SignatureVerificationError                SignatureInvalid
any other StripeError                     UpstreamUnavailable
========================================  ==========================  ==========================================

``Stripe-Should-Retry`` overrides the guess: ``true`` turns a permanent class into ``UpstreamUnavailable``
and ``false`` turns a transient class into ``UpstreamRejected``; ``details["should_retry"]`` records the
header either way. Every error carries Stripe's request id as ``upstream_request_id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import stripe
from stripe.oauth_error import OAuthError

from commerce_bridge.errors import (
    BridgeError,
    Conflict,
    NotFound,
    RateLimited,
    SignatureInvalid,
    UpstreamAuthFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from commerce_bridge.http_errors import retry_after_s

__all__ = ["classify_stripe_error", "translate_stripe_errors"]

DECLINE_FIXES: dict[str, str] = {
    "insufficient_funds": "Ask the customer for another card or to top up the account, then replay.",
    "lost_card": "Do not retry this card; ask the customer for another payment method.",
    "stolen_card": "Do not retry this card; ask the customer for another payment method.",
    "fraudulent": "Blocked as fraud: do not retry; review the order before asking for another card.",
    "expired_card": "The card has expired; ask the customer for a current card.",
    "incorrect_cvc": "The CVC was wrong; ask the customer to re-enter the card details.",
    "incorrect_number": "The card number was wrong; ask the customer to re-enter the card details.",
    "processing_error": "The issuer had a processing error; ask the customer to try again shortly.",
    "authentication_required": "The issuer wants 3-D Secure; ask the customer to authenticate on session.",
}
DEFAULT_DECLINE_FIX = "The card was declined; ask the customer for another payment method, then replay."


def _headers(exc: stripe.StripeError) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}


def _error_data(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return dict(body["error"])
    return {}


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("stripe-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _base(exc: stripe.StripeError) -> tuple[type[BridgeError], dict[str, Any], str | None]:
    """The class our table gives, its details and its suggested fix (before the retry hint)."""
    data = _error_data(exc)
    code = exc.code or data.get("code")
    details: dict[str, Any] = {"stripe_error": type(exc).__name__, "http_status": exc.http_status}
    if code:
        details["code"] = code
    if data.get("type"):
        details["type"] = data["type"]
    if isinstance(exc, stripe.CardError):
        for field in ("decline_code", "advice_code", "param"):
            if data.get(field):
                details[field] = data[field]
        for field in ("payment_intent", "charge", "payment_method"):
            value = data.get(field)
            if isinstance(value, Mapping):
                value = value.get("id")
            if value:
                details[field] = value
        reason = details.get("decline_code") or code or ""
        return UpstreamRejected, details, DECLINE_FIXES.get(str(reason), DEFAULT_DECLINE_FIX)
    if isinstance(exc, stripe.RateLimitError):
        if code == "lock_timeout":
            return Conflict, details, None
        return RateLimited, details, None
    if isinstance(exc, stripe.APIConnectionError):
        details["should_retry"] = exc.should_retry
        return UpstreamUnavailable, details, None
    if isinstance(exc, stripe.IdempotencyError):
        return UpstreamRejected, details, (
            "The idempotency key was already used with different parameters. A step must send the same "
            "parameters on every attempt; fix the step's inputs (or the mapping) so they are deterministic, "
            "then replay.")
    if isinstance(exc, stripe.InvalidRequestError):
        if data.get("param"):
            details["param"] = data["param"]
        if exc.http_status == 404 or code == "resource_missing":
            return NotFound, details, "Check the Stripe id (and that the API key belongs to the same account)."
        return UpstreamRejected, details, "Stripe rejected the parameters; fix the mapping or the data, then replay."
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError, OAuthError)):
        return UpstreamAuthFailed, details, "Check CB_STRIPE_API_KEY (and the key's permissions)."
    if isinstance(exc, stripe.SignatureVerificationError):
        return SignatureInvalid, details, None
    if isinstance(exc, stripe.APIError) and exc.http_status == 409:
        return Conflict, details, None
    return UpstreamUnavailable, details, None


def classify_stripe_error(exc: stripe.StripeError) -> BridgeError:
    """The bridge error that ``exc`` means (raise it ``from exc``).

    Parameters
    ----------
    exc:
        Any error the Stripe SDK raised.

    Returns
    -------
    BridgeError
        See the table in this module's docstring.
    """
    cls, details, fix = _base(exc)
    headers = _headers(exc)
    hint = _should_retry(headers)
    if hint is not None:
        details["should_retry"] = hint
        if hint and not cls.transient:
            cls = UpstreamUnavailable
        elif not hint and cls.transient:
            cls = UpstreamRejected
    message = exc.user_message or type(exc).__name__
    request_id = exc.request_id or headers.get("request-id")
    retry_after = retry_after_s(headers.get("retry-after"))
    if retry_after is not None:
        details["retry_after"] = retry_after
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after, upstream_request_id=request_id,
                           suggested_fix=fix, details=details)
    return cls(message, upstream_request_id=request_id, suggested_fix=fix, details=details)


@contextmanager
def translate_stripe_errors() -> Iterator[None]:
    """Run SDK calls inside this: every ``stripe.StripeError`` is re-raised as a ``BridgeError`` ``from`` it."""
    try:
        yield
    except stripe.StripeError as exc:
        raise classify_stripe_error(exc) from exc
