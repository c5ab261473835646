"""``core.*`` step types: order validation, the amount a shipment lets us capture, the identity map, the
audit record and the durable wait (which the engine performs itself)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.clarity import order_from_clarity
from commerce_bridge.mapping.customer import email_dedupe_key, normalized_customer
from commerce_bridge.mapping.shipment import ShipmentCapture, capture_amount_for_shipment, describe
from commerce_bridge.services.ports import Action, AuditLog, IdentityMap, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import ORDER, ex
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
            "core.identity.lookup": lookup, "core.identity.link": link, "core.wait.until": engine_handles_waits}


def engine_handles_waits(ctx: StepContext, params: Mapping[str, Any]) -> Any:
    """``core.wait.until`` is a durable sleep the engine performs itself; it never calls an action."""
    raise RuntimeError("core.wait.until must be run by the engine as a durable sleep")


def audit_actions(audit: AuditLog) -> dict[str, Action]:
    """``core.audit.record``: one audit row per run (the built-in ``core.audit`` workflow)."""

    def record(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"new": audit.record(ctx.run_id, ctx.source, ctx.event_id, ctx.event_type)}

    return {"core.audit.record": record}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="core.audit.record", summary="Record the triggering event in the audit log.",
        description="Writes one audit row per run (source, event id, event type). Used by the built-in "
                    "`core.audit` workflow.",
        params=(), output="`{\"recorded\": bool}`: false when the row already existed.",
        example_output={"recorded": True},
        idempotency="The audit row is keyed by the run id; a repeat is a no-op that answers `recorded: false`.",
        errors=(("StoreUnavailable", "our database is unreachable; retried."),),
        examples=(ex("record", "core.audit.record"),),
    ),
    StepType(
        type="core.identity.lookup", summary="Find the id another system uses for one of our entities.",
        description="Reads the identity map: the link of (`entity`, `key`) in `system`. Not finding a link "
                    "is not an error: the output says `found: false`.",
        params=(Param("entity", "string", "The kind of entity.", required=True,
                      choices=("customer", "order", "payment", "product")),
                Param("key", "string", "Our key of the entity: the normalised email for a customer, the "
                                       "Clarity order key for an order or payment.", required=True),
                Param("system", "string", "The system whose id is wanted.", required=True,
                      choices=("stripe", "clarity", "erp"))),
        output="`{\"found\": bool, \"external_id\": str | null, \"entity_id\": str | null}`.",
        example_output={"found": True, "external_id": "cus_Example", "entity_id": "6f1c0d3e-0000-4000-8000-000000000001"},
        idempotency="Read only.", writes=False, inline=True,
        errors=(("StoreUnavailable", "our database is unreachable; retried."),
                ("ValidationError", "an empty key.")),
        examples=(ex("known_customer", "core.identity.lookup", entity="customer",
                      key="${ steps.order.customer.email }", system="stripe"),),
    ),
    StepType(
        type="core.identity.link", summary="Link one of our entities to its id in another system.",
        description="Writes the identity map: one link per (entity, system). Customers are de-duplicated by "
                    "normalised email (lower case, trimmed). Linking the same id again is a no-op (`created: "
                    "false`), e.g. when two orders of one new customer ran at once and both found the one "
                    "Stripe customer that `stripe.customer.ensure` made.",
        params=(Param("entity", "string", "The kind of entity.", required=True,
                      choices=("customer", "order", "payment", "product")),
                Param("key", "string", "Our key of the entity (normalised email, order key...).", required=True),
                Param("system", "string", "The other system.", required=True, choices=("stripe", "clarity", "erp")),
                Param("external_id", "string", "The entity's id in that system.", required=True)),
        output="`{\"entity_id\": str, \"created\": bool}`.",
        example_output={"entity_id": "6f1c0d3e-0000-4000-8000-000000000001", "created": True},
        idempotency="An upsert by (entity, key, system): repeating it (or another run linking the same id) "
                    "changes nothing.",
        errors=(("ValidationError", "the entity is already linked to a different id in that system, or the id "
                                    "to another entity (two records to merge): DLQ at once with both ids and "
                                    "a suggested fix."),
                ("StoreUnavailable", "our database is unreachable; retried.")),
        examples=(ex("link_customer", "core.identity.link", entity="customer",
                      key="${ steps.order.customer.email }", system="stripe",
                      external_id="${ steps.customer.id }"),),
    ),
    StepType(
        type="core.validate.order", summary="Check a Clarity order and translate it into the bridge's order shape.",
        description="Pure: maps the full Clarity sales order model (as `clarity.order.get` returns it) into "
                    "the **order** shape (see Shared shapes above): exact money in "
                    "minor units, normalised email, harmonised addresses. `needs_payment` is true when the "
                    "order's status is `Pending`, it has a balance due and no `PaymentTransactionID`.",
        params=(Param("order", "object", "The Clarity sales order model (full projection).", required=True),),
        output="The **order** object.", example_output=ORDER,
        idempotency="Pure; no side effects.", writes=False, inline=True,
        errors=(("ValidationError", "an invalid email, no lines, a missing currency: fix the order in Clarity, "
                                    "then replay."),
                ("MappingError", "an amount finer than the currency's minor unit or an unknown currency.")),
        examples=(ex("order", "core.validate.order", order="${ steps.get }"),),
    ),
    StepType(
        type="core.shipment.capture_amount",
        summary="Compute how much of an authorisation a Clarity order's shipment lets us capture.",
        description="Pure (`mapping/shipment.py`). A partial shipment is an order marked Shipped whose sales "
                    "items still have `QuantityBackOrdered` or `QuantityPreSold` above zero: those units did "
                    "not ship. The amount is `Totals.Total` x shipped line value / ordered line value (the "
                    "shipped lines at their sold price plus the same share of tax, shipping and fees, minus "
                    "the same share of the discount), computed exactly and rounded down once to what Stripe "
                    "can capture in the currency (10 fils for KWD). It is never above `capturable`; a complete "
                    "shipment gives `Totals.Total` (the whole authorisation when they are equal); nothing "
                    "shipped gives zero. Capturing less makes Stripe release the rest.",
        params=(Param("order", "object", "The Clarity sales order model (full projection, as `clarity.order.get` "
                                         "returns it).", required=True),
                Param("capturable", "money", "The PaymentIntent's `amount_capturable`.", required=True)),
        output="`{\"amount\": money` (to capture now), `\"partial\": bool, \"capturable\", \"released\"` "
               "(what Stripe releases), `\"order_total\", \"lines_ordered\", \"lines_shipped\"` (money), "
               "`\"unshipped\": [{\"sku\", \"quantity\"}], \"summary\": str}`.",
        example_output={"amount": {"minor": 2925, "currency": "USD"}, "partial": True,
                        "capturable": {"minor": 3900, "currency": "USD"},
                        "released": {"minor": 975, "currency": "USD"},
                        "order_total": {"minor": 3900, "currency": "USD"},
                        "lines_ordered": {"minor": 3900, "currency": "USD"},
                        "lines_shipped": {"minor": 2925, "currency": "USD"},
                        "unshipped": [{"sku": "SKU-MUG", "quantity": 1}],
                        "summary": "captures 29.25 of 39.00 USD; 1 x SKU-MUG not shipped"},
        idempotency="Pure; no side effects.", writes=False, inline=True,
        errors=(("MappingError", "totals that do not add up, an order currency other than the PaymentIntent's, "
                                 "more units back-ordered than ordered, or a negative line price on a partly "
                                 "shipped order: capture by hand or fix the order, then replay."),
                ("ValidationError", "`capturable` is not money.")),
        examples=(ex("to_capture", "core.shipment.capture_amount", order="${ steps.get }",
                      capturable="${ steps.payment.amount_capturable }"),),
    ),
    StepType(
        type="core.wait.until", summary="Wait durably (for dunning reminders and deadlines).",
        description="Sleeps durably: the run survives restarts and no worker thread is held. Give exactly one "
                    "of `delay_s` or `at`.",
        params=(Param("delay_s", "number", "Seconds to wait."),
                Param("at", "string", "An ISO-8601 time with offset to wait until.")),
        output="`{\"waited_s\": number}`.", example_output={"waited_s": 86400},
        idempotency="No side effects; a restarted run waits only for the remaining time.", writes=False,
        errors=(("ValidationError", "neither or both of `delay_s` and `at`, or a time without offset."),),
        examples=(ex("wait_reminder", "core.wait.until", delay_s=86400),),
    ),
)
