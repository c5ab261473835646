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
