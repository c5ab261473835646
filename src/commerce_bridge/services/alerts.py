"""Alerts: the ``Alert`` record, the ``AlertSink`` port and the rate-limited ``Alerter`` that fans out.

A storm must not become a storm of messages. Alerts are grouped by ``Alert.group`` (the ``key``
when set, else the ``kind``). In each group:

* a window of ``window_s`` seconds opens with the first alert, which goes out at once;
* up to ``max_per_window`` alerts in a window go out at once; later ones are held;
* when the window has ended (checked by :meth:`Alerter.tick`, which the caller runs periodically,
  and by the next :meth:`Alerter.alert` of the group), the held alerts go out as ONE summary
  message ("37 more dlq.new alerts in the last 60 s: ..."); that summary opens the next window,
  so a storm that goes on yields one summary per window. A window that ends with nothing held
  just closes, and the next alert goes out at once again;
* :meth:`Alerter.flush` sends every held summary now (at shutdown).

Every message goes to every sink; a sink that raises is logged and skipped, the others still
get the message. There are no threads inside: sinks are called synchronously from ``alert``,
``tick`` and ``flush`` (from async code, run those through ``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog

from commerce_bridge.logsetup import Redactor
from commerce_bridge.services.clock import Clock

__all__ = ["Alert", "AlertMessage", "AlertSink", "Alerter", "Severity"]

log = structlog.get_logger(__name__)


class Severity(StrEnum):
    """How urgent an alert is (ordered)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator should know about.

    Parameters
    ----------
    kind:
        Stable dotted name: ``dlq.new``, ``breaker.open``, ``breaker.closed``, ``backlog.growing``...
    title:
        One line for humans.
    severity:
        ``info``, ``warning`` or ``critical``.
    details:
        JSON-able facts (run id, destination, error code...).
    key:
        Rate-limit group; empty means the ``kind`` (e.g. ``breaker.open:clarity`` to limit per
        destination instead of per kind).
    at:
        When it happened; the ``Alerter`` fills it from its clock when left ``None``.
    """

    kind: str
    title: str
    severity: Severity = Severity.WARNING
    details: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    at: datetime | None = None

    @property
    def group(self) -> str:
        """The rate-limit group."""
        return self.key or self.kind

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind,
            "key": self.group,
            "severity": str(self.severity),
            "title": self.title,
            "details": dict(self.details),
            "at": self.at.isoformat() if self.at else None,
        }


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One message to the sinks: a single alert, or a summary of the alerts held in a window."""

    kind: str
    key: str
    severity: Severity
    summary: str
    alerts: tuple[Alert, ...]
    count: int
    is_summary: bool
    sent_at: datetime
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the webhook body)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "severity": str(self.severity),
            "summary": self.summary,
            "count": self.count,
            "is_summary": self.is_summary,
            "sent_at": self.sent_at.isoformat(),
            "window_s": self.window_s,
            "alerts": [a.to_dict() for a in self.alerts],
        }


class AlertSink(Protocol):
    """Delivers alert messages somewhere (log, webhook, e-mail...). May raise; the Alerter copes."""

    def send(self, message: AlertMessage) -> None:
        """Deliver one message."""
        ...


@dataclass(slots=True)
class _Window:
    started: float
    sent: int
    held: list[Alert] = field(default_factory=list)
    held_count: int = 0
    held_severity: Severity = Severity.INFO


