"""Actions of a return refunded in Clarity (``clarity.return_refunded``): paid back in Stripe, recorded on the return.

Rules (the pure ones, amount and guard, are in ``mapping/returns.py``):

- **Fresh, never the event's copy.** ``stripe.return.refund`` reads the return from Clarity and the
  PaymentIntent, its charge and the charge's refunds from Stripe itself, under the key lock of the
  PaymentIntent (every process): two returns of one order paid back at the same moment are decided one
  after the other, each against what the other left, so together they never take more than was captured.
- **One refund per return**, found before it is made: the identity map (entity ``return``, key the
  return's ID; system ``stripe`` = the refund), else the charge's refunds whose ``metadata.clarity_return_id``
  is the return (a create whose answer was lost), else created with the idempotency key
  ``clarity-return:<ID>:refund:<amount>`` and the metadata ``clarity_return_id``, ``clarity_return_key``,
  ``clarity_order_key`` and ``bridge: commerce-bridge`` (so ``stripe.refund_recorded`` never books it a
  second time: echo suppression). A return that has left the refund status and was never paid back is
  left alone (``action: none``).
- **Not captured yet**: the remainder is captured (``amount_to_capture``) or the PaymentIntent canceled; the
  mark ``stripe.settled`` (``capture:pi_...`` / ``cancel:pi_...``) is written before the call, so a retry
  whose first answer was lost re-reads the PaymentIntent and sends the same call (same idempotency key)
  only while it still waits for capture.
- ``erp.return_credit_note.ensure`` (a return settled by capturing less): the credit note of the part never
  captured, keyed by ``remarks`` = ``Clarity return <key>``, reducing the invoice's outstanding
  (``update_outstanding_for_self: 0``) and without a Pay entry: no money went back. A refund's books are
  the refund path's ``erp.credit_note.sync`` (keyed by the refund id).
- ``clarity.return.record_refund`` records the money on the return once (ManuallyRefund, TransactionNumber =
  the refund id, or the PaymentIntent id when nothing was refunded), under the return's key lock, then
  sets the configured status when CEF's Completed is not it.
- **A bridge refund that fails later** (``failed``/``canceled``; Stripe sends ``refund.failed``,
  ``refund.updated``, ``charge.refund.updated``) is undone by the refund path, ``stripe.refund_recorded``,
  which books the bridge's own refunds for that reversal only (see ``workflows/steps/refunds.py``): it
  marks the refund reversed (identity map, system ``clarity.return_reversed``) under this path's return
  lock, puts the return in the refund-failed status with a note on the order, cancels the Pay entry and
  the credit note and opens one dead-letter entry. So ``record_refund`` records nothing for a refund
  marked reversed (a run of this path that comes late, in any order), and ``stripe.return.refund`` no
  longer counts it as the return's refund: when the operator moves the return back to the refund status
  the return is refunded again, with a new idempotency key (``...:<amount>:<n>``, n = the reversed ones).
  A refund that failed but is not marked yet still counts (its reversal is on its way), so a retry of
  this step never makes a second refund before the first one's reversal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.clarity import money_to_clarity
from commerce_bridge.mapping.erp import DEFAULT_TAX_ACCOUNT
from commerce_bridge.mapping.metadata import BRIDGE, BRIDGE_MARK, ORDER_KEY
from commerce_bridge.mapping.money import from_stripe_amount, to_stripe_amount
from commerce_bridge.mapping.refund import ACTIVE, REVERSED, credit_note_rows, refund_from_stripe
from commerce_bridge.mapping.returns import (
    RETURN_ID,
    RETURN_KEY,
    PaymentState,
    order_id_of,
    plan_refund,
    records_transaction,
    return_from_clarity,
)
from commerce_bridge.mapping.stripe import stripe_idempotency_key
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.refunds import reversed_return
from commerce_bridge.workflows.steps.shapes import money_from_shape, money_shape

SETTLED = "stripe.settled"
"""Identity-map system (entity ``return``) of "this return was settled by capture or cancel of pi_..."."""
DONE_STATUSES = ("succeeded", "canceled")


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise ValidationError(f"{name} must be a Clarity ID, got {value!r}") from exc


def _charge(pi: Mapping[str, Any]) -> Mapping[str, Any]:
    charge = pi.get("latest_charge")
    return charge if isinstance(charge, Mapping) else {}


def payment_state(pi: Mapping[str, Any], refunds: Sequence[Mapping[str, Any]]) -> PaymentState:
    """The guard's view of a PaymentIntent (``latest_charge`` expanded) and its charge's refunds."""
    currency = str(pi.get("currency") or "").upper()
    active = [r for r in (refund_from_stripe(r) for r in refunds) if r.status in ACTIVE]
    return PaymentState(
        status=str(pi.get("status")),
        capturable=from_stripe_amount(int(pi.get("amount_capturable") or 0), currency),
        captured=from_stripe_amount(int(_charge(pi).get("amount_captured") or 0), currency),
        refunded=sum((r.amount for r in active), Money.zero(currency)))


def actions(stripe: StripeGateway, clarity: ClarityGateway, identity: IdentityMap, locks: KeyLocks) -> dict[str, Action]:
    """The actions of the return path (they need Stripe and Clarity; the ERP steps are the refund path's)."""

    def get_return(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ret = clarity.get_return(_int(params["return_id"], "return_id"))
        order_id = order_id_of(ret)
        return {**ret, "order_id": None if order_id is None else str(order_id)}

    def refund(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return_id = _int(params["return_id"], "return_id")
        pi_id = str(params.get("payment_intent_id") or "")
        if not pi_id.startswith("pi_"):
            raise ValidationError(f"Clarity return {return_id}: its order has no Stripe PaymentIntent",
                                  suggested_fix="the order was not paid through the bridge: pay the return back by "
                                                "hand, then discard this entry")
        with locks.hold("stripe.payment_intent.refund", pi_id):
            return _refund(return_id, pi_id, str(params["refund_status"]), str(params.get("order_key") or ""))

    def _refund(return_id: int, pi_id: str, refund_status: str, order_key: str) -> dict[str, Any]:
        pi = stripe.retrieve_payment_intent(pi_id)
        currency = str(pi.get("currency") or "").upper()
        view = return_from_clarity(clarity.get_return(return_id), order_currency=currency)
        entity = identity.entity_for_key("return", str(return_id))
        links = identity.externals("return", entity)
        charge_id = str(_charge(pi).get("id") or "") or None
        refunds = stripe.list_refunds(charge_id) if charge_id else []
        out = {"return_id": str(return_id), "return_key": view.key, "payment_intent_id": pi_id,
               "charge_id": charge_id, "amount": money_shape(view.amount)}

        def refunded(obj: Mapping[str, Any], made: bool) -> dict[str, Any]:
            r = refund_from_stripe(obj)
            if links.get("stripe") not in (None, r.id):  # refunded again: the link moves off the undone refund
                identity.unlink("return", entity, "stripe")
            identity.link("return", entity, "stripe", r.id)
            return {**out, "action": "refund", "made": made, "refund_id": r.id, "refunds": [r.id],
                    "refund_status": r.status, "amount": money_shape(r.amount), "transaction_number": r.id}

        # paid back before (by another run of this return, or a try whose answer was lost); a refund that
        # failed and whose reversal was booked is history: the return may be refunded again
        ours = [r for r in refunds if r.get("id") == links.get("stripe")
                or (r.get("metadata") or {}).get(RETURN_ID) == str(return_id)]
        undone = [r for r in ours if r.get("status") in REVERSED and reversed_return(identity, str(r["id"]))]
        mine = [r for r in ours if r not in undone]
        if mine:
            return refunded(mine[-1], made=False)
        settled = links.get(SETTLED, "")
        if settled and str(pi.get("status")) in DONE_STATUSES:
            action = settled.split(":", 1)[0]
            return {**out, "action": action, "made": False, "refund_id": None, "refunds": [],
                    "refund_status": None, "transaction_number": pi_id}
        if view.status != refund_status and not settled:
            return {**out, "action": "none", "made": False, "refund_id": None, "refunds": [], "refund_status": None,
                    "transaction_number": None, "reason": f"the return is {view.status or 'without status'}"}
        plan = plan_refund(view.amount, payment_state(pi, refunds), return_key=view.key)
        if plan.action == "none":
            return {**out, "action": "none", "made": False, "refund_id": None, "refunds": [], "refund_status": None,
                    "transaction_number": None, "reason": "the return's amount is zero"}
        if plan.action == "refund":
            metadata = {BRIDGE: BRIDGE_MARK, RETURN_ID: str(return_id), RETURN_KEY: view.key}
            if order_key:
                metadata[ORDER_KEY] = order_key
            amount, _ = to_stripe_amount(plan.amount)
            again = f":{len(undone)}" if undone else ""
            made = stripe.create_refund(
                {"payment_intent": pi_id, "amount": amount, "reason": "requested_by_customer", "metadata": metadata},
                idempotency_key=stripe_idempotency_key(
                    f"clarity-return:{return_id}:refund:{plan.amount.minor}{again}"))
            return refunded(made, made=True)
        identity.link("return", entity, SETTLED, f"{plan.action}:{pi_id}")  # before the call: see the rules
        key = stripe_idempotency_key(f"clarity-return:{return_id}:{plan.action}:{plan.amount.minor}")
        if plan.action == "capture" and plan.to_capture is not None:
            stripe.capture_payment_intent(pi_id, amount_to_capture=to_stripe_amount(plan.to_capture)[0],
                                          idempotency_key=key)
        elif plan.action == "cancel":
            stripe.cancel_payment_intent(pi_id, cancellation_reason="requested_by_customer", idempotency_key=key)
        return {**out, "action": plan.action, "made": True, "refund_id": None, "refunds": [], "refund_status": None,
                "transaction_number": pi_id, "captured": money_shape(plan.to_capture)}

    def record(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return_id = _int(params["return_id"], "return_id")
        amount = money_from_shape(params["amount"])
        txn, status = str(params["transaction_number"]), str(params.get("status") or "Completed")
        with locks.hold("clarity.sales_return", str(return_id)):
            ret = clarity.get_return(return_id)
            if txn.startswith("re_") and reversed_return(identity, txn) is not None:  # failed meanwhile: undone
                return {"return_id": str(return_id), "transaction_number": txn, "recorded": False,
                        "status_key": ret.get("StatusKey"), "status_changed": False, "reversed": True}
            recorded = records_transaction(ret, txn)
            if not recorded:
                clarity.manually_refund(return_id, amount=money_to_clarity(amount), transaction_number=txn)
                ret = clarity.get_return(return_id)
            changed = False
            if ret.get("StatusKey") != status:
                changed = bool(clarity.set_return_status(return_id, status).get("changed", True))
        return {"return_id": str(return_id), "transaction_number": txn, "recorded": not recorded,
                "status_key": status, "status_changed": changed}

    return {"clarity.return.get": get_return, "stripe.return.refund": refund, "clarity.return.record_refund": record}


def erp_actions(erp: ErpGateway, locks: KeyLocks) -> dict[str, Action]:
    """``erp.return_credit_note.ensure``: the credit note of a return settled by capturing less."""

    def ensure_note(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        invoice_name, customer = str(params["invoice"]), str(params["customer"])
        amount, remarks = money_from_shape(params["amount"]), f"Clarity return {params['return_key']}"
        # one credit note at a time per invoice (the refund path's lock): each one's rows depend on the earlier
        with locks.hold("erp.credit_note", invoice_name):
            note = erp.find_by("Sales Invoice", "remarks", remarks)
            if note is None:
                invoice = erp.get_doc("Sales Invoice", invoice_name)
                earlier = [erp.get_doc("Sales Invoice", row["name"]) for row in erp.list_docs(
                    "Sales Invoice", filters=[["return_against", "=", invoice_name], ["is_return", "=", 1],
                                              ["docstatus", "=", 1]], limit=0)]
                items, taxes = credit_note_rows(invoice, earlier, amount, tax_account=DEFAULT_TAX_ACCOUNT)
                note = erp.ensure_doc("Sales Invoice", {
                    "customer": customer, "currency": amount.currency, "is_return": 1, "return_against": invoice_name,
                    "update_outstanding_for_self": 0, "remarks": remarks,
                    "posting_date": datetime.now(UTC).date().isoformat(),
                    "items": [{k: v for k, v in row.items() if k != "amount"} for row in items],
                    **({"taxes": taxes} if taxes else {})}, "remarks")
        return {"credit_note": note["name"], "amount": money_shape(amount)}

    return {"erp.return_credit_note.ensure": ensure_note}


_RETURN_ID = Param("return_id", "string", "The Clarity sales return ID (a number or its string form).", required=True)
_EXAMPLE_REFUND = {
    "return_id": "7", "return_key": "RMA-7", "payment_intent_id": "pi_3Example", "charge_id": "ch_3Example",
    "amount": {"minor": 1250, "currency": "USD"}, "action": "refund", "made": True, "refund_id": "re_Example",
    "refunds": ["re_Example"], "refund_status": "succeeded", "transaction_number": "re_Example"}

STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="clarity.return.get", summary="Read a Clarity sales return (full projection) and its order's ID.",
        description="`GET /Returning/SalesReturn/ID/{ID}`: the return as Clarity has it now, plus `order_id` "
                    "(the first of its `SalesOrderIDs`, else of its `AssociatedSalesOrders`; null when it has none).",
        params=(_RETURN_ID,),
        output="The SalesReturn model (PascalCase, decimals as strings) plus `\"order_id\"` (string or null).",
        example_output={"ID": 7, "CustomKey": "RMA-7", "StatusKey": "Refund Approved", "SalesOrderIDs": [42],
                        "RefundAmount": "12.5000", "order_id": "42"},
        idempotency="A read.", writes=False,
        errors=(("NotFound", "Clarity has no return with this ID (204)."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("get", "clarity.return.get", return_id="${ event.data.ID }"),),
        also_needs=("stripe",),  # bound with the rest of the return path, which pays back in Stripe
    ),
    StepType(
        type="stripe.return.refund", summary="Pay a Clarity return back in Stripe, never more than the charge has left.",
        description="Under a key lock of the PaymentIntent, reads the return from Clarity and the PaymentIntent, its "
                    "charge and the charge's refunds from Stripe. The return's amount is its `RefundAmount`, else "
                    "its `Totals.Total` (lines, tax, shipping, discounts), exact in its currency. A refund made "
                    "for the return before is returned as it is (identity map, or `metadata.clarity_return_id`). "
                    "Else, if the return is still in `refund_status`: captured money is refunded "
                    "(`metadata.clarity_return_key`, `clarity_return_id`, `bridge: commerce-bridge`) when the "
                    "return is at most what the charge has left (captured minus what its refunds hold); an "
                    "uncaptured PaymentIntent is captured for the remainder (`amount_to_capture`), or canceled when "
                    "nothing remains. A larger return parks the run with the numbers.",
        params=(_RETURN_ID,
                Param("payment_intent_id", "string", "The order's PaymentIntent (`pi_...`); empty parks the run.",
                      required=True),
                Param("refund_status", "string", "The return status that asks for the refund "
                                                 "(`vars.return_refund_status`).", required=True),
                Param("order_key", "string", "The order's key, written to the refund's metadata.")),
        output="`{\"return_id\", \"return_key\", \"payment_intent_id\", \"charge_id\", \"amount\": money, "
               "\"action\"` (`refund`, `capture`, `cancel` or `none`), `\"made\"` (this run made it), "
               "`\"refund_id\", \"refunds\": [refund id]` (empty without a refund), `\"refund_status\", "
               "\"transaction_number\"` (the refund id, or the PaymentIntent id for capture and cancel; null for "
               "`none`)`}`.",
        example_output=_EXAMPLE_REFUND,
        idempotency="Serialised per PaymentIntent (key lock); found before made (identity map, then the charge's "
                    "refunds by `metadata.clarity_return_id`); Stripe `Idempotency-Key` "
                    "`clarity-return:<ID>:<action>:<amount>`. Capture and cancel write a mark first and are sent "
                    "again only while the PaymentIntent still waits for capture.",
        errors=(("ValidationError", "the return asks for more than the charge has left (`details`: "
                                    "`return_minor`, `captured_minor`, `refunded_minor`, `remaining_minor`, "
                                    "`currency`), or the order has no PaymentIntent, or it took no money."),
                ("MappingError", "the return's totals do not add up, another currency, or an amount Stripe cannot "
                                 "represent (5.125 KWD)."),
                ("Conflict", "the payment is still `processing`, or the lock is busy; retried."),
                ("UpstreamRejected", "Stripe refused the refund, capture or cancel."), UNAVAILABLE, RATE, AUTH),
        also_needs=("clarity",),
        examples=(ex("refund", "stripe.return.refund", return_id="${ steps.get.ID }",
                     payment_intent_id="${ steps.link.external_id || steps.find.PaymentTransactionID }",
                     refund_status="Refund Approved", order_key="${ steps.find.CustomKey }"),),
    ),
    StepType(
        type="clarity.return.record_refund", summary="Record the money paid back on a Clarity return, once.",
        description="Under a key lock of the return: unless the return already carries `transaction_number` "
                    "(`RefundTransactionID` or a payment's `TransactionNumber`), ManuallyRefund records a payment "
                    "of `amount` with that TransactionNumber (CEF then completes the return); then the return is "
                    "put in `status` when it is not in it yet (its action route, else Update). A refund that failed "
                    "and was reversed meanwhile (by `stripe.refund_recorded`) is not recorded: the output says "
                    "`reversed: true`.",
        params=(_RETURN_ID, Param("amount", "money", "What was paid back.", required=True),
                Param("transaction_number", "string", "The Stripe refund id (or the PaymentIntent id).", required=True),
                Param("status", "string", "The status of a return paid back (`vars.return_refunded_status`).",
                      default="Completed")),
        output="`{\"return_id\", \"transaction_number\", \"recorded\": bool, \"status_key\", \"status_changed\": "
               "bool}` (plus `\"reversed\": true` when the refund was reversed meanwhile).",
        example_output={"return_id": "7", "transaction_number": "re_Example", "recorded": True,
                        "status_key": "Completed", "status_changed": False},
        idempotency="Read before write under the return's key lock: a repeat finds the transaction number and "
                    "records nothing.",
        errors=(("UpstreamRejected", "`ActionSucceeded: false` (e.g. an unknown return)."), LOCK_BUSY,
                UNAVAILABLE, RATE, AUTH),
        examples=(ex("record", "clarity.return.record_refund", return_id="${ steps.get.ID }",
                     amount="${ steps.refund.amount }", transaction_number="${ steps.refund.transaction_number }",
                     status="Completed"),),
        also_needs=("stripe",),
    ),
    StepType(
        type="erp.return_credit_note.ensure",
        summary="Credit the part of an order a return took back before it was captured (no Pay entry).",
        description="For a return settled by capturing only the remainder: a credit note (a Sales Invoice with "
                    "`is_return: 1`, `return_against` the invoice, `remarks` = `Clarity return <key>`) for "
                    "`amount`, split over the invoice's items and its tax and shipping rows as the refund path's "
                    "credit notes are, with `update_outstanding_for_self: 0`: it lowers what the invoice still "
                    "asks for. No money went back, so no Payment Entry.",
        params=(Param("invoice", "string", "The Sales Invoice the credit note returns against.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True),
                Param("amount", "money", "The return's amount (not captured).", required=True),
                Param("return_key", "string", "The return's key (`steps.<refund>.return_key`).", required=True)),
        output="`{\"credit_note\": str, \"amount\": money}`.",
        example_output={"credit_note": "ACC-SINV-2026-00043", "amount": {"minor": 975, "currency": "USD"}},
        idempotency="Find-then-create by `remarks` under the invoice's key lock (shared with `erp.credit_note.sync`).",
        replay_safe=True,
        errors=(("MappingError", "the amount is more than the invoice has left to return."),
                ("UpstreamRejected", "ERPNext refused the document."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        examples=(ex("erp_capture_note", "erp.return_credit_note.ensure", invoice="${ steps.erp_invoice.name }",
                     customer="${ steps.erp_customer.name }", amount="${ steps.refund.amount }",
                     return_key="${ steps.refund.return_key }"),),
    ),
)
