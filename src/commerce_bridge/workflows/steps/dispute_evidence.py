"""Actions of the dispute-evidence path (``stripe.dispute_evidence``): what the bridge and Clarity know, staged
on the Stripe dispute.

Rules (the pure ones are in ``mapping/evidence.py``):

- **Fresh, never the event's copy.** ``stripe.dispute_evidence.read`` reads the dispute (and the order key
  from its PaymentIntent's ``metadata.clarity_order_key``); ``stripe.dispute_evidence.stage`` reads the
  dispute *again* under a key lock of the dispute, shared by every worker, and acts on that.
- **Only while a response is awaited.** Evidence is written only to a dispute in ``needs_response`` or
  ``warning_needs_response`` whose due date has not passed (``evidence_details.past_due``); once it is
  under review, closed (won, lost, warning_closed, prevented) or in an appeal, nothing is written.
- **Fill blanks, never overwrite**: only fields the dispute has no value for are sent, so what a person
  typed in the Dashboard, or an earlier run staged, stays as it is.
- **Staged unless told** (``submit: false``, the default; ``CB_DISPUTE_EVIDENCE_SUBMIT=true`` pins
  ``submit: true`` into new runs). **Never re-submitted**: a dispute whose
  ``evidence_details.submission_count`` is above zero is only staged, whatever ``submit`` says.
- **Idempotent per dispute and content**: the Stripe ``Idempotency-Key`` is
  ``dispute-evidence:<dispute id>:<digest of the fields and submit>``, so runs of duplicated events that
  read the same dispute at the same moment make one update, and a run that reads it after another's
  update finds nothing blank left and makes none.
- The e-mails the bridge sent about an order are recorded by ``notify.email.send`` (identity map, kind
  ``sent_mail``, keyed by the order key); ``core.sent_mail.list`` reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.evidence import (
    CARRIER_ATTRIBUTE,
    IP_ATTRIBUTE,
    SENT_MAIL_KIND,
    TEXT_FIELDS,
    SentMail,
    blank_fields_only,
    evidence_chars,
    evidence_digest,
    evidence_from_order,
    sent_mail_entity,
    sent_mails,
)
from commerce_bridge.mapping.metadata import ORDER_KEY
from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.services.gateways import StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import money_shape

AWAITING_RESPONSE = ("needs_response", "warning_needs_response")
"""Dispute statuses in which evidence may be written (facts/stripe.md, Dispute)."""


def _dispute_id(params: Mapping[str, Any]) -> str:
    dispute_id = str(params.get("dispute_id") or "")
    if not dispute_id.startswith("dp_") and not dispute_id.startswith("du_"):
        raise ValidationError(f"dispute_id must be a Stripe dispute (dp_...), got {dispute_id!r}",
                              suggested_fix="pass event.data.object.id of a charge.dispute.* event")
    return dispute_id


def _mails(value: Any) -> list[SentMail]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValidationError("mails must be a list (steps.<core.sent_mail.list step>.mails)")
    return [SentMail(sent_at=str(m.get("sent_at") or ""), subject=str(m.get("subject") or ""))
            for m in value if isinstance(m, Mapping)]


def stripe_actions(gateway: StripeGateway, locks: KeyLocks) -> dict[str, Action]:
    def read(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        dispute_id = _dispute_id(params)
        d = gateway.retrieve_dispute(dispute_id)
        charge_id = str(d.get("charge") or "") or None
        pi_id = d.get("payment_intent")
        if not pi_id and charge_id:
            pi_id = gateway.retrieve_charge(charge_id).get("payment_intent")
        order_key = ""
        if pi_id:
            order_key = str((gateway.retrieve_payment_intent(str(pi_id)).get("metadata") or {}).get(ORDER_KEY) or "")
        details = d.get("evidence_details") or {}
        status = str(d.get("status") or "")
        currency = str(d.get("currency") or "").upper()
        return {"dispute_id": dispute_id, "status": status, "needs_response": status in AWAITING_RESPONSE,
                "reason": d.get("reason"), "amount": money_shape(from_stripe_amount(int(d.get("amount") or 0),
                                                                                    currency)),
                "due_by": details.get("due_by"), "submission_count": int(details.get("submission_count") or 0),
                "charge_id": charge_id, "payment_intent_id": pi_id, "order_key": order_key or None}

    def stage(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        dispute_id = _dispute_id(params)
        order = params.get("order")
        if not isinstance(order, Mapping):
            raise ValidationError("order must be the Clarity order (steps.<clarity.order.find_by_key step>)")
        submit = params.get("submit", False)
        if not isinstance(submit, bool):
            raise ValidationError(f"submit must be true or false, got {submit!r}")
        proposed = evidence_from_order(
            order, mails=_mails(params.get("mails")), charge_id=str(params.get("charge_id") or ""),
            carrier_attribute=str(params.get("carrier_attribute") or CARRIER_ATTRIBUTE),
            ip_attribute=str(params.get("ip_attribute") or IP_ATTRIBUTE))
        with locks.hold("stripe.dispute.evidence", dispute_id):
            d = gateway.retrieve_dispute(dispute_id)
            status = str(d.get("status") or "")
            details = d.get("evidence_details") or {}
            submitted_before = int(details.get("submission_count") or 0)
            out: dict[str, Any] = {"dispute_id": dispute_id, "status": status, "fields": [], "submitted": False,
                                   "chars": 0, "submission_count": submitted_before}
            if status not in AWAITING_RESPONSE:
                return {**out, "action": "none", "note": f"the dispute is {status}: its evidence is left as it is"}
            if details.get("past_due"):
                return {**out, "action": "none", "note": "the evidence due date has passed"}
            fill = blank_fields_only(d.get("evidence"), proposed)
            do_submit = submit and submitted_before == 0
            if not fill and not do_submit:
                note = "every field the bridge can fill has a value already"
                if submit and submitted_before:
                    note += "; evidence was submitted before, so it is not submitted again"
                return {**out, "action": "none", "note": note}
            body: dict[str, Any] = {"submit": do_submit}
            if fill:
                body["evidence"] = fill
            key = f"dispute-evidence:{dispute_id}:{evidence_digest(dispute_id, fill, do_submit)}"
            updated = gateway.update_dispute(dispute_id, body, idempotency_key=key)
        after = updated.get("evidence_details") or {}
        note = "submitted to the bank" if do_submit else "staged (submit=false): review and submit it in Stripe"
        if submit and not do_submit:
            note = "staged; evidence was submitted before, so it is not submitted again"
        return {**out, "action": "submitted" if do_submit else "staged", "status": updated.get("status"),
                "fields": [f for f in TEXT_FIELDS if f in fill], "submitted": do_submit, "chars": evidence_chars(fill),
                "submission_count": int(after.get("submission_count") or 0), "note": note}

    return {"stripe.dispute_evidence.read": read, "stripe.dispute_evidence.stage": stage}


def core_actions(identity: IdentityMap) -> dict[str, Action]:
    def list_sent(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        key = str(params.get("order_key") or "")
        if not key:
            raise ValidationError("order_key is empty", suggested_fix="pass the order key of the dispute's payment")
        mails = sent_mails(identity.externals(SENT_MAIL_KIND, sent_mail_entity(key)))
        return {"order_key": key, "mails": [{"sent_at": m.sent_at, "subject": m.subject} for m in mails]}

    return {"core.sent_mail.list": list_sent}


_DISPUTE_ID = Param("dispute_id", "string", "The dispute (`dp_...`).", required=True)

STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="stripe.dispute_evidence.read", summary="Read a dispute (fresh, from Stripe) and the order it is about.",
        description="For `charge.dispute.*` events: the dispute is read from Stripe, never taken from the event; "
                    "the order is the `metadata.clarity_order_key` of its PaymentIntent (of its charge's, when the "
                    "dispute names none). `needs_response` is true while Stripe awaits evidence "
                    "(`needs_response`, `warning_needs_response`).",
        params=(_DISPUTE_ID,),
        output="`{\"dispute_id\", \"status\", \"needs_response\": bool, \"reason\", \"amount\": money, \"due_by\"` "
               "(Unix time), `\"submission_count\", \"charge_id\", \"payment_intent_id\", \"order_key\"` (null "
               "without the metadata)`}`.",
        example_output={"dispute_id": "dp_Example", "status": "needs_response", "needs_response": True,
                        "reason": "product_not_received", "amount": {"minor": 3570, "currency": "USD"},
                        "due_by": 1_900_000_000, "submission_count": 0, "charge_id": "ch_3Example",
                        "payment_intent_id": "pi_3Example", "order_key": "WEB-100001"},
        idempotency="Read only.", writes=False,
        errors=(("ValidationError", "`dispute_id` is not a dispute id."), ("NotFound", "no such dispute."),
                UNAVAILABLE, RATE, AUTH),
        examples=(ex("dispute", "stripe.dispute_evidence.read", dispute_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="core.sent_mail.list", summary="The e-mails the bridge sent about an order (time and subject).",
        description="`notify.email.send` records every e-mail whose `data` names an `order_key` (not the "
                    "operator alerts) in the identity map, keyed by that order key; this reads them back, oldest "
                    "first. Only the time (UTC) and the subject are kept, never the body.",
        params=(Param("order_key", "string", "The order's key (Clarity CustomKey).", required=True),),
        output="`{\"order_key\", \"mails\": [{\"sent_at\"` (ISO 8601 UTC), `\"subject\"}]}`.",
        example_output={"order_key": "WEB-100001", "mails": [
            {"sent_at": "2026-12-01T10:05:00Z", "subject": "Please confirm your payment for order WEB-100001"}]},
        idempotency="Read only (our database, as `core.identity.lookup`): run inline, without a checkpoint.",
        writes=False, inline=True,
        errors=(("ValidationError", "`order_key` is empty."), ("StoreUnavailable", "our database is unreachable; "
                                                                                   "retried.")),
        examples=(ex("mails", "core.sent_mail.list", order_key="${ steps.dispute.order_key }"),),
    ),
    StepType(
        type="stripe.dispute_evidence.stage",
        summary="Put what Clarity and the bridge know of the order into the dispute's evidence; stage or submit.",
        description="Maps the Clarity order (mapping/evidence.py) to Stripe's text evidence fields: "
                    "`customer_name`, `customer_email_address`, `billing_address`, `shipping_address`, "
                    "`shipping_carrier` (the order attribute `carrier_attribute`), `shipping_tracking_number` "
                    "(`TrackingNumber`), `shipping_date` (`ActualShipDate`), `product_description` (the items), "
                    "`customer_purchase_ip` (the order attribute `ip_attribute`) and `uncategorized_text` (the "
                    "order's time, the receipt and the e-mails sent; `receipt` and `customer_communication` take "
                    "File uploads, which the bridge does not make). Within Stripe's limits (20,000 characters per "
                    "explanation field, 150,000 in all) and never any card data. Under a key lock of the dispute "
                    "it reads the dispute again: only while it awaits a response (`needs_response`, "
                    "`warning_needs_response`) are the fields it has **no value for yet** sent, with "
                    "`submit=false` (staged) or, with `submit: true`, submitted to the bank; a dispute submitted "
                    "before is never submitted again.",
        params=(_DISPUTE_ID,
                Param("order", "object", "The Clarity order (`clarity.order.find_by_key`).", required=True),
                Param("mails", "array", "The e-mails sent (`steps.<core.sent_mail.list>.mails`).", default=[]),
                Param("charge_id", "string", "The disputed charge, named in the receipt."),
                Param("submit", "boolean", "Submit the evidence to the bank (else it is only staged).",
                      default=False),
                Param("carrier_attribute", "string", "The order's `SerializableAttributes` key of the carrier.",
                      default=CARRIER_ATTRIBUTE),
                Param("ip_attribute", "string", "The order's `SerializableAttributes` key of the purchase IP.",
                      default=IP_ATTRIBUTE)),
        output="`{\"dispute_id\", \"status\"` (after the update), `\"action\"` (`staged`, `submitted`, `none`), "
               "`\"fields\"` (the names sent), `\"submitted\": bool, \"chars\"` (characters sent), "
               "`\"submission_count\", \"note\"}`.",
        example_output={"dispute_id": "dp_Example", "status": "needs_response", "action": "staged",
                        "fields": ["customer_name", "customer_email_address", "billing_address", "shipping_address",
                                   "shipping_tracking_number", "product_description", "uncategorized_text"],
                        "submitted": False, "chars": 612, "submission_count": 0,
                        "note": "staged (submit=false): review and submit it in Stripe"},
        idempotency="Under a key lock of the dispute: the dispute is read again and only blank fields are sent; "
                    "the Stripe Idempotency-Key is the dispute id plus a digest of the fields and `submit`, so "
                    "duplicated runs make one update, and a closed or reviewed dispute is never written.",
        errors=(("ValidationError", "`dispute_id`, `order` or `submit` is not what it should be."),
                ("UpstreamRejected", "Stripe refused the update (the dispute closed in between, or a limit)."),
                ("NotFound", "no such dispute."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        examples=(ex("evidence", "stripe.dispute_evidence.stage", dispute_id="${ steps.dispute.dispute_id }",
                     order="${ steps.order }", mails="${ steps.mails.mails }",
                     charge_id="${ steps.dispute.charge_id }", submit=False),),
    ),
)
