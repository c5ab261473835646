"""Disputes: opened by Stripe's dispute test cards or the control API (as a cardholder's bank would),
evidence staged or submitted, accepted (``close``), and closed won/lost/warning_closed by the control API.

Rules (facts/stripe.md §7, Stripe's dispute docs):
- a charge has at most one dispute; its ``amount`` is at most the captured amount; ``reason`` is one of
  ``REASONS``; ``evidence_details.due_by`` defaults to 7 days after opening;
- an *inquiry* (``warning_needs_response``) moves no money; a chargeback (``needs_response``) withdraws the
  amount plus the dispute fee at once: one ``adjustment`` balance transaction, ``reporting_category``
  ``dispute``, ``fee`` = the dispute fee (``fee_details[].type`` ``stripe_fee``, description ``Dispute
  fee``), and ``charge.dispute.funds_withdrawn``; withdrawals and reinstatements of a converted charge are
  converted into the settlement currency (``fx.py``); the dispute fee is in the transaction's currency;
- opening sends ``charge.dispute.created`` (then ``funds_withdrawn`` for a chargeback); the charge gets
  ``disputed: true``; early fraud warnings on the charge stop being actionable;
- ``POST /v1/disputes/{id}`` with ``evidence[...]`` merges evidence; ``submit=false`` stages it
  (``has_evidence`` true, status unchanged); ``submit`` (default true) sends it: ``under_review``
  (``warning_under_review`` for an inquiry) and ``submission_count`` + 1; metadata may change in any state;
  unknown evidence fields are refused like any unknown parameter; evidence or a submit once the dispute is
  closed or under review is refused (400, ``dispute_unexpected_state``: the code is the emulator's guess);
  the explanation fields hold at most 20,000 characters and all text fields together 150,000 (Stripe's
  documented limits; the error wording is a guess); the file fields (``receipt``, ``customer_communication``,
  ...) take a File upload id, and as the emulator has no ``/v1/files`` any value is an unknown file;
- closing: won → ``dispute_reversal`` transaction giving the amount back (the fee is kept), then
  ``charge.dispute.funds_reinstated``; lost → nothing comes back; an inquiry closes as ``warning_closed``;
  every close sends ``charge.dispute.closed`` with ``previous_attributes.status``.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid_request, state_error
from ..forms import Params, as_bool, as_str, metadata_update
from ..fx import convert, follow_up_settlement
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route
from .balance import new_txn

EVIDENCE_KEYS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
)  # fmt: skip
REASONS = (
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated", "debit_not_authorized",
    "duplicate", "fraudulent", "general", "incorrect_account_details", "insufficient_funds", "noncompliant",
    "product_not_received", "product_unacceptable", "subscription_canceled", "unrecognized",
)  # fmt: skip
FILE_KEYS = (
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
)  # fmt: skip
"""Evidence fields that take the id of a File upload (``file_...``); the emulator has no ``/v1/files``."""
LONG_TEXT_KEYS = (
    "access_activity_log", "cancellation_policy_disclosure", "cancellation_rebuttal", "duplicate_charge_explanation",
    "product_description", "refund_policy_disclosure", "refund_refusal_explanation", "uncategorized_text",
)  # fmt: skip
"""Text fields with Stripe's documented maximum of 20,000 characters."""
LONG_TEXT_MAX = 20_000
COMBINED_TEXT_MAX = 150_000
CLOSED = ("won", "lost", "warning_closed", "prevented")
OPEN_FOR_EVIDENCE = ("needs_response", "warning_needs_response")


