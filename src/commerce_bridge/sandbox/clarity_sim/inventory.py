"""Inventory of the Clarity simulator: locations, their sections, stock per product and section, and CEF's
``/Providers/Inventory`` routes as its PILS ("product inventory location section") provider answers them.

Stock lives in ``ProductInventoryLocationSection`` rows (product = ``MasterID``, section = ``SlaveID``,
``Quantity``, ``QuantityAllocated``, ``QuantityPreSold``, ``Hash``). CEF generates no CRUD routes for those
rows: they are written through ``UpdateInventoryForProduct`` / ``BulkUpdateInventoryForProducts`` and read
through ``CalculateInventory`` / ``BulkCalculateInventory``, which sum the active rows of active sections.
Writing stock changes the row's ``UpdatedDate`` only, never the product's, so a product search with
``ModifiedSince`` does not see stock changes (as in CEF).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    INVALID_OPERATION,
    CefError,
    Record,
    Req,
    Sim,
    action_response,
    as_int,
    money,
)
from commerce_bridge.sandbox.clarity_sim.crud import EntitySpec, create_record, register, render
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.search import Predicate, SearchModel

PILS = "ProductInventoryLocationSection"
DEFAULT_LOCATION_KEY = "DEFAULT"
DEFAULT_SECTION_KEY = "DEFAULT-MAIN"
_QUANTITIES = ("Quantity", "QuantityAllocated", "QuantityPreSold")
_PRODUCT_LIMITS = ("MaximumPurchaseQuantity", "MaximumPurchaseQuantityIfPastPurchased")


def _stock_rows(sim: Sim, *, product_id: int | None = None, section_id: int | None = None) -> list[Record]:
    return [r for r in sim.store.all(PILS) if r.get("Active", True)
            and (product_id is None or r.get("MasterID") == product_id)
            and (section_id is None or r.get("SlaveID") == section_id)]


def _render_stock(sim: Sim, row: Record) -> Record:
    section = sim.store.get("InventoryLocationSection", str(row["SlaveID"])) or {}
    out: Record = {"ID": row["ID"], "Active": True, "CreatedDate": sim.clock.render(row.get("_c")),
                   "UpdatedDate": sim.clock.render(row.get("_u")), "MasterID": row["MasterID"],
                   "SlaveID": row["SlaveID"],
                   "InventoryLocationSectionInventoryLocationID": section.get("InventoryLocationID")}
    for name in (*_QUANTITIES, "CustomKey", "Hash"):
        if row.get(name) is not None:
            out[name] = row[name]
    return out


# -- locations and sections -----------------------------------------------------------------------

def _expand_location(sim: Sim, record: Record, projection: str) -> Record:
    out = dict(record)
    if projection == "full":
        out["Sections"] = [render(sim, SECTION, s) for s in sim.store.all("InventoryLocationSection")
                           if s.get("InventoryLocationID") == record["ID"]]
    return out


LOCATION = EntitySpec("Inventory", "InventoryLocation", "InventoryLocations", expand=_expand_location,
                      event="inventorylocation")


def _prepare_section(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    for name in ("InventoryLocationKey", "InventoryLocationName", "InventoryLocation",
                 "ProductInventoryLocationSections"):
        record.pop(name, None)
    location_id: int | None = None
    if body.get("InventoryLocationID"):
        location_id = as_int(body["InventoryLocationID"], "InventoryLocationID")
    elif body.get("InventoryLocationKey"):
        found = next((r for r in sim.store.all("InventoryLocation")
                      if r.get("CustomKey") == body["InventoryLocationKey"]), None)
        location_id = int(found["ID"]) if found else -1
    if location_id is not None:
        if sim.store.get("InventoryLocation", str(location_id)) is None:
            raise CefError("InventoryLocationID must name an existing inventory location", ARGUMENT)
        record["InventoryLocationID"] = location_id
    elif existing is None:
        raise CefError("InventoryLocationID is required", ARGUMENT)


def _expand_section(sim: Sim, record: Record, projection: str) -> Record:
    out = dict(record)
    location = sim.store.get("InventoryLocation", str(record.get("InventoryLocationID"))) or {}
    out["InventoryLocationKey"] = location.get("CustomKey")
    out["InventoryLocationName"] = location.get("Name")
    if projection == "full":
        out["ProductInventoryLocationSections"] = [_render_stock(sim, r)
                                                   for r in _stock_rows(sim, section_id=int(record["ID"]))]
    return out


def _section_filters(sim: Sim, model: SearchModel) -> list[Predicate]:
    if (location_id := model.integer("InventoryLocationID")) is None:
        return []
    return [lambda r: r.get("InventoryLocationID") == location_id]


SECTION = EntitySpec("Inventory", "InventoryLocationSection", "InventoryLocationSections", prepare=_prepare_section,
                     expand=_expand_section, filters=_section_filters, event="inventorylocationsection")


def seed_inventory(sim: Sim) -> None:
    """One location ``DEFAULT`` ("Default Warehouse") with one section ``DEFAULT-MAIN``, on first start."""
    if sim.store.all("InventoryLocation"):
        return
    location = create_record(sim, LOCATION, {"CustomKey": DEFAULT_LOCATION_KEY, "Name": "Default Warehouse"})
    create_record(sim, SECTION, {"CustomKey": DEFAULT_SECTION_KEY, "Name": "Main",
                                 "InventoryLocationID": location["ID"]})


# -- stock ----------------------------------------------------------------------------------------

def _quantity(value: Any, name: str) -> Decimal | None:
    return None if value is None else money(value, name)


def _section_usable(sim: Sim, section_id: int) -> bool:
    section = sim.store.get("InventoryLocationSection", str(section_id))
    if section is None or not section.get("Active", True):
        return False
    location = sim.store.get("InventoryLocation", str(section.get("InventoryLocationID")))
    return location is not None and bool(location.get("Active", True))


def _write_stock(sim: Sim, product_id: int, section_id: int, values: dict[str, Any]) -> bool:
    """Insert or update the stock row of (product, section); returns whether anything changed."""
    now = sim.clock.now_us()
    current = next(iter(_stock_rows(sim, product_id=product_id, section_id=section_id)), None)
    if current is None:
        row: Record = {"ID": sim.store.next_value(PILS), "Active": True, "MasterID": product_id,
                       "SlaveID": section_id, "_c": now, "_u": now, **values}
        sim.store.put(PILS, row["ID"], row)
    else:
        if all(current.get(k) == v for k, v in values.items()):
            return False  # "All data matches already": no write, no new UpdatedDate
        sim.store.put(PILS, current["ID"], {**current, **values, "_u": now})
    product = sim.store.get("Product", str(product_id)) or {}
    sim.notify("inventory", "updated", {"ID": product_id, "CustomKey": product.get("CustomKey"), "_u": now})
    return True


def calculate(sim: Sim, product_id: int) -> Record:
    """CEF's ``CalculatedInventory`` for one product (the PILS provider; pre-sale and back-order off)."""
    product = sim.store.get("Product", str(product_id))
    if product is None:
        raise CefError("Sequence contains no elements", INVALID_OPERATION)
    result: Record = {"ProductID": product_id}
    if product.get("IsDiscontinued"):
        return {**result, "IsDiscontinued": True, "IsOutOfStock": True}
    unlimited = bool(product.get("IsUnlimitedStock"))
    result["IsUnlimitedStock"] = unlimited
    rows = [r for r in _stock_rows(sim, product_id=product_id) if _section_usable(sim, int(r["SlaveID"]))]
    on_hand: Decimal | None = None
    if rows:
        present = sum((Decimal(r.get("Quantity") or 0) for r in rows), Decimal("0.0000"))
        allocated = sum((Decimal(r.get("QuantityAllocated") or 0) for r in rows), Decimal("0.0000"))
        on_hand = max(Decimal("0.0000"), present - allocated)
        result.update({"QuantityPresent": present, "QuantityAllocated": allocated, "QuantityOnHand": on_hand,
                       "RelevantLocations": [_render_stock(sim, r) for r in rows]})
    for name in _PRODUCT_LIMITS:
        if product.get(name) is not None:
            result[name] = product[name]
    result["IsOutOfStock"] = not unlimited and (on_hand is None or on_hand <= 0)
    return result


