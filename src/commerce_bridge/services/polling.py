"""Polling: sources without webhooks (stock Clarity) are polled, and each change becomes an inbox delivery.

A polled change is stored exactly like a webhook delivery, with an event id derived from the change
(so the same change arriving by poll and by webhook is stored once). The source's cursor is saved by
the gateway only after the batch is stored, so delivery is at least once and the inbox de-duplicates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import BridgeError, UpstreamAuthFailed
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import Inbox

log = structlog.get_logger("commerce_bridge.polling")

Poll = Callable[[Callable[[list[dict[str, Any]]], Any]], Any]


class ChangePoller:
    """Runs ``poll(deliver)`` every ``interval_s`` and stores what it delivers in the inbox."""

    def __init__(self, source: str, poll: Poll, inbox: Inbox, *, interval_s: float = 2.0,
                 on_stored: Callable[[int], None] | None = None, alert: Callable[[Alert], Any] | None = None) -> None:
        self.source = source
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

    def _run(self) -> None:
        delay = self._interval_s
        while not self._stop.wait(delay):
            try:
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
