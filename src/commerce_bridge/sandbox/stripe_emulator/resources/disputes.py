"""Disputes opened by Stripe's dispute test cards; evidence, close (accept), and sandbox resolution."""

from __future__ import annotations

from typing import Any

from ..errors import state_error
from ..forms import Params, as_bool, metadata_update
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


def open_dispute(emu: Emulator, charge: Obj, reason: str, *, inquiry: bool = False) -> Obj:
    """Open a dispute on ``charge``; a non-inquiry dispute withdraws the amount plus the dispute fee."""
    now = emu.now()
    did = new_id("dp")
    pmd = charge["payment_method_details"]["card"]
    dispute: Obj = {
        "id": did,
        "object": "dispute",
        "amount": charge["amount_captured"] or charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(EVIDENCE_KEYS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": now + 7 * 86400,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
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
    emu.add("dispute", dispute, (f"dispute:charge:{charge['id']}",))
    prev = emu.changed(charge, {"disputed": True})
    emu.store.touch(charge["id"])
    emu.emit("charge.updated", charge, prev)
    emu.emit("charge.dispute.created", dispute)
    if not inquiry:
        txn = new_txn(
            emu,
            amount=-dispute["amount"],
            currency=dispute["currency"],
            type_="adjustment",
            category="dispute",
            source=did,
            fee=emu.config.dispute_fee_minor,
            description=f"Chargeback withdrawal for {charge['id']}",
            immediate=True,
            fee_type="stripe_fee",
        )
        dispute["balance_transactions"] = [txn]
        emu.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def resolve(emu: Emulator, did: str, won: bool) -> Obj:
    """Close a dispute as won (funds reinstated, fee kept) or lost."""
    d = emu.get("dispute", did)
    if d["status"] in ("won", "lost", "warning_closed"):
        raise state_error(f"Dispute {did} is already closed.", code="dispute_already_closed")
    inquiry = d["status"].startswith("warning")
    if won and not inquiry:
        txn = new_txn(
            emu,
            amount=d["amount"],
            currency=d["currency"],
            type_="adjustment",
            category="dispute_reversal",
            source=did,
            description=f"Chargeback reversal for {d['charge']}",
            immediate=True,
        )
        d["balance_transactions"] = [*d["balance_transactions"], txn]
        emu.emit("charge.dispute.funds_reinstated", d)
    status = "warning_closed" if inquiry else ("won" if won else "lost")
    emu.update(None, d, {"status": status})
    emu.emit("charge.dispute.closed", d, {"status": d["status"]})
    return d


def update_dispute(emu: Emulator, p: Params, did: str) -> Obj:
    d = emu.get("dispute", did)
    if d["status"] not in ("needs_response", "warning_needs_response"):
        raise state_error(f"This dispute is already closed or under review ({d['status']}).")
    ev = p.get("evidence")
    up: dict[str, Any] = {}
    if isinstance(ev, dict):
        evidence = dict(d["evidence"])
        for k, v in ev.items():
            if k in evidence:
                evidence[k] = v or None
        up["evidence"] = evidence
        up["evidence_details"] = {**d["evidence_details"], "has_evidence": True}
    if "metadata" in p:
        up["metadata"] = metadata_update(d["metadata"], p["metadata"])
    submit = as_bool(p, "submit", True) and isinstance(ev, dict)
    if submit:
        up["status"] = "under_review"
        up["evidence_details"] = {
            **up["evidence_details"],
            "submission_count": d["evidence_details"]["submission_count"] + 1,
        }
    emu.update("charge.dispute.updated", d, up)
    if submit:
        # Stripe's test convention: the text "winning_evidence" wins, "losing_evidence" loses
        text = str((up.get("evidence") or {}).get("uncategorized_text") or "")
        if "winning_evidence" in text:
            d["status"] = "needs_response"
            resolve(emu, did, True)
        elif "losing_evidence" in text:
            d["status"] = "needs_response"
            resolve(emu, did, False)
    return d


def close_dispute(emu: Emulator, p: Params, did: str) -> Obj:
    """Accept the dispute (it is lost)."""
    return resolve(emu, did, False)


def list_disputes(emu: Emulator, p: Params) -> Obj:
    ch = p.get("charge")
    if isinstance(ch, str) and ch:
        return emu.list_page(f"dispute:charge:{ch}", p, "/v1/disputes")
    return emu.list_page("dispute", p, "/v1/disputes")


ROUTES: list[Route] = [
    ("GET", "/v1/disputes", list_disputes),
    ("GET", "/v1/disputes/{id}", lambda emu, p, i: emu.get("dispute", i)),
    ("POST", "/v1/disputes/{id}", update_dispute),
    ("POST", "/v1/disputes/{id}/close", close_dispute),
]
