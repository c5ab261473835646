"""The core the customer and product syncs share (``services.customer_sync``, ``services.product_sync``).

A sync of one kind (``SyncCore`` subclass) gives its per-kind parts (how to read, create and patch a record in each
system, which fields a snapshot holds, how a value hashes); the core keeps, once, the rules both follow:

* **Snapshots**: after each sync the merged values are kept in the cursor store under ``<name>.<entity id>``
  (``{"v": 1, "f": {field: [hash, time]}}``); a field whose value hashes as before keeps its old entry, and nothing
  is written when no entry changed.
* **Restamp**: a field whose value still hashes as in the snapshot takes the snapshot's time, so only a value that
  really changed is "newer"; with ``after_snapshot`` set, a value that differs is dated no earlier than that much
  after the snapshot's time.
* **Key lock**: one sync per entity at a time (``lock``, held on the entity id; none in a dry run).
* **``quick``** (the echo skip): in step when the entity is linked in every system, the record read is the linked
  one, its ids agree (per kind) and each field compared holds exactly the snapshot's value (empty = absent).
* **Writes**: the missing systems are created in ``create_order`` (each linked at once, so a retry finds it, and
  read back), the merge is run again when one was created, each non-empty patch is applied, every id is linked,
  then the snapshot is saved. Each write is logged ``<name>.written`` (entity, system, created or updated, the
  fields); each conflict ``<name>.conflict`` with ids and field names only, never values.
* ``SyncOutcome``: per system ``created`` (a dry run: would be), ``updated`` or ``unchanged``; a dry run also
  carries the non-empty patches.

The sides of both syncs (``services.customer_sides``, ``services.product_sides``) share ``Found`` (a record as
read), ``or_none`` (a read that finds nothing is None) and ``search_quote`` (a Stripe search literal).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from commerce_bridge.errors import NotFound
from commerce_bridge.mapping.sync_merge import MergeResult
from commerce_bridge.services.gateways import CursorStore
from commerce_bridge.services.ports import IdentityMap, KeyLocks

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class SystemChange:
    """What the sync did (or, in a dry run, would do) to one system's record."""

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
    merged_into: str | None = None
    """The record's id was retired by a merge into this entity: nothing was read or written."""
    duplicate_of: str | None = None
    """The entity is linked to this other record of the source's system: nothing written (alerted)."""

    @property
    def result(self) -> Action:
        """``created`` if a system got the record, else ``updated`` if one was written, else ``unchanged``."""
        actions = {c.action for c in self.changes.values()}
        return "created" if "created" in actions else "updated" if "updated" in actions else "unchanged"


class Syncer(Protocol):
    """What a sync step needs of a syncer (``CustomerSyncer``, ``ProductSyncer``)."""

    def sync_from(self, system: str, record_id: str, *, dry_run: bool = False, quick: bool = False,
                  write_key: str | None = None) -> SyncOutcome:
        """Sync the record ``record_id`` of ``system`` with its counterparts."""
        ...


class SyncRecord(Protocol):
    """What the core reads of a record (``CustomerRecord``, ``ProductRecord``: frozen dataclasses)."""

    @property
    def ids(self) -> Mapping[str, str]: ...

    @property
    def updated_at(self) -> Mapping[str, datetime]: ...

    def value(self, name: str) -> Any: ...

    def stamp(self, name: str) -> datetime: ...


R = TypeVar("R", bound=SyncRecord)


@dataclass(frozen=True)  # no slots: Python 3.11 cannot build a slotted generic through its alias
class Found(Generic[R]):
    """One system's record as read: its id, its record and the documents a patch is applied to."""

    system: str
    external_id: str
    record: R
    docs: Mapping[str, Any] = field(default_factory=dict)


def or_none(read: Callable[[], Found[R]]) -> Found[R] | None:
    """``read()``, or None when it raises ``NotFound``."""
    try:
        return read()
    except NotFound:
        return None


M = TypeVar("M", bound=MergeResult[Any, Any])


@dataclass(frozen=True, slots=True)
class SyncKind:
    """What names a kind of sync (see the module docstring)."""

    name: str
    """``customer_sync``: the snapshots' key prefix and the log events' prefix."""
    kind: str
    """The identity map's kind."""
    lock: str
    """The key lock's name."""
    systems: tuple[str, ...]
    create_order: tuple[str, ...]
    own_id: Mapping[str, str]
    """System -> the identity map's system of its own id."""
    key_prefix: str
    """``customer-sync``: the Stripe idempotency keys' prefix."""
    fingerprint: Callable[[str, Mapping[str, Any]], str]
    """``(system, patch)`` -> the patch's fingerprint (``mapping.<kind>_sync.fingerprint``)."""
    after_snapshot: timedelta | None = None
    """Restamp: a changed value is dated no earlier than this after the snapshot's time (None: not moved)."""


def value_hash(value: object) -> str:
    """The snapshot's hash of a value (16 hex digits of the SHA-256 of its JSON)."""
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


