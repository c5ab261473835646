"""Per-destination call limits shared by every worker, enforced where each call is made."""

from __future__ import annotations

import time
from collections.abc import Mapping

from commerce_bridge.metrics import Metrics
from commerce_bridge.services.ports import RateLimiter


class CallLimiter:
    """Waits for a call's slot in its destination's shared limit (see ``SqlRateLimiter``).

    A caller that wakes late (a busy machine) would bunch up with the callers after it, so a wake-up
    later than ``0.4 * margin`` seconds gives the slot back and reserves a new one: every call then
    happens within that lateness of its slot, and ``R + 1`` calls always span more than a second.
    """

    def __init__(self, limiter: RateLimiter, rates: Mapping[str, float], margin: float, metrics: Metrics) -> None:
        self._limiter = limiter
        self._rates = dict(rates)
        self._margin = margin
        self._metrics = metrics

    def wait(self, destination: str) -> None:
        rate = self._rates.get(destination)
        if not rate:
            return
        interval = (1.0 + self._margin) / rate
        max_late = max(0.002, 0.4 * self._margin)
        started = time.monotonic()
        for _ in range(10):
            wait = self._limiter.reserve(destination, interval)
            due = time.monotonic() + wait
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() - due <= max_late:
                break
        self._metrics.limiter_wait.labels(destination).observe(time.monotonic() - started)

    def hook(self, destination: str) -> CallHook:
        """A no-argument callable for connectors: call it before each request to ``destination``."""
        return CallHook(self, destination)


class CallHook:
    def __init__(self, limiter: CallLimiter, destination: str) -> None:
        self._limiter = limiter
        self._destination = destination

    def __call__(self) -> None:
        self._limiter.wait(self._destination)
