"""Sales returns of the Clarity simulator: the entity, the ``/Providers/Returning`` actions and the
``/_sandbox/returns`` operator routes.

Rules (facts/clarity-cef-api.md §1.3, §3.4, §4, §6):
- ``/Returning/SalesReturns`` is the generated search: ``ModifiedSince`` (UpdatedDate or CreatedDate ≥ X),
  1-based ``Paging``, and the sales-collection filters (``StatusKey``/``StatusName``, ``AccountID``, ...);
  every action bumps ``UpdatedDate`` so polling sees it;
- statuses are the seeded SalesReturnStatus rows (Pending, Confirmed, Shipped, Payment Sent, Rejected,
  Completed, Void); "Canceled" is auto-created on first use; Rejected/Completed/Void/Canceled move the
  return to the History state;
- ``Refund/{ID}`` fails: the stock Stripe provider has no refunds ("does not support Refunds"), so the
  bridge refunds in Stripe itself and records it with ``ManuallyRefund``: body = SalesReturnModel with
  ``SalesReturnPayments`` (each ``Slave`` a PaymentModel with ``TransactionNumber`` = the Stripe refund id
  and ``Amount``); the return gets ``RefundTransactionID`` (default: the first payment's
  TransactionNumber), ``RefundAmount`` (default: the payments' sum) and status Completed;
- ``AddPayment`` links one more payment (``{ID, Payment}``) and changes no status (inference: the stock
  provider records it only);
- an order's full projection lists its returns in ``AssociatedSalesReturns``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    to_decimal,
)
from commerce_bridge.sandbox.clarity_sim.crud import (
    EntitySpec,
    create_record,
    find_by_key,
    register,
    render,
    touch,
)
from commerce_bridge.sandbox.clarity_sim.orders import SALES_ORDER, sales_filters
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.sales import (
    PAYMENT,
    SalesKinds,
    expand_sales,
    finalize_sales,
    prepare_sales,
)

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
        record["RefundAmount"] = _non_negative(body["RefundAmount"])
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


def _non_negative(value: Any, field: str = "RefundAmount") -> Any:
    amount = money(value, field)
    if amount < 0:
        raise CefError(f"{field} cannot be negative", ARGUMENT)
    return amount


SALES_RETURN = EntitySpec("Returning", "SalesReturn", "SalesReturns", prepare=_prepare, expand=_expand,
                          finalize=finalize_sales, event="salesreturn", nameable=False,
                          filters=lambda sim, model: sales_filters(sim, model, KINDS))
HISTORY_STATUSES = {"Rejected", "Completed", "Void", "Canceled"}


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


def _payment_links(sim: Sim, record: Record, payments: Any, field: str) -> tuple[list[int], list[Record]]:
    """Create the PaymentModels of ``payments`` (``[{Slave: PaymentModel}]``) and link them to ``record``."""
    if payments is None:
        return list(record.get("_payments", [])), []
    if not isinstance(payments, list):
        raise CefError(f"{field} must be a list", ARGUMENT)
    created = []
    for link in payments:
        slave = link.get("Slave") if isinstance(link, dict) else None
        if not isinstance(slave, dict):
            raise CefError(f"Each of {field} needs a Slave PaymentModel", ARGUMENT)
        _non_negative(slave.get("Amount", 0), "Amount")
        created.append(create_record(sim, PAYMENT, {k: v for k, v in slave.items() if k != "ID"}))
    return [*record.get("_payments", []), *(p["ID"] for p in created)], created


async def _manually_refund(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    found = _find(sim, body.get("ID", 0))
    if found is None:
        return action_response(False, [f"ERROR! Could not find a Sales Return with ID {body.get('ID')}"])
    with sim.store.batch():
        links, created = _payment_links(sim, found, body.get("SalesReturnPayments"), "SalesReturnPayments")
        extra: dict[str, Any] = {"_payments": links} if created else {}
        if body.get("RefundAmount") is not None:
            extra["RefundAmount"] = _non_negative(body["RefundAmount"])
        elif created:
            extra["RefundAmount"] = money(sum(p.get("Amount", 0) for p in created), "RefundAmount")
        transaction = body.get("RefundTransactionID") or next(
            (p["TransactionNumber"] for p in created if p.get("TransactionNumber")), None)
        if transaction:
            extra["RefundTransactionID"] = str(transaction)
        _set_status(sim, found, "Completed", "History", extra or None)
    return action_response(True)


async def _add_payment(sim: Sim, req: Req) -> Response:
    body = req.body_dict()
    payment = body.get("Payment")
    if not body.get("ID") or not isinstance(payment, dict):
        raise CefError("ID and Payment are required", ARGUMENT)
    found = _find(sim, body["ID"])
    if found is None:
        return action_response(False, [f"ERROR! Could not find a Sales Return with ID {body['ID']}"])
    with sim.store.batch():
        links, _ = _payment_links(sim, found, [{"Slave": payment}], "Payment")
        touch(sim, SALES_RETURN, found, {"_payments": links})
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
    router.add("PATCH", f"{ACTIONS}/AddPayment", _add_payment, permission)
    router.add("GET", "/Providers/Returning/Queries/IsSalesOrderReadyForReturn/{ID}", _ready_for_return,
               SALES_RETURN.permission("View"))


# -- /_sandbox/returns: what a store operator does in the admin UI -------------------------------------

def _order_for(sim: Sim, body: dict[str, Any]) -> Record:
    order = None
    if body.get("SalesOrderID"):
        order = sim.store.get("SalesOrder", str(as_int(body["SalesOrderID"], "SalesOrderID")))
    elif body.get("SalesOrderKey"):
        order = find_by_key(sim, SALES_ORDER, str(body["SalesOrderKey"]))
    if order is None:
        raise CefError("SalesOrderID or SalesOrderKey must name an existing order", ARGUMENT)
    return order


def _returned_quantities(sim: Sim, order_id: int) -> dict[str, Any]:
    """Quantities per Sku already on this order's returns that are not Void, Rejected or Canceled."""
    done: dict[str, Any] = {}
    for r in sim.store.all(SALES_RETURN.kind):
        status = sim.store.get(KINDS.status, str(r.get("StatusID"))) or {}
        if order_id not in (r.get("SalesOrderIDs") or []) or status.get("Name") in ("Void", "Rejected", "Canceled"):
            continue
        for item in r.get("SalesItems") or []:
            done[item.get("Sku")] = done.get(item.get("Sku"), 0) + item["Quantity"]
    return done


