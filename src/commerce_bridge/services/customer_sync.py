"""``CustomerSyncer``: one customer synced across Clarity, Stripe and ERPNext (the I/O half of issue 14, point 1).

``sync_from(system, id)`` reads the customer in that system, finds its counterparts in the other two, merges
the three records with the ``SyncPolicy`` (``mapping.customer_sync.merge``), creates the customer where it
is missing, applies each non-empty patch, links the ids in the identity map and says what happened.
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
* ``quick`` (the workflows' echo skip): when the record read holds exactly the snapshot's values and ids, and
  the customer is linked in all three systems, the change is the bridge's own write coming back (or nothing
  new): the other two are not read and nothing is written (``SyncOutcome.in_step``). A change in another system
  comes with its own event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Literal

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
from commerce_bridge.services.customer_sides import OWN_ID, ClaritySide, ErpSide, Found, StripeSide
from commerce_bridge.services.gateways import ClarityGateway, CursorStore, ErpGateway, StripeGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks

log = structlog.get_logger("commerce_bridge.customer_sync")

KIND = "customer"
Action = Literal["created", "updated", "unchanged"]
FIND_ORDER = (STRIPE, CLARITY, ERP)
CREATE_ORDER = (CLARITY, ERP, STRIPE)  # Stripe last: its metadata then names the others


@dataclass(frozen=True, slots=True)
class SystemChange:
    """What the sync did (or, in a dry run, would do) to one system's customer."""

    system: str
    action: Action
    external_id: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConflictNote:
    """A losing value, without the value: ``system`` held another ``field`` than ``winner``."""

    field: str
    system: str
    winner: str


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """The result of one ``sync_from``."""

    source: str
    source_id: str
    entity_id: str | None
    changes: Mapping[str, SystemChange]
    conflicts: tuple[ConflictNote, ...] = ()
    dry_run: bool = False
    patches: Mapping[str, dict[str, object]] = field(default_factory=dict)
    in_step: bool = False
    """``quick``: the record read matched the snapshot, so the others were not read (nothing to sync)."""

    @property
    def result(self) -> Action:
        """``created`` if a system got the customer, else ``updated`` if one was written, else ``unchanged``."""
        actions = {c.action for c in self.changes.values()}
        return "created" if "created" in actions else "updated" if "updated" in actions else "unchanged"


def _hash(name: str, value: object) -> str:
    key = compare_key(name, value)  # type: ignore[arg-type]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]


