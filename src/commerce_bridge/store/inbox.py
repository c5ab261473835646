"""The inbox: every verified delivery, stored raw, unique by (source, event_id)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from commerce_bridge.domain.delivery import (
    DISPATCH_STEP,
    Delivery,
    DeliveryStatus,
    HandOver,
    RunStatus,
    StoredDelivery,
)
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

    def dispatch_batch(self, limit: int,
                       handler: Callable[[list[StoredDelivery]], HandOver | Iterable[int] | None]) -> int:
        """Hand the oldest undispatched deliveries to ``handler``, then mark them dispatched.

        ``handler`` may return a :class:`HandOver` (or just the ids of the idle deliveries): the
        deliveries that started no run (no workflow wanted them) are marked processed at once, so they
        do not look pending forever; those it isolated as poison are marked failed. A handler that
        raises leaves the whole batch received (it raises only when the store itself is unavailable).

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
                        _mark_handed_over(conn, mark, [r.id for r in rows], _hand_over(handler(rows)))
                return len(rows)
            with self._engine.connect() as conn:
                rows = [_row(r) for r in conn.execute(stmt).mappings()]
            if rows:
                outcome = _hand_over(handler(rows))
                with self._engine.begin() as conn:
                    _mark_handed_over(conn, mark, [r.id for r in rows], outcome)
            return len(rows)

    def redispatch(self, inbox_id: int) -> bool:
        """Put a delivery isolated at dispatch back in line (after a fix): False if it was not failed.

        Its runs parked at dispatch never started (the engine has no record of them): their rows are
        removed, and the dispatcher routes and starts the delivery afresh, so a workflow whose filter
        no longer wants it leaves no run behind (starting a run id that exists is harmless).
        """
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(
                update(inbox).where(inbox.c.id == inbox_id, inbox.c.status == DeliveryStatus.FAILED.value)
                .values(status=DeliveryStatus.RECEIVED.value, dispatched_at=None, processed_at=None)
            ).rowcount
            if n:
                conn.execute(runs.delete().where(*_undispatched(inbox_id)))
        return bool(n)

    def discard_dispatch(self, inbox_id: int) -> None:
        """An operator gave up on a delivery isolated at dispatch: its runs that never started are discarded."""
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(update(runs).where(*_undispatched(inbox_id))
                         .values(status=RunStatus.DISCARDED.value, updated_at=datetime.now(UTC)))

    def oldest_waiting_s(self, now: datetime | None = None) -> float | None:
        """How long the oldest received (undispatched) delivery has waited; None when none waits."""
        with translate_db_errors(), self._engine.connect() as conn:
            oldest = conn.execute(
                select(func.min(inbox.c.received_at)).where(inbox.c.status == DeliveryStatus.RECEIVED.value)
            ).scalar()
        if oldest is None:
            return None
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        waited: float = ((now or datetime.now(UTC)) - oldest).total_seconds()
        return max(0.0, waited)

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


def _hand_over(answer: HandOver | Iterable[int] | None) -> HandOver:
    if isinstance(answer, HandOver):
        return answer
    return HandOver(idle=frozenset(answer or ()))


def _undispatched(inbox_id: int) -> tuple[Any, ...]:
    """Conditions for the runs of a delivery parked by a dispatch failure (they never started)."""
    return (runs.c.inbox_id == inbox_id, runs.c.status == RunStatus.PARKED.value,
            runs.c.failed_step == DISPATCH_STEP)


def _mark_handed_over(conn: Any, mark: Any, ids: list[int], outcome: HandOver) -> None:
    now = datetime.now(UTC)
    idle, failed = outcome.idle - outcome.failed, outcome.failed
    started = [i for i in ids if i not in idle and i not in failed]
    if started:
        conn.execute(mark.where(inbox.c.id.in_(started)).values(dispatched_at=now))
    if idle:
        conn.execute(mark.where(inbox.c.id.in_(sorted(idle)))
                     .values(status=DeliveryStatus.PROCESSED.value, dispatched_at=now, processed_at=now))
    if failed:
        conn.execute(mark.where(inbox.c.id.in_(sorted(failed)))
                     .values(status=DeliveryStatus.FAILED.value, dispatched_at=now))
