"""The sandbox mail catcher: an aiosmtpd SMTP server that keeps messages and lists them over HTTP."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.runner import PeerServer, free_port

KIND = "message"
Message = dict[str, Any]


def _bodies(parsed: EmailMessage) -> tuple[str | None, str | None]:
    text = html = None
    for part in parsed.walk() if parsed.is_multipart() else [parsed]:
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and text is None:
            text = str(part.get_content())
        elif kind == "text/html" and html is None:
            html = str(part.get_content())
    return text, html


class MailStore:
    """Caught messages, in memory or in a SQLite file."""

    def __init__(self, state_file: str | None = None) -> None:
        self._store = DocStore(state_file)
        self._lock = threading.Lock()

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes, auth_user: str | None = None) -> Message:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text, html = _bodies(parsed)
        with self._lock:
            ident = str(self._store.next_value("message"))
            message: Message = {
                "id": ident, "mail_from": mail_from, "rcpt_tos": list(rcpt_tos), "auth_user": auth_user,
                "from": str(parsed.get("From", "")), "to": str(parsed.get("To", "")), "cc": str(parsed.get("Cc", "")),
                "subject": str(parsed.get("Subject", "")), "date": str(parsed.get("Date", "")),
                "message_id": str(parsed.get("Message-ID", "")),
                "received_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "headers": [[k, str(v)] for k, v in parsed.items()],
                "text": text, "html": html, "raw": raw.decode("utf-8", errors="replace"),
            }
            self._store.put(KIND, ident, message)
        return message

    def list(self) -> list[Message]:
        return self._store.all(KIND)

    def get(self, ident: str) -> Message | None:
        return self._store.get(KIND, ident)

    def clear(self) -> int:
        with self._lock:
            count = self._store.count(KIND)
            self._store.clear(KIND)
            return count

    def close(self) -> None:
        self._store.close()


class _Handler:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        login = session.auth_data
        auth_user = login.login.decode(errors="replace") if isinstance(login, LoginPassword) else None
        self.store.add(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], raw, auth_user)
        return "250 Message accepted for delivery"


def _accept_any_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    """SMTP AUTH is offered (without TLS) and every login succeeds; sending without AUTH works too."""
    return AuthResult(success=True, auth_data=data)


_SUMMARY = ("id", "from", "to", "subject", "date", "received_at", "rcpt_tos")


def build_http_app(store: MailStore) -> Starlette:
    """``GET /messages`` (filters ``to``, ``subject``), ``GET /messages/{id}``, ``DELETE /messages``."""

    async def list_messages(request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"deleted": store.clear()})
        messages = store.list()
        to = request.query_params.get("to")
        subject = request.query_params.get("subject")
        if to:
            messages = [m for m in messages if any(to.lower() in r.lower() for r in m["rcpt_tos"])
                        or to.lower() in m["to"].lower()]
        if subject:
            messages = [m for m in messages if subject.lower() in m["subject"].lower()]
        return JSONResponse({"count": len(messages),
                             "messages": [{k: m[k] for k in _SUMMARY} | {"text": m["text"]} for m in messages]})

    async def get_message(request: Request) -> Response:
        found = store.get(request.path_params["id"])
        if found is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return JSONResponse(found)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "count": len(store.list())})

    return Starlette(routes=[
        Route("/messages", list_messages, methods=["GET", "DELETE"]),
        Route("/messages/{id}", get_message, methods=["GET"]),
        Route("/_sandbox/health", health, methods=["GET"]),
    ])


class Mailbox:
    """SMTP on ``smtp_port`` plus the JSON listing on ``http_port`` (0 picks free ports)."""

    def __init__(self, *, host: str = "127.0.0.1", smtp_port: int = 8025, http_port: int = 8092,
                 state_file: str | None = None, port: int | None = None) -> None:
        if port is not None:  # ``port`` is accepted as an alias of ``http_port`` (the CLI's --port)
            http_port = port
        self.host = host
        self.smtp_port = smtp_port or free_port(host)
        self.store = MailStore(state_file)
        self.app = build_http_app(self.store)
        self._controller = Controller(_Handler(self.store), hostname=host, port=self.smtp_port,
                                      authenticator=_accept_any_login, auth_require_tls=False)
        self._http = PeerServer(self.app, host=host, port=http_port)

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def http_port(self) -> int:
        return self._http.port

    def start(self) -> Mailbox:
        self._controller.start()
        try:
            self._http.start()
        except Exception:
            self._controller.stop()
            raise
        return self

    def stop(self) -> None:
        self._http.stop()
        self._controller.stop()
        self.store.close()

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
