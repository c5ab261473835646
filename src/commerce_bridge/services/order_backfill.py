"""The order backfill's feed (``commerce-bridge backfill orders``): the events the bridge would have received for
the orders that exist, stored in the inbox, so that the workflows decide what is missing.

The rules it keeps:

* **The durable path only.** Nothing is written to a peer: each order becomes the inbox row its poll or webhook
  would have made (same source, event id, type and body) and the dispatcher runs the workflows on it, which find
  before they create (``ensure`` steps). The inbox is unique by ``(source, event id)``: an event it holds already
  is ``known`` and stored nothing; a new row is ``fed``. A dry run reads the inbox and stores nothing.
* **Clarity** (``--from clarity``): the sales orders in ID order (``ModifiedSince`` for ``since``), each as the
  order poller's change event (``change_event``: its id is a hash of ``ID`` and ``UpdatedDate``), so an order
  whose current state the poller delivered is ``known``.
* **Stripe** (``--from stripe``): the PaymentIntents (newest first, ``created[gte]`` for ``since``). One that names
  no order (no ``metadata.clarity_order_key``, which the order flow and the storefront write) or has not succeeded
  is ``skipped``; a succeeded one is fed as its ``payment_intent.succeeded`` event, ``data.object`` the
  PaymentIntent as listed, under the real event's id when Stripe still lists it (30 days, one listing a run),
  else ``evt_backfill_<pi id>_succeeded``. A PaymentIntent whose webhook was processed, fed again under the made-up id, changes nothing: the
  payment workflow finds the Clarity payment, the ERPNext invoice and Payment Entry it made.
* **ERPNext** (``--from erp``): the Sales Orders (oldest first, ``modified >=`` for ``since``) checked against
  Clarity by ``po_no`` (the Clarity order key the order flow writes, or its ID when it has no key). No ``po_no``,
  or no Clarity order with it: ``skipped`` with the reason. Otherwise the Clarity order's current change event is
  fed as ``--from clarity`` would (``known`` when the poller delivered it). ERPNext itself is only read.
* **Only what a workflow would start on** is fed: an event the inbox lacks and no enabled workflow accepts (by
  trigger and filter: a completed order the poller never saw) is ``skipped`` ("no enabled workflow takes it"),
  never stored. An event the inbox holds is ``known`` either way.
* Paging, the durable cursor (``backfill.orders.<system>``), ``limit`` and the retries are
  :class:`~commerce_bridge.services.backfill.Backfill`'s; every read goes through the gateways (rate limits).
* Logs carry ids and types only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

import orjson
import structlog

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import ConfigurationError, ValidationError
from commerce_bridge.services.backfill import (
    CLARITY,
    STRIPE,
    AfterPages,
    Change,
    NumberedPages,
    OffsetPages,
    Pages,
)

__all__ = ["EVENTS_KEPT_S", "ORDER_KEY", "ClarityOrders", "ErpSalesOrders", "FeedInbox", "FeedOutcome", "OrderFeed",
           "StripePayments", "Wants"]

log = structlog.get_logger("commerce_bridge.backfill")

JsonDict = dict[str, Any]
ORDER_KEY = "clarity_order_key"
"""The PaymentIntent metadata that names its Clarity order (``mapping.metadata.ORDER_KEY``)."""
SUCCEEDED = "payment_intent.succeeded"
EVENTS_KEPT_S = 30 * 86400
"""Stripe lists the events of the last 30 days."""
SKIP_NO_WORKFLOW = "no enabled workflow takes it"
SKIP_NO_ORDER_KEY = "names no order (no metadata.clarity_order_key)"
SKIP_NO_PO_NO = "no po_no (not made by the order flow)"
SKIP_NO_CLARITY_ORDER = "no Clarity order names it (po_no matches no order)"

Wants = Callable[[str, str, JsonDict], bool]
"""``wants(source, event type, event)``: an enabled workflow would start on it (trigger and filter)."""


class FeedInbox(Protocol):
    """The inbox as the feed uses it (``store.inbox.SqlInbox``)."""

    def stored_ids(self, source: str, event_ids: Iterable[str]) -> set[str]: ...

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]: ...


class ClarityOrders(Protocol):
    """What the feed reads of Clarity (the Clarity gateway)."""

    def search_orders(self, *, page: int, size: int = 100,
                      modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]: ...

    def find_orders(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[JsonDict]: ...

    def change_event_of(self, kind: str, row: Mapping[str, Any]) -> JsonDict: ...


class StripePayments(Protocol):
    """What the feed reads of Stripe (the Stripe gateway)."""

    def list_payment_intents(self, *, page_size: int = 100, starting_after: str | None = None,
                             created_gte: int | None = None) -> tuple[list[JsonDict], bool]: ...

    def list_events(self, *, created_gte: int, created_lte: int | None = None, types: Sequence[str] = (),
                    page_size: int = 100) -> Iterator[list[JsonDict]]: ...


class ErpSalesOrders(Protocol):
    """What the feed reads of ERPNext (the ERP gateway)."""

    def list_docs(self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
                  fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None,
                  start: int = 0) -> list[JsonDict]: ...


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    """What feeding one record did: ``fed``, ``known`` or ``skipped`` (with the reason); the event's id."""

    result: str
    reason: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    conflicts: Sequence[object] = ()
    changes: Mapping[str, Change] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Item:
    """One record read on a page: its event (with its source) and, when it is not to be fed, why."""

    source: str
    event: JsonDict | None
    reason: str | None = None


