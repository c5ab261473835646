"""``services.order_backfill``: the order pages of each system walked by the generic engine and resumed from the
``backfill.orders.<system>`` cursor (a run stopped after a page goes on with the next page, asking Clarity for that
page only); each record ``fed`` once (the poller's event id for a Clarity order), ``known`` after, ``skipped`` with
its reason; a dry run lists and stores nothing; Stripe's real event id when it still lists the event, else the
made-up one; ERPNext Sales Orders checked against Clarity by ``po_no`` (key, or ID). The ports are small fakes
here; tests/e2e/test_backfill_orders.py runs the same against the sandbox peers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from commerce_bridge.connectors.clarity.changes import change_event
from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.services.backfill import Backfill, cursor_name
from commerce_bridge.services.order_backfill import (
    SKIP_NO_CLARITY_ORDER,
    SKIP_NO_ORDER_KEY,
    SKIP_NO_PO_NO,
    SKIP_NO_WORKFLOW,
    OrderFeed,
)

NOW = 1_790_000_000
ORDERS = [{"ID": n, "CustomKey": f"WEB-{n}", "StatusKey": "Pending", "CreatedDate": "2026-11-01T10:00:00",
           "UpdatedDate": f"2026-11-0{n}T11:00:00"} for n in range(1, 6)]  # five orders: pages of 2, 2, 1


class Inbox:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Delivery] = {}

    def stored_ids(self, source: str, event_ids: Iterable[str]) -> set[str]:
        return {e for e in event_ids if (source, e) in self.rows}

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]:
        out = []
        for d in deliveries:
            out.append((d.source, d.event_id) not in self.rows)
            self.rows.setdefault((d.source, d.event_id), d)
        return out


class Clarity:
    def __init__(self) -> None:
        self.pages: list[int] = []

    def search_orders(self, *, page: int, size: int = 100,
                      modified_since: datetime | None = None) -> tuple[list[dict[str, Any]], int | None]:
        self.pages.append(page)
        return [dict(o) for o in ORDERS[(page - 1) * size:page * size]], len(ORDERS)

    def find_orders(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        return [dict(o) for o in ORDERS if o.get("CustomKey") in keys or o["ID"] in ids]

    def change_event_of(self, kind: str, row: Mapping[str, Any]) -> dict[str, Any]:
        return change_event(row, UTC)


class Stripe:
    def __init__(self, intents: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.intents, self.events = intents, events
        self.event_windows: list[int] = []

    def list_payment_intents(self, *, page_size: int = 100, starting_after: str | None = None,
                             created_gte: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        ids = [p["id"] for p in self.intents]
        start = ids.index(starting_after) + 1 if starting_after else 0
        return self.intents[start:start + page_size], start + page_size < len(ids)

    def list_events(self, *, created_gte: int, created_lte: int | None = None, types: Sequence[str] = (),
                    page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        self.event_windows.append(created_gte)
        yield [e for e in self.events if e["created"] >= created_gte and e["type"] in types]


class Erp:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def list_docs(self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
                  fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None,
                  start: int = 0) -> list[dict[str, Any]]:
        assert doctype == "Sales Order" and "po_no" in fields
        return self.rows[start:start + limit]


class Cursors(dict[str, str]):
    def set(self, name: str, value: str) -> None:
        self[name] = value


def pending_only(source: str, event_type: str, event: dict[str, Any]) -> bool:
    """As the order workflows' triggers: a pending Clarity order, a Stripe payment that names its order."""
    if source == "clarity":
        return bool(event["data"].get("StatusKey") == "Pending")
    return event_type == "payment_intent.succeeded"


def test_clarity_orders_are_fed_as_the_pollers_events_and_a_stopped_run_resumes_after_its_last_page() -> None:
    inbox, clarity, cursors = Inbox(), Clarity(), Cursors()
    feed = OrderFeed(inbox, clarity=clarity, stripe=None, erp=None, wants=pending_only)
    backfill = Backfill("orders", feed, feed.pages, cursors, sleep=lambda s: None)

    dry = backfill.run("clarity", page_size=2, dry_run=True)
    assert (dry.fed, dry.known, dry.finished, inbox.rows, cursors) == (5, 0, True, {}, {})
    assert [r["event_id"] for r in dry.as_dict()["would_feed"]] == [change_event(o, UTC)["id"] for o in ORDERS]

    clarity.pages.clear()
    first = backfill.run("clarity", page_size=2, limit=1)  # stops after the first whole page
    assert (first.fed, first.pages, first.finished) == (2, 1, False)
    assert json.loads(cursors[cursor_name("orders", "clarity")]) == {"position": 1, "since": None}
    rest = backfill.run("clarity", page_size=2)
    assert (rest.resumed_after, rest.fed, rest.known, rest.finished) == (1, 3, 0, True)
    assert clarity.pages == [1, 2, 3]  # the resumed run asked for page 2 on, never page 1 again
    assert sorted(e for _, e in inbox.rows) == sorted(change_event(o, UTC)["id"] for o in ORDERS)
    assert {d.event_type for d in inbox.rows.values()} == {"salesorder.updated"}

    ORDERS[0]["StatusKey"] = "Completed"  # a later change the poller never saw, which no workflow takes
    ORDERS[0]["UpdatedDate"] = "2026-11-09T11:00:00"
    try:
        again = backfill.run("clarity", page_size=2)
    finally:
        ORDERS[0].update(StatusKey="Pending", UpdatedDate="2026-11-01T11:00:00")
    assert (again.fed, again.known, again.skipped, again.skip_reasons) == (0, 4, 1, {SKIP_NO_WORKFLOW: 1})
    assert len(inbox.rows) == 5


