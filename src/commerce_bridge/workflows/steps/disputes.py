"""Actions of the dispute path (``stripe.dispute_recorded``, ``stripe.early_fraud_warning``): a dispute or an early
fraud warning reaches Clarity, ERPNext and operations.

Rules (the pure ones are in ``mapping/dispute.py``):

- **Fresh, never the event's copy.** ``stripe.dispute.read`` reads the Dispute from Stripe; every write step
  reads it *again* under a key lock (of the order for its status, of the dispute for its journals) and acts
  on that. So a run holding an older copy (events reordered or duplicated, runs of one dispute at the same
  moment) can never undo what a newer one did: whichever writes last writes the latest state.
- **One record per Stripe id, found before it is made** (find-then-create under a key lock, every process):
  the ERP Journal Entry's ``cheque_no`` (a balance transaction id, or ``<dispute id>:chargeback``), the
  Clarity note's ``CustomKey`` (``<dispute id>:opened``, ``<dispute id>:<closed status>``), the identity
  map's marks (the status before the dispute; an alert sent).
- **The status before the dispute is remembered durably** in the identity map (entity ``dispute``, system
  ``clarity.status_before``, external id ``<dispute id>:<status>``) the first time the bridge puts the order
  in a dispute status; a won or warning-closed dispute gives it back.
- The bridge's own status writes are fingerprinted, so the order's change coming back from Clarity's poll
  starts nothing (a status given back may be one that starts a flow, e.g. Shipped).
- **Early fraud warning**: ``stripe.early_fraud_warning.refund`` refunds the charge in full (reason
  ``fraudulent``) when the warning is actionable and the order has not shipped, read again under a key lock
  of the charge; the refund is keyed by the warning (Stripe ``Idempotency-Key`` ``efw-refund:<warning id>``,
  and found first by its ``metadata.early_fraud_warning``). It is deliberately **not** marked as the
  bridge's own (``metadata.bridge``): it has no Clarity return yet, so ``stripe.refund_recorded`` books it
  (return, credit note, Pay entry, order status) exactly as a refund made in the Dashboard, once, by its id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.dispute import (
    DisputeAccounts,
    DisputeView,
    chargeback_key,
    clarity_state,
    dispute_from_stripe,
    dispute_note,
    dispute_summary,
    early_fraud_refund,
    journal_doc,
    planned_journals,
    status_target,
    warning_from_stripe,
)
from commerce_bridge.mapping.metadata import ORDER_KEY
from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.mapping.status import DEFAULT_PRECEDENCE
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext, WriteFingerprints
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, ORDER_ID, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import money_shape

STATUS_BEFORE = "clarity.status_before"
"""Identity-map system of the status an order had before its dispute (entity ``dispute``)."""
ALERTED = "notify.alert"
"""Identity-map system of the mark "this alert was sent" (entity ``alert``, keyed ``<kind>:<once>``)."""
EFW_KEY = "early_fraud_warning"
"""Metadata key of the refund made for an early fraud warning: the warning's id."""


def _id(params: Mapping[str, Any], name: str, prefixes: tuple[str, ...]) -> str:
    value = str(params.get(name) or "")
    if not value.startswith(prefixes):
        raise ValidationError(f"{name} must be a Stripe id ({' or '.join(p + '...' for p in prefixes)}), got {value!r}",
                              suggested_fix="pass event.data.object.id of the triggering event")
    return value