def open_dispute(
    emu: Emulator,
    charge: Obj,
    reason: str,
    *,
    inquiry: bool = False,
    amount: int | None = None,
    due_by: int | None = None,
) -> Obj:
    """Open a dispute on ``charge``; a chargeback withdraws the amount plus the dispute fee at once."""
    if reason not in REASONS:
        raise invalid_request(f"Invalid reason: {reason}", param="reason")
    if not charge["captured"] or charge["status"] != "succeeded":
        raise invalid_request(f"Charge {charge['id']} has not been captured.", param="charge")
    if emu.store.index(f"dispute:charge:{charge['id']}").ids:
        raise state_error(f"Charge {charge['id']} already has a dispute.", code="charge_already_disputed")
    captured = charge["amount_captured"] or charge["amount"]
    amount = captured if amount is None else amount
    if not 1 <= amount <= captured:
        raise invalid_request(f"The dispute amount must be between 1 and {captured}.", param="amount")
    now = emu.now()
    did = new_id("dp")
    pmd = charge["payment_method_details"]["card"]
    dispute: Obj = {
        "id": did,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(EVIDENCE_KEYS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": due_by if due_by is not None else now + 7 * 86400,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": inquiry and not charge["refunded"],
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": {
                "brand": pmd["brand"],
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": "10.4" if reason == "fraudulent" else "13.1",
                "network": pmd["network"],
            },
            "type": "card",
        },
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    indexes = [f"dispute:charge:{charge['id']}"]
    if charge["payment_intent"]:
        indexes.append(f"dispute:payment_intent:{charge['payment_intent']}")
    emu.add("dispute", dispute, tuple(indexes))
    prev = emu.changed(charge, {"disputed": True})
    emu.store.touch(charge["id"])
    emu.emit("charge.updated", charge, prev)
    emu.emit("charge.dispute.created", dispute)
    if not inquiry:
        currency, rate = follow_up_settlement(emu, charge)
        settled = amount if rate is None else convert(amount, charge["currency"], currency, rate)
        txn = new_txn(
            emu,
            amount=-settled,
            currency=currency,
            type_="adjustment",
            category="dispute",
            source=did,
            fee=emu.config.dispute_fee_minor,
            description=f"Chargeback withdrawal for {charge['id']}",
            immediate=True,
            fee_type="stripe_fee",
            fee_description="Dispute fee",
            exchange_rate=rate,
        )
        dispute["balance_transactions"] = [txn]
        emu.emit("charge.dispute.funds_withdrawn", dispute)
    from .radar import not_actionable

    not_actionable(emu, charge["id"])
    return dispute


def open_from_control(emu: Emulator, charge_id: str, body: dict[str, Any]) -> Obj:
    """``POST /_sandbox/charges/{id}/dispute``: the cardholder's bank opens a dispute."""
    charge = emu.get("charge", charge_id, "charge")
    amount = body.get("amount")
    due_by = body.get("evidence_due_by")
    return open_dispute(
        emu,
        charge,
        str(body.get("reason", "fraudulent")),
        inquiry=bool(body.get("inquiry", False)),
        amount=int(amount) if amount is not None else None,
        due_by=int(due_by) if due_by is not None else None,
    )


def resolve(emu: Emulator, did: str, outcome: str) -> Obj:
    """Close a dispute: ``won`` (funds reinstated, fee kept), ``lost``, or ``warning_closed`` (inquiry)."""
    d = emu.get("dispute", did)
    if d["status"] in CLOSED:
        raise state_error(f"Dispute {did} is already closed.", code="dispute_already_closed")
    inquiry = d["status"].startswith("warning")
    if outcome not in ("won", "lost", "warning_closed"):
        raise invalid_request("outcome must be one of won, lost, warning_closed", param="outcome")
    if inquiry and outcome == "lost":
        raise invalid_request(
            "An inquiry closes as warning_closed (or won); it cannot be lost.", param="outcome"
        )
    if not inquiry and outcome == "warning_closed":
        raise invalid_request("Only an inquiry closes as warning_closed.", param="outcome")
    if outcome == "won" and not inquiry:
        currency, rate = follow_up_settlement(emu, emu.get("charge", d["charge"]))
        settled = d["amount"] if rate is None else convert(d["amount"], d["currency"], currency, rate)
        txn = new_txn(
            emu,
            amount=settled,
            currency=currency,
            exchange_rate=rate,
            type_="adjustment",
            category="dispute_reversal",
            source=did,
            description=f"Chargeback reversal for {d['charge']}",
            immediate=True,
        )
        d["balance_transactions"] = [*d["balance_transactions"], txn]
        emu.emit("charge.dispute.funds_reinstated", d)
    status = "warning_closed" if inquiry else outcome
    prev = emu.changed(d, {"status": status, "is_charge_refundable": False})
    emu.store.touch(did)
    emu.emit("charge.dispute.closed", d, prev)
    return d