def test_stripe_payment_intents_of_orders_are_fed_under_their_real_event_id_or_a_made_up_one() -> None:
    def pi(n: int, status: str = "succeeded", key: str | None = "WEB-1") -> dict[str, Any]:
        return {"id": f"pi_{n}", "status": status, "created": NOW - n, "metadata": {"clarity_order_key": key} if key
                else {}}

    intents = [pi(1), pi(2), pi(3, "requires_payment_method"), pi(4, key=None)]
    real = {"id": "evt_real_1", "type": "payment_intent.succeeded", "created": NOW - 100,
            "data": {"object": intents[0]}}
    stale = {"id": "evt_old_2", "type": "payment_intent.succeeded", "created": NOW - 40 * 86400,
             "data": {"object": intents[1]}}  # Stripe would no longer list it
    stripe, inbox, cursors = Stripe(intents, [real, stale]), Inbox(), Cursors()
    inbox.record_batch([Delivery("stripe", "evt_real_1", "payment_intent.succeeded", b"{}", datetime.now(UTC))])
    feed = OrderFeed(inbox, clarity=None, stripe=stripe, erp=None, wants=pending_only, clock=lambda: NOW)
    summary = Backfill("orders", feed, feed.pages, cursors).run("stripe", page_size=3)
    assert (summary.fed, summary.known, summary.skipped, summary.failed) == (1, 1, 2, [])
    assert summary.skip_reasons == {"not succeeded (requires_payment_method)": 1, SKIP_NO_ORDER_KEY: 1}
    made_up = inbox.rows[("stripe", "evt_backfill_pi_2_succeeded")]
    body = json.loads(made_up.body)
    assert (made_up.event_type, body["type"], body["data"]["object"]) == (
        "payment_intent.succeeded", "payment_intent.succeeded", intents[1])
    fed_again = Backfill("orders", feed, feed.pages, cursors).run("stripe", page_size=3, dry_run=True)
    assert (fed_again.fed, fed_again.known) == (0, 2)
    inbox.rows.pop(("stripe", "evt_real_1"))
    fresh = OrderFeed(inbox, clarity=None, stripe=stripe, erp=None, wants=pending_only, clock=lambda: NOW)
    Backfill("orders", fresh, fresh.pages, cursors).run("stripe", page_size=3)
    real_body = json.loads(inbox.rows[("stripe", "evt_real_1")].body)  # the real id, the PaymentIntent as listed
    assert (real_body["id"], real_body["created"], real_body["data"]["object"]) == ("evt_real_1", NOW - 100,
                                                                                    intents[0])
    assert stripe.event_windows == [NOW - 30 * 86400 + 60] * 2  # the last 30 days' events, read once a run


def test_erp_sales_orders_are_checked_against_clarity_by_po_no_and_feed_only_what_the_inbox_lacks() -> None:
    keyless = {"ID": 7, "StatusKey": "Pending", "CreatedDate": "2026-11-01T10:00:00",
               "UpdatedDate": "2026-11-07T11:00:00"}
    ORDERS.append(keyless)
    try:
        erp = Erp([{"name": "SO-1", "po_no": "WEB-1"}, {"name": "SO-2", "po_no": None},
                   {"name": "SO-3", "po_no": "WEB-404"}, {"name": "SO-4", "po_no": "7"}])
        inbox, clarity = Inbox(), Clarity()
        feed = OrderFeed(inbox, clarity=clarity, stripe=None, erp=erp, wants=pending_only)
        dry = Backfill("orders", feed, feed.pages, Cursors()).run("erp", page_size=10, dry_run=True)
        assert (dry.fed, dry.skipped, inbox.rows) == (2, 2, {})
        assert dry.skip_reasons == {SKIP_NO_PO_NO: 1, SKIP_NO_CLARITY_ORDER: 1}
        assert [r["id"] for r in dry.listed] == ["SO-1", "SO-4"]
        run = Backfill("orders", feed, feed.pages, Cursors()).run("erp", page_size=10)
        assert (run.fed, run.known) == (2, 0)
        assert {e for _, e in inbox.rows} == {change_event(ORDERS[0], UTC)["id"], change_event(keyless, UTC)["id"]}
        assert {s for s, _ in inbox.rows} == {"clarity"}  # the Clarity order's event, as --from clarity feeds it
        again = Backfill("orders", feed, feed.pages, Cursors()).run("erp", page_size=10)
        assert (again.fed, again.known, again.skipped) == (0, 2, 2)
    finally:
        ORDERS.remove(keyless)