def available_count(sim: Sim, product_id: int) -> Decimal:
    """Sum of ``Quantity - QuantityAllocated`` over the product's rows that have something available."""
    total = Decimal("0.0000")
    for row in _stock_rows(sim, product_id=product_id):
        if row.get("Quantity") is None:
            continue
        free = Decimal(row["Quantity"]) - Decimal(row.get("QuantityAllocated") or 0)
        if free > 0:
            total += free
    return total


def _product_ids(req: Req) -> list[int]:
    body = req.body_dict()
    raw = body.get("ProductIDs")
    if not isinstance(raw, list) or not raw:
        raise CefError("ProductIDs must not be empty", ARGUMENT)
    return list(dict.fromkeys(as_int(v, "ProductIDs") for v in raw))


async def _calculate(sim: Sim, req: Req) -> Response:
    ident = as_int(req.params["ID"], "ID")
    if ident <= 0:
        raise CefError("ID must be a valid identifier", ARGUMENT)
    return action_response(True, result=calculate(sim, ident))


async def _bulk_calculate(sim: Sim, req: Req) -> Response:
    ids = _product_ids(req)
    active = {int(p["ID"]) for p in sim.store.all("Product") if p.get("Active", True)}
    return action_response(True, result={str(i): calculate(sim, i) for i in ids if i in active})


