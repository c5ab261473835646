"""Actions of the refund path (``stripe.refund_recorded``): a refund made in Stripe reaches Clarity and ERPNext.

Rules (the pure ones are in ``mapping/refund.py``):

- **Fresh, never the event's copy.** ``stripe.refund.list`` reads the charge's Refunds from Stripe; every
  write step reads the Refund it writes for *again*, under that refund's key lock, and acts on that
  status. So a run holding an older list (events reordered, duplicated, or runs of one charge at the same
  moment) can never undo what a newer one did: whichever runs last writes the latest state.
- **One record per Refund, keyed by its id**, found before it is made (find-then-create under a key lock,
  every process): the Clarity SalesReturn's ``CustomKey`` and ``RefundTransactionID``, the ERP credit
  note's ``remarks`` (``Stripe refund re_...``), the ERP Pay entry's ``reference_no``. A repeat finds them.
- ``pending``/``requires_action``: a Pending return, a credit note. ``succeeded``: the return is refunded
  (ManuallyRefund: its payment, Completed) and the Pay entry made. ``failed``/``canceled``: the return
  is voided, the Pay entry then the credit note cancelled; ``core.refund.report_failed`` then fails the
  run once per refund (a dead-letter entry and its alert, with Stripe's reason and a fix).
- The order's status is set from the charge's refunds read under the order's lock (partially refunded,
  refunded, or back to paid when every refund failed).
- Refunds the bridge made itself (``metadata.bridge``) are left out of ``to_book`` (echo suppression),
  except one the bridge made for a Clarity return (``metadata.clarity_return_id``, by ``stripe.return.refund``)
  that ``failed`` or was ``canceled``: it is booked *for its reversal only* (``mapping.refund.bookable``).
  Those statuses are final in Stripe and every write step re-reads the refund, so for it the steps can only
  undo: ``clarity.return.sync`` puts *the bridge's* return (not a return keyed by the refund) in the
  refund-failed status with a note on the order, then marks the refund (identity map, entity ``refund``,
  system ``clarity.return_reversed``), all under the return path's lock of the return, so a late
  ``clarity.return.record_refund`` records nothing and later runs of the charge leave the return to the
  operator (once per refund); ``erp.credit_note.sync`` cancels the Pay entry and the credit note the return path booked (the
  same keys); ``core.refund.report_failed`` opens its one dead-letter entry. A *succeeded* bridge refund
  of a Clarity return is in ``to_book`` too, for its ERP Pay entry only (one that started ``pending`` had only
  its credit note when the return path ran): ``clarity.return.sync`` makes no return for it and
  ``erp.credit_note.sync`` finds the return path's credit note and Pay entry by the refund id, making the
  Pay entry only when it is missing, so nothing is booked twice. (Why here and not a second workflow: the refund
  events are the same, and the order lookup, the ERP chain and the once-per-refund report are this
  workflow's; a second one would repeat them and race this one on the same keys.)
- ``requires_action``, on both paths: ``notify.refund.action_required`` (``refund_action.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import UpstreamRejected, ValidationError
from commerce_bridge.mapping.clarity import money_to_clarity
from commerce_bridge.mapping.erp import DEFAULT_TAX_ACCOUNT, money_to_erp
from commerce_bridge.mapping.metadata import ORDER_KEY
from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.mapping.refund import (
    ACTIVE,
    REVERSED,
    RefundView,
    bookable,
    credit_note_rows,
    failure_fix,
    refund_from_stripe,
    refund_state,
)
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, MONEY, ORDER_ID, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import money_shape

if TYPE_CHECKING:
    from commerce_bridge.workflows.steps import FlowSettings

REPORTED = "stripe.failure_reported"
"""Identity-map system of the mark "this refund's failure was reported" (entity ``refund``)."""
RETURN_REVERSED = "clarity.return_reversed"
"""Identity-map system of the mark "the Clarity return of this bridge refund was reversed" (entity ``refund``)."""
DEFAULT_FAILED_STATUS = "Refund Failed"
CLOSED_RETURN = ("Void", "Canceled", "Rejected")


def refund_shape(r: RefundView) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "amount": money_shape(r.amount), "reason": r.reason,
            "failure_reason": r.failure_reason, "echo": r.echo, "return_id": r.return_id or None,
            "return_key": r.return_key or None}


def _ids(value: Any) -> list[str]:
    """The refund ids of a ``refunds`` parameter (the ``to_book`` list of ``stripe.refund.list``)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValidationError("refunds must be a list of refunds (steps.<list step>.to_book)")
    ids = [str(r.get("id")) if isinstance(r, Mapping) else str(r) for r in value]
    if not all(i.startswith("re_") for i in ids):
        raise ValidationError(f"refunds must be Stripe refunds (re_...), got {ids!r}")
    return ids


