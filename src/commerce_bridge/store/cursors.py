"""Durable poll cursors (one opaque string per name), e.g. the Clarity ``ModifiedSince`` cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.tables import poll_cursors


class SqlCursorStore:
    """Implements ``services.gateways.CursorStore`` on the ``poll_cursors`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, name: str) -> str | None:
        with translate_db_errors(), self._engine.connect() as conn:
            return conn.execute(select(poll_cursors.c.cursor).where(poll_cursors.c.name == name)).scalar_one_or_none()

    def set(self, name: str, value: str) -> None:
        now = datetime.now(UTC)
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(update(poll_cursors).where(poll_cursors.c.name == name)
                             .values(cursor=value, updated_at=now)).rowcount
            if n == 0:
                conn.execute(insert_ignore(self._engine, poll_cursors).values(name=name, cursor=value, updated_at=now)
                             .on_conflict_do_update(index_elements=["name"], set_={"cursor": value, "updated_at": now}))
