"""Runs, the dead-letter queue and the audit log."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update

from commerce_bridge.domain.delivery import DeliveryStatus, RunStatus
from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.raw import RawSql
from commerce_bridge.store.tables import audit_log, dead_letters, runs, timers

_DONE = {RunStatus.SUCCEEDED.value, RunStatus.DISCARDED.value}


def _now() -> datetime:
    return datetime.now(UTC)


_CREATE_RUN = (
    "INSERT INTO runs (run_id, inbox_id, source, event_id, workflow, workflow_version, status, created_at, updated_at) "
    "VALUES (:run_id, :inbox_id, :source, :event_id, :workflow, :workflow_version, :status, :now, :now) "
    "ON CONFLICT (run_id) DO NOTHING"
)


_FIND_DELIVERY = "SELECT inbox_id FROM runs WHERE run_id = :run_id"
_LOCK_DELIVERY_PG = ("SELECT i.id FROM inbox i JOIN runs r ON r.inbox_id = i.id WHERE r.run_id = :run_id "
                     "FOR UPDATE OF i")


class SqlRuns:
    """Workflow runs as the admin API and the events list see them (the engine keeps its own state)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = RawSql(engine)

    def create(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert runs that do not exist yet (same run id twice is harmless)."""
        if not rows:
            return
        now = self._sql.now()
        with self._sql.write() as cur:  # once per dispatch pass: SQL text (``store.raw``)
            cur.executemany(_CREATE_RUN, [{
                "run_id": r["run_id"], "inbox_id": r["inbox_id"], "source": r["source"], "event_id": r["event_id"],
                "workflow": r["workflow"], "workflow_version": r["workflow_version"],
                "status": RunStatus.QUEUED.value, "now": now} for r in rows])

    def set_status(self, run_id: str, status: RunStatus, *, engine_workflow_id: str | None = None,
                   failed_step: str | None = None, error_code: str | None = None,
                   workflow_version: str | None = None) -> None:
        """Move a run to ``status`` and update its delivery's status (processed / failed).

        ``workflow_version``: the version the run is now pinned to (a replay from the start re-pins it).
        Twice per run (running, then its outcome): SQL text on the driver connection (``store.raw``).
        """
        values: dict[str, Any] = {"status": status.value, "updated_at": self._sql.now()}
        if engine_workflow_id is not None:
            values["engine_workflow_id"] = engine_workflow_id
        if workflow_version is not None:
            values["workflow_version"] = workflow_version
        if status in (RunStatus.PARKED,):
            values.update(failed_step=failed_step, error_code=error_code)
        elif status in (RunStatus.SUCCEEDED, RunStatus.RUNNING, RunStatus.QUEUED):
            values.update(failed_step=None, error_code=None)
        update_run = _update_run_sql(tuple(values))
        with self._sql.write() as cur:
            if status is RunStatus.RUNNING:
                # Only a queued run starts running, and the delivery of a queued run is already
                # "dispatched": nothing to refresh (this is the hot path, once per run).
                cur.execute(update_run, {**values, "run_id": run_id})
                return
            # Lock the delivery before the run, in the dispatcher's order (inbox row, then run row).
            # The other order deadlocked after a dispatcher died mid-batch: the survivor's dispatcher
            # held the delivery (FOR UPDATE) and waited, on another connection, for this run's row,
            # while this transaction held the run's row and waited for the delivery. PostgreSQL could
            # not see the cycle (one side was idle in transaction) and both waited forever.
            # (On PostgreSQL one statement finds and locks the delivery; SQLite's writer lock is held already.)
            inbox_id = cur.execute(_LOCK_DELIVERY_PG if self._sql.pg else _FIND_DELIVERY, {"run_id": run_id}).one()
            if inbox_id is None:
                return
            cur.execute(update_run, {**values, "run_id": run_id})
            statuses = [st for (st,) in cur.execute("SELECT status FROM runs WHERE inbox_id = :id",
                                                    {"id": inbox_id}).all()]
            new, processed = _delivery_status(statuses)
            if new is not None:
                # A delivery still waiting to be (re)dispatched is not marked dispatched here: a dispatcher
                # that died mid-batch (its hand-over rolled back) may have started this run and not the next
                # one, and only a new dispatch starts every run of the delivery (existing ids harmlessly).
                # Processed (every run done) and failed may be recorded at once, as the dispatcher's own
                # hand-over only moves a delivery that is still received.
                guard = " AND status <> :waiting" if new == DeliveryStatus.DISPATCHED.value else ""
                cur.execute("UPDATE inbox SET status = :status, processed_at = :at WHERE id = :id" + guard,
                            {"status": new, "at": self._sql.now() if processed else None, "id": inbox_id,
                             **({"waiting": DeliveryStatus.RECEIVED.value} if guard else {})})

    def park_unstarted(self, run_ids: Sequence[str], step_id: str, error_code: str) -> None:
        """Park queued runs that could not be started (their delivery is isolated at dispatch).

        Only the runs' own rows are written: the dispatcher holds their delivery's row, which
        :meth:`set_status` would lock (and wait for ever on PostgreSQL).
        """
        if not run_ids:
            return
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id.in_(list(run_ids)),
                                            runs.c.status == RunStatus.QUEUED.value)
                         .values(status=RunStatus.PARKED.value, failed_step=step_id, error_code=error_code,
                                 updated_at=_now()))

    def reroute(self, inbox_id: int, rows: Sequence[dict[str, Any]], step_id: str) -> None:
        """Settle a re-dispatched delivery's runs that ``redispatch`` put back, against its new routing.

        Those runs are the rows still ``queued`` that name the dispatch step ``step_id`` (never started: the
        engine has no record of them). The ones the new routing has in ``rows`` (run rows as for
        :meth:`create`) take its workflow version; the others, of workflows that no longer take the delivery,
        are deleted, so they leave no run behind.
        """
        marked = (runs.c.inbox_id == inbox_id, runs.c.status == RunStatus.QUEUED.value, runs.c.failed_step == step_id)
        now = _now()
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(runs.delete().where(*marked, runs.c.run_id.not_in([r["run_id"] for r in rows])))
            for r in rows:
                conn.execute(update(runs).where(*marked, runs.c.run_id == r["run_id"])
                             .values(workflow_version=r["workflow_version"], updated_at=now))

    def get(self, run_id: str) -> dict[str, Any] | None:
        with translate_db_errors(), self._engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def counts_by_status(self) -> dict[str, int]:
        with translate_db_errors(), self._engine.connect() as conn:
            return {s: n for s, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))}


def _delivery_status(statuses: Sequence[str]) -> tuple[str | None, bool]:
    """A delivery's status from its runs' (None: it has none), and whether it is now processed."""
    if not statuses:
        return None, False
    if RunStatus.PARKED.value in statuses:
        return DeliveryStatus.FAILED.value, False
    if all(s in _DONE for s in statuses):
        return DeliveryStatus.PROCESSED.value, True
    return DeliveryStatus.DISPATCHED.value, False


def _update_run_sql(columns: tuple[str, ...]) -> str:
    sql = _UPDATE_RUN.get(columns)
    if sql is None:
        sets = ", ".join(f"{c} = :{c}" for c in columns)
        sql = _UPDATE_RUN[columns] = f"UPDATE runs SET {sets} WHERE run_id = :run_id"
    return sql


_UPDATE_RUN: dict[tuple[str, ...], str] = {}


class SqlDeadLetters:
    """Runs parked because a step failed for good: list, show, replay, discard."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, entry: dict[str, Any]) -> int:
        values = {**entry, "status": "open", "created_at": _now()}
        values["step_input"] = json.dumps(values.get("step_input"), default=str, sort_keys=True)
        with translate_db_errors(), self._engine.begin() as conn:
            # One open entry per run: a run stops at its first failed step.
            existing = conn.execute(
                select(dead_letters.c.id).where(dead_letters.c.run_id == entry["run_id"],
                                                dead_letters.c.status == "open")
            ).first()
            if existing is not None:
                return int(existing[0])
            return int(conn.execute(dead_letters.insert().values(**values).returning(dead_letters.c.id)).scalar_one())

    def list(self, *, status: str | None = "open", limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(dead_letters.c.status == status)
        with translate_db_errors(), self._engine.connect() as conn:
            return [_dlq_row(r) for r in conn.execute(stmt).mappings()]

    def get(self, entry_id: int) -> dict[str, Any]:
        with translate_db_errors(), self._engine.connect() as conn:
            row = conn.execute(select(dead_letters).where(dead_letters.c.id == entry_id)).mappings().first()
        if row is None:
            raise NotFound(f"no dead-letter entry {entry_id}")
        return _dlq_row(row)

    def resolve(self, entry_id: int, status: str, resolution: str) -> dict[str, Any]:
        """Mark an open entry replayed or discarded (an entry is resolved once)."""
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == entry_id, dead_letters.c.status == "open")
                .values(status=status, resolved_at=_now(), resolution=resolution)
            ).rowcount
        if n == 0:
            entry = self.get(entry_id)
            raise ValidationError(f"dead-letter entry {entry_id} is already {entry['status']}")
        return self.get(entry_id)

    def count_open(self) -> int:
        with translate_db_errors(), self._engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).where(dead_letters.c.status == "open")
            ).scalar_one())


