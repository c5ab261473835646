"""The action of ``notify.refund.action_required``: a refund in ``requires_action`` told to operations, once.

Rules (issue 12, point 3; the pure text is ``mapping.refund.action_alert``):

- ``requires_action`` means Stripe could not send the money and e-mailed the customer for the details it
  needs; the refund holds the money meanwhile. It is reported on both refund paths: the step reads every
  refund of the charge (``steps.<list>.refunds``, the bridge's own included), so a refund made in Stripe
  and one the bridge made for a Clarity return are told alike.
- **Once per refund**, whatever events repeat (the refund may go back to ``pending`` and to
  ``requires_action`` again): under a key lock of the refund, the identity-map mark (entity ``refund``,
  system ``stripe.action_reported``) is read before the alert and written after it went out (at least
  once, never twice in the normal course). Each alert is its own rate-limit group
  (``refund.requires_action:<refund id>``), so none is folded into another's summary.
- **No personal data**: the alert names the refund, amount, order key, charge and the return of a bridge
  refund; never the e-mail address Stripe wrote to (``next_action.display_details``).
- **Noted on the order** where pending is: when Clarity is configured and the order key is known, the
  order gets a note keyed ``stripe-refund:<id>:requires_action``, found by its key before it is added
  (a refund made in Stripe also has its Pending return, made by ``clarity.return.sync``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.clarity import money_to_clarity
from commerce_bridge.mapping.refund import RefundView, action_alert
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.gateways import ClarityGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, RATE, UNAVAILABLE, ex

ACTION_REPORTED = "stripe.action_reported"
"""Identity-map system of the mark "this refund's requires_action was told to operations" (entity ``refund``)."""


def actions(alert: Callable[[Alert], Any], identity: IdentityMap, locks: KeyLocks,
            clarity: ClarityGateway | None = None) -> dict[str, Action]:
    """``notify.refund.action_required``: a refund in ``requires_action`` told to operations once (and noted)."""

    def action_required(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        refunds = params["refunds"]
        if not isinstance(refunds, Sequence) or isinstance(refunds, str):
            raise ValidationError("refunds must be the refunds list of stripe.refund.list")
        order_key, charge_id = str(params.get("order_key") or ""), str(params.get("charge_id") or "")
        reported, noted = [], []
        for item in refunds:
            if not isinstance(item, Mapping) or item.get("status") != "requires_action":
                continue
            r = RefundView(id=str(item["id"]), status="requires_action", amount=Money(
                int(item["amount"]["minor"]), str(item["amount"]["currency"])), echo=bool(item.get("echo")),
                return_id=str(item.get("return_id") or ""), return_key=str(item.get("return_key") or ""))
            title, details = action_alert(r, order_key=order_key, charge_id=charge_id)
            if clarity is not None and order_key and _note_action(r, order_key, details):
                noted.append(r.id)
            with locks.hold("stripe.refund.action", r.id):
                entity = identity.entity_for_key("refund", r.id)
                if identity.external("refund", entity, ACTION_REPORTED) is not None:
                    continue
                alert(Alert("refund.requires_action", title, Severity.WARNING, details,
                            key=f"refund.requires_action:{r.id}"))  # at least once: marked after it went out
                identity.link("refund", entity, ACTION_REPORTED, r.id)
            reported.append(r.id)
        return {"reported": reported, "noted": noted}

    def _note_action(r: RefundView, order_key: str, details: Mapping[str, Any]) -> bool:
        assert clarity is not None
        key = f"stripe-refund:{r.id}:requires_action"
        with locks.hold("clarity.note", key):
            if clarity.find_note_by_key(key) is not None:
                return False
            try:
                order = clarity.get_order_by_key(order_key)
            except NotFound:
                return False  # not a Clarity order (yet): the alert still goes out
            clarity.add_order_note(int(order["ID"]), key=key, text=(
                f"Stripe refund {r.id} of {money_to_clarity(r.amount)} {r.amount.currency} requires action: "
                f"{details['what_to_do']}."))
        return True

    return {"notify.refund.action_required": action_required}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="notify.refund.action_required",
        summary="Tell operations, once per refund, that a refund requires action; note it on the order.",
        description="For each refund in `refunds` whose status is `requires_action` (Stripe e-mailed the "
                    "customer for the details it needs to pay the refund out; the money stays held meanwhile), "
                    "on both refund paths (`steps.<list>.refunds`: the bridge's own refunds included): an alert "
                    "`refund.requires_action` to the configured alert sinks with the refund id, amount, order "
                    "key, the Clarity return of a bridge refund and what to do, never the customer's e-mail "
                    "address; and, when Clarity is configured, a note on the order (key "
                    "`stripe-refund:<id>:requires_action`). A refund is reported once (identity map, entity "
                    "`refund`, system `stripe.action_reported`), whatever events repeat.",
        params=(Param("refunds", "array", "The refunds (`steps.<list>.refunds`).", required=True),
                Param("order_key", "string", "The order's key (`steps.<list>.order_key`); no note without it."),
                Param("charge_id", "string", "The charge, named in the alert.")),
        output="`{\"reported\": [refund id], \"noted\": [refund id]}` (this run's).",
        example_output={"reported": ["re_Example"], "noted": ["re_Example"]},
        idempotency="Under a key lock of the refund: the mark is read before the alert and written after it went "
                    "out (at least once); the note is found by its key before it is added.",
        errors=(("ValidationError", "`refunds` is not a list."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        examples=(ex("action_required", "notify.refund.action_required", refunds="${ steps.refunds.refunds }",
                     order_key="${ steps.refunds.order_key }", charge_id="${ steps.refunds.charge_id }"),),
    ),
)
