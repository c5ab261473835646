"""The ERPNext customer poller's cycle (issue 14, point 1): Customers, and the Contacts and Addresses linked to a
Customer, modified since their durable cursors, delivered as ``customer.updated`` events for the workflow
``erp.customer_changed`` (which runs the step ``customer.sync``). Clarity's accounts are polled by its gateway
(``ClarityGateway.poll_changed_accounts``); Stripe sends ``customer.*`` webhooks.

Rules (as ``services.stock_push.bin_poll``; the cycle is ``services.doc_poll``'s):

- One cursor per doctype (``erp.customers``, ``erp.customer_contacts``, ``erp.customer_addresses``) holds the
  latest ``modified`` delivered; each cycle lists the documents modified at or after it, oldest first, page by
  page, and moves the cursor after the page is stored. The boundary's documents are listed again: an event's id
  is built from the document's doctype, name and ``modified``, so the inbox stores each change once.
- A Contact or Address names its Customer through its ``links`` (Dynamic Link, ``link_doctype`` = Customer): the
  listing asks for that link's ``link_name`` (no read per document). One not linked to a Customer is not listed.
- The first cycle (no cursor) starts from the latest ``modified`` of each doctype: the customers that exist before
  are the backfill's (``backfill customers``), not a flood of syncs.
- Events carry names and dates only (no name, e-mail or phone of a person in the inbox).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from commerce_bridge.services.doc_poll import doc_event, doc_poll
from commerce_bridge.services.gateways import CursorStore, ErpGateway

CUSTOMER_UPDATED = "customer.updated"
PAGE = 200
CURSORS = {"Customer": "erp.customers", "Contact": "erp.customer_contacts", "Address": "erp.customer_addresses"}
"""The poller's cursor per doctype."""
_LINKED = [["Dynamic Link", "link_doctype", "=", "Customer"]]


def _changed(erp: ErpGateway, doctype: str, since: str | None, page_size: int) -> Iterator[list[dict[str, Any]]]:
    customer = doctype == "Customer"
    fields = ["name", "modified"] if customer else ["name", "modified", "links.link_name"]
    filters: list[list[Any]] = [] if customer else list(_LINKED)
    if since:
        filters.append(["modified", ">=", since])
    yield from erp.pages(doctype, filters=filters, fields=fields, order_by="modified asc", page_size=page_size)


def customer_event(doctype: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The inbox event of one changed document (None: a Contact or Address linked to no Customer)."""
    customer = row.get("name") if doctype == "Customer" else row.get("link_name")
    return doc_event(doctype, row, customer, id_prefix="erp-cus", event_type=CUSTOMER_UPDATED, owner_field="customer")


def customer_poll(erp: ErpGateway, cursors: CursorStore, *,
                  page_size: int = PAGE) -> Callable[[Callable[[list[dict[str, Any]]], Any]], None]:
    """The ERPNext customer poller's cycle (``services.polling.ChangePoller``): see the module docstring."""
    return doc_poll(erp, cursors, CURSORS, event=customer_event,
                    changed=lambda doctype, since: _changed(erp, doctype, since, page_size))
