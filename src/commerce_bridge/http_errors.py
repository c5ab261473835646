"""What the HTTP connectors (Clarity, ERPNext, outbound webhooks, alert webhooks) share about failures.

A transport failure (timeout, refused or reset connection) is always ``UpstreamUnavailable``, raised
``from`` the httpx exception; ``Retry-After`` is read the same way everywhere (seconds or an HTTP date).
Each connector keeps its own table for the answers it gets (status codes, error bodies).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from commerce_bridge.errors import UpstreamUnavailable

__all__ = ["retry_after_s", "transport_errors"]


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value: delay-seconds or an HTTP date; None if absent or unreadable.

    >>> retry_after_s("2.5")
    2.5
    >>> retry_after_s("Wed, 21 Oct 2026 07:28:05 GMT", now=datetime(2026, 10, 21, 7, 28, tzinfo=UTC))
    5.0
    >>> retry_after_s("soon") is None
    True
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@contextmanager
def transport_errors(system: str) -> Iterator[None]:
    """Timeouts and connection failures of calls to ``system`` become UpstreamUnavailable (``from`` the cause)."""
    prefix = f"{system} " if system else ""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(f"{prefix}timed out: {exc}") from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(f"{prefix}connection failed: {type(exc).__name__}: {exc}") from exc
