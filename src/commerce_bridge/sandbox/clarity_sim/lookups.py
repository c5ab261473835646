"""Status, state and type tables of the Clarity simulator: seeds, resolution by key or name, expansion."""

from __future__ import annotations

from typing import Any

from commerce_bridge.sandbox.clarity_sim.core import ARGUMENT, INVALID_OPERATION, CefError, Record, Sim

LOOKUP_COUNTER = "lookup"

# kind -> (area, translation prefix, seeded (key, name, sort) rows). Key equals Name in CEF's seeds,
# except the state tables whose keys are upper case.
_SO_STATUSES = [
    ("Pending", 0), ("On Hold", 5), ("Confirmed", 10), ("Backordered", 11), ("Split", 12),
    ("Partial Payment Received", 20), ("Full Payment Received", 21), ("Processing", 30), ("Shipped", 40),
    ("Shipped from Vendor", 41), ("Ready for Pickup", 42), ("Completed", 98), ("Void", 99),
]
_STATES = [("WORK", "Work", 0), ("HISTORY", "History", 1)]


def _named(names: list[str]) -> list[tuple[str, str, int]]:
    return [(n, n, i) for i, n in enumerate(names)]


SEEDS: dict[str, tuple[str, list[tuple[str, str, int]]]] = {
    # States and types first so that no table's IDs line up with its sort order.
    "SalesOrderState": ("Ordering", list(_STATES)),
    "SalesOrderType": ("Ordering", _named(["Web", "Phone", "On Site", "Sales Order Child"])),
    "PaymentStatus": ("Payments", _named(["No Payment Received", "Payment Received"])),
    "PaymentType": ("Payments", _named(["Mastercard", "VISA", "American Express", "Discover", "Other"])),
    "SalesOrderStatus": ("Ordering", [(k, k, s) for k, s in _SO_STATUSES]),
    "PaymentMethod": ("Payments", _named([
        "Credit Card", "eCheck", "ACH", "Free", "Invoice", "Quote Me", "Payoneer", "PayPal", "Store Credit",
        "Wire Transfer", "Custom"])),
    "SalesReturnState": ("Returning", list(_STATES)),
    "SalesReturnType": ("Returning", _named(["Web", "Phone", "On Site", "Sales Return Child"])),
    "SalesReturnStatus": ("Returning", _named([
        "Pending", "Confirmed", "Shipped", "Payment Sent", "Rejected", "Completed", "Void"])),
    "SalesInvoiceStatus": ("Invoicing", _named(["Unpaid", "Partially Paid", "Paid", "Void"])),
    "SalesInvoiceState": ("Invoicing", list(_STATES)),
    "SalesInvoiceType": ("Invoicing", _named(["General"])),
    "AccountStatus": ("Accounts", _named(["NORMAL"])),
    "AccountType": ("Accounts", _named(["VENDOR", "CUSTOMER", "AFFILIATE", "ORGANIZATION"])),
    "UserStatus": ("Contacts", _named(["Registered", "Email Sent", "Email Verified"])),
    "UserType": ("Contacts", _named(["Customer", "Partner / Affiliate", "Administrator", "No Access"])),
    # Seeded with keys that differ from their names (DefaultData.cs AddProductStatuses/AddProductTypes).
    "ProductStatus": ("Products", [("NORMAL", "Normal", 0)]),
    "ProductType": ("Products", [
        ("GENERAL", "General", 0), ("KIT", "Kit", 1), ("VARIANT-MASTER", "Variant Master", 2), ("VARIANT", "Variant", 2),
        ("VARIANT-KIT", "Variant Kit", 2), ("MEMBERSHIP", "Membership", 3), ("SUBSCRIPTION", "Subscription", 3)]),
}


def translation_key(kind: str, name: str) -> str:
    plural = kind + ("es" if kind.endswith("s") else "s")
    return f"ui.storefront.{plural}.{name.replace(' ', '').replace('/', '')}"


def seed(sim: Sim) -> None:
    """Insert the seeded rows once (a restored state file already has them)."""
    if sim.store.peek_value(LOOKUP_COUNTER):
        return
    with sim.store.batch():
        for kind, (_area, rows) in SEEDS.items():
            for key, name, sort in rows:
                _insert(sim, kind, key, name, sort)


def _insert(sim: Sim, kind: str, key: str, name: str, sort: int) -> Record:
    now = sim.clock.now_us()
    row: Record = {
        "ID": sim.store.next_value(LOOKUP_COUNTER), "CustomKey": key, "Name": name, "DisplayName": name,
        "TranslationKey": translation_key(kind, name), "SortOrder": sort, "Active": True, "_c": now, "_u": now,
    }
    sim.store.put(kind, row["ID"], row)
    return row


def find(sim: Sim, kind: str, *, key: str | None = None, name: str | None = None) -> Record | None:
    for row in sim.store.all(kind):
        if key is not None and str(row.get("CustomKey", "")).lower() == key.lower():
            return row
        if name is not None and str(row.get("Name", "")).lower() == name.lower():
            return row
    return None


def by_name_or_create(sim: Sim, kind: str, name: str) -> Record:
    """Find a row by Name (workflows set statuses by name) and auto-create it when missing, as CEF does."""
    row = find(sim, kind, name=name) or find(sim, kind, key=name)
    if row is None:
        sort = max((int(r.get("SortOrder", 0)) for r in sim.store.all(kind)), default=0) + 1
        row = _insert(sim, kind, name, name, sort)
    return row


def resolve(sim: Sim, kind: str, model: dict[str, Any], prefix: str, owner: str) -> Record | None:
    """Resolve ``{prefix}ID``, then ``{prefix}Key``, ``{prefix}Name`` and a nested ``{prefix}`` object.

    An unknown key or name is auto-created (CEF behaviour); an unknown ID or an inactive row is an
    exception. Returns ``None`` when the model names none of these.
    """
    raw_nested = model.get(prefix)
    nested: dict[str, Any] = raw_nested if isinstance(raw_nested, dict) else {}
    ident = model.get(f"{prefix}ID") or nested.get("ID")
    if ident:
        row = sim.store.get(kind, str(ident))
        if row is None:
            raise CefError(f"No {kind} with ID {ident} exists", ARGUMENT)
    else:
        key = model.get(f"{prefix}Key") or nested.get("CustomKey") or nested.get("Key")
        name = model.get(f"{prefix}Name") or nested.get("Name")
        if not key and not name:
            return None
        row = None
        if key:
            row = find(sim, kind, key=str(key))
        if row is None and name:
            row = find(sim, kind, name=str(name))
        if row is None:
            row = by_name_or_create(sim, kind, str(key or name))
    if not row.get("Active", True):
        raise CefError(f"Cannot assign an inactive {prefix}ID to the {owner} entity", INVALID_OPERATION)
    return row


def expand(sim: Sim, out: dict[str, Any], kind: str, prefix: str) -> None:
    """Add ``{prefix}Key/Name/DisplayName/TranslationKey/SortOrder`` and the nested ``{prefix}``."""
    ident = out.get(f"{prefix}ID")
    row = sim.store.get(kind, str(ident)) if ident else None
    if row is None:
        return
    out[f"{prefix}Key"] = row.get("CustomKey")
    out[f"{prefix}Name"] = row.get("Name")
    out[f"{prefix}DisplayName"] = row.get("DisplayName")
    out[f"{prefix}TranslationKey"] = row.get("TranslationKey")
    out[f"{prefix}SortOrder"] = row.get("SortOrder")
    out[prefix] = {k: row.get(k) for k in ("ID", "CustomKey", "Name", "DisplayName", "TranslationKey", "SortOrder",
                                           "Active")}
