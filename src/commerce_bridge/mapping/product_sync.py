"""The pure merge of the product sync (issue 14, point 4): one product's records from Clarity, ERPNext and Stripe
in, the merged product and a patch per system out.

The rules, per field (``name``, ``description``, ``active``, ``uom``, and ``prices`` **per currency**: the
price in each currency is its own field, ``prices.<CUR>``):

* the field's **source of truth** (``ProductSyncPolicy.source_of_truth``; ``prices`` covers every currency)
  decides when it holds a value; otherwise the **latest change by each source's own clock** wins (ties: the
  fixed order ``clarity``, ``erp``, ``stripe``);
* **an empty value never wins** (``""``; a price a system does not hold): the sync fills and changes fields, it
  never clears them and never deletes a price. ``active`` is a bool and always a value, so a product disabled
  anywhere (later) is disabled everywhere, and the same for enabling;
* a system only takes what it can hold: Clarity one price in the store's currency, ERPNext one in its selling
  price list's currency, Stripe any currency (a Price per currency);
* every other set value that differs from the winner is kept in ``ProductMergeResult.conflicts``;
* ``patches[system]`` holds, in that system's own names, only what differs from the winner; ``{}`` means
  nothing to write. Clarity: ``Name``, ``Description``, ``Active``, ``UnitOfMeasure`` (renamed back through
  the inverse of ``uom_map``), ``PriceBase`` (decimal text). ERPNext: ``item`` {``item_name``,
  ``description``, ``disabled``, ``stock_uom``} and ``prices`` {CUR: decimal text}. Stripe: ``product``
  {``name``, ``description``, ``active``, ``unit_label``, ``metadata`` {``item_code``,
  ``clarity_product_id``}} and ``prices`` {CUR: Stripe amount} (a new Price each: Prices are immutable).

No loop: a patch writes the winning value itself, so once applied and read back every system holding the field
has the same value, and a second merge has empty patches. ``fingerprint`` names a patch (Stripe idempotency keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping import sync_merge
from commerce_bridge.mapping.money import format_money, to_stripe_amount
from commerce_bridge.mapping.product_record import (
    CLARITY,
    CLARITY_PRODUCT,
    CLARITY_PRODUCT_KEY,
    ERP,
    ITEM_CODE_KEY,
    PRODUCT_FIELDS,
    SCALAR_FIELDS,
    STRIPE,
    SYSTEMS,
    ProductRecord,
    is_empty,
    price_field,
)
from commerce_bridge.mapping.sync_merge import check_policy, patch_fingerprint

MERGED = "merged"


@dataclass(frozen=True, slots=True)
class ProductSyncPolicy:
    """Which system decides each field; the rest follow the latest change (see the module docstring).

    ``source_of_truth`` maps a field of ``PRODUCT_FIELDS`` to a system, e.g. ``{"prices": "erp"}``.
    """

    source_of_truth: Mapping[str, str] = field(default_factory=dict)
    system_order: tuple[str, ...] = SYSTEMS

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_of_truth", MappingProxyType(dict(self.source_of_truth)))
        check_policy("product", self.source_of_truth, self.system_order, fields=PRODUCT_FIELDS, systems=SYSTEMS)

    def rank(self, system: str) -> int:
        return self.system_order.index(system)

    def truth(self, name: str) -> str | None:
        return self.source_of_truth.get("prices" if name.startswith("prices.") else name)


ProductConflict = sync_merge.Conflict[str | bool | int]
"""A set value that lost: ``system`` held another value of ``field`` (changed at ``updated_at``)."""
ProductMergeResult = sync_merge.MergeResult[ProductRecord, str | bool | int]
"""The merged record, who won each field, the losing values, the patch and changed fields per system."""


def _check(records: Mapping[str, ProductRecord]) -> str:
    skus = {r.sku for r in records.values() if r.sku}
    for system, record in records.items():
        if system not in SYSTEMS or record.system != system:
            raise MappingError(f"product sync: record of {record.system!r} given as {system!r}",
                               suggested_fix=f"key each record by its own system ({', '.join(SYSTEMS)})")
    if len(skus) > 1:
        raise MappingError(f"product sync: the records name different SKUs ({', '.join(sorted(skus))})",
                           suggested_fix="give the product one SKU (Clarity CustomKey = ERPNext item_code = "
                                         "Stripe metadata item_code)")
    return next(iter(skus), "")


def _fields(records: Mapping[str, ProductRecord]) -> tuple[str, ...]:
    currencies = sorted({c for r in records.values() for c in r.prices})
    return SCALAR_FIELDS + tuple(price_field(c) for c in currencies)


def _winner(name: str, records: Mapping[str, ProductRecord], policy: ProductSyncPolicy) -> ProductRecord | None:
    holders = [r for r in records.values() if r.holds(name) and not is_empty(r.value(name))]
    if not holders:
        return None
    chosen = [r for r in holders if r.system == policy.truth(name)]
    if chosen:
        return chosen[0]
    return min(holders, key=lambda r: (-r.stamp(name).timestamp(), policy.rank(r.system)))


def merge(records: Mapping[str, ProductRecord], policy: ProductSyncPolicy | None = None, *,
          uom_map: Mapping[str, str] | None = None) -> ProductMergeResult:
    """Merge one product's records (keyed by system) by ``policy`` (see the module docstring).

    Parameters
    ----------
    records:
        One ``ProductRecord`` per system found (missing systems are simply absent).
    policy:
        Sources of truth and the tie order.
    uom_map:
        Clarity unit -> ERPNext UOM; its inverse renames the winning UOM back for Clarity's patch.

    Raises
    ------
    MappingError
        A record keyed by another system than its own, records naming different SKUs, or a winning price
        Stripe cannot represent.
    """
    policy = policy or ProductSyncPolicy()
    sku = _check(records)
    values: dict[str, Any] = {}
    prices: dict[str, int] = {}
    stamps: dict[str, datetime] = {}
    winners: dict[str, str] = {}
    conflicts: list[ProductConflict] = []
    ordered = sorted(records, key=policy.rank)
    for name in _fields(records):
        win = _winner(name, records, policy)
        if win is None:
            continue
        value = win.value(name)
        winners[name], stamps[name] = win.system, win.stamp(name)
        if name.startswith("prices."):
            prices[name[7:]] = int(value)  # type: ignore[arg-type]
        else:
            values[name] = value
        for system in ordered:
            other = records[system]
            theirs = other.value(name)
            if system != win.system and other.holds(name) and not is_empty(theirs) and theirs != value:
                conflicts.append(ProductConflict(name, system, theirs, other.stamp(name), win.system))  # type: ignore[arg-type]
    ids = {key: r.ids[key] for r in sorted(records.values(), key=lambda r: -policy.rank(r.system))
           for key in r.ids}
    for system, record in records.items():  # each system is the authority of its own id
        own = {CLARITY: CLARITY_PRODUCT, STRIPE: STRIPE, ERP: ERP}[system]
        if record.ids.get(own):
            ids[own] = record.ids[own]
    merged = ProductRecord(system=MERGED, sku=sku, prices=prices, ids=ids, updated_at=stamps, **values)
    patches: dict[str, dict[str, Any]] = {}
    changed: dict[str, tuple[str, ...]] = {}
    for system in ordered:
        record = records[system]
        names = tuple(n for n in winners if record.holds(n) and record.value(n) != merged.value(n))
        patch = render(merged, names, system=system, uom_map=uom_map)
        meta: dict[str, str] = {}
        if system == STRIPE:
            wanted = {ITEM_CODE_KEY: sku, CLARITY_PRODUCT_KEY: ids.get(CLARITY_PRODUCT, "")}
            current = {ITEM_CODE_KEY: record.ids.get(ERP, ""), CLARITY_PRODUCT_KEY: record.ids.get(CLARITY_PRODUCT, "")}
            meta = {k: v for k, v in wanted.items() if v and current[k] != v}
            if meta:
                patch.setdefault("product", {})["metadata"] = meta
        patches[system] = patch
        changed[system] = names + tuple(f"metadata.{k}" for k in meta)
    return ProductMergeResult(record=merged, winners=MappingProxyType(winners), conflicts=tuple(conflicts),
                              patches=MappingProxyType(patches), changed=MappingProxyType(changed))


def _inverse(uom_map: Mapping[str, str] | None) -> dict[str, str]:
    return {erp: clarity for clarity, erp in (uom_map or {}).items()}


def render(record: ProductRecord, names: tuple[str, ...], *, system: str,
           uom_map: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``record``'s fields ``names`` (``prices.<CUR>`` included) in ``system``'s own shape (module docstring).

    Raises
    ------
    MappingError
        A price Stripe cannot represent in its currency (5.124 KWD).
    """
    body: dict[str, Any] = {}
    own = {
        CLARITY: {"name": "Name", "description": "Description", "active": "Active", "uom": "UnitOfMeasure"},
        ERP: {"name": "item_name", "description": "description", "active": "disabled", "uom": "stock_uom"},
        STRIPE: {"name": "name", "description": "description", "active": "active", "uom": "unit_label"},
    }[system]
    for name in names:
        value = record.value(name)
        if is_empty(value):
            continue
        if name.startswith("prices."):
            money = Money(int(value), name[7:])  # type: ignore[arg-type]
            if system == CLARITY:
                body["PriceBase"] = format_money(money)
            elif system == ERP:
                body.setdefault("prices", {})[money.currency] = format_money(money)
            else:
                body.setdefault("prices", {})[money.currency] = to_stripe_amount(money)[0]
            continue
        if name == "active" and system == ERP:
            value = 0 if value else 1
        if name == "uom" and system == CLARITY:
            value = _inverse(uom_map).get(str(value), value)
        if system == CLARITY:
            body[own[name]] = value
        else:
            body.setdefault("item" if system == ERP else "product", {})[own[name]] = value
    return body


def fingerprint(system: str, patch: Mapping[str, Any]) -> str:
    """A stable hash of the values a patch writes to ``system`` (key order does not matter)."""
    return patch_fingerprint("ps1", system, patch)


def dedupe_key(sku: str) -> str:
    """The identity map's de-duplication key of a product: ``sku:<code>``."""
    return f"sku:{sku}"
