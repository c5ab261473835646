"""The one JSON error shape of every HTTP answer, and the exception-to-response mapping."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from commerce_bridge.errors import BridgeError, RateLimited

JSON_HEADERS = [(b"content-type", b"application/json")]


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


def error_body(status: int, code: str, message: str, errors: list[str] | None = None,
               request_id: str | None = None) -> dict[str, Any]:
    """``{"ok": false, "error", "errors", "status", "code", "request_id"}``."""
    return {
        "ok": False, "error": message, "errors": errors or [message], "status": status, "code": code,
        "request_id": request_id or new_request_id(),
    }


def from_exception(exc: BaseException, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, extra headers) for any exception; non-BridgeErrors are 500 without details."""
    headers: dict[str, str] = {}
    if isinstance(exc, BridgeError):
        status = exc.http_status
        if isinstance(exc, RateLimited) and exc.retry_after:
            headers["retry-after"] = str(int(exc.retry_after + 0.999))
        return status, error_body(status, exc.code, exc.message, exc.errors or None, request_id), headers
    return 500, error_body(500, "internal_error", "Internal error; see the server log", None, request_id), headers


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=str)
