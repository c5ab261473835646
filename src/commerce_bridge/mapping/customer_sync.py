"""Two-way customer sync, the pure core: merge policy, per-system patches, write fingerprints, dedupe keys.

Pure: no I/O, nothing wired yet. Records come from ``mapping.customer_record`` (one per system).

The rules ``merge`` keeps (docs/reference/customer-sync.md):

* **per field**, the value comes from the field's *source of truth* (``SyncPolicy.source_of_truth``)
  when that system holds a value; otherwise the **latest change wins**, by each source's own clock
  (``CustomerRecord.updated_at``); a timestamp tie goes to the system earliest in
  ``SyncPolicy.system_order`` (default ``clarity``, ``erp``, ``stripe``);
* **an empty value never wins** over a set one: the sync fills and changes fields, it never clears them;
* every other set value that differs from the winner is kept in ``MergeResult.conflicts``;
* ``MergeResult.patches[system]`` holds, in that system's own names and shapes, only the fields whose
  value differs from the winner (emails compared normalised, addresses normalised and without name);
  ``{}`` means nothing to write. A system that does not hold a field (``CARRIED``) gets no patch for it;
* ids: each system is the authority of its own ids; the Stripe patch writes the others into metadata.

No loop: a patch writes the winning value itself, so once applied and read back every system holding
the field has the same value, and every field of a second merge has a single value: all patches are
empty. ``fingerprint`` and ``is_echo`` let the wiring recognise its own write when it comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping import sync_merge
from commerce_bridge.mapping.address import erp_country_name
from commerce_bridge.mapping.customer import dedupe_keys as _dedupe_keys
from commerce_bridge.mapping.customer import email_dedupe_key
from commerce_bridge.mapping.customer_record import (
    CARRIED,
    CLARITY,
    CLARITY_KEY,
    CLARITY_TAX_ID_FIELD,
    ERP,
    FIELDS,
    ID_KEYS,
    STRIPE,
    STRIPE_METADATA_IDS,
    SYSTEMS,
    CustomerRecord,
    Value,
    compare_key,
    is_empty,
)
from commerce_bridge.mapping.metadata import CLARITY_ACCOUNT_SYSTEM, CLARITY_USER_SYSTEM
from commerce_bridge.mapping.sync_merge import check_policy, patch_fingerprint

MERGED = "merged"
ID_OWNERS = MappingProxyType({CLARITY_USER_SYSTEM: CLARITY, CLARITY_ACCOUNT_SYSTEM: CLARITY, CLARITY_KEY: CLARITY,
                              STRIPE: STRIPE, ERP: ERP})
"""``ids`` key -> the system that assigns that id (its own value wins)."""
_CONTAINERS = MappingProxyType({STRIPE: frozenset({"metadata"}), ERP: frozenset({"customer", "contact"}),
                                CLARITY: frozenset({"account", "billing_contact", "shipping_contact"})})


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """Which system decides each field; the rest follow the latest change (see the module docstring).

    ``source_of_truth`` maps a field of ``FIELDS`` to a system, e.g. ``{"email": "clarity", "tax_id": "erp"}``.
    """

    source_of_truth: Mapping[str, str] = field(default_factory=dict)
    system_order: tuple[str, ...] = SYSTEMS
    clarity_tax_id_field: str = CLARITY_TAX_ID_FIELD

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_of_truth", MappingProxyType(dict(self.source_of_truth)))
        check_policy("customer", self.source_of_truth, self.system_order, fields=FIELDS, systems=SYSTEMS,
                     carried=CARRIED)

    def rank(self, system: str) -> int:
        return self.system_order.index(system)


Conflict = sync_merge.Conflict[str | Address]
"""A set value that lost: ``system`` held ``value`` (changed at ``updated_at``); ``winner`` decided."""
MergeResult = sync_merge.MergeResult[CustomerRecord, str | Address]
"""The merged record, who won each field, the losing values and the patch per system."""


def _check(records: Mapping[str, CustomerRecord]) -> None:
    for system, record in records.items():
        if system not in SYSTEMS or record.system != system:
            raise MappingError(f"customer sync: record of {record.system!r} given as {system!r}",
                               suggested_fix=f"key each record by its own system ({', '.join(SYSTEMS)})")


def _winner(name: str, records: Mapping[str, CustomerRecord], policy: SyncPolicy) -> CustomerRecord | None:
    holders = [r for r in records.values() if name in CARRIED[r.system] and not is_empty(r.value(name))]
    if not holders:
        return None
    truth = policy.source_of_truth.get(name)
    chosen = [r for r in holders if r.system == truth]
    if chosen:
        return chosen[0]
    return min(holders, key=lambda r: (-r.stamp(name).timestamp(), policy.rank(r.system)))


def _merged_ids(records: Mapping[str, CustomerRecord], policy: SyncPolicy) -> tuple[dict[str, str], list[Conflict]]:
    ids: dict[str, str] = {}
    conflicts: list[Conflict] = []
    ordered = sorted(records.values(), key=lambda r: policy.rank(r.system))
    for key in ID_KEYS:
        owner = records.get(ID_OWNERS[key])
        held = [r for r in ordered if r.ids.get(key)]
        source = owner if owner is not None and owner.ids.get(key) else (held[0] if held else None)
        if source is None:
            continue
        ids[key] = source.ids[key]
        conflicts += [Conflict(f"ids.{key}", r.system, r.ids[key], r.stamp("name"), source.system)
                      for r in held if r.ids[key] != ids[key]]
    return ids, conflicts


def merge(records: Mapping[str, CustomerRecord], policy: SyncPolicy | None = None) -> MergeResult:
    """Merge one customer's records (keyed by system) by ``policy`` (see the module docstring).

    Raises
    ------
    MappingError
        A record keyed by another system than its own, or a winning value a system cannot take
        (an ERP address in a country without an ERPNext name).
    """
    policy = policy or SyncPolicy()
    _check(records)
    values: dict[str, Any] = {}
    stamps: dict[str, datetime] = {}
    winners: dict[str, str] = {}
    conflicts: list[Conflict] = []
    for name in FIELDS:
        win = _winner(name, records, policy)
        if win is None:
            continue
        winners[name], stamps[name] = win.system, win.stamp(name)
        values[name] = win.value(name)
        if name == "email":
            values["email_display"] = win.email_display or win.email
        key = compare_key(name, win.value(name))
        for system in sorted(records, key=policy.rank):
            other = records[system]
            theirs = other.value(name)
            if system != win.system and name in CARRIED[system] and not is_empty(theirs) \
                    and compare_key(name, theirs) != key:
                conflicts.append(Conflict(name, system, theirs, other.stamp(name), win.system))  # type: ignore[arg-type]
    ids, id_conflicts = _merged_ids(records, policy)
    merged = CustomerRecord(system=MERGED, ids=ids, updated_at=stamps, **values)
    patches: dict[str, dict[str, Any]] = {}
    changed: dict[str, tuple[str, ...]] = {}
    for system in sorted(records, key=policy.rank):
        record = records[system]
        fields = tuple(name for name in FIELDS if name in winners and name in CARRIED[system]
                       and compare_key(name, record.value(name)) != compare_key(name, merged.value(name)))
        metadata = {meta: ids[key] for meta, key in STRIPE_METADATA_IDS.items()
                    if system == STRIPE and ids.get(key) and record.ids.get(key) != ids[key]}
        patches[system] = render(merged, fields, system=system, metadata_keys=tuple(metadata), policy=policy)
        changed[system] = fields + tuple(f"ids.{STRIPE_METADATA_IDS[m]}" for m in metadata)
    return MergeResult(record=merged, winners=MappingProxyType(winners), conflicts=tuple(conflicts + id_conflicts),
                       patches=MappingProxyType(patches), changed=MappingProxyType(changed))


def _stripe_address(a: Address) -> dict[str, str]:
    return {"line1": a.line1, "line2": a.line2, "city": a.city, "state": a.region, "postal_code": a.postal_code,
            "country": a.country}


def _erp_address(a: Address, kind: str) -> dict[str, str]:
    return {"address_type": kind, "address_line1": a.line1, "address_line2": a.line2, "city": a.city,
            "state": a.region, "pincode": a.postal_code, "country": erp_country_name(a.country)}


def _clarity_address(a: Address) -> dict[str, str]:
    return {"Street1": a.line1, "Street2": a.line2, "Street3": "", "City": a.city, "RegionCode": a.region,
            "PostalCode": a.postal_code, "CountryCode": a.country}


def _fragment(system: str, name: str, record: CustomerRecord, policy: SyncPolicy) -> dict[str, Any]:
    value: Value = record.value(name)
    text = record.email_display or record.email if name == "email" else value
    if system == STRIPE:
        if isinstance(value, Address):
            if name == "billing_address":
                return {"address": _stripe_address(value)}
            return {"shipping": {"name": record.name or record.email_display or record.email, "address": _stripe_address(value)}}
        return {name: text}
    if system == ERP:
        if isinstance(value, Address):
            return {name: _erp_address(value, "Billing" if name == "billing_address" else "Shipping")}
        own = {"name": "customer_name", "email": "email_id", "phone": "mobile_no", "tax_id": "tax_id"}[name]
        docs = ("customer", "contact") if name in ("email", "phone") else ("customer",)
        return {doc: {own: text} for doc in docs}
    if isinstance(value, Address):
        contact = "billing_contact" if name == "billing_address" else "shipping_contact"
        return {contact: {"Address": _clarity_address(value)}}
    if name in ("name", "tax_id"):
        return {"account": {"Name" if name == "name" else policy.clarity_tax_id_field: text}}
    return {"billing_contact": {"Email1" if name == "email" else "Phone1": text}}


def render(record: CustomerRecord, fields: tuple[str, ...], *, system: str, metadata_keys: tuple[str, ...] = (),
           policy: SyncPolicy | None = None) -> dict[str, Any]:
    """``record``'s ``fields`` (and, for Stripe, the id ``metadata_keys``) in ``system``'s own shape.

    Stripe: ``name``, ``email``, ``phone``, ``address`` {line1, line2, city, state, postal_code, country},
    ``shipping`` {name, address}, ``metadata``. ERPNext: ``customer`` {customer_name, email_id, mobile_no,
    tax_id}, ``contact`` {email_id, mobile_no} (frappe derives these from the primary ``email_ids`` /
    ``phone_nos`` rows: the connector writes them as the primary row), ``billing_address`` /
    ``shipping_address`` (Address doctype fields). Clarity: ``account`` {Name, tax id field},
    ``billing_contact`` {Email1, Phone1, Address{Street1..3, City, RegionCode, PostalCode, CountryCode}},
    ``shipping_contact`` {Address}. Every address key is written, blanks included, so stale lines go.
    """
    policy = policy or SyncPolicy()
    body: dict[str, Any] = {}
    for name in fields:
        if is_empty(record.value(name)):
            continue
        for key, part in _fragment(system, name, record, policy).items():
            if key in _CONTAINERS[system]:
                body.setdefault(key, {}).update(part)
            else:
                body[key] = part
    metadata = {meta: record.ids[STRIPE_METADATA_IDS[meta]] for meta in metadata_keys
                if record.ids.get(STRIPE_METADATA_IDS[meta])}
    if metadata:
        body.setdefault("metadata", {}).update(metadata)
    return body


def fingerprint(system: str, patch: Mapping[str, Any]) -> str:
    """A stable hash of the values a patch writes to ``system`` (key order does not matter)."""
    return patch_fingerprint("cs1", system, patch)


def _patch_fields(system: str, patch: Mapping[str, Any], policy: SyncPolicy) -> tuple[str, ...]:
    sample = CustomerRecord(system=system, name="n", email="e@x.io", phone="+1", tax_id="t",
                            billing_address=Address("l", "c", "US"), shipping_address=Address("l", "c", "US"))
    found = []
    for name in CARRIED[system]:
        parts = _fragment(system, name, sample, policy)
        if any(key in patch and (key not in _CONTAINERS[system] or set(part) & set(patch[key]))
               for key, part in parts.items()):
            found.append(name)
    return tuple(name for name in FIELDS if name in found)


def is_echo(record: CustomerRecord, written: Mapping[str, Any], policy: SyncPolicy | None = None) -> bool:
    """Whether ``record`` (read back from its system) holds exactly the values of the patch ``written``.

    True means the change just seen is the bridge's own write: record nothing, sync nothing back.
    """
    if not written:
        return False
    policy = policy or SyncPolicy()
    metadata = tuple(written.get("metadata", {})) if record.system == STRIPE else ()
    full = render(record, _patch_fields(record.system, written, policy), system=record.system,
                  metadata_keys=metadata, policy=policy)
    projected = {key: ({k: full.get(key, {}).get(k) for k in value} if key in _CONTAINERS[record.system]
                       and isinstance(value, Mapping) else full.get(key)) for key, value in written.items()}
    return fingerprint(record.system, _echo_view(projected)) == fingerprint(record.system, _echo_view(written))


def _echo_view(patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` without Stripe's ``shipping.name``: a label the bridge derives (name, else email), not synced."""
    view = dict(patch)
    if isinstance(view.get("shipping"), Mapping):
        view["shipping"] = {k: v for k, v in view["shipping"].items() if k != "name"}
    return view


def dedupe_keys(record: CustomerRecord) -> list[str]:
    """``email:<key>`` (``mapping.customer.email_dedupe_key``), then ``<id key>:<id>`` per id, sorted.

    Id keys are ``clarity`` (user), ``clarity_account``, ``clarity_key`` (the account's CustomKey),
    ``erp`` and ``stripe``, as in ``mapping.customer.dedupe_keys``: two records sharing a key are one customer.
    """
    return list(_dedupe_keys(email_dedupe_key(record.email) if record.email else "", dict(record.ids)))
