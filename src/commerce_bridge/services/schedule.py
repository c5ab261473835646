"""A job run every ``interval_s`` in a thread of ``serve`` / ``worker``, by one process at a time.

The scheduled jobs (the drift check, the gap check, the stock push) share these rules:

- **one process at a time**: a cycle runs only while this process holds the job's lease (``leader``, a
  :class:`~commerce_bridge.services.polling.Leadership` renewed at each cycle); without a leader (one process
  owns the store) every cycle runs;
- **soon after start, not during the start-up rush**: the first cycle waits ``min(interval_s, first_after_s)``;
- **a failing job never stops the loop**: a :class:`~commerce_bridge.errors.BridgeError` is logged
  (``<name>.failed``, code and message only) and, at the third failure in a row, alerted once
  (``<name>.failing``); any other exception is a bug, logged with its traceback (``<name>.bug``);
- ``stop`` waits for a running cycle up to ``timeout``; a cycle still running keeps its lease until it
  runs out by itself, else the lease is given up so another process takes over at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from commerce_bridge.errors import BridgeError
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.polling import Leadership

log = structlog.get_logger("commerce_bridge.schedule")

FIRST_AFTER_S = 300.0
"""The first cycle of a job whose interval is longer than this runs this many seconds after start."""


class LeaderSchedule:
    """Calls ``job()`` every ``interval_s`` while this process leads; ``checks`` counts the cycles that ran."""

    def __init__(self, name: str, job: Callable[[], Any], *, interval_s: float, what: str,
                 leader: Leadership | None = None, alert: Callable[[Alert], Any] | None = None,
                 first_after_s: float = FIRST_AFTER_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.name, self.what = name, what
        self.job, self.leader, self.interval_s = job, leader, interval_s
        self.first_after_s = first_after_s
        self._alert = alert
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checks = 0
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"cb-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # inside a cycle: its lease runs out by itself
        if self.leader is not None:
            try:
                self.leader.resign()
            except BridgeError as exc:
                log.warning(f"{self.name}.resign_failed", code=exc.code, error=exc.message)

    def run_once(self) -> bool:
        """One cycle: run the job when this process leads; True when it ran."""
        if self.leader is not None and not self.leader.lead():
            return False
        self.job()
        self.checks += 1
        return True

    def _run(self) -> None:
        delay = min(self.interval_s, self.first_after_s)
        while not self._stop.wait(delay):
            delay = self.interval_s
            started = time.monotonic()
            try:
                self.run_once()
                self.failures = 0
            except BridgeError as exc:
                self.failures += 1
                log.warning(f"{self.name}.failed", code=exc.code, error=exc.message, failures=self.failures)
                if self._alert is not None and self.failures == 3:
                    self._alert(Alert(f"{self.name}.failing", f"{self.what} keeps failing: {exc.message}",
                                      Severity.WARNING, {"code": exc.code, "failures": self.failures},
                                      key=f"{self.name}.failing"))
            except Exception as exc:  # a bug: keep the loop alive, say so loudly
                self.failures += 1
                log.exception(f"{self.name}.bug", error=type(exc).__name__)
            log.debug(f"{self.name}.cycle", seconds=round(time.monotonic() - started, 3))
