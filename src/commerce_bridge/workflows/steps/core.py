"""``core.*`` actions: order validation, the amount a shipment lets us capture, and the identity map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.clarity import order_from_clarity
from commerce_bridge.mapping.customer import email_dedupe_key, normalized_customer
from commerce_bridge.mapping.shipment import ShipmentCapture, capture_amount_for_shipment, describe
from commerce_bridge.services.ports import Action, IdentityMap, StepContext
from commerce_bridge.workflows.steps.shapes import money_from_shape, money_shape, order_shape

PAYABLE_STATUSES = ("Pending",)


def _key(entity: str, key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValidationError(f"an empty {entity} key", suggested_fix="the step's `key` must resolve to a string")
    return email_dedupe_key(key) if entity == "customer" else key.strip()


def capture_shape(capture: ShipmentCapture) -> dict[str, Any]:
    """The output of ``core.shipment.capture_amount`` (money as ``{minor, currency}``)."""
    return {
        "amount": money_shape(capture.amount), "partial": capture.partial,
        "capturable": money_shape(capture.capturable), "released": money_shape(capture.released),
        "order_total": money_shape(capture.order_total), "lines_ordered": money_shape(capture.lines_ordered),
        "lines_shipped": money_shape(capture.lines_shipped),
        "unshipped": [{"sku": line.sku, "quantity": line.unshipped} for line in capture.lines if line.unshipped],
        "summary": describe(capture),
    }


def actions(identity: IdentityMap) -> dict[str, Action]:
    def validate_order(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order = order_from_clarity(params["order"])
        customer, _ = normalized_customer(order.customer)
        order = type(order)(**{**{f: getattr(order, f) for f in order.__dataclass_fields__}, "customer": customer})
        balance = order.balance_due.minor if order.balance_due is not None else order.total.minor
        needs_payment = (order.status in PAYABLE_STATUSES and balance > 0 and not order.payment_intent_ref)
        if needs_payment and not order.payment_method_ref:
            raise ValidationError(
                f"order {order.key} needs payment but carries no payment method",
                suggested_fix="the storefront must store the Stripe PaymentMethod id on the order; then replay",
            )
        return order_shape(order, needs_payment=needs_payment)

    def shipment_capture(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        capturable = money_from_shape(params["capturable"], field="capturable")
        return capture_shape(capture_amount_for_shipment(params["order"], capturable))

    def lookup(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        entity = params["entity"]
        entity_id = identity.entity_for_key(entity, _key(entity, params["key"]))
        external = identity.external(entity, entity_id, params["system"])
        return {"found": external is not None, "external_id": external, "entity_id": entity_id}

    def link(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        entity, system, external_id = params["entity"], params["system"], str(params["external_id"])
        entity_id = identity.entity_for_key(entity, _key(entity, params["key"]))
        before = identity.external(entity, entity_id, system)
        if before == external_id:  # another run (e.g. the same customer's other order) linked it already
            return {"entity_id": entity_id, "created": False}
        if before is not None:
            raise ValidationError(
                f"{entity} {entity_id} is already linked to {system} {before}, not {external_id}",
                suggested_fix=f"one {entity} has two {system} records ({before} and {external_id}): merge them "
                              f"in {system} or correct the identity link, then replay",
            )
        identity.link(entity, entity_id, system, external_id)  # ValidationError if external_id is someone else's
        return {"entity_id": entity_id, "created": True}

    return {"core.validate.order": validate_order, "core.shipment.capture_amount": shipment_capture,
            "core.identity.lookup": lookup, "core.identity.link": link}
