"""Charges: creation from a PaymentIntent with Radar ``outcome`` and card checks, list/retrieve/update."""

from __future__ import annotations

from typing import Any

from ..cards import TestCard
from ..forms import Params, as_str, metadata_update
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route


def outcome(card: TestCard, elevated_rng: int) -> dict[str, Any]:
    d = card.decline
    if card.blocked:
        return {
            "advice_code": "do_not_try_again",
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "not_sent_to_network",
            "reason": "highest_risk_level",
            "risk_level": "highest",
            "risk_score": card.risk_score,
            "seller_message": "Stripe blocked this payment as too risky.",
            "type": "blocked",
        }
    if d is not None:
        return {
            "advice_code": "try_again_later" if d.code == "processing_error" else "do_not_try_again",
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network",
            "reason": d.decline_code,
            "risk_level": card.risk_level,
            "risk_score": card.risk_score,
            "seller_message": d.seller_message,
            "type": "issuer_declined",
        }
    if card.risk_level == "elevated":
        return {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": "elevated_risk_level",
            "risk_level": "elevated",
            "risk_score": card.risk_score,
            "seller_message": "Stripe evaluated this payment as having elevated risk, and placed it in your manual review queue.",
            "type": "manual_review",
        }
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": card.risk_level,
        "risk_score": elevated_rng,
        "seller_message": "Payment complete.",
        "type": "authorized",
    }


def card_details(pm: Obj, amount: int, three_ds: bool) -> dict[str, Any]:
    c = pm["card"]
    return {
        "card": {
            "amount_authorized": amount,
            "authorization_code": "123456",
            "brand": c["brand"],
            "checks": dict(c["checks"]),
            "country": c["country"],
            "exp_month": c["exp_month"],
            "exp_year": c["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": c["fingerprint"],
            "funding": c["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": c["last4"],
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": c["brand"],
            "network_token": {"used": False},
            "network_transaction_id": "1041029786787710",
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": "unregulated",
            "three_d_secure": (
                {
                    "authentication_flow": "challenge",
                    "electronic_commerce_indicator": "05",
                    "exemption_indicator": None,
                    "result": "authenticated",
                    "result_reason": None,
                    "transaction_id": "4f2e3c8a-8a0b-4d52-9b3a-1c2d3e4f5a6b",
                    "version": "2.2.0",
                }
                if three_ds
                else None
            ),
            "transaction_link_id": None,
            "wallet": None,
        },
        "type": "card",
    }


def new_charge(emu: Emulator, pi: Obj, pm: Obj, card: TestCard, *, three_ds: bool) -> Obj:
    """A charge object for one confirmation attempt (status set by the caller)."""
    cid = new_id("ch")
    d = card.decline
    failed = d is not None
    charge: Obj = {
        "id": cid,
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "COMMERCE-BRIDGE",
        "captured": False,
        "created": emu.now(),
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": d.code if d else None,
        "failure_message": d.message if d else None,
        "fraud_details": {"stripe_report": "fraudulent"} if card.blocked else {},
        "livemode": False,
        "metadata": dict(pi["metadata"]),
        "on_behalf_of": None,
        "outcome": outcome(card, 8 + (int(cid[-2:], 36) % 50)),
        "paid": not failed,
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": card_details(pm, pi["amount"], three_ds),
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{cid}",
        "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{cid}/refunds"},
        "review": None,
        "shipping": pi["shipping"],
        "source": None,
        "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": "failed" if failed else "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    idx = [f"charge:payment_intent:{pi['id']}"]
    if pi["customer"]:
        idx.append(f"charge:customer:{pi['customer']}")
    return emu.add("charge", charge, tuple(idx))


def list_charges(emu: Emulator, p: Params) -> Obj:
    pi = as_str(p, "payment_intent")
    cus = as_str(p, "customer")
    if pi:
        return emu.list_page(f"charge:payment_intent:{pi}", p, "/v1/charges")
    if cus:
        return emu.list_page(f"charge:customer:{cus}", p, "/v1/charges")
    return emu.list_page("charge", p, "/v1/charges")


def update_charge(emu: Emulator, p: Params, cid: str) -> Obj:
    ch = emu.get("charge", cid)
    up: dict[str, Any] = {}
    if "metadata" in p:
        up["metadata"] = metadata_update(ch["metadata"], p["metadata"])
    for k in ("description", "receipt_email"):
        if k in p:
            up[k] = as_str(p, k)
    emu.update("charge.updated", ch, up)
    return ch


def search_charges(emu: Emulator, p: Params) -> Obj:
    from .core import search_results

    return search_results(emu, "charge", p, "/v1/charges/search")


ROUTES: list[Route] = [
    ("GET", "/v1/charges", list_charges),
    ("GET", "/v1/charges/search", search_charges),
    ("GET", "/v1/charges/{id}", lambda emu, p, i: emu.get("charge", i)),
    ("POST", "/v1/charges/{id}", update_charge),
]
