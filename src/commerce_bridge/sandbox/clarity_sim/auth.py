"""Session login of the Clarity simulator (ServiceStack ``/auth/identity``), Basic auth and permissions."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.core import HttpStatusError, Sim, json_response
from commerce_bridge.sandbox.clarity_sim.jsonutil import loads

SESSION_KIND = "_Session"
ADMIN_ROLE = "Clarity Connect Data"
READONLY_ROLE = "CEF Read Only"


@dataclass
class Session:
    """An authenticated ServiceStack session."""

    session_id: str
    user_name: str
    user_id: int
    role: str

    def allows(self, permission: str | None) -> bool:
        if permission is None or self.role == ADMIN_ROLE:
            return True
        return self.role == READONLY_ROLE and permission.endswith(".View")


def _identity(sim: Sim, user: str, password: str) -> str | None:
    """The role of a valid login, or None."""
    cfg = sim.config
    if secrets.compare_digest(user.encode(), cfg.user.encode()) and secrets.compare_digest(
            password.encode(), cfg.password.encode()):
        return ADMIN_ROLE
    if cfg.readonly_user and secrets.compare_digest(user.encode(), cfg.readonly_user.encode()) and \
            secrets.compare_digest(password.encode(), cfg.readonly_password.encode()):
        return READONLY_ROLE
    return None


def _user_id(sim: Sim, user_name: str) -> int:
    for row in sim.store.all("User"):
        if str(row.get("UserName", "")).lower() == user_name.lower():
            return int(row["ID"])
    return 0


async def login(sim: Sim, request: Request) -> Response:
    """``POST /auth/identity`` (also ``/auth/credentials``): check credentials, open a session, set cookies."""
    raw = await request.body()
    body: dict[str, Any] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    elif raw.strip():
        try:
            parsed = loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body = parsed
    lowered = {str(k).lower(): v for k, v in body.items()}
    user = str(lowered.get("username") or request.query_params.get("UserName") or "")
    password = str(lowered.get("password") or request.query_params.get("Password") or "")
    role = _identity(sim, user, password) if user else None
    if role is None:
        return json_response(
            {"ResponseStatus": {"ErrorCode": "Unauthorized", "Message": "Invalid UserName or Password", "Errors": []}},
            status=401)
    session_id = secrets.token_urlsafe(15)
    user_id = _user_id(sim, user)
    sim.store.put(SESSION_KIND, session_id, {"user": user, "role": role, "user_id": user_id})
    remember = bool(lowered.get("rememberme"))
    response = json_response({
        "UserId": str(user_id), "SessionId": session_id, "UserName": user, "DisplayName": user,
        "ReferrerUrl": "", "ResponseStatus": {},
    })
    response.set_cookie("ss-id", session_id, httponly=True, path="/")
    response.set_cookie("ss-pid", session_id, httponly=True, path="/", max_age=20 * 365 * 86400)
    if remember:
        response.set_cookie("ss-opt", "perm", path="/", max_age=20 * 365 * 86400)
    return response


async def logout(sim: Sim, request: Request) -> Response:
    session_id = _session_id(request)
    if session_id:
        sim.store.delete(SESSION_KIND, session_id)
    response = json_response({"ResponseStatus": {}})
    for name in ("ss-id", "ss-pid", "ss-opt"):
        response.delete_cookie(name, path="/")
    return response


def _session_id(request: Request) -> str | None:
    """The session id from the ``ss-opt``-chosen cookie or the ``X-ss-id``/``X-ss-pid`` headers."""
    headers = request.headers
    opt = request.cookies.get("ss-opt") or headers.get("x-ss-opt")
    candidates = [headers.get("x-ss-pid"), headers.get("x-ss-id")]
    if opt == "perm":
        candidates += [request.cookies.get("ss-pid"), request.cookies.get("ss-id")]
    else:
        candidates += [request.cookies.get("ss-id"), request.cookies.get("ss-pid")]
    for candidate in candidates:
        if candidate:
            return candidate
    return None


def authenticate(sim: Sim, request: Request) -> Session | None:
    """The session this request carries (cookie, header, or Basic when enabled), or None."""
    session_id = _session_id(request)
    if session_id:
        row = sim.store.get(SESSION_KIND, session_id)
        if row is not None:
            return Session(session_id, row["user"], int(row.get("user_id", 0)), row["role"])
    header = request.headers.get("authorization", "")
    if sim.config.basic_auth and header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        role = _identity(sim, user, password)
        if role is not None:
            return Session("basic", user, _user_id(sim, user), role)
    return None


def require(session: Session | None, permission: str | None) -> Session:
    """Raise 401 without a session and 403 ("Invalid Permission") without ``permission``."""
    if session is None:
        raise HttpStatusError(401, "Unauthorized", "Not Authenticated")
    if not session.allows(permission):
        raise HttpStatusError(403, "Forbidden", "Invalid Permission")
    return session
