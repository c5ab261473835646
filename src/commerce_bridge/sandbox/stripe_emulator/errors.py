"""Stripe-shaped API errors (``{"error": {type, code, decline_code, message, param, doc_url, ...}}``)."""

from __future__ import annotations

from typing import Any


class StripeApiError(Exception):
    """An error answered in Stripe's error body shape."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        store_idempotent: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}
        self.store_idempotent = store_idempotent

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.decline_code:
            err["decline_code"] = self.decline_code
        if self.param:
            err["param"] = self.param
        err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err.update(self.extra)
        return {"error": err}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeApiError:
    """A 400 ``invalid_request_error``; not saved for idempotent replay (validation failed)."""
    return StripeApiError(
        status, "invalid_request_error", message, code=code, param=param, store_idempotent=False
    )


def not_found(kind: str, obj_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{obj_id}'",
        code="resource_missing",
        param=param,
        store_idempotent=False,
    )


def state_error(
    message: str, *, code: str = "payment_intent_unexpected_state", param: str | None = None
) -> StripeApiError:
    """A 400 raised after execution started (saved for idempotent replay, like Stripe)."""
    return StripeApiError(400, "invalid_request_error", message, code=code, param=param)