def outcome(system: str, record_id: str, entity_id: str | None, systems: Iterable[str],
            found: Mapping[str, Found[Any]], result: MergeResult[Any, Any], created: Iterable[str], *,
            dry_run: bool = False) -> SyncOutcome:
    """The ``SyncOutcome`` of a merge (``created``: the systems written a new record)."""
    made = set(created)
    changes: dict[str, SystemChange] = {}
    for target in systems:
        hit = found.get(target)
        if hit is None:  # dry run: it would be created
            changes[target] = SystemChange(target, "created", "", tuple(result.winners))
        elif target in made:
            changes[target] = SystemChange(target, "created", hit.external_id, tuple(result.winners))
        elif result.patches.get(target):
            changes[target] = SystemChange(target, "updated", hit.external_id, result.changed.get(target, ()))
        else:
            changes[target] = SystemChange(target, "unchanged", hit.external_id)
    conflicts = tuple(ConflictNote(c.field, c.system, c.winner) for c in result.conflicts)
    patches = {s: p for s, p in result.patches.items() if p} if dry_run else {}
    return SyncOutcome(system, record_id, entity_id, changes, conflicts, dry_run, patches)


class Side(Protocol[R]):
    """A system's side of a sync, as the core writes through it (``services.customer_sides``…)."""

    @property
    def system(self) -> str: ...

    def apply(self, found: Found[R], patch: Mapping[str, Any]) -> None: ...


class KeyedSide(Protocol[R]):
    """Stripe's side: its writes carry an idempotency key."""

    @property
    def system(self) -> str: ...

    def apply(self, found: Found[R], patch: Mapping[str, Any], *, key: str) -> None: ...


