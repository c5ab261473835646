"""Declarations of the step types workflows may use (no implementations: actions are bound in bootstrap).

The shapes the declarations refer to (money, address, customer, order) are described in
:data:`SHAPES`, which the generated reference page includes.
"""

from __future__ import annotations

from typing import Any

from commerce_bridge.workflows.catalogue import Param, StepType

SHAPES = """\
Shapes that several step types share:

- **money**: `{"minor": 1999, "currency": "USD"}`: an integer number of minor units of an upper-case
  ISO 4217 currency. Never a float. Connectors convert to and from each vendor's units.
- **address**: `{"line1", "line2", "city", "region", "postal_code", "country", "name"}`; `country` is
  ISO 3166-1 alpha-2.
- **customer**: `{"email", "name", "phone", "billing_address": address, "external_ids": {system: id}}`;
  `email` is normalised (trimmed, lower case).
- **order** (the output of `core.validate.order`): `{"external_id"` (the Clarity ID, a string), `"key"`
  (the Clarity CustomKey), `"status"`, `"currency"`, `"total"`, `"tax"`, `"shipping"`, `"discount"`
  (money; total = lines + tax + shipping - discount), `"lines": [{"sku", "quantity", "unit_price": money,
  "description"}]`, `"customer": customer`, `"shipping_address": address`, `"payment_method_ref"` (a
  Stripe PaymentMethod id, never card data), `"needs_payment"` (bool)`}`.
"""

_MONEY = {"minor": 3570, "currency": "USD"}
_ADDRESS = {"line1": "1 Main St", "line2": "", "city": "Austin", "region": "TX", "postal_code": "78701",
            "country": "US", "name": "Ann Lee"}
_CUSTOMER = {"email": "ann@example.com", "name": "Ann Lee", "phone": "+15125550100",
             "billing_address": _ADDRESS, "external_ids": {"clarity": "17"}}
_ORDER: dict[str, Any] = {
    "external_id": "42", "key": "WEB-100001", "status": "Pending", "currency": "USD",
    "total": _MONEY, "tax": {"minor": 120, "currency": "USD"}, "shipping": {"minor": 500, "currency": "USD"},
    "discount": {"minor": 200, "currency": "USD"},
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": {"minor": 1250, "currency": "USD"},
               "description": "Widget"}, {"sku": "SKU-2", "quantity": 1, "unit_price": {"minor": 650,
                                                                                       "currency": "USD"},
                                          "description": "Gadget"}],
    "customer": _CUSTOMER, "shipping_address": _ADDRESS, "payment_method_ref": "pm_card_visa",
    "needs_payment": True,
}
_CLARITY_ORDER: dict[str, Any] = {
    "ID": 42, "CustomKey": "WEB-100001", "StatusKey": "Pending", "StateKey": "WORK", "TypeKey": "Web",
    "CurrencyKey": "USD", "BalanceDue": "35.7000",
    "Totals": {"SubTotal": "31.5000", "Shipping": "5.0000", "Tax": "1.2000", "Discounts": "-2.0000",
               "Total": "35.7000"},
    "UserContactEmail": "ann@example.com",
    "SalesItems": [{"Sku": "SKU-1", "Quantity": 2, "UnitCorePrice": "12.5000"}],
    "SerializableAttributes": {"StripePaymentMethodID": {"Value": "pm_card_visa"}},
}
_PI: dict[str, Any] = {
    "id": "pi_3Example", "status": "succeeded", "amount": _MONEY, "amount_received": _MONEY,
    "amount_capturable": {"minor": 0, "currency": "USD"}, "capture_method": "automatic",
    "latest_charge": "ch_3Example", "customer": "cus_Example", "next_action_url": None,
    "metadata": {"clarity_order_id": "42", "clarity_order_key": "WEB-100001"},
}
_UNAVAILABLE = ("UpstreamUnavailable", "timeout, connection error or 5xx; retried with backoff, then DLQ.")
_RATE = ("RateLimited", "429; retried after max(Retry-After, backoff).")
_AUTH = ("UpstreamAuthFailed", "401/403: credentials or permissions are wrong; DLQ and the connector pauses.")
_LOCK_BUSY = ("Conflict", "another run held this key's lock for 30 s (it is creating the same record, or it "
                          "crashed and its 60 s lease has not run out); retried with backoff.")
