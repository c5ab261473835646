"""Party and stock masters of the ERPNext simulator: Contact, Address, Price List, Item Price, Warehouse, Bin,
Stock Entry and Stock Reconciliation, and the primary contact and address a Customer creates for itself.

Rules, as frappe's and ERPNext's controllers apply them (``contact.py``, ``address.py``, ``item_price.py``,
``customer.py``):
- a Contact is named ``"{full name}-{first linked name}"`` (``"-1"``, ``"-2"`` when taken); ``full_name`` is
  first, middle and last name (or ``company_name``); its ``email_id``, ``phone`` and ``mobile_no`` are
  *derived* from the ``email_ids`` / ``phone_nos`` rows marked primary (a sole email row becomes primary),
  so a Contact saved without ``email_ids`` has no ``email_id`` whatever was sent; two primary rows are a
  ValidationError; ``links`` rows (``link_doctype``, ``link_name``) must name existing documents and are
  de-duplicated, ``link_title`` is filled;
- an Address needs ``address_line1``, ``city``, ``country``; ``address_type`` (default Billing) is one of
  ERPNext's options; ``address_title`` defaults to the first link's name and the Address is named
  ``"{title}-{type}"`` (``"-1"``, ``"-2"`` when taken); setting ``is_primary_address`` or
  ``is_shipping_address`` clears that flag on the other addresses of the same linked documents;
- a Price List (``price_list_name``, ``currency``) is for buying and/or selling; ``Standard Selling`` and
  ``Standard Buying`` (USD) are seeded;
- an Item Price takes ``buying``, ``selling`` and **``currency`` from its price list** (what was sent is
  replaced), ``uom`` defaults to the item's ``stock_uom``, ``item_name``/``item_description`` come from the
  item; a second price for the same item, price list, uom, customer/supplier, batch and ``valid_from`` is
  an ``ItemPriceDuplicateItem`` error (417); it is named by a random hash;
- a Warehouse is named ``"{warehouse_name} - {company abbr}"``; ``Stores``, ``Finished Goods`` and
  ``Work In Progress`` are seeded per company;
- stock moves only through submitted Stock Entries (Material Receipt / Issue / Transfer) and Stock
  Reconciliations; each updates the ``Bin`` of (item, warehouse): ``actual_qty``, ``projected_qty`` and
  its ``modified`` time. A Bin cannot be written through the API. Taking more than a warehouse holds is a
  ``NegativeStockError`` (417). Cancelling reverses the movement;
- a Customer saved with ``email_id`` or ``mobile_no`` and no ``customer_primary_contact`` creates a Contact
  ``"{customer}-{customer}"`` (first name = the customer's name, linked to it, that email and mobile
  primary) and stores its name in ``customer_primary_contact``; a new Customer with ``address_line1`` also
  creates its primary Address (``city`` and ``country`` required) into ``customer_primary_address``.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.erp_sim import accounts
from commerce_bridge.sandbox.erp_sim.errors import FrappeError

Doc = dict[str, Any]
ADDRESS_TYPES = ("Billing", "Shipping", "Office", "Personal", "Plant", "Postal", "Shop", "Subsidiary", "Warehouse",
                 "Current", "Permanent", "Other")
STOCK_ENTRY_TYPES = ("Material Receipt", "Material Issue", "Material Transfer")
SEEDED_WAREHOUSES = ("Stores", "Finished Goods", "Work In Progress")
SEEDED_PRICE_LISTS = (("Standard Selling", 1, 0), ("Standard Buying", 0, 1))
QTY = Decimal("0.000001")


class Inserter(Protocol):
    """What a hook needs of the simulator to insert a document with the full validation."""

    store: DocStore

    def insert_named(self, doctype_name: str, body: Doc) -> Doc: ...


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


def _flag(value: Any) -> int:
    return 1 if str(value).strip().lower() in ("1", "true") else 0


def _qty(value: Any, name: str) -> Decimal:
    from commerce_bridge.sandbox.erp_sim.doctypes import dec

    return dec(value, name).quantize(QTY)


def _append_number(store: DocStore, doctype: str, base: str) -> str:
    if store.get(doctype, base) is None:
        return base
    n = 1
    while store.get(doctype, f"{base}-{n}") is not None:
        n += 1
    return f"{base}-{n}"


# -- links ----------------------------------------------------------------------------------------

def _check_links(store: DocStore, doc: Doc) -> None:
    """Validate ``links`` (Dynamic Link rows): existing targets, no duplicates, ``link_title`` filled."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for row in doc.get("links") or []:
        target, name = str(row.get("link_doctype") or ""), str(row.get("link_name") or "").strip()
        if not target or not name:
            raise FrappeError("MandatoryError", f"Error: Value missing for Dynamic Link: Link Document Type and "
                                                f"Link Name (row {row.get('idx')})")
        linked = store.get(target, name)
        if linked is None:
            raise FrappeError("LinkValidationError", f"Could not find Row #{row.get('idx')}: Link Name: {name}")
        if (target, name) in seen:
            continue
        seen.add((target, name))
        row["link_name"] = name
        row["link_title"] = linked.get("customer_name") or linked.get("title") or name
        kept.append(row)
    for i, row in enumerate(kept, start=1):
        row["idx"] = i
    if "links" in doc:
        doc["links"] = kept


