"""The inbox events of polled product changes (Clarity products, ERPNext Items and Item Prices): stable ids, ids and
dates only; and the ERPNext items poller's cycle: the first cycle starts from the latest change, the cursor moves
after each page is stored, the boundary is listed again under the same event ids, other price lists are not read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from commerce_bridge.connectors.clarity.changes import product_change_event
from commerce_bridge.services.product_poll import CURSORS, item_event, item_poll

ZONE = ZoneInfo("America/Chicago")
PRODUCT = {"ID": 7, "CustomKey": "SKU-1", "Name": "Widget", "PriceBase": "9.9900", "CreatedDate": "2026-12-01T10:00:00",
           "UpdatedDate": "2026-12-07T10:00:00"}


def test_a_clarity_product_change_has_an_id_of_its_id_and_date_and_carries_ids_and_date_only() -> None:
    event = product_change_event(PRODUCT, ZONE)
    assert event == product_change_event(dict(PRODUCT), ZONE)
    assert event["id"].startswith("clarity-prod-") and event["type"] == "product.updated"
    assert event["data"] == {"ID": 7, "CustomKey": "SKU-1", "UpdatedDate": "2026-12-07T10:00:00"}
    assert product_change_event({**PRODUCT, "UpdatedDate": PRODUCT["CreatedDate"]}, ZONE)["type"] == "product.created"
    assert product_change_event({**PRODUCT, "UpdatedDate": "2026-12-07T10:00:01"}, ZONE)["id"] != event["id"]
    # the same instant written in another zone is the same change
    assert product_change_event({**PRODUCT, "UpdatedDate": "2026-12-07T16:00:00Z"}, ZONE)["id"] == event["id"]


def test_an_erpnext_item_or_item_price_change_names_its_item_and_a_price_of_no_item_makes_none() -> None:
    price = {"name": "ip-0001", "modified": "2026-12-07 10:00:00.123456", "item_code": "SKU-1"}
    event = item_event("Item Price", price)
    assert event is not None and event == item_event("Item Price", dict(price))
    assert event["id"].startswith("erp-item-") and event["type"] == "item.updated"
    assert event["data"] == {"item_code": "SKU-1", "doctype": "Item Price", "name": "ip-0001",
                             "modified": "2026-12-07 10:00:00.123456"}
    item = item_event("Item", {"name": "SKU-1", "modified": "2026-12-07 10:00:00.123456"})
    assert item is not None and item["data"]["item_code"] == "SKU-1" and item["id"] != event["id"]
    assert item_event("Item Price", {**price, "item_code": None}) is None


class ListingErp:
    """The two ERPNext list calls the poller makes (``list_docs``, ``pages``), over rows held in memory, with
    Frappe's semantics for the filters and orders it sends (``=`` and ``>=``; ``modified asc|desc``)."""

    def __init__(self) -> None:
        self.docs: dict[str, list[dict[str, Any]]] = {"Item": [], "Item Price": []}
        self.requests: list[tuple[str, list[list[Any]]]] = []

    def save(self, doctype: str, name: str, modified: str, **fields: Any) -> None:
        rows = self.docs[doctype]
        rows[:] = [r for r in rows if r["name"] != name]
        rows.append({"name": name, "modified": modified, **fields})

    def list_docs(self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
                  fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None,
                  start: int = 0) -> list[dict[str, Any]]:
        conditions = [list(f) for f in filters or []]
        self.requests.append((doctype, conditions))
        rows = [r for r in self.docs[doctype]
                if all((r.get(f) == v) if op == "=" else (str(r.get(f)) >= str(v)) for f, op, v in conditions)]
        field, _, direction = (order_by or "modified desc").partition(" ")
        rows.sort(key=lambda r: (str(r[field]), r["name"]), reverse=direction == "desc")
        return [{k: r.get(k) for k in fields} for r in rows[start:start + limit]]

    def pages(self, doctype: str, *, filters: Sequence[Sequence[Any]] | None = None,
              fields: Sequence[str] = ("name",), order_by: str = "creation asc",
              page_size: int = 200) -> Iterator[list[dict[str, Any]]]:
        start = 0
        while True:
            rows = self.list_docs(doctype, filters=filters, fields=fields, limit=page_size, order_by=order_by,
                                  start=start)
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            start += len(rows)