def charge_refunds(gateway: StripeGateway, charge_id: str) -> tuple[dict[str, Any], list[RefundView]]:
    """The charge and its refunds, oldest first, fresh from Stripe."""
    charge = gateway.retrieve_charge(charge_id)
    return charge, [refund_from_stripe(r) for r in reversed(gateway.list_refunds(charge_id))]


def stripe_actions(gateway: StripeGateway) -> dict[str, Action]:
    def list_refunds(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        charge_id = params.get("charge_id")
        if not charge_id and params.get("refund_id"):
            charge_id = gateway.retrieve_refund(str(params["refund_id"])).get("charge")
        if not charge_id:
            raise ValidationError("give charge_id or refund_id", suggested_fix="the event names no charge")
        charge, refunds = charge_refunds(gateway, str(charge_id))
        currency = str(charge.get("currency") or "").upper()
        captured = from_stripe_amount(int(charge.get("amount_captured") or 0), currency)
        refunded, state = refund_state(captured, refunds)
        pi_id = charge.get("payment_intent")
        order_key = ""
        if pi_id:
            order_key = str((gateway.retrieve_payment_intent(str(pi_id)).get("metadata") or {}).get(ORDER_KEY) or "")
        return {"charge_id": str(charge_id), "payment_intent_id": pi_id, "order_key": order_key or None,
                "charge_amount": money_shape(captured), "refunded": money_shape(refunded), "state": state,
                "refunds": [refund_shape(r) for r in refunds],
                "to_book": [refund_shape(r) for r in bookable(refunds)]}

    return {"stripe.refund.list": list_refunds}


def reversed_return(identity: IdentityMap, refund_id: str) -> str | None:
    """The Clarity return ID whose bridge refund ``refund_id`` was reversed, None when it was not."""
    return identity.external("refund", identity.entity_for_key("refund", refund_id), RETURN_REVERSED)


def clarity_actions(clarity: ClarityGateway, stripe: StripeGateway, locks: KeyLocks,
                    identity: IdentityMap) -> dict[str, Action]:
    def sync_returns(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = int(str(params["order_id"]))
        failed_status = str(params.get("return_failed_status") or DEFAULT_FAILED_STATUS)
        out = []
        for refund_id in _ids(params["refunds"]):
            r = refund_from_stripe(stripe.retrieve_refund(refund_id))
            if r.echo:  # the bridge's own refund: only its reversal (failed and canceled are final in Stripe)
                out.append(_reverse_bridge_return(order_id, r, failed_status))
                continue
            with locks.hold("clarity.sales_return", refund_id):
                r = refund_from_stripe(stripe.retrieve_refund(refund_id))
                out.append(_sync_return(order_id, r))
        return {"returns": out}

    def _reverse_bridge_return(order_id: int, r: RefundView, failed_status: str) -> dict[str, Any]:
        out = {"refund_id": r.id, "refund_status": r.status, "return_id": None, "action": "none"}
        if not r.reverses_bridge_return:
            return out
        return_id = int(r.return_id)
        # the return path's lock and key: a record_refund of this return runs wholly before or after this
        with locks.hold("clarity.sales_return", str(return_id)):
            entity = identity.entity_for_key("refund", r.id)
            if identity.external("refund", entity, RETURN_REVERSED) is not None:
                return out  # reversed before: later runs of the charge leave the return to the operator
            action = "none"
            if clarity.get_return(return_id).get("StatusKey") != failed_status:
                clarity.set_return_status(return_id, failed_status)
                action = "reversed"
            _note_failure(order_id, r, return_id, failed_status)
            # marked once the return is set and the order noted (a retry after a crash does both again, each
            # found done); record_refund, under the same lock, records nothing for a marked refund
            identity.link("refund", entity, RETURN_REVERSED, str(return_id))
        return {**out, "return_id": return_id, "action": action}

    def _sync_return(order_id: int, r: RefundView) -> dict[str, Any]:
        found = clarity.find_return_by_key(r.id)
        amount = money_to_clarity(r.amount)
        action = "none"
        if r.status in ACTIVE:
            if found is None:
                found = clarity.create_return({
                    "CustomKey": r.id, "SalesOrderIDs": [order_id], "RefundAmount": amount, "RefundTransactionID": r.id,
                    "CurrencyKey": r.amount.currency, "StatusKey": "Pending",
                    "Description": f"Stripe refund {r.id}" + (f": {r.reason}" if r.reason else "")})
                action = "created"
            if r.status == "succeeded" and found.get("StatusKey") != "Completed":
                clarity.manually_refund(int(found["ID"]), amount=amount, transaction_number=r.id)
                action = "refunded"
        elif r.status in REVERSED and found is not None and found.get("StatusKey") not in CLOSED_RETURN:
            clarity.return_action(int(found["ID"]), "Void")
            action = "voided"
        return {"refund_id": r.id, "refund_status": r.status, "return_id": found.get("ID") if found else None,
                "action": action}

    def _note_failure(order_id: int, r: RefundView, return_id: int, failed_status: str) -> None:
        note_key = f"stripe-refund:{r.id}:{r.status}"
        with locks.hold("clarity.note", note_key):
            if clarity.find_note_by_key(note_key) is None:
                why = f" ({r.failure_reason})" if r.failure_reason else ""
                clarity.add_order_note(order_id, key=note_key, text=(
                    f"Stripe refund {r.id} of {money_to_clarity(r.amount)} {r.amount.currency} for return "
                    f"{r.return_key or return_id} {r.status}{why}: the customer was not paid back. The return is "
                    f"{failed_status}; its payment record (TransactionNumber {r.id}) stays as history; the ERPNext "
                    "credit note and Pay entry were cancelled. See the bridge's dead-letter entry for what to do."))

    def set_refund_status(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = int(str(params["order_id"]))
        with locks.hold("clarity.order.refund_status", str(order_id)):  # read and write as one, per order
            charge, refunds = charge_refunds(stripe, str(params["charge_id"]))
            currency = str(charge.get("currency") or "").upper()
            _, state = refund_state(from_stripe_amount(int(charge.get("amount_captured") or 0), currency), refunds)
            order = clarity.get_order(order_id)
            current = order.get("StatusKey")
            targets = {"partially_refunded": params["partially_refunded_status"],
                       "refunded": params["refunded_status"]}
            target = targets.get(state)
            if target is None:  # nothing refunded any more: an order still in a refund status is paid again
                target = params["paid_status"] if current in targets.values() else None
            if target is None or target == current:
                return {"order_id": str(order_id), "state": state, "status_key": current, "changed": False}
            result = clarity.set_status(order_id, str(target))
        return {"order_id": str(order_id), "state": state, "status_key": target,
                "changed": bool(result.get("changed", True))}

    return {"clarity.return.sync": sync_returns, "clarity.order.set_refund_status": set_refund_status}


def erp_actions(erp: ErpGateway, stripe: StripeGateway, flow: FlowSettings, locks: KeyLocks) -> dict[str, Action]:
    def sync_credit_notes(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        invoice_name, customer = str(params["invoice"]), str(params["customer"])
        out = []
        for refund_id in _ids(params["refunds"]):
            # one credit note at a time per invoice: each one's rows depend on what the earlier ones returned
            with locks.hold("erp.credit_note", invoice_name):
                r = refund_from_stripe(stripe.retrieve_refund(refund_id))
                out.append(_sync_books(invoice_name, customer, r))
        return {"refunds": out}

    def _sync_books(invoice_name: str, customer: str, r: RefundView) -> dict[str, Any]:
        remarks = f"Stripe refund {r.id}"
        note = erp.find_by("Sales Invoice", "remarks", remarks)
        payment = erp.find_by("Payment Entry", "reference_no", r.id)
        today = datetime.now(UTC).date().isoformat()
        if r.status in ACTIVE:
            if note is None:
                invoice = erp.get_doc("Sales Invoice", invoice_name)
                earlier = [erp.get_doc("Sales Invoice", row["name"]) for row in erp.list_docs(
                    "Sales Invoice", filters=[["return_against", "=", invoice_name], ["is_return", "=", 1],
                                              ["docstatus", "=", 1]], limit=0)]
                items, taxes = credit_note_rows(invoice, earlier, r.amount, tax_account=DEFAULT_TAX_ACCOUNT)
                note = erp.ensure_doc("Sales Invoice", {
                    "customer": customer, "currency": r.amount.currency, "is_return": 1,
                    "return_against": invoice_name, "update_outstanding_for_self": 1, "remarks": remarks,
                    "posting_date": today, "items": [{k: v for k, v in row.items() if k != "amount"} for row in items],
                    **({"taxes": taxes} if taxes else {})}, "remarks")
            if r.status == "succeeded" and payment is None:
                paid = money_to_erp(r.amount, field="paid_amount")
                payment = erp.ensure_doc("Payment Entry", {
                    "payment_type": "Pay", "party_type": "Customer", "party": customer, "posting_date": today,
                    "paid_amount": paid, "received_amount": paid, "paid_from": flow.erp_paid_to_account,
                    "paid_from_account_currency": r.amount.currency, "reference_no": r.id, "reference_date": today,
                    "references": [{"reference_doctype": "Sales Invoice", "reference_name": note["name"],
                                    "allocated_amount": money_to_erp(-r.amount, field="allocated_amount")}]},
                    "reference_no")
        elif r.status in REVERSED:  # the money came back: undo the books, the payment first
            if payment is not None:
                erp.cancel("Payment Entry", str(payment["name"]))
            if note is not None:
                erp.cancel("Sales Invoice", str(note["name"]))
            note = payment = None
        return {"refund_id": r.id, "refund_status": r.status, "amount": money_shape(r.amount),
                "credit_note": note["name"] if note else None, "payment_entry": payment["name"] if payment else None}

    return {"erp.credit_note.sync": sync_credit_notes}


def core_actions(identity: IdentityMap, locks: KeyLocks) -> dict[str, Action]:
    def report_failed(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        refunds = params["refunds"]
        if not isinstance(refunds, Sequence) or isinstance(refunds, str):
            raise ValidationError("refunds must be the to_book list of stripe.refund.list")
        new: list[Mapping[str, Any]] = []
        for r in refunds:  # an echo is reported only when it is a bridge refund of a Clarity return (see bookable)
            if not isinstance(r, Mapping) or r.get("status") not in REVERSED or (
                    r.get("echo") and not r.get("return_id")):
                continue
            with locks.hold("stripe.refund.failure", str(r["id"])):
                entity = identity.entity_for_key("refund", str(r["id"]))
                if identity.external("refund", entity, REPORTED) is None:
                    identity.link("refund", entity, REPORTED, str(r["id"]))  # reported once, whatever comes after
                    new.append(r)
        if not new:
            return {"reported": []}
        first = new[0]
        amount = Money(first["amount"]["minor"], first["amount"]["currency"])
        return_key = str(first.get("return_key") or first.get("return_id") or "") if first.get("echo") else ""
        failed_status = str(params.get("return_failed_status") or DEFAULT_FAILED_STATUS)
        undone = (f"Clarity return {return_key} was set to {failed_status}, its credit note and Pay entry "
                  "cancelled" if return_key else "its return and credit note were reversed")
        raise UpstreamRejected(
            ", ".join(f"Stripe refund {r['id']} {r['status']}" + (f" ({r['failure_reason']})" if r.get(
                "failure_reason") else "") for r in new) + f"; {undone}",
            suggested_fix=failure_fix(str(first.get("status")), str(first.get("failure_reason") or ""),
                                      return_key=return_key, retry_status=str(params.get("return_refund_status") or "")),
            details={"code": "refund_" + str(first.get("status")), "refund": first["id"],
                     "failure_reason": first.get("failure_reason") or None, "amount_minor": amount.minor,
                     "currency": amount.currency, "refunds": [r["id"] for r in new],
                     **({"clarity_return_key": return_key} if return_key else {})})

    return {"core.refund.report_failed": report_failed}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="stripe.refund.list", summary="Read a charge's refunds (fresh, from Stripe) and the order they belong to.",
        description="For `refund.*` and `charge.refund*` events: the charge (`charge_id`, or the charge of "
                    "`refund_id`) and every Refund of it are read from Stripe, never taken from the event. Each "
                    "refund's amount is its own `amount` (never a difference of the charge's cumulative "
                    "`amount_refunded`). The order is the PaymentIntent's `metadata.clarity_order_key`. Refunds "
                    "whose metadata says the bridge made them (`bridge: commerce-bridge`, set by "
                    "`stripe.refund.create`) are left out of `to_book` (echo suppression), except a refund the "
                    "bridge made for a Clarity return (`metadata.clarity_return_id`) that `failed` or was "
                    "`canceled` (for its reversal) or succeeded (for its ERP Pay entry, found first by the refund "
                    "id): it is in `to_book`, and never makes a Clarity return. `state` counts the "
                    "refunds that hold money (pending, requires_action, succeeded), echoes included.",
        params=(Param("charge_id", "string", "The charge (`ch_...`)."),
                Param("refund_id", "string", "A refund (`re_...`); its charge is used when `charge_id` is empty.")),
        output="`{\"charge_id\", \"payment_intent_id\", \"order_key\"` (null without the metadata), "
               "`\"charge_amount\", \"refunded\"` (money), `\"state\"` (`none`, `partially_refunded`, "
               "`refunded`), `\"refunds\": [{\"id\", \"status\", \"amount\": money, \"reason\", "
               "\"failure_reason\", \"echo\", \"return_id\", \"return_key\"}]` (oldest first; the return of a "
               "bridge refund, else null), `\"to_book\"` (the same, without echoes but the failed or canceled "
               "refunds of Clarity returns)`}`.",
        example_output={"charge_id": "ch_3Example", "payment_intent_id": "pi_3Example", "order_key": "WEB-100001",
                        "charge_amount": MONEY, "refunded": {"minor": 1000, "currency": "USD"},
                        "state": "partially_refunded",
                        "refunds": [{"id": "re_Example", "status": "succeeded",
                                     "amount": {"minor": 1000, "currency": "USD"}, "reason": "requested_by_customer",
                                     "failure_reason": "", "echo": False, "return_id": None, "return_key": None}],
                        "to_book": [{"id": "re_Example", "status": "succeeded",
                                     "amount": {"minor": 1000, "currency": "USD"}, "reason": "requested_by_customer",
                                     "failure_reason": "", "echo": False, "return_id": None, "return_key": None}]},
        idempotency="Read only.", writes=False,
        errors=(("ValidationError", "neither `charge_id` nor `refund_id`."),
                ("MappingError", "active refunds adding up to more than the charge (Stripe never allows it)."),
                ("NotFound", "no such charge or refund."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("refunds", "stripe.refund.list", charge_id="${ event.data.object.charge }"),),
    ),
    StepType(
        type="clarity.return.sync", summary="Bring an order's Clarity sales returns in line with its Stripe refunds.",
        description="One SalesReturn per Stripe Refund, `CustomKey` and `RefundTransactionID` = the refund id, "
                    "`RefundAmount` = the refund's amount, `Description` = `Stripe refund re_...: <reason>`. Each "
                    "refund is read again from Stripe under its key lock and acted on in that status: `pending` "
                    "or `requires_action` creates the return (Pending); `succeeded` also records its payment "
                    "with ManuallyRefund (`TransactionNumber` = the refund id; the return becomes Completed); "
                    "`failed` or `canceled` voids a return made earlier. A refund the bridge made for a Clarity "
                    "return (`metadata.clarity_return_id`) that failed or was canceled is not a return of its own: "
                    "under the return's key lock the refund is marked reversed (so the return path records "
                    "nothing for it any more) and that return is put in `return_failed_status`; the order gets a "
                    "note (key `stripe-refund:<id>:<status>`) saying so. The return's payment record written by "
                    "ManuallyRefund stays as it is (CEF has no documented action to remove it).",
        params=(ORDER_ID, Param("refunds", "array", "The refunds (`steps.<list>.to_book`; only the ids are used).",
                                 required=True),
                Param("return_failed_status", "string", "The status a Clarity return gets when the bridge's refund "
                                                        "of it failed (`vars.return_refund_failed_status`).",
                      default=DEFAULT_FAILED_STATUS)),
        output="`{\"returns\": [{\"refund_id\", \"refund_status\", \"return_id\", \"action\"}]}`; `action` is "
               "`created`, `refunded`, `voided`, `reversed` (a bridge refund's return set to the failed status) "
               "or `none`.",
        example_output={"returns": [{"refund_id": "re_Example", "refund_status": "succeeded", "return_id": 7,
                                     "action": "refunded"}]},
        idempotency="Find-then-create by the refund id (`CustomKey`) under a key lock of the refund id shared by "
                    "every worker; ManuallyRefund only when the return is not Completed yet, Void only when it is "
                    "not closed; a bridge return's status is set only when it is not in it yet, its note found "
                    "by key before it is added.",
        errors=(("UpstreamRejected", "`ActionSucceeded: false` (e.g. an unknown order)."), LOCK_BUSY, UNAVAILABLE,
                RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("returns", "clarity.return.sync", order_id="${ steps.find.ID }", refunds="${ steps.refunds.to_book }"),),
    ),
    StepType(
        type="clarity.order.set_refund_status", summary="Set an order's status from its charge's refunds.",
        description="Under a key lock of the order, reads the charge's refunds from Stripe and sets the order to "
                    "`refunded_status` when they hold the whole charge, `partially_refunded_status` when they hold "
                    "part of it; when none holds money any more (every refund failed) an order still in one of "
                    "those two statuses goes back to `paid_status`. Reading under the lock means the last run to "
                    "write writes the latest state, whatever order the events came in.",
        params=(ORDER_ID, Param("charge_id", "string", "The charge (`ch_...`).", required=True),
                Param("partially_refunded_status", "string", "The status of a partly refunded order.", required=True),
                Param("refunded_status", "string", "The status of a fully refunded order.", required=True),
                Param("paid_status", "string", "The status an order returns to when no refund holds money.",
                      required=True)),
        output="`{\"order_id\": str, \"state\": str, \"status_key\": str, \"changed\": bool}`.",
        example_output={"order_id": "42", "state": "partially_refunded", "status_key": "Partially Refunded",
                        "changed": True},
        idempotency="Sets a status; the same status again changes nothing.",
        errors=(("NotFound", "the status is not in Clarity's SalesOrderStatus table: add it or fix the status map."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("mark_refunded", "clarity.order.set_refund_status", order_id="${ steps.find.ID }",
                      charge_id="${ steps.refunds.charge_id }",
                      partially_refunded_status="Partially Refunded", refunded_status="Refunded",
                      paid_status="Full Payment Received"),),
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
                ("UpstreamRejected", "ERPNext refused a document."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("erp_refunds", "erp.credit_note.sync", invoice="${ steps.erp_invoice.name }",
                      customer="${ steps.erp_customer.name }", refunds="${ steps.refunds.to_book }"),),
    ),
    StepType(
        type="core.refund.report_failed", summary="Fail the run once for each refund that failed or was canceled.",
        description="Run after the books were reversed: a refund in `refunds` that is `failed` or `canceled` and "
                    "was not reported before is marked in the identity map (entity `refund`, system "
                    "`stripe.failure_reported`) and the step fails with `UpstreamRejected`, so the run gets a "
                    "dead-letter entry (and its alert) naming the refund, Stripe's `failure_reason` and a "
                    "suggested fix for that reason. Later runs of the same charge do not report it again; "
                    "replaying the entry completes the run. For a refund the bridge made for a Clarity return "
                    "the message and fix name the return (moved back to `return_refund_status`, the bridge "
                    "refunds it again).",
        params=(Param("refunds", "array", "The refunds (`steps.<list>.to_book`).", required=True),
                Param("return_refund_status", "string", "The return status that asks the bridge for a refund "
                                                        "(`vars.return_refund_status`), named in the fix."),
                Param("return_failed_status", "string", "The status the failed refund's return was given.",
                      default=DEFAULT_FAILED_STATUS)),
        output="`{\"reported\": []}` when there was nothing new to report.", example_output={"reported": []},
        idempotency="The mark is written under a key lock of the refund id before the step fails.",
        errors=(("UpstreamRejected", "a refund failed or was canceled: `details` has `refund`, `failure_reason`, "
                                     "`amount_minor` and `currency` (and `clarity_return_key` for a bridge refund)."),
                ("StoreUnavailable", "our database is unreachable; retried.")),
        examples=(ex("failures", "core.refund.report_failed", refunds="${ steps.refunds.to_book }"),),
    ),

)
