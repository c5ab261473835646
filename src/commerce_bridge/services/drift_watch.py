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
- It runs as a :class:`~commerce_bridge.services.schedule.LeaderSchedule`: a check that fails (a system cannot be
  read) is logged, retried at the next interval, and alerted after three failures in a row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.drift import Difference, DriftFinder, DriftReport

__all__ = ["DRIFT_LOCK", "DriftWatch", "ReportedDrift"]

log = structlog.get_logger("commerce_bridge.drift")

DRIFT_LOCK = "drift:check"
"""The key lock whose holder runs the scheduled check."""
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
