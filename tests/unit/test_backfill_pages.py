"""``services.backfill``: the three page shapes (numbered, after an id, at an offset) walked and resumed from the
durable cursor, one cursor per kind and system, failures counted; and the product backfill's readers (Clarity's
product search, Stripe's product list, ERPNext's Item list) asking each system for the right page."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from commerce_bridge.errors import ConfigurationError, NotFound, UpstreamUnavailable
from commerce_bridge.services.backfill import (
    AfterPages,
    Backfill,
    NumberedPages,
    OffsetPages,
    Pages,
    cursor_name,
    product_pages,
)

IDS = [str(n) for n in range(1, 8)]  # seven records: pages of 3, 3, 1


@dataclass(frozen=True)
class Change:
    action: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    result: str
    changes: Mapping[str, Change] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()


class Syncer:
    """The ``Syncer`` port: records each call; ``fail`` maps an id to the errors its calls raise, in order."""

    def __init__(self, fail: dict[str, list[Exception]] | None = None) -> None:
        self.calls: list[tuple[str, str, bool]] = []
        self.fail = fail or {}

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False) -> Outcome:
        self.calls.append((system, record_id, dry_run))
        if self.fail.get(record_id):
            raise self.fail[record_id].pop(0)
        return Outcome("created", {"erp": Change("created")}, ("name",) if record_id == "2" else ())


class Cursors(dict[str, str]):
    def set(self, name: str, value: str) -> None:
        self[name] = value


def shapes(system: str, size: int, since: datetime | None) -> Pages:
    if system == "clarity":
        return NumberedPages(lambda n: (IDS[(n - 1) * size:n * size], len(IDS)))
    if system == "stripe":
        def after(cursor: str | None) -> tuple[list[str], bool]:
            start = IDS.index(cursor) + 1 if cursor else 0
            return IDS[start:start + size], start + size < len(IDS)
        return AfterPages(after)
    return OffsetPages(lambda start: IDS[start:start + size])


@pytest.mark.parametrize(("system", "position", "resumed"), [("clarity", 1, 3), ("stripe", "3", 0), ("erp", 3, 3)])
def test_every_page_shape_is_walked_whole_and_a_stopped_run_goes_on_after_its_last_page(
        system: str, position: Any, resumed: int) -> None:
    cursors, syncer = Cursors(), Syncer()
    backfill = Backfill("products", syncer, shapes, cursors, sleep=lambda s: None)
    first = backfill.run(system, page_size=3, limit=2)  # stops after the first whole page
    assert (first.seen, first.pages, first.finished, first.kind) == (3, 1, False, "products")
    assert json.loads(cursors[cursor_name("products", system)]) == {"position": position, "since": None}
    done: list[int] = []
    rest = backfill.run(system, page_size=3, on_resume=done.append)
    assert (rest.resumed_after, rest.seen, rest.pages, rest.finished, done) == (position, 4, 2, True, [resumed])
    assert [c[1] for c in syncer.calls] == IDS  # each record once over the two runs
    assert json.loads(cursors["backfill.products." + system])["position"] is None  # finished: cleared


def test_failures_are_counted_transient_ones_tried_again_and_the_cursor_is_per_kind_and_since() -> None:
    cursors = Cursors({"backfill.customers.erp": json.dumps({"position": 3, "since": None})})
    syncer = Syncer({"2": [UpstreamUnavailable("down"), UpstreamUnavailable("down")],
                     "5": [NotFound("gone"), NotFound("gone")]})
    waits: list[float] = []
    totals: list[int | None] = []
    summary = Backfill("products", syncer, shapes, cursors, sleep=waits.append).run(
        "erp", page_size=3, on_total=totals.append)
    assert summary.resumed_after is None  # the customers' cursor is not the products'
    assert (summary.created, [f.record_id for f in summary.failed], [f.code for f in summary.failed]) == (
        6, ["5"], ["not_found"])
    assert waits == [1.0, 3.0] and totals == [None]  # "2" failed twice, then synced; ERPNext tells no total
    assert summary.conflicts == 1 and summary.by_system == {"erp": {"created": 6, "updated": 0, "fields": {}}}
    later = datetime(2026, 12, 1, tzinfo=UTC)
    Backfill("products", Syncer(), shapes, cursors).run("erp", page_size=3, limit=1)
    again = Backfill("products", Syncer(), shapes, cursors).run("erp", page_size=3, since=later)
    assert again.resumed_after is None and again.seen == len(IDS)  # another --since starts over
    dry = Backfill("products", Syncer(), shapes, cursors)
    before = dict(cursors)
    assert dry.run("erp", page_size=3, dry_run=True, limit=1).seen == 3 and cursors == before


class Systems:
    """The three listing calls of the product backfill, recording what they are asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def search_products(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[dict[str, Any]], int | None]:
        self.asked.append(("clarity", {"page": page, "size": size, "since": modified_since}))
        return [{"ID": 40 + page}], 9

    def list_products(self, *, page_size: int = 100, starting_after: str | None = None,
                      created_gte: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        self.asked.append(("stripe", {"size": page_size, "after": starting_after, "gte": created_gte}))
        return [{"id": "prod_A"}], False

    def list_docs(self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
                  fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None,
                  start: int = 0) -> list[dict[str, Any]]:
        self.asked.append(("erp", {"doctype": doctype, "filters": filters, "limit": limit, "start": start,
                                   "order_by": order_by}))
        return [{"name": "SKU-1"}]


class SlowSyncer(Syncer):
    """Each record takes a while (as a remote round trip does) and the calls in flight are counted."""

    def __init__(self, fail: dict[str, list[Exception]] | None = None, bug: str | None = None) -> None:
        super().__init__(fail)
        self.lock, self.in_flight, self.most, self.bug = threading.Lock(), 0, 0, bug

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False) -> Outcome:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.05 if record_id in ("1", "4") else 0.01)  # the first of a page finishes last
            if record_id == self.bug:
                raise KeyError(record_id)
            with self.lock:
                return super().sync_from(system, record_id, dry_run=dry_run)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_with_concurrency_the_records_of_a_page_are_synced_at_once_and_reported_in_page_order() -> None:
    cursors, syncer = Cursors(), SlowSyncer(fail={"5": [NotFound("gone")]})
    seen: list[tuple[str, bool]] = []
    summary = Backfill("customers", syncer, shapes, cursors, sleep=lambda s: None).run(
        "erp", page_size=3, concurrency=3, on_record=lambda i, o: seen.append((i, o is not None)))
    assert syncer.most == 3  # a whole page at once, never more
    assert seen == [(i, i != "5") for i in IDS]  # page order, whatever finished first
    assert (summary.created, [f.record_id for f in summary.failed], summary.pages, summary.finished) == (
        6, ["5"], 3, True)
    assert json.loads(cursors[cursor_name("customers", "erp")]) == {"position": None, "since": None}


