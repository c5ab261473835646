"""``Backfill``: every record of one kind (customers, products, orders) of one system synced through its syncer,
page by page, resumable (``commerce-bridge backfill customers|products|orders``).

The rules it keeps:

* pages, per kind and system (a :data:`PageSource` gives the reader): Clarity's searches (1-based pages in ID
  order, ``ModifiedSince`` for ``since``, with CEF's ``TotalCount``), Stripe's lists (newest first,
  ``starting_after``, ``created[gte]`` for ``since``), ERPNext's lists (``limit_start`` offsets, oldest first by
  ``creation``, ``modified >=`` for ``since``). A record the run itself changes keeps its place: the order is by
  ID / creation, and a change only makes ``modified`` later;
* a **durable cursor** (``backfill.<kind>.<system>`` in the cursor store) is written after each completed page:
  after a crash (kill -9 included) the same command goes on after the last completed page (the records of the
  page being synced are synced again, which changes nothing). A finished run clears it; ``restart`` ignores it;
  a different ``since`` starts over. A dry run neither reads nor writes it;
* ``limit``: stop after the page on which that many records were reached (whole pages, so the cursor is exact);
* one record failing (a ``BridgeError``) does not stop the run: it is counted with its error code; a transient
  error is tried again twice first. Any other exception is a bug and ends the run (the cursor keeps the pages
  done);
* every read and write goes through the gateways, so each request takes its rate-limit slot;
* ``concurrency``: the records of a page are synced by that many threads at once (the syncers hold a key lock
  per entity, as the workflows' runs do), so a backfill against remote systems is bound by their rate limits and
  not by the round trips of one record after another; the cursor still moves by whole pages, and the summary and
  the progress see the records in page order;
* the order backfill (``services.order_backfill``) syncs nothing itself: its records are ``fed`` (a new inbox
  row), ``known`` (the inbox had the event) or ``skipped`` (counted by reason), and a dry run lists what it would
  feed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from commerce_bridge.errors import BridgeError, ConfigurationError, TransientError, ValidationError
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.services.gateways import CursorStore

RETRY_DELAYS_S = (1.0, 3.0)
CLARITY, STRIPE, ERP = "clarity", "stripe", "erp"
SYSTEMS = (CLARITY, STRIPE, ERP)
JsonDict = dict[str, Any]


class Change(Protocol):
    """What a sync did to one system's record (``SystemChange`` of the customer or product sync)."""

    @property
    def action(self) -> str: ...

    @property
    def fields(self) -> Sequence[str]: ...


class Outcome(Protocol):
    """The result of one ``sync_from`` (``SyncOutcome`` of the customer or product sync; the order feed's
    ``FeedOutcome``: ``fed``, ``known`` or ``skipped``, with a ``reason`` and its ``event_id``)."""

    @property
    def result(self) -> str: ...

    @property
    def conflicts(self) -> Sequence[object]: ...

    @property
    def changes(self) -> Mapping[str, Change]: ...


class Syncer(Protocol):
    """Syncs one record of ``system`` with the other two (``CustomerSyncer``, ``ProductSyncer``)."""

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class NumberedPages:
    """Page ``n`` (1-based): its ids and the total when the system tells it (Clarity)."""

    read: Callable[[int], tuple[list[str], int | None]]


@dataclass(frozen=True, slots=True)
class AfterPages:
    """The page after id ``cursor`` (None: the first): its ids and whether more follow (Stripe)."""

    read: Callable[[str | None], tuple[list[str], bool]]


@dataclass(frozen=True, slots=True)
class OffsetPages:
    """The page at offset ``start``: its ids (ERPNext)."""

    read: Callable[[int], list[str]]


Pages = NumberedPages | AfterPages | OffsetPages
PageSource = Callable[[str, int, datetime | None], Pages]
"""``(system, page size, since)`` -> the reader of that system's pages."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A record that could not be synced: its id and the error (code, message, the field when named)."""

    record_id: str
    code: str
    error: BridgeError


