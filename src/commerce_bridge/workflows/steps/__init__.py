"""The step types: each declared (``STEP_TYPES``) next to its action, a function ``(ctx, params) -> output``.

Rules:

- Every module of :data:`STEP_MODULES` declares its step types in ``STEP_TYPES`` and builds their actions
  in a function of the gateways it needs. :func:`step_catalogue` is the catalogue of all of them (what
  the loader validates workflows against, what the reference page documents); there is no other list.
- Actions translate between the step shapes (``shapes.py``) and the gateways (``services.gateways``),
  using the pure mappings of ``commerce_bridge.mapping``. :func:`build_actions` binds them to the
  configured gateways; a step type whose connector is not configured simply has no action (the
  registry says which workflows are affected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.mapping.dispute import DisputeAccounts
from commerce_bridge.mapping.item import DEFAULT_ITEM_GROUP, DEFAULT_STOCK_UOM
from commerce_bridge.services.alerts import Alert
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.ports import (
    Action,
    AuditLog,
    IdentityMap,
    KeyLocks,
    Mailer,
    Reconciliations,
    WriteFingerprints,
)
from commerce_bridge.workflows.catalogue import Catalogue
from commerce_bridge.workflows.steps import (
    clarity,
    core,
    customers,
    dispute_evidence,
    disputes,
    erp,
    notify,
    outbound,
    payouts,
    products,
    refund_action,
    refunds,
    returns,
    stock,
    stripe,
)
from commerce_bridge.workflows.steps.shapes import SHAPES

STEP_MODULES: tuple[ModuleType, ...] = (core, clarity, stripe, erp, notify, outbound, refunds, dispute_evidence,
                                        returns, disputes, refund_action, payouts, stock, customers,
                                        products)
"""The modules that declare step types (``STEP_TYPES``) beside their actions."""


@cache
def step_catalogue() -> Catalogue:
    """Every step type the bridge declares, from :data:`STEP_MODULES` (built once)."""
    return Catalogue.of((t for m in STEP_MODULES for t in m.STEP_TYPES), SHAPES)


@dataclass
class FlowSettings:
    """Choices of the order-to-cash flow that are configuration, not workflow logic."""

    paid_status: str = "Full Payment Received"
    erp_paid_to_account: str = "Stripe Clearing - SB"
    erp_delivery_days: int = 7
    erp_item_group: str = DEFAULT_ITEM_GROUP  # the Item Group of Items made from Clarity products
    erp_default_uom: str = DEFAULT_STOCK_UOM  # their stock UOM when the product names none
    erp_uom_map: dict[str, str] = field(default_factory=dict)  # Clarity unit of measure -> ERPNext UOM
    retry_url: str = "http://localhost:8000/pay/{order_key}"
    mail_from: str = "shop@example.com"
    dispute_accounts: DisputeAccounts = field(default_factory=DisputeAccounts)
    payout_accounts: dict[str, str] = field(default_factory=lambda: dict(payouts.DEFAULT_ACCOUNTS))
    stock_warehouses: tuple[str, ...] = ()  # ERPNext warehouses summed for Clarity's stock (empty: all)
    inventory_section: str | None = None  # the Clarity section the bridge owns (None: no stock steps)
    customer_source_of_truth: dict[str, str] = field(default_factory=dict)  # CB_CUSTOMER_SOURCE_OF_TRUTH
    customer_sync: bool = False  # CB_CUSTOMER_SYNC: the live customer sync's step (needs_setting)
    extra: dict[str, Any] = field(default_factory=dict)


def build_actions(
    *,
    identity: IdentityMap,
    fingerprints: WriteFingerprints,
    locks: KeyLocks,
    stripe_gateway: StripeGateway | None = None,
    clarity_gateway: ClarityGateway | None = None,
    erp_gateway: ErpGateway | None = None,
    mailer: Mailer | None = None,
    audit: AuditLog | None = None,
    outbound_post: Action | None = None,
    alert: Callable[[Alert], Any] | None = None,
    flow: FlowSettings | None = None,
    reconciliations: Reconciliations | None = None,
    customer_syncer: Callable[[SyncPolicy], CustomerSyncer] | None = None,
) -> dict[str, Action]:
    """Every action whose dependencies are configured.

    ``locks`` serialise the find-then-create steps per key: ``stripe.customer.ensure`` and
    ``erp.customer.ensure`` hold the lock of the customer's dedupe key around their identity-map lookup,
    find or create, and link; the ERP gateway also holds them itself around each ``ensure_*``.
    ``customer_syncer`` builds the customer syncer for a policy (``flow.customer_source_of_truth``); it is
    given when Stripe, Clarity and the ERP are all configured (``customer.sync`` ``also_needs`` them).
    """
    flow = flow or FlowSettings()
    actions: dict[str, Action] = {**core.actions(identity), **refunds.core_actions(identity, locks)}
    if audit is not None:
        actions.update(core.audit_actions(audit))
    if outbound_post is not None:
        actions.update(outbound.actions(outbound_post))
    if clarity_gateway is not None:
        actions.update(clarity.actions(clarity_gateway, fingerprints))
    if stripe_gateway is not None:
        actions.update(stripe.actions(stripe_gateway, locks, identity))
    if erp_gateway is not None:
        actions.update(erp.actions(erp_gateway, flow, identity, locks, clarity_gateway))
    if stripe_gateway is not None:  # the refund path re-reads each Refund from Stripe before it writes
        actions.update(refunds.stripe_actions(stripe_gateway))
        if clarity_gateway is not None:
            actions.update(refunds.clarity_actions(clarity_gateway, stripe_gateway, locks, identity))
        if erp_gateway is not None:
            actions.update(refunds.erp_actions(erp_gateway, stripe_gateway, flow, locks))
        if clarity_gateway is not None:  # a return refunded in Clarity is paid back in Stripe
            actions.update(returns.actions(stripe_gateway, clarity_gateway, identity, locks))
    if erp_gateway is not None:
        actions.update(returns.erp_actions(erp_gateway, locks))
        actions.update(stock.erp_actions(erp_gateway, flow.stock_warehouses))
    if clarity_gateway is not None and flow.inventory_section:  # CB_CLARITY_INVENTORY_SECTION (needs_setting)
        actions.update(stock.clarity_actions(clarity_gateway, flow.inventory_section))
    if flow.customer_sync and customer_syncer is not None and None not in (stripe_gateway, clarity_gateway,
                                                                            erp_gateway):
        actions.update(customers.actions(customer_syncer(SyncPolicy(source_of_truth=flow.customer_source_of_truth))))
    actions.update(dispute_evidence.core_actions(identity))
    if stripe_gateway is not None:  # dispute evidence re-reads the dispute from Stripe before it writes
        actions.update(dispute_evidence.stripe_actions(stripe_gateway, locks))
    if mailer is not None:
        actions.update(notify.actions(mailer, flow, identity))
    if alert is not None:  # the alerter of the process: operations hear of disputes and fraud warnings
        actions.update(disputes.notify_actions(alert, identity, locks))
        actions.update(refund_action.actions(alert, identity, locks, clarity_gateway))  # requires_action
    if stripe_gateway is not None:  # the dispute path re-reads the dispute (or warning) from Stripe before it writes
        actions.update(disputes.stripe_actions(stripe_gateway, clarity_gateway, locks))
        if clarity_gateway is not None:
            actions.update(disputes.clarity_actions(clarity_gateway, stripe_gateway, identity, locks, fingerprints))
        if erp_gateway is not None:
            actions.update(disputes.erp_actions(erp_gateway, stripe_gateway, flow.dispute_accounts, locks))
            if reconciliations is not None:  # payouts: matched against what the ERP holds, recorded in the store
                actions.update(payouts.actions(stripe_gateway, erp_gateway, reconciliations, flow.payout_accounts,
                                               locks))
    return actions


__all__ = ["STEP_MODULES", "FlowSettings", "build_actions", "step_catalogue"]
