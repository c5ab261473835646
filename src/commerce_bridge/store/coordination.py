"""Coordination between workers through the database: heartbeat leases and shared rate limits."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select, update

from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.tables import rate_limits, workers


class SqlWorkerLeases:
    """Each worker holds a lease it renews by heartbeat; an expired lease lets a survivor take over.

    Lease times are seconds since the epoch on the database's clock for PostgreSQL (so workers on
    different hosts agree) and on the local clock for SQLite (one host).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def db_now(self) -> float:
        if not self._pg:
            return time.time()
        with translate_db_errors(), self._engine.connect() as conn:
            return float(conn.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar_one())

    def register(self, executor_id: str, hostname: str, pid: int, lease_s: float) -> int:
        """Take (or retake) the lease of ``executor_id``; returns the new epoch.

        Raises ``RuntimeError`` while a survivor is still recovering this executor's runs.
        """
        now_dt = datetime.now(UTC)
        expires = self.db_now() + lease_s
        with translate_db_errors(), self._engine.begin() as conn:
            row = conn.execute(select(workers).where(workers.c.executor_id == executor_id)).mappings().first()
            if row is None:
                conn.execute(workers.insert().values(
                    executor_id=executor_id, status="alive", hostname=hostname, pid=pid, epoch=1,
                    started_at=now_dt, heartbeat_at=now_dt, lease_expires_at=expires,
                ))
                return 1
            if row["status"] == "recovering":
                raise RuntimeError(f"worker {executor_id} is being recovered by {row['recovered_by']}; retry shortly")
            epoch = int(row["epoch"]) + 1
            conn.execute(update(workers).where(workers.c.executor_id == executor_id).values(
                status="alive", hostname=hostname, pid=pid, epoch=epoch, started_at=now_dt,
                heartbeat_at=now_dt, lease_expires_at=expires,
            ))
            return epoch

    def heartbeat(self, executor_id: str, epoch: int, lease_s: float) -> bool:
        """Renew the lease; False if it was lost (taken over or re-registered elsewhere)."""
        expires = self.db_now() + lease_s
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(update(workers).where(
                workers.c.executor_id == executor_id, workers.c.epoch == epoch, workers.c.status == "alive",
            ).values(heartbeat_at=datetime.now(UTC), lease_expires_at=expires)).rowcount
        return n == 1

    def stop(self, executor_id: str, epoch: int) -> None:
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.executor_id == executor_id, workers.c.epoch == epoch)
                         .values(status="stopped"))

    def expired(self, grace_s: float) -> list[str]:
        """Executors whose lease ran out more than ``grace_s`` ago and that did not stop cleanly."""
        cutoff = self.db_now() - grace_s
        with translate_db_errors(), self._engine.connect() as conn:
            return [r[0] for r in conn.execute(select(workers.c.executor_id).where(
                workers.c.status == "alive", workers.c.lease_expires_at < cutoff))]

    def begin_takeover(self, dead: str, by: str, *, grace_s: float, force: bool = False) -> bool:
        """Atomically claim the recovery of ``dead``; only one survivor wins. ``force`` skips the lease check."""
        cond = [workers.c.executor_id == dead, workers.c.status.in_(["alive", "stopped"])]
        if not force:
            cond += [workers.c.status == "alive", workers.c.lease_expires_at < self.db_now() - grace_s]
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(update(workers).where(and_(*cond)).values(
                status="recovering", recovered_by=by, recovered_at=datetime.now(UTC))).rowcount
        return n == 1

    def finish_takeover(self, dead: str, recovered_runs: int) -> None:
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.executor_id == dead, workers.c.status == "recovering")
                         .values(status="recovered", recovered_runs=recovered_runs))

    def get(self, executor_id: str) -> dict[str, Any] | None:
        with translate_db_errors(), self._engine.connect() as conn:
            row = conn.execute(select(workers).where(workers.c.executor_id == executor_id)).mappings().first()
        return dict(row) if row else None

    def list(self) -> list[dict[str, Any]]:
        now = self.db_now()
        with translate_db_errors(), self._engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(workers).order_by(workers.c.executor_id)).mappings()]
        for r in rows:
            r["lease_remaining_s"] = round(r["lease_expires_at"] - now, 3)
        return rows


class SqlRateLimiter:
    """A per-destination call limit shared by every worker (GCRA on one row per destination).

    Each call reserves the next free slot atomically: ``tat = max(tat, now) + interval`` and waits
    until its slot. Slots are spaced ``(1 + margin) / rate`` apart, so no 1-second window holds more
    than ``rate`` calls even when a caller wakes a little late.
    """

    def __init__(self, engine: Engine, leases: SqlWorkerLeases) -> None:
        self._engine = engine
        self._leases = leases
        self._pg = engine.dialect.name == "postgresql"
        self._known: set[str] = set()

    def reserve(self, destination: str, interval_s: float) -> float:
        """Reserve the next slot for ``destination``; returns seconds to wait before calling."""
        if destination not in self._known:
            with translate_db_errors(), self._engine.begin() as conn:
                conn.execute(insert_ignore(self._engine, rate_limits)
                             .values(destination=destination, tat=0.0)
                             .on_conflict_do_nothing(index_elements=["destination"]))
            self._known.add(destination)  # only once the row is committed
        with translate_db_errors(), self._engine.begin() as conn:
            if self._pg:
                now_expr: Any = func.extract("epoch", func.clock_timestamp())
                stmt = (
                    update(rate_limits).where(rate_limits.c.destination == destination)
                    .values(tat=func.greatest(rate_limits.c.tat, now_expr) + interval_s)
                    .returning(rate_limits.c.tat, now_expr)
                )
                tat, now = conn.execute(stmt).one()
            else:
                now = time.time()
                stmt = (
                    update(rate_limits).where(rate_limits.c.destination == destination)
                    .values(tat=func.max(rate_limits.c.tat, now) + interval_s)
                    .returning(rate_limits.c.tat)
                )
                tat = conn.execute(stmt).scalar_one()
        return max(0.0, float(tat) - interval_s - float(now))
