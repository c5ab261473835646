"""Radar early fraud warnings: created by the control API (as a card issuer would report one), listed and
retrieved through ``/v1/radar/early_fraud_warnings``.

Rules (Stripe's ``radar.early_fraud_warning`` object and facts/stripe.md §9):
- one warning names a captured charge (and its PaymentIntent); ids start ``issfr_``;
- ``fraud_type`` is one of the issuer's labels in ``FRAUD_TYPES``;
- ``actionable`` is true while the charge has no dispute and is not fully refunded; when either happens the
  warning turns non-actionable and ``radar.early_fraud_warning.updated`` is sent;
- creating one sends ``radar.early_fraud_warning.created``.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid_request
from ..forms import Params, as_str
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route

FRAUD_TYPES = (
    "card_never_received", "fraudulent_card_application", "made_with_counterfeit_card", "made_with_lost_card",
    "made_with_stolen_card", "misc", "unauthorized_use_of_card",
)  # fmt: skip
KIND = "radar.early_fraud_warning"


def create_warning(emu: Emulator, charge_id: str, body: dict[str, Any]) -> Obj:
    """Report an early fraud warning on a captured charge."""
    charge = emu.get("charge", charge_id, "charge")
    if not charge["captured"]:
        raise invalid_request(f"Charge {charge_id} has not been captured.", param="charge")
    fraud_type = str(body.get("fraud_type") or "unauthorized_use_of_card")
    if fraud_type not in FRAUD_TYPES:
        raise invalid_request(f"Invalid fraud_type: {fraud_type}", param="fraud_type")
    warning: Obj = {
        "id": new_id("issfr"),
        "object": KIND,
        "actionable": not charge["disputed"] and not charge["refunded"],
        "charge": charge_id,
        "created": emu.now(),
        "fraud_type": fraud_type,
        "livemode": False,
        "payment_intent": charge["payment_intent"],
    }
    indexes = [f"{KIND}:charge:{charge_id}"]
    if charge["payment_intent"]:
        indexes.append(f"{KIND}:payment_intent:{charge['payment_intent']}")
    emu.add(KIND, warning, tuple(indexes))
    emu.emit(f"{KIND}.created", warning)
    return warning


def not_actionable(emu: Emulator, charge_id: str) -> None:
    """The charge was disputed or fully refunded: its warnings are no longer actionable."""
    for wid in emu.store.index(f"{KIND}:charge:{charge_id}").ids:
        emu.update(f"{KIND}.updated", emu.store.objects[wid], {"actionable": False})


def list_warnings(emu: Emulator, p: Params) -> Obj:
    url = "/v1/radar/early_fraud_warnings"
    charge = as_str(p, "charge")
    pi = as_str(p, "payment_intent")
    if charge:
        return emu.list_page(f"{KIND}:charge:{charge}", p, url)
    if pi:
        return emu.list_page(f"{KIND}:payment_intent:{pi}", p, url)
    return emu.list_page(KIND, p, url)


ROUTES: list[Route] = [
    ("GET", "/v1/radar/early_fraud_warnings", list_warnings),
    (
        "GET",
        "/v1/radar/early_fraud_warnings/{id}",
        lambda emu, p, i: emu.get(KIND, i, label="early fraud warning"),
    ),
]