def operator_return(sim: Sim, body: dict[str, Any]) -> Record:
    """Create a return of an order's lines (by default all that is left to return); optionally set ``Status``.

    Each line names an order line by ``Sku`` and a ``Quantity`` no larger than what is left to return;
    prices come from the order line; ``RefundAmount`` defaults to the returned lines' extended prices.
    """
    order = _order_for(sim, body)
    order_lines = {i.get("Sku"): i for i in order.get("SalesItems") or []}
    done = _returned_quantities(sim, order["ID"])
    wanted = body.get("Lines") or [{"Sku": sku, "Quantity": i["Quantity"] - done.get(sku, 0)}
                                   for sku, i in order_lines.items() if i["Quantity"] > done.get(sku, 0)]
    items = []
    for line in wanted:
        source = order_lines.get(line.get("Sku"))
        if source is None:
            raise CefError(f"The order has no line with Sku {line.get('Sku')}", ARGUMENT)
        quantity = to_decimal(line.get("Quantity", source["Quantity"]), "Quantity")
        left = source["Quantity"] - done.get(source.get("Sku"), 0)
        if not 0 < quantity <= left:
            raise CefError(f"Cannot return {quantity} of {source.get('Sku')}: {left} left to return", ARGUMENT)
        items.append({k: source[k] for k in ("Sku", "ProductKey", "Name", "UnitCorePrice", "UnitSoldPrice")
                      if source.get(k) is not None} | {"Quantity": quantity})
    model: dict[str, Any] = {"SalesOrderIDs": [order["ID"]], "SalesItems": items, "AccountID": order.get("AccountID"),
                             "UserID": order.get("UserID"), "BillingContactID": order.get("BillingContactID")}
    if body.get("CustomKey"):
        model["CustomKey"] = body["CustomKey"]
    with sim.store.batch():
        record = create_record(sim, SALES_RETURN, model)
        refund = body.get("RefundAmount")
        amount = _non_negative(refund) if refund is not None else record["Totals"]["SubTotal"]
        record = touch(sim, SALES_RETURN, record, {"RefundAmount": amount})
        if body.get("Status"):
            record = operator_status(sim, record, body)
    return record


def operator_status(sim: Sim, record: Record, body: dict[str, Any]) -> Record:
    """Move a return to ``Status`` (any name; unknown ones are auto-created) with optional refund fields."""
    name = str(body["Status"])
    extra = {k: v for k, v in (("RefundTransactionID", body.get("RefundTransactionID")),
                               ("TrackingNumber", body.get("TrackingNumber"))) if v}
    if body.get("RefundAmount") is not None:
        extra["RefundAmount"] = _non_negative(body["RefundAmount"])
    state = "History" if name in HISTORY_STATUSES else "Work"
    return _set_status(sim, record, name, state, extra or None)[0]


def sandbox_routes(sim: Sim) -> list[Route]:
    """``POST /_sandbox/returns`` and ``POST /_sandbox/returns/{ID}/status``; errors answer 400 ``{error}``."""
    from commerce_bridge.sandbox.clarity_sim.core import json_response

    async def create(request: Request) -> Response:
        try:
            body = await request.json()
            return json_response(render(sim, SALES_RETURN, operator_return(sim, body)))
        except (CefError, ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)

    async def status(request: Request) -> Response:
        found = _find(sim, request.path_params["ID"])
        if found is None:
            return json_response({"error": f"no Sales Return with ID {request.path_params['ID']}"}, status=404)
        try:
            body = await request.json()
            if not isinstance(body, dict) or not body.get("Status"):
                raise CefError("Status is required", ARGUMENT)
            with sim.store.batch():
                record = operator_status(sim, found, body)
            return json_response(render(sim, SALES_RETURN, record))
        except (CefError, ValueError) as exc:
            return json_response({"error": str(exc)}, status=400)

    return [Route("/_sandbox/returns", create, methods=["POST"]),
            Route("/_sandbox/returns/{ID}/status", status, methods=["POST"])]
