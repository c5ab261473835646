"""The cycle of an ERPNext poller that follows documents by their ``modified`` (``services.customer_poll``,
``services.product_poll``): one durable cursor per doctype, changed documents delivered as inbox events.

Rules kept here:

- A cursor holds the latest ``modified`` delivered of its doctype; each cycle lists the documents modified at or
  after it, oldest first, page by page (the poller's ``changed``), delivers the page's events and moves the cursor
  after the page is stored. The boundary's documents are listed again: the poller's ``event`` builds an event id
  from the document's doctype, name and ``modified``, so the inbox stores each change once.
- The first cycle (no cursor) delivers nothing: the cursor starts at the latest ``modified`` of the doctype (among
  the documents ``first_filters`` keeps), or at :data:`BEGINNING` when there is none yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from commerce_bridge.services.gateways import CursorStore, ErpGateway

BEGINNING = "1900-01-01 00:00:00.000000"
"""The cursor of a doctype that had no document at the first cycle: every later one is new."""

Row = dict[str, Any]


def doc_event(doctype: str, row: Mapping[str, Any], owner: object, *, id_prefix: str, event_type: str,
              owner_field: str) -> Row | None:
    """The inbox event of one changed document ``row`` (``name``, ``modified``) of ``owner`` (None: no owner).

    Returns
    -------
    dict | None
        ``{"id": "<id_prefix>-<hash of doctype+name+modified>", "type": event_type, "data": {owner_field,
        "doctype", "name", "modified"}}``: codes, names and dates only.
    """
    if not owner:
        return None
    digest = hashlib.sha256(f"{doctype}|{row['name']}|{row['modified']}".encode()).hexdigest()[:32]
    return {"id": f"{id_prefix}-{digest}", "type": event_type,
            "data": {owner_field: str(owner), "doctype": doctype, "name": str(row["name"]),
                     "modified": str(row["modified"])}}


def _no_filters(doctype: str) -> list[list[Any]]:
    return []


def doc_poll(erp: ErpGateway, cursors: CursorStore, doctypes: Mapping[str, str], *,
             changed: Callable[[str, str], Iterable[list[Row]]],
             event: Callable[[str, Mapping[str, Any]], Row | None],
             first_filters: Callable[[str], list[list[Any]]] = _no_filters,
             ) -> Callable[[Callable[[list[Row]], Any]], None]:
    """A poller's cycle (``services.polling.ChangePoller``): see the module docstring.

    Parameters
    ----------
    erp:
        The ERPNext port.
    cursors:
        Where the cursors live.
    doctypes:
        Doctype -> the name of its cursor, polled in this order.
    changed:
        ``(doctype, since)`` -> the pages of documents modified at or after ``since``, oldest first.
    event:
        ``(doctype, row)`` -> the row's inbox event, or None (nothing to deliver for it).
    first_filters:
        The filters of the first cycle's look-up of the latest ``modified`` (none by default).
    """

    def poll(deliver: Callable[[list[Row]], Any]) -> None:
        for doctype, cursor in doctypes.items():
            since = cursors.get(cursor)
            if since is None:  # the first cycle: from the latest change (none yet: from the beginning)
                newest = erp.list_docs(doctype, filters=first_filters(doctype) or None, fields=["modified"],
                                       limit=1, order_by="modified desc")
                cursors.set(cursor, str(newest[0]["modified"]) if newest else BEGINNING)
                continue
            for page in changed(doctype, since):
                events = [e for r in page if (e := event(doctype, r)) is not None]
                if events:
                    deliver(events)
                latest = max(str(r["modified"]) for r in page)
                if latest != since:
                    cursors.set(cursor, latest)
                    since = latest

    return poll