class Cursors(dict[str, str]):
    def set(self, name: str, value: str) -> None:
        self[name] = value


def _poll(erp: ListingErp, cursors: Cursors, *, page_size: int = 2) -> list[dict[str, Any]]:
    delivered: list[dict[str, Any]] = []
    item_poll(erp, cursors, price_list="Standard Selling", page_size=page_size)(delivered.extend)  # type: ignore[arg-type]
    return delivered


def test_the_first_erpnext_items_cycle_starts_from_the_latest_change_and_delivers_nothing() -> None:
    erp, cursors = ListingErp(), Cursors()
    erp.save("Item", "OLD-1", "2026-12-01 09:00:00.000001")
    erp.save("Item", "OLD-2", "2026-12-02 09:00:00.000001")
    assert _poll(erp, cursors) == []
    assert cursors == {CURSORS["Item"]: "2026-12-02 09:00:00.000001", CURSORS["Item Price"]: "1900-01-01 00:00:00.000000"}
    assert _poll(erp, cursors) == [item_event("Item", {"name": "OLD-2", "modified": "2026-12-02 09:00:00.000001"})]


def test_erpnext_changes_are_delivered_page_by_page_with_the_boundary_listed_again_under_the_same_ids() -> None:
    erp, cursors = ListingErp(), Cursors()
    erp.save("Item", "SKU-0", "2026-12-07 09:00:00.000000")
    _poll(erp, cursors)  # the first cycle: cursors at the latest
    for n in range(1, 4):
        erp.save("Item", f"SKU-{n}", f"2026-12-07 10:00:0{n}.000000")
    erp.save("Item Price", "ip-1", "2026-12-07 10:00:05.000000", item_code="SKU-1", price_list="Standard Selling")
    erp.save("Item Price", "ip-2", "2026-12-07 10:00:06.000000", item_code="SKU-2", price_list="Standard Buying")
    events = _poll(erp, cursors)
    codes = [(e["data"]["doctype"], e["data"]["item_code"]) for e in events]
    # SKU-0 is the boundary (modified == the cursor): listed again, same event id, so the inbox stores it once
    assert codes == [("Item", "SKU-0"), ("Item", "SKU-1"), ("Item", "SKU-2"), ("Item", "SKU-3"),
                     ("Item Price", "SKU-1")]
    assert cursors[CURSORS["Item"]] == "2026-12-07 10:00:03.000000"
    assert cursors[CURSORS["Item Price"]] == "2026-12-07 10:00:05.000000"
    assert all(["price_list", "=", "Standard Selling"] in f for d, f in erp.requests if d == "Item Price")
    again = _poll(erp, cursors)  # nothing new: only the boundaries, with the ids already stored
    assert {e["id"] for e in again} <= {e["id"] for e in events}
    assert [e["data"]["item_code"] for e in again] == ["SKU-3", "SKU-1"]


def test_the_cursor_moves_only_after_a_page_is_stored() -> None:
    erp, cursors = ListingErp(), Cursors()
    _poll(erp, cursors)  # no items yet: every later one is new
    for n in range(1, 5):
        erp.save("Item", f"SKU-{n}", f"2026-12-07 10:00:0{n}.000000")
    stored: list[dict[str, Any]] = []

    def deliver(events: list[dict[str, Any]]) -> None:
        if stored:
            raise RuntimeError("the inbox is down")
        stored.extend(events)

    with pytest.raises(RuntimeError):
        item_poll(erp, cursors, page_size=2)(deliver)  # type: ignore[arg-type]
    assert [e["data"]["item_code"] for e in stored] == ["SKU-1", "SKU-2"]
    assert cursors[CURSORS["Item"]] == "2026-12-07 10:00:02.000000"  # the first page's latest, not further
    assert [e["data"]["item_code"] for e in _poll(erp, cursors)] == ["SKU-2", "SKU-3", "SKU-4"]
