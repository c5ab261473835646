"""The mail catcher through real clients: smtplib in, httpx out."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx
import peer_fixtures

from commerce_bridge.sandbox.mailbox.server import Mailbox

mailbox = peer_fixtures.mailbox


def _send(box: Mailbox, to: str, subject: str, text: str, html: str | None = None) -> None:
    message = EmailMessage()
    message["From"] = "bridge@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP(box.host, box.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


def test_sent_messages_are_listed_and_readable_over_http(mailbox: Mailbox) -> None:
    _send(
        mailbox, "ann@example.com", "Your order WEB-1 has shipped", "Tracking 1Z999", "<p>Tracking 1Z999</p>"
    )
    _send(mailbox, "ops@example.com", "ALERT: Clarity down", "Circuit open")
    with httpx.Client(base_url=mailbox.url) as client:
        listing = client.get("/messages").json()
        assert listing["count"] == 2
        first = listing["messages"][0]
        assert first["subject"] == "Your order WEB-1 has shipped" and first["rcpt_tos"] == ["ann@example.com"]
        full = client.get(f"/messages/{first['id']}").json()
        assert full["text"].strip() == "Tracking 1Z999" and "<p>Tracking 1Z999</p>" in full["html"]
        assert "Subject: Your order WEB-1 has shipped" in full["raw"]
        alerts = client.get("/messages", params={"to": "ops@", "subject": "alert"}).json()
        assert [m["subject"] for m in alerts["messages"]] == ["ALERT: Clarity down"]
        assert client.get("/messages/999").status_code == 404
        assert client.delete("/messages").json() == {"deleted": 2}
        assert client.get("/messages").json()["count"] == 0


def test_messages_survive_a_restart_with_a_state_file(tmp_path: Path) -> None:
    state = str(tmp_path / "mail.sqlite")
    with Mailbox(smtp_port=0, http_port=0, state_file=state) as box:
        _send(box, "ann@example.com", "Receipt", "Thanks")
    with Mailbox(smtp_port=0, http_port=0, state_file=state) as box, httpx.Client(base_url=box.url) as client:
        assert [m["subject"] for m in client.get("/messages").json()["messages"]] == ["Receipt"]


def test_smtp_auth_is_accepted_with_any_credentials(mailbox: Mailbox) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "alerts@example.com", "ops@example.com", "auth"
    message.set_content("hi")
    with smtplib.SMTP(mailbox.host, mailbox.smtp_port, timeout=10) as smtp:
        smtp.login("alerts", "any-password")
        smtp.send_message(message)
    with httpx.Client(base_url=mailbox.url) as client:
        first = client.get("/messages").json()["messages"][0]
        assert client.get(f"/messages/{first['id']}").json()["auth_user"] == "alerts"
