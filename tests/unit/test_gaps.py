"""The gap check's rules (services.gaps) with in-memory peers at its ports: what counts as a gap, how it is fed
in, what the alert says."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from commerce_bridge.config import load_settings
from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.services.alerts import Alert
from commerce_bridge.services.gaps import MAX_WINDOW, GapFinder, GapWatch, gaps_alert
from commerce_bridge.services.schedule import LeaderSchedule

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class InMemoryInbox:
    def __init__(self, held: Iterable[tuple[str, str]] = ()) -> None:
        self.rows: dict[tuple[str, str], Delivery] = {
            k: Delivery(k[0], k[1], None, b"{}", NOW) for k in held}
        self.asked: list[int] = []
        self.first: datetime | None = NOW - timedelta(days=365)

    def first_received_at(self) -> datetime | None:
        return self.first

    def stored_ids(self, source: str, event_ids: Iterable[str]) -> set[str]:
        ids = set(event_ids)
        self.asked.append(len(ids))
        return {i for i in ids if (source, i) in self.rows}

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]:
        out = []
        for d in deliveries:
            out.append((d.source, d.event_id) not in self.rows)
            self.rows.setdefault((d.source, d.event_id), d)
        return out


class InMemoryStripe:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.calls: list[dict[str, Any]] = []

    def list_events(self, *, created_gte: int, created_lte: int | None = None, types: Sequence[str] = (),
                    page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        self.calls.append({"gte": created_gte, "lte": created_lte, "types": list(types)})
        found = [e for e in self.events if created_gte <= e["created"] <= (created_lte or 2**40)
                 and (not types or "*" in types or e["type"] in types
                      or any(t.endswith("*") and e["type"].startswith(t[:-1]) for t in types))]
        for i in range(0, len(found), page_size):
            yield found[i:i + page_size]


class InMemoryClarity:
    def __init__(self, rows: list[dict[str, Any]], polled: datetime | None) -> None:
        self.rows, self.polled = rows, polled

    def orders_changed(self, since: datetime, *, until: datetime | None = None,
                       page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        rows = [r for r in self.rows if since <= r["at"] <= (until or NOW)]
        for i in range(0, len(rows), page_size):
            yield rows[i:i + page_size]

    def returns_changed(self, since: datetime, *, until: datetime | None = None,
                        page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return iter(())

    def polled_through(self, kind: str) -> datetime | None:
        return self.polled

    def change_event_of(self, kind: str, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": f"clarity-so-{row['ID']}-{row['at']:%H%M}", "type": "salesorder.updated",
                "data": {"ID": row["ID"], "StatusKey": "Pending"}}

    def changed_at(self, row: Mapping[str, Any]) -> datetime:
        at: datetime = row["at"]
        return at


def event(n: int, type_: str = "payment_intent.succeeded", minutes_ago: int = 30) -> dict[str, Any]:
    return {"id": f"evt_{n}", "object": "event", "type": type_,
            "created": int((NOW - timedelta(minutes=minutes_ago)).timestamp()),
            "data": {"object": {"id": f"pi_{n}", "receipt_email": "ann@example.com"}}}


def finder(inbox: InMemoryInbox, stripe: InMemoryStripe | None = None, clarity: InMemoryClarity | None = None,
           types: Sequence[str] = ("payment_intent.succeeded", "charge.dispute.*"),
           wants: Iterable[str] = ("salesorder.updated",)) -> GapFinder:
    wanted = set(wants)
    return GapFinder(inbox, stripe=stripe, clarity=clarity, stripe_types=lambda: list(types),
                     wants=lambda source, event_type: event_type in wanted, page_size=2)


def test_a_stripe_event_the_inbox_lacks_is_a_gap_and_one_it_holds_is_not() -> None:
    stripe = InMemoryStripe([event(1), event(2), event(3), event(4, "charge.dispute.created"),
                             event(5, "customer.updated")])
    inbox = InMemoryInbox([("stripe", "evt_2")])
    report = finder(inbox, stripe).find(NOW - timedelta(days=1), NOW - timedelta(minutes=2))
    assert [(g.event_id, g.event_type, g.ref) for g in report.gaps] == [
        ("evt_1", "payment_intent.succeeded", "pi_1"), ("evt_3", "payment_intent.succeeded", "pi_3"),
        ("evt_4", "charge.dispute.created", "pi_4")]
    assert report.scanned == {"stripe events": 4}
    assert stripe.calls[0]["types"] == ["payment_intent.succeeded", "charge.dispute.*"]
    assert max(inbox.asked) <= 2, "the inbox is asked page by page"
    assert orjson.loads(report.gaps[0].body) == event(1), "the body is Stripe's event object, whole"


def test_events_younger_than_the_settle_time_and_older_than_thirty_days_are_not_read() -> None:
    stripe = InMemoryStripe([event(1, minutes_ago=1), event(2, minutes_ago=60 * 24 * 31), event(3)])
    report = finder(InMemoryInbox(), stripe).find(NOW - timedelta(days=90), NOW - timedelta(minutes=2))
    assert [g.event_id for g in report.gaps] == ["evt_3"]
    assert report.since == NOW - timedelta(minutes=2) - MAX_WINDOW


def test_nothing_before_the_first_delivery_counts_unless_asked_for() -> None:
    inbox = InMemoryInbox()
    stripe = InMemoryStripe([event(1, minutes_ago=120), event(2)])
    inbox.first = NOW - timedelta(minutes=60)
    f = finder(inbox, stripe)
    assert [g.event_id for g in f.find(NOW - timedelta(days=1), NOW).gaps] == ["evt_2"]
    assert [g.event_id for g in f.find(NOW - timedelta(days=1), NOW, before_first_delivery=True).gaps] == [
        "evt_1", "evt_2"]
    inbox.first = None
    empty = f.find(NOW - timedelta(days=1), NOW)
    assert empty.gaps == [] and empty.skipped == ["the inbox is empty: nothing was ever received to miss anything after"]


def test_an_event_listed_twice_by_overlapping_types_is_one_gap() -> None:
    stripe = InMemoryStripe([event(1, "charge.dispute.created")])
    stripe.list_events = _twice(stripe.list_events)  # type: ignore[method-assign]
    report = finder(InMemoryInbox(), stripe).find(NOW - timedelta(days=1), NOW)
    assert [g.event_id for g in report.gaps] == ["evt_1"]


def _twice(listing: Any) -> Any:
    def both(**kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        yield from listing(**kwargs)
        yield from listing(**kwargs)
    return both


def test_no_workflow_on_stripe_means_stripe_is_not_read() -> None:
    stripe = InMemoryStripe([event(1)])
    report = finder(InMemoryInbox(), stripe, types=()).find(NOW - timedelta(days=1), NOW)
    assert report.gaps == [] and stripe.calls == []
    assert report.skipped == ["stripe: no enabled workflow starts on a Stripe event",
                              "clarity: not configured (CB_CLARITY_BASE_URL)"]


def test_a_clarity_change_the_cursor_passed_without_storing_it_is_a_gap_one_ahead_is_the_pollers() -> None:
    behind, ahead = NOW - timedelta(hours=2), NOW - timedelta(minutes=30)
    clarity = InMemoryClarity([{"ID": 7, "at": behind}, {"ID": 8, "at": behind}, {"ID": 9, "at": ahead}],
                              polled=NOW - timedelta(hours=1))
    inbox = InMemoryInbox([("clarity", f"clarity-so-8-{behind:%H%M}")])
    report = finder(inbox, clarity=clarity).find(NOW - timedelta(days=1), NOW)
    assert [(g.source, g.ref, g.event_type) for g in report.gaps] == [("clarity", "7", "salesorder.updated")]
    assert report.scanned["clarity orders"] == 2
    assert "clarity returns: no enabled workflow starts on salesreturn.*" in report.skipped


def test_clarity_never_polled_has_no_gaps() -> None:
    clarity = InMemoryClarity([{"ID": 7, "at": NOW - timedelta(hours=2)}], polled=None)
    report = finder(InMemoryInbox(), clarity=clarity).find(NOW - timedelta(days=1), NOW)
    assert report.gaps == [] and any("no poll cursor yet" in s for s in report.skipped)


def test_feeding_stores_each_gap_once_oldest_first_and_says_which_arrived_meanwhile() -> None:
    inbox = InMemoryInbox()
    woken: list[int] = []
    f = finder(inbox, InMemoryStripe([event(3, minutes_ago=10), event(1), event(2)]))
    f.on_fed = woken.append
    report = f.find(NOW - timedelta(days=1), NOW)
    inbox.record_batch([Delivery("stripe", "evt_2", "payment_intent.succeeded", b"{}", NOW)])  # the webhook came
    f.feed(report)
    assert [g.event_id for g in report.fed] == ["evt_1", "evt_3"] and [g.event_id for g in report.arrived] == ["evt_2"]
    assert woken == [2]
    assert [k[1] for k in inbox.rows][1:] == ["evt_1", "evt_3"], "stored oldest first (the dispatcher's order)"
    stored = inbox.rows[("stripe", "evt_1")]
    assert (stored.event_type, orjson.loads(stored.body)["id"]) == ("payment_intent.succeeded", "evt_1")
    again = f.find(NOW - timedelta(days=1), NOW)
    assert again.gaps == [] and f.feed(again).fed == []


def test_the_alert_counts_by_source_and_type_and_carries_ids_only() -> None:
    report = finder(InMemoryInbox(), InMemoryStripe([event(1), event(2)])).find(NOW - timedelta(days=1), NOW)
    alert = gaps_alert(report)
    assert alert.kind == "gaps.found" and alert.details["by_type"] == {"stripe payment_intent.succeeded": 2}
    assert "ann@example.com" not in orjson.dumps(alert.details).decode()
    assert alert.details["gaps"][0] == {"source": "stripe", "event_id": "evt_1", "type": "payment_intent.succeeded",
                                        "ref": "pi_1", "happened_at": report.gaps[0].happened_at.isoformat()}


def test_a_check_alerts_once_when_it_found_gaps_and_not_when_it_found_none() -> None:
    alerts: list[Alert] = []
    reports: list[Any] = []
    watch = GapWatch(finder(InMemoryInbox(), InMemoryStripe([event(1)])), window=timedelta(days=90),
                     settle=timedelta(minutes=2), alert=alerts.append, on_report=reports.append, clock=lambda: NOW)
    assert watch.window == MAX_WINDOW
    schedule = LeaderSchedule("gaps", watch.check_once, interval_s=60, what="The gap check")
    assert schedule.run_once() and schedule.run_once()
    assert [a.kind for a in alerts] == ["gaps.found"]
    assert [len(r.fed) for r in reports] == [1, 0]


def test_the_window_is_thirty_days_at_most_and_the_error_names_the_setting() -> None:
    settings = load_settings()
    assert (settings.gap_interval_s, settings.gap_window_days, settings.gap_settle_s) == (900, 30, 120)
    with pytest.raises(ConfigurationError, match="CB_GAP_WINDOW_DAYS"):
        load_settings(gap_window_days=31)
    with pytest.raises(ConfigurationError, match="CB_GAP_SETTLE_S"):
        load_settings(gap_settle_s=-1)
