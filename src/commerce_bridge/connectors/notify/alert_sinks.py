"""Alert sinks: structured log lines, signed JSON webhooks (httpx) and e-mail (smtplib).

Each sink implements ``services.alerts.AlertSink``: ``send(message)`` delivers one message or
raises a ``BridgeError`` (``UpstreamUnavailable`` when the peer is down or answers 5xx/408,
``RateLimited`` on 429, ``UpstreamAuthFailed`` on 401/403 or SMTP auth failure,
``UpstreamRejected`` on other refusals). The ``Alerter`` logs such failures and carries on.

Webhook signature (when a secret is set): header
``X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``, where
``body`` is the exact request body bytes. Receivers should recompute it, compare in constant
time and reject old timestamps (see :func:`verify_signature`).
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
import structlog

from commerce_bridge.domain.signature import sign
from commerce_bridge.errors import (
    BridgeError,
    ConfigurationError,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from commerce_bridge.http_errors import retry_after_s
from commerce_bridge.services.alerts import AlertMessage, AlertSink, Severity
from commerce_bridge.services.clock import Clock, SystemClock

__all__ = [
    "SIGNATURE_HEADER",
    "EmailAlertSink",
    "LogAlertSink",
    "WebhookAlertSink",
    "build_alert_sinks",
]

SIGNATURE_HEADER = "X-Bridge-Signature"

_LEVEL = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "error"}


class LogAlertSink:
    """Writes each alert message as one structured log line (event ``alert``)."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger if logger is not None else structlog.get_logger("commerce_bridge.alerts")

    def send(self, message: AlertMessage) -> None:
        method = getattr(self._log, _LEVEL.get(message.severity, "warning"))
        method(
            "alert",
            kind=message.kind,
            key=message.key,
            severity=str(message.severity),
            summary=message.summary,
            count=message.count,
            is_summary=message.is_summary,
            alerts=[a.to_dict() for a in message.alerts[:20]],
        )


class WebhookAlertSink:
    """POSTs each message as JSON to ``url``, signed with ``secret`` when one is given.

    Parameters
    ----------
    url:
        Receiver URL (``CB_ALERT_WEBHOOK_URL``). It never appears in errors or logs (it may
        embed a token), only its host does.
    secret:
        HMAC key for ``X-Bridge-Signature`` (``CB_ALERT_WEBHOOK_SECRET``).
    timeout:
        Seconds for connect, read and write.
    client:
        An ``httpx.Client`` to use (default: one owned by the sink; :meth:`close` it).
    clock:
        Source of the signature timestamp.
    """

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout: float = 5.0,
        *,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.host = httpx.URL(url).host
        self._secret = secret
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()

    def send(self, message: AlertMessage) -> None:
        body = json.dumps(message.to_dict(), separators=(",", ":"), sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "commerce-bridge-alerts"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret, int(self._clock.now().timestamp()))
        try:
            response = self._client.post(self.url, content=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"alert webhook at {self.host} timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"alert webhook at {self.host} unreachable: {type(exc).__name__}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        what = f"alert webhook at {self.host} answered {status}"
        if status in (401, 403):
            raise UpstreamAuthFailed(what)
        if status == 429:
            raise RateLimited(what, retry_after=retry_after_s(response.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            raise UpstreamUnavailable(what)
        raise UpstreamRejected(what)

    def close(self) -> None:
        """Close the HTTP client if the sink created it."""
        if self._owns_client:
            self._client.close()


class EmailAlertSink:
    """Sends each message as a plain-text e-mail through an SMTP server.

    Parameters
    ----------
    host, port:
        SMTP server (``CB_SMTP_HOST``, ``CB_SMTP_PORT``).
    sender:
        ``From`` address (``CB_ALERT_EMAIL_FROM``).
    recipients:
        ``To`` addresses (``CB_ALERT_EMAIL_TO``).
    username, password:
        SMTP AUTH credentials, if the server needs them.
    starttls:
        Upgrade the connection with STARTTLS (certificate verified) before AUTH.
    timeout:
        Socket timeout in seconds.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        *,
        timeout: float = 10.0,
    ) -> None:
        if not recipients:
            raise ConfigurationError("EmailAlertSink needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self._username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout

    def build(self, message: AlertMessage) -> EmailMessage:
        """The e-mail for ``message`` (public for previews and tests)."""
        mail = EmailMessage()
        subject = " ".join(message.summary.split())
        if len(subject) > 150:
            subject = subject[:147] + "..."
        mail["Subject"] = f"[commerce-bridge] {str(message.severity).upper()}: {subject}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = format_datetime(message.sent_at)
        mail["Message-ID"] = make_msgid(domain="commerce-bridge.local")
        mail["X-Bridge-Alert-Kind"] = message.kind
        lines = [message.summary, ""]
        for alert in message.alerts:
            at = alert.at.isoformat() if alert.at else ""
            lines.append(f"- {at} [{alert.severity}] {alert.kind}: {alert.title}")
            if alert.details:
                lines.append("  " + json.dumps(dict(alert.details), sort_keys=True, default=str))
        if message.count > len(message.alerts):
            lines.append(f"... and {message.count - len(message.alerts)} more not listed")
        mail.set_content("\n".join(lines) + "\n")
        return mail

    def send(self, message: AlertMessage) -> None:
        mail = self.build(message)
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(mail, from_addr=self.sender, to_addrs=self.recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise UpstreamAuthFailed(f"{where} refused our credentials ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise UpstreamRejected(f"{where} refused all {len(exc.recipients)} recipient(s)") from exc
        except smtplib.SMTPResponseException as exc:
            cls: type[BridgeError] = UpstreamUnavailable if exc.smtp_code < 500 else UpstreamRejected
            raise cls(f"{where} answered {exc.smtp_code}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise UpstreamUnavailable(f"{where} unavailable: {type(exc).__name__}") from exc


def build_alert_sinks(
    names: Iterable[str],
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    email_to: Sequence[str] = (),
    email_from: str | None = None,
    smtp_host: str | None = None,
    smtp_port: int = 25,
    smtp_username: str | None = None,
    smtp_password: str | None = None,
    smtp_starttls: bool = False,
) -> list[AlertSink]:
    """Sinks by name (``CB_ALERT_SINKS``: ``log``, ``webhook``, ``email``) from plain settings.

    Raises
    ------
    ConfigurationError
        For an unknown name or a sink whose required settings are missing.
    """
    sinks: list[AlertSink] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "log":
            sinks.append(LogAlertSink())
        elif name == "webhook":
            if not webhook_url:
                raise ConfigurationError("alert sink 'webhook' needs CB_ALERT_WEBHOOK_URL")
            sinks.append(WebhookAlertSink(webhook_url, webhook_secret))
        elif name == "email":
            missing = [
                env
                for env, value in (
                    ("CB_ALERT_EMAIL_TO", email_to),
                    ("CB_ALERT_EMAIL_FROM", email_from),
                    ("CB_SMTP_HOST", smtp_host),
                )
                if not value
            ]
            if missing:
                raise ConfigurationError(f"alert sink 'email' needs {', '.join(missing)}")
            assert email_from is not None and smtp_host is not None
            sinks.append(
                EmailAlertSink(
                    smtp_host,
                    smtp_port,
                    email_from,
                    list(email_to),
                    smtp_username,
                    smtp_password,
                    smtp_starttls,
                )
            )
        else:
            raise ConfigurationError(f"unknown alert sink {raw!r}; expected log, webhook or email")
    return sinks