def _has_link(doc: Doc, target: str, name: str) -> bool:
    return any(r.get("link_doctype") == target and r.get("link_name") == name for r in doc.get("links") or [])


def _link_pairs(doc: Doc) -> list[tuple[Any, Any]]:
    return [(r.get("link_doctype"), r.get("link_name")) for r in doc.get("links") or []]


def linked_to(store: DocStore, doctype: str, links: list[Doc]) -> list[Doc]:
    """The ``doctype`` documents (Contact, Address) that may link to any of ``links``, in insertion order.

    A superset through the store's index of ``links`` rows: test each with :func:`_has_link`.
    """
    return store.lookup(doctype, "links", _link_pairs, [(r["link_doctype"], r["link_name"]) for r in links])


# -- Contact --------------------------------------------------------------------------------------

def full_name(doc: Doc) -> str:
    name = " ".join(str(doc.get(f) or "").strip() for f in ("first_name", "middle_name", "last_name")
                    if str(doc.get(f) or "").strip())
    return name or str(doc.get("company_name") or "")


def _primary(rows: list[Doc], flag: str, value_field: str, label: str) -> str:
    chosen = [r for r in rows if _flag(r.get(flag))]
    if len(chosen) > 1:
        raise FrappeError("ValidationError", f"Only one {label} can be set as primary.")
    for row in rows:
        row[flag] = _flag(row.get(flag))
    return str(chosen[0].get(value_field) or "").strip() if chosen else ""


def compute_contact(store: DocStore, doc: Doc) -> None:
    doc["full_name"] = full_name(doc)
    emails = doc.get("email_ids") or []
    if len(emails) == 1:
        emails[0]["is_primary"] = 1
    doc["email_id"] = _primary(emails, "is_primary", "email_id", "Email ID")
    phones = doc.get("phone_nos") or []
    doc["phone"] = _primary(phones, "is_primary_phone", "phone", "Phone")
    doc["mobile_no"] = _primary(phones, "is_primary_mobile_no", "phone", "Mobile No")
    doc["is_primary_contact"] = _flag(doc.get("is_primary_contact"))
    _check_links(store, doc)


def contact_name(store: DocStore, doc: Doc) -> str:
    base = doc["full_name"]
    links = doc.get("links") or []
    if links:
        base = f"{base}-{links[0]['link_name']}"
    return _append_number(store, "Contact", base)


# -- Address --------------------------------------------------------------------------------------

def compute_address(store: DocStore, doc: Doc) -> None:
    if doc.get("address_type") not in ADDRESS_TYPES:
        raise FrappeError("ValidationError", f"Address Type cannot be \"{doc.get('address_type')}\". It should be "
                                             f"one of {', '.join(ADDRESS_TYPES)}")
    _check_links(store, doc)
    if not doc.get("address_title"):
        links = doc.get("links") or []
        doc["address_title"] = (links[0].get("link_title") or links[0]["link_name"]) if links else None
    if not doc.get("address_title"):
        raise FrappeError("ValidationError", "Address Title is mandatory.")
    for flag in ("is_primary_address", "is_shipping_address", "disabled"):
        doc[flag] = _flag(doc.get(flag))
    now = _now()
    for flag in ("is_primary_address", "is_shipping_address"):
        if not doc[flag]:
            continue
        for other in linked_to(store, "Address", doc.get("links") or []):
            if other["name"] == doc.get("name") or not other.get(flag) or other.get("disabled"):
                continue
            if any(_has_link(other, r["link_doctype"], r["link_name"]) for r in doc.get("links") or []):
                store.put("Address", other["name"], {**other, flag: 0, "modified": now})