class CustomerSyncer:
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
    """

    def __init__(self, *, clarity: ClarityGateway, stripe: StripeGateway, erp: ErpGateway, identity: IdentityMap,
                 snapshots: CursorStore, policy: SyncPolicy | None = None, locks: KeyLocks | None = None,
                 clarity_tz: tzinfo = UTC, erp_tz: tzinfo = UTC, default_region: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.policy = policy or SyncPolicy()
        self.clarity = ClaritySide(clarity, self.policy, tz=clarity_tz, default_region=default_region)
        self.stripe = StripeSide(stripe, default_region=default_region)
        self.erp = ErpSide(erp, tz=erp_tz, default_region=default_region)
        self._identity, self._snapshots, self._locks, self._now = identity, snapshots, locks, now

    # reading

    def _read(self, system: str, external_id: str, *, seen: bool) -> Found | None:
        if system == STRIPE:
            return self.stripe.read(external_id, updated_at=self._now() if seen else None)
        return (self.clarity if system == CLARITY else self.erp).read(external_id)

    def _find(self, system: str, known: CustomerRecord) -> str | None:
        if system == STRIPE:
            return self.stripe.find(known)
        return self.clarity.find(known) if system == CLARITY else self.erp.find(known)

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

    def _snapshot(self, entity_id: str | None) -> dict[str, list[str]]:
        raw = self._snapshots.get(f"customer_sync.{entity_id}") if entity_id else None
        return dict(json.loads(raw).get("f", {})) if raw else {}

    def _restamp(self, record: CustomerRecord, snapshot: Mapping[str, list[str]]) -> CustomerRecord:
        stamps = dict(record.updated_at)
        for name in FIELDS:
            kept = snapshot.get(name)
            if kept and name in stamps and _hash(name, record.value(name)) == kept[0]:
                stamps[name] = datetime.fromisoformat(kept[1])
        return replace(record, updated_at=stamps)

    def _gather(self, system: str, source: Found, links: Mapping[str, str],
                snapshot: Mapping[str, list[str]]) -> dict[str, Found]:
        found = {system: source}
        known = source.record
        for other in FIND_ORDER:
            if other == system:
                continue
            linked = links.get(OWN_ID[other])
            hit = self._read(other, linked, seen=bool(snapshot)) if linked else None
            if hit is None:
                candidate = self._find(other, known)
                hit = self._read(other, candidate, seen=bool(snapshot)) if candidate else None
            if hit is not None:
                found[other] = hit
                known = replace(known, ids={**hit.record.ids, **known.ids})
        return found

    def _merge(self, found: Mapping[str, Found], snapshot: Mapping[str, list[str]]) -> MergeResult:
        return merge({s: self._restamp(f.record, snapshot) for s, f in found.items()}, self.policy)

    @contextmanager
    def _held(self, entity_id: str | None) -> Iterator[None]:
        with self._locks.hold("customer.sync", entity_id) if self._locks and entity_id else nullcontext():
            yield

    # the sync

    def _in_step(self, system: str, source: Found, links: Mapping[str, str],
                 snapshot: Mapping[str, list[str]]) -> bool:
        """Whether ``source`` holds exactly the snapshot's values and the linked ids (see ``quick``)."""
        if not snapshot or any(OWN_ID[s] not in links for s in SYSTEMS):
            return False
        if links[OWN_ID[system]] != source.external_id:
            return False
        ids = source.record.ids
        if any(ids.get(key) != value for key, value in links.items() if key in ids or system == STRIPE):
            return False  # Stripe's metadata names the others: a missing id would be patched
        for name in CARRIED[system]:
            value, kept = source.record.value(name), snapshot.get(name)
            if (kept[0] if kept else None) != (_hash(name, value) if value not in (None, "") else None):
                return False
        return True

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
        source = self._read(system, record_id, seen=False)
        if source is None:
            raise NotFound(f"{system} has no customer {record_id}")
        entity_id = self._entity(system, source, create=not dry_run)
        with self._held(None if dry_run else entity_id):
            links = self._identity.externals(KIND, entity_id) if entity_id else {}
            snapshot = self._snapshot(entity_id)
            if system == STRIPE and snapshot:  # a customer seen before: a changed value is dated by this read
                now = self._now()
                source = replace(source, record=replace(source.record, updated_at={
                    name: now for name in source.record.updated_at}))
            if quick and not dry_run and entity_id is not None and self._in_step(system, source, links, snapshot):
                changes = {s: SystemChange(s, "unchanged", links[OWN_ID[s]]) for s in SYSTEMS}
                return SyncOutcome(system, record_id, entity_id, changes, in_step=True)
            found = self._gather(system, source, links, snapshot)
            result = self._merge(found, snapshot)
            if dry_run or entity_id is None:
                return self._outcome(system, record_id, entity_id, found, result, {}, dry_run=True)
            result, created = self._write(entity_id, found, result, snapshot, write_key)
        outcome = self._outcome(system, record_id, entity_id, found, result, created)
        for c in outcome.conflicts:
            log.warning("customer_sync.conflict", entity_id=entity_id, source=system, source_id=record_id,
                        field=c.field, system=c.system, winner=c.winner)
        return outcome

    def _write(self, entity_id: str, found: dict[str, Found], result: MergeResult,
               snapshot: Mapping[str, list[str]], write_key: str | None = None) -> tuple[MergeResult, dict[str, str]]:
        """Create the missing customers, apply the patches, link the ids, keep the snapshot."""
        created: dict[str, str] = {}
        for missing in (s for s in CREATE_ORDER if s not in found):
            record = replace(result.record, ids={**result.record.ids, **created})
            created[OWN_ID[missing]] = self._create(missing, record, entity_id)
            log.info("customer_sync.written", entity_id=entity_id, system=missing, action="created")
            self._identity.link(KIND, entity_id, OWN_ID[missing], created[OWN_ID[missing]])  # found on a retry
            hit = self._read(missing, created[OWN_ID[missing]], seen=True)
            if hit is None:
                raise NotFound(f"{missing} customer {created[OWN_ID[missing]]} not readable after its create")
            found[missing] = hit
        if created:
            result = self._merge(found, snapshot)
        for target, patch in result.patches.items():
            if patch:
                self._apply(target, found[target], patch, write_key)
                log.info("customer_sync.written", entity_id=entity_id, system=target, action="updated",
                         fields=list(result.changed.get(target, ())))
        for target, hit in found.items():
            self._identity.link(KIND, entity_id, OWN_ID[target], hit.external_id)
        self._save_snapshot(entity_id, result, snapshot)
        return result, created

    def _create(self, system: str, record: CustomerRecord, entity_id: str) -> str:
        if system == CLARITY:
            return self.clarity.create(record, key=f"cb-{entity_id}")
        if system == ERP:
            return self.erp.create(record, key=entity_id)
        return self.stripe.create(record, key=f"customer-sync:stripe:create:{entity_id}")

    def _apply(self, system: str, found: Found, patch: dict[str, object], write_key: str | None = None) -> None:
        if system == STRIPE:
            key = f"customer-sync:stripe:{found.external_id}:{fingerprint(system, patch)}" + (
                f":{write_key}" if write_key else "")
            self.stripe.apply(found, patch, key=key)
        elif system == CLARITY:
            self.clarity.apply(found, patch)
        else:
            self.erp.apply(found, patch)

    def _save_snapshot(self, entity_id: str, result: MergeResult, before: Mapping[str, list[str]]) -> None:
        fields = {name: [_hash(name, result.record.value(name)), result.record.stamp(name).isoformat()]
                  for name in FIELDS if name in result.winners}
        kept = {name: before[name] if name in before and before[name][0] == value[0] else value
                for name, value in fields.items()}
        if kept != dict(before):
            self._snapshots.set(f"customer_sync.{entity_id}", json.dumps({"v": 1, "f": kept}, sort_keys=True))

    @staticmethod
    def _outcome(system: str, record_id: str, entity_id: str | None, found: Mapping[str, Found],
                 result: MergeResult, created: Mapping[str, str], *, dry_run: bool = False) -> SyncOutcome:
        changes: dict[str, SystemChange] = {}
        for target in SYSTEMS:
            hit = found.get(target)
            if hit is None:  # dry run: it would be created
                changes[target] = SystemChange(target, "created", "", tuple(result.winners))
            elif OWN_ID[target] in created:
                changes[target] = SystemChange(target, "created", hit.external_id, tuple(result.winners))
            elif result.patches.get(target):
                changes[target] = SystemChange(target, "updated", hit.external_id, result.changed.get(target, ()))
            else:
                changes[target] = SystemChange(target, "unchanged", hit.external_id)
        conflicts = tuple(ConflictNote(c.field, c.system, c.winner) for c in result.conflicts)
        patches = {s: p for s, p in result.patches.items() if p} if dry_run else {}
        return SyncOutcome(system, record_id, entity_id, changes, conflicts, dry_run, patches)
