"""Webhook signature verification: Stripe's ``v1`` scheme, which our own ``X-Bridge-Signature`` reuses.

Header: ``t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` (other schemes such as Stripe's test ``v0`` are
ignored). The signature is HMAC-SHA256, keyed with the endpoint secret, over ``b"<t>." + raw body``.
It is checked on the raw bytes before any parsing, against every configured secret (rotation), in
constant time, and the timestamp must be within ``tolerance_s`` of now in either direction.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from commerce_bridge.errors import SignatureInvalid


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """One source's verification rules."""

    header: str  # lower-case HTTP header name, e.g. "stripe-signature"
    secrets: tuple[bytes, ...]
    tolerance_s: int = 300


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """The header value for ``body`` signed with ``secret`` at ``timestamp`` (for senders and tests)."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse_header(value: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a signature header; raises SignatureInvalid if malformed."""
    timestamp: int | None = None
    v1: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not (val.isascii() and val.isdigit()) or len(val) > 12:
                raise SignatureInvalid("Signature header has a malformed timestamp")
            timestamp = int(val)
        elif key == "v1":
            v1.append(val)
    if timestamp is None:
        raise SignatureInvalid("Signature header has no timestamp (t=)")
    if not v1:
        raise SignatureInvalid("No signatures found with expected scheme v1")
    return timestamp, v1


def verify(body: bytes, header_value: str | None, scheme: SignatureScheme, now: Callable[[], float]) -> int:
    """Verify ``body`` against the signature header; return its timestamp or raise SignatureInvalid."""
    if not header_value:
        raise SignatureInvalid(f"Missing {scheme.header} header")
    timestamp, signatures = parse_header(header_value)
    age = now() - timestamp
    if age > scheme.tolerance_s:
        raise SignatureInvalid(f"Timestamp outside the tolerance zone ({int(age)} s old, limit {scheme.tolerance_s} s)")
    if -age > scheme.tolerance_s:
        raise SignatureInvalid(f"Timestamp is {int(-age)} s in the future (limit {scheme.tolerance_s} s)")
    if not _any_match(body, timestamp, signatures, scheme.secrets):
        raise SignatureInvalid("No signature matches the payload for any configured secret")
    return timestamp


def _any_match(body: bytes, timestamp: int, signatures: Sequence[str], secrets: Sequence[bytes]) -> bool:
    signed = b"%d." % timestamp + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
        for candidate in signatures:
            # compare_digest on ASCII str is constant-time; non-ASCII input simply fails.
            try:
                matched |= hmac.compare_digest(expected, candidate)
            except TypeError:
                continue
    return matched
