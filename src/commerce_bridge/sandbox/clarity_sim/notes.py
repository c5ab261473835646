"""Notes of the Clarity simulator: CEF's ``Note`` entity, here attached to a sales order.

Rules (*inference*: the facts list a sales order's ``Notes[]`` collection, not the Note entity's own
shape, so the area, the text field and the link are guesses from CEF's naming conventions):

- route family ``/Structure/Note(s)`` (the T4 CRUD set); the text is ``Note1`` (Entity Framework's name for a
  ``Note`` property of the ``Note`` class), required and non-empty; ``SalesOrderID`` must name an order;
  ``TypeKey`` is kept as given (default ``Order Note``); ``CustomKey`` is unique like every CEF key;
- a note changes nothing on its order (no ``UpdatedDate`` bump, so the bridge's poll does not see it);
- the order's full projection lists its notes in ``Notes`` (oldest first); the search projections leave
  them out, as they leave out items and payments.
"""

from __future__ import annotations

from typing import Any

from commerce_bridge.sandbox.clarity_sim.core import ARGUMENT, CefError, Record, Sim, as_int, public
from commerce_bridge.sandbox.clarity_sim.crud import EntitySpec, register
from commerce_bridge.sandbox.clarity_sim.routing import Router

NOTE_TYPE = "Order Note"


def _prepare(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    text = record.get("Note1")
    if not isinstance(text, str) or not text.strip():
        raise CefError("Note1 is required", ARGUMENT)
    order_id = record.get("SalesOrderID")
    if order_id is not None:
        record["SalesOrderID"] = as_int(order_id, "SalesOrderID")
        if sim.store.get("SalesOrder", str(record["SalesOrderID"])) is None:
            raise CefError(f"Could not find a Sales Order with ID {record['SalesOrderID']}", ARGUMENT)
    record["TypeKey"] = str(record.get("TypeKey") or NOTE_TYPE)


NOTE = EntitySpec("Structure", "Note", "Notes", prepare=_prepare, nameable=False)


def order_notes(sim: Sim, order_id: int) -> list[Record]:
    """The notes of a sales order, oldest first, as the API renders them."""
    rows = [r for r in sim.store.all(NOTE.kind) if r.get("SalesOrderID") == order_id and r.get("Active", True)]
    return [public(r, sim) for r in sorted(rows, key=lambda r: r["ID"])]


def register_notes(router: Router) -> None:
    register(router, NOTE)