class OrderFeed:
    """The order backfill's pages (:meth:`pages`, a ``PageSource``) and its per-record step (:meth:`sync_from`,
    a ``Syncer``): see the module docstring.

    Parameters
    ----------
    inbox:
        Where the events go, and which it holds.
    clarity, stripe, erp:
        The gateways (None: that source cannot be read; ``--from erp`` needs Clarity too).
    wants:
        Whether an enabled workflow would start on an event.
    on_fed:
        Called with 1 after each new inbox row (wakes the dispatchers).
    erp_tz:
        The ERPNext server's zone (``modified >=`` for ``since``).
    clock:
        Seconds since the epoch (the 30 days Stripe keeps events).
    """

    def __init__(self, inbox: FeedInbox, *, clarity: ClarityOrders | None, stripe: StripePayments | None,
                 erp: ErpSalesOrders | None, wants: Wants, on_fed: Callable[[int], Any] | None = None,
                 erp_tz: tzinfo = UTC, clock: Callable[[], float] = time.time) -> None:
        self._inbox, self._clarity, self._stripe, self._erp = inbox, clarity, stripe, erp
        self._wants, self._on_fed, self._erp_tz, self._clock = wants, on_fed, erp_tz, clock
        self._read: dict[str, _Item] = {}  # the records of the pages read and not fed yet
        self._succeeded: dict[str, tuple[str, int]] | None = None  # PaymentIntent id -> its event's id, time

    # the pages (a PageSource)

    def pages(self, system: str, size: int, since: datetime | None) -> Pages:
        """The reader of ``system``'s pages of orders (see the module docstring).

        Raises
        ------
        ConfigurationError
            (from the returned reader's first call) a gateway ``system`` needs is not configured.
        """
        if system == CLARITY:
            return NumberedPages(lambda n: self._clarity_page(n, size, since))
        if system == STRIPE:
            created_gte = int(since.timestamp()) if since is not None else None
            return AfterPages(lambda cursor: self._stripe_page(cursor, size, created_gte))
        filters = ([["modified", ">=", since.astimezone(self._erp_tz).strftime("%Y-%m-%d %H:%M:%S")]]
                   if since is not None else None)
        return OffsetPages(lambda start: self._erp_page(start, size, filters))

    def _need(self, gateway: Any, system: str) -> Any:
        if gateway is None:
            raise ConfigurationError(f"the order backfill from {system} needs {system} configured",
                                  suggested_fix={"clarity": "set CB_CLARITY_BASE_URL with its user",
                                                 "stripe": "set CB_STRIPE_API_KEY",
                                                 "erp": "set CB_ERP_BASE_URL, CB_ERP_API_KEY and CB_ERP_API_SECRET "
                                                        "(and Clarity: the Sales Orders are checked against it)"}[
                                      system])
        return gateway

    def _clarity_item(self, row: Mapping[str, Any]) -> _Item:
        clarity: ClarityOrders = self._need(self._clarity, CLARITY)
        return self._wanted(CLARITY, clarity.change_event_of("orders", row))

    def _wanted(self, source: str, event: JsonDict) -> _Item:
        if not self._wants(source, str(event["type"]), event):
            return _Item(source, event, SKIP_NO_WORKFLOW)
        return _Item(source, event)

    def _clarity_page(self, number: int, size: int, since: datetime | None) -> tuple[list[str], int | None]:
        clarity: ClarityOrders = self._need(self._clarity, CLARITY)
        rows, total = clarity.search_orders(page=number, size=size, modified_since=since)
        ids = []
        for row in rows:
            ids.append(record_id := str(row["ID"]))
            self._read[record_id] = self._clarity_item(row)
        return ids, total

    def _stripe_page(self, cursor: str | None, size: int, created_gte: int | None) -> tuple[list[str], bool]:
        stripe: StripePayments = self._need(self._stripe, STRIPE)
        rows, more = stripe.list_payment_intents(page_size=size, starting_after=cursor, created_gte=created_gte)
        ids = []
        for pi in rows:
            ids.append(record_id := str(pi["id"]))
            self._read[record_id] = self._stripe_item(pi)
        return ids, more

    def _stripe_item(self, pi: JsonDict) -> _Item:
        if not (pi.get("metadata") or {}).get(ORDER_KEY):
            return _Item(STRIPE, None, SKIP_NO_ORDER_KEY)
        if pi.get("status") != "succeeded":
            return _Item(STRIPE, None, f"not succeeded ({pi.get('status')})")
        event_id, created = self._succeeded_events().get(str(pi["id"])) or (f"evt_backfill_{pi['id']}_succeeded",
                                                                          int(self._clock()))
        return self._wanted(STRIPE, {"id": event_id, "object": "event", "type": SUCCEEDED, "created": created,
                                     "livemode": bool(pi.get("livemode")), "data": {"object": pi}})

    def _succeeded_events(self) -> dict[str, tuple[str, int]]:
        """The ids (and times) of Stripe's ``payment_intent.succeeded`` events of the last 30 days by PaymentIntent
        (read once a run; ids only, so memory stays small)."""
        if self._succeeded is None:
            stripe: StripePayments = self._need(self._stripe, STRIPE)
            found: dict[str, tuple[str, int]] = {}
            for page in stripe.list_events(created_gte=int(self._clock()) - EVENTS_KEPT_S + 60, types=[SUCCEEDED]):
                for event in page:
                    pi_id = str(((event.get("data") or {}).get("object") or {}).get("id") or "")
                    if pi_id:  # newest first: the latest, should there be two
                        found.setdefault(pi_id, (str(event["id"]), int(event.get("created") or 0)))
            self._succeeded = found
        return self._succeeded

    def _erp_page(self, start: int, size: int, filters: list[list[Any]] | None) -> list[str]:
        erp: ErpSalesOrders = self._need(self._erp, "erp")
        clarity: ClarityOrders = self._need(self._clarity, "erp")
        rows = erp.list_docs("Sales Order", start=start, limit=size, filters=filters, fields=("name", "po_no"),
                             order_by="creation asc, name asc")
        keys = sorted({str(r["po_no"]) for r in rows if r.get("po_no")})
        orders: dict[str, JsonDict] = {}
        if keys:
            orders.update((str(o.get("CustomKey")), o) for o in clarity.find_orders(keys=keys) if o.get("CustomKey"))
            by_id = [int(k) for k in keys if k not in orders and k.isdigit()]  # an order without a key: its ID
            if by_id:
                orders.update((str(o.get("ID")), o) for o in clarity.find_orders(ids=by_id))
        ids = []
        for row in rows:
            ids.append(record_id := str(row["name"]))
            po_no = str(row.get("po_no") or "")
            if not po_no:
                self._read[record_id] = _Item(CLARITY, None, SKIP_NO_PO_NO)
            elif po_no not in orders:
                self._read[record_id] = _Item(CLARITY, None, SKIP_NO_CLARITY_ORDER)
            else:
                self._read[record_id] = self._clarity_item(orders[po_no])
        return ids

    # one record (a Syncer)

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False) -> FeedOutcome:
        """Feed the event of ``record_id`` (read on the last page of ``system``) unless the inbox holds it
        (``known``, whether or not a workflow would take it) or no workflow would take it (``skipped``).

        Raises
        ------
        ValidationError
            ``record_id`` was not on a page read (a bug of the caller).
        StoreUnavailable
            The inbox cannot be read or written.
        """
        item = self._read.get(record_id)
        if item is None:
            raise ValidationError(f"{system} record {record_id} was not on a page read")
        if item.event is None:
            self._read.pop(record_id, None)
            return FeedOutcome("skipped", item.reason)
        event_id, event_type = str(item.event["id"]), str(item.event["type"])
        if item.reason is not None or dry_run:  # known before skipped: the inbox holds what it holds
            known = event_id in self._inbox.stored_ids(item.source, [event_id])
            self._read.pop(record_id, None)
            if not known and item.reason is not None:
                return FeedOutcome("skipped", item.reason, event_id=event_id, event_type=event_type)
            return FeedOutcome("known" if known else "fed", event_id=event_id, event_type=event_type)
        [new] = self._inbox.record_batch([Delivery(item.source, event_id, event_type, orjson.dumps(item.event),
                                                   datetime.now(UTC))])
        if new:
            log.info("backfill.fed", source=item.source, event_id=event_id, event_type=event_type, ref=record_id)
            if self._on_fed is not None:
                self._on_fed(1)
        self._read.pop(record_id, None)  # kept until stored: a transient failure tries it again
        return FeedOutcome("fed" if new else "known", event_id=event_id, event_type=event_type)
