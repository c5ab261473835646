"""``clarity.order.*`` actions."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.clarity import money_to_clarity
from commerce_bridge.services.gateways import ClarityGateway
from commerce_bridge.services.ports import Action, StepContext, WriteFingerprints
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