def test_with_concurrency_a_bug_ends_the_run_and_the_cursor_keeps_the_whole_pages_done() -> None:
    cursors, syncer = Cursors(), SlowSyncer(bug="5")
    with pytest.raises(KeyError):
        Backfill("customers", syncer, shapes, cursors, sleep=lambda s: None).run("erp", page_size=3, concurrency=3)
    assert json.loads(cursors[cursor_name("customers", "erp")]) == {"position": 3, "since": None}
    assert "7" not in {i for _, i, _ in syncer.calls}  # no page after the one that failed was started


def test_the_product_readers_ask_each_system_for_its_page_in_its_own_terms() -> None:
    systems, since = Systems(), datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    source = product_pages(systems, systems, systems, erp_tz=ZoneInfo("America/Chicago"))
    clarity, stripe, erp = source("clarity", 25, since), source("stripe", 25, since), source("erp", 25, since)
    assert isinstance(clarity, NumberedPages) and clarity.read(2) == (["42"], 9)
    assert isinstance(stripe, AfterPages) and stripe.read("prod_Z") == (["prod_A"], False)
    assert isinstance(erp, OffsetPages) and erp.read(50) == ["SKU-1"]
    assert systems.asked == [
        ("clarity", {"page": 2, "size": 25, "since": since}),
        ("stripe", {"size": 25, "after": "prod_Z", "gte": int(since.timestamp())}),
        ("erp", {"doctype": "Item", "filters": [["modified", ">=", "2026-12-01 00:00:00"]], "limit": 25,
                 "start": 50, "order_by": "creation asc, name asc"})]
    unlisted = product_pages(systems, None, systems, erp_tz=UTC)
    with pytest.raises(ConfigurationError, match="cannot list products"):
        unlisted("stripe", 25, None)
