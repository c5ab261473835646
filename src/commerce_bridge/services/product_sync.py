"""``ProductSyncer``: one product and its prices kept the same in Clarity, ERPNext and Stripe (issue 14, point 4).

``sync_from(system, id)`` reads the product in that system, finds its counterparts in the other two by SKU, merges
the three records with the ``ProductSyncPolicy`` (``mapping.product_sync.merge``: per field, prices per currency),
creates the product where it is missing, applies each non-empty patch, links the ids and says what happened.
The rules it keeps (the same as ``services.customer_sync``, with the SKU as the key; the shared part, snapshots,
restamp, ``quick``, the key lock and the write loop, is ``services.sync_core``):

* **Key**: the SKU (Clarity ``CustomKey`` = ERPNext ``item_code`` = Stripe ``metadata.item_code``, else the SKU
  a Price's ``lookup_key`` names). A product without one is a ``ValidationError`` (nothing written). Identity map
  kind ``product``, systems ``clarity_product``, ``stripe``, ``erp``; a new entity by the dedupe key
  ``sku:<code>``. Counterparts: the identity map first, then the SKU.
* **Timestamps**: each source's own clock per field (Clarity ``UpdatedDate``, ERPNext Item / Item Price
  ``modified``, Stripe product ``updated`` / Price ``created``). Clarity and ERPNext date whole documents, so
  after each sync a snapshot of the merged values is kept (cursor store, ``product_sync.<entity>``, a hash per
  field and its time); a field whose value still hashes the same keeps the snapshot's time (restamp), so only a
  value that really changed is "newer"; and a value that differs from the snapshot was changed after that sync
  (which brought every system to it), so it is dated no earlier than just after the snapshot's time (Stripe's
  clock has whole seconds: a change there in the same second as our write still counts as later).
* **Writes**: only non-empty patches; Stripe writes carry ``product-sync:stripe:<id>:<patch fingerprint>`` (plus
  ``:<write_key>`` from a workflow step) and a suffix per call. A Stripe price change is a new Price with the same
  ``lookup_key`` (``services.product_sides``). Nothing is ever deleted; ``active`` propagates both ways.
* **Conflicts** (values that lost) are logged with ids and field names only, and returned.
* ``dry_run``: reads and merges only; nothing is written, the identity map and snapshots included.
* ``quick`` (the workflows' echo skip): when the record read holds exactly the snapshot's values and ids and the
  product is linked in all three systems, the change is the bridge's own write coming back: the other two are
  not read and nothing is written (``SyncOutcome.in_step``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar

import structlog

from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.item import DEFAULT_ITEM_GROUP, DEFAULT_STOCK_UOM
from commerce_bridge.mapping.product_record import (
    CLARITY,
    CLARITY_PRODUCT,
    ERP,
    ITEM_CODE_KEY,
    OWN_ID,
    SCALAR_FIELDS,
    STRIPE,
    SYSTEMS,
    ProductRecord,
    price_field,
)
from commerce_bridge.mapping.product_sync import (
    ProductMergeResult,
    ProductSyncPolicy,
    dedupe_key,
    fingerprint,
    merge,
)
from commerce_bridge.services.gateways import CursorStore, ErpGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks
from commerce_bridge.services.product_sides import (
    ClarityProductPort,
    ClaritySide,
    ErpSide,
    Found,
    StripeProductPort,
    StripeSide,
)
from commerce_bridge.services.sync_core import SyncCore, SyncKind, SyncOutcome

log = structlog.get_logger("commerce_bridge.product_sync")

KIND = "product"
FIND_ORDER = (STRIPE, CLARITY, ERP)
CREATE_ORDER = (CLARITY, ERP, STRIPE)  # Stripe last: its metadata then names the Clarity product


class ProductSyncer(SyncCore[ProductRecord, ProductMergeResult]):
    """Syncs one product at a time (see the module docstring).

    Parameters
    ----------
    clarity, stripe, erp:
        The three ports (Clarity and Stripe with their product calls), built by bootstrap.
    identity:
        The identity map. ``snapshots``: where the per-product snapshots live (a ``CursorStore``).
    policy:
        Which system decides each field; the rest follow the latest change.
    locks:
        Key locks: one sync per product at a time (None: no serialisation).
    currency:
        The Clarity store's currency (CEF prices carry none).
    price_list:
        The ERPNext selling Price List (its currency is its own).
    item_group, default_uom, uom_map:
        ERPNext's rules for a new Item (``mapping.item.erp_item``); ``uom_map`` renames Clarity units to ERPNext
        UOMs (and back).
    clarity_tz, erp_tz:
        The zones of the two systems' offset-less dates.
    """

    spec: ClassVar[SyncKind] = SyncKind(
        name="product_sync", kind=KIND, lock="product.sync", systems=SYSTEMS, create_order=CREATE_ORDER,
        own_id=OWN_ID, key_prefix="product-sync", fingerprint=fingerprint, after_snapshot=timedelta(microseconds=1))
    log: ClassVar[Any] = log
    clarity: ClaritySide
    stripe: StripeSide
    erp: ErpSide

    def __init__(self, *, clarity: ClarityProductPort, stripe: StripeProductPort, erp: ErpGateway,
                 identity: IdentityMap, snapshots: CursorStore, policy: ProductSyncPolicy | None = None,
                 locks: KeyLocks | None = None, currency: str = "USD", price_list: str = "Standard Selling",
                 item_group: str = DEFAULT_ITEM_GROUP, default_uom: str = DEFAULT_STOCK_UOM,
                 uom_map: Mapping[str, str] | None = None, clarity_tz: tzinfo = UTC, erp_tz: tzinfo = UTC,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.policy = policy or ProductSyncPolicy()
        self.currency = currency.upper()
        self.uom_map = dict(uom_map or {})
        self.clarity = ClaritySide(clarity, currency=self.currency, tz=clarity_tz, uom_map=self.uom_map)
        self.stripe = StripeSide(stripe)
        self.erp = ErpSide(erp, price_list=price_list, tz=erp_tz, item_group=item_group, default_uom=default_uom,
                           fallback_currency=self.currency)
        self._identity, self._snapshots, self._locks, self._now = identity, snapshots, locks, now

    # reading

    def _read(self, system: str, external_id: str) -> Found | None:
        if system == CLARITY:
            return self.clarity.read(external_id)
        return self.erp.read(external_id) if system == ERP else self.stripe.read(external_id)

    def _find(self, system: str, sku: str) -> str | None:
        if system == STRIPE:
            return self.stripe.find(sku, [self.currency, self.erp.currency])
        return (self.clarity if system == CLARITY else self.erp).find(sku)

    def _entity(self, system: str, source: Found, *, create: bool) -> str | None:
        ids = {**source.record.ids, ERP: source.record.ids.get(ERP) or source.record.sku,
               OWN_ID[system]: source.external_id}
        for key in (OWN_ID[system], *(k for k in (CLARITY_PRODUCT, ERP, STRIPE) if k != OWN_ID[system])):
            value = ids.get(key)
            linked = self._identity.lookup(KIND, key, value) if value else None
            if linked is not None:
                return linked
        if not create:
            return None
        return self._identity.entity_for_key(KIND, dedupe_key(source.record.sku))

    def _stamped_fields(self, record: ProductRecord) -> Iterable[str]:
        return record.field_names()

    def _snapshot_fields(self, result: ProductMergeResult) -> Iterable[str]:
        return result.winners

    def _gather(self, system: str, source: Found, links: Mapping[str, str], snapshot: Mapping[str, list[str]],
                entity_id: str | None, *, dry_run: bool) -> dict[str, Found]:
        found = {system: source}
        for other in FIND_ORDER:
            if other == system:
                continue
            linked = links.get(OWN_ID[other])
            hit = self._read(other, linked) if linked else None
            if hit is None:
                candidate = self._find(other, source.record.sku)
                hit = self._read(other, candidate) if candidate else None
            if hit is not None and hit.record.sku not in ("", source.record.sku):
                raise ValidationError(
                    f"{other} product {hit.external_id} is linked to SKU {source.record.sku!r} but has another SKU",
                    suggested_fix="correct the SKU (Clarity CustomKey, ERPNext item_code, Stripe metadata "
                                  "item_code) so that the three agree, then replay")
            if hit is not None:
                found[other] = hit
        return found

    def _merge(self, found: Mapping[str, Found], snapshot: Mapping[str, list[str]]) -> ProductMergeResult:
        return merge({s: self._restamp(f.record, snapshot) for s, f in found.items()}, self.policy,
                     uom_map=self.uom_map)

    # the sync

    def _ids_in_step(self, system: str, source: Found, links: Mapping[str, str]) -> bool:
        record = source.record
        # Stripe's metadata names the SKU and the Clarity product: a wrong one would be patched
        return system != STRIPE or (record.ids.get(ERP) == record.sku
                                    and record.ids.get(CLARITY_PRODUCT) == links[CLARITY_PRODUCT])

    def _in_step_fields(self, system: str, record: ProductRecord, snapshot: Mapping[str, list[str]]) -> Iterable[str]:
        return set(SCALAR_FIELDS) | {n for n in snapshot if record.holds(n)} | {price_field(c) for c in record.prices}

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False, quick: bool = False,
                  write_key: str | None = None) -> SyncOutcome:
        """Sync the product ``record_id`` of ``system`` (``clarity``: a product ID, ``stripe``: ``prod_…`` or a
        ``price_…`` of it, ``erp``: an item code) with its counterparts.

        Raises
        ------
        NotFound
            No such product in ``system``.
        ValidationError
            An unknown system, or a product without SKU (Clarity CustomKey, Stripe metadata item_code).
        MappingError
            A price one system holds cannot be read or written exactly.
        TransientError, PermanentError
            From the gateways, as their error tables say.
        """
        if system not in SYSTEMS:
            raise ValidationError(f"unknown system {system!r}", suggested_fix=f"use one of {', '.join(SYSTEMS)}")
        if system == STRIPE:
            record_id = self.stripe.product_of(record_id)
        source = self._read(system, record_id)
        if source is None:
            raise NotFound(f"{system} has no product {record_id}")
        if not source.record.sku:
            fix = {CLARITY: "give the product its SKU as CustomKey in Clarity, then replay",
                   STRIPE: f"set metadata[{ITEM_CODE_KEY}] on the Stripe product to its SKU, then replay",
                   ERP: "give the Item an item_code, then replay"}[system]
            raise ValidationError(f"{system} product {record_id} has no SKU", suggested_fix=fix,
                                  details={"system": system, "id": record_id})
        entity_id = self._entity(system, source, create=not dry_run)
        with self._held(None if dry_run else entity_id):
            links = self._identity.externals(KIND, entity_id) if entity_id else {}
            snapshot = self._snapshot(entity_id)
            return self._sync_held(system, record_id, entity_id, source, links, snapshot, dry_run=dry_run, quick=quick,
                                   write_key=write_key)

    def _create_ids(self, result: ProductMergeResult, found: Mapping[str, Found],
                    created: Mapping[str, str]) -> dict[str, str]:
        return {**result.record.ids, **{OWN_ID[s]: f.external_id for s, f in found.items()}}

    def _reread(self, system: str, external_id: str) -> Found | None:
        return self._read(system, external_id)

    def _patch_order(self, result: ProductMergeResult) -> Iterable[str]:
        return CREATE_ORDER

    def _create(self, system: str, record: ProductRecord, entity_id: str) -> str:
        if system == CLARITY:
            return self.clarity.create(record)
        if system == ERP:
            return self.erp.create(record)
        return self.stripe.create(record, key=f"product-sync:stripe:create:{entity_id}",
                                  default_currency=self.currency)
