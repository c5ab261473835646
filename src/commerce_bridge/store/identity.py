"""The identity map (one link per entity and system, de-duplication keys) and our write fingerprints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, select

from commerce_bridge.errors import ValidationError
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.tables import identity_keys, identity_links, write_fingerprints


class SqlIdentityMap:
    """Links our entity ids to each system's ids; finds entities by a de-duplication key."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def entity_for_key(self, kind: str, dedupe_key: str) -> str:
        """The entity with this de-duplication key (e.g. a normalised e-mail), created if new."""
        new_id = uuid.uuid4().hex
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(insert_ignore(self._engine, identity_keys).values(
                entity_kind=kind, dedupe_key=dedupe_key, entity_id=new_id, created_at=datetime.now(UTC),
            ).on_conflict_do_nothing(index_elements=["entity_kind", "dedupe_key"]))
            return str(conn.execute(select(identity_keys.c.entity_id).where(
                identity_keys.c.entity_kind == kind, identity_keys.c.dedupe_key == dedupe_key)).scalar_one())

    def link(self, kind: str, entity_id: str, system: str, external_id: str) -> None:
        """Link ``entity_id`` to ``external_id`` in ``system`` (repeating the same link is harmless).

        Raises ValidationError when either side is already linked to something else.
        """
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(insert_ignore(self._engine, identity_links).values(
                entity_kind=kind, entity_id=entity_id, system=system, external_id=external_id,
                created_at=datetime.now(UTC),
            ).on_conflict_do_nothing())
            rows = conn.execute(select(identity_links.c.entity_id, identity_links.c.external_id).where(
                identity_links.c.entity_kind == kind, identity_links.c.system == system,
                (identity_links.c.entity_id == entity_id) | (identity_links.c.external_id == external_id),
            )).all()
        for ent, ext in rows:
            if (ent, ext) != (entity_id, external_id):
                raise ValidationError(
                    f"{kind} {entity_id} cannot be linked to {system} {external_id}: "
                    f"{system} {ext} is already linked to {kind} {ent}",
                    suggested_fix="merge the two records or unlink the wrong one, then replay",
                )

    def lookup(self, kind: str, system: str, external_id: str) -> str | None:
        """Our entity id for a system's id."""
        with translate_db_errors(), self._engine.connect() as conn:
            return conn.execute(select(identity_links.c.entity_id).where(
                identity_links.c.entity_kind == kind, identity_links.c.system == system,
                identity_links.c.external_id == external_id)).scalar_one_or_none()

    def external(self, kind: str, entity_id: str, system: str) -> str | None:
        """A system's id for our entity."""
        with translate_db_errors(), self._engine.connect() as conn:
            return conn.execute(select(identity_links.c.external_id).where(
                identity_links.c.entity_kind == kind, identity_links.c.entity_id == entity_id,
                identity_links.c.system == system)).scalar_one_or_none()

    def externals(self, kind: str, entity_id: str) -> dict[str, str]:
        """Every system's id for our entity (system -> id), in one query."""
        with translate_db_errors(), self._engine.connect() as conn:
            return {system: ext for system, ext in conn.execute(
                select(identity_links.c.system, identity_links.c.external_id).where(
                    identity_links.c.entity_kind == kind, identity_links.c.entity_id == entity_id))}

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
