"""Sales returns of the Clarity simulator: the entity and the ``/Providers/Returning`` actions."""

from __future__ import annotations

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
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.sales import SalesKinds, expand_sales, finalize_sales, prepare_sales

KINDS = SalesKinds("SalesReturn", "SalesReturn", "Web")
ACTIONS = "/Providers/Returning/Actions"

# action -> (status name, state name). "Canceled" is not seeded: CEF auto-creates it on first use.
STATUS_ACTIONS: dict[str, tuple[str, str]] = {
    "Confirm": ("Confirmed", "Work"),
    "Reject": ("Rejected", "History"),
    "Shipped": ("Shipped", "Work"),
    "Complete": ("Completed", "History"),
    "Void": ("Void", "History"),
    "Cancel": ("Canceled", "History"),
}


def _prepare(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    prepare_sales(sim, KINDS, existing, body, record)
    if body.get("RefundAmount") is not None:
        record["RefundAmount"] = money(body["RefundAmount"], "RefundAmount")
    ids = body.get("SalesOrderIDs")
    if ids is not None:
        if not isinstance(ids, list):
            raise CefError("SalesOrderIDs must be a list", ARGUMENT)
        record["SalesOrderIDs"] = [as_int(i, "SalesOrderIDs") for i in ids]
    record.pop("AssociatedSalesOrders", None)


def _expand(sim: Sim, record: Record, projection: str) -> Record:
    out = expand_sales(sim, KINDS, record, projection)
    if projection == "full":
        out["AssociatedSalesOrders"] = [
            {"MasterID": record["ID"], "SlaveID": oid, "SlaveKey": (sim.store.get("SalesOrder", str(oid)) or {})
             .get("CustomKey")} for oid in record.get("SalesOrderIDs") or []]
    return out


SALES_RETURN = EntitySpec("Returning", "SalesReturn", "SalesReturns", prepare=_prepare, expand=_expand,
                          finalize=finalize_sales, event="salesreturn", nameable=False)


def _set_status(sim: Sim, record: Record, status_name: str, state_name: str,
                extra: dict[str, Any] | None = None) -> tuple[Record, bool]:
    status = lookups.by_name_or_create(sim, KINDS.status, status_name)
    state = lookups.by_name_or_create(sim, KINDS.state, state_name)
    if record.get("StatusID") == status["ID"] and not extra:
        return record, False
    return touch(sim, SALES_RETURN, record, {"StatusID": status["ID"], "StateID": state["ID"], **(extra or {})}), True


def _find(sim: Sim, ident: Any) -> Record | None:
    return sim.store.get(SALES_RETURN.kind, str(as_int(ident, "ID")))


def _status_action(action: str) -> Any:
    status_name, state_name = STATUS_ACTIONS[action]

    async def handler(sim: Sim, req: Req) -> Response:
        found = _find(sim, req.params["ID"])
        if found is None:
            return action_response(False, [f"ERROR! Could not find a Sales Return with ID {req.params['ID']}"])
        with sim.store.batch():
            _, changed = _set_status(sim, found, status_name, state_name)
        if not changed:
            return action_response(True, [f"INFO! The Sales Return is already in the {status_name} status"])
        return action_response(True)

    return handler


async def _refund(sim: Sim, req: Req) -> Response:
    # The stock Stripe provider does not implement IRefundsProviderBase, so CEF answers this.
    if _find(sim, req.params["ID"]) is None:
        return action_response(False, [f"ERROR! Could not find a Sales Return with ID {req.params['ID']}"])
    return action_response(False, ["ERROR! The currently selected provider does not support Refunds"])


async def _create(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    for oid in body.get("SalesOrderIDs") or []:
        if sim.store.get("SalesOrder", str(as_int(oid, "SalesOrderIDs"))) is None:
            return action_response(False, [f"ERROR! Could not find a Sales Order with ID {oid}"])
    record = create_record(sim, SALES_RETURN, body)
    return action_response(True, result=render(sim, SALES_RETURN, record))


async def _manually_refund(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    found = _find(sim, body.get("ID", 0))
    if found is None:
        return action_response(False, [f"ERROR! Could not find a Sales Return with ID {body.get('ID')}"])
    extra: dict[str, Any] = {}
    if body.get("RefundAmount") is not None:
        extra["RefundAmount"] = money(body["RefundAmount"], "RefundAmount")
    if body.get("RefundTransactionID"):
        extra["RefundTransactionID"] = str(body["RefundTransactionID"])
    with sim.store.batch():
        _set_status(sim, found, "Completed", "History", extra or None)
    return action_response(True)


async def _ready_for_return(sim: Sim, req: Req) -> Response:
    order = sim.store.get("SalesOrder", str(as_int(req.params["ID"], "ID")))
    if order is None:
        return action_response(False, [f"ERROR! Could not find a Sales Order with ID {req.params['ID']}"])
    status = sim.store.get("SalesOrderStatus", str(order.get("StatusID"))) or {}
    ready = status.get("Name") in ("Shipped", "Completed", "Full Payment Received", "Shipped from Vendor")
    return action_response(True, result=ready)


def register_returns(router: Router) -> None:
    register(router, SALES_RETURN)
    permission = SALES_RETURN.permission("Update")
    for action in STATUS_ACTIONS:
        router.add("PATCH", f"{ACTIONS}/{action}/{{ID}}", _status_action(action), permission)
    router.add("PATCH", f"{ACTIONS}/Refund/{{ID}}", _refund, permission)
    router.add("POST", f"{ACTIONS}/CreateSalesReturn", _create, SALES_RETURN.permission("Create"))
    router.add("POST", f"{ACTIONS}/ManuallyRefund", _manually_refund, permission)
    router.add("GET", "/Providers/Returning/Queries/IsSalesOrderReadyForReturn/{ID}", _ready_for_return,
               SALES_RETURN.permission("View"))
