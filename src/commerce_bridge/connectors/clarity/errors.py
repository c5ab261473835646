"""The Clarity connector's error table: CEF/ServiceStack answers -> the bridge's error tree (one place).

=====================================================  ======================  ===================================
Clarity answer                                         ours                    why
=====================================================  ======================  ===================================
200 ``{"ActionSucceeded": false, "Messages": [...]}``  UpstreamRejected        business rule ("ERROR! ..."), e.g.
                                                                               payment above the balance due
204 where a body was expected (get by ID/Key)          NotFound                CEF answers null as No Content
400 ``CEF-10155`` ArgumentNullException                ValidationError         we sent an incomplete model
400 ``CEF-10156`` ArgumentException                    ValidationError         bad input (bad date, bad field);
                                                       NotFound                "...matches an existing record"
400 ``CEF-10114`` KeyNotFoundException                 NotFound
400 ``CEF-10142`` InvalidOperationException            UpstreamRejected        duplicate CustomKey, inactive status
400 ``CEF-10115`` UnauthorizedAccessException          UpstreamAuthFailed
400 ``CEF-20000`` migration mismatch                   UpstreamUnavailable     the server is mid-deployment
400 ``CEF-10161`` and any other code                   UpstreamRejected
401                                                    (re-login once, then) UpstreamAuthFailed
403 "Invalid Permission" / HTTPS required              UpstreamAuthFailed      fix the service user's roles
404 (unknown route)                                    UpstreamRejected        wrong base URL or API kind
408, 425, 5xx, timeouts, connection errors             UpstreamUnavailable
409                                                    Conflict
429                                                    RateLimited             ``retry_after`` from ``Retry-After``
other 4xx                                              UpstreamRejected
=====================================================  ======================  ===================================

``Retry-After`` on any answer is kept in ``details["retry_after"]``. The log id of a CEF error
(``"Log ID: CEF: <guid> | ..."``) becomes ``upstream_request_id``, so a DLQ entry points at Clarity's
EventLog row.
"""

from __future__ import annotations

import json
import re
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
    ValidationError,
)
from commerce_bridge.http_errors import retry_after_s

__all__ = [
    "CEF_CODES",
    "action_error",
    "error_for_response",
    "not_found",
]

CEF_CODES: dict[str, type[BridgeError]] = {
    "CEF-10155": ValidationError,
    "CEF-10156": ValidationError,
    "CEF-10114": NotFound,
    "CEF-10142": UpstreamRejected,
    "CEF-10115": UpstreamAuthFailed,
    "CEF-20000": UpstreamUnavailable,
    "CEF-10161": UpstreamRejected,
}
"""``ResponseStatus.ErrorCode`` of a 400 -> our class; codes not listed are UpstreamRejected."""

FIXES: dict[type[BridgeError], str] = {
    ValidationError: "Clarity refused the input; fix the data or the mapping, then replay.",
    NotFound: "The record does not exist in Clarity; check the order id or key.",
    UpstreamRejected: "Clarity refused the change; read the message, fix the order in Clarity, then replay.",
    UpstreamAuthFailed: "Check CB_CLARITY_USER / CB_CLARITY_PASSWORD and the user's permissions "
                        "(the 'Clarity Connect Data' role has them all).",
}

_LOG_ID = re.compile(r"Log ID:\s*(CEF:\s*[0-9a-fA-F-]+)")
_NOT_FOUND_HINTS = ("matches an existing record", "could not find", "not found")


def _body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def error_for_response(response: httpx.Response) -> BridgeError | None:
    """None when the answer is a success (2xx other than 204); otherwise the error it means.

    A 204 is returned as None too: only the caller knows whether it expected a body
    (see ``HttpClarityGateway``), and a 401 is handled there first (one re-login).
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _body(response)
    details: dict[str, Any] = {"http_status": status}
    retry_after = retry_after_s(response.headers.get("retry-after"))
    if retry_after is not None:
        details["retry_after"] = retry_after
    request_id = response.headers.get("x-request-id")
    code: str | None = None
    message = ""
    if isinstance(body, Mapping):
        status_block = body.get("ResponseStatus")
        if isinstance(status_block, Mapping):
            code = str(status_block.get("ErrorCode") or "") or None
            message = str(status_block.get("Message") or "")
            errors = status_block.get("Errors")
            if errors:
                details["errors"] = errors
        else:
            message = str(body.get("Message") or body.get("StatusDescription") or "")
    if not message:
        message = response.text[:200]
    if code:
        details["error_code"] = code
    if match := _LOG_ID.search(message):
        request_id = match.group(1)
    text = f"{_where(response)} answered {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429:
        return RateLimited(text, retry_after=retry_after, upstream_request_id=request_id, details=details)
    cls: type[BridgeError]
    if status == 400:
        cls = CEF_CODES.get(code or "", UpstreamRejected)
        if cls is ValidationError and any(h in message.lower() for h in _NOT_FOUND_HINTS):
            cls = NotFound
    elif status in (401, 403):
        cls = UpstreamAuthFailed
    elif status == 409:
        cls = Conflict
    elif status in (408, 425) or status >= 500:
        cls = UpstreamUnavailable
    elif status == 404:
        cls = UpstreamRejected
        details["hint"] = "unknown route: check CB_CLARITY_BASE_URL (API-Admin vs the all-in-one service)"
    else:
        cls = UpstreamRejected
    return cls(text, upstream_request_id=request_id, suggested_fix=FIXES.get(cls), details=details)


def action_error(response: httpx.Response, body: Mapping[str, Any]) -> UpstreamRejected | None:
    """``UpstreamRejected`` with Clarity's messages when a ``CEFActionResponse`` says ``ActionSucceeded: false``."""
    if body.get("ActionSucceeded", True) is not False:
        return None
    messages = [str(m) for m in body.get("Messages") or []]
    text = f"{_where(response)} did not succeed" + (f": {'; '.join(messages)}" if messages else "")
    return UpstreamRejected(text, errors=messages, suggested_fix=FIXES[UpstreamRejected],
                            details={"http_status": response.status_code, "messages": messages})


def not_found(response: httpx.Response) -> NotFound:
    """The 204 No Content that CEF answers when a get by ID or Key finds nothing."""
    return NotFound(f"{_where(response)} answered 204 (no such record)", suggested_fix=FIXES[NotFound],
                    details={"http_status": 204})
