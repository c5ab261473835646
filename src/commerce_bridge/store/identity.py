"""The identity map (one link per entity and system, de-duplication keys) and our write fingerprints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, select

from commerce_bridge.errors import ValidationError
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.raw import RawSql
from commerce_bridge.store.tables import identity_links, write_fingerprints

_ENTITY_FOR_KEY = "SELECT entity_id FROM identity_keys WHERE entity_kind = :kind AND dedupe_key = :key"
_INSERT_KEY = ("INSERT INTO identity_keys (entity_kind, dedupe_key, entity_id, created_at) "
               "VALUES (:kind, :key, :entity_id, :at) ON CONFLICT (entity_kind, dedupe_key) DO NOTHING")
_LINKS_OF_EITHER = ("SELECT entity_id, external_id FROM identity_links WHERE entity_kind = :kind AND system = :system "
                    "AND (entity_id = :entity_id OR external_id = :external_id)")
_INSERT_LINK = ("INSERT INTO identity_links (entity_kind, entity_id, system, external_id, created_at) "
                "VALUES (:kind, :entity_id, :system, :external_id, :at) ON CONFLICT DO NOTHING")
_LOOKUP = ("SELECT entity_id FROM identity_links WHERE entity_kind = :kind AND system = :system "
           "AND external_id = :external_id")
_EXTERNAL = ("SELECT external_id FROM identity_links WHERE entity_kind = :kind AND entity_id = :entity_id "
             "AND system = :system")
_EXTERNALS = "SELECT system, external_id FROM identity_links WHERE entity_kind = :kind AND entity_id = :entity_id"


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
                    suggested_fix="merge the two records or unlink the wrong one, then replay",
                )

    def lookup(self, kind: str, system: str, external_id: str) -> str | None:
        """Our entity id for a system's id."""
        with self._sql.read() as cur:
            found = cur.execute(_LOOKUP, {"kind": kind, "system": system, "external_id": external_id}).one()
        return None if found is None else str(found)

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
