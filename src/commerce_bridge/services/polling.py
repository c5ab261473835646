"""Polling: sources without webhooks (stock Clarity) are polled, and each change becomes an inbox delivery.

A polled change is stored exactly like a webhook delivery, with an event id derived from the change
(so the same change arriving by poll and by webhook is stored once). The source's cursor is saved by
the gateway only after the batch is stored, so delivery is at least once and the inbox de-duplicates.

Every ``serve`` and ``worker`` process has a poller, but only one of them polls a source at a time:
the one holding the source's lease (:class:`Leadership`, a key lock renewed at a third of its life).
The others stand by and take over when the lease runs out (a crashed leader) or is given back (a
leader that stops). Were two to poll at once (a leader stuck longer than its lease), the inbox still
stores each change once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import BridgeError, UpstreamAuthFailed
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import Inbox, KeyLocks

log = structlog.get_logger("commerce_bridge.polling")

Poll = Callable[[Callable[[list[dict[str, Any]]], Any]], Any]


def poll_lease_s(interval_s: float) -> float:
    """The poller lease for a poll interval: ten intervals, at least 10 s (a crashed leader is replaced
    within about 4/3 of it; a shorter lease would cost a write per standby more often)."""
    return max(10.0, 10 * interval_s)


class Every:
    """A part of a poll cycle that runs less often than the cycle: :meth:`due` is true at most every
    ``interval_s`` (0: never), counted from the last :meth:`done`, so a failed poll is tried again next cycle."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must not be negative")
        self.interval_s = interval_s
        self._clock = clock
        self._next = 0.0

    def due(self) -> bool:
        return self.interval_s > 0 and self._clock() >= self._next

    def done(self) -> None:
        self._next = self._clock() + self.interval_s


class Leadership:
    """Which process polls a source: the holder of the lock ``name``, a lease of ``lease_s`` seconds.

    :meth:`lead` asks the database at most every third of the lease (to renew it, or to try to take
    it over): between asks it answers from memory. Its belief runs from *before* the ask, so it ends
    before the lease it got does. A leader that crashes is replaced within about ``lease_s * 4/3``; one
    that stops calls :meth:`resign`, and a standby takes over at its next ask (a third of the lease).
    """

    def __init__(self, locks: KeyLocks, name: str, holder: str, *, lease_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._locks = locks
        self.name = name
        self.holder = holder
        self.lease_s = lease_s
        self._clock = clock
        self._until = 0.0  # we lead until this (monotonic) time
        self._next_ask = 0.0

    @property
    def leading(self) -> bool:
        return self._clock() < self._until

    def lead(self) -> bool:
        """True when this process should poll now."""
        now = self._clock()
        if now < self._next_ask:
            return now < self._until
        was = now < self._until
        got = self._locks.try_acquire(self.name, self.holder, lease_s=self.lease_s)
        self._next_ask = now + self.lease_s / 3
        self._until = now + self.lease_s if got else 0.0
        if got != was:
            log.info("poll.leader" if got else "poll.standby", lock=self.name, holder=self.holder,
                     lease_s=self.lease_s)
        return got

    def resign(self) -> None:
        """Give the lease back (a standby takes over at its next ask)."""
        if self._until:
            self._until = 0.0
            self._locks.release(self.name, self.holder)


class ChangePoller:
    """Runs ``poll(deliver)`` every ``interval_s`` and stores what it delivers in the inbox.

    With ``leader``, a cycle polls only while this process leads (see :class:`Leadership`).
    """

    def __init__(self, source: str, poll: Poll, inbox: Inbox, *, interval_s: float = 2.0,
                 on_stored: Callable[[int], None] | None = None, alert: Callable[[Alert], Any] | None = None,
                 leader: Leadership | None = None) -> None:
        self.source = source
        self.leader = leader
        self._poll = poll
        self._inbox = inbox
        self._interval_s = interval_s
        self._on_stored = on_stored
        self._alert = alert
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stored = 0
        self.failures = 0

    def poll_once(self) -> int:
        """One poll; returns how many new deliveries were stored."""
        new = 0

        def deliver(events: list[dict[str, Any]]) -> None:
            nonlocal new
            now = datetime.now(UTC)
            batch = [Delivery(self.source, str(e["id"]), e.get("type"), orjson.dumps(e), now) for e in events]
            if batch:
                new += sum(self._inbox.record_batch(batch))

        self._poll(deliver)
        self.stored += new
        if new and self._on_stored:
            self._on_stored(new)
        return new

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"cb-poll-{self.source}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still inside a poll: its lease runs out by itself
        if self.leader is not None:
            try:
                self.leader.resign()
            except BridgeError as exc:  # the database is gone: the lease runs out by itself
                log.warning("poll.resign_failed", source=self.source, code=exc.code, error=exc.message)

    def _run(self) -> None:
        delay = self._interval_s
        while not self._stop.wait(delay):
            try:
                if self.leader is not None and not self.leader.lead():
                    delay = self._interval_s  # another process polls this source
                    continue
                self.poll_once()
                delay = self._interval_s
                self.failures = 0
            except BridgeError as exc:
                self.failures += 1
                # back off while the source is down; the work waits durably at the source
                delay = min(60.0, self._interval_s * 2 ** min(self.failures, 5))
                log.warning("poll.failed", source=self.source, code=exc.code, error=exc.message, retry_in_s=delay)
                if self._alert and (isinstance(exc, UpstreamAuthFailed) or self.failures == 3):
                    self._alert(Alert("poll.failing", f"Polling {self.source} keeps failing: {exc.message}",
                                      Severity.CRITICAL if isinstance(exc, UpstreamAuthFailed) else Severity.WARNING,
                                      {"source": self.source, "code": exc.code}, key=f"poll:{self.source}"))
            except Exception as exc:  # a bug: keep the loop alive, say so loudly
                self.failures += 1
                delay = min(60.0, self._interval_s * 2 ** min(self.failures, 5))
                log.exception("poll.bug", source=self.source, error=type(exc).__name__)