class SyncCore(Generic[R, M]):
    """The shared half of a syncer (see the module docstring); a subclass sets ``spec`` and ``log`` (its logger),
    the sides ``clarity``, ``stripe``, ``erp``, the attributes ``_identity``, ``_snapshots``, ``_locks`` and the
    per-kind methods below."""

    spec: ClassVar[SyncKind]
    log: ClassVar[Any]
    clarity: Side[R]
    stripe: KeyedSide[R]
    erp: Side[R]

    _identity: IdentityMap
    _snapshots: CursorStore
    _locks: KeyLocks | None

    # the per-kind parts

    def _hash(self, name: str, value: object) -> str:
        return value_hash(value)

    def _stamped_fields(self, record: R) -> Iterable[str]:
        """The fields ``_restamp`` dates from the snapshot."""
        raise NotImplementedError

    def _snapshot_fields(self, result: M) -> Iterable[str]:
        """The fields the snapshot keeps."""
        raise NotImplementedError

    def _ids_in_step(self, system: str, source: Found[R], links: Mapping[str, str]) -> bool:
        """Whether the ids ``source`` carries agree with the links (``quick``)."""
        raise NotImplementedError

    def _in_step_fields(self, system: str, record: R, snapshot: Mapping[str, list[str]]) -> Iterable[str]:
        """The fields ``quick`` compares with the snapshot."""
        raise NotImplementedError

    def _merge(self, found: Mapping[str, Found[R]], snapshot: Mapping[str, list[str]]) -> M:
        raise NotImplementedError

    def _create(self, system: str, record: R, entity_id: str) -> str:
        raise NotImplementedError

    def _create_ids(self, result: M, found: Mapping[str, Found[R]], created: Mapping[str, str]) -> dict[str, str]:
        """The ids a record created now carries (``created``: system -> id of those created so far)."""
        raise NotImplementedError

    def _reread(self, system: str, external_id: str) -> Found[R] | None:
        """A record just created, read back."""
        raise NotImplementedError

    def _patch_order(self, result: M) -> Iterable[str]:
        return tuple(result.patches)

    def _apply(self, system: str, found: Found[R], patch: dict[str, object], write_key: str | None) -> None:
        """Write ``patch``; on Stripe with the key ``<key_prefix>:stripe:<id>:<patch fingerprint>`` (plus
        ``:<write_key>``: the same values written again later are a new write, not a replay of the first)."""
        if system == self.stripe.system:
            key = f"{self.spec.key_prefix}:stripe:{found.external_id}:{self.spec.fingerprint(system, patch)}" + (
                f":{write_key}" if write_key else "")
            self.stripe.apply(found, patch, key=key)
        elif system == self.clarity.system:
            self.clarity.apply(found, patch)
        else:
            self.erp.apply(found, patch)

    # snapshots

    def _snapshot(self, entity_id: str | None) -> dict[str, list[str]]:
        raw = self._snapshots.get(f"{self.spec.name}.{entity_id}") if entity_id else None
        return dict(json.loads(raw).get("f", {})) if raw else {}

    def _restamp(self, record: R, snapshot: Mapping[str, list[str]]) -> R:
        stamps = dict(record.updated_at)
        for name in self._stamped_fields(record):
            kept = snapshot.get(name)
            if not kept or name not in stamps:
                continue
            if self._hash(name, record.value(name)) == kept[0]:
                stamps[name] = datetime.fromisoformat(kept[1])
            elif self.spec.after_snapshot is not None:  # changed since the last sync brought every system to it
                stamps[name] = max(stamps[name], datetime.fromisoformat(kept[1]) + self.spec.after_snapshot)
        return replace(record, updated_at=stamps)  # type: ignore[type-var]

    def _save_snapshot(self, entity_id: str, result: M, before: Mapping[str, list[str]]) -> None:
        fields = {name: [self._hash(name, result.record.value(name)), result.record.stamp(name).isoformat()]
                  for name in self._snapshot_fields(result)}
        kept = {name: before[name] if name in before and before[name][0] == value[0] else value
                for name, value in fields.items()}
        if kept != dict(before):
            self._snapshots.set(f"{self.spec.name}.{entity_id}", json.dumps({"v": 1, "f": kept}, sort_keys=True))

    # the sync

    @contextmanager
    def _held(self, entity_id: str | None) -> Iterator[None]:
        with self._locks.hold(self.spec.lock, entity_id) if self._locks and entity_id else nullcontext():
            yield

    def _in_step(self, system: str, source: Found[R], links: Mapping[str, str],
                 snapshot: Mapping[str, list[str]]) -> bool:
        """Whether ``source`` holds exactly the snapshot's values and the linked ids (``quick``)."""
        if not snapshot or any(self.spec.own_id[s] not in links for s in self.spec.systems):
            return False
        if links[self.spec.own_id[system]] != source.external_id:
            return False
        if not self._ids_in_step(system, source, links):
            return False
        for name in self._in_step_fields(system, source.record, snapshot):
            value, kept = source.record.value(name), snapshot.get(name)
            if (kept[0] if kept else None) != (self._hash(name, value) if value not in (None, "") else None):
                return False
        return True

    def _in_step_outcome(self, system: str, record_id: str, entity_id: str, links: Mapping[str, str]) -> SyncOutcome:
        changes = {s: SystemChange(s, "unchanged", links[self.spec.own_id[s]]) for s in self.spec.systems}
        return SyncOutcome(system, record_id, entity_id, changes, in_step=True)

    def _gather(self, system: str, source: Found[R], links: Mapping[str, str], snapshot: Mapping[str, list[str]],
                entity_id: str | None, *, dry_run: bool) -> dict[str, Found[R]]:
        """``source`` and its counterparts found in the other systems."""
        raise NotImplementedError

    def _sync_held(self, system: str, record_id: str, entity_id: str | None, source: Found[R],
                   links: Mapping[str, str], snapshot: Mapping[str, list[str]], *, dry_run: bool, quick: bool,
                   write_key: str | None) -> SyncOutcome:
        """Under the entity's lock: the ``quick`` check, then find the counterparts, merge and (unless a dry run)
        write."""
        if quick and not dry_run and entity_id is not None and self._in_step(system, source, links, snapshot):
            return self._in_step_outcome(system, record_id, entity_id, links)
        found = self._gather(system, source, links, snapshot, entity_id, dry_run=dry_run)
        result = self._merge(found, snapshot)
        if dry_run or entity_id is None:
            return outcome(system, record_id, entity_id, self.spec.systems, found, result, (), dry_run=True)
        result, created = self._write(entity_id, found, result, snapshot, write_key)
        return self._finish(system, record_id, entity_id, found, result, created)

    def _finish(self, system: str, record_id: str, entity_id: str, found: Mapping[str, Found[R]], result: M,
                created: Mapping[str, str]) -> SyncOutcome:
        """The outcome of a sync that wrote; its conflicts logged (ids and field names only)."""
        done = outcome(system, record_id, entity_id, self.spec.systems, found, result, created)
        for c in done.conflicts:
            self.log.warning(f"{self.spec.name}.conflict", entity_id=entity_id, source=system, source_id=record_id,
                             field=c.field, system=c.system, winner=c.winner)
        return done

    def _write(self, entity_id: str, found: dict[str, Found[R]], result: M, snapshot: Mapping[str, list[str]],
               write_key: str | None) -> tuple[M, dict[str, str]]:
        """Create the missing records, apply the patches, link the ids, keep the snapshot."""
        created: dict[str, str] = {}
        for missing in (s for s in self.spec.create_order if s not in found):
            record = replace(result.record, ids=self._create_ids(result, found, created))
            created[missing] = self._create(missing, record, entity_id)
            self.log.info(f"{self.spec.name}.written", entity_id=entity_id, system=missing, action="created")
            # linked at once: a retry finds it
            self._identity.link(self.spec.kind, entity_id, self.spec.own_id[missing], created[missing])
            hit = self._reread(missing, created[missing])
            if hit is None:
                raise NotFound(f"{missing} {self.spec.kind} {created[missing]} not readable after its create")
            found[missing] = hit
        if created:
            result = self._merge(found, snapshot)
        for target in self._patch_order(result):
            patch = result.patches.get(target)
            if patch:
                self._apply(target, found[target], patch, write_key)
                self.log.info(f"{self.spec.name}.written", entity_id=entity_id, system=target, action="updated",
                              fields=list(result.changed.get(target, ())))
        for target, hit in found.items():
            self._identity.link(self.spec.kind, entity_id, self.spec.own_id[target], hit.external_id)
        self._save_snapshot(entity_id, result, snapshot)
        return result, created


def search_quote(value: str) -> str:
    """``value`` as a quoted string of Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