async def _bulk_count(sim: Sim, req: Req) -> Response:
    return action_response(True, result={str(i): available_count(sim, i) for i in _product_ids(req) if i > 0})


async def _has_any(sim: Sim, req: Req) -> Response:
    ident = as_int(req.params["ID"], "ID")
    return action_response(True, result=available_count(sim, ident) > 0)


async def _update_one(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    product_id = as_int(body.get("ID") or 0, "ID")
    section_id = as_int(body.get("RelevantLocationID") or 0, "RelevantLocationID")
    if product_id <= 0 or section_id <= 0:
        raise CefError("ID and RelevantLocationID must be valid identifiers", ARGUMENT)
    if sim.store.get("Product", str(product_id)) is None or \
            sim.store.get("InventoryLocationSection", str(section_id)) is None:
        raise CefError("An error occurred while updating the entries (foreign key: no such product or section)")
    values = {name: _quantity(body.get(name), name) for name in _QUANTITIES}
    values["Hash"] = body.get("RelevantHash")
    with sim.store.batch():
        _write_stock(sim, product_id, section_id, values)
    return action_response(True)


async def _update_bulk(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    pushes = body.get("InventoryToPush")
    if not isinstance(pushes, list):
        raise CefError("InventoryToPush is required", ARGUMENT)
    with sim.store.batch():
        for push in pushes:
            if not isinstance(push, dict) or not isinstance(push.get("RelevantLocations"), list):
                raise CefError("Object reference not set to an instance of an object (RelevantLocations)")
            product_id = as_int(push.get("ProductID") or 0, "ProductID")
            if product_id <= 0 or sim.store.get("Product", str(product_id)) is None:
                continue  # CEF skips unknown products without a message
            seen: set[int] = set()
            for location in push["RelevantLocations"]:
                section_id = as_int((location or {}).get("SlaveID") or 0, "SlaveID")
                if section_id in seen or section_id <= 0 or \
                        sim.store.get("InventoryLocationSection", str(section_id)) is None:
                    continue  # the first entry per section wins; unknown sections are skipped
                seen.add(section_id)
                values = {name: _quantity(location.get(name), name) for name in _QUANTITIES}
                values["CustomKey"] = location.get("CustomKey")
                values["Hash"] = location.get("Hash")
                _write_stock(sim, product_id, section_id, values)
    return action_response(True)


def register_inventory(router: Router) -> None:
    base = "/Providers/Inventory"
    view, update = "Products.Product.View", "Products.Product.Update"
    router.add("GET", f"{base}/CalculateInventory/{{ID}}", _calculate, view)
    router.add("GET", f"{base}/CheckHasAnyAvailableInventory/{{ID}}", _has_any, view)
    router.add("POST", f"{base}/BulkCalculateInventory", _bulk_calculate, view)
    router.add("POST", f"{base}/BulkCalculateInventoryCount", _bulk_count, view)
    router.add("PATCH", f"{base}/UpdateInventoryForProduct", _update_one, update)
    router.add("PUT", f"{base}/BulkUpdateInventoryForProducts", _update_bulk, update)
    register(router, LOCATION)
    register(router, SECTION)
