"""Sales collections (orders, returns) of the Clarity simulator: contacts, payments, items, totals, links."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from commerce_bridge.sandbox.clarity_sim import lookups
from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    CefError,
    Record,
    Sim,
    as_int,
    money,
    public,
    to_decimal,
)
from commerce_bridge.sandbox.clarity_sim.crud import EntitySpec, create_record, find_by_key, update_record
from commerce_bridge.sandbox.clarity_sim.search import Predicate, SearchModel

TOTAL_FIELDS = ("SubTotal", "Shipping", "Handling", "Fees", "Discounts", "Tax")
_EXPANDED = ("Key", "Name", "DisplayName", "TranslationKey", "SortOrder")
_USER_ECHO = ("UserKey", "UserUserName", "UserContactEmail", "UserContactFirstName", "UserContactLastName", "User")


def _strip_expanded(record: Record, prefix: str) -> None:
    for suffix in _EXPANDED:
        record.pop(f"{prefix}{suffix}", None)
    record.pop(prefix, None)


# -- addresses and contacts -----------------------------------------------------------------------

ADDRESS_FIELDS = ("Company", "Street1", "Street2", "Street3", "City", "PostalCode", "Latitude", "Longitude",
                  "RegionCustom", "CountryCustom", "RegionID", "RegionKey", "RegionName", "RegionCode",
                  "CountryID", "CountryKey", "CountryName", "CountryCode")


def _sync_address_copies(sim: Sim, address: Record) -> None:
    """A contact keeps a copy of its address (its full model embeds it); keep the copies current."""
    copy_ = {k: v for k, v in address.items() if not k.startswith("_")}
    for contact in sim.store.all("Contact"):
        if contact.get("AddressID") == address["ID"] and contact.get("Address") != copy_:
            sim.store.put("Contact", contact["ID"], {**contact, "Address": copy_})


ADDRESS = EntitySpec("Geography", "Address", "Addresses", event="address", nameable=False,
                     finalize=_sync_address_copies)


def save_address(sim: Sim, model: dict[str, Any]) -> Record:
    """Create an Address row from a nested model, or update the one its ``ID`` or ``CustomKey`` names."""
    existing = None
    if model.get("ID"):
        existing = sim.store.get("Address", str(as_int(model["ID"], "ID")))
    elif model.get("CustomKey"):
        existing = find_by_key(sim, ADDRESS, str(model["CustomKey"]))
    if existing is not None:
        changed = any(existing.get(k) != v for k, v in model.items() if k not in ("ID", "CreatedDate", "UpdatedDate"))
        return update_record(sim, ADDRESS, existing, model) if changed else existing
    return create_record(sim, ADDRESS, {k: v for k, v in model.items() if k != "ID"})


def _prepare_contact(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    address = body.get("Address")
    if isinstance(address, dict):
        merged = dict((existing or {}).get("Address") or {})
        merged.update(address)
        row = save_address(sim, merged)
        record["Address"] = {k: v for k, v in row.items() if not k.startswith("_")}
        record["AddressID"] = row["ID"]
    elif body.get("AddressID"):
        found = sim.store.get("Address", str(as_int(body["AddressID"], "AddressID")))
        if found is None:
            raise CefError(f"No Address with ID {body['AddressID']} exists", ARGUMENT)
        record["Address"] = {k: v for k, v in found.items() if not k.startswith("_")}
        record["AddressID"] = found["ID"]
    first, last = record.get("FirstName") or "", record.get("LastName") or ""
    if first or last:
        record["FullName"] = f"{first} {last}".strip()


def _contact_filters(sim: Sim, model: SearchModel) -> list[Predicate]:
    """ContactSearchModel: ``Email1``, ``FirstName``, ``LastName``, ``Phone1``, ... (``<Field>Strict`` = exact)."""
    preds: list[Predicate] = []
    for field in ("Email1", "FirstName", "LastName", "FullName", "Phone1", "Phone2", "Phone3", "Fax1", "Website1"):
        wanted = model.text(field)
        if wanted is None:
            continue
        strict = bool(model.flag(f"{field}Strict"))

        def matches(r: Record, f: str = field, w: str = wanted.lower(), exact: bool = strict) -> bool:
            got = str(r.get(f) or "").lower()
            return got == w if exact else w in got
        preds.append(matches)
    if (address_id := model.integer("AddressID")) is not None:
        preds.append(lambda r: r.get("AddressID") == address_id)
    return preds


CONTACT = EntitySpec("Contacts", "Contact", "Contacts", prepare=_prepare_contact, filters=_contact_filters,
                     event="contact", nameable=False, strip_fields=("AddressID", "FullName"))


def save_contact(sim: Sim, model: dict[str, Any]) -> Record:
    """Create a contact from a nested model, or update the one its ID or CustomKey names."""
    existing = None
    if model.get("ID"):
        existing = sim.store.get("Contact", str(as_int(model["ID"], "ID")))
    elif model.get("CustomKey"):
        existing = find_by_key(sim, CONTACT, str(model["CustomKey"]))
    if existing is not None:
        return update_record(sim, CONTACT, existing, model)
    return create_record(sim, CONTACT, {k: v for k, v in model.items() if k != "ID"})


# -- payments -------------------------------------------------------------------------------------

def _prepare_payment(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    for prefix, kind, default in (("Status", "PaymentStatus", "No Payment Received"),
                                  ("PaymentMethod", "PaymentMethod", None), ("Type", "PaymentType", None)):
        _strip_expanded(record, prefix)
        row = lookups.resolve(sim, kind, body, prefix, "Payment")
        if row is not None:
            record[f"{prefix}ID"] = row["ID"]
        elif existing is None and default:
            record[f"{prefix}ID"] = lookups.by_name_or_create(sim, kind, default)["ID"]
    if "Amount" in body:
        record["Amount"] = money(body["Amount"], "Amount")


def _expand_payment(sim: Sim, record: Record, projection: str) -> Record:
    out = dict(record)
    lookups.expand(sim, out, "PaymentStatus", "Status")
    lookups.expand(sim, out, "PaymentMethod", "PaymentMethod")
    lookups.expand(sim, out, "PaymentType", "Type")
    return out


PAYMENT = EntitySpec("Payments", "Payment", "Payments", prepare=_prepare_payment, expand=_expand_payment,
                     event="payment", nameable=False)


# -- sales collections ----------------------------------------------------------------------------

class SalesKinds:
    """The lookup tables and counters of one sales collection type (orders, returns)."""

    def __init__(self, owner: str, prefix: str, default_type: str) -> None:
        self.owner = owner
        self.status = f"{prefix}Status"
        self.state = f"{prefix}State"
        self.type = f"{prefix}Type"
        self.item_counter = f"{prefix}Item"
        self.default_type = default_type
        self.payments_field = f"{prefix}Payments"


def _product_for(sim: Sim, item: dict[str, Any]) -> Record | None:
    if item.get("ProductID"):
        return sim.store.get("Product", str(as_int(item["ProductID"], "ProductID")))
    key = item.get("ProductKey") or item.get("Sku")
    if key:
        return next((p for p in sim.store.all("Product") if p.get("CustomKey") == key), None)
    return None


def _item(sim: Sim, kinds: SalesKinds, raw: Any, old_ids: set[int]) -> Record:
    if not isinstance(raw, dict):
        raise CefError("SalesItems must be a list of objects", ARGUMENT)
    item: Record = {k: v for k, v in raw.items() if k not in ("ExtendedPrice", "TotalQuantity", "CreatedDate",
                                                               "UpdatedDate")}
    ident = raw.get("ID")
    item["ID"] = int(ident) if ident and int(ident) in old_ids else sim.store.next_value(kinds.item_counter)
    product = _product_for(sim, raw)
    if product is not None:
        item["ProductID"] = product["ID"]
        item["ProductKey"] = product.get("CustomKey")
        item["ProductName"] = product.get("Name")
        item.setdefault("Sku", product.get("CustomKey"))
        item.setdefault("Name", product.get("Name"))
    item.setdefault("Name", raw.get("Sku") or raw.get("ProductKey"))
    quantity = to_decimal(raw.get("Quantity", 1), "Quantity")
    backordered = to_decimal(raw.get("QuantityBackOrdered", 0), "QuantityBackOrdered")
    presold = to_decimal(raw.get("QuantityPreSold", 0), "QuantityPreSold")
    if quantity < 0 or backordered < 0 or presold < 0:
        raise CefError("Quantities cannot be negative", ARGUMENT)
    item["Quantity"], item["QuantityBackOrdered"], item["QuantityPreSold"] = quantity, backordered, presold
    total_qty = quantity + backordered + presold
    item["TotalQuantity"] = total_qty
    if "UnitCorePrice" in raw:
        core = money(raw["UnitCorePrice"], "UnitCorePrice")
    elif product is not None and product.get("PriceBase") is not None:
        core = money(product["PriceBase"], "PriceBase")
    else:
        core = money(0, "UnitCorePrice")
    item["UnitCorePrice"] = core
    sold = money(raw["UnitSoldPrice"], "UnitSoldPrice") if raw.get("UnitSoldPrice") is not None else None
    if sold is not None:
        item["UnitSoldPrice"] = sold
    item["ExtendedPrice"] = money((sold if sold is not None else core) * total_qty, "ExtendedPrice")
    item["Active"] = bool(raw.get("Active", True))
    return item


def prepare_sales(sim: Sim, kinds: SalesKinds, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    """Normalise a sales-collection write: lookups, links, contacts, items, totals and balance."""
    defaults = {"Status": "Pending", "State": "Work", "Type": kinds.default_type}
    for prefix, kind in (("Status", kinds.status), ("State", kinds.state), ("Type", kinds.type)):
        _strip_expanded(record, prefix)
        row = lookups.resolve(sim, kind, body, prefix, kinds.owner)
        if row is not None:
            record[f"{prefix}ID"] = row["ID"]
        elif existing is None:
            record[f"{prefix}ID"] = lookups.by_name_or_create(sim, kind, defaults[prefix])["ID"]
    for name in ("AccountKey", "AccountName", "Account", *_USER_ECHO):
        record.pop(name, None)
    if not body.get("AccountID") and body.get("AccountKey"):
        account = next((a for a in sim.store.all("Account") if a.get("CustomKey") == body["AccountKey"]), None)
        if account is not None:
            record["AccountID"] = account["ID"]
    for prefix in ("Billing", "Shipping"):
        nested = record.pop(f"{prefix}Contact", None)
        record.pop(f"{prefix}ContactKey", None)
        if isinstance(nested, dict):
            record[f"{prefix}ContactID"] = save_contact(sim, nested)["ID"]
    if record.get("ShippingSameAsBilling") and not record.get("ShippingContactID"):
        record["ShippingContactID"] = record.get("BillingContactID")
    items_changed = "SalesItems" in body or existing is None
    if "SalesItems" in body:
        raw_items = body.get("SalesItems") or []
        if not isinstance(raw_items, list):
            raise CefError("SalesItems must be a list", ARGUMENT)
        old_ids = {int(i["ID"]) for i in (existing or {}).get("SalesItems", [])}
        record["SalesItems"] = [_item(sim, kinds, raw, old_ids) for raw in raw_items]
    items = record.get("SalesItems") or []
    record["ItemQuantity"] = sum((Decimal(i["TotalQuantity"]) for i in items), Decimal(0))
    totals = dict((existing or {}).get("Totals") or {})
    raw_totals = body.get("Totals")
    given: dict[str, Any] = raw_totals if isinstance(raw_totals, dict) else {}
    for name in TOTAL_FIELDS:
        if name in given:
            totals[name] = money(given[name], f"Totals.{name}")
        else:
            totals.setdefault(name, money(0, name))
    if items_changed and "SubTotal" not in given:
        totals["SubTotal"] = money(sum((i["ExtendedPrice"] for i in items), Decimal(0)), "SubTotal")
    totals["Total"] = money(sum((totals[n] for n in TOTAL_FIELDS), Decimal(0)), "Total")
    record["Totals"] = totals
    if "BalanceDue" in body and body["BalanceDue"] is not None:
        record["BalanceDue"] = money(body["BalanceDue"], "BalanceDue")
    elif existing is None:
        record["BalanceDue"] = totals["Total"]
    payments = record.pop(kinds.payments_field, None)
    if isinstance(payments, list):
        links = list((existing or {}).get("_payments", []))
        for link in payments:
            slave = link.get("Slave") if isinstance(link, dict) else None
            if isinstance(slave, dict):
                links.append(create_record(sim, PAYMENT, {k: v for k, v in slave.items() if k != "ID"})["ID"])
            elif isinstance(link, dict) and link.get("SlaveID"):
                links.append(as_int(link["SlaveID"], "SlaveID"))
        record["_payments"] = links


def finalize_sales(sim: Sim, record: Record) -> None:
    for item in record.get("SalesItems") or []:
        item["MasterID"] = record["ID"]
        if record.get("CustomKey"):
            item["MasterKey"] = record["CustomKey"]


def _contact_out(sim: Sim, ident: Any) -> Record | None:
    row = sim.store.get("Contact", str(ident)) if ident else None
    return public(row, sim) if row else None


def expand_sales(sim: Sim, kinds: SalesKinds, record: Record, projection: str) -> Record:
    """Add the echoed lookup, account, user and contact fields; drop collections outside ``full``."""
    out = dict(record)
    lookups.expand(sim, out, kinds.status, "Status")
    lookups.expand(sim, out, kinds.state, "State")
    lookups.expand(sim, out, kinds.type, "Type")
    account = sim.store.get("Account", str(out["AccountID"])) if out.get("AccountID") else None
    if account is not None:
        out["AccountKey"] = account.get("CustomKey")
        out["AccountName"] = account.get("Name")
    user = sim.store.get("User", str(out["UserID"])) if out.get("UserID") else None
    if user is not None:
        # CEF's mapper quirk: UserKey carries User.UserName and UserUserName carries User.CustomKey.
        out["UserKey"] = user.get("UserName")
        out["UserUserName"] = user.get("CustomKey")
        contact = sim.store.get("Contact", str(user["ContactID"])) if user.get("ContactID") else None
        out["UserContactEmail"] = (contact or {}).get("Email1") or user.get("Email")
        out["UserContactFirstName"] = (contact or {}).get("FirstName")
        out["UserContactLastName"] = (contact or {}).get("LastName")
    for prefix in ("Billing", "Shipping"):
        contact_out = _contact_out(sim, out.get(f"{prefix}ContactID"))
        if contact_out is not None:
            out[f"{prefix}Contact"] = contact_out
            out[f"{prefix}ContactKey"] = contact_out.get("CustomKey")
    payment_ids = out.pop("_payments", [])
    if projection == "full":
        links = []
        for pid in payment_ids:
            payment = sim.store.get("Payment", str(pid))
            if payment is not None:
                links.append({"ID": pid, "MasterID": record["ID"], "SlaveID": pid,
                              "Slave": public(_expand_payment(sim, payment, "full"), sim)})
        out[kinds.payments_field] = links
    else:
        for name in ("SalesItems", "Notes", kinds.payments_field):
            out.pop(name, None)
    return out


def add_payment_link(sim: Sim, record: Record, payment_id: int) -> list[int]:
    return [*record.get("_payments", []), payment_id]
