"""The inbox: every verified delivery, stored raw, unique by (source, event_id)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from commerce_bridge.domain.delivery import Delivery, DeliveryStatus, StoredDelivery
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.tables import inbox, runs


def insert_ignore(engine: Engine, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect."""
    mod = postgresql if engine.dialect.name == "postgresql" else sqlite
    return mod.insert(table)


class SqlInbox:
    """Inbox repository on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = (
            insert_ignore(engine, inbox)
            .on_conflict_do_nothing(index_elements=["source", "event_id"])
            .returning(inbox.c.source, inbox.c.event_id)
        )

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Store deliveries in ONE durable commit; for each, True if new, False if a duplicate."""
        first_seen: dict[tuple[str, str], int] = {}
        params = []
        for i, d in enumerate(deliveries):
            key = (d.source, d.event_id)
            if key in first_seen:
                continue
            first_seen[key] = i
            params.append({
                "source": d.source, "event_id": d.event_id, "event_type": d.event_type,
                "status": DeliveryStatus.RECEIVED.value, "received_at": d.received_at, "body": d.body,
            })
        with translate_db_errors(), self._engine.begin() as conn:
            inserted = {tuple(r) for r in conn.execute(self._insert, params)} if params else set()
        return [
            first_seen[(d.source, d.event_id)] == i and (d.source, d.event_id) in inserted
            for i, d in enumerate(deliveries)
        ]

    def dispatch_batch(self, limit: int, handler: Callable[[list[StoredDelivery]], Iterable[int] | None]) -> int:
        """Hand the oldest undispatched deliveries to ``handler``, then mark them dispatched.

        ``handler`` may return the ids of deliveries that started no run (no workflow wanted them):
        those are marked processed at once instead, so they do not look pending forever.

        On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until they are marked, so
        several dispatchers share the work without overlap. On SQLite (one writer) the rows are read,
        handled and marked without holding the write lock, so ingress is never blocked; handling the
        same row twice after a crash is harmless because starting a run id twice is.
        """
        stmt = (
            select(inbox).where(inbox.c.status == DeliveryStatus.RECEIVED.value)
            .order_by(inbox.c.id).limit(limit)
        )
        mark = (
            update(inbox)
            .where(inbox.c.status == DeliveryStatus.RECEIVED.value)
            .values(status=DeliveryStatus.DISPATCHED.value)
        )
        with translate_db_errors():
            if self._engine.dialect.name == "postgresql":
                with self._engine.begin() as conn:
                    rows = [_row(r) for r in conn.execute(stmt.with_for_update(skip_locked=True)).mappings()]
                    if rows:
                        idle = set(handler(rows) or ())
                        _mark_handed_over(conn, mark, [r.id for r in rows], idle)
                return len(rows)
            with self._engine.connect() as conn:
                rows = [_row(r) for r in conn.execute(stmt).mappings()]
            if rows:
                idle = set(handler(rows) or ())
                with self._engine.begin() as conn:
                    _mark_handed_over(conn, mark, [r.id for r in rows], idle)
            return len(rows)

    def get(self, source: str, event_id: str) -> StoredDelivery | None:
        with translate_db_errors(), self._engine.connect() as conn:
            row = conn.execute(
                select(inbox).where(inbox.c.source == source, inbox.c.event_id == event_id)
            ).mappings().first()
        return _row(row) if row else None

    def list(self, *, source: str | None = None, status: str | None = None, limit: int = 50,
             before_id: int | None = None) -> list[dict[str, Any]]:
        """Deliveries newest first, each with the runs it started."""
        stmt = select(inbox.c.id, inbox.c.source, inbox.c.event_id, inbox.c.event_type, inbox.c.status,
                      inbox.c.received_at, inbox.c.dispatched_at, inbox.c.processed_at)
        if source:
            stmt = stmt.where(inbox.c.source == source)
        if status:
            stmt = stmt.where(inbox.c.status == status)
        if before_id:
            stmt = stmt.where(inbox.c.id < before_id)
        stmt = stmt.order_by(inbox.c.id.desc()).limit(limit)
        with translate_db_errors(), self._engine.connect() as conn:
            rows: list[dict[str, Any]] = [dict(r) for r in conn.execute(stmt).mappings()]
            ids = [r["id"] for r in rows]
            by_inbox: dict[int, list[dict[str, Any]]] = {}
            if ids:
                for m in conn.execute(
                    select(runs.c.inbox_id, runs.c.run_id, runs.c.workflow, runs.c.status, runs.c.error_code)
                    .where(runs.c.inbox_id.in_(ids))
                ).mappings():
                    by_inbox.setdefault(m["inbox_id"], []).append(
                        {k: m[k] for k in ("run_id", "workflow", "status", "error_code")}
                    )
        for row in rows:
            row["runs"] = by_inbox.get(row["id"], [])
        return rows

    def counts_by_status(self) -> dict[str, int]:
        with translate_db_errors(), self._engine.connect() as conn:
            return {
                s: n for s, n in conn.execute(select(inbox.c.status, func.count()).group_by(inbox.c.status))
            }

    def backlog(self) -> int:
        """Deliveries received but not yet dispatched."""
        with translate_db_errors(), self._engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).where(inbox.c.status == DeliveryStatus.RECEIVED.value)
            ).scalar_one())


def _row(r: Any) -> StoredDelivery:
    return StoredDelivery(
        id=r["id"], source=r["source"], event_id=r["event_id"], event_type=r["event_type"],
        status=r["status"], received_at=r["received_at"], body=bytes(r["body"]),
        dispatched_at=r["dispatched_at"], processed_at=r["processed_at"],
    )


def _mark_handed_over(conn: Any, mark: Any, ids: list[int], idle: set[int]) -> None:
    now = datetime.now(UTC)
    started = [i for i in ids if i not in idle]
    if started:
        conn.execute(mark.where(inbox.c.id.in_(started)).values(dispatched_at=now))
    if idle:
        conn.execute(mark.where(inbox.c.id.in_(sorted(idle)))
                     .values(status=DeliveryStatus.PROCESSED.value, dispatched_at=now, processed_at=now))