def _dlq_row(r: Any) -> dict[str, Any]:
    d = dict(r)
    with contextlib.suppress(TypeError, ValueError):
        d["step_input"] = json.loads(d["step_input"])
    return d


class SqlAuditLog:
    """The built-in core.audit workflow's record of every event (one row per run, executions counted)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._is_pg = engine.dialect.name == "postgresql"

    def record(self, run_id: str, source: str, event_id: str, event_type: str | None) -> bool:
        """Record the event once; a repeated execution only bumps ``executions``. True if new."""
        stmt = insert_ignore(self._engine, audit_log).values(
            run_id=run_id, source=source, event_id=event_id, event_type=event_type, recorded_at=_now(),
            executions=1,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id"], set_={"executions": audit_log.c.executions + 1}
        ).returning(audit_log.c.executions)
        with translate_db_errors(), self._engine.begin() as conn:
            return int(conn.execute(stmt).scalar_one()) == 1

    def all(self) -> list[dict[str, Any]]:
        with translate_db_errors(), self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(audit_log)).mappings()]


class SqlTimers:
    """Runs waiting for a wake-up time (durable waits too long to hold a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, run_id: str, engine_workflow_id: str, step_name: str, wake_at: float) -> None:
        values = {"engine_workflow_id": engine_workflow_id, "step_name": step_name, "wake_at": wake_at,
                  "created_at": _now()}
        stmt = insert_ignore(self._engine, timers).values(run_id=run_id, **values).on_conflict_do_update(
            index_elements=["run_id"], set_=values)
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(stmt)

    def claim_due(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        """Remove and return due timers; a timer is claimed by exactly one caller."""
        out: list[dict[str, Any]] = []
        with translate_db_errors(), self._engine.begin() as conn:
            rows = conn.execute(select(timers).where(timers.c.wake_at <= now).order_by(timers.c.wake_at)
                                .limit(limit)).mappings().all()
            for r in rows:
                if conn.execute(timers.delete().where(timers.c.run_id == r["run_id"],
                                                      timers.c.wake_at == r["wake_at"])).rowcount:
                    out.append(dict(r))
        return out

    def pending(self) -> int:
        with translate_db_errors(), self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(timers)).scalar_one())
