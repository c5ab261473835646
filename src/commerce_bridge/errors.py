"""The one error tree of commerce-bridge.

Every error the bridge raises on purpose is a ``BridgeError``. Each class carries a stable
snake_case ``code`` (part of the API contract), ``transient`` (may the same step be retried with
the same idempotency key?) and ``http_status`` (what the admin API answers). A class docstring is
its default message.

::

    BridgeError
    ├── TransientError            safe to retry the same step with the same idempotency key
    │   ├── UpstreamUnavailable   timeout, connection error, 5xx
    │   │   └── CircuitOpen       the destination's breaker is open
    │   ├── RateLimited           429 / vendor rate-limit code; .retry_after
    │   ├── Conflict              409, lock timeout, serialization failure
    │   └── StoreUnavailable      our database is down or unreachable
    ├── PermanentError            retrying cannot help; needs data or people
    │   ├── ValidationError       payload or workflow file fails its schema
    │   ├── MappingError          cannot translate (unknown currency, missing field, sub-minor precision)
    │   ├── NotFound              no identity link / upstream 404
    │   │   └── UnknownSource     a webhook for a source that is not configured
    │   ├── UpstreamRejected      vendor 400/402/422
    │   └── UpstreamAuthFailed    401/403: config problem, alert, pause that connector
    ├── SignatureInvalid          webhook signature/timestamp check failed
    ├── PayloadTooLarge           request body over the configured limit
    ├── HeaderTooLarge            request line and headers over the configured limit (431)
    ├── Forbidden                 a webhook from an address outside the allowlist
    ├── Unauthorized              admin API without a valid bearer token
    └── ConfigurationError        raised at start-up only; the process exits

Any exception that is not a ``BridgeError`` is a bug: the step goes to the dead-letter queue and
is never retried automatically.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BridgeError",
    "CircuitOpen",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "HeaderTooLarge",
    "MappingError",
    "NotFound",
    "PayloadTooLarge",
    "PermanentError",
    "RateLimited",
    "SignatureInvalid",
    "StoreUnavailable",
    "TransientError",
    "Unauthorized",
    "UnknownSource",
    "UpstreamAuthFailed",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "ValidationError",
    "all_error_classes",
]


class BridgeError(Exception):
    """Something went wrong in commerce-bridge."""

    code: ClassVar[str] = "bridge_error"
    transient: ClassVar[bool] = False
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: list[str] | None = None,
        upstream_request_id: str | None = None,
        suggested_fix: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or (type(self).__doc__ or "").strip().splitlines()[0]
        self.errors = list(errors or [])
        self.upstream_request_id = upstream_request_id
        self.suggested_fix = suggested_fix
        self.details = dict(details or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        prefix = f"Request {self.upstream_request_id}: " if self.upstream_request_id else ""
        return f"{prefix}{self.message}"


class TransientError(BridgeError):
    """A temporary failure; the same step may be retried with the same idempotency key."""

    code = "transient_error"
    transient = True
    http_status = 502


class UpstreamUnavailable(TransientError):
    """The upstream system did not answer usefully (timeout, connection error or 5xx)."""

    code = "upstream_unavailable"
    http_status = 502


class CircuitOpen(UpstreamUnavailable):
    """The destination's circuit breaker is open; calls wait until it probes again."""

    code = "circuit_open"
    http_status = 503


class RateLimited(TransientError):
    """The upstream system asked us to slow down."""

    code = "rate_limited"
    http_status = 503

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Conflict(TransientError):
    """A concurrent change or lock got in the way; retrying is safe."""

    code = "conflict"
    http_status = 409


class StoreUnavailable(TransientError):
    """The bridge's own database is unavailable."""

    code = "store_unavailable"
    http_status = 503


class PermanentError(BridgeError):
    """A failure that retrying cannot fix; it needs data or a person."""

    code = "permanent_error"
    http_status = 422


class ValidationError(PermanentError):
    """The input does not satisfy its schema."""

    code = "validation_error"
    http_status = 422


class MappingError(PermanentError):
    """The data cannot be translated between systems."""

    code = "mapping_error"
    http_status = 422


class NotFound(PermanentError):
    """The thing asked for does not exist."""

    code = "not_found"
    http_status = 404


class UnknownSource(NotFound):
    """No webhook source of that name is configured."""

    code = "unknown_source"
    http_status = 404


class UpstreamRejected(PermanentError):
    """The upstream system rejected the request."""

    code = "upstream_rejected"
    http_status = 502


class UpstreamAuthFailed(PermanentError):
    """The upstream system refused our credentials; check the connector's configuration."""

    code = "upstream_auth_failed"
    http_status = 502


class SignatureInvalid(BridgeError):
    """The webhook signature could not be verified."""

    code = "signature_invalid"
    http_status = 400


class PayloadTooLarge(BridgeError):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"
    http_status = 413


class HeaderTooLarge(BridgeError):
    """The request line and headers are larger than the configured limit."""

    code = "header_too_large"
    http_status = 431


class Forbidden(BridgeError):
    """The request is not allowed from this address."""

    code = "forbidden"
    http_status = 403


class Unauthorized(BridgeError):
    """A valid bearer token is required."""

    code = "unauthorized"
    http_status = 401


class ConfigurationError(BridgeError):
    """The configuration is invalid; the process cannot start."""

    code = "configuration_error"
    http_status = 500


def all_error_classes() -> list[type[BridgeError]]:
    """Every error class of the tree, parents before children (for docs and tests)."""
    seen: list[type[BridgeError]] = []

    def walk(cls: type[BridgeError]) -> None:
        seen.append(cls)
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                walk(sub)

    walk(BridgeError)
    return seen
