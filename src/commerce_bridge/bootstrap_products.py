"""The product sync's part of the composition root (issue 14, point 4): the ``ProductSyncer`` factory that
``bootstrap`` keeps on the container (``backfill products``, the pollers) and the ``product.sync`` action it binds.
Wiring only: the rules are in ``services.product_sync`` and ``mapping.product_sync``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING

from commerce_bridge.config import Settings
from commerce_bridge.mapping.product_sync import ProductSyncPolicy
from commerce_bridge.services.backfill import PageSource, StripeProductPages, product_pages
from commerce_bridge.services.product_sync import ProductSyncer
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.locks import SqlKeyLocks
from commerce_bridge.workflows.spec import Action
from commerce_bridge.workflows.steps import products

if TYPE_CHECKING:
    from commerce_bridge.bootstrap import Gateways

ProductSyncerFactory = Callable[[ProductSyncPolicy], ProductSyncer]
"""Builds the product syncer for a policy (``CB_PRODUCT_SOURCE_OF_TRUTH``, or another for one backfill)."""


def product_syncer(s: Settings, gateways: Gateways, identity: SqlIdentityMap, cursors: SqlCursorStore,
                   locks: SqlKeyLocks) -> ProductSyncerFactory | None:
    """The product syncer's factory, when Stripe, Clarity and the ERP are all configured: prices in
    ``CB_CLARITY_CURRENCY`` and ``CB_ERP_SELLING_PRICE_LIST``, new Items in ``CB_ERP_ITEM_GROUP`` with
    ``CB_ERP_DEFAULT_UOM`` / ``CB_ERP_UOM_MAP``."""
    stripe, clarity, erp = gateways.stripe, gateways.clarity, gateways.erp
    if stripe is None or clarity is None or erp is None:
        return None

    def build(policy: ProductSyncPolicy) -> ProductSyncer:
        return ProductSyncer(clarity=clarity, stripe=stripe, erp=erp, identity=identity, snapshots=cursors,
                             policy=policy, locks=locks, currency=s.clarity_currency, price_list=s.erp_selling_price_list,
                             item_group=s.erp_item_group, default_uom=s.erp_default_uom,
                             uom_map=dict(s.erp_uom_map), clarity_tz=clarity.zone)

    return build


def product_backfill_pages(gateways: Gateways) -> PageSource | None:
    """The product backfill's page readers (``services.backfill.product_pages``) over the three gateways, when
    they are all configured."""
    stripe, clarity, erp = gateways.stripe, gateways.clarity, gateways.erp
    if stripe is None or clarity is None or erp is None:
        return None
    # Stripe's product list: the gateway's list_products (None: `backfill products --from stripe` says so)
    return product_pages(clarity, stripe if isinstance(stripe, StripeProductPages) else None, erp, erp_tz=UTC)


def product_actions(s: Settings, factory: ProductSyncerFactory | None) -> dict[str, Action]:
    """``product.sync`` bound to a syncer of ``CB_PRODUCT_SOURCE_OF_TRUTH`` when ``CB_PRODUCT_SYNC`` is on and the
    three systems are configured (its step type's ``needs_setting`` and ``also_needs``), else nothing."""
    if not s.product_sync or factory is None:
        return {}
    return dict(products.actions(factory(ProductSyncPolicy(source_of_truth=dict(s.product_source_of_truth)))))
