"""Refunds: create by PaymentIntent or charge (partial, idempotent), retrieve, update, list, cancel, and the
status lifecycle the sandbox drives as Stripe's back office would.

Rules (facts/stripe.md §7 and Stripe's refund docs):
- a refund takes at most what is left on the charge, ``amount_captured − amount_refunded``; the first refund
  that asks for more is refused with "Refund amount ($61.00) is greater than charge amount ($60.00)", a
  later one with "... greater than unrefunded amount on charge ($35.00)" (``param: amount``); a fully
  refunded charge answers ``charge_already_refunded``; a charge with an open or lost chargeback answers
  ``charge_disputed``; amounts follow the currency rules in ``currencies.py``;
- ``charge.amount_refunded`` counts every refund that is not ``failed`` or ``canceled``; ``charge.refunded``
  is true once that reaches ``amount_captured``;
- money leaves the balance when the refund is created (a ``refund`` balance transaction, negative, no
  fee; converted into the settlement currency like its charge, see ``fx.py``); a refund that later fails
  or is canceled gets a ``refund_failure`` transaction putting back what it took, named by
  ``failure_balance_transaction``;
- statuses: ``succeeded`` (cards, by default), ``pending`` (test card 4000000000007726, or the control API),
  ``requires_action`` (control API only), ``failed`` (with ``failure_reason``), ``canceled`` (only from
  ``requires_action``, by ``POST /v1/refunds/{id}/cancel`` or the control API). Allowed moves:
  pending → succeeded | failed | requires_action; succeeded → failed; requires_action → pending |
  succeeded | failed | canceled;
- events: on create ``refund.created`` then ``charge.refunded`` (the charge with the new cumulative
  ``amount_refunded`` and ``previous_attributes``); on every later change ``refund.updated`` and
  ``charge.refund.updated`` (both with ``previous_attributes``), plus ``refund.failed`` when it fails;
- ``failure_reason``, ``failure_balance_transaction``, ``pending_reason`` and ``next_action`` appear on the
  object only in the states that use them (Stripe's example object has none of them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..currencies import check_amount, display
from ..errors import StripeApiError, invalid_request, state_error
from ..forms import Params, as_int, as_str, metadata_update
from ..fx import convert, follow_up_settlement
from ..ids import new_id, request_id
from ..state import Emulator
from ..store import Obj
from . import Route
from .balance import new_txn
from .payment_methods import card_of

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
FAILURE_REASONS = (
    "lost_or_stolen_card", "expired_or_canceled_card", "charge_for_pending_refund_disputed",
    "insufficient_funds", "declined", "merchant_request", "unknown",
)  # fmt: skip
COUNTED = ("pending", "requires_action", "succeeded")
MOVES = {
    "pending": {"succeeded", "failed", "requires_action"},
    "succeeded": {"failed"},
    "requires_action": {"pending", "succeeded", "failed", "canceled"},
}
AUTO_INDEX = "refund:auto"


def _chargeback_blocks(emu: Emulator, charge: Obj) -> bool:
    for did in emu.store.index(f"dispute:charge:{charge['id']}").ids:
        status = emu.store.objects[did]["status"]
        if not status.startswith("warning") and status != "won":
            return True
    return False


def _charge_for(emu: Emulator, p: Params) -> Obj:
    charge_id = as_str(p, "charge")
    pi_id = as_str(p, "payment_intent")
    if pi_id:
        pi = emu.get("payment_intent", pi_id, "payment_intent", "payment_intent")
        if not pi["latest_charge"] or pi["status"] != "succeeded":
            raise state_error(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="charge_not_refundable" if pi["status"] != "succeeded" else "resource_missing",
                param="payment_intent",
            )
        if charge_id and charge_id != pi["latest_charge"]:
            raise invalid_request(
                f"The charge {charge_id} does not belong to PaymentIntent {pi_id}.", param="charge"
            )
        charge_id = pi["latest_charge"]
    if not charge_id:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent or charge."
        )
    charge = emu.get("charge", charge_id, "charge")
    if not charge["captured"] or charge["status"] != "succeeded":
        raise state_error(
            f"Charge {charge_id} has not been captured or did not succeed.", code="charge_not_refundable"
        )
    return charge


def _validated_amount(emu: Emulator, charge: Obj, p: Params) -> int:
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    if remaining <= 0:
        raise state_error(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    if _chargeback_blocks(emu, charge):
        raise state_error(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    amount = as_int(p, "amount", remaining)
    assert amount is not None
    if amount < 1:
        raise invalid_request("Invalid positive integer", param="amount")
    cur = charge["currency"]
    check_amount(amount, cur)
    if amount > remaining:
        what = "charge amount" if charge["amount_refunded"] == 0 else "unrefunded amount on charge"
        raise invalid_request(
            f"Refund amount ({display(amount, cur)}) is greater than {what} ({display(remaining, cur)})",
            param="amount",
        )
    return amount


def _sync_charge(emu: Emulator, charge: Obj) -> dict[str, Any]:
    """Recompute the charge's refund totals and embedded list; return the previous values that changed."""
    ids = emu.store.index(f"refund:charge:{charge['id']}").ids
    refunds = [emu.store.objects[i] for i in reversed(ids)]
    total = sum(r["amount"] for r in refunds if r["status"] in COUNTED)
    listing = dict(charge["refunds"])
    listing["data"] = refunds[:10]
    listing["has_more"] = len(refunds) > 10
    prev = emu.changed(
        charge,
        {"amount_refunded": total, "refunded": total >= charge["amount_captured"] > 0, "refunds": listing},
    )
    prev.pop("refunds", None)
    emu.store.touch(charge["id"])
    return prev


