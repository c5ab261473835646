"""The identity map (one link per entity and system, de-duplication keys) and our write fingerprints.

Merges (issue 14, point 2): ``merge(kind, loser, survivor)`` moves, in one transaction, every link and
de-duplication key of ``loser`` to ``survivor``. Where both are linked in one system the survivor keeps its link
and the loser's external id is **retired** (``identity_retired``: recorded, never deleted), so that ``lookup`` of
that id still finds the survivor; ids retired into ``loser`` by an earlier merge now point at ``survivor``; the
cursor rows named by the caller (the loser's customer-sync snapshot) are dropped. Afterwards nothing names
``loser``: no link, key, retired row or snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, insert, select, update

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ports import MergedIdentity
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.raw import RawSql
from commerce_bridge.store.tables import (
    identity_keys,
    identity_links,
    identity_retired,
    poll_cursors,
    write_fingerprints,
)

_ENTITY_FOR_KEY = "SELECT entity_id FROM identity_keys WHERE entity_kind = :kind AND dedupe_key = :key"
_INSERT_KEY = ("INSERT INTO identity_keys (entity_kind, dedupe_key, entity_id, created_at) "
               "VALUES (:kind, :key, :entity_id, :at) ON CONFLICT (entity_kind, dedupe_key) DO NOTHING")
_LINKS_OF_EITHER = ("SELECT entity_id, external_id FROM identity_links WHERE entity_kind = :kind AND system = :system "
                    "AND (entity_id = :entity_id OR external_id = :external_id)")
_INSERT_LINK = ("INSERT INTO identity_links (entity_kind, entity_id, system, external_id, created_at) "
                "VALUES (:kind, :entity_id, :system, :external_id, :at) ON CONFLICT DO NOTHING")
_LOOKUP = ("SELECT entity_id FROM identity_links WHERE entity_kind = :kind AND system = :system "
           "AND external_id = :external_id")
_RETIRED = ("SELECT entity_id FROM identity_retired WHERE entity_kind = :kind AND system = :system "
            "AND external_id = :external_id")

_EXTERNAL = ("SELECT external_id FROM identity_links WHERE entity_kind = :kind AND entity_id = :entity_id "
             "AND system = :system")
_EXTERNALS = "SELECT system, external_id FROM identity_links WHERE entity_kind = :kind AND entity_id = :entity_id"

_CLI_SYSTEM = {"clarity_account": "clarity"}
"""Identity-map system -> the ``customers merge --system`` name, where they differ."""


def _merge_fix(kind: str, system: str, external_id: str, linked: str, *, same_entity: bool) -> str:
    if kind != "customer":
        return "merge the two records or unlink the wrong one, then replay"
    cli = _CLI_SYSTEM.get(system, system)
    if same_entity:  # the customer has another record in this system: a duplicate
        command = f"commerce-bridge customers merge --system {cli} --from {external_id} --into {linked}"
    else:  # the record belongs to another customer: two of ours may be one
        command = f"commerce-bridge customers merge --system {cli} --from <its id> --into <the other's id>"
    return f"if they are the same customer, merge them: {command} (or unlink the wrong one), then replay"


class SqlIdentityMap:
    """Links our entity ids to each system's ids; finds entities by a de-duplication key.

    Several of these run for every order: they are SQL text on the driver connection (``store.raw``).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = RawSql(engine)

    def entity_for_key(self, kind: str, dedupe_key: str) -> str:
        """The entity with this de-duplication key (e.g. a normalised e-mail), created if new.

        Read first: a known key (the common case: a returning customer, a replayed step) costs no write.
        """
        key = {"kind": kind, "key": dedupe_key}
        with self._sql.read() as cur:
            found = cur.execute(_ENTITY_FOR_KEY, key).one()
        if found is not None:
            return str(found)
        with self._sql.write() as cur:
            cur.execute(_INSERT_KEY, {**key, "entity_id": uuid.uuid4().hex, "at": self._sql.now()})
            return str(cur.execute(_ENTITY_FOR_KEY, key).one())

    def link(self, kind: str, entity_id: str, system: str, external_id: str) -> None:
        """Link ``entity_id`` to ``external_id`` in ``system`` (repeating the same link is harmless).

        Raises ValidationError when either side is already linked to something else. Read first: a link
        that exists already (a replay, a second order of one customer) costs no write.
        """
        params = {"kind": kind, "entity_id": entity_id, "system": system, "external_id": external_id}
        with self._sql.read() as cur:
            rows = cur.execute(_LINKS_OF_EITHER, params).all()
        if not rows:
            with self._sql.write() as cur:
                cur.execute(_INSERT_LINK, {**params, "at": self._sql.now()})
                rows = cur.execute(_LINKS_OF_EITHER, params).all()
        for ent, ext in rows:
            if (ent, ext) != (entity_id, external_id):
                raise ValidationError(
                    f"{kind} {entity_id} cannot be linked to {system} {external_id}: "
                    f"{system} {ext} is already linked to {kind} {ent}",
                    suggested_fix=_merge_fix(kind, system, external_id, ext, same_entity=ent == entity_id),
                    details={"system": system, "external_id": external_id, "linked": ext},
                )

    def lookup(self, kind: str, system: str, external_id: str) -> str | None:
        """Our entity id for a system's id; for an id retired by a merge, the surviving entity's."""
        params = {"kind": kind, "system": system, "external_id": external_id}
        with self._sql.read() as cur:
            found = cur.execute(_LOOKUP, params).one()
            if found is None:  # a miss (a new customer) costs a second read; a hit, none
                found = cur.execute(_RETIRED, params).one()
        return None if found is None else str(found)

    def retired(self, kind: str, system: str, external_id: str) -> str | None:
        """The surviving entity when ``external_id`` was retired by a merge, else None."""
        with self._sql.read() as cur:
            found = cur.execute(_RETIRED, {"kind": kind, "system": system, "external_id": external_id}).one()
        return None if found is None else str(found)

    def merge(self, kind: str, loser: str | None, survivor: str, *, unlinked: Mapping[str, str] | None = None,
              drop_cursors: Sequence[str] = (), dry_run: bool = False) -> MergedIdentity:
        """Move every link and key of ``loser`` to ``survivor`` in one transaction (see the module docstring).

        Parameters
        ----------
        kind:
            The entity kind (``customer``).
        loser, survivor:
            Our entity ids; ``loser`` has nothing left afterwards (None: no entity, only ``unlinked``).
        unlinked:
            System -> an external id linked to no entity (a duplicate the sync never linked): retired into
            ``survivor`` too.
        drop_cursors:
            Cursor-store rows to delete in the same transaction (the loser's ``customer_sync.<entity>``).
        dry_run:
            Compute what would move and roll back: nothing is written.

        Returns
        -------
        MergedIdentity
            Per system what moved, what was retired and what the survivor kept.

        Raises
        ------
        ValidationError
            ``loser`` and ``survivor`` are the same entity, or an ``unlinked`` id is linked (or retired) already.
        """
        if loser == survivor:
            raise ValidationError(f"{kind} {loser} cannot be merged into itself",
                                  suggested_fix="nothing to do: the two ids are already one customer")
        links, retired, keys = identity_links.c, identity_retired.c, identity_keys.c
        now = datetime.now(UTC)
        with translate_db_errors(), self._engine.connect() as conn, conn.begin() as tx:
            def of(entity: str) -> dict[str, str]:
                rows = conn.execute(select(links.system, links.external_id).where(
                    links.entity_kind == kind, links.entity_id == entity).order_by(links.system)).all()
                return {str(system): str(ext) for system, ext in rows}

            losing, kept = of(loser) if loser else {}, of(survivor)
            moved = {s: e for s, e in losing.items() if s not in kept}
            gone = {s: e for s, e in losing.items() if s in kept}
            for system, ext in (unlinked or {}).items():
                taken = [conn.execute(select(table.c.entity_id).where(
                    table.c.entity_kind == kind, table.c.system == system, table.c.external_id == ext)).first()
                    for table in (identity_links, identity_retired)]
                if any(taken):
                    raise ValidationError(f"{system} {ext} is linked or retired already",
                                          suggested_fix="merge by the entity it is linked to")
                gone[system] = ext
            for system, ext in gone.items():
                conn.execute(delete(identity_links).where(links.entity_kind == kind, links.system == system,
                                                          links.external_id == ext))
                conn.execute(insert(identity_retired).values(entity_kind=kind, system=system, external_id=ext,
                                                             entity_id=survivor, merged_entity_id=loser or "",
                                                             retired_at=now))
            if moved and loser:
                conn.execute(update(identity_links).where(links.entity_kind == kind, links.entity_id == loser)
                             .values(entity_id=survivor))
            n_keys = rehomed = 0
            if loser:
                n_keys = conn.execute(update(identity_keys).where(keys.entity_kind == kind, keys.entity_id == loser)
                                      .values(entity_id=survivor)).rowcount
                rehomed = conn.execute(update(identity_retired).where(
                    retired.entity_kind == kind, retired.entity_id == loser).values(entity_id=survivor)).rowcount
            dropped = tuple(name for name in drop_cursors if conn.execute(
                delete(poll_cursors).where(poll_cursors.c.name == name)).rowcount)
            if dry_run:
                tx.rollback()
        return MergedIdentity(kind, loser, survivor, moved, gone, kept, int(n_keys), int(rehomed), dropped, dry_run)

    def external(self, kind: str, entity_id: str, system: str) -> str | None:
        """A system's id for our entity."""
        with self._sql.read() as cur:
            found = cur.execute(_EXTERNAL, {"kind": kind, "entity_id": entity_id, "system": system}).one()
        return None if found is None else str(found)

    def externals(self, kind: str, entity_id: str) -> dict[str, str]:
        """Every system's id for our entity (system -> id), in one query."""
        with self._sql.read() as cur:
            return {system: ext for system, ext in cur.execute(_EXTERNALS, {"kind": kind, "entity_id": entity_id}).all()}

    def unlink(self, kind: str, entity_id: str, system: str) -> bool:
        with translate_db_errors(), self._engine.begin() as conn:
            return bool(conn.execute(delete(identity_links).where(
                identity_links.c.entity_kind == kind, identity_links.c.entity_id == entity_id,
                identity_links.c.system == system)).rowcount)