def update_dispute(emu: Emulator, p: Params, did: str) -> Obj:
    d = emu.get("dispute", did)
    ev = p.get("evidence")
    if ev is not None and not isinstance(ev, dict):
        raise invalid_request("Invalid evidence: must be an object", param="evidence")
    up: dict[str, Any] = {}
    if "metadata" in p:
        up["metadata"] = metadata_update(d["metadata"], p["metadata"])
    submit = as_bool(p, "submit", True) and (isinstance(ev, dict) or "submit" in p)
    if (ev or submit) and d["status"] not in OPEN_FOR_EVIDENCE:
        raise state_error(
            f"This dispute is already closed or under review ({d['status']}).",
            code="dispute_unexpected_state",
        )
    if isinstance(ev, dict):
        evidence = dict(d["evidence"])
        for k, v in ev.items():
            if k not in EVIDENCE_KEYS:
                raise invalid_request(f"Received unknown parameter: evidence[{k}]", param=f"evidence[{k}]")
            if k in FILE_KEYS and v:  # no file can exist here: Stripe answers an unknown id like this
                raise invalid_request(f"No such file upload: '{v}'", param=f"evidence[{k}]", code="resource_missing")
            if k in LONG_TEXT_KEYS and len(str(v or "")) > LONG_TEXT_MAX:
                raise invalid_request(f"Invalid evidence[{k}]: must be at most {LONG_TEXT_MAX} characters",
                                      param=f"evidence[{k}]")
            evidence[k] = v or None
        combined = sum(len(v) for k, v in evidence.items() if isinstance(v, str) and k not in FILE_KEYS)
        if combined > COMBINED_TEXT_MAX:
            raise invalid_request(f"The combined character count of all evidence fields is limited to "
                                  f"{COMBINED_TEXT_MAX:,} ({combined:,} given).", param="evidence")
        up["evidence"] = evidence
        up["evidence_details"] = {**d["evidence_details"], "has_evidence": True}
    if submit:
        up["status"] = "warning_under_review" if d["status"].startswith("warning") else "under_review"
        details: dict[str, Any] = up.get("evidence_details") or d["evidence_details"]
        up["evidence_details"] = {**details, "submission_count": details["submission_count"] + 1}
    emu.update("charge.dispute.updated", d, up)
    if submit:
        # Stripe's test convention: the text "winning_evidence" wins, "losing_evidence" loses
        text = str(d["evidence"].get("uncategorized_text") or "")
        inquiry = d["status"] == "warning_under_review"
        if "winning_evidence" in text:
            resolve(emu, did, "warning_closed" if inquiry else "won")
        elif "losing_evidence" in text and not inquiry:
            resolve(emu, did, "lost")
    return d


def close_dispute(emu: Emulator, p: Params, did: str) -> Obj:
    """Accept the dispute: a chargeback is lost, an inquiry closes as ``warning_closed``."""
    d = emu.get("dispute", did)
    return resolve(emu, did, "warning_closed" if d["status"].startswith("warning") else "lost")


def list_disputes(emu: Emulator, p: Params) -> Obj:
    ch = as_str(p, "charge")
    pi = as_str(p, "payment_intent")
    if ch:
        return emu.list_page(f"dispute:charge:{ch}", p, "/v1/disputes")
    if pi:
        return emu.list_page(f"dispute:payment_intent:{pi}", p, "/v1/disputes")
    return emu.list_page("dispute", p, "/v1/disputes")


ROUTES: list[Route] = [
    ("GET", "/v1/disputes", list_disputes),
    ("GET", "/v1/disputes/{id}", lambda emu, p, i: emu.get("dispute", i)),
    ("POST", "/v1/disputes/{id}", update_dispute),
    ("POST", "/v1/disputes/{id}/close", close_dispute),
]
