"""Customer and operator e-mail over SMTP (the ``Mailer`` port), with SMTP errors in our error tree."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from commerce_bridge.errors import UpstreamAuthFailed, UpstreamUnavailable, ValidationError


class SmtpMailer:
    """Sends one message per call through an SMTP server."""

    def __init__(self, host: str, port: int, sender: str, *, username: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout_s: float = 10.0) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout_s

    def send(self, *, to: str, subject: str, body: str, message_id: str) -> None:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id  # derived from the step's idempotency key: a repeat is recognisable
        msg.set_content(body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls()
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise UpstreamAuthFailed(f"SMTP login refused: {exc.smtp_code}",
                                     suggested_fix="check CB_SMTP_USERNAME / CB_SMTP_PASSWORD") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise ValidationError(f"the mail server refused the recipient {to}",
                                  suggested_fix="correct the e-mail address, then replay") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise UpstreamUnavailable(f"SMTP temporary failure {exc.smtp_code}") from exc
            raise ValidationError(f"SMTP refused the message: {exc.smtp_code}") from exc
        except (OSError, smtplib.SMTPException) as exc:  # includes timeouts
            raise UpstreamUnavailable(f"SMTP server {self._host}:{self._port} unreachable: "
                                      f"{type(exc).__name__}") from exc
