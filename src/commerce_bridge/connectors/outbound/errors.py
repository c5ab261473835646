"""The outbound connector's error table: HTTP outcomes -> the bridge's error tree (one place)."""

from __future__ import annotations

import httpx

from commerce_bridge.errors import (
    BridgeError,
    Conflict,
    NotFound,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from commerce_bridge.http_errors import retry_after_s

# status -> error class; statuses not listed: 5xx -> UpstreamUnavailable, other 4xx -> UpstreamRejected
STATUS_TABLE: dict[int, type[BridgeError]] = {
    401: UpstreamAuthFailed,
    403: UpstreamAuthFailed,
    404: NotFound,
    408: UpstreamUnavailable,
    409: Conflict,
    425: UpstreamUnavailable,
    429: RateLimited,
}


def error_for_response(response: httpx.Response) -> BridgeError | None:
    """None for 2xx; otherwise the error this answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    snippet = response.text[:200] if response.content else ""
    message = f"{response.request.method} {response.request.url} answered {status}" + (f": {snippet}" if snippet else "")
    cls = STATUS_TABLE.get(status) or (UpstreamUnavailable if status >= 500 else UpstreamRejected)
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after_s(response.headers.get("retry-after")), upstream_request_id=request_id)
    fixes: dict[type[BridgeError], str] = {
        UpstreamAuthFailed: "Check the receiver's credentials or CB_OUTBOUND_WEBHOOK_SECRET.",
        NotFound: "Check CB_OUTBOUND_WEBHOOK_URL.",
        UpstreamRejected: "The receiver refused the payload; fix the receiver or the mapping, then replay.",
    }
    fix = fixes.get(cls)
    details = {}
    if cls is UpstreamUnavailable and retry_after_s(response.headers.get("retry-after")) is not None:
        details["retry_after"] = retry_after_s(response.headers.get("retry-after"))
    return cls(message, upstream_request_id=request_id, suggested_fix=fix, details=details)
