"""``stripe.*`` actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.domain.orders import CaptureMode
from commerce_bridge.errors import BridgeError, PermanentError, UpstreamRejected, ValidationError
from commerce_bridge.mapping.customer import email_dedupe_key
from commerce_bridge.mapping.metadata import BRIDGE, BRIDGE_MARK, ORDER_KEY
from commerce_bridge.mapping.money import from_stripe_amount, to_stripe_amount
from commerce_bridge.mapping.stripe import (
    capture_params,
    customer_params,
    payment_intent_params,
    stripe_idempotency_key,
)
from commerce_bridge.services.gateways import StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, MONEY, PI, PI_ID, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import (
    customer_from_shape,
    money_from_shape,
    money_shape,
    order_from_shape,
)

# a PaymentIntent in one of these can take no more money: the only statuses in which a run may not reuse it
DEAD_INTENT_STATUSES = ("canceled", "requires_payment_method")

CREATE_SENT = "stripe.create_sent"
"""Identity-map system of the mark "a create of this order's PaymentIntent was sent, its answer is unknown"
(entity ``payment``, external id: the idempotency key it was sent with, as Stripe got it). Written before
the create, under the order's lock."""


DECLINED = "stripe.declined"
"""Identity-map system of the order's last declined PaymentIntent (entity ``payment``): the next try of the
order is sent with another idempotency key (the declined try's key would get Stripe's stored 402 again)."""


def _create_answered(exc: BridgeError) -> bool:
    """Stripe answered the create with a 4xx that settles it: a decline (the PaymentIntent it made can take
    no money and stays unlinked, so a later run may charge anew, as before) or parameters it refused
    (it made nothing). Not a timeout, a 5xx or a 409 (it may have made one), nor an ``idempotency_error``
    (an earlier request with the same key may have made one whose answer was lost)."""
    status = exc.details.get("http_status")
    return (isinstance(exc, PermanentError) and isinstance(status, int) and 400 <= status < 500
            and status != 409 and exc.details.get("type") != "idempotency_error")


def intent_shape(pi: Mapping[str, Any]) -> dict[str, Any]:
    """A PaymentIntent as steps see it: money as ``{minor, currency}``, the 3-D Secure link if any."""
    currency = str(pi.get("currency", "")).upper()
    charge = pi.get("latest_charge")
    charge_id = charge.get("id") if isinstance(charge, Mapping) else charge
    next_action = pi.get("next_action") or {}
    url = None
    if isinstance(next_action, Mapping):
        redirect = next_action.get("redirect_to_url") or {}
        url = redirect.get("url") if isinstance(redirect, Mapping) else None
        if not url:
            sdk = next_action.get("use_stripe_sdk")
            url = sdk.get("stripe_js") if isinstance(sdk, Mapping) else None

    def money(field: str) -> dict[str, Any] | None:
        value = pi.get(field)
        return money_shape(from_stripe_amount(int(value), currency)) if value is not None and currency else None

    return {
        "id": pi.get("id"), "status": pi.get("status"), "amount": money("amount"),
        "amount_received": money("amount_received"), "amount_capturable": money("amount_capturable"),
        "capture_method": pi.get("capture_method"), "latest_charge": charge_id, "customer": pi.get("customer"),
        "next_action_url": url, "metadata": dict(pi.get("metadata") or {}),
    }


