"""The ERP connector's error table: frappe/ERPNext answers -> the bridge's error tree (one place).

=====================================================  =====================  ======================================
frappe answer                                          ours                   notes
=====================================================  =====================  ======================================
404 ``DoesNotExistError``                              NotFound
409 ``DuplicateEntryError``                            UpstreamRejected       ``details["exc_type"]``; the
                                                                              ``ensure_*`` methods treat it as
                                                                              "exists" and return the document
417 ``TimestampMismatchError``                         Conflict               someone saved the document meanwhile
417 ``ValidationError``, ``MandatoryError``,           UpstreamRejected       message = the ``_server_messages``
``LinkValidationError``, ``UpdateAfterSubmitError``,                          text
``DocstatusTransitionError``, other 417
401 ``AuthenticationError``, 403 ``PermissionError``   UpstreamAuthFailed
408, 5xx, timeouts, connection errors                  UpstreamUnavailable
429                                                    RateLimited            ``retry_after`` from ``Retry-After``
other 4xx                                              UpstreamRejected
=====================================================  =====================  ======================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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

__all__ = ["error_for_response", "is_duplicate", "server_messages"]

FIXES: dict[type[BridgeError], str] = {
    NotFound: "The document does not exist in the ERP; check the name or create it first.",
    UpstreamRejected: "ERPNext refused the document; read the message, fix the data or the mapping, then replay.",
    UpstreamAuthFailed: "Check CB_ERP_API_KEY / CB_ERP_API_SECRET and the API user's roles.",
}


def server_messages(body: Mapping[str, Any]) -> list[str]:
    """The human messages of a frappe error (``_server_messages`` is a JSON string of JSON strings)."""
    raw = body.get("_server_messages")
    out: list[str] = []
    if isinstance(raw, str):
        try:
            items = json.loads(raw)
        except ValueError:
            items = [raw]
        for item in items if isinstance(items, list) else [items]:
            try:
                parsed = json.loads(item) if isinstance(item, str) else item
            except ValueError:
                parsed = item
            message = parsed.get("message") if isinstance(parsed, Mapping) else parsed
            if message:
                out.append(str(message))
    if not out and body.get("exception"):
        out.append(str(body["exception"]))
    return out


def error_for_response(response: httpx.Response) -> BridgeError | None:
    """None for 2xx; otherwise the error this frappe answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    try:
        body = json.loads(response.content) if response.content else {}
    except ValueError:
        body = {}
    if not isinstance(body, Mapping):
        body = {}
    exc_type = str(body.get("exc_type") or "") or None
    messages = server_messages(body)
    details: dict[str, Any] = {"http_status": status}
    if exc_type:
        details["exc_type"] = exc_type
    retry_after = retry_after_s(response.headers.get("retry-after"))
    if retry_after is not None:
        details["retry_after"] = retry_after
    where = f"{response.request.method} {response.request.url.path}"
    text = f"{where} answered {status}" + (f" {exc_type}" if exc_type else "") + (
        f": {'; '.join(messages)}" if messages else (f": {response.text[:200]}" if response.text else ""))
    request_id = response.headers.get("x-request-id") or response.headers.get("x-frappe-request-id")
    if status == 429:
        return RateLimited(text, retry_after=retry_after, errors=messages, upstream_request_id=request_id,
                           details=details)
    cls: type[BridgeError]
    if status == 404 or exc_type == "DoesNotExistError":
        cls = NotFound
    elif exc_type == "TimestampMismatchError":
        cls = Conflict
    elif status in (401, 403):
        cls = UpstreamAuthFailed
    elif status == 408 or status >= 500:
        cls = UpstreamUnavailable
    else:
        cls = UpstreamRejected
    return cls(text, errors=messages, upstream_request_id=request_id, suggested_fix=FIXES.get(cls),
               details=details)


def is_duplicate(error: BridgeError) -> bool:
    """Whether ``error`` is frappe's DuplicateEntryError (the document exists already)."""
    return error.details.get("exc_type") == "DuplicateEntryError"
