"""``clarity.order.*`` actions."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.clarity import money_to_clarity
from commerce_bridge.services.gateways import ClarityGateway
from commerce_bridge.services.ports import Action, StepContext, WriteFingerprints
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, CLARITY_ORDER, ORDER_ID, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import money_from_shape


def _order_id(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise ValidationError(f"order_id must be a Clarity order ID, got {value!r}") from exc


def _is_zero(value: Any) -> bool:
    """CEF omits fields that hold their default, so a missing ``BalanceDue`` is zero."""
    if value is None or value == "":
        return True
    try:
        return Decimal(str(value)) <= 0
    except ArithmeticError:
        return False


def actions(gateway: ClarityGateway, fingerprints: WriteFingerprints) -> dict[str, Action]:
    def get(ctx: StepContext, params: Mapping[str, Any]) -> Any:
        return gateway.get_order(_order_id(params["order_id"]))

    def find_by_key(ctx: StepContext, params: Mapping[str, Any]) -> Any:
        key = params.get("order_key")
        if not key:
            raise ValidationError("order_key is empty", suggested_fix="the event carries no Clarity order key")
        try:
            return gateway.get_order_by_key(str(key))
        except NotFound as exc:
            if params.get("missing", "retry") == "retry":
                # The payment can arrive before the order is visible in Clarity: wait and retry.
                raise NotFound(f"order {key} is not visible in Clarity yet", details={"should_retry": True},
                               suggested_fix="if the order never appears, discard this entry") from exc
            raise

    def set_status(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = _order_id(params["order_id"])
        status = str(params["status_key"])
        fingerprint = f"status={status}"
        fingerprints.record("clarity", "order", str(order_id), fingerprint)  # before: the poll may be quick
        result = gateway.set_status(order_id, status)
        changed = bool(result.get("changed", True))
        if not changed:
            fingerprints.consume("clarity", "order", str(order_id), fingerprint)
        return {"order_id": str(order_id), "status_key": status, "changed": changed}

    def add_payment(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = _order_id(params["order_id"])
        amount = money_from_shape(params["amount"])
        txn = str(params["transaction_number"])
        before = gateway.get_order(order_id)
        if _is_zero(before.get("BalanceDue")):
            # nothing due: the storefront (or an earlier attempt) already recorded this payment
            return {"order_id": str(order_id), "added": False, "status_key": before.get("StatusKey"),
                    "balance_due": before.get("BalanceDue")}
        fingerprints.record("clarity", "order", str(order_id), f"payment={txn}")
        result = gateway.add_payment(order_id, amount=money_to_clarity(amount), transaction_number=txn)
        order = gateway.get_order(order_id)
        return {"order_id": str(order_id), "added": bool(result.get("added")), "status_key": order.get("StatusKey"),
                "balance_due": order.get("BalanceDue")}

    return {
        "clarity.order.get": get, "clarity.order.find_by_key": find_by_key,
        "clarity.order.set_status": set_status, "clarity.order.add_payment": add_payment,
    }


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="clarity.order.get", summary="Read a sales order from Clarity by ID (full model).",
        description="`GET /Ordering/SalesOrder/ID/{ID}`. The output is Clarity's model as is (PascalCase; "
                    "fields with default values omitted).",
        params=(ORDER_ID,), output="The Clarity sales order model; money amounts as decimal strings "
                                     "(`\"35.7000\"`), never floats.", example_output=CLARITY_ORDER,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "Clarity answered 204: no such order."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("get", "clarity.order.get", order_id="${ event.data.ID }"),),
    ),
    StepType(
        type="clarity.order.find_by_key", summary="Find a Clarity sales order by its key (CustomKey).",
        description="`GET /Ordering/SalesOrder/Key/{Key}`. A Stripe event can arrive before the order is "
                    "visible in Clarity: with `missing: retry` (the default) not finding it is retried like "
                    "a transient error (give the step a generous `retry`), never dropped or mis-assigned.",
        params=(Param("order_key", "string", "The order's CustomKey, e.g. `WEB-100001`.", required=True),
                Param("missing", "string", "What not finding the order does.", default="retry",
                      choices=("retry", "error"))),
        output="The Clarity sales order model.", example_output=CLARITY_ORDER,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "no order with that key; with `missing: retry` it carries `should_retry` and is "
                             "retried until `max_attempts`."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("find", "clarity.order.find_by_key",
                      order_key="${ event.data.object.metadata.clarity_order_key }"),),
    ),
    StepType(
        type="clarity.order.set_status", summary="Set a Clarity sales order's status through its action route.",
        description="Calls the PATCH action route for the status (`Hold`, `Confirm`, `Void`, `Ship`...). "
                    "Setting the status the order already has changes nothing.",
        params=(ORDER_ID,
                Param("status_key", "string", "The target status.", required=True,
                      choices=("Pending", "Confirmed", "On Hold", "Backordered", "Processing", "Shipped",
                               "Ready for Pickup", "Completed", "Void", "Full Payment Received",
                               "Partially Refunded", "Refunded"))),
        output="`{\"order_id\": str, \"status_key\": str, \"changed\": bool}`.",
        example_output={"order_id": "42", "status_key": "On Hold", "changed": True},
        idempotency="Naturally idempotent: Clarity answers an INFO message and changes nothing when the "
                    "status is already set. The write is fingerprinted so the change does not echo back.",
        errors=(("NotFound", "200 with `ActionSucceeded: false` for an unknown order."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("hold", "clarity.order.set_status", order_id="${ steps.order.external_id }",
                      status_key="On Hold"),),
    ),
    StepType(
        type="clarity.order.add_payment", summary="Record a payment on a Clarity sales order (AddPayment).",
        description="`POST /Ordering/SalesOrder/AddPayment` with the amount and the Stripe charge id as "
                    "`TransactionNumber`. Clarity lowers `BalanceDue` and sets Partial or Full Payment Received.",
        params=(ORDER_ID, Param("amount", "money", "The amount paid.", required=True),
                Param("transaction_number", "string", "The Stripe charge id (`ch_...`).", required=True)),
        output="`{\"order_id\": str, \"added\": bool, \"status_key\": str, \"balance_due\": money}`.",
        example_output={"order_id": "42", "added": True, "status_key": "Full Payment Received",
                        "balance_due": {"minor": 0, "currency": "USD"}},
        idempotency="AddPayment has no idempotency key: before adding, the action looks for a payment with "
                    "the same transaction number (our write fingerprints) and answers `added: false` if found.",
        errors=(("UpstreamRejected", "`ActionSucceeded: false`: amount <= 0 or above the balance due."),
                ("NotFound", "unknown order."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("add_payment", "clarity.order.add_payment", order_id="${ steps.find.ID }",
                      amount="${ steps.payment.amount_received }",
                      transaction_number="${ steps.payment.latest_charge }"),),
    ),
)
