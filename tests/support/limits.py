"""Helpers for the call-limiter tests: a recording wrapper at the limiter port and exact check times."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from commerce_bridge.services.ports import RateLimiter


class Recording:
    """Wraps a ``RateLimiter`` (this process's slots) and keeps every window it hands out, per thread."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.windows: list[tuple[float, float]] = []
        self._mine = threading.local()
        self._lock = threading.Lock()

    def take(self, destination: str, interval_s: float, tolerance_s: float) -> tuple[float, float]:
        window = self.inner.take(destination, interval_s, tolerance_s)
        self._mine.last = window
        with self._lock:
            self.windows.append(window)
        return window

    def last_window(self) -> tuple[float, float]:
        """The window this thread was handed last."""
        return self._mine.last  # type: ignore[no-any-return]


@dataclass
class CheckClock:
    """``time.monotonic`` that remembers, per thread, the last time it told: after ``CallLimiter.wait``
    returns, that is exactly the moment its check passed (the call is made then, as far as the limiter goes)."""

    _last: threading.local = field(default_factory=threading.local)

    def __call__(self) -> float:
        self._last.t = time.monotonic()
        return self._last.t  # type: ignore[no-any-return]

    def last(self) -> float:
        return self._last.t  # type: ignore[no-any-return]


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most stamps in any half-open ``window``-second interval."""
    ordered = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