def address_name(store: DocStore, doc: Doc) -> str:
    base = f"{str(doc['address_title']).strip()}-{doc['address_type']}"
    if store.get("Address", base) is None:
        return base
    prefix = f"{base}-"
    n = store.next_value("series:" + prefix)
    while store.get("Address", f"{prefix}{n}") is not None:
        n = store.next_value("series:" + prefix)
    return f"{prefix}{n}"


# -- prices ---------------------------------------------------------------------------------------

def compute_price_list(store: DocStore, doc: Doc) -> None:
    for flag in ("buying", "selling", "enabled"):
        doc[flag] = _flag(doc.get(flag))
    if not doc["buying"] and not doc["selling"]:
        raise FrappeError("ValidationError", "Price List must be applicable for Buying or Selling")


def compute_item_price(store: DocStore, doc: Doc) -> None:
    from commerce_bridge.sandbox.erp_sim.doctypes import cur

    item = store.get("Item", str(doc.get("item_code")))
    if item is None:
        raise FrappeError("ValidationError", f"Item {doc.get('item_code')} not found.")
    price_list = store.get("Price List", str(doc.get("price_list")))
    if price_list is None or not price_list.get("enabled"):
        raise FrappeError("ValidationError", f"The price list {doc.get('price_list')} does not exist or is disabled")
    doc.update({"buying": price_list["buying"], "selling": price_list["selling"], "currency": price_list["currency"],
                "item_name": item.get("item_name"), "item_description": item.get("description"),
                "price_list_rate": cur(doc.get("price_list_rate", 0), "price_list_rate")})
    doc["uom"] = doc.get("uom") or item.get("stock_uom")
    if doc["selling"] and not doc["buying"]:
        doc["supplier"] = None
    if doc["buying"] and not doc["selling"]:
        doc["customer"] = None
    doc["reference"] = doc.get("customer") if doc["selling"] else doc.get("supplier")

    def same(other: Doc, field: str) -> bool:
        return (other.get(field) or None) == (doc.get(field) or None)

    for other in store.lookup("Item Price", "item_price_list", _item_price_list,
                              [(doc.get("item_code"), doc.get("price_list"))]):
        if other["name"] != doc.get("name") and other.get("item_code") == doc["item_code"] \
                and other.get("price_list") == doc["price_list"] \
                and all(same(other, f) for f in ("uom", "valid_from", "customer", "supplier", "batch_no",
                                                 "packing_unit")):
            raise FrappeError("ItemPriceDuplicateItem", "Item Price appears multiple times based on Price List, "
                                                        "Supplier/Customer, Currency, Item, Batch, UOM, Qty, and Dates.")


def _item_price_list(doc: Doc) -> list[tuple[Any, Any]]:
    return [(doc.get("item_code"), doc.get("price_list"))]


def item_price_name(store: DocStore, doc: Doc) -> str:
    return secrets.token_hex(5)


# -- warehouses and stock -------------------------------------------------------------------------

def warehouse_name(store: DocStore, doc: Doc) -> str:
    company = store.get("Company", str(doc.get("company")))
    if company is None:
        raise FrappeError("LinkValidationError", f"Could not find Company: {doc.get('company')}")
    name = f"{str(doc['warehouse_name']).strip()} - {company['abbr']}"
    if store.get("Warehouse", name) is not None:
        raise FrappeError("DuplicateEntryError", f"Warehouse {name} already exists")
    return name


def no_api_writes(store: DocStore, doc: Doc) -> None:
    raise FrappeError("PermissionError", "Bin is maintained by stock transactions (Stock Entry, Stock "
                                         "Reconciliation); it cannot be written directly")


def _item_warehouse(doc: Doc) -> list[tuple[Any, Any]]:
    return [(doc.get("item_code"), doc.get("warehouse"))]


def find_bin(store: DocStore, item_code: str, warehouse: str) -> Doc | None:
    rows = store.lookup("Bin", "item_warehouse", _item_warehouse, [(item_code, warehouse)])
    return next((b for b in rows if b.get("item_code") == item_code and b.get("warehouse") == warehouse), None)


