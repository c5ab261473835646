"""Invoices of subscriptions: creation, finalisation, payment attempts through PaymentIntents, pay/void."""

from __future__ import annotations

from typing import Any

from ..errors import StripeApiError, state_error
from ..forms import Params, as_str
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route


def _line(inv_id: str, sub: Obj, item: Obj, start: int, end: int, zero: bool) -> Obj:
    price = item["price"]
    amount = 0 if zero else price["unit_amount"] * item["quantity"]
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": f"{item['quantity']} × {price['nickname'] or price['product']}"
        + (" (trial)" if zero else ""),
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": inv_id,
        "livemode": False,
        "metadata": {},
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": item["quantity"],
        "quantity_decimal": str(item["quantity"]),
        "subscription": sub["id"],
        "subtotal": amount,
        "taxes": [],
    }


def new_invoice(emu: Emulator, sub: Obj, cus: Obj, reason: str, t: int, zero: bool = False) -> Obj:
    """Create and finalise the invoice of one subscription period (``invoice.created``, ``invoice.finalized``)."""
    iid = new_id("in")
    items = sub["items"]["data"]
    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
    lines = [_line(iid, sub, it, start, end, zero) for it in items]
    total = sum(ln["amount"] for ln in lines)
    seq = cus["next_invoice_sequence"]
    cus["next_invoice_sequence"] = seq + 1
    emu.store.touch(cus["id"])
    inv: Obj = {
        "id": iid,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Commerce Bridge Sandbox",
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": reason,
        "collection_method": sub["collection_method"],
        "created": t,
        "currency": sub["currency"],
        "custom_fields": None,
        "customer": cus["id"],
        "customer_account": None,
        "customer_address": cus["address"],
        "customer_email": cus["email"],
        "customer_name": cus["name"],
        "customer_phone": cus["phone"],
        "customer_shipping": cus["shipping"],
        "customer_tax_exempt": cus["tax_exempt"],
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": t,
        "ending_balance": 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{iid}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/{iid}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{iid}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": f"{cus['invoice_prefix']}-{seq:04d}",
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": sub["metadata"], "subscription": sub["id"]},
            "type": "subscription_details",
        },
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": end,
        "period_start": start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": sub["id"],
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": sub["test_clock"],
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": t,
    }
    emu.add("invoice", inv, (f"invoice:customer:{cus['id']}", f"invoice:subscription:{sub['id']}"))
    emu.emit("invoice.created", inv)
    emu.update(
        None, inv, {"status": "open", "status_transitions": {**inv["status_transitions"], "finalized_at": t}}
    )
    emu.emit("invoice.finalized", inv)
    if total == 0:
        _mark_paid(emu, inv, t)
    return inv


def _mark_paid(emu: Emulator, inv: Obj, t: int) -> None:
    prev = emu.changed(
        inv,
        {
            "status": "paid",
            "amount_paid": inv["amount_due"],
            "amount_remaining": 0,
            "attempted": True,
            "next_payment_attempt": None,
            "status_transitions": {**inv["status_transitions"], "paid_at": t},
        },
    )
    emu.store.touch(inv["id"])
    emu.emit("invoice.paid", inv, prev)
    emu.emit("invoice.payment_succeeded", inv, prev)


