"""``CustomerBackfill``: every customer of one system synced through ``CustomerSyncer``, page by page, resumable.

The rules it keeps:

* pages: Clarity's account search (1-based pages in ID order, ``ModifiedSince`` for ``since``), Stripe's
  customer list (newest first, ``starting_after``, ``created[gte]`` for ``since``), ERPNext's Customer list
  (``limit_start`` offsets, oldest first, ``modified >=`` for ``since``). A customer the run itself changes
  keeps its place: the order is by ID / creation, and a change only makes ``modified`` later;
* a **durable cursor** (``backfill.customers.<system>`` in the cursor store) is written after each completed
  page: after a crash (kill -9 included) the same command goes on after the last completed page (the
  customers of the page being synced are synced again, which changes nothing). A finished run clears it;
  ``restart`` ignores it; a different ``since`` starts over. A dry run neither reads nor writes it;
* ``limit``: stop after the page on which that many customers were reached (whole pages, so the cursor
  is exact);
* one customer failing (a ``BridgeError``) does not stop the run: it is counted with its error code; a
  transient error is tried again twice first. Any other exception is a bug and ends the run (the cursor
  keeps the pages done).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from commerce_bridge.errors import BridgeError, TransientError, ValidationError
from commerce_bridge.mapping.customer_record import CLARITY, STRIPE, SYSTEMS
from commerce_bridge.services.customer_sync import CustomerSyncer, SyncOutcome
from commerce_bridge.services.gateways import CursorStore

RETRY_DELAYS_S = (1.0, 3.0)


@dataclass(frozen=True, slots=True)
class Failure:
    """A customer that could not be synced: its id and the error (code, message, the field when named)."""

    record_id: str
    code: str
    error: BridgeError


@dataclass(slots=True)
class BackfillSummary:
    """What a backfill run did (counts of customers; ``conflicts``: losing values, over all customers)."""

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
    """Per system: customers ``created`` and ``updated`` there, and ``fields`` written (field -> customers)."""

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.failed)

    def add(self, outcome: SyncOutcome) -> None:
        setattr(self, outcome.result, getattr(self, outcome.result) + 1)
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
        return {"source": self.source, "dry_run": self.dry_run, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "conflicts": self.conflicts, "failed": len(self.failed),
                "seen": self.seen, "pages": self.pages, "resumed_after": self.resumed_after,
                "finished": self.finished, "elapsed_s": round(self.elapsed_s, 3), "by_system": self.by_system}


def cursor_name(source: str) -> str:
    return f"backfill.customers.{source}"


class CustomerBackfill:
    """Runs the backfill of one source (see the module docstring)."""

    def __init__(self, syncer: CustomerSyncer, cursors: CursorStore, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._syncer, self._cursors, self._sleep = syncer, cursors, sleep

    def _pages(self, source: str, start: Any, size: int, since: datetime | None,
               on_total: Callable[[int | None], None]) -> Iterator[tuple[list[str], Any]]:
        """(ids, position after this page) for each page after ``start``."""
        if source == CLARITY:
            read = self._syncer.clarity.pages(size=size, since=since)
            page = int(start or 0) + 1
            while True:
                ids, total = read(page)
                on_total(total)
                if ids:
                    yield ids, page
                if len(ids) < size:
                    return
                page += 1
        elif source == STRIPE:
            on_total(None)
            read_after = self._syncer.stripe.pages(size=size, since=since)
            cursor: str | None = start or None
            while True:
                ids, more = read_after(cursor)
                if ids:
                    cursor = ids[-1]
                    yield ids, cursor
                if not more or not ids:
                    return
        else:
            on_total(None)
            read_at = self._syncer.erp.pages(size=size, since=since)
            offset = int(start or 0)
            while True:
                ids = read_at(offset)
                if ids:
                    offset += len(ids)
                    yield ids, offset
                if len(ids) < size:
                    return

    def _sync_one(self, source: str, record_id: str, dry_run: bool) -> SyncOutcome:
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return self._syncer.sync_from(source, record_id, dry_run=dry_run)
            except TransientError:
                if delay is None:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self, source: str, *, since: datetime | None = None, dry_run: bool = False, limit: int | None = None,
            restart: bool = False, page_size: int = 100, on_total: Callable[[int | None], None] = lambda n: None,
            on_customer: Callable[[str, SyncOutcome | None], None] = lambda i, o: None,
            on_resume: Callable[[int], None] = lambda n: None) -> BackfillSummary:
        """Sync every customer of ``source`` (``clarity``, ``stripe`` or ``erp``); see the module docstring.

        ``on_total`` gets the total when the system tells it (Clarity), else None; ``on_customer`` is called
        after each customer (None: it failed); ``on_resume`` with the number of customers before the cursor
        of an earlier run (Clarity and ERPNext; Stripe's cursor is an id: 0).
        """
        if source not in SYSTEMS:
            raise ValidationError(f"unknown system {source!r}", suggested_fix=f"use one of {', '.join(SYSTEMS)}")
        started = time.monotonic()
        summary = BackfillSummary(source=source, dry_run=dry_run)
        name, stamp = cursor_name(source), since.isoformat() if since else None
        start: Any = None
        if not dry_run and not restart:
            saved = json.loads(self._cursors.get(name) or "{}")
            if saved.get("position") is not None and saved.get("since") == stamp:
                start = summary.resumed_after = saved["position"]
                on_resume(0 if source == STRIPE else int(start) * (page_size if source == CLARITY else 1))
        for ids, position in self._pages(source, start, page_size, since, on_total):
            for record_id in ids:
                try:
                    outcome = self._sync_one(source, record_id, dry_run)
                except BridgeError as exc:
                    summary.failed.append(Failure(record_id, exc.code, exc))
                    on_customer(record_id, None)
                    continue
                summary.add(outcome)
                on_customer(record_id, outcome)
            summary.pages += 1
            if not dry_run:
                self._cursors.set(name, json.dumps({"position": position, "since": stamp}))
            if limit is not None and summary.seen >= limit:
                break
        else:
            summary.finished = True
            if not dry_run:
                self._cursors.set(name, json.dumps({"position": None, "since": stamp}))
        summary.elapsed_s = time.monotonic() - started
        return summary


__all__ = ["BackfillSummary", "CustomerBackfill", "Failure", "cursor_name"]
