"""The ERPNext items poller's cycle (issue 14, point 4): Items, and the Item Prices of the selling price list,
modified since their durable cursors, delivered as ``item.updated`` events for the workflow ``erp.item_changed``
(which runs the step ``product.sync``). Clarity's products are polled by its gateway
(``ClarityGateway.poll_changed_products``); Stripe sends ``product.*`` and ``price.*`` webhooks.

Rules (as ``services.customer_poll``; the cycle is ``services.doc_poll``'s):

- One cursor per doctype (``erp.items``, ``erp.item_prices``) holds the latest ``modified`` delivered; each cycle
  lists the documents modified at or after it, oldest first, page by page, and moves the cursor after the page is
  stored. The boundary's documents are listed again: an event's id is built from the document's doctype, name and
  ``modified``, so the inbox stores each change once.
- An Item Price names its Item (``item_code``); only the prices of the selling price list the sync keeps
  (``CB_ERP_SELLING_PRICE_LIST``) are listed: a buying price or another list's changes nothing the sync writes.
- The first cycle (no cursor) starts from the latest ``modified`` of each doctype: the items that exist before
  are the backfill's (``backfill products``), not a flood of syncs.
- Events carry codes, names and dates only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from commerce_bridge.services.doc_poll import doc_event, doc_poll
from commerce_bridge.services.gateways import CursorStore, ErpGateway

ITEM_UPDATED = "item.updated"
PAGE = 200
CURSORS = {"Item": "erp.items", "Item Price": "erp.item_prices"}
"""The poller's cursor per doctype."""


def _filters(doctype: str, price_list: str) -> list[list[Any]]:
    return [["price_list", "=", price_list]] if doctype == "Item Price" else []


def _changed(erp: ErpGateway, doctype: str, since: str, price_list: str,
             page_size: int) -> Iterator[list[dict[str, Any]]]:
    fields = ["name", "modified"] if doctype == "Item" else ["name", "modified", "item_code"]
    filters = [*_filters(doctype, price_list), ["modified", ">=", since]]
    yield from erp.pages(doctype, filters=filters, fields=fields, order_by="modified asc", page_size=page_size)


def item_event(doctype: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The inbox event of one changed Item or Item Price (None: an Item Price that names no item).

    Parameters
    ----------
    doctype:
        ``Item`` or ``Item Price``.
    row:
        The listing's row: ``name``, ``modified`` (and ``item_code`` for an Item Price).

    Returns
    -------
    dict | None
        ``{"id": "erp-item-<hash of doctype+name+modified>", "type": "item.updated", "data": {"item_code",
        "doctype", "name", "modified"}}``.
    """
    item_code = row.get("name") if doctype == "Item" else row.get("item_code")
    return doc_event(doctype, row, item_code, id_prefix="erp-item", event_type=ITEM_UPDATED, owner_field="item_code")


def item_poll(erp: ErpGateway, cursors: CursorStore, *, price_list: str = "Standard Selling",
              page_size: int = PAGE) -> Callable[[Callable[[list[dict[str, Any]]], Any]], None]:
    """The ERPNext items poller's cycle (``services.polling.ChangePoller``): see the module docstring.

    Parameters
    ----------
    erp:
        The ERPNext port (its listings take their rate-limit slots).
    cursors:
        Where ``erp.items`` and ``erp.item_prices`` live.
    price_list:
        ``CB_ERP_SELLING_PRICE_LIST``: the Item Prices watched.
    page_size:
        Documents per listing request.
    """
    return doc_poll(erp, cursors, CURSORS, event=item_event,
                    changed=lambda doctype, since: _changed(erp, doctype, since, price_list, page_size),
                    first_filters=lambda doctype: _filters(doctype, price_list))


__all__ = ["CURSORS", "ITEM_UPDATED", "item_event", "item_poll"]