def new_refund(emu: Emulator, charge: Obj, p: Params, *, status: str | None = None) -> Obj:
    """Validate and create a refund of ``charge``; ``status`` forces the starting status (control API)."""
    amount = _validated_amount(emu, charge, p)
    reason = as_str(p, "reason")
    if reason is not None and reason not in REASONS:
        raise invalid_request(f"Invalid reason: {reason}", param="reason")
    metadata = metadata_update({}, p.get("metadata"))
    card = card_of(emu, emu.get("payment_method", charge["payment_method"]))
    if status is None:
        status = "pending" if card.refund_pending else "succeeded"
    if status not in COUNTED:
        raise invalid_request(f"A refund cannot start as {status}.", param="status")
    rid = new_id("re")
    currency, rate = follow_up_settlement(emu, charge)
    settled = amount if rate is None else convert(amount, charge["currency"], currency, rate)
    txn = new_txn(
        emu, amount=-settled, currency=currency, type_="refund", category="refund", source=rid,
        description="REFUND FOR CHARGE", exchange_rate=rate,
    )  # fmt: skip
    refund: Obj = {
        "id": rid,
        "object": "refund",
        "amount": amount,
        "balance_transaction": txn["id"],
        "charge": charge["id"],
        "created": emu.now(),
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "destination_details": {
            "card": {
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "metadata": metadata,
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    _status_fields(emu, refund, status, as_str(p, "instructions_email"))
    internal: dict[str, Any] = {}
    auto = "succeeded" if status == "pending" and card.refund_pending else None
    if card.refund_fails and status == "succeeded":
        auto = "failed"
    indexes = [f"refund:charge:{charge['id']}", f"refund:payment_intent:{charge['payment_intent']}"]
    if auto:
        internal["auto"] = auto
        indexes.append(AUTO_INDEX)
    emu.add("refund", refund, tuple(indexes), internal)
    prev = _sync_charge(emu, charge)
    emu.emit("refund.created", refund)
    emu.emit("charge.refunded", charge, prev)
    if charge["refunded"]:
        from .radar import not_actionable

        not_actionable(emu, charge["id"])
    return refund


def _status_fields(emu: Emulator, refund: Obj, status: str, email: str | None = None) -> None:
    for k in ("pending_reason", "next_action"):
        refund.pop(k, None)
    if status == "pending":
        refund["pending_reason"] = "processing"
    if status == "requires_action":
        now = emu.now()
        to = email or "customer@example.com"
        refund["next_action"] = {
            "display_details": {
                "email_sent": {"email_sent_at": now, "email_sent_to": to},
                "expires_at": now + 45 * 86400,
            },
            "type": "display_details",
        }


def create_refund(emu: Emulator, p: Params) -> Obj:
    return new_refund(emu, _charge_for(emu, p), p)


def move(emu: Emulator, rid: str, status: str, failure_reason: str | None = None) -> Obj:
    """Move a refund to ``status`` as Stripe's back office would (see the allowed moves above)."""
    r = emu.get("refund", rid)
    if status not in MOVES.get(r["status"], set()):
        raise state_error(
            f"Refund {rid} cannot move from {r['status']} to {status}.", code="refund_unexpected_state"
        )
    if status == "failed":
        failure_reason = failure_reason or "unknown"
        if failure_reason not in FAILURE_REASONS:
            raise invalid_request(f"Invalid failure_reason: {failure_reason}", param="failure_reason")
    before = {k: r.get(k) for k in ("status", "pending_reason", "next_action", "failure_reason")}
    r["status"] = status
    _status_fields(emu, r, status)
    if status in ("failed", "canceled"):
        taken = emu.store.objects[r["balance_transaction"]]  # put back exactly what the refund took
        rate = taken["exchange_rate"]
        txn = new_txn(
            emu, amount=-taken["amount"], currency=taken["currency"], type_="refund_failure",
            category="refund_failure", source=rid, description="REFUND FAILURE", immediate=True,
            exchange_rate=None if rate is None else Decimal(str(rate)),
        )  # fmt: skip
        r["failure_balance_transaction"] = txn["id"]
        if status == "failed":
            r["failure_reason"] = failure_reason
    if status == "succeeded":
        r["destination_details"]["card"]["reference_status"] = "available"
    emu.store.intern(rid).pop("auto", None)
    emu.store.touch(rid)
    prev = {k: v for k, v in before.items() if r.get(k) != v}
    charge = emu.get("charge", r["charge"])
    _sync_charge(emu, charge)
    emu.emit("refund.updated", r, prev)
    emu.emit("charge.refund.updated", r, prev)
    if status == "failed":
        emu.emit("refund.failed", r)
    return r


def cancel_refund(emu: Emulator, p: Params, rid: str) -> Obj:
    r = emu.get("refund", rid)
    if r["status"] != "requires_action":
        raise StripeApiError(
            400,
            "invalid_request_error",
            f"You can't cancel a refund with a status of {r['status']}. Only refunds with a status of "
            "requires_action can be canceled.",
            code="refund_unexpected_state" if r["status"] != "canceled" else "refund_already_canceled",
        )
    return move(emu, rid, "canceled")


def run_auto(emu: Emulator) -> list[str]:
    """Advance refunds of the refund test cards (pending → succeeded, succeeded → failed); return their ids."""
    idx = emu.store.index(AUTO_INDEX)
    done = []
    for rid in list(idx.ids):
        target = emu.store.intern(rid).get("auto")
        if target and emu.store.objects[rid]["status"] in ("pending", "succeeded"):
            move(emu, rid, target, "expired_or_canceled_card" if target == "failed" else None)
            done.append(rid)
        idx.remove(emu.store.keys[rid], rid)
    return done


def dashboard_refund(emu: Emulator, body: dict[str, Any]) -> Obj:
    """A refund made in the Dashboard: no API call of the bridge; events carry a Dashboard request id."""
    params: Params = {k: str(v) if isinstance(v, int) else v for k, v in body.items() if k != "status"}
    emu.ctx.request_id, emu.ctx.idempotency_key = request_id(), None
    try:
        return new_refund(emu, _charge_for(emu, params), params, status=body.get("status"))
    finally:
        emu.ctx.request_id = None


def list_refunds(emu: Emulator, p: Params) -> Obj:
    ch = as_str(p, "charge")
    pi = as_str(p, "payment_intent")
    if ch:
        return emu.list_page(f"refund:charge:{ch}", p, "/v1/refunds")
    if pi:
        return emu.list_page(f"refund:payment_intent:{pi}", p, "/v1/refunds")
    return emu.list_page("refund", p, "/v1/refunds")


def update_refund(emu: Emulator, p: Params, rid: str) -> Obj:
    r = emu.get("refund", rid)
    if "metadata" in p:
        prev = emu.update("refund.updated", r, {"metadata": metadata_update(r["metadata"], p["metadata"])})
        if prev:
            emu.emit("charge.refund.updated", r, prev)
    return r


ROUTES: list[Route] = [
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds", list_refunds),
    ("GET", "/v1/refunds/{id}", lambda emu, p, i: emu.get("refund", i)),
    ("POST", "/v1/refunds/{id}", update_refund),
    ("POST", "/v1/refunds/{id}/cancel", cancel_refund),
]