class SqlWriteFingerprints:
    """What the bridge wrote to a system, so that the change coming back is recognised as our own."""

    def __init__(self, engine: Engine, *, keep: timedelta = timedelta(days=7)) -> None:
        self._engine = engine
        self._keep = keep

    def record(self, system: str, kind: str, object_id: str, fingerprint: str) -> None:
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(write_fingerprints.insert().values(
                system=system, object_kind=kind, object_id=object_id, fingerprint=fingerprint,
                written_at=datetime.now(UTC)))

    def consume(self, system: str, kind: str, object_id: str, fingerprint: str) -> bool:
        """True (and forget it) if we wrote exactly this; the next identical change is then not ours."""
        cond = and_(write_fingerprints.c.system == system, write_fingerprints.c.object_kind == kind,
                    write_fingerprints.c.object_id == object_id, write_fingerprints.c.fingerprint == fingerprint)
        with translate_db_errors(), self._engine.begin() as conn:
            row = conn.execute(select(write_fingerprints.c.id).where(cond).order_by(write_fingerprints.c.id)
                               .limit(1)).first()
            if row is None:
                return False
            conn.execute(delete(write_fingerprints).where(write_fingerprints.c.id == row[0]))
            conn.execute(delete(write_fingerprints).where(
                write_fingerprints.c.written_at < datetime.now(UTC) - self._keep))
            return True


__all__ = ["SqlIdentityMap", "SqlWriteFingerprints"]