def ensure_customer_action(gateway: StripeGateway, locks: KeyLocks, identity: IdentityMap) -> Action:
    """``stripe.customer.ensure``: the linked Stripe customer, else the one found by e-mail, else a new one."""

    def ensure_customer(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        customer = customer_from_shape(params["customer"])
        if params.get("existing_id"):
            return {"id": params["existing_id"], "created": False, "email": customer.email}
        # one find-then-create per mailbox at a time, in every process: two first orders of the same new
        # customer, under any spellings of the address, must not both find nothing and both create (the
        # create's key differs per run, and Stripe's e-mail search is exact). The link is made before the
        # lock is released, so the next run finds it even when its spelling finds nothing in Stripe;
        # the workflow's own `link_customer` step then links the same id again (a no-op).
        key = email_dedupe_key(customer.email)  # core.identity's key of a customer
        with locks.hold("stripe.customer", key):
            entity_id = identity.entity_for_key("customer", key)
            linked = identity.external("customer", entity_id, "stripe")
            if linked is not None:
                return {"id": linked, "created": False, "email": customer.email}
            found = gateway.find_customer_by_email(customer.email)
            if found is None:
                found = gateway.create_customer(customer_params(customer), idempotency_key=ctx.idempotency_key)
                created = True
            else:
                created = False
            customer_id = str(found["id"])
            identity.link("customer", entity_id, "stripe", customer_id)
        return {"id": customer_id, "created": created, "email": customer.email}

    return ensure_customer


def actions(gateway: StripeGateway, locks: KeyLocks, identity: IdentityMap) -> dict[str, Action]:
    """The ``stripe.*`` actions (``stripe.customer.ensure`` and ``stripe.payment_intent.create`` consult and
    write the identity map under a key lock)."""

    def create_intent(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order = order_from_shape(params["order"])
        capture = CaptureMode(params.get("capture_method") or "automatic")
        pi_params = payment_intent_params(order, customer_id=str(params["customer_id"]), capture=capture,
                                          payment_method=order.payment_method_ref or None)
        order_key = (order.key or "").strip()
        if not order_key:  # nothing to link it by: the idempotency key alone protects it
            if params.get("existing_id"):
                return reuse_intent(str(params["existing_id"]), order.key, pi_params)
            return {**intent_shape(make_intent(pi_params, str(params.get("idempotency_key") or ctx.idempotency_key))),
                    "reused": False}
        # One PaymentIntent per order, in every process: under the order's lock, the one linked to it is
        # reused; a new one is linked (entity `payment`, as the workflow's `link_payment` does) before the
        # lock is released. So a run that parks after this step, or one running at the same moment, or
        # one a day later (when Stripe has forgotten the idempotency key) never makes a second one.
        # A create whose every answer was lost (timeouts, resets) links nothing, so the CREATE_SENT mark
        # is written before it: a later attempt that finds the mark and no link first searches Stripe for
        # the order's PaymentIntent by metadata. Stripe's search is eventually consistent (normally within
        # a minute), so the create after it is sent with the mark's key, the first create's: within 24 h
        # Stripe answers it with the PaymentIntent it made (whichever run asks), later the search finds
        # that one. A first attempt, without the mark, makes no search request (search has its own limit
        # of 20 reads/s).
        with locks.hold("stripe.payment_intent", order_key):
            entity_id = identity.entity_for_key("payment", order_key)
            links = identity.externals("payment", entity_id)  # the PaymentIntent, the last decline, the mark
            linked = links.get("stripe") or params.get("existing_id")
            if linked:
                return reuse_intent(str(linked), order.key, pi_params)
            declined = links.get(DECLINED)
            key = links.get(CREATE_SENT)
            if key is None:
                key = str(params.get("idempotency_key") or ctx.idempotency_key)
                if declined:  # a new try after a decline: the key of the declined try would replay its 402
                    key = f"{key}:after:{declined}"
                key = stripe_idempotency_key(key)
                identity.link("payment", entity_id, CREATE_SENT, key)
            else:
                lost = find_lost_intent(pi_params, older_than=declined)
                if lost is not None:  # it is the order's: linked, then the rules of any reuse apply
                    identity.link("payment", entity_id, "stripe", str(lost["id"]))
                    return checked_reuse(lost, order.key, pi_params)
            try:
                pi = make_intent(pi_params, key)
            except BridgeError as exc:
                if _create_answered(exc):
                    identity.unlink("payment", entity_id, CREATE_SENT)
                    if exc.details.get("payment_intent"):  # a decline: the next try of the order needs a new key
                        identity.unlink("payment", entity_id, DECLINED)
                        identity.link("payment", entity_id, DECLINED, str(exc.details["payment_intent"]))
                raise
            identity.link("payment", entity_id, "stripe", str(pi["id"]))
        return {**intent_shape(pi), "reused": False}

    def find_lost_intent(pi_params: Mapping[str, Any], *, older_than: str | None) -> dict[str, Any] | None:
        """The newest PaymentIntent the bridge made for this order (its metadata), if Stripe's search has it.

        ``older_than``: the order's last declined PaymentIntent; it and the ones made before it (newest
        first, so after it in the list) are earlier tries, never the lost one.
        """
        metadata = pi_params.get("metadata") or {}
        wanted = {k: str(metadata[k]) for k in (ORDER_KEY, BRIDGE) if metadata.get(k)}
        for pi in gateway.find_payment_intents_by_metadata(wanted):
            if older_than is not None and str(pi.get("id")) == older_than:
                return None
            return pi
        return None

    def make_intent(pi_params: Mapping[str, Any], key: str) -> dict[str, Any]:
        try:
            return gateway.create_payment_intent(pi_params, idempotency_key=key)
        except UpstreamRejected as exc:
            exc.suggested_fix = exc.suggested_fix or "the customer must use another card; the order is on hold"
            raise

    def reuse_intent(pi_id: str, order_key: str, pi_params: Mapping[str, Any]) -> dict[str, Any]:
        """The order's PaymentIntent from an earlier run: never a second one (Stripe forgets keys after 24 h)."""
        return checked_reuse(gateway.retrieve_payment_intent(pi_id), order_key, pi_params)

    def checked_reuse(pi: Mapping[str, Any], order_key: str, pi_params: Mapping[str, Any]) -> dict[str, Any]:
        """``pi`` as the step's output, if it may be reused for the order: dead is a decline, another amount
        or currency a ValidationError."""
        pi_id = str(pi.get("id"))
        status = str(pi.get("status"))
        if status in DEAD_INTENT_STATUSES:
            # it can take no more money, and a new one could not be linked to the order in its place:
            # handled like a decline (the order goes on hold), never by charging anew
            error = pi.get("last_payment_error") or {}
            decline = (error.get("decline_code") or error.get("code")) if isinstance(error, Mapping) else None
            raise UpstreamRejected(
                f"order {order_key}'s PaymentIntent {pi_id} is {status}: it can take no payment",
                suggested_fix="the customer must pay again (e.g. through a payment link) and the payment be "
                              "recorded on the order; the order is on hold",
                details={"code": "payment_intent_" + status, "decline_code": decline or status,
                         "payment_intent": pi_id, "status": status, "reused": True},
            )
        if (pi.get("amount"), pi.get("currency")) != (pi_params["amount"], pi_params["currency"]):
            raise ValidationError(
                f"order {order_key} now asks for {pi_params['amount']} {pi_params['currency']} (Stripe units) but "
                f"its PaymentIntent {pi_id} ({status}) is for {pi.get('amount')} {pi.get('currency')}",
                suggested_fix="the order total changed after it was charged: settle the difference in Stripe and "
                              "Clarity by hand, then discard this entry",
                details={"payment_intent": pi_id, "status": status},
            )
        return {**intent_shape(pi), "reused": True}

    def retrieve(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return intent_shape(gateway.retrieve_payment_intent(str(params["payment_intent_id"])))

    def capture(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        amount = money_from_shape(params["amount"]) if params.get("amount") else None
        to_capture = capture_params(amount).get("amount_to_capture")
        pi = gateway.capture_payment_intent(str(params["payment_intent_id"]), amount_to_capture=to_capture,
                                            idempotency_key=ctx.idempotency_key)
        return intent_shape(pi)

    def cancel(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        pi = gateway.cancel_payment_intent(str(params["payment_intent_id"]),
                                           cancellation_reason=params.get("reason") or "requested_by_customer",
                                           idempotency_key=ctx.idempotency_key)
        return intent_shape(pi)

    def refund(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        # marked as the bridge's: stripe.refund_recorded never books it again as a refund made in Stripe
        body: dict[str, Any] = {"payment_intent": str(params["payment_intent_id"]), "metadata": {BRIDGE: BRIDGE_MARK}}
        if params.get("amount"):
            body["amount"] = to_stripe_amount(money_from_shape(params["amount"]))[0]
        if params.get("reason"):
            body["reason"] = params["reason"]
        re = gateway.create_refund(body, idempotency_key=ctx.idempotency_key)
        currency = str(re.get("currency", "")).upper()
        return {"id": re.get("id"), "status": re.get("status"),
                "amount": money_shape(from_stripe_amount(int(re.get("amount", 0)), currency)) if currency else None}

    return {
        "stripe.customer.ensure": ensure_customer_action(gateway, locks, identity),
        "stripe.payment_intent.create": create_intent, "stripe.payment_intent.retrieve": retrieve,
        "stripe.payment_intent.capture": capture, "stripe.payment_intent.cancel": cancel,
        "stripe.refund.create": refund,
    }


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="stripe.customer.ensure", summary="Find or create the Stripe customer for an order's customer.",
        description="Uses `existing_id` when given. Else, under a key lock of the customer's e-mail "
                    "de-duplication key (any spelling of one mailbox: case, Gmail dots and `+tags`), shared by "
                    "every worker process: the Stripe customer the identity map links to that key (entity "
                    "`customer`, system `stripe`); else the one Stripe finds by the exact email; else a new one "
                    "(email, name, phone, address, `metadata.clarity_user_id`); the step links it in the identity "
                    "map before the lock is released. Runs for the same new customer (two first orders at once, "
                    "under any spellings) take turns, and the later ones get the customer the first one linked; "
                    "a later `core.identity.link` of the same id is a no-op.",
        params=(Param("customer", "object", "The order's customer (`order.customer`).", required=True),
                Param("existing_id", "string", "A Stripe customer id already linked (may be null).")),
        output="`{\"id\": \"cus_...\", \"created\": bool, \"email\": str}`.",
        example_output={"id": "cus_Example", "created": False, "email": "ann@example.com"},
        idempotency="The create carries `Idempotency-Key: run_id:step_id`; serialised per mailbox (key lock "
                    "of the de-duplication key, identity link written under it), so concurrent runs make one "
                    "customer.",
        errors=(("UpstreamRejected", "Stripe 400 (an invalid email or address)."), LOCK_BUSY, UNAVAILABLE,
                RATE, AUTH),
        examples=(ex("customer", "stripe.customer.ensure", customer="${ steps.order.customer }",
                      existing_id="${ steps.known_customer.external_id }"),),
    ),
    StepType(
        type="stripe.payment_intent.create",
        summary="Create and confirm a PaymentIntent for an order with its payment method.",
        description="Amount = `order.total` converted to Stripe's units (zero- and three-decimal currencies "
                    "per facts/stripe.md; an unrepresentable amount is a MappingError). Metadata: "
                    "`clarity_order_id`, `clarity_order_key`. Confirmed with `order.payment_method_ref`. "
                    "A PaymentIntent that needs 3-D Secure is not an error: `status` is `requires_action` "
                    "and `next_action_url` is the link for the customer.\n\n"
                    "**`existing_id`** (the PaymentIntent the identity map links to the order, from "
                    "`core.identity.lookup`): Stripe keeps idempotency keys for 24 hours only, so a second run "
                    "for the same order a day later (a 3-D Secure order still Pending, then edited) would "
                    "create and confirm a second PaymentIntent. With `existing_id` the step creates nothing: "
                    "it retrieves that PaymentIntent and, if it has taken or may still take money "
                    "(`succeeded`, `processing`, `requires_capture`, `requires_action`, "
                    "`requires_confirmation`, or any status Stripe may add), returns it with `reused: true`. "
                    "If it can take no money (`canceled`, or `requires_payment_method` after a failed 3-D "
                    "Secure or a later decline) the step fails with `UpstreamRejected` like a decline, so "
                    "the workflow's decline branch holds the order and tells the customer; it does not "
                    "create a new PaymentIntent, because that one could not replace the old in the identity "
                    "map (one link per order) and every later run would again find the dead one and make "
                    "yet another. If the order's total or currency no longer match the PaymentIntent's (the "
                    "order was edited after it was charged), the step fails with `ValidationError` (DLQ) "
                    "rather than reuse it for the wrong amount.",
        params=(Param("order", "object", "The **order** (output of `core.validate.order`).", required=True),
                Param("customer_id", "string", "The Stripe customer id.", required=True),
                Param("capture_method", "string", "`manual` authorises only; capture happens on shipment.",
                      default="automatic", choices=("automatic", "manual")),
                Param("idempotency_key", "string", "Overrides `run_id:step_id`, e.g. one key per order, so that "
                                                   "two runs for the same order within Stripe's 24 hours can "
                                                   "never charge twice."),
                Param("existing_id", "string", "The PaymentIntent already linked to the order (may be null): "
                                               "reused instead of creating one.")),
        output="The PaymentIntent: `{id, status, amount, amount_received, amount_capturable` (money), "
               "`capture_method, latest_charge, customer, next_action_url, metadata, reused}`; `reused` is "
               "true when it is the one already linked to the order (or `existing_id`).",
        example_output={**PI, "reused": False},
        idempotency="`Idempotency-Key: run_id:step_id` (or `idempotency_key`): a retry or replay within 24 h "
                    "returns the same PaymentIntent. Beyond that, the identity map: under a key lock of the "
                    "order key (shared by every worker), the PaymentIntent linked to the order (entity "
                    "`payment`, system `stripe`) is reused, else `existing_id`'s; a new one is linked before "
                    "the lock is released, so runs at the same moment, runs parked after this step and runs "
                    "a day later never create a second one. A create whose every answer was lost (timeouts, "
                    "resets) links nothing, so the step marks the order (system `stripe.create_sent`) before "
                    "it creates; an attempt that finds the mark and no link first searches Stripe for "
                    "PaymentIntents with the order's `clarity_order_key` and `bridge` metadata and reuses "
                    "the newest like a linked one (same rules), linking it, and creates only when there is "
                    "none, with the key of the create that was lost (the mark holds it): Stripe's search is eventually "
                    "consistent (normally within a minute), so within 24 h the key gets Stripe's answer of "
                    "the first create, whichever run sends it, and later the search finds it. The first attempt "
                    "for an order makes no search request (search has its own limit, 20 reads/s). A decline "
                    "or a request Stripe refused clears the mark; a decline is remembered (system "
                    "`stripe.declined`), and the order's next try (e.g. put back to Pending with another "
                    "card) is sent with the key plus `:after:<declined PaymentIntent>`, so Stripe makes a new "
                    "PaymentIntent instead of answering with the stored decline.",
        errors=(("UpstreamRejected", "card declined (402): `details` has `code`, `decline_code` and "
                                     "`payment_intent`; the usual `on_error` case. Also when the reused "
                                     "PaymentIntent (linked, `existing_id`, or found after a lost answer) is "
                                     "`canceled` or `requires_payment_method`: `decline_code` is its last "
                                     "error's or its status."),
                ("ValidationError", "an amount Stripe cannot represent, below the minimum or above the maximum; "
                                    "or the reused PaymentIntent is for another amount or currency."),
                ("NotFound", "no PaymentIntent `existing_id`."),
                UNAVAILABLE, RATE, AUTH),
        examples=(ex("payment", "stripe.payment_intent.create", order="${ steps.order }",
                      customer_id="${ steps.customer.id }", capture_method="automatic",
                      existing_id="${ steps.known_payment.external_id }"),),
    ),
    StepType(
        type="stripe.payment_intent.retrieve", summary="Read a PaymentIntent (fresh, from Stripe).",
        description="Re-reads the object instead of trusting an event that may be stale or out of order.",
        params=(PI_ID,), output="The PaymentIntent, as for `stripe.payment_intent.create`.", example_output=PI,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "no such PaymentIntent."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("payment", "stripe.payment_intent.retrieve", payment_intent_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="stripe.payment_intent.capture", summary="Capture an authorised (manual capture) PaymentIntent.",
        description="Captures `amount` (partial capture; Stripe releases the rest and a second capture is "
                    "refused) or the whole capturable amount. `core.shipment.capture_amount` computes the "
                    "amount for a partial shipment.",
        params=(PI_ID, Param("amount", "money", "The amount to capture; omitted means all of it.")),
        output="The PaymentIntent after capture.",
        example_output={**PI, "capture_method": "manual"},
        idempotency="`Idempotency-Key: run_id:step_id`; capturing an already captured intent is reported by "
                    "Stripe as an error the action treats as success when the amounts agree.",
        errors=(("UpstreamRejected", "not capturable (canceled, expired authorisation, amount too large)."),
                UNAVAILABLE, RATE, AUTH),
        examples=(ex("capture", "stripe.payment_intent.capture", payment_intent_id="${ steps.payment.id }"),
                  ex("capture_shipped", "stripe.payment_intent.capture", payment_intent_id="${ steps.payment.id }",
                      amount="${ steps.to_capture.amount }")),
    ),
    StepType(
        type="stripe.payment_intent.cancel", summary="Cancel a PaymentIntent that has not succeeded.",
        description="Cancels an intent in `requires_payment_method`, `requires_confirmation`, `requires_action` "
                    "or `requires_capture` (releasing an authorisation).",
        params=(PI_ID, Param("reason", "string", "Stripe's cancellation reason.", default="requested_by_customer",
                              choices=("duplicate", "fraudulent", "requested_by_customer", "abandoned"))),
        output="The PaymentIntent after cancellation.", example_output={**PI, "status": "canceled"},
        idempotency="`Idempotency-Key: run_id:step_id`; an already canceled intent counts as success.",
        errors=(("UpstreamRejected", "the intent already succeeded (refund it instead)."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("cancel", "stripe.payment_intent.cancel", payment_intent_id="${ steps.payment.id }"),),
    ),
    StepType(
        type="stripe.refund.create", summary="Refund a succeeded PaymentIntent, fully or partly.",
        description="Creates a Refund for the PaymentIntent's charge.",
        params=(PI_ID, Param("amount", "money", "The amount to refund; omitted means everything not yet refunded."),
                Param("reason", "string", "Stripe's refund reason.",
                      choices=("duplicate", "fraudulent", "requested_by_customer"))),
        output="`{\"id\": \"re_...\", \"status\": str, \"amount\": money}`.",
        example_output={"id": "re_Example", "status": "succeeded", "amount": MONEY},
        idempotency="`Idempotency-Key: run_id:step_id`.",
        errors=(("UpstreamRejected", "nothing left to refund, or the charge is disputed."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("refund", "stripe.refund.create", payment_intent_id="${ steps.payment.id }"),),
    ),
)
