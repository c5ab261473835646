"""The scheduled drift check: every ``CB_DRIFT_INTERVAL_S``, one process searches the last ``CB_DRIFT_WINDOW_DAYS``
for differences (``services.drift``) and raises one alert when new ones appear.

Rules:

- **One process at a time**: the holder of the key lock ``drift:check`` (:class:`~commerce_bridge.services.polling.
  Leadership`, as the Clarity poller), renewed every cycle; a standby takes over when the holder stops or dies.
- **Each difference is alerted once**: the store remembers the differences reported (by
  :attr:`~commerce_bridge.services.drift.Difference.key`) and when each was last seen; one still there is not
  alerted again, one gone for a whole window is forgotten (so if it comes back it is news again).
- Records younger than ``CB_DRIFT_SETTLE_S`` are left for the next check: the bridge may still be booking them.
- **The alert carries ids and amounts only** (kind, the record ids, minor units and currency): never names,
  e-mails or addresses.
- A check that fails (a system cannot be read) is logged, retried at the next interval, and alerted after three
  failures in a row.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from commerce_bridge.errors import BridgeError
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.drift import Difference, DriftFinder, DriftReport
from commerce_bridge.services.polling import Leadership

__all__ = ["DRIFT_LOCK", "DriftSchedule", "DriftWatch", "ReportedDrift"]

log = structlog.get_logger("commerce_bridge.drift")

DRIFT_LOCK = "drift:check"
"""The key lock whose holder runs the scheduled check."""
FIRST_CHECK_AFTER_S = 300.0
"""The first check runs this long after start (or after one interval, when shorter), then every interval."""
ALERT_LISTED = 20
"""At most this many new differences are listed in the alert (all are counted)."""


class ReportedDrift(Protocol):
    """Durable memory of the differences already alerted (``store.drift.SqlReportedDrift``)."""

    def first_seen(self, kinds: Mapping[str, str], *, now: datetime) -> set[str]:
        """Mark the differences ``kinds`` names (key -> kind) seen at ``now``; return the keys never recorded
        before."""
        ...

    def forget_before(self, cutoff: datetime) -> int:
        """Forget the differences last seen before ``cutoff``; returns how many."""
        ...


class DriftWatch:
    """One check: search the window, keep the new differences, alert once about them."""

    def __init__(self, finder: DriftFinder, seen: ReportedDrift, *, window: timedelta, settle: timedelta,
                 alert: Callable[[Alert], Any], on_report: Callable[[DriftReport, list[Difference]], Any] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.finder, self.seen = finder, seen
        self.window, self.settle = window, settle
        self._alert, self._on_report, self._clock = alert, on_report, clock

    def check_once(self) -> tuple[DriftReport, list[Difference]]:
        """Search, remember, alert; returns the report and the differences that were new."""
        now = self._clock()
        report = self.finder.find(now - self.window, now - self.settle)
        fresh = self.seen.first_seen({d.key: d.kind for d in report.differences}, now=now)
        new = [d for d in report.differences if d.key in fresh]
        self.seen.forget_before(now - self.window)
        if new:
            self._alert(drift_alert(report, new))
        log.info("drift.checked", differences=len(report.differences), new=len(new), scanned=report.scanned)
        if self._on_report is not None:
            self._on_report(report, new)
        return report, new


def drift_alert(report: DriftReport, new: Sequence[Difference]) -> Alert:
    """The alert about new differences: counts by kind and the first ones' ids and amounts (no personal data)."""
    by_kind = Counter(d.kind for d in new)
    listed = [{"kind": d.kind, "ref": d.ref, "ids": dict(d.ids),
               "amount_minor": d.amount.minor if d.amount else None,
               "currency": d.amount.currency if d.amount else None} for d in new[:ALERT_LISTED]]
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    return Alert("drift.found", f"{len(new)} new difference(s) between Stripe, Clarity and ERPNext: {kinds}",
                 Severity.WARNING, {"new": len(new), "open": len(report.differences), "by_kind": dict(by_kind),
                                    "since": report.since.isoformat(), "until": report.until.isoformat(),
                                    "differences": listed, "fix": "commerce-bridge reconcile drift --since DATE"},
                 key="drift.found")


class DriftSchedule:
    """Runs ``watch.check_once()`` every ``interval_s`` in a thread, while this process leads (``leader``)."""

    def __init__(self, watch: DriftWatch, *, interval_s: float, leader: Leadership | None = None,
                 alert: Callable[[Alert], Any] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.watch, self.leader = watch, leader
        self.interval_s = interval_s
        self._alert = alert
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checks = 0
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cb-drift", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # inside a check: its lease runs out by itself
        if self.leader is not None:
            try:
                self.leader.resign()
            except BridgeError as exc:
                log.warning("drift.resign_failed", code=exc.code, error=exc.message)

    def run_once(self) -> bool:
        """One cycle: check when this process leads; True when it checked."""
        if self.leader is not None and not self.leader.lead():
            return False
        self.watch.check_once()
        self.checks += 1
        return True

    def _run(self) -> None:
        delay = min(self.interval_s, FIRST_CHECK_AFTER_S)  # soon after start (not during a start-up rush)
        while not self._stop.wait(delay):
            delay = self.interval_s
            started = time.monotonic()
            try:
                self.run_once()
                self.failures = 0
            except BridgeError as exc:
                self.failures += 1
                log.warning("drift.failed", code=exc.code, error=exc.message, failures=self.failures)
                if self._alert is not None and self.failures == 3:
                    self._alert(Alert("drift.failing", f"The drift check keeps failing: {exc.message}",
                                      Severity.WARNING, {"code": exc.code, "failures": self.failures},
                                      key="drift.failing"))
            except Exception as exc:  # a bug: keep the loop alive, say so loudly
                self.failures += 1
                log.exception("drift.bug", error=type(exc).__name__)
            log.debug("drift.cycle", seconds=round(time.monotonic() - started, 3))
