"""PaymentMethods: test card numbers, ``pm_card_*`` ids, ``tok_*`` tokens, attach/detach/list."""

from __future__ import annotations

import hashlib
from typing import Any

from ..cards import PM_CARD_IDS, TOKENS, TestCard, lookup
from ..errors import StripeApiError, invalid_request
from ..forms import Params, as_int, as_str, metadata_update
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route
from .core import address


def card_error(
    message: str, code: str, param: str | None = None, decline_code: str | None = None
) -> StripeApiError:
    return StripeApiError(402, "card_error", message, code=code, param=param, decline_code=decline_code)


def _billing(value: Any) -> dict[str, Any]:
    v = value if isinstance(value, dict) else {}
    return {
        "address": address(v.get("address"))
        or {k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": v.get("email") or None,
        "name": v.get("name") or None,
        "phone": v.get("phone") or None,
        "tax_id": None,
    }


def build_card_pm(emu: Emulator, card: TestCard, exp_month: int, exp_year: int, p: Params) -> Obj:
    fingerprint = hashlib.sha1(card.number.encode()).hexdigest()[:16]
    pm: Obj = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": _billing(p.get("billing_details")),
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": card.address_line1_check,
                "address_postal_code_check": card.address_postal_code_check,
                "cvc_check": card.cvc_check,
            },
            "country": card.country,
            "display_brand": card.brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint,
            "funding": card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": emu.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": metadata_update({}, p.get("metadata")),
        "type": "card",
    }
    return emu.add("payment_method", pm, internal={"number": card.number})


def card_from_params(card: Any, param: str) -> tuple[TestCard, int, int]:
    if not isinstance(card, dict):
        raise invalid_request("Missing required param: card.", param=param, code="parameter_missing")
    token = card.get("token")
    if token:
        number = TOKENS.get(token)
        if number is None:
            raise invalid_request(
                f"No such token: '{token}'", param=f"{param}[token]", code="resource_missing"
            )
        return lookup(number), 12, 2034  # type: ignore[return-value]
    number = str(card.get("number") or "").replace(" ", "")
    if not number:
        raise invalid_request(
            "Missing required param: card[number].", param=f"{param}[number]", code="parameter_missing"
        )
    tc = lookup(number)
    if tc is None or tc.incorrect_number:
        raise card_error("Your card number is incorrect.", "incorrect_number", f"{param}[number]", None)
    exp_month = as_int(card, "exp_month")
    exp_year = as_int(card, "exp_year")
    if exp_month is None or not 1 <= exp_month <= 12:
        raise card_error(
            "Your card's expiration month is invalid.", "invalid_expiry_month", f"{param}[exp_month]"
        )
    if exp_year is None:
        raise card_error(
            "Your card's expiration year is invalid.", "invalid_expiry_year", f"{param}[exp_year]"
        )
    if exp_year < 100:
        exp_year += 2000
    if exp_year < 2026:
        raise card_error(
            "Your card's expiration year is invalid.", "invalid_expiry_year", f"{param}[exp_year]"
        )
    cvc = card.get("cvc")
    if cvc is not None and (not str(cvc).isdigit() or not 3 <= len(str(cvc)) <= 4):
        raise card_error("Your card's security code is invalid.", "invalid_cvc", f"{param}[cvc]")
    return tc, exp_month, exp_year


def create_from_data(emu: Emulator, data: Any, param: str) -> Obj:
    if not isinstance(data, dict):
        raise invalid_request(f"Invalid {param}", param=param)
    if (data.get("type") or "card") != "card":
        raise invalid_request("Only type=card is emulated", param=f"{param}[type]")
    tc, m, y = card_from_params(data.get("card"), f"{param}[card]")
    return build_card_pm(emu, tc, m, y, data)


def resolve(emu: Emulator, ref: Any, param: str = "payment_method") -> Obj:
    """A PaymentMethod from an id, a ``pm_card_*`` test id or a ``tok_*`` token (the latter two create one)."""
    if not isinstance(ref, str) or not ref:
        raise invalid_request(f"Invalid {param}", param=param)
    number = PM_CARD_IDS.get(ref) or TOKENS.get(ref)
    if number is not None:
        tc = lookup(number)
        assert tc is not None
        return build_card_pm(emu, tc, 12, 2034, {})
    return emu.get("payment_method", ref, param, "PaymentMethod")


def card_of(emu: Emulator, pm: Obj) -> TestCard:
    tc = lookup(emu.store.intern(pm["id"]).get("number", "4242424242424242"))
    assert tc is not None
    return tc


def create_payment_method(emu: Emulator, p: Params) -> Obj:
    pm = create_from_data(emu, p, "card") if "card" in p else None
    if pm is None:
        raise invalid_request("Missing required param: card.", param="card", code="parameter_missing")
    return pm


def attach_payment_method(emu: Emulator, p: Params, pm_id: str) -> Obj:
    cus = as_str(p, "customer", required=True)
    emu.get("customer", cus, "customer")
    pm = resolve(emu, pm_id, "payment_method")
    if pm["customer"] and pm["customer"] != cus:
        raise invalid_request("This PaymentMethod is already attached to another customer.", param="customer")
    if pm["customer"] != cus:
        emu.changed(pm, {"customer": cus})
        emu.store.add_to_index(pm["id"], f"payment_method:customer:{cus}")
        emu.emit("payment_method.attached", pm)
    return pm


def detach_payment_method(emu: Emulator, p: Params, pm_id: str) -> Obj:
    pm = emu.get("payment_method", pm_id, "payment_method", "PaymentMethod")
    if not pm["customer"]:
        raise invalid_request(
            "The payment method you provided is not attached to a customer.", param="payment_method"
        )
    cus = pm["customer"]
    emu.changed(pm, {"customer": None})
    emu.store.touch(pm_id)
    emu.emit("payment_method.detached", pm, {"customer": cus})
    return pm


def update_payment_method(emu: Emulator, p: Params, pm_id: str) -> Obj:
    pm = emu.get("payment_method", pm_id, "payment_method", "PaymentMethod")
    up: dict[str, Any] = {}
    if "metadata" in p:
        up["metadata"] = metadata_update(pm["metadata"], p["metadata"])
    if "billing_details" in p:
        up["billing_details"] = _billing(p["billing_details"])
    emu.update("payment_method.updated", pm, up)
    return pm


def list_payment_methods(emu: Emulator, p: Params, cid: str | None = None) -> Obj:
    cus = cid or as_str(p, "customer")
    if not cus:
        return emu.list_page("payment_method", p, "/v1/payment_methods")
    emu.get("customer", cus, "customer")
    url = f"/v1/customers/{cus}/payment_methods" if cid else "/v1/payment_methods"
    return emu.list_page(f"payment_method:customer:{cus}", p, url, lambda o: o["customer"] == cus)


ROUTES: list[Route] = [
    ("POST", "/v1/payment_methods", create_payment_method),
    ("GET", "/v1/payment_methods", list_payment_methods),
    (
        "GET",
        "/v1/payment_methods/{id}",
        lambda emu, p, i: emu.get("payment_method", i, label="PaymentMethod"),
    ),
    ("POST", "/v1/payment_methods/{id}", update_payment_method),
    ("POST", "/v1/payment_methods/{id}/attach", attach_payment_method),
    ("POST", "/v1/payment_methods/{id}/detach", detach_payment_method),
    ("GET", "/v1/customers/{id}/payment_methods", lambda emu, p, i: list_payment_methods(emu, p, i)),
]
