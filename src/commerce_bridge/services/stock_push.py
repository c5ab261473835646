"""Stock from ERPNext to Clarity (issue 14, point 4): the Bins that changed since the last push, summed per item,
written as the stock of one Clarity inventory section.

Two paths share the reading and writing here:

- in ``serve`` / ``worker``, :func:`bin_poll` is the ERPNext poller's cycle: each Bin changed since the cursor
  becomes an inbox event (source ``erp``, type ``bin.changed``), and the workflow ``erp.stock_changed`` writes
  the item's stock (steps ``erp.stock.totals`` and ``clarity.inventory.set``): durable, replayable, dead-lettered
  like every flow;
- ``commerce-bridge stock push`` (:class:`StockPush`) writes directly, page by page, for a first load or a
  repair (``--full``), with its own cursor.

Rules:

- **ERPNext is the source of stock.** The section named by ``CB_CLARITY_INVENTORY_SECTION`` belongs to the
  bridge: for each item, ``Quantity`` = the sum of the item's Bins' ``actual_qty``, ``QuantityAllocated`` = the
  sum of their ``reserved_qty`` (what open Sales Orders hold, the bridge's orders included), ``QuantityPreSold``
  = 0 (ERPNext has no pre-sale), over the warehouses of ``CB_STOCK_WAREHOUSES`` (all when empty). A negative
  sum is written as 0.
- **Only what changed**: a durable cursor (``erp.bins`` for the poller, ``erp.bins.push`` for the command) holds the latest Bin ``modified`` pushed; each push lists
  the Bins modified at or after it (the boundary's items are pushed again: writing the same stock twice is
  harmless), then reads every Bin of those items, so an item's total is always whole. ``full`` ignores the
  cursor. The cursor moves only after Clarity accepted the page's push, page by page (a crash re-pushes at most
  one page).
- **Items map to products by CustomKey = item code.** An item with no Clarity product is skipped and counted
  (ERP-only items are normal); the IDs found are remembered in this process, misses for ``MISS_TTL_S``.
- Quantities are decimal text (ERPNext's floats read through ``repr``), never float arithmetic.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from commerce_bridge.errors import ConfigurationError
from commerce_bridge.services.gateways import ClarityGateway, CursorStore, ErpGateway

log = structlog.get_logger("commerce_bridge.stock")

CURSOR = "erp.bins.push"
"""The command's cursor."""
POLL_CURSOR = "erp.bins"
"""The poller's cursor."""
BIN_CHANGED = "bin.changed"
PAGE = 200
"""Bins listed per ERPNext request, and products pushed per Clarity request."""
MISS_TTL_S = 3600.0
"""An item code with no Clarity product is looked up again after this long."""


