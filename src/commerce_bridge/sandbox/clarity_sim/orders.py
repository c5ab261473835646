"""Sales orders of the Clarity simulator: the entity, its search filters, status actions and AddPayment."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim import lookups
from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    CefError,
    Record,
    Req,
    Sim,
    action_response,
    as_int,
    money,
)
from commerce_bridge.sandbox.clarity_sim.crud import EntitySpec, create_record, register, render, touch
from commerce_bridge.sandbox.clarity_sim.notes import order_notes
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.sales import (
    PAYMENT,
    SalesKinds,
    expand_sales,
    finalize_sales,
    prepare_sales,
)
from commerce_bridge.sandbox.clarity_sim.search import Predicate, SearchModel

KINDS = SalesKinds("SalesOrder", "SalesOrder", "Web")

# action route -> (status name, state name); Complete, Void and Split move the order to History.
STATUS_ACTIONS: dict[str, tuple[str, str]] = {
    "Confirm": ("Confirmed", "Work"),
    "Pending": ("Pending", "Work"),
    "Hold": ("On Hold", "Work"),
    "Backorder": ("Backordered", "Work"),
    "CreatePickTicket": ("Processing", "Work"),
    "DropShip": ("Shipped from Vendor", "Work"),
    "Ship": ("Shipped", "Work"),
    "ReadyForPickup": ("Ready for Pickup", "Work"),
    "Complete": ("Completed", "History"),
    "Void": ("Void", "History"),
    "CapturePayment": ("Full Payment Received", "Work"),
}


def _field_in(field: str, allowed: set[Any]) -> Predicate:
    def predicate(record: Record) -> bool:
        return record.get(field) in allowed
    return predicate


def sales_filters(sim: Sim, model: SearchModel, kinds: SalesKinds = KINDS) -> list[Predicate]:
    """The SalesCollectionBaseSearchModel filters (orders, returns): status/state/type, parties, references."""
    preds: list[Predicate] = []

    def lookup_ids(kind: str, key: str | None, name: str | None) -> set[int]:
        rows = sim.store.all(kind)
        return {r["ID"] for r in rows if (key is not None and str(r.get("CustomKey", "")).lower() == key.lower())
                or (name is not None and str(r.get("Name", "")).lower() == name.lower())}

    if (status_id := model.integer("StatusID")) is not None:
        preds.append(lambda r: r.get("StatusID") == status_id)
    if (status_ids := model.integers("StatusIDs")) is not None:
        wanted = set(status_ids)
        preds.append(lambda r: r.get("StatusID") in wanted)
    if (excluded := model.integers("ExcludedStatusIDs")) is not None:
        unwanted = set(excluded)
        preds.append(lambda r: r.get("StatusID") not in unwanted)
    for prefix, kind in (("Status", kinds.status), ("State", kinds.state), ("Type", kinds.type)):
        key, name = model.text(f"{prefix}Key"), model.text(f"{prefix}Name")
        if key is not None or name is not None:
            preds.append(_field_in(f"{prefix}ID", lookup_ids(kind, key, name)))
    for prefix in ("State", "Type", "Account", "User"):
        if (number := model.integer(f"{prefix}ID")) is not None:
            preds.append(_field_in(f"{prefix}ID", {number}))
    if (account_key := model.text("AccountKey")) is not None:
        preds.append(_field_in("AccountID", {a["ID"] for a in sim.store.all("Account")
                                             if a.get("CustomKey") == account_key}))
    for field in ("PaymentTransactionID", "PurchaseOrderNumber", "TrackingNumber"):
        if (text := model.text(field)) is not None:
            preds.append(_field_in(field, {text}))
    if (email := model.text("Email")) is not None:
        def email_matches(r: Record, e: str = email.lower()) -> bool:
            contact = sim.store.get("Contact", str(r.get("BillingContactID"))) or {}
            user = sim.store.get("User", str(r.get("UserID"))) or {}
            return e in (str(contact.get("Email1", "")).lower(), str(user.get("Email", "")).lower())
        preds.append(email_matches)
    if (product_key := model.text("ProductKey")) is not None:
        preds.append(lambda r: any(i.get("ProductKey") == product_key or i.get("Sku") == product_key
                                   for i in r.get("SalesItems") or []))
    return preds


def _expand(sim: Sim, record: Record, projection: str) -> Record:
    out = expand_sales(sim, KINDS, record, projection)
    if projection == "full":  # the returns that name this order in their SalesOrderIDs, and its notes
        out["Notes"] = order_notes(sim, record["ID"])
        out["AssociatedSalesReturns"] = [
            {"MasterID": record["ID"], "SlaveID": r["ID"], "SlaveKey": r.get("CustomKey")}
            for r in sim.store.all("SalesReturn") if record["ID"] in (r.get("SalesOrderIDs") or [])]
    return out


SALES_ORDER = EntitySpec(
    "Ordering", "SalesOrder", "SalesOrders",
    prepare=lambda sim, existing, body, record: prepare_sales(sim, KINDS, existing, body, record),
    expand=_expand, finalize=finalize_sales, filters=sales_filters, event="salesorder", nameable=False,
    strip_fields=("AssociatedSalesReturns",),
)


def set_status(sim: Sim, order: Record, status_name: str, state_name: str,
               extra: dict[str, Any] | None = None) -> tuple[Record, bool]:
    """Move ``order`` to the named status and state (auto-created if missing).

    Returns the record and whether anything changed; already being in that status changes nothing.
    """
    status = lookups.by_name_or_create(sim, KINDS.status, status_name)
    state = lookups.by_name_or_create(sim, KINDS.state, state_name)
    if order.get("StatusID") == status["ID"] and not extra:
        return order, False
    changes: dict[str, Any] = {"StatusID": status["ID"], "StateID": state["ID"], **(extra or {})}
    return touch(sim, SALES_ORDER, order, changes), True


def _order_or_none(sim: Sim, ident: Any) -> Record | None:
    return sim.store.get(SALES_ORDER.kind, str(as_int(ident, "ID")))


def _status_action(action: str) -> Any:
    status_name, state_name = STATUS_ACTIONS[action]

    async def handler(sim: Sim, req: Req) -> Response:
        order = _order_or_none(sim, req.params["ID"])
        if order is None:
            return action_response(False, [f"ERROR! Could not find a Sales Order with ID {req.params['ID']}"])
        with sim.store.batch():
            order, changed = set_status(sim, order, status_name, state_name)
        if not changed:
            return action_response(True, [f"INFO! The Sales Order is already in the {status_name} status"])
        if action == "CreatePickTicket":
            return action_response(True, result=render(sim, SALES_ORDER, order).get("SalesItems", []))
        return action_response(True)

    return handler


def add_payment(sim: Sim, order: Record, payment_model: dict[str, Any]) -> tuple[bool, str | None, Record]:
    """CEF's AddPayment: reject ``Amount`` <= 0 or above ``BalanceDue``, reduce the balance, set the status."""
    amount = money(payment_model.get("Amount", 0), "Payment.Amount")
    balance = Decimal(order.get("BalanceDue") or 0)
    if amount <= 0:
        return False, "ERROR! The payment amount must be greater than zero", order
    if amount > balance:
        return False, f"ERROR! The payment amount {amount} is greater than the balance due {balance}", order
    remaining = money(balance - amount, "BalanceDue")
    extra: dict[str, Any] = {"BalanceDue": remaining}
    if sim.config.add_payment_records_payment:
        model = {k: v for k, v in payment_model.items() if k != "ID"}
        model.setdefault("StatusKey", "Payment Received")
        payment = create_record(sim, PAYMENT, model)
        extra["_payments"] = [*order.get("_payments", []), payment["ID"]]
    status = "Full Payment Received" if remaining <= 0 else "Partial Payment Received"
    order, _ = set_status(sim, order, status, "Work", extra)
    return True, None, order


async def _add_payment(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    if not body.get("ID"):
        raise CefError("ID is required", ARGUMENT)
    payment = body.get("Payment")
    if not isinstance(payment, dict):
        raise CefError("Payment is required", ARGUMENT)
    order = _order_or_none(sim, body["ID"])
    if order is None:
        return action_response(False, [f"ERROR! Could not find a Sales Order with ID {body['ID']}"])
    with sim.store.batch():
        ok, message, _ = add_payment(sim, order, payment)
    return action_response(ok, [message] if message else None)


def register_orders(router: Router) -> None:
    register(router, SALES_ORDER)
    for action in STATUS_ACTIONS:
        router.add("PATCH", f"/Ordering/SalesOrder/{action}/{{ID}}", _status_action(action),
                   SALES_ORDER.permission("Update"))
    router.add("PATCH", "/Ordering/SalesOrder/AddPayment", _add_payment, SALES_ORDER.permission("Update"))
