"""Server time for the Clarity simulator: UTC internally, rendered as CEF does (local wall time)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SimClock:
    """Strictly increasing microsecond timestamps and CEF-style date strings.

    CEF serialises dates as ISO-8601 in the server's local time without an offset unless
    ``Clarity.API.UseUTC`` is set; ``zone`` is that server zone (``"UTC"`` behaves like UseUTC).
    """

    def __init__(self, zone: str = "UTC") -> None:
        self.zone = ZoneInfo(zone)
        self._last = 0
        self._lock = threading.Lock()

    def now_us(self) -> int:
        """Microseconds since the epoch (UTC), never equal to a previous value."""
        with self._lock:
            now = time.time_ns() // 1000
            self._last = max(now, self._last + 1)
            return self._last

    def render(self, us: int | None) -> str | None:
        """``2026-11-27T05:31:11.123456`` in the server zone, no offset (as CEF sends it)."""
        if us is None:
            return None
        local = (_EPOCH + timedelta(microseconds=us)).astimezone(self.zone)
        return local.replace(tzinfo=None).isoformat(timespec="microseconds")

    def parse(self, text: str) -> int:
        """Parse an ISO-8601 date; a value without an offset is read as server-local time.

        Raises ``ValueError`` for text that is not a date.
        """
        value = text.strip()
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        delta = parsed.astimezone(UTC) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