@dataclass(slots=True)
class BackfillSummary:
    """What a backfill run did (counts of records; ``conflicts``: losing values, over all records)."""

    source: str
    dry_run: bool
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    failed: list[Failure] = field(default_factory=list)
    pages: int = 0
    resumed_after: Any = None
    finished: bool = False
    elapsed_s: float = 0.0
    by_system: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per system: records ``created`` and ``updated`` there, and ``fields`` written (field -> records)."""
    kind: str = "customers"
    fed: int = 0
    """Orders: events stored in the inbox (a dry run: that would be)."""
    known: int = 0
    """Orders: events the inbox held already (nothing stored)."""
    skipped: int = 0
    """Orders: records with nothing to feed (``skip_reasons``: reason -> records)."""
    skip_reasons: dict[str, int] = field(default_factory=dict)
    listed: list[dict[str, str]] = field(default_factory=list)
    """Orders, a dry run: what would be fed (record id, event id, type)."""

    @property
    def seen(self) -> int:
        return (self.created + self.updated + self.unchanged + self.fed + self.known + self.skipped
                + len(self.failed))

    def add(self, outcome: Outcome, record_id: str = "") -> None:
        setattr(self, outcome.result, getattr(self, outcome.result) + 1)
        reason = getattr(outcome, "reason", None)
        if outcome.result == "skipped":
            self.skip_reasons[reason or "?"] = self.skip_reasons.get(reason or "?", 0) + 1
        elif outcome.result == "fed" and self.dry_run:
            self.listed.append({"id": record_id, "event_id": str(getattr(outcome, "event_id", "")),
                                "type": str(getattr(outcome, "event_type", ""))})
        self.conflicts += len(outcome.conflicts)
        for system, change in outcome.changes.items():
            if change.action == "unchanged":
                continue
            counts = self.by_system.setdefault(system, {"created": 0, "updated": 0, "fields": {}})
            counts[change.action] += 1
            if change.action == "updated":
                for name in change.fields:
                    counts["fields"][name] = counts["fields"].get(name, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "orders":
            return {"kind": self.kind, "source": self.source, "dry_run": self.dry_run, "fed": self.fed,
                    "known": self.known, "skipped": self.skipped, "skip_reasons": self.skip_reasons,
                    "failed": len(self.failed), "seen": self.seen, "pages": self.pages,
                    "resumed_after": self.resumed_after, "finished": self.finished,
                    "elapsed_s": round(self.elapsed_s, 3), **({"would_feed": self.listed} if self.dry_run else {})}
        return {"kind": self.kind, "source": self.source, "dry_run": self.dry_run, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "conflicts": self.conflicts,
                "failed": len(self.failed), "seen": self.seen, "pages": self.pages,
                "resumed_after": self.resumed_after, "finished": self.finished,
                "elapsed_s": round(self.elapsed_s, 3), "by_system": self.by_system}


def cursor_name(kind: str, source: str) -> str:
    """The durable cursor of the backfill of ``kind`` from ``source``: ``backfill.<kind>.<source>``."""
    return f"backfill.{kind}.{source}"


def _walk(pages: Pages, start: Any, size: int, on_total: Callable[[int | None], None]) -> Iterator[tuple[list[str],
                                                                                                      Any]]:
    """(ids, position after this page) for each page after ``start``."""
    if isinstance(pages, NumberedPages):
        number = int(start or 0) + 1
        while True:
            ids, total = pages.read(number)
            on_total(total)
            if ids:
                yield ids, number
            if len(ids) < size:
                return
            number += 1
    elif isinstance(pages, AfterPages):
        on_total(None)
        cursor: str | None = start or None
        while True:
            ids, more = pages.read(cursor)
            if ids:
                cursor = ids[-1]
                yield ids, cursor
            if not more or not ids:
                return
    else:
        on_total(None)
        offset = int(start or 0)
        while True:
            ids = pages.read(offset)
            if ids:
                offset += len(ids)
                yield ids, offset
            if len(ids) < size:
                return


class Backfill:
    """Runs the backfill of one kind from one source (see the module docstring).

    Parameters
    ----------
    kind:
        ``customers``, ``products`` or ``orders``: names the cursor (``backfill.<kind>.<system>``) and the summary.
    syncer:
        Syncs one record (its reads and writes take the gateways' rate-limit slots).
    pages:
        The page reader per system (:func:`customer_pages`, :func:`product_pages`, ``OrderFeed.pages``).
    cursors:
        Where the durable cursor lives.
    sleep:
        Waits between the tries of a transient failure (tests pass a recorder).
    """

    def __init__(self, kind: str, syncer: Syncer, pages: PageSource, cursors: CursorStore, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kind = kind
        self._syncer, self._pages, self._cursors, self._sleep = syncer, pages, cursors, sleep

    def _sync_one(self, source: str, record_id: str, dry_run: bool) -> Outcome:
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return self._syncer.sync_from(source, record_id, dry_run=dry_run)
            except TransientError:
                if delay is None:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, source: str, record_id: str, dry_run: bool) -> Outcome | Failure:
        """One record: its outcome, or the failure of a ``BridgeError`` (any other exception is a bug: raised)."""
        try:
            return self._sync_one(source, record_id, dry_run)
        except BridgeError as exc:
            return Failure(record_id, exc.code, exc)

    def run(self, source: str, *, since: datetime | None = None, dry_run: bool = False, limit: int | None = None,
            restart: bool = False, page_size: int = 100, concurrency: int = 1, on_total: Callable[[int | None], None] = lambda n: None,
            on_record: Callable[[str, Outcome | None], None] = lambda i, o: None,
            on_resume: Callable[[int], None] = lambda n: None) -> BackfillSummary:
        """Sync every record of ``source`` (``clarity``, ``stripe`` or ``erp``); see the module docstring.

        Parameters
        ----------
        source:
            The system whose records are read.
        since:
            Only records changed (Stripe: created) at or after it.
        dry_run:
            Merge and report; write nothing (the cursor included).
        limit:
            Stop after the page on which this many records were reached.
        restart:
            Ignore the cursor of an earlier run.
        concurrency:
            Records of a page synced at once (threads; 1: one after another).
        on_total, on_record, on_resume:
            ``on_total`` gets the total when the system tells it (Clarity), else None; ``on_record`` is called
            after each record (None: it failed); ``on_resume`` with the number of records before the cursor of
            an earlier run (Clarity and ERPNext; Stripe's cursor is an id: 0).

        Raises
        ------
        ValidationError
            An unknown ``source``.
        BridgeError
            A page could not be read (the cursor keeps the pages done).
        """
        if source not in SYSTEMS:
            raise ValidationError(f"unknown system {source!r}", suggested_fix=f"use one of {', '.join(SYSTEMS)}")
        started = time.monotonic()
        summary = BackfillSummary(source=source, dry_run=dry_run, kind=self.kind)
        name, stamp = cursor_name(self.kind, source), since.isoformat() if since else None
        pages = self._pages(source, page_size, since)
        start: Any = None
        if not dry_run and not restart:
            saved = json.loads(self._cursors.get(name) or "{}")
            if saved.get("position") is not None and saved.get("since") == stamp:
                start = summary.resumed_after = saved["position"]
                on_resume(0 if isinstance(pages, AfterPages)
                          else int(start) * (page_size if isinstance(pages, NumberedPages) else 1))
        threads = ThreadPoolExecutor(concurrency, thread_name_prefix=f"backfill-{self.kind}") if concurrency > 1 else None
        try:
            for ids, position in _walk(pages, start, page_size, on_total):
                def one(record_id: str) -> Outcome | Failure:
                    return self._attempt(source, record_id, dry_run)
                for record_id, result in zip(ids, threads.map(one, ids) if threads else map(one, ids), strict=True):
                    if isinstance(result, Failure):
                        summary.failed.append(result)
                        on_record(record_id, None)
                    else:
                        summary.add(result, record_id)
                        on_record(record_id, result)
                summary.pages += 1
                if not dry_run:
                    self._cursors.set(name, json.dumps({"position": position, "since": stamp}))
                if limit is not None and summary.seen >= limit:
                    break
            else:
                summary.finished = True
                if not dry_run:
                    self._cursors.set(name, json.dumps({"position": None, "since": stamp}))
        finally:
            if threads is not None:
                threads.shutdown(cancel_futures=True)
        summary.elapsed_s = time.monotonic() - started
        return summary


def customer_pages(syncer: CustomerSyncer) -> PageSource:
    """The customer backfill's pages: Clarity's account search, Stripe's customer list, ERPNext's Customer list
    (the readers of ``services.customer_sides``)."""

    def pages(system: str, size: int, since: datetime | None) -> Pages:
        if system == CLARITY:
            return NumberedPages(syncer.clarity.pages(size=size, since=since))
        if system == STRIPE:
            return AfterPages(syncer.stripe.pages(size=size, since=since))
        return OffsetPages(syncer.erp.pages(size=size, since=since))

    return pages


class ClarityProductPages(Protocol):
    def search_products(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]: ...


@runtime_checkable
class StripeProductPages(Protocol):
    def list_products(self, *, page_size: int = 100, starting_after: str | None = None,
                      created_gte: int | None = None) -> tuple[list[JsonDict], bool]: ...


class ErpItemPages(Protocol):
    def list_docs(self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
                  fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None,
                  start: int = 0) -> list[JsonDict]: ...


def product_pages(clarity: ClarityProductPages, stripe: StripeProductPages | None, erp: ErpItemPages, *,
                  erp_tz: tzinfo) -> PageSource:
    """The product backfill's pages: Clarity's product search (ID order, ``ModifiedSince``), Stripe's product
    list (``created[gte]``), ERPNext's Item list (by ``creation``, ``modified >=`` in ``erp_tz``, the ERPNext
    server's zone). The ids are the syncer's: a Clarity product ID, a Stripe ``prod_…``, an ERPNext item_code.

    Raises
    ------
    ConfigurationError
        (from the returned reader) ``stripe`` is None: the Stripe gateway cannot list products.
    """

    def pages(system: str, size: int, since: datetime | None) -> Pages:
        if system == CLARITY:
            def clarity_page(n: int) -> tuple[list[str], int | None]:
                rows, total = clarity.search_products(page=n, size=size, modified_since=since)
                return [str(r["ID"]) for r in rows], total
            return NumberedPages(clarity_page)
        if system == STRIPE:
            if stripe is None:
                raise ConfigurationError("the Stripe gateway cannot list products",
                                         suggested_fix="use a Stripe gateway with list_products (the product sync's)")
            lister = stripe
            created_gte = int(since.timestamp()) if since is not None else None

            def stripe_page(cursor: str | None) -> tuple[list[str], bool]:
                rows, more = lister.list_products(page_size=size, starting_after=cursor, created_gte=created_gte)
                return [str(r["id"]) for r in rows], more
            return AfterPages(stripe_page)
        filters = [["modified", ">=", since.astimezone(erp_tz).strftime("%Y-%m-%d %H:%M:%S")]] if since else None

        def erp_page(start: int) -> list[str]:
            rows = erp.list_docs("Item", start=start, limit=size, filters=filters, order_by="creation asc, name asc")
            return [str(r["name"]) for r in rows]
        return OffsetPages(erp_page)

    return pages


__all__ = ["AfterPages", "Backfill", "BackfillSummary", "Failure", "NumberedPages", "OffsetPages", "PageSource",
           "Pages", "StripeProductPages", "Syncer", "cursor_name", "customer_pages", "product_pages"]