class Alerter:
    """Fans alerts out to every sink, with at most ``max_per_window`` immediate messages per group.

    Parameters
    ----------
    sinks:
        Where messages go.
    clock:
        Time source.
    window_s:
        Length of a rate-limit window (``CB_ALERT_WINDOW_S``).
    max_per_window:
        Alerts per group and window sent at once before the rest are held for the summary.
    max_held:
        Alerts kept as samples in a summary (all are counted).
    redact:
        Applied to every alert's title and details before they leave (default: a ``Redactor``
        with the default rules; pass the one ``configure_logging`` returned to add PII keys).
    """

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        clock: Clock,
        window_s: float = 60.0,
        max_per_window: int = 1,
        *,
        max_held: int = 100,
        redact: Callable[[Any], Any] | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if max_per_window < 1:
            raise ValueError(f"max_per_window must be at least 1, got {max_per_window}")
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, got {max_held}")
        self.sinks = list(sinks)
        self.window_s = float(window_s)
        self.max_per_window = max_per_window
        self.max_held = max_held
        self._clock = clock
        self._redact = redact or Redactor().redact
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def alert(self, alert: Alert) -> bool:
        """Raise an alert. Returns ``True`` if it went out at once, ``False`` if it was held."""
        alert = replace(
            alert,
            title=str(self._redact(alert.title)),
            details=self._redact(dict(alert.details)),
            at=alert.at or self._clock.now(),
        )
        out: list[AlertMessage] = []
        with self._lock:
            now = self._clock.monotonic()
            window = self._windows.get(alert.group)
            if window is not None and now - window.started >= self.window_s:
                window = self._close(alert.group, window, now, out)
            if window is None:
                window = self._windows[alert.group] = _Window(started=now, sent=0)
            immediate = window.sent < self.max_per_window
            if immediate:
                window.sent += 1
                out.append(self._single(alert))
            else:
                window.held_count += 1
                severity = Severity(alert.severity)
                if _RANK[severity] > _RANK[window.held_severity]:
                    window.held_severity = severity
                if len(window.held) < self.max_held:
                    window.held.append(alert)
        self._fan_out(out)
        return immediate

    def tick(self) -> int:
        """Close every window that has ended; send their summaries. Returns messages sent."""
        out: list[AlertMessage] = []
        with self._lock:
            now = self._clock.monotonic()
            for group, window in list(self._windows.items()):
                if now - window.started >= self.window_s:
                    self._close(group, window, now, out)
        self._fan_out(out)
        return len(out)

    def flush(self) -> int:
        """Send every held summary now, whether or not its window has ended. Returns messages sent."""
        out: list[AlertMessage] = []
        with self._lock:
            now = self._clock.monotonic()
            for group, window in list(self._windows.items()):
                self._close(group, window, now, out)
        self._fan_out(out)
        return len(out)

    def pending(self) -> dict[str, int]:
        """Held alert counts by group."""
        with self._lock:
            return {g: w.held_count for g, w in self._windows.items() if w.held_count}

    # -- internals ----------------------------------------------------------------------------------

    def _close(self, group: str, window: _Window, now: float, out: list[AlertMessage]) -> _Window | None:
        """End ``window``; if it held alerts, queue their summary, which opens the next window."""
        if not window.held_count:
            del self._windows[group]
            return None
        out.append(self._summary(window))
        nxt = self._windows[group] = _Window(started=now, sent=1)
        return nxt

    def _single(self, alert: Alert) -> AlertMessage:
        return AlertMessage(
            kind=alert.kind,
            key=alert.group,
            severity=Severity(alert.severity),
            summary=alert.title,
            alerts=(alert,),
            count=1,
            is_summary=False,
            sent_at=self._clock.now(),
            window_s=self.window_s,
        )

    def _summary(self, window: _Window) -> AlertMessage:
        held = window.held
        n = window.held_count
        kind = held[0].kind
        titles: list[str] = []
        for a in held:
            if a.title not in titles:
                titles.append(a.title)
        shown = "; ".join(titles[:5]) + ("; ..." if len(titles) > 5 or n > len(held) else "")
        plural = "" if n == 1 else "s"
        return AlertMessage(
            kind=kind,
            key=held[0].group,
            severity=window.held_severity,
            summary=f"{n} more {kind} alert{plural} in the last {self.window_s:g} s: {shown}",
            alerts=tuple(held),
            count=n,
            is_summary=True,
            sent_at=self._clock.now(),
            window_s=self.window_s,
        )

    def _fan_out(self, messages: list[AlertMessage]) -> None:
        for message in messages:
            for sink in self.sinks:
                try:
                    sink.send(message)
                except Exception as exc:
                    log.error(
                        "alert.sink_failed",
                        sink=type(sink).__name__,
                        kind=message.kind,
                        is_summary=message.is_summary,
                        error_type=type(exc).__name__,
                        error=str(self._redact(str(exc))),
                    )
