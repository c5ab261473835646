"""``CustomerSyncer``: one customer synced across Clarity, Stripe and ERPNext (the I/O half of issue 14, point 1).

``sync_from(system, id)`` reads the customer in that system, finds its counterparts in the other two, merges
the three records with the ``SyncPolicy`` (``mapping.customer_sync.merge``), creates the customer where it
is missing, applies each non-empty patch, links the ids in the identity map and says what happened (the part
it shares with the product sync, snapshots, restamp, ``quick``, the key lock and the write loop, is
``services.sync_core``).
The rules it keeps:

* **Counterparts**: the identity map first (kind ``customer``; systems ``clarity_account``, ``stripe``,
  ``erp``), then the de-duplication keys (``dedupe_keys``): the ids a record carries (Stripe metadata,
  Clarity CustomKey) and the normalised e-mail. Stripe is looked for first: its metadata names the others.
* **Timestamps**: a Stripe customer has no ``updated``, and Clarity and ERPNext date whole documents. After
  each sync a snapshot of the merged values is kept (in the cursor store, ``customer_sync.<entity>``, a hash
  per field and its time); a field whose value still hashes the same keeps the snapshot's time
  (``restamp``), so only a value that really changed is "newer". A changed Stripe value is dated by the
  read; a Stripe customer seen for the first time by its ``created``.
* **Writes**: only non-empty patches are written (a second sync of a converged customer writes nothing).
  Stripe writes carry the idempotency key ``customer-sync:<system>:<id>:<patch fingerprint>``, plus ``:<write_key>``
  when the caller gives one (a workflow step: its ``run_id:step_id``), so the same values written again later
  (A, then B, then A) are a new write, not an idempotent replay of the first.
* **Conflicts** (a set value that lost) are logged with ids and field names, never values (PII), and returned;
  so is each write (``customer_sync.written``: entity, system, created or updated, the fields).
* ``dry_run``: reads and merges only; nothing is written anywhere, the identity map and snapshots included.
* **Merged ids** (``services.customer_merge``): an id retired by ``customers merge`` (a late ``customer.updated`` of
  the duplicate Stripe customer, a poll of the deactivated Clarity account) is not read and nothing is written:
  the outcome names the survivor (``SyncOutcome.merged_into``); the retired record is never created again nor
  linked. A merge that lands between the sync's look-up of its customer and its lock is seen under the lock: the
  sync starts again (and finds the id retired, or linked to the survivor).
* **Duplicates**: when the source record's system is already linked to another record of the same customer (two
  Stripe customers with one e-mail), nothing is written (``SyncOutcome.duplicate_of``: the linked one, which
  stays); when a look-up by e-mail finds several records in a system, the one linked to this customer is kept,
  else the oldest. Either way an alert ``customer.duplicates`` names the ids and the ``customers merge`` command,
  once per duplicate set (a marker ``customer_duplicates.<system>.<hash of the ids>`` in the cursor store).
* ``quick`` (the workflows' echo skip): when the record read holds exactly the snapshot's values and ids, and
  the customer is linked in all three systems, the change is the bridge's own write coming back (or nothing
  new): the other two are not read and nothing is written (``SyncOutcome.in_step``). A change in another system
  comes with its own event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar

import structlog

from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.customer import email_dedupe_key
from commerce_bridge.mapping.customer_record import (
    CARRIED,
    CLARITY,
    ERP,
    FIELDS,
    STRIPE,
    SYSTEMS,
    CustomerRecord,
    compare_key,
)
from commerce_bridge.mapping.customer_sync import MergeResult, SyncPolicy, dedupe_keys, fingerprint, merge
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.customer_sides import OWN_ID, ClaritySide, ErpSide, Found, StripeSide
from commerce_bridge.services.gateways import ClarityGateway, CursorStore, ErpGateway, StripeGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks
from commerce_bridge.services.sync_core import (
    Action,
    ConflictNote,
    SyncCore,
    SyncKind,
    SyncOutcome,
    SystemChange,
    value_hash,
)

__all__ = ["CREATE_ORDER", "FIND_ORDER", "KIND", "Action", "ConflictNote", "CustomerSyncer", "SyncOutcome",
           "SystemChange"]

log = structlog.get_logger("commerce_bridge.customer_sync")

KIND = "customer"
FIND_ORDER = (STRIPE, CLARITY, ERP)
CREATE_ORDER = (CLARITY, ERP, STRIPE)  # Stripe last: its metadata then names the others


class CustomerSyncer(SyncCore[CustomerRecord, MergeResult]):
    """Syncs one customer at a time (see the module docstring).

    Parameters
    ----------
    clarity, stripe, erp:
        The three ports, built by bootstrap (each HTTP request takes its rate-limit slot).
    identity:
        The identity map. ``snapshots``: where the per-customer snapshots live (a ``CursorStore``).
    policy:
        Which system decides each field; the rest follow the latest change.
    locks:
        Key locks: one sync per customer at a time, across processes (None: no serialisation).
    alert:
        Where the duplicate alerts go (``Alerter.alert``; None: logged only).
    """

    spec: ClassVar[SyncKind] = SyncKind(
        name="customer_sync", kind=KIND, lock="customer.sync", systems=SYSTEMS, create_order=CREATE_ORDER,
        own_id=OWN_ID, key_prefix="customer-sync", fingerprint=fingerprint)
    log: ClassVar[Any] = log
    clarity: ClaritySide
    stripe: StripeSide
    erp: ErpSide

    def __init__(self, *, clarity: ClarityGateway, stripe: StripeGateway, erp: ErpGateway, identity: IdentityMap,
                 snapshots: CursorStore, policy: SyncPolicy | None = None, locks: KeyLocks | None = None,
                 clarity_tz: tzinfo = UTC, erp_tz: tzinfo = UTC, default_region: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 alert: Callable[[Alert], Any] | None = None) -> None:
        self.policy = policy or SyncPolicy()
        self.clarity = ClaritySide(clarity, self.policy, tz=clarity_tz, default_region=default_region)
        self.stripe = StripeSide(stripe, default_region=default_region)
        self.erp = ErpSide(erp, tz=erp_tz, default_region=default_region)
        self.gateways = (clarity, stripe, erp)
        self.identity, self.snapshots, self.locks = identity, snapshots, locks
        self._identity, self._snapshots, self._locks, self._now = identity, snapshots, locks, now
        self.alert = alert

    # reading

    def _read(self, system: str, external_id: str, *, seen: bool) -> Found | None:
        if system == STRIPE:
            return self.stripe.read(external_id, updated_at=self._now() if seen else None)
        return (self.clarity if system == CLARITY else self.erp).read(external_id)

    def _find(self, system: str, known: CustomerRecord, entity_id: str | None, *, dry_run: bool) -> str | None:
        """The counterpart in ``system``: of several (duplicates), the one linked to ``entity_id``, else the
        oldest not linked to another customer; retired ids are never returned."""
        side = self.stripe if system == STRIPE else self.clarity if system == CLARITY else self.erp
        found = [c for c in side.candidates(known) if self._identity.retired(KIND, OWN_ID[system], c) is None]
        if len(found) <= 1:
            return found[0] if found else None
        owners = {c: self._identity.lookup(KIND, OWN_ID[system], c) for c in found}
        kept = next((c for c in found if entity_id and owners[c] == entity_id), None) or next(
            (c for c in found if owners[c] is None), found[0])
        if not dry_run:
            self._duplicates(system, found, kept, entity_id)
        return kept

    def _duplicates(self, system: str, ids: Sequence[str], kept: str, entity_id: str | None) -> None:
        """Alert once per duplicate set (a marker in the cursor store) naming the ids and the merge command."""
        ids = sorted(set(ids))
        marker = f"customer_duplicates.{system}." + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        if self._snapshots.get(marker) is not None:
            return
        commands = [f"commerce-bridge customers merge --system {system} --from {other} --into {kept}"
                    for other in ids if other != kept]
        log.warning("customer_sync.duplicates", entity_id=entity_id, system=system, ids=ids, kept=kept)
        if self.alert is not None:
            self.alert(Alert("customer.duplicates", f"{len(ids)} {system} customers look like one customer: "
                             f"{', '.join(ids)} (the bridge keeps {kept})", Severity.WARNING,
                             {"system": system, "ids": ids, "kept": kept, "entity_id": entity_id,
                              "commands": commands,
                              "fix": "if they are one customer, run the command(s); else give them different "
                                     "e-mails"}, key=marker))
        self._snapshots.set(marker, json.dumps({"ids": ids, "kept": kept, "at": self._now().isoformat()}))

    def _entity(self, system: str, source: Found, *, create: bool) -> str | None:
        """Our entity id: the one an id of the record is linked to, else the one of its e-mail (or its own id);
        without ``create``, None when no id is linked (a dry run writes nothing, not even a new key)."""
        for key in dedupe_keys(source.record):
            kind, _, value = key.partition(":")
            if kind in OWN_ID.values():
                linked = self._identity.lookup(KIND, kind, value)
                if linked is not None:
                    return linked
        if not create:
            return None
        if source.record.email:
            return self._identity.entity_for_key(KIND, email_dedupe_key(source.record.email))
        return self._identity.entity_for_key(KIND, f"{OWN_ID[system]}:{source.external_id}")

    def _hash(self, name: str, value: object) -> str:
        return value_hash(compare_key(name, value))  # type: ignore[arg-type]

    def _stamped_fields(self, record: CustomerRecord) -> Iterable[str]:
        return FIELDS

    def _snapshot_fields(self, result: MergeResult) -> Iterable[str]:
        return [name for name in FIELDS if name in result.winners]

    def _gather(self, system: str, source: Found, links: Mapping[str, str], snapshot: Mapping[str, list[str]],
                entity_id: str | None, *, dry_run: bool) -> dict[str, Found]:
        found = {system: source}
        known = source.record
        for other in FIND_ORDER:
            if other == system:
                continue
            linked = links.get(OWN_ID[other])
            hit = self._read(other, linked, seen=bool(snapshot)) if linked else None
            if hit is None:
                candidate = self._find(other, known, entity_id, dry_run=dry_run)
                hit = self._read(other, candidate, seen=bool(snapshot)) if candidate else None
            if hit is not None:
                found[other] = hit
                known = replace(known, ids={**hit.record.ids, **known.ids})
        return found

    def _merge(self, found: Mapping[str, Found], snapshot: Mapping[str, list[str]]) -> MergeResult:
        return merge({s: self._restamp(f.record, snapshot) for s, f in found.items()}, self.policy)

    # the sync

    def _ids_in_step(self, system: str, source: Found, links: Mapping[str, str]) -> bool:
        ids = source.record.ids
        # Stripe's metadata names the others: a missing id would be patched
        return not any(ids.get(key) != value for key, value in links.items() if key in ids or system == STRIPE)

    def _in_step_fields(self, system: str, record: CustomerRecord, snapshot: Mapping[str, list[str]]) -> Iterable[str]:
        return CARRIED[system]

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False, quick: bool = False,
                  write_key: str | None = None) -> SyncOutcome:
        """Sync the customer ``record_id`` of ``system`` (``clarity``: an Account ID, ``stripe``: ``cus_…``,
        ``erp``: a Customer name) with its counterparts.

        Raises
        ------
        NotFound
            No such customer in ``system``.
        MappingError
            A value one system holds cannot be read (an invalid e-mail, phone or address), naming the field.
        ValidationError
            An id of the customer is already linked to another customer in the identity map.
        TransientError, PermanentError
            From the gateways, as their error tables say.
        """
        if system not in SYSTEMS:
            raise ValidationError(f"unknown system {system!r}", suggested_fix=f"use one of {', '.join(SYSTEMS)}")
        survivor = self._identity.retired(KIND, OWN_ID[system], record_id)
        if survivor is not None:  # merged away: never read, written, created or linked again
            return SyncOutcome(system, record_id, survivor, {}, dry_run=dry_run, merged_into=survivor)
        source = self._read(system, record_id, seen=False)
        if source is None:
            raise NotFound(f"{system} has no customer {record_id}")
        entity_id = self._entity(system, source, create=not dry_run)
        with self._held(None if dry_run else entity_id):
            if not dry_run and entity_id is not None and self._identity.lookup(
                    KIND, OWN_ID[system], source.external_id) not in (None, entity_id):
                # a merge ran between the look-up and the lock: once more, on the survivor (or its retired id)
                return self.sync_from(system, record_id, quick=quick, write_key=write_key)
            links = self._identity.externals(KIND, entity_id) if entity_id else {}
            own = links.get(OWN_ID[system])
            if own is not None and own != source.external_id:  # a second record of this customer in its system
                if not dry_run:
                    self._duplicates(system, [own, source.external_id], own, entity_id)
                return SyncOutcome(system, record_id, entity_id, {}, dry_run=dry_run, duplicate_of=own)
            snapshot = self._snapshot(entity_id)
            if system == STRIPE and snapshot:  # a customer seen before: a changed value is dated by this read
                now = self._now()
                source = replace(source, record=replace(source.record, updated_at={
                    name: now for name in source.record.updated_at}))
            return self._sync_held(system, record_id, entity_id, source, links, snapshot, dry_run=dry_run, quick=quick,
                                   write_key=write_key)

    def _create_ids(self, result: MergeResult, found: Mapping[str, Found],
                    created: Mapping[str, str]) -> dict[str, str]:
        return {**result.record.ids, **{OWN_ID[s]: external_id for s, external_id in created.items()}}

    def _reread(self, system: str, external_id: str) -> Found | None:
        return self._read(system, external_id, seen=True)

    def _create(self, system: str, record: CustomerRecord, entity_id: str) -> str:
        if system == CLARITY:
            return self.clarity.create(record, key=f"cb-{entity_id}")
        if system == ERP:
            return self.erp.create(record, key=entity_id)
        return self.stripe.create(record, key=f"customer-sync:stripe:create:{entity_id}")
