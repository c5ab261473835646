"""Shared pieces of the Clarity simulator: its context object, errors, request and response helpers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.clock import SimClock
from commerce_bridge.sandbox.clarity_sim.jsonutil import dumps, loads, omit_empty
from commerce_bridge.sandbox.clarity_sim.store import DocStore

if TYPE_CHECKING:
    from commerce_bridge.sandbox.clarity_sim.auth import Session
    from commerce_bridge.sandbox.clarity_sim.webhooks import WebhookEmitter

ADMIN_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"
Record = dict[str, Any]

# CEF error codes (CEFErrorCodeLibrary) by exception kind.
INVALID_OPERATION = "CEF-10142"
ARGUMENT = "CEF-10156"
ARGUMENT_NULL = "CEF-10155"
KEY_NOT_FOUND = "CEF-10114"
GENERIC = "CEF-10161"


class CefError(Exception):
    """An exception inside a CEF service: answered 400 with ``ResponseStatus.ErrorCode`` ``CEF-...``."""

    def __init__(self, message: str, code: str = GENERIC) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class HttpStatusError(Exception):
    """An auth-filter failure (401/403) written as ServiceStack's raw HttpError JSON."""

    def __init__(self, status: int, description: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.description = description
        self.message = message


class NoContent(Exception):
    """A getter found nothing: ServiceStack answers 204 with an empty body."""


@dataclass
class SimConfig:
    """Settings fixed at start-up."""

    user: str
    password: str
    readonly_user: str
    readonly_password: str
    basic_auth: bool
    webhook_url: str | None
    webhook_secret: str | None
    stripe_url: str | None
    stripe_api_key: str | None
    add_payment_records_payment: bool


@dataclass
class Sim:
    """Everything a handler needs: state, clock, settings and the optional webhook emitter."""

    store: DocStore
    clock: SimClock
    config: SimConfig
    emitter: WebhookEmitter | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def notify(self, kind: str, verb: str, record: Record) -> None:
        """Queue a change notice (no-op when the emitter is off)."""
        if self.emitter is not None:
            self.emitter.notify(kind, verb, record, self.clock.render(record.get("_u")))


@dataclass
class Req:
    """One API request after routing and authentication."""

    method: str
    path: str
    params: dict[str, str]
    query: QueryParams
    raw_body: bytes
    session: Session | None

    def json(self) -> Any:
        if not self.raw_body.strip():
            return {}
        try:
            return loads(self.raw_body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CefError(f"Could not deserialize the request body: {exc}") from exc

    def body_dict(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise CefError("The request body must be a JSON object", ARGUMENT)
        return body


Handler = Callable[[Sim, Req], Awaitable[Response]]


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json; charset=utf-8")


def action_response(ok: bool, messages: list[str] | None = None, result: Any = None) -> Response:
    """A ``CEFActionResponse``; an empty ``Messages`` list and a missing ``Result`` are omitted."""
    body: dict[str, Any] = {"ActionSucceeded": ok}
    if messages:
        body["Messages"] = messages
    if result is not None:
        body["Result"] = result
    return json_response(body)


def cef_error_response(exc: CefError) -> Response:
    log_id = f"CEF: {uuid.uuid4()}"
    body = {"ResponseStatus": {"ErrorCode": exc.code, "Message": f"Log ID: {log_id} | {exc.message}", "Errors": []}}
    return Response(json.dumps(body), status_code=400, media_type="application/json; charset=utf-8")


def http_error_response(exc: HttpStatusError) -> Response:
    body = {"StatusCode": exc.status, "StatusDescription": exc.description, "Message": exc.message}
    headers = {"WWW-Authenticate": 'Basic realm="/auth/basic"'} if exc.status == 401 else None
    return Response(json.dumps(body), status_code=exc.status, media_type="application/json; charset=utf-8",
                    headers=headers)


def to_decimal(value: Any, field_name: str) -> Decimal:
    """A money or quantity value as an exact Decimal (strings and ints accepted, floats never)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise CefError(f"{field_name} must be a number", ARGUMENT)
    if isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise CefError(f"{field_name} must be a number", ARGUMENT) from exc
        if not result.is_finite():
            raise CefError(f"{field_name} must be a number", ARGUMENT)
        return result
    raise CefError(f"{field_name} must be a number", ARGUMENT)


MONEY_Q = Decimal("0.0001")


def money(value: Any, field_name: str) -> Decimal:
    """A money amount at CEF's storage scale (SQL ``decimal(18,4)``)."""
    return to_decimal(value, field_name).quantize(MONEY_Q)


def public(record: Record, sim: Sim) -> Record:
    """A stored record as CEF would serialise it: dates rendered, internals dropped, empties omitted."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    if "_c" in record:
        out["CreatedDate"] = sim.clock.render(record["_c"])
    if "_u" in record:
        out["UpdatedDate"] = sim.clock.render(record.get("_u"))
    return dict(omit_empty(out))


def as_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool):
        raise CefError(f"{field_name} must be an integer", ARGUMENT)
    try:
        return int(str(value))
    except ValueError as exc:
        raise CefError(f"{field_name} must be an integer", ARGUMENT) from exc