def _order_id(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise ValidationError(f"order_id must be a Clarity order ID, got {value!r}") from exc


def _iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _order_key(gateway: StripeGateway, payment_intent_id: str | None, charge_id: str) -> str:
    """The Clarity order key of a charge: its PaymentIntent's ``metadata.clarity_order_key`` (empty if none)."""
    if not payment_intent_id:
        payment_intent_id = str(gateway.retrieve_charge(charge_id).get("payment_intent") or "")
    if not payment_intent_id:
        return ""
    return str((gateway.retrieve_payment_intent(payment_intent_id).get("metadata") or {}).get(ORDER_KEY) or "")


def dispute_shape(view: DisputeView, order_key: str) -> dict[str, Any]:
    return {
        "dispute_id": view.id, "status": view.status, "reason": view.reason, "amount": money_shape(view.amount),
        "charge_id": view.charge_id, "payment_intent_id": view.payment_intent_id, "order_key": order_key or None,
        "inquiry": view.inquiry, "closed": view.closed, "state": clarity_state(view),
        "evidence_due_by": _iso(view.evidence_due_by), "summary": dispute_summary(view, order_key),
        "details": {"dispute": view.id, "charge": view.charge_id, "order_key": order_key or None,
                    "reason": view.reason, "status": view.status, "amount_minor": view.amount.minor,
                    "currency": view.amount.currency, "evidence_due_by": _iso(view.evidence_due_by)},
        "movements": [{"id": m.id, "kind": m.kind, "amount": money_shape(m.amount), "fee": money_shape(m.fee)}
                      for m in view.movements],
    }


def stripe_actions(gateway: StripeGateway, clarity: ClarityGateway | None, locks: KeyLocks) -> dict[str, Action]:
    def read_dispute(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        view = dispute_from_stripe(gateway.retrieve_dispute(_id(params, "dispute_id", ("dp_", "du_"))))
        return dispute_shape(view, _order_key(gateway, view.payment_intent_id, view.charge_id))

    def read_warning(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        w = warning_from_stripe(gateway.retrieve_early_fraud_warning(_id(params, "warning_id", ("issfr_",))))
        charge = gateway.retrieve_charge(w.charge_id)
        currency = str(charge.get("currency") or "")
        captured = from_stripe_amount(int(charge.get("amount_captured") or 0), currency)
        refunded = from_stripe_amount(int(charge.get("amount_refunded") or 0), currency)
        order_key = _order_key(gateway, w.payment_intent_id, w.charge_id)
        summary = (f"Early fraud warning {w.id} on {w.charge_id}" + (f" (order {order_key})" if order_key else "")
                   + f": {w.fraud_type or 'no fraud type'}, captured {captured.minor} minor units of "
                   f"{captured.currency}, {'actionable' if w.actionable else 'not actionable'}")
        return {"warning_id": w.id, "charge_id": w.charge_id, "payment_intent_id": w.payment_intent_id,
                "order_key": order_key or None, "fraud_type": w.fraud_type, "actionable": w.actionable,
                "captured": money_shape(captured), "refunded": money_shape(refunded),
                "left": money_shape(captured - refunded), "summary": summary,
                "details": {"warning": w.id, "charge": w.charge_id, "order_key": order_key or None,
                            "fraud_type": w.fraud_type, "actionable": w.actionable,
                            "amount_minor": captured.minor, "currency": captured.currency}}

    actions: dict[str, Action] = {"stripe.dispute.read": read_dispute, "stripe.early_fraud_warning.read": read_warning}
    if clarity is None:
        return actions

    def refund_warning(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        warning_id = _id(params, "warning_id", ("issfr_",))
        order_id = _order_id(params["order_id"])
        first = warning_from_stripe(gateway.retrieve_early_fraud_warning(warning_id))
        with locks.hold("stripe.charge.fraud_refund", first.charge_id):  # one decision per charge at a time
            w = warning_from_stripe(gateway.retrieve_early_fraud_warning(warning_id))
            for r in gateway.list_refunds(w.charge_id):
                if (r.get("metadata") or {}).get(EFW_KEY) == warning_id and r.get("status") not in ("failed",
                                                                                                   "canceled"):
                    return {"refunded": True, "refund_id": r["id"], "amount": money_shape(
                        from_stripe_amount(int(r["amount"]), str(r["currency"]))), "reason": "refunded before"}
            charge = gateway.retrieve_charge(w.charge_id)
            left_stripe = int(charge.get("amount_captured") or 0) - int(charge.get("amount_refunded") or 0)
            left = from_stripe_amount(left_stripe, str(charge.get("currency") or ""))
            status = clarity.get_order(order_id).get("StatusKey")
            refund, why = early_fraud_refund(w, left, str(status) if status else None,
                                             shipped_status=str(params["shipped_status"]),
                                             ranks=DEFAULT_PRECEDENCE["clarity_order"].ranks)
            if not refund:
                return {"refunded": False, "refund_id": None, "amount": None, "reason": why}
            metadata = {EFW_KEY: warning_id}
            if params.get("order_key"):
                metadata[ORDER_KEY] = str(params["order_key"])
            made = gateway.create_refund({"charge": w.charge_id, "amount": left_stripe, "reason": "fraudulent",
                                          "metadata": metadata}, idempotency_key=f"efw-refund:{warning_id}")
        return {"refunded": True, "refund_id": made["id"], "amount": money_shape(left), "reason": why}

    actions["stripe.early_fraud_warning.refund"] = refund_warning
    return actions


def clarity_actions(clarity: ClarityGateway, stripe: StripeGateway, identity: IdentityMap, locks: KeyLocks,
                    fingerprints: WriteFingerprints) -> dict[str, Action]:
    def _before(dispute_id: str) -> tuple[str, str | None]:
        entity = identity.entity_for_key("dispute", dispute_id)
        remembered = identity.external("dispute", entity, STATUS_BEFORE)
        return entity, (remembered.removeprefix(f"{dispute_id}:") if remembered else None)

    def set_dispute_status(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = _order_id(params["order_id"])
        dispute_id = _id(params, "dispute_id", ("dp_", "du_"))
        disputed, chargeback = str(params["disputed_status"]), str(params["chargeback_status"])
        with locks.hold("clarity.order.dispute_status", str(order_id)):  # read and write as one, per order
            view = dispute_from_stripe(stripe.retrieve_dispute(dispute_id))
            current = clarity.get_order(order_id).get("StatusKey")
            current = str(current) if current else None
            entity, before = _before(dispute_id)
            state = clarity_state(view)
            if state != "restored" and before is None and current not in (disputed, chargeback) and current:
                identity.link("dispute", entity, STATUS_BEFORE, f"{dispute_id}:{current}")
                before = current
            target = status_target(view, current, before, disputed_status=disputed, chargeback_status=chargeback)
            if target is None:
                return {"order_id": str(order_id), "state": state, "status_key": current, "status_before": before,
                        "changed": False}
            fingerprint = f"status={target}"
            fingerprints.record("clarity", "order", str(order_id), fingerprint)  # before: the poll may be quick
            result = clarity.set_status(order_id, target)
            changed = bool(result.get("changed", True))
            if not changed:
                fingerprints.consume("clarity", "order", str(order_id), fingerprint)
        return {"order_id": str(order_id), "state": state, "status_key": target, "status_before": before,
                "changed": changed}

    def add_dispute_note(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order_id = _order_id(params["order_id"])
        view = dispute_from_stripe(stripe.retrieve_dispute(_id(params, "dispute_id", ("dp_", "du_"))))
        key, text = dispute_note(view)
        with locks.hold("clarity.note", key):
            found = clarity.find_note_by_key(key)
            if found is not None:
                return {"note_key": key, "note_id": found.get("ID"), "added": False}
            made = clarity.add_order_note(order_id, key=key, text=text)
        return {"note_key": key, "note_id": made.get("note_id"), "added": True}

    return {"clarity.order.set_dispute_status": set_dispute_status,
            "clarity.order.add_dispute_note": add_dispute_note}


def erp_actions(erp: ErpGateway, stripe: StripeGateway, accounts: DisputeAccounts,
                locks: KeyLocks) -> dict[str, Action]:
    def sync_journals(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        dispute_id = _id(params, "dispute_id", ("dp_", "du_"))
        order_key = str(params.get("order_key") or "")
        with locks.hold("erp.dispute_journal", dispute_id):  # the chargeback depends on the dispute's status
            view = dispute_from_stripe(stripe.retrieve_dispute(dispute_id))
            booked, cancelled = [], []
            for planned in planned_journals(view, accounts, order_key=order_key):
                when = datetime.fromtimestamp(planned.created, UTC) if planned.created else datetime.now(UTC)
                doc = erp.ensure_doc("Journal Entry", journal_doc(planned, posting_date=when.date()), "cheque_no")
                booked.append({"key": planned.key, "kind": planned.kind, "name": doc["name"]})
            if view.status != "lost":  # a chargeback written off for a dispute that is no longer lost (appeal won)
                stale = erp.find_by("Journal Entry", "cheque_no", chargeback_key(dispute_id))
                if stale is not None:
                    erp.cancel("Journal Entry", str(stale["name"]))
                    cancelled.append(str(stale["name"]))
        return {"dispute_id": dispute_id, "status": view.status, "journals": booked, "cancelled": cancelled}

    return {"erp.dispute_journal.sync": sync_journals}


def notify_actions(alert: Callable[[Alert], Any], identity: IdentityMap, locks: KeyLocks) -> dict[str, Action]:
    def send_alert(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        kind, once = str(params["kind"]), str(params.get("once") or "")
        details = params.get("details") or {}
        if not isinstance(details, Mapping):
            raise ValidationError("details must be an object of facts (ids, amounts), never personal data")
        try:
            severity = Severity(str(params.get("severity") or "warning"))
        except ValueError as exc:
            raise ValidationError(f"unknown severity {params.get('severity')!r}",
                                  suggested_fix="use info, warning or critical") from exc
        item = Alert(kind, str(params["title"]), severity, dict(details), key=f"{kind}:{once}" if once else "")
        if not once:
            alert(item)
            return {"sent": True, "once": None}
        mark = f"{kind}:{once}"
        with locks.hold("notify.alert", mark):
            entity = identity.entity_for_key("alert", mark)
            if identity.external("alert", entity, ALERTED) is not None:
                return {"sent": False, "once": mark}
            alert(item)  # at least once: marked after it went out
            identity.link("alert", entity, ALERTED, mark)
        return {"sent": True, "once": mark}

    return {"notify.operations.alert": send_alert}


_DISPUTE_ID = Param("dispute_id", "string", "The dispute (`dp_...`).", required=True)
_DISPUTE_EXAMPLE = {
    "dispute_id": "dp_Example", "status": "needs_response", "reason": "fraudulent",
    "amount": {"minor": 3570, "currency": "USD"}, "charge_id": "ch_3Example", "payment_intent_id": "pi_3Example",
    "order_key": "WEB-100001", "inquiry": False, "closed": False, "state": "disputed",
    "evidence_due_by": "2026-12-14T00:00:00+00:00",
    "summary": "Dispute dp_Example on ch_3Example (order WEB-100001): fraudulent, 35.70 USD, evidence due "
               "2026-12-14 00:00 UTC, status needs_response",
    "details": {"dispute": "dp_Example", "charge": "ch_3Example", "order_key": "WEB-100001", "reason": "fraudulent",
                "status": "needs_response", "amount_minor": 3570, "currency": "USD",
                "evidence_due_by": "2026-12-14T00:00:00+00:00"},
    "movements": [{"id": "txn_Example", "kind": "withdrawal", "amount": {"minor": -3570, "currency": "USD"},
                   "fee": {"minor": 1500, "currency": "USD"}}],
}

STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="stripe.dispute.read", summary="Read a dispute (fresh, from Stripe) and the order it is about.",
        description="For `charge.dispute.*` events: the Dispute is read from Stripe, never taken from the event, "
                    "with its balance transactions (the money it moved: a chargeback's withdrawal with the "
                    "dispute fee, a won dispute's reinstatement). The order is the PaymentIntent's "
                    "`metadata.clarity_order_key`. `state` is what the dispute means for the order: `disputed` "
                    "(open, inquiry, under review, appeal), `chargeback` (lost) or `restored` (won, "
                    "warning_closed, prevented). `summary` and `details` describe it for an alert without "
                    "personal data.",
        params=(_DISPUTE_ID,),
        output="`{\"dispute_id\", \"status\", \"reason\", \"amount\": money, \"charge_id\", \"payment_intent_id\", "
               "\"order_key\"` (null without the metadata), `\"inquiry\", \"closed\"` (bool), `\"state\", "
               "\"evidence_due_by\"` (ISO time or null), `\"summary\"` (one line), `\"details\"` (object), "
               "`\"movements\": [{\"id\", \"kind\"` (`withdrawal` or `reinstatement`), `\"amount\", \"fee\"}]` "
               "(signed money, as Stripe's balance transactions)`}`.",
        example_output=_DISPUTE_EXAMPLE,
        idempotency="Read only.", writes=False,
        errors=(("ValidationError", "`dispute_id` is not a dispute id."),
                ("MappingError", "the dispute lacks its charge, currency or embedded balance transactions."),
                ("NotFound", "no such dispute."), UNAVAILABLE, RATE, AUTH),
        examples=(ex("dispute", "stripe.dispute.read", dispute_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="clarity.order.set_dispute_status", summary="Set an order's status from its charge's dispute.",
        description="Under a key lock of the order, reads the dispute from Stripe and the order from Clarity: an "
                    "open dispute puts the order in `disputed_status`, a lost one in `chargeback_status`; won, "
                    "`warning_closed` or `prevented` put it back in the status it had before the dispute, while it "
                    "is still in one of the two dispute statuses (a status a person set since is left alone). "
                    "That earlier status is remembered in the identity map (entity `dispute`, system "
                    "`clarity.status_before`) the first time the order is put in a dispute status. The write is "
                    "fingerprinted, so its echo from Clarity's poll starts nothing.",
        params=(ORDER_ID, _DISPUTE_ID,
                Param("disputed_status", "string", "The status of an order whose dispute is open.", required=True),
                Param("chargeback_status", "string", "The status of an order whose dispute was lost.", required=True)),
        output="`{\"order_id\": str, \"state\": str, \"status_key\": str, \"status_before\": str|null, "
               "\"changed\": bool}`.",
        example_output={"order_id": "42", "state": "disputed", "status_key": "Disputed",
                        "status_before": "Full Payment Received", "changed": True},
        idempotency="Sets a status; the same status again changes nothing. The earlier status is linked once per "
                    "dispute.",
        errors=(("NotFound", "the status is not in Clarity's SalesOrderStatus table: add it or fix the status map."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("status", "clarity.order.set_dispute_status", order_id="${ steps.find.ID }",
                     dispute_id="${ steps.dispute.dispute_id }", disputed_status="Disputed",
                     chargeback_status="Chargeback"),),
    ),
    StepType(
        type="clarity.order.add_dispute_note", summary="Note a dispute's stage on its Clarity order.",
        description="Reads the dispute from Stripe and attaches a note to the order for its current stage: while "
                    "it is open `Stripe dispute dp_... opened (chargeback|inquiry): reason ..., amount ..., evidence "
                    "due ...`; once closed, what the outcome means (won, lost, closed without a chargeback). No "
                    "personal data.",
        params=(ORDER_ID, _DISPUTE_ID),
        output="`{\"note_key\": str, \"note_id\": int, \"added\": bool}`.",
        example_output={"note_key": "dp_Example:opened", "note_id": 7, "added": True},
        idempotency="Find-then-create by the note's `CustomKey` (`<dispute id>:opened`, `<dispute id>:<closed "
                    "status>`) under a key lock of it: each stage is noted once.",
        errors=(("UpstreamRejected", "Clarity refused the note (e.g. an unknown order)."), LOCK_BUSY, UNAVAILABLE,
                RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("note", "clarity.order.add_dispute_note", order_id="${ steps.find.ID }",
                     dispute_id="${ steps.dispute.dispute_id }"),),
    ),
    StepType(
        type="erp.dispute_journal.sync", summary="Book a dispute's money movements in ERPNext as Journal Entries.",
        description="Under a key lock of the dispute, reads it from Stripe and makes one submitted Journal Entry "
                    "per balance transaction (`cheque_no` = its id, posted on its day, in its currency): a "
                    "withdrawal debits the disputes account with the amount and the dispute fees account with the "
                    "fee and credits the clearing account with both; a reinstatement debits clearing and credits "
                    "the disputes account (and the fees account when Stripe returns the fee). While the dispute is "
                    "`lost`, what is left in the disputes account moves to the chargebacks account "
                    "(`cheque_no` = `<dispute id>:chargeback`); once it is no longer lost (an appeal won) that "
                    "entry is cancelled. The accounts are settings (`CB_ERP_DISPUTES_ACCOUNT`, "
                    "`CB_ERP_DISPUTE_FEES_ACCOUNT`, `CB_ERP_PAID_TO_ACCOUNT`, `CB_ERP_CHARGEBACKS_ACCOUNT`).",
        params=(_DISPUTE_ID, Param("order_key", "string", "The order key, named in the entries' remarks.")),
        output="`{\"dispute_id\", \"status\", \"journals\": [{\"key\", \"kind\"` (`withdrawal`, `reinstatement`, "
               "`chargeback`), `\"name\"}], \"cancelled\": [names]}`.",
        example_output={"dispute_id": "dp_Example", "status": "lost",
                        "journals": [{"key": "txn_Example", "kind": "withdrawal", "name": "ACC-JV-2026-00001"},
                                     {"key": "dp_Example:chargeback", "kind": "chargeback",
                                      "name": "ACC-JV-2026-00002"}], "cancelled": []},
        idempotency="Find-then-create by `cheque_no` (not cancelled), serialised per dispute (key lock) and per "
                    "`cheque_no` (the ERP gateway's lock): a repeat finds every entry.",
        errors=(("MappingError", "an amount needs more than the ERP's two decimals, or the entry would not "
                                 "balance."),
                ("UpstreamRejected", "ERPNext refused the entry (e.g. an account that does not exist, is a group "
                                     "or belongs to another company: fix the account settings and replay)."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("journals", "erp.dispute_journal.sync", dispute_id="${ steps.dispute.dispute_id }",
                     order_key="${ steps.dispute.order_key }"),),
    ),
    StepType(
        type="notify.operations.alert", summary="Alert operations (the configured alert sinks), once per key.",
        description="Raises an alert through the bridge's alerter (`CB_ALERT_SINKS`: log, webhook, e-mail), which "
                    "redacts personal data from it. With `once`, the alert goes out once per `kind` and `once` "
                    "(marked in the identity map, entity `alert`), whatever runs repeat it, and is its own "
                    "rate-limit group, so alerts about different disputes are never folded into one summary. Put "
                    "ids, amounts and reasons in `details`, never a customer's name or address.",
        params=(Param("kind", "string", "A stable dotted name, e.g. `dispute.created`.", required=True),
                Param("title", "string", "One line for people.", required=True),
                Param("severity", "string", "How urgent it is.", default="warning",
                      choices=("info", "warning", "critical")),
                Param("details", "object", "JSON facts (ids, amounts, dates).", default={}),
                Param("once", "string", "Send at most once per this key (e.g. the dispute id).")),
        output="`{\"sent\": bool, \"once\": str|null}`; `sent` is false when it went out before.",
        example_output={"sent": True, "once": "dispute.created:dp_Example"},
        idempotency="With `once`: sent, then marked, under a key lock of the mark (a crash in between may send it "
                    "twice). Without: every run sends it.",
        errors=(("ValidationError", "`details` is not an object, or an unknown severity."),
                ("StoreUnavailable", "our database is unreachable; retried.")),
        examples=(ex("alert", "notify.operations.alert", kind="dispute.created", title="${ steps.dispute.summary }",
                     details="${ steps.dispute.details }", once="${ steps.dispute.dispute_id }"),),
    ),
    StepType(
        type="stripe.early_fraud_warning.read",
        summary="Read a Radar early fraud warning (fresh, from Stripe), its charge and order.",
        description="For `radar.early_fraud_warning.*` events: the warning and its charge are read from Stripe. "
                    "`actionable` is Stripe's: false once the charge is disputed or fully refunded. `left` is "
                    "what a full refund would return (captured - refunded). `summary` and `details` describe it "
                    "for an alert without personal data.",
        params=(Param("warning_id", "string", "The warning (`issfr_...`).", required=True),),
        output="`{\"warning_id\", \"charge_id\", \"payment_intent_id\", \"order_key\"` (null without the "
               "metadata), `\"fraud_type\", \"actionable\"` (bool), `\"captured\", \"refunded\", \"left\"` (money), "
               "`\"summary\", \"details\"}`.",
        example_output={"warning_id": "issfr_Example", "charge_id": "ch_3Example", "payment_intent_id": "pi_3Example",
                        "order_key": "WEB-100001", "fraud_type": "made_with_stolen_card", "actionable": True,
                        "captured": {"minor": 3570, "currency": "USD"}, "refunded": {"minor": 0, "currency": "USD"},
                        "left": {"minor": 3570, "currency": "USD"},
                        "summary": "Early fraud warning issfr_Example on ch_3Example (order WEB-100001): "
                                   "made_with_stolen_card, captured 3570 minor units of USD, actionable",
                        "details": {"warning": "issfr_Example", "charge": "ch_3Example", "order_key": "WEB-100001",
                                    "fraud_type": "made_with_stolen_card", "actionable": True, "amount_minor": 3570,
                                    "currency": "USD"}},
        idempotency="Read only.", writes=False,
        errors=(("ValidationError", "`warning_id` is not a warning id."), ("NotFound", "no such warning."),
                UNAVAILABLE, RATE, AUTH),
        examples=(ex("warning", "stripe.early_fraud_warning.read", warning_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="stripe.early_fraud_warning.refund",
        summary="Refund a warned charge in full while its order has not shipped (to avoid the dispute).",
        description="Under a key lock of the charge, reads the warning and the charge from Stripe and the order "
                    "from Clarity: when the warning is actionable, something is left to refund and the order's "
                    "status comes before `shipped_status` in the Clarity order precedence (a status the table does "
                    "not know is not assumed unshipped), refunds what is left with reason `fraudulent` and "
                    "`metadata.early_fraud_warning` = the warning id. The refund is not marked as the bridge's own: "
                    "`stripe.refund_recorded` books it in Clarity and ERPNext like a refund made in the Dashboard.",
        params=(Param("warning_id", "string", "The warning (`issfr_...`).", required=True), ORDER_ID,
                Param("shipped_status", "string", "The Clarity status from which an order counts as shipped.",
                      required=True),
                Param("order_key", "string", "The order key, written on the refund's metadata.")),
        output="`{\"refunded\": bool, \"refund_id\": str|null, \"amount\": money|null, \"reason\": str}` "
               "(`reason` says why it did or did not refund).",
        example_output={"refunded": True, "refund_id": "re_Example", "amount": {"minor": 3570, "currency": "USD"},
                        "reason": "the order has not shipped (status 'Full Payment Received')"},
        idempotency="Stripe `Idempotency-Key` `efw-refund:<warning id>`, and a refund carrying the warning's id in "
                    "its metadata is found before one is made, under a key lock of the charge.",
        errors=(("UpstreamRejected", "Stripe refused the refund (e.g. the charge was disputed meanwhile)."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("clarity",),
        examples=(ex("refund", "stripe.early_fraud_warning.refund", warning_id="${ steps.warning.warning_id }",
                     order_id="${ steps.find.ID }", shipped_status="Shipped",
                     order_key="${ steps.warning.order_key }"),),
    ),
)

__all__ = ["STEP_TYPES", "clarity_actions", "erp_actions", "notify_actions", "stripe_actions"]