def _set_actual(store: DocStore, item: Doc, warehouse: str, actual: Decimal, owner: str) -> None:
    now = _now()
    current = find_bin(store, item["name"], warehouse)
    if current is None:
        current = {"name": secrets.token_hex(5), "doctype": "Bin", "owner": owner, "creation": now,
                   "modified_by": owner, "docstatus": 0, "idx": 0, "item_code": item["name"], "warehouse": warehouse,
                   "stock_uom": item.get("stock_uom"), "reserved_qty": Decimal(0), "ordered_qty": Decimal(0),
                   "indented_qty": Decimal(0), "planned_qty": Decimal(0), "actual_qty": Decimal(0)}
    doc = {**current, "actual_qty": actual.quantize(QTY), "modified": now}
    doc["projected_qty"] = (doc["actual_qty"] + Decimal(doc["ordered_qty"]) + Decimal(doc["indented_qty"])
                            + Decimal(doc["planned_qty"]) - Decimal(doc["reserved_qty"])).quantize(QTY)
    store.put("Bin", doc["name"], doc)


def _actual(store: DocStore, item_code: str, warehouse: str) -> Decimal:
    found = find_bin(store, item_code, warehouse)
    return Decimal(found["actual_qty"]) if found else Decimal(0)


def _apply_moves(store: DocStore, doc: Doc, moves: list[tuple[str, str, Decimal]]) -> None:
    """Add each (item, warehouse, delta) to its Bin; nothing moves when any Bin would go below zero."""
    totals: dict[tuple[str, str], Decimal] = {}
    for item_code, warehouse, delta in moves:
        totals[(item_code, warehouse)] = totals.get((item_code, warehouse), Decimal(0)) + delta
    for (item_code, warehouse), delta in totals.items():
        if _actual(store, item_code, warehouse) + delta < 0:
            raise FrappeError("NegativeStockError", f"{-delta} units of Item {item_code} needed in Warehouse "
                                                    f"{warehouse} to complete this transaction.")
    for (item_code, warehouse), delta in totals.items():
        item = store.get("Item", item_code) or {"name": item_code}
        _set_actual(store, item, warehouse, _actual(store, item_code, warehouse) + delta, str(doc.get("owner")))


def _stock_item(store: DocStore, row: Doc) -> Doc:
    code = row.get("item_code")
    item = store.get("Item", str(code)) if code else None
    if item is None:
        raise FrappeError("LinkValidationError", f"Could not find Row #{row.get('idx')}: Item Code: {code}")
    if not _flag(item.get("is_stock_item")):
        raise FrappeError("ValidationError", f"Item {code} is not a stock Item")
    return item


def _warehouse(store: DocStore, row: Doc, field: str, label: str, required: bool) -> None:
    value = row.get(field)
    if not value:
        if required:
            raise FrappeError("ValidationError", f"{label} warehouse is mandatory for row {row.get('idx')}")
        return
    if store.get("Warehouse", str(value)) is None:
        raise FrappeError("LinkValidationError", f"Could not find Row #{row.get('idx')}: {label} Warehouse: {value}")


def compute_stock_entry(store: DocStore, doc: Doc) -> None:
    from commerce_bridge.sandbox.erp_sim.doctypes import cur

    kind = doc.get("stock_entry_type")
    if kind not in STOCK_ENTRY_TYPES:
        raise FrappeError("ValidationError", f"Stock Entry Type {kind} is not simulated; use one of "
                                             f"{', '.join(STOCK_ENTRY_TYPES)}")
    doc["purpose"] = kind
    rows = doc.get("items") or []
    if not rows:
        raise FrappeError("MandatoryError", "Error: Value missing for Stock Entry: Items")
    total = Decimal(0)
    for row in rows:
        item = _stock_item(store, row)
        row.setdefault("s_warehouse", doc.get("from_warehouse"))
        row.setdefault("t_warehouse", doc.get("to_warehouse"))
        _warehouse(store, row, "s_warehouse", "Source", kind != "Material Receipt")
        _warehouse(store, row, "t_warehouse", "Target", kind != "Material Issue")
        qty = _qty(row.get("qty", 0), "qty")
        if qty <= 0:
            raise FrappeError("ValidationError", f"Row {row.get('idx')}: Quantity must be greater than zero")
        rate = cur(row.get("basic_rate", 0), "basic_rate")
        row.update({"qty": qty, "transfer_qty": qty, "basic_rate": rate, "amount": cur(qty * rate, "amount"),
                    "uom": row.get("uom") or item.get("stock_uom"), "stock_uom": item.get("stock_uom")})
        total += row["amount"]
    doc["total_amount"] = cur(total, "total_amount")


def apply_stock_entry(store: DocStore, doc: Doc, sign: int) -> None:
    """Move the entry's quantities (``sign`` 1 on submit, -1 on cancel); takes before it puts."""
    moves: list[tuple[str, str, Decimal]] = []
    for row in doc.get("items") or []:
        qty = Decimal(row["qty"]) * sign
        if row.get("s_warehouse") and doc["purpose"] != "Material Receipt":
            moves.append((row["item_code"], row["s_warehouse"], -qty))
        if row.get("t_warehouse") and doc["purpose"] != "Material Issue":
            moves.append((row["item_code"], row["t_warehouse"], qty))
    _apply_moves(store, doc, moves)


