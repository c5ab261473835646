"""The actions behind the step catalogue: each step type as a function ``(ctx, params) -> output``.

Actions translate between the step shapes (``shapes.py``) and the gateways (``services.gateways``),
using the pure mappings of ``commerce_bridge.mapping``. They are bound to concrete gateways in
bootstrap; a step type whose connector is not configured simply has no action (the registry says
which workflows are affected).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, Mailer, WriteFingerprints
from commerce_bridge.workflows.steps import clarity, core, erp, notify, refunds, stripe


@dataclass
class FlowSettings:
    """Choices of the order-to-cash flow that are configuration, not workflow logic."""

    paid_status: str = "Full Payment Received"
    erp_paid_to_account: str = "Stripe Clearing - SB"
    erp_delivery_days: int = 7
    retry_url: str = "http://localhost:8000/pay/{order_key}"
    mail_from: str = "shop@example.com"
    extra: dict[str, Any] = field(default_factory=dict)


def _engine_handles_waits(ctx: Any, params: Mapping[str, Any]) -> Any:
    """``core.wait.until`` is a durable sleep the engine performs itself; it never calls an action."""
    raise RuntimeError("core.wait.until must be run by the engine as a durable sleep")


def build_actions(
    *,
    identity: IdentityMap,
    fingerprints: WriteFingerprints,
    locks: KeyLocks,
    stripe_gateway: StripeGateway | None = None,
    clarity_gateway: ClarityGateway | None = None,
    erp_gateway: ErpGateway | None = None,
    mailer: Mailer | None = None,
    flow: FlowSettings | None = None,
) -> Mapping[str, Action]:
    """Every action whose dependencies are configured.

    ``locks`` serialise the find-then-create steps per key: ``stripe.customer.ensure`` and
    ``erp.customer.ensure`` hold the lock of the customer's dedupe key around their identity-map lookup,
    find or create, and link; the ERP gateway also holds them itself around each ``ensure_*``.
    """
    flow = flow or FlowSettings()
    actions: dict[str, Action] = {**core.actions(identity), "core.wait.until": _engine_handles_waits,
                                  **refunds.core_actions(identity, locks)}
    if clarity_gateway is not None:
        actions.update(clarity.actions(clarity_gateway, fingerprints))
    if stripe_gateway is not None:
        actions.update(stripe.actions(stripe_gateway, locks, identity))
    if erp_gateway is not None:
        actions.update(erp.actions(erp_gateway, flow, identity, locks))
    if stripe_gateway is not None:  # the refund path re-reads each Refund from Stripe before it writes
        actions.update(refunds.stripe_actions(stripe_gateway))
        if clarity_gateway is not None:
            actions.update(refunds.clarity_actions(clarity_gateway, stripe_gateway, locks))
        if erp_gateway is not None:
            actions.update(refunds.erp_actions(erp_gateway, stripe_gateway, flow, locks))
    if mailer is not None:
        actions.update(notify.actions(mailer, flow))
    return actions


__all__ = ["FlowSettings", "build_actions"]