def attempt_payment(
    emu: Emulator, inv: Obj, sub: Obj | None, cus: Obj, t: int, pm_id: str | None = None
) -> bool:
    """Charge the invoice off-session with the subscription's or customer's default card."""
    from .payment_intents import create_payment_intent

    if inv["status"] == "paid":
        return True
    pm = (
        pm_id
        or (sub or {}).get("default_payment_method")
        or cus["invoice_settings"]["default_payment_method"]
    )
    internal = emu.store.intern(inv["id"])
    prev = emu.changed(inv, {"attempt_count": inv["attempt_count"] + 1, "attempted": True})
    emu.store.touch(inv["id"])
    if not pm:
        internal["last_error"] = {
            "code": "invoice_no_payment_method",
            "message": "There is no default payment method.",
        }
        emu.store.touch(inv["id"])
        emu.emit("invoice.payment_failed", inv, prev)
        return False
    try:
        pi = create_payment_intent(
            emu,
            {
                "amount": str(inv["amount_due"]),
                "currency": inv["currency"],
                "customer": cus["id"],
                "payment_method": pm,
                "confirm": "true",
                "off_session": "true",
                "description": "Subscription creation"
                if inv["billing_reason"] == "subscription_create"
                else "Subscription update",
                "metadata": {"invoice": inv["id"]},
            },
        )
    except StripeApiError as exc:
        internal["last_error"] = {"code": exc.code, "decline_code": exc.decline_code, "message": exc.message}
        pid = (
            exc.extra.get("payment_intent", {}).get("id")
            if isinstance(exc.extra.get("payment_intent"), dict)
            else None
        )
        internal.setdefault("payment_intents", []).append(pid)
        emu.store.touch(inv["id"])
        emu.emit("invoice.payment_failed", inv, prev)
        return False
    internal.setdefault("payment_intents", []).append(pi["id"])
    emu.store.touch(inv["id"])
    if pi["status"] != "succeeded":
        emu.emit("invoice.payment_action_required", inv, prev)
        return False
    _mark_paid(emu, inv, t)
    return True


def pay_invoice(emu: Emulator, p: Params, iid: str) -> Obj:
    inv = emu.get("invoice", iid)
    if inv["status"] != "open":
        raise state_error(f"Invoice is already {inv['status']}.", code="invoice_not_open")
    cus = emu.get("customer", inv["customer"])
    sub = (
        emu.store.objects.get(inv["parent"]["subscription_details"]["subscription"])
        if inv["parent"]
        else None
    )
    ok = attempt_payment(emu, inv, sub, cus, emu.now(), as_str(p, "payment_method"))
    if not ok:
        err = emu.store.intern(iid).get("last_error") or {}
        raise StripeApiError(
            402,
            "card_error",
            err.get("message") or "Your card was declined.",
            code=err.get("code") or "card_declined",
            decline_code=err.get("decline_code"),
        )
    if sub is not None and sub["status"] in ("past_due", "incomplete"):
        emu.store.intern(sub["id"])["next_retry"] = None
        emu.store.touch(sub["id"])
        emu.update("customer.subscription.updated", sub, {"status": "active"})
    return inv


def void_invoice(emu: Emulator, p: Params, iid: str) -> Obj:
    inv = emu.get("invoice", iid)
    if inv["status"] != "open":
        raise state_error(
            f"You can only void open invoices (this one is {inv['status']}).", code="invoice_not_open"
        )
    emu.update(
        None,
        inv,
        {
            "status": "voided",
            "amount_remaining": 0,
            "next_payment_attempt": None,
            "status_transitions": {**inv["status_transitions"], "voided_at": emu.now()},
        },
    )
    emu.emit("invoice.voided", inv, {"status": "open"})
    return inv


def list_invoices(emu: Emulator, p: Params) -> Obj:
    status = as_str(p, "status")
    pred = (lambda i: i["status"] == status) if status else None
    if as_str(p, "subscription"):
        return emu.list_page(f"invoice:subscription:{p['subscription']}", p, "/v1/invoices", pred)
    if as_str(p, "customer"):
        return emu.list_page(f"invoice:customer:{p['customer']}", p, "/v1/invoices", pred)
    return emu.list_page("invoice", p, "/v1/invoices", pred)


def _payments(emu: Emulator, p: Params, iid: str) -> Any:
    emu.get("invoice", iid)
    ids = [i for i in emu.store.intern(iid).get("payment_intents", []) if i]
    return {
        "object": "list",
        "data": [emu.store.objects[i] for i in ids],
        "has_more": False,
        "url": f"/_sandbox/invoices/{iid}/payment_intents",
    }


ROUTES: list[Route] = [
    ("GET", "/v1/invoices", list_invoices),
    ("GET", "/v1/invoices/{id}", lambda emu, p, i: emu.get("invoice", i)),
    ("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ("POST", "/v1/invoices/{id}/void", void_invoice),
    ("GET", "/v1/invoices/{id}/payment_intents", _payments),
]