def compute_reconciliation(store: DocStore, doc: Doc) -> None:
    rows = doc.get("items") or []
    if not rows:
        raise FrappeError("MandatoryError", "Error: Value missing for Stock Reconciliation: Items")
    for row in rows:
        _stock_item(store, row)
        _warehouse(store, row, "warehouse", "", True)
        qty = _qty(row.get("qty", 0), "qty")
        if qty < 0:
            raise FrappeError("ValidationError", f"Row {row.get('idx')}: Negative Quantity is not allowed")
        row["qty"] = qty
        row["current_qty"] = _actual(store, row["item_code"], row["warehouse"])
        row["quantity_difference"] = qty - row["current_qty"]


def apply_reconciliation(store: DocStore, doc: Doc, sign: int) -> None:
    """Submit (``sign`` 1): set each Bin to the row's ``qty``, noting ``current_qty``; cancel: undo the difference."""
    rows = doc.get("items") or []
    if sign < 0:
        _apply_moves(store, doc, [(r["item_code"], r["warehouse"], -Decimal(r["quantity_difference"])) for r in rows])
        return
    for row in rows:
        item = store.get("Item", row["item_code"]) or {"name": row["item_code"]}
        row["current_qty"] = _actual(store, row["item_code"], row["warehouse"])
        row["quantity_difference"] = Decimal(row["qty"]) - row["current_qty"]
        _set_actual(store, item, row["warehouse"], Decimal(row["qty"]), str(doc.get("owner")))


# -- Customer: its primary contact and address ----------------------------------------------------

def customer_after_save(sim: Inserter, doc: Doc, is_new: bool) -> None:
    """ERPNext's ``Customer.on_update``: create the primary contact (and, when new, the primary address)."""
    changes: Doc = {}
    make_address = is_new and bool(doc.get("address_line1"))
    missing = [f.title() for f in ("city", "country") if not doc.get(f)]
    if make_address and missing:
        raise FrappeError("ValidationError", f"Following fields are mandatory to create address: {', '.join(missing)}")
    if not doc.get("customer_primary_contact") and (doc.get("email_id") or doc.get("mobile_no")):
        contact: Doc = {"first_name": doc["name"], "is_primary_contact": 1,
                        "links": [{"link_doctype": "Customer", "link_name": doc["name"]}]}
        if doc.get("email_id"):
            contact["email_ids"] = [{"email_id": doc["email_id"], "is_primary": 1}]
        if doc.get("mobile_no"):
            contact["phone_nos"] = [{"phone": doc["mobile_no"], "is_primary_mobile_no": 1}]
        changes["customer_primary_contact"] = sim.insert_named("Contact", contact)["name"]
    if make_address:
        address = {"address_title": doc["name"], "address_type": "Billing", "is_primary_address": 1,
                   "links": [{"link_doctype": "Customer", "link_name": doc["name"]}],
                   **{f: doc.get(f) for f in ("address_line1", "address_line2", "city", "state", "pincode",
                                              "country")}}
        changes["customer_primary_address"] = sim.insert_named("Address", address)["name"]
    if changes:
        sim.store.put("Customer", doc["name"], {**doc, **changes})
        doc.update(changes)


# -- seed -----------------------------------------------------------------------------------------

def seed(store: DocStore, now: str, owner: str) -> None:
    """Price lists and warehouses (per seeded company); a restored state file gets only what it lacks."""
    base = {"owner": owner, "modified_by": owner, "creation": now, "modified": now, "docstatus": 0, "idx": 0}
    for name, selling, buying in SEEDED_PRICE_LISTS:
        if store.get("Price List", name) is None:
            store.put("Price List", name, {**base, "doctype": "Price List", "name": name, "price_list_name": name,
                                           "currency": "USD", "selling": selling, "buying": buying, "enabled": 1})
    for company, abbr in accounts.COMPANIES:
        for warehouse in SEEDED_WAREHOUSES:
            name = f"{warehouse} - {abbr}"
            if store.get("Warehouse", name) is None:
                store.put("Warehouse", name, {**base, "doctype": "Warehouse", "name": name,
                                              "warehouse_name": warehouse, "company": company, "is_group": 0,
                                              "disabled": 0})
