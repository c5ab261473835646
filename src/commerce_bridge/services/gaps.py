"""The gap check: events the bridge should have received and did not, found and fed in (issue 14, point 6).

Rules:

- **Stripe**: the events created in the window (at most the last 30 days: Stripe keeps events that long) of the
  types the enabled workflows subscribe to are listed (``GET /v1/events``, every page); each id the inbox does
  not hold is a gap. The inbox is the truth, not Stripe's ``delivery_success``: an endpoint not subscribed to a
  type, or deleted and re-created, is never even tried by Stripe.
- **Clarity**: orders and sales returns changed in the window (``ModifiedSince`` search, Lite projection with
  ``UpdatedDate``, every page) whose change the poll cursor has passed *and* its overlap no longer re-reads,
  but whose poll event id (a hash of ``ID`` and ``UpdatedDate``) the inbox does not hold, are gaps: a missed
  poll window (a late commit, a cursor moved by hand or restored). Changes ahead of the cursor are the
  poller's. The ``...Digest`` routes are not used: their ``Hash`` is whatever an integrator stored, CEF does
  not change it when an order changes.
- Nothing younger than ``settle`` counts: it may still be on its way (a webhook being retried, a poll cycle).
- **Nothing from before the bridge's first delivery** (the inbox's first row) counts unless asked for
  (``commerce-bridge gaps --since``): a bridge installed on an account with history must not replay it.
- **A gap is fed in exactly as it would have arrived**: an inbox row with the same source, event id, type and
  body (Stripe's event object; the poller's change event), then the dispatcher is woken. The inbox is unique
  by ``(source, event_id)``, so the webhook arriving later, a poll, or two checks at once store nothing twice.
  The inbox has no column for how a row arrived: a fill is logged (``gaps.filled``) and counted instead.
- **Logs and alerts carry ids and types only**, never names, e-mails or addresses. One alert per check that
  found gaps (``gaps.found``).
- Scheduled, :class:`GapWatch` runs as a :class:`~commerce_bridge.services.schedule.LeaderSchedule` named
  ``gaps``: one process at a time (the holder of the key lock ``gaps:check``), a check that fails is logged
  (``gaps.failed``), tried again at the next interval and alerted (``gaps.failing``) after three in a row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
import structlog

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import BridgeError
from commerce_bridge.services.alerts import Alert, Severity

__all__ = ["FIRST_CHECK_AFTER_S", "GAP_LOCK", "MAX_WINDOW", "Gap", "GapFinder", "GapReport", "GapWatch",
           "gaps_alert"]

log = structlog.get_logger("commerce_bridge.gaps")

JsonDict = dict[str, Any]
GAP_LOCK = "gaps:check"
"""The key lock whose holder runs the scheduled check."""
MAX_WINDOW = timedelta(days=30)
"""Stripe lists the events of the last 30 days only."""
ALERT_LISTED = 20
"""At most this many gaps are listed in the alert (all are counted)."""
FIRST_CHECK_AFTER_S = 60.0
"""The first scheduled check runs this long after start (or after one interval, when shorter): soon, because a
restart after an outage is when webhooks went missing."""
CLARITY_KINDS = {"orders": "salesorder.", "returns": "salesreturn."}


class StripeEvents(Protocol):
    """What the check reads of Stripe (``connectors.stripe.gateway.StripeSdkGateway``)."""

    def list_events(self, *, created_gte: int, created_lte: int | None = None, types: Sequence[str] = (),
                    page_size: int = 100) -> Iterator[list[JsonDict]]: ...


class ClarityChanges(Protocol):
    """What the check reads of Clarity (``connectors.clarity.gateway.HttpClarityGateway``)."""

    def orders_changed(self, since: datetime, *, until: datetime | None = None,
                       page_size: int = 100) -> Iterator[list[JsonDict]]: ...

    def returns_changed(self, since: datetime, *, until: datetime | None = None,
                        page_size: int = 100) -> Iterator[list[JsonDict]]: ...

    def polled_through(self, kind: str) -> datetime | None: ...

    def change_event_of(self, kind: str, row: Mapping[str, Any]) -> JsonDict: ...

    def changed_at(self, row: Mapping[str, Any]) -> datetime: ...


class GapInbox(Protocol):
    """The inbox as the check uses it (``store.inbox.SqlInbox``)."""

    def stored_ids(self, source: str, event_ids: Iterable[str]) -> set[str]: ...

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]: ...

    def first_received_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Gap:
    """One event the inbox lacks: its source, id, type, the object it is about, when it happened, its body."""

    source: str
    event_id: str
    event_type: str
    ref: str
    happened_at: datetime
    body: bytes = field(repr=False)

    def to_dict(self) -> JsonDict:
        return {"source": self.source, "event_id": self.event_id, "type": self.event_type, "ref": self.ref,
                "happened_at": self.happened_at.isoformat()}


@dataclass
class GapReport:
    """What one check read and found; ``fed`` and ``arrived`` are filled by :meth:`GapFinder.feed`."""

    since: datetime
    until: datetime
    gaps: list[Gap] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)  # "stripe events", "clarity orders"... -> rows read
    skipped: list[str] = field(default_factory=list)  # what was not compared, and why
    fed: list[Gap] = field(default_factory=list)
    arrived: list[Gap] = field(default_factory=list)  # stored by the webhook or a poll between find and feed

    def by_source_type(self) -> dict[tuple[str, str], int]:
        return dict(Counter((g.source, g.event_type) for g in self.gaps))

    def to_dict(self) -> JsonDict:
        fed = {g.event_id for g in self.fed}
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "scanned": self.scanned,
                "skipped": self.skipped, "found": len(self.gaps), "fed": len(self.fed),
                "arrived_meanwhile": len(self.arrived),
                "by_type": [{"source": s, "type": t, "count": n} for (s, t), n in sorted(self.by_source_type().items())],
                "gaps": [{**g.to_dict(), "fed": g.event_id in fed} for g in self.gaps]}


Progress = Callable[[str, int], None]
"""``progress(what, rows read so far)``: e.g. ``("stripe events", 300)``."""


class GapFinder:
    """Finds the gaps of a window (:meth:`find`) and feeds them in (:meth:`feed`).

    Parameters
    ----------
    stripe, clarity:
        The configured gateways (None: that source is not compared, and the report says so).
    inbox:
        The inbox: which ids it holds, and where gaps are stored.
    stripe_types:
        The event types the enabled workflows subscribe to for Stripe (patterns: exact, ``prefix*``, ``*``).
    wants:
        ``wants(source, event_type)``: an enabled workflow starts on it (by trigger).
    on_fed:
        Called with the number of new rows after feeding (wakes the dispatchers).
    """

    def __init__(self, inbox: GapInbox, *, stripe: StripeEvents | None, clarity: ClarityChanges | None,
                 stripe_types: Callable[[], Sequence[str]], wants: Callable[[str, str], bool],
                 on_fed: Callable[[int], Any] | None = None, page_size: int = 100) -> None:
        self.inbox, self.stripe, self.clarity = inbox, stripe, clarity
        self._stripe_types, self._wants, self.on_fed = stripe_types, wants, on_fed
        self.page_size = page_size

    def find(self, since: datetime, until: datetime, *, progress: Progress | None = None,
             before_first_delivery: bool = False) -> GapReport:
        """The gaps of ``[since, until]``: ``since`` no earlier than 30 days back, nor (unless
        ``before_first_delivery``) than the inbox's first delivery. Raises BridgeError when a system or the
        inbox cannot be read."""
        since = max(since, until - MAX_WINDOW)
        if not before_first_delivery:
            first = self.inbox.first_received_at()
            if first is None:
                report = GapReport(since=since, until=until)
                report.skipped.append("the inbox is empty: nothing was ever received to miss anything after")
                return report
            since = max(since, first)
        report = GapReport(since=since, until=until)
        reading = "stripe"
        try:
            if self.stripe is None:
                report.skipped.append("stripe: not configured (CB_STRIPE_API_KEY)")
            else:
                self._stripe(report, progress)
            reading = "clarity"
            if self.clarity is None:
                report.skipped.append("clarity: not configured (CB_CLARITY_BASE_URL)")
            else:
                for kind in CLARITY_KINDS:
                    self._clarity(kind, report, progress)
        except BridgeError as exc:
            exc.details.setdefault("reading", reading)  # which system (or the inbox: store_unavailable) failed
            raise
        return report

    def _stripe(self, report: GapReport, progress: Progress | None) -> None:
        assert self.stripe is not None
        types = list(self._stripe_types())
        if not types:
            report.skipped.append("stripe: no enabled workflow starts on a Stripe event")
            return
        seen: set[str] = set()
        read = 0
        for page in self.stripe.list_events(created_gte=int(report.since.timestamp()),
                                            created_lte=int(report.until.timestamp()), types=types,
                                            page_size=self.page_size):
            read += len(page)
            fresh = {str(e["id"]): e for e in page if str(e["id"]) not in seen}
            seen.update(fresh)
            stored = self.inbox.stored_ids("stripe", fresh)
            for event_id, event in fresh.items():
                if event_id not in stored:
                    obj = (event.get("data") or {}).get("object") or {}
                    report.gaps.append(Gap("stripe", event_id, str(event.get("type") or ""), str(obj.get("id") or ""),
                                           datetime.fromtimestamp(int(event.get("created") or 0), UTC),
                                           orjson.dumps(event)))
            if progress is not None:
                progress("stripe events", read)
        report.scanned["stripe events"] = read

    def _clarity(self, kind: str, report: GapReport, progress: Progress | None) -> None:
        assert self.clarity is not None
        prefix = CLARITY_KINDS[kind]
        if not (self._wants("clarity", prefix + "created") or self._wants("clarity", prefix + "updated")):
            report.skipped.append(f"clarity {kind}: no enabled workflow starts on {prefix}*")
            return
        passed = self.clarity.polled_through(kind)
        if passed is None:
            report.skipped.append(f"clarity {kind}: no poll cursor yet (every change is still ahead of the poller)")
            return
        listing = self.clarity.orders_changed if kind == "orders" else self.clarity.returns_changed
        read = 0
        for page in listing(report.since, until=min(report.until, passed), page_size=self.page_size):
            read += len(page)
            events = {}
            for row in page:
                event = self.clarity.change_event_of(kind, row)
                if self._wants("clarity", str(event["type"])):
                    events[str(event["id"])] = (event, row)
            stored = self.inbox.stored_ids("clarity", events)
            for event_id, (event, row) in events.items():
                if event_id not in stored:
                    report.gaps.append(Gap("clarity", event_id, str(event["type"]), str(row.get("ID") or ""),
                                           self.clarity.changed_at(row), orjson.dumps(event)))
            if progress is not None:
                progress(f"clarity {kind}", read)
        report.scanned[f"clarity {kind}"] = read

    def feed(self, report: GapReport) -> GapReport:
        """Store each gap as its webhook or poll would have (one commit per source); fills ``report.fed`` and
        ``report.arrived`` (stored meanwhile by the webhook or a poll: the inbox kept one)."""
        now = datetime.now(UTC)
        for source in sorted({g.source for g in report.gaps}):
            gaps = sorted((g for g in report.gaps if g.source == source), key=lambda g: g.happened_at)  # oldest first
            new = self.inbox.record_batch([Delivery(g.source, g.event_id, g.event_type, g.body, now) for g in gaps])
            for gap, is_new in zip(gaps, new, strict=True):
                (report.fed if is_new else report.arrived).append(gap)
                log.info("gaps.filled" if is_new else "gaps.arrived_meanwhile", source=gap.source,
                         event_id=gap.event_id, event_type=gap.event_type, ref=gap.ref)
        if report.fed and self.on_fed is not None:
            self.on_fed(len(report.fed))
        return report


def gaps_alert(report: GapReport) -> Alert:
    """The alert about a check's gaps: counts by source and type, the first ones' ids (no personal data)."""
    by_type = report.by_source_type()
    kinds = ", ".join(f"{n} {s} {t}" for (s, t), n in sorted(by_type.items()))
    return Alert("gaps.found", f"{len(report.gaps)} event(s) never reached the bridge, {len(report.fed)} fed in: "
                 f"{kinds}", Severity.WARNING,
                 {"found": len(report.gaps), "fed": len(report.fed), "arrived_meanwhile": len(report.arrived),
                  "by_type": {f"{s} {t}": n for (s, t), n in sorted(by_type.items())},
                  "since": report.since.isoformat(), "until": report.until.isoformat(),
                  "gaps": [g.to_dict() for g in report.gaps[:ALERT_LISTED]],
                  "fix": "check the webhook endpoint's event types and the bridge's reachability; "
                         "commerce-bridge gaps --dry-run lists what is missing"},
                 key="gaps.found")


class GapWatch:
    """One scheduled check: find the gaps of the window, feed them in, log, count and alert."""

    def __init__(self, finder: GapFinder, *, window: timedelta, settle: timedelta, alert: Callable[[Alert], Any],
                 on_report: Callable[[GapReport], Any] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.finder, self.window, self.settle = finder, min(window, MAX_WINDOW), settle
        self._alert, self._on_report, self._clock = alert, on_report, clock

    def check_once(self) -> GapReport:
        now = self._clock()
        report = self.finder.find(now - self.window, now - self.settle)
        for gap in report.gaps:
            log.warning("gaps.found", source=gap.source, event_id=gap.event_id, event_type=gap.event_type,
                        ref=gap.ref)
        self.finder.feed(report)
        if report.gaps:
            self._alert(gaps_alert(report))
        log.info("gaps.checked", found=len(report.gaps), fed=len(report.fed), scanned=report.scanned)
        if self._on_report is not None:
            self._on_report(report)
        return report