_ORDER_ID = Param("order_id", "string", "The Clarity sales order ID (a number or its string form).",
                  required=True)
_PI_ID = Param("payment_intent_id", "string", "The PaymentIntent id (`pi_...`).", required=True)


def _ex(step_id: str, uses: str, **with_: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": uses, "with": with_} if with_ else {"id": step_id, "uses": uses}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="core.audit.record", summary="Record the triggering event in the audit log.",
        description="Writes one audit row per run (source, event id, event type). Used by the built-in "
                    "`core.audit` workflow.",
        params=(), output="`{\"recorded\": bool}`: false when the row already existed.",
        example_output={"recorded": True},
        idempotency="The audit row is keyed by the run id; a repeat is a no-op that answers `recorded: false`.",
        errors=(("StoreUnavailable", "our database is unreachable; retried."),),
        examples=(_ex("record", "core.audit.record"),),
    ),
    StepType(
        type="outbound.webhook.post", summary="POST the triggering event, signed, to the configured outbound URL.",
        description="Sends the event body as received, with an `X-Bridge-Signature` HMAC header, to the "
                    "outbound webhook configured in settings. Used by the built-in `core.forward` workflow.",
        params=(), output="`{\"status\": int}`: the receiver's HTTP status.", example_output={"status": 200},
        idempotency="The delivery carries the idempotency key as `Idempotency-Key`; receivers de-duplicate by it.",
        errors=(_UNAVAILABLE, _RATE, ("UpstreamRejected", "the receiver answered 4xx.")),
        examples=(_ex("post", "outbound.webhook.post"),),
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
        examples=(_ex("known_customer", "core.identity.lookup", entity="customer",
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
        examples=(_ex("link_customer", "core.identity.link", entity="customer",
                      key="${ steps.order.customer.email }", system="stripe",
                      external_id="${ steps.customer.id }"),),
    ),
    StepType(
        type="core.validate.order", summary="Check a Clarity order and translate it into the bridge's order shape.",
        description="Pure: maps the full Clarity sales order model (as `clarity.order.get` returns it) into "
                    "the **order** shape (see the module docstring of catalogue_steps.py): exact money in "
                    "minor units, normalised email, harmonised addresses. `needs_payment` is true when the "
                    "order's status is `Pending`, it has a balance due and no `PaymentTransactionID`.",
        params=(Param("order", "object", "The Clarity sales order model (full projection).", required=True),),
        output="The **order** object.", example_output=_ORDER,
        idempotency="Pure; no side effects.", writes=False, inline=True,
        errors=(("ValidationError", "an invalid email, no lines, a missing currency: fix the order in Clarity, "
                                    "then replay."),
                ("MappingError", "an amount finer than the currency's minor unit or an unknown currency.")),
        examples=(_ex("order", "core.validate.order", order="${ steps.get }"),),
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
        examples=(_ex("to_capture", "core.shipment.capture_amount", order="${ steps.get }",
                      capturable="${ steps.payment.amount_capturable }"),),
    ),
    StepType(
        type="clarity.order.get", summary="Read a sales order from Clarity by ID (full model).",
        description="`GET /Ordering/SalesOrder/ID/{ID}`. The output is Clarity's model as is (PascalCase; "
                    "fields with default values omitted).",
        params=(_ORDER_ID,), output="The Clarity sales order model; money amounts as decimal strings "
                                     "(`\"35.7000\"`), never floats.", example_output=_CLARITY_ORDER,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "Clarity answered 204: no such order."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("get", "clarity.order.get", order_id="${ event.data.ID }"),),
    ),
    StepType(
        type="clarity.order.find_by_key", summary="Find a Clarity sales order by its key (CustomKey).",
        description="`GET /Ordering/SalesOrder/Key/{Key}`. A Stripe event can arrive before the order is "
                    "visible in Clarity: with `missing: retry` (the default) not finding it is retried like "
                    "a transient error (give the step a generous `retry`), never dropped or mis-assigned.",
        params=(Param("order_key", "string", "The order's CustomKey, e.g. `WEB-100001`.", required=True),
                Param("missing", "string", "What not finding the order does.", default="retry",
                      choices=("retry", "error"))),
        output="The Clarity sales order model.", example_output=_CLARITY_ORDER,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "no order with that key; with `missing: retry` it carries `should_retry` and is "
                             "retried until `max_attempts`."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("find", "clarity.order.find_by_key",
                      order_key="${ event.data.object.metadata.clarity_order_key }"),),
    ),
    StepType(
        type="clarity.order.set_status", summary="Set a Clarity sales order's status through its action route.",
        description="Calls the PATCH action route for the status (`Hold`, `Confirm`, `Void`, `Ship`...). "
                    "Setting the status the order already has changes nothing.",
        params=(_ORDER_ID,
                Param("status_key", "string", "The target status.", required=True,
                      choices=("Pending", "Confirmed", "On Hold", "Backordered", "Processing", "Shipped",
                               "Ready for Pickup", "Completed", "Void", "Full Payment Received",
                               "Partially Refunded", "Refunded"))),
        output="`{\"order_id\": str, \"status_key\": str, \"changed\": bool}`.",
        example_output={"order_id": "42", "status_key": "On Hold", "changed": True},
        idempotency="Naturally idempotent: Clarity answers an INFO message and changes nothing when the "
                    "status is already set. The write is fingerprinted so the change does not echo back.",
        errors=(("NotFound", "200 with `ActionSucceeded: false` for an unknown order."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("hold", "clarity.order.set_status", order_id="${ steps.order.external_id }",
                      status_key="On Hold"),),
    ),
    StepType(
        type="clarity.order.add_payment", summary="Record a payment on a Clarity sales order (AddPayment).",
        description="`POST /Ordering/SalesOrder/AddPayment` with the amount and the Stripe charge id as "
                    "`TransactionNumber`. Clarity lowers `BalanceDue` and sets Partial or Full Payment Received.",
        params=(_ORDER_ID, Param("amount", "money", "The amount paid.", required=True),
                Param("transaction_number", "string", "The Stripe charge id (`ch_...`).", required=True)),
        output="`{\"order_id\": str, \"added\": bool, \"status_key\": str, \"balance_due\": money}`.",
        example_output={"order_id": "42", "added": True, "status_key": "Full Payment Received",
                        "balance_due": {"minor": 0, "currency": "USD"}},
        idempotency="AddPayment has no idempotency key: before adding, the action looks for a payment with "
                    "the same transaction number (our write fingerprints) and answers `added: false` if found.",
        errors=(("UpstreamRejected", "`ActionSucceeded: false`: amount <= 0 or above the balance due."),
                ("NotFound", "unknown order."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("add_payment", "clarity.order.add_payment", order_id="${ steps.find.ID }",
                      amount="${ steps.payment.amount_received }",
                      transaction_number="${ steps.payment.latest_charge }"),),
    ),
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
        errors=(("UpstreamRejected", "Stripe 400 (an invalid email or address)."), _LOCK_BUSY, _UNAVAILABLE,
                _RATE, _AUTH),
        examples=(_ex("customer", "stripe.customer.ensure", customer="${ steps.order.customer }",
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
        example_output={**_PI, "reused": False},
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
                _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("payment", "stripe.payment_intent.create", order="${ steps.order }",
                      customer_id="${ steps.customer.id }", capture_method="automatic",
                      existing_id="${ steps.known_payment.external_id }"),),
    ),
    StepType(
        type="stripe.payment_intent.retrieve", summary="Read a PaymentIntent (fresh, from Stripe).",
        description="Re-reads the object instead of trusting an event that may be stale or out of order.",
        params=(_PI_ID,), output="The PaymentIntent, as for `stripe.payment_intent.create`.", example_output=_PI,
        idempotency="Read only.", writes=False,
        errors=(("NotFound", "no such PaymentIntent."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("payment", "stripe.payment_intent.retrieve", payment_intent_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="stripe.payment_intent.capture", summary="Capture an authorised (manual capture) PaymentIntent.",
        description="Captures `amount` (partial capture; Stripe releases the rest and a second capture is "
                    "refused) or the whole capturable amount. `core.shipment.capture_amount` computes the "
                    "amount for a partial shipment.",
        params=(_PI_ID, Param("amount", "money", "The amount to capture; omitted means all of it.")),
        output="The PaymentIntent after capture.",
        example_output={**_PI, "capture_method": "manual"},
        idempotency="`Idempotency-Key: run_id:step_id`; capturing an already captured intent is reported by "
                    "Stripe as an error the action treats as success when the amounts agree.",
        errors=(("UpstreamRejected", "not capturable (canceled, expired authorisation, amount too large)."),
                _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("capture", "stripe.payment_intent.capture", payment_intent_id="${ steps.payment.id }"),
                  _ex("capture_shipped", "stripe.payment_intent.capture", payment_intent_id="${ steps.payment.id }",
                      amount="${ steps.to_capture.amount }")),
    ),
    StepType(
        type="stripe.payment_intent.cancel", summary="Cancel a PaymentIntent that has not succeeded.",
        description="Cancels an intent in `requires_payment_method`, `requires_confirmation`, `requires_action` "
                    "or `requires_capture` (releasing an authorisation).",
        params=(_PI_ID, Param("reason", "string", "Stripe's cancellation reason.", default="requested_by_customer",
                              choices=("duplicate", "fraudulent", "requested_by_customer", "abandoned"))),
        output="The PaymentIntent after cancellation.", example_output={**_PI, "status": "canceled"},
        idempotency="`Idempotency-Key: run_id:step_id`; an already canceled intent counts as success.",
        errors=(("UpstreamRejected", "the intent already succeeded (refund it instead)."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("cancel", "stripe.payment_intent.cancel", payment_intent_id="${ steps.payment.id }"),),
    ),
    StepType(
        type="stripe.refund.create", summary="Refund a succeeded PaymentIntent, fully or partly.",
        description="Creates a Refund for the PaymentIntent's charge.",
        params=(_PI_ID, Param("amount", "money", "The amount to refund; omitted means everything not yet refunded."),
                Param("reason", "string", "Stripe's refund reason.",
                      choices=("duplicate", "fraudulent", "requested_by_customer"))),
        output="`{\"id\": \"re_...\", \"status\": str, \"amount\": money}`.",
        example_output={"id": "re_Example", "status": "succeeded", "amount": _MONEY},
        idempotency="`Idempotency-Key: run_id:step_id`.",
        errors=(("UpstreamRejected", "nothing left to refund, or the charge is disputed."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("refund", "stripe.refund.create", payment_intent_id="${ steps.payment.id }"),),
    ),
    StepType(
        type="stripe.refund.list", summary="Read a charge's refunds (fresh, from Stripe) and the order they belong to.",
        description="For `refund.*` and `charge.refund*` events: the charge (`charge_id`, or the charge of "
                    "`refund_id`) and every Refund of it are read from Stripe, never taken from the event. Each "
                    "refund's amount is its own `amount` (never a difference of the charge's cumulative "
                    "`amount_refunded`). The order is the PaymentIntent's `metadata.clarity_order_key`. Refunds "
                    "whose metadata says the bridge made them (`bridge: commerce-bridge`, set by "
                    "`stripe.refund.create`) are left out of `to_book` (echo suppression). `state` counts the "
                    "refunds that hold money (pending, requires_action, succeeded), echoes included.",
        params=(Param("charge_id", "string", "The charge (`ch_...`)."),
                Param("refund_id", "string", "A refund (`re_...`); its charge is used when `charge_id` is empty.")),
        output="`{\"charge_id\", \"payment_intent_id\", \"order_key\"` (null without the metadata), "
               "`\"charge_amount\", \"refunded\"` (money), `\"state\"` (`none`, `partially_refunded`, "
               "`refunded`), `\"refunds\": [{\"id\", \"status\", \"amount\": money, \"reason\", "
               "\"failure_reason\", \"echo\"}]` (oldest first), `\"to_book\"` (the same, without echoes)`}`.",
        example_output={"charge_id": "ch_3Example", "payment_intent_id": "pi_3Example", "order_key": "WEB-100001",
                        "charge_amount": _MONEY, "refunded": {"minor": 1000, "currency": "USD"},
                        "state": "partially_refunded",
                        "refunds": [{"id": "re_Example", "status": "succeeded",
                                     "amount": {"minor": 1000, "currency": "USD"}, "reason": "requested_by_customer",
                                     "failure_reason": "", "echo": False}],
                        "to_book": [{"id": "re_Example", "status": "succeeded",
                                     "amount": {"minor": 1000, "currency": "USD"}, "reason": "requested_by_customer",
                                     "failure_reason": "", "echo": False}]},
        idempotency="Read only.", writes=False,
        errors=(("ValidationError", "neither `charge_id` nor `refund_id`."),
                ("MappingError", "active refunds adding up to more than the charge (Stripe never allows it)."),
                ("NotFound", "no such charge or refund."), _UNAVAILABLE, _RATE, _AUTH),
        examples=(_ex("refunds", "stripe.refund.list", charge_id="${ event.data.object.charge }"),),
    ),
    StepType(
        type="erp.customer.ensure", summary="Find or create the ERPNext Customer for an order's customer.",
        description="Under a key lock of the customer's e-mail de-duplication key (any spelling of one "
                    "mailbox), shared by every worker process: the ERPNext Customer the identity map links to "
                    "that key (entity `customer`, system `erp`); else looks the customer up in ERPNext by the "
                    "exact `email_id` and creates it if absent (under a second key lock of that exact "
                    "`email_id`: ERPNext does not make it unique), and links its `name` in the identity map "
                    "before the lock is released. Payments of the same customer, at once or one after the "
                    "other, under any spellings, make one Customer.",
        params=(Param("customer", "object", "The order's customer (`order.customer`).", required=True),),
        output="`{\"name\": str}` (ERPNext's document name).",
        example_output={"name": "CUST-00042"},
        idempotency="ERPNext has no idempotency keys: identity map, then lookup by email, before create, "
                    "serialised per mailbox (key lock of the de-duplication key; the link is written under it).",
        errors=(("UpstreamRejected", "ERPNext refused the document (417/400, e.g. a missing mandatory field)."),
                _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        replay_safe=True,
        examples=(_ex("erp_customer", "erp.customer.ensure", customer="${ steps.order.customer }"),),
    ),
    StepType(
        type="erp.sales_order.ensure", summary="Find or create the ERPNext Sales Order for an order.",
        description="One Sales Order per order key (`po_no` = the Clarity key); items by SKU.",
        params=(Param("order", "object", "The **order**.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True)),
        output="`{\"name\": str, \"grand_total\": str}` (ERPNext answers decimals as strings).",
        example_output={"name": "SAL-ORD-2026-00042", "grand_total": "129.90"},
        idempotency="Lookup by the order key before create, then submit, serialised per order key (key lock): "
                    "a second run, even at the same moment, finds the first one's document.",
        errors=(("UpstreamRejected", "an unknown item code (SKU) or another ERPNext validation: fix, then replay."),
                _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        replay_safe=True,
        examples=(_ex("erp_order", "erp.sales_order.ensure", order="${ steps.order }",
                      customer="${ steps.erp_customer.name }"),),
    ),
    StepType(
        type="erp.payment_entry.ensure", summary="Find or create the ERPNext Payment Entry for a payment.",
        description="A received Payment Entry against the Sales Order, `reference_no` = the Stripe charge id.",
        params=(Param("sales_order", "string", "The ERPNext Sales Order name.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True),
                Param("amount", "money", "The amount received.", required=True),
                Param("reference_no", "string", "The Stripe charge id.", required=True)),
        output="`{\"name\": str}`.", example_output={"name": "ACC-PAY-2026-00042"},
        idempotency="Lookup by `reference_no` before create, then submit, serialised per `reference_no` "
                    "(key lock).",
        errors=(("UpstreamRejected", "ERPNext refused the document."), _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        replay_safe=True,
        examples=(_ex("erp_payment", "erp.payment_entry.ensure", sales_order="${ steps.erp_order.name }",
                      customer="${ steps.erp_customer.name }", amount="${ steps.payment.amount_received }",
                      reference_no="${ steps.payment.latest_charge }"),),
    ),
    StepType(
        type="clarity.return.sync", summary="Bring an order's Clarity sales returns in line with its Stripe refunds.",
        description="One SalesReturn per Stripe Refund, `CustomKey` and `RefundTransactionID` = the refund id, "
                    "`RefundAmount` = the refund's amount, `Description` = `Stripe refund re_...: <reason>`. Each "
                    "refund is read again from Stripe under its key lock and acted on in that status: `pending` "
                    "or `requires_action` creates the return (Pending); `succeeded` also records its payment "
                    "with ManuallyRefund (`TransactionNumber` = the refund id; the return becomes Completed); "
                    "`failed` or `canceled` voids a return made earlier.",
        params=(_ORDER_ID, Param("refunds", "array", "The refunds (`steps.<list>.to_book`; only the ids are used).",
                                 required=True)),
        output="`{\"returns\": [{\"refund_id\", \"refund_status\", \"return_id\", \"action\"}]}`; `action` is "
               "`created`, `refunded`, `voided` or `none`.",
        example_output={"returns": [{"refund_id": "re_Example", "refund_status": "succeeded", "return_id": 7,
                                     "action": "refunded"}]},
        idempotency="Find-then-create by the refund id (`CustomKey`) under a key lock of the refund id shared by "
                    "every worker; ManuallyRefund only when the return is not Completed yet, Void only when it is "
                    "not closed.",
        errors=(("UpstreamRejected", "`ActionSucceeded: false` (e.g. an unknown order)."), _LOCK_BUSY, _UNAVAILABLE,
                _RATE, _AUTH),
        also_needs=("stripe",),
        examples=(_ex("returns", "clarity.return.sync", order_id="${ steps.find.ID }", refunds="${ steps.refunds.to_book }"),),
    ),
    StepType(
        type="clarity.order.set_refund_status", summary="Set an order's status from its charge's refunds.",
        description="Under a key lock of the order, reads the charge's refunds from Stripe and sets the order to "
                    "`refunded_status` when they hold the whole charge, `partially_refunded_status` when they hold "
                    "part of it; when none holds money any more (every refund failed) an order still in one of "
                    "those two statuses goes back to `paid_status`. Reading under the lock means the last run to "
                    "write writes the latest state, whatever order the events came in.",
        params=(_ORDER_ID, Param("charge_id", "string", "The charge (`ch_...`).", required=True),
                Param("partially_refunded_status", "string", "The status of a partly refunded order.", required=True),
                Param("refunded_status", "string", "The status of a fully refunded order.", required=True),
                Param("paid_status", "string", "The status an order returns to when no refund holds money.",
                      required=True)),
        output="`{\"order_id\": str, \"state\": str, \"status_key\": str, \"changed\": bool}`.",
        example_output={"order_id": "42", "state": "partially_refunded", "status_key": "Partially Refunded",
                        "changed": True},
        idempotency="Sets a status; the same status again changes nothing.",
        errors=(("NotFound", "the status is not in Clarity's SalesOrderStatus table: add it or fix the status map."),
                _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        also_needs=("stripe",),
        examples=(_ex("mark_refunded", "clarity.order.set_refund_status", order_id="${ steps.find.ID }",
                      charge_id="${ steps.refunds.charge_id }",
                      partially_refunded_status="Partially Refunded", refunded_status="Refunded",
                      paid_status="Full Payment Received"),),
    ),
    StepType(
        type="erp.sales_invoice.ensure", summary="Find or create the ERPNext Sales Invoice billing a Sales Order.",
        description="Bills the submitted Sales Order as it is (items with `sales_order`, tax and shipping rows, "
                    "discount), `po_no` = the order key, and submits it. Credit notes return against it.",
        params=(Param("sales_order", "string", "The ERPNext Sales Order name.", required=True),),
        output="`{\"name\": str, \"grand_total\": str}`.",
        example_output={"name": "ACC-SINV-2026-00042", "grand_total": "35.70"},
        idempotency="Lookup by `po_no` (not cancelled) before create, then submit, serialised per `po_no` (key lock).",
        errors=(("UpstreamRejected", "ERPNext refused the document."), _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        also_needs=("stripe",),
        replay_safe=True,
        examples=(_ex("erp_invoice", "erp.sales_invoice.ensure", sales_order="${ steps.erp_order.name }"),),
    ),
    StepType(
        type="erp.credit_note.sync", summary="Book an order's Stripe refunds in ERPNext: credit notes and Pay entries.",
        description="Per Stripe Refund, read again from Stripe under a key lock of the invoice: `pending`, "
                    "`requires_action` or `succeeded` makes a credit note (a Sales Invoice with `is_return: 1`, "
                    "`return_against` the invoice, `remarks` = `Stripe refund re_...`) for exactly the refund's "
                    "amount, split over the invoice's items (fractions of their quantities at their rates) and "
                    "its tax and shipping rows in proportion to what is left of each; `succeeded` also makes a "
                    "Payment Entry of type Pay (`reference_no` = the refund id, `paid_from` the clearing account) "
                    "settling it. `failed` or `canceled` cancels the Pay entry, then the credit note.",
        params=(Param("invoice", "string", "The Sales Invoice the credit notes return against.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True),
                Param("refunds", "array", "The refunds (`steps.<list>.to_book`; only the ids are used).",
                      required=True)),
        output="`{\"refunds\": [{\"refund_id\", \"refund_status\", \"amount\": money, \"credit_note\", "
               "\"payment_entry\"}]}` (names, null when none or cancelled).",
        example_output={"refunds": [{"refund_id": "re_Example", "refund_status": "succeeded",
                                     "amount": {"minor": 1000, "currency": "USD"},
                                     "credit_note": "ACC-SINV-2026-00043", "payment_entry": "ACC-PAY-2026-00044"}]},
        idempotency="Find-then-create by `remarks` (credit note) and `reference_no` (Pay entry), serialised per "
                    "invoice (key lock): a repeat finds them; a cancelled one is never made again for a failed "
                    "refund.",
        errors=(("MappingError", "the refund is more than the invoice has left to return."),
                ("UpstreamRejected", "ERPNext refused a document."), _LOCK_BUSY, _UNAVAILABLE, _RATE, _AUTH),
        also_needs=("stripe",),
        examples=(_ex("erp_refunds", "erp.credit_note.sync", invoice="${ steps.erp_invoice.name }",
                      customer="${ steps.erp_customer.name }", refunds="${ steps.refunds.to_book }"),),
    ),
    StepType(
        type="core.refund.report_failed", summary="Fail the run once for each refund that failed or was canceled.",
        description="Run after the books were reversed: a refund in `refunds` that is `failed` or `canceled` and "
                    "was not reported before is marked in the identity map (entity `refund`, system "
                    "`stripe.failure_reported`) and the step fails with `UpstreamRejected`, so the run gets a "
                    "dead-letter entry (and its alert) naming the refund, Stripe's `failure_reason` and a "
                    "suggested fix for that reason. Later runs of the same charge do not report it again; "
                    "replaying the entry completes the run.",
        params=(Param("refunds", "array", "The refunds (`steps.<list>.to_book`).", required=True),),
        output="`{\"reported\": []}` when there was nothing new to report.", example_output={"reported": []},
        idempotency="The mark is written under a key lock of the refund id before the step fails.",
        errors=(("UpstreamRejected", "a refund failed or was canceled: `details` has `refund`, `failure_reason`, "
                                     "`amount_minor` and `currency`."),
                ("StoreUnavailable", "our database is unreachable; retried.")),
        examples=(_ex("failures", "core.refund.report_failed", refunds="${ steps.refunds.to_book }"),),
    ),
    StepType(
        type="notify.email.send", summary="Send a templated email (to a customer or to operators).",
        description="Renders `template` with `data` and sends it through the configured SMTP server.",
        params=(Param("to", "string", "The recipient's address.", required=True),
                Param("template", "string", "The message template.", required=True,
                      choices=("payment_declined", "authentication_required", "payment_reminder",
                               "order_cancelled", "operator_alert")),
                Param("data", "object", "Template variables, e.g. `order_key`, `retry_url`.", default={})),
        output="`{\"message_id\": str, \"sent\": bool}`.",
        example_output={"message_id": "<run_id.step_id@commerce-bridge>", "sent": True},
        idempotency="The Message-ID is derived from the idempotency key and recorded before sending; SMTP has "
                    "no idempotency, so a crash between the server's acceptance and the checkpoint may send "
                    "the message twice (same Message-ID, which mail clients collapse).",
        errors=(("ValidationError", "an invalid recipient address or an unknown template."), _UNAVAILABLE),
        examples=(_ex("tell_declined", "notify.email.send", to="${ steps.order.customer.email }",
                      template="payment_declined", data={"order_key": "${ steps.order.key }"}),),
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
        examples=(_ex("wait_reminder", "core.wait.until", delay_s=86400),),
    ),
)
