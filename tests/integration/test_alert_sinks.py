"""Alert sinks against real peers: a local HTTP receiver (uvicorn) and a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge import errors
from commerce_bridge.connectors.notify.alert_sinks import (
    SIGNATURE_HEADER,
    EmailAlertSink,
    LogAlertSink,
    WebhookAlertSink,
    build_alert_sinks,
)
from commerce_bridge.domain.signature import SignatureScheme, verify
from commerce_bridge.logsetup import configure_logging
from commerce_bridge.sandbox.runner import PeerServer, free_port
from commerce_bridge.services.alerts import Alert, Alerter, AlertMessage, Severity
from commerce_bridge.testing import FakeClock

SECRET = "whsec_test_alerts_0123456789"


# --- peers ---------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """What the HTTP peer received."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


def make_app(rx: Receiver) -> Starlette:
    async def record(request: Request) -> Response:
        rx.requests.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        headers = {"Retry-After": "7"} if code == 429 else {}
        return Response("nope", status_code=code, headers=headers)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/hooks/alerts", record, methods=["POST"]),
            Route("/status/{code:int}", status, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def http_peer() -> Iterator[tuple[PeerServer, Receiver]]:
    rx = Receiver()
    with PeerServer(make_app(rx)) as server:
        yield server, rx


@pytest.fixture
def receiver(http_peer: tuple[PeerServer, Receiver]) -> Receiver:
    http_peer[1].requests.clear()
    return http_peer[1]


@pytest.fixture
def hook_url(http_peer: tuple[PeerServer, Receiver]) -> str:
    return http_peer[0].url + "/hooks/alerts"


class Mailbox:
    """aiosmtpd handler keeping every accepted message; refuses recipients at ``refused.example``."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        out = []
        for env in self.envelopes:
            content = env.content if isinstance(env.content, bytes) else str(env.content).encode()
            msg = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == b"s3cret-pw"
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture(scope="module")
def smtp_peer() -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_peer: tuple[int, Mailbox]) -> Mailbox:
    smtp_peer[1].envelopes.clear()
    return smtp_peer[1]


@pytest.fixture
def smtp_port(smtp_peer: tuple[int, Mailbox]) -> int:
    return smtp_peer[0]


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging(stream=buf, capture_warnings=False)
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def log_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def message(summary: str = "run r1 dead-lettered", **details: Any) -> AlertMessage:
    clock = FakeClock()
    alert = Alert("dlq.new", summary, Severity.WARNING, details, at=clock.now())
    return AlertMessage(
        "dlq.new", "dlq.new", Severity.WARNING, summary, (alert,), 1, False, clock.now(), 60.0
    )


# --- the storm -----------------------------------------------------------------------------------


def test_a_storm_of_50_alerts_gives_one_alert_and_one_summary_at_each_sink(
    receiver: Receiver, hook_url: str, mailbox: Mailbox, smtp_port: int, log_buffer: io.StringIO
) -> None:
    clock = FakeClock()
    started = int(clock.now().timestamp())
    webhook = WebhookAlertSink(hook_url, secret=SECRET, timeout=5, clock=clock)
    mail = EmailAlertSink("127.0.0.1", smtp_port, "bridge@shop.test", ["ops@shop.test", "oncall@shop.test"])
    alerter = Alerter([LogAlertSink(), webhook, mail], clock, window_s=60)
    try:
        for i in range(50):
            alerter.alert(
                Alert(
                    "dlq.new", f"run r{i} dead-lettered", details={"run_id": f"r{i}", "code": "mapping_error"}
                )
            )
            clock.advance(0.5)
        assert len(receiver.requests) == 1 and len(mailbox.envelopes) == 1
        assert len([x for x in log_lines(log_buffer) if x["event"] == "alert"]) == 1
        assert alerter.tick() == 0  # 25 s in: the window is still open
        clock.advance(35)  # 60 s after the first alert: the window ends
        assert alerter.tick() == 1
    finally:
        webhook.close()

    # webhook: exactly two signed JSON posts
    assert len(receiver.requests) == 2
    bodies = []
    for (headers, body), sent_at in zip(receiver.requests, [started, started + 60], strict=True):
        assert headers["content-type"] == "application/json"
        t_part, v1_part = headers[SIGNATURE_HEADER.lower()].split(",")
        t = int(t_part.removeprefix("t="))
        expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        assert v1_part == f"v1={expected}"
        assert t == sent_at
        bodies.append(json.loads(body))
    first, summary = bodies
    assert first["is_summary"] is False and first["summary"] == "run r0 dead-lettered"
    assert first["alerts"][0]["details"] == {"run_id": "r0", "code": "mapping_error"}
    assert summary["is_summary"] is True and summary["count"] == 49 and len(summary["alerts"]) == 49
    assert summary["summary"].startswith("49 more dlq.new alerts in the last 60 s: run r1 dead-lettered;")

    # e-mail: exactly two messages to both recipients
    assert [sorted(env.rcpt_tos) for env in mailbox.envelopes] == [["oncall@shop.test", "ops@shop.test"]] * 2
    m1, m2 = mailbox.messages()
    assert m1["Subject"] == "[commerce-bridge] WARNING: run r0 dead-lettered"
    assert m1["From"] == "bridge@shop.test"
    assert m2["Subject"].startswith("[commerce-bridge] WARNING: 49 more dlq.new alerts in the last 60 s")
    body2 = m2.get_content()
    assert "run r49 dead-lettered" in body2 and body2.count("dlq.new: run r") == 49

    # log: one alert line and one summary line
    alert_lines = [x for x in log_lines(log_buffer) if x["event"] == "alert"]
    assert [x["is_summary"] for x in alert_lines] == [False, True]
    assert alert_lines[1]["count"] == 49 and alert_lines[1]["level"] == "warning"


def test_a_dead_sink_does_not_stop_the_others(
    mailbox: Mailbox, smtp_port: int, log_buffer: io.StringIO
) -> None:
    clock = FakeClock()
    dead = WebhookAlertSink(f"http://127.0.0.1:{free_port()}/hooks/alerts?token=tok_in_url", timeout=2)
    mail = EmailAlertSink("127.0.0.1", smtp_port, "bridge@shop.test", ["ops@shop.test"])
    try:
        assert Alerter([dead, mail], clock).alert(Alert("breaker.open", "clarity is down", Severity.CRITICAL))
    finally:
        dead.close()
    assert len(mailbox.envelopes) == 1
    assert mailbox.messages()[0]["Subject"] == "[commerce-bridge] CRITICAL: clarity is down"
    [failure] = [x for x in log_lines(log_buffer) if x["event"] == "alert.sink_failed"]
    assert failure["sink"] == "WebhookAlertSink" and failure["error_type"] == "UpstreamUnavailable"
    assert "tok_in_url" not in log_buffer.getvalue()


# --- webhook details -----------------------------------------------------------------------------


def test_webhook_without_secret_sends_no_signature(receiver: Receiver, hook_url: str) -> None:
    sink = WebhookAlertSink(hook_url)
    try:
        sink.send(message())
    finally:
        sink.close()
    [(headers, body)] = receiver.requests
    assert SIGNATURE_HEADER.lower() not in headers
    assert json.loads(body)["kind"] == "dlq.new"


def test_webhook_signature_verifies_and_rejects_tampering(receiver: Receiver, hook_url: str) -> None:
    clock = FakeClock()
    sink = WebhookAlertSink(hook_url, secret=SECRET, clock=clock)
    try:
        sink.send(message())
    finally:
        sink.close()
    [(headers, body)] = receiver.requests
    header = headers[SIGNATURE_HEADER.lower()]
    now = clock.now().timestamp()
    def verify_signature(secrets: Any, body: bytes, header: str, *, now: float) -> int:
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        scheme = SignatureScheme("x-bridge-signature", tuple(k.encode() for k in keys))
        return verify(body, header, scheme, lambda: now)

    assert verify_signature(["old-secret", SECRET], body, header, now=now) == int(now)
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(SECRET, body.replace(b"r1", b"r2"), header, now=now)
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(SECRET, body, header, now=now + 301)
    with pytest.raises(errors.SignatureInvalid):
        verify_signature("other", body, header, now=now)
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(SECRET, body, "v1=abc", now=now)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (500, errors.UpstreamUnavailable),
        (503, errors.UpstreamUnavailable),
        (408, errors.UpstreamUnavailable),
        (401, errors.UpstreamAuthFailed),
        (403, errors.UpstreamAuthFailed),
        (429, errors.RateLimited),
        (400, errors.UpstreamRejected),
        (404, errors.UpstreamRejected),
    ],
)
def test_webhook_errors_are_translated(
    http_peer: tuple[PeerServer, Receiver], code: int, error: type[errors.BridgeError]
) -> None:
    sink = WebhookAlertSink(f"{http_peer[0].url}/status/{code}", secret=SECRET)
    try:
        with pytest.raises(error) as info:
            sink.send(message())
    finally:
        sink.close()
    assert type(info.value) is error
    assert str(code) in str(info.value)
    if code == 429:
        assert isinstance(info.value, errors.RateLimited) and info.value.retry_after == 7.0


def test_webhook_timeout_and_refused_connection_are_transient(http_peer: tuple[PeerServer, Receiver]) -> None:
    slow = WebhookAlertSink(f"{http_peer[0].url}/slow", timeout=0.2)
    dead = WebhookAlertSink(f"http://127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(errors.UpstreamUnavailable, match="timed out"):
            slow.send(message())
        with pytest.raises(errors.UpstreamUnavailable, match="unreachable"):
            dead.send(message())
    finally:
        slow.close()
        dead.close()


# --- e-mail details ------------------------------------------------------------------------------


def test_email_with_smtp_auth_is_delivered(mailbox: Mailbox, smtp_port: int) -> None:
    sink = EmailAlertSink(
        "127.0.0.1", smtp_port, "bridge@shop.test", ["ops@shop.test"], username="alerts", password="s3cret-pw"
    )
    sink.send(message("backlog growing", queue="clarity", depth=1200))
    [msg] = mailbox.messages()
    assert msg["To"] == "ops@shop.test" and msg["X-Bridge-Alert-Kind"] == "dlq.new"
    assert '{"depth": 1200, "queue": "clarity"}' in msg.get_content()


def test_email_wrong_password_is_an_auth_failure(mailbox: Mailbox, smtp_port: int) -> None:
    sink = EmailAlertSink(
        "127.0.0.1", smtp_port, "b@shop.test", ["ops@shop.test"], username="alerts", password="x"
    )
    with pytest.raises(errors.UpstreamAuthFailed):
        sink.send(message())
    assert mailbox.envelopes == []


def test_email_refused_recipient_is_rejected(mailbox: Mailbox, smtp_port: int) -> None:
    sink = EmailAlertSink("127.0.0.1", smtp_port, "b@shop.test", ["nobody@refused.example"])
    with pytest.raises(errors.UpstreamRejected):
        sink.send(message())


def test_email_to_a_closed_port_is_transient() -> None:
    sink = EmailAlertSink("127.0.0.1", free_port(), "b@shop.test", ["ops@shop.test"], timeout=2)
    with pytest.raises(errors.UpstreamUnavailable):
        sink.send(message())


# --- wiring from settings ------------------------------------------------------------------------


def test_build_alert_sinks_from_settings(hook_url: str) -> None:
    sinks = build_alert_sinks(
        ["log", " webhook", "email"],
        webhook_url=hook_url,
        email_to=["ops@shop.test"],
        email_from="bridge@shop.test",
        smtp_host="127.0.0.1",
        smtp_port=2525,
    )
    assert [type(s).__name__ for s in sinks] == ["LogAlertSink", "WebhookAlertSink", "EmailAlertSink"]
    for s in sinks:
        if isinstance(s, WebhookAlertSink):
            s.close()


@pytest.mark.parametrize(
    ("names", "kw", "match"),
    [
        (["pager"], {}, "unknown alert sink"),
        (["webhook"], {}, "CB_ALERT_WEBHOOK_URL"),
        (["email"], {"email_to": ["a@b.c"]}, "CB_ALERT_EMAIL_FROM, CB_SMTP_HOST"),
    ],
)
def test_build_alert_sinks_rejects_incomplete_settings(
    names: list[str], kw: dict[str, Any], match: str
) -> None:
    with pytest.raises(errors.ConfigurationError, match=match):
        build_alert_sinks(names, **kw)
