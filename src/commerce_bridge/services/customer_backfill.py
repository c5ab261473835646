"""``CustomerBackfill``: every customer of one system synced through ``CustomerSyncer``, page by page, resumable.

The rules are ``services.backfill``'s (the backfill of any kind); this module keeps the customer backfill's names:
the cursor is ``backfill.customers.<system>``, the pages are Clarity's account search, Stripe's customer list and
ERPNext's Customer list (``services.backfill.customer_pages``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from commerce_bridge.services.backfill import Backfill, BackfillSummary, Failure, Outcome, customer_pages
from commerce_bridge.services.backfill import cursor_name as _cursor_name
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.services.gateways import CursorStore

KIND = "customers"


def cursor_name(source: str) -> str:
    """``backfill.customers.<source>``."""
    return _cursor_name(KIND, source)


class CustomerBackfill:
    """Runs the customer backfill of one source (see ``services.backfill``)."""

    def __init__(self, syncer: CustomerSyncer, cursors: CursorStore, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._backfill = Backfill(KIND, syncer, customer_pages(syncer), cursors, sleep=sleep)

    def run(self, source: str, *, since: datetime | None = None, dry_run: bool = False, limit: int | None = None,
            restart: bool = False, page_size: int = 100, on_total: Callable[[int | None], None] = lambda n: None,
            on_customer: Callable[[str, Outcome | None], None] = lambda i, o: None,
            on_resume: Callable[[int], None] = lambda n: None) -> BackfillSummary:
        """``Backfill.run`` with ``on_customer`` called after each customer (None: it failed)."""
        return self._backfill.run(source, since=since, dry_run=dry_run, limit=limit, restart=restart,
                                  page_size=page_size, on_total=on_total, on_record=on_customer, on_resume=on_resume)


__all__ = ["BackfillSummary", "CustomerBackfill", "Failure", "cursor_name"]