def _qty(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def quantity_text(q: Decimal) -> str:
    """A stock quantity as Clarity gets it: decimal text, never below 0."""
    return format(max(q, Decimal(0)).normalize(), "f")


def _warehouses(filters: list[list[Any]], warehouses: Sequence[str]) -> list[list[Any]]:
    return [*filters, ["warehouse", "in", list(warehouses)]] if warehouses else filters


def changed_bins(erp: ErpGateway, since: str | None, *, warehouses: Sequence[str] = (),
                 page_size: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    """Pages of the Bins modified at or after ``since`` (every Bin when None), oldest first: ``name``,
    ``item_code``, ``warehouse``, ``modified``."""
    yield from erp.pages("Bin", filters=_warehouses([["modified", ">=", since]] if since else [], warehouses),
                         fields=["name", "item_code", "warehouse", "modified"], order_by="modified asc",
                         page_size=page_size)


def item_totals(erp: ErpGateway, codes: Sequence[str], *, warehouses: Sequence[str] = (),
                page_size: int = PAGE) -> tuple[dict[str, tuple[Decimal, Decimal]], int]:
    """Per item code: (sum of ``actual_qty``, sum of ``reserved_qty``) over all its Bins (in ``warehouses``), and
    how many Bins were read. An item with no Bin is (0, 0)."""
    totals: dict[str, tuple[Decimal, Decimal]] = {c: (Decimal(0), Decimal(0)) for c in codes}
    read = 0
    pages = erp.pages("Bin", filters=_warehouses([["item_code", "in", list(codes)]], warehouses),
                      fields=["item_code", "warehouse", "actual_qty", "reserved_qty"], order_by="name asc",
                      page_size=page_size) if codes else iter(())
    for rows in pages:
        for r in rows:
            code = str(r["item_code"])
            actual, reserved = totals.get(code, (Decimal(0), Decimal(0)))
            totals[code] = (actual + _qty(r.get("actual_qty")), reserved + _qty(r.get("reserved_qty")))
        read += len(rows)
    return totals, read


def bin_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The inbox event of one Bin change: its id names the Bin and its ``modified``, so the poller's overlap
    (Bins modified at the cursor are listed again) stores nothing twice."""
    digest = hashlib.sha256(f"{row['name']}|{row['modified']}".encode()).hexdigest()[:32]
    return {"id": f"erp-bin-{digest}", "type": BIN_CHANGED,
            "data": {"item_code": str(row["item_code"]), "warehouse": row.get("warehouse"),
                     "bin": str(row["name"]), "modified": str(row["modified"])}}


def bin_poll(erp: ErpGateway, cursors: CursorStore, *, warehouses: Sequence[str] = (),
             page_size: int = PAGE) -> Callable[[Callable[[list[dict[str, Any]]], Any]], None]:
    """The ERPNext poller's cycle (``services.polling.ChangePoller``): the Bins changed since the cursor
    ``erp.bins`` delivered as ``bin.changed`` events page by page, the cursor moved after each page is stored."""

    def poll(deliver: Callable[[list[dict[str, Any]]], Any]) -> None:
        since = cursors.get(POLL_CURSOR)
        for page in changed_bins(erp, since, warehouses=warehouses, page_size=page_size):
            deliver([bin_event(r) for r in page])
            latest = max(str(r["modified"]) for r in page)
            if latest != since:
                cursors.set(POLL_CURSOR, latest)

    return poll


class ProductIds:
    """Clarity product IDs by CustomKey (= item code), remembered in the process; a miss is asked again after
    ``MISS_TTL_S``."""

    def __init__(self, clarity: ClarityGateway, clock: Callable[[], float] = time.monotonic) -> None:
        self._clarity, self._clock = clarity, clock
        self._ids: dict[str, int] = {}
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    def of(self, codes: Sequence[str]) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            ask = [c for c in codes if c not in self._ids and self._missing.get(c, -MISS_TTL_S) + MISS_TTL_S <= now]
        found = self._clarity.product_ids_by_keys(ask) if ask else {}
        with self._lock:
            self._ids.update(found)
            for c in ask:
                if c in found:
                    self._missing.pop(c, None)
                else:
                    self._missing[c] = now
            return {c: self._ids[c] for c in codes if c in self._ids}


class InventorySection:
    """The Clarity inventory section the bridge owns (``CB_CLARITY_INVENTORY_SECTION``), its ID looked up once."""

    def __init__(self, clarity: ClarityGateway, key: str) -> None:
        self._clarity, self.key = clarity, key
        self._id: int | None = None

    def id(self) -> int:
        if self._id is None:
            found = self._clarity.inventory_section_id(self.key)
            if found is None:
                raise ConfigurationError(
                    f"CB_CLARITY_INVENTORY_SECTION={self.key}: Clarity has no active inventory location section "
                    "with that CustomKey",
                    suggested_fix="set it to the CustomKey of the section the bridge should keep in step with "
                                  "ERPNext (Inventory > Locations in the Clarity admin)")
            self._id = found
        return self._id


def stock_row(product_id: int, section_id: int, actual: Decimal, reserved: Decimal) -> dict[str, Any]:
    """One product's stock in the section, as ``ClarityGateway.push_inventory`` takes it."""
    return {"ProductID": product_id, "SectionID": section_id, "Quantity": quantity_text(actual),
            "QuantityAllocated": quantity_text(reserved), "QuantityPreSold": "0"}


@dataclass
class StockPushResult:
    """What one push did: items read, pushed (with their quantities), skipped (no Clarity product)."""

    full: bool
    dry_run: bool
    cursor_from: str | None
    cursor_to: str | None = None
    bins_read: int = 0
    pushed: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"full": self.full, "dry_run": self.dry_run, "cursor_from": self.cursor_from,
                "cursor_to": self.cursor_to, "bins_read": self.bins_read, "pushed": len(self.pushed),
                "skipped": len(self.skipped), "items": self.pushed, "skipped_items": self.skipped}


class StockPush:
    """``commerce-bridge stock push``: ERPNext's stock written directly to the section, page by page."""

    def __init__(self, erp: ErpGateway, clarity: ClarityGateway, cursors: CursorStore, *, section_key: str,
                 warehouses: Sequence[str] = (), page_size: int = PAGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._erp, self._clarity, self._cursors = erp, clarity, cursors
        self.section = InventorySection(clarity, section_key)
        self.warehouses = tuple(warehouses)
        self._page = page_size
        self.products = ProductIds(clarity, clock)

    @property
    def section_key(self) -> str:
        return self.section.key

    def push_once(self, *, full: bool = False, dry_run: bool = False,
                  progress: Callable[[int], Any] | None = None) -> StockPushResult:
        """Push what changed since the cursor (everything with ``full``); ``dry_run`` reads and writes nothing."""
        since = None if full else self._cursors.get(CURSOR)
        result = StockPushResult(full=full, dry_run=dry_run, cursor_from=since)
        section = self.section.id()
        for page in changed_bins(self._erp, since, warehouses=self.warehouses, page_size=self._page):
            codes = sorted({str(r["item_code"]) for r in page})
            totals, read = item_totals(self._erp, codes, warehouses=self.warehouses, page_size=self._page)
            result.bins_read += read
            ids = self.products.of(codes)
            rows = []
            for code in codes:
                if code not in ids:
                    result.skipped.append(code)
                    continue
                row = stock_row(ids[code], section, *totals[code])
                result.pushed[code] = {k: row[k] for k in ("Quantity", "QuantityAllocated", "QuantityPreSold")}
                rows.append(row)
            latest = max(str(r["modified"]) for r in page)
            if not dry_run:
                if rows:
                    self._clarity.push_inventory(rows)
                self._cursors.set(CURSOR, latest)
            result.cursor_to = latest
            if progress is not None:
                progress(len(page))
        log.info("stock.pushed", pushed=len(result.pushed), skipped=len(result.skipped), bins=result.bins_read,
                 full=full, dry_run=dry_run)
        return result
