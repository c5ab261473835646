"""Coordination between workers through the database: heartbeat leases and shared rate limits."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select, update

from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.raw import OwnConnection, RawSql
from commerce_bridge.store.tables import rate_limits, workers

_HEARTBEAT = ("UPDATE workers SET heartbeat_at = :now, lease_expires_at = {expires} "
              "WHERE executor_id = :executor_id AND epoch = :epoch AND status = 'alive'")
_HEARTBEAT_SQLITE = _HEARTBEAT.format(expires=":expires")
_HEARTBEAT_PG = _HEARTBEAT.format(expires="CAST(extract(epoch FROM clock_timestamp()) AS double precision) + :lease_s")


class SqlWorkerLeases:
    """Each worker holds a lease it renews by heartbeat; an expired lease lets a survivor take over.

    Lease times are seconds since the epoch on the database's clock for PostgreSQL (so workers on
    different hosts agree) and on the local clock for SQLite (one host).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._sql = RawSql(engine)

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
        """Renew the lease; False if it was lost (taken over or re-registered elsewhere).

        Every few seconds in every worker, idle or not: one statement (SQL text, ``store.raw``), the
        expiry computed by the database on PostgreSQL (its clock) and locally on SQLite.
        """
        with self._sql.write() as cur:
            n = cur.execute(_HEARTBEAT_PG if self._pg else _HEARTBEAT_SQLITE, {
                "now": self._sql.now(), "expires": time.time() + lease_s, "lease_s": float(lease_s),
                "executor_id": executor_id, "epoch": epoch,
            }).rowcount
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


CLOCK_DRIFT = 2e-4
"""How fast the database's clock and this process's may drift apart (seconds per second) between two
reservations: NTP keeps a clock's rate within a few tens of ppm; 200 ppm is generous."""


class ClockOffset:
    """Where the database's clock stands against this process's ``time.monotonic()``: ``monotonic = db + offset``.

    Each reading of the database's clock between two readings of ours bounds the offset by that round
    trip. The bounds kept are the intersection of the readings, widened by ``CLOCK_DRIFT`` for their age,
    so the offset is known to within the fastest recent round trip, not only the last one. A reading that
    does not fit them (a clock was stepped) starts again from that reading alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lo = -math.inf
        self.hi = math.inf
        self._at = 0.0

    def read(self, before: float, db_now: float, after: float) -> tuple[float, float]:
        """Note a reading (ours before, the database's, ours after); returns the bounds of the offset."""
        lo, hi = before - db_now, after - db_now
        with self._lock:
            widen = CLOCK_DRIFT * max(0.0, after - self._at)
            if self.lo - widen <= hi and lo <= self.hi + widen:
                lo, hi = max(lo, self.lo - widen), min(hi, self.hi + widen)
            self.lo, self.hi, self._at = lo, hi, after
        return lo, hi


_NOW_PG = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
_RESERVE_PG = (f"UPDATE rate_limits SET tat = GREATEST(tat, {_NOW_PG} + :lead_s) + :span "
               f"WHERE destination = :destination RETURNING tat, {_NOW_PG}")


class SqlRateLimiter:
    """Call slots per destination shared by every worker: GCRA on one row per destination.

    A reservation of ``count`` slots moves the row's ``tat`` (the end of the slots reserved so far) to
    ``max(tat, now + lead) + count × interval`` in one transaction; its slots are ``interval`` apart from
    ``max(tat, now + lead)`` on. "Now" is the database's clock on PostgreSQL (workers on different hosts
    agree on it) and this host's on SQLite. ``engine.limits.BatchedSlots`` hands the slots out in the process.
    """

    def __init__(self, engine: Engine, leases: SqlWorkerLeases) -> None:
        self._engine = engine
        self._leases = leases
        self._pg = engine.dialect.name == "postgresql"
        # PostgreSQL: one statement in autocommit on a connection of its own, one round trip (no pool
        # checkout with its ping, no BEGIN and COMMIT): once per reservation, up to once per call
        self._own = OwnConnection(engine) if self._pg else None
        self._known: set[str] = set()
        self.clock = ClockOffset()

    def close(self) -> None:
        """Close the connection of its own (PostgreSQL); the pooled ones close with the engine."""
        if self._own is not None:
            self._own.close()

    def reserve_batch(self, destination: str, interval_s: float, count: int, lead_s: float = 0.0) -> tuple[float, float]:
        """Reserve ``count`` consecutive slots ``interval_s`` apart for ``destination``, none sooner than ``lead_s``.

        Returns
        -------
        tuple of float
            The first slot on this process's ``time.monotonic()`` clock, at the earliest and at the latest
            it can be. On PostgreSQL the slot is on the database's clock, placed on ours by
            :class:`ClockOffset` (to within the fastest recent round trip); on SQLite the clocks are read
            under the file's write lock, so the two bounds are nearly equal. A caller that calls no earlier
            than the latest bound is never early.
        """
        if destination not in self._known:
            with translate_db_errors(), self._engine.begin() as conn:
                conn.execute(insert_ignore(self._engine, rate_limits)
                             .values(destination=destination, tat=0.0)
                             .on_conflict_do_nothing(index_elements=["destination"]))
            self._known.add(destination)  # only once the row is committed
        span = interval_s * count
        if self._own is not None:  # PostgreSQL: one statement, autocommit, on a connection of its own
            with self._own.cursor() as cur:
                before = time.monotonic()
                row = cur.execute(_RESERVE_PG, {"destination": destination, "lead_s": float(lead_s),
                                                "span": float(span)}).row()
                after = time.monotonic()
            assert row is not None  # the row was made above
            tat, now = row
            lo, hi = self.clock.read(before, float(now), after)
            first = float(tat) - span  # on the database's clock
            return first + lo, first + hi
        with translate_db_errors(), self._engine.begin() as conn:  # BEGIN IMMEDIATE: the file's write lock
            before = time.monotonic()
            now = time.time()
            after = time.monotonic()
            tat = conn.execute(
                update(rate_limits).where(rate_limits.c.destination == destination)
                .values(tat=func.max(rate_limits.c.tat, now + lead_s) + span)
                .returning(rate_limits.c.tat)
            ).scalar_one()
        first = float(tat) - span - now  # seconds from our reading of the clock to the first slot
        return before + first, after + first
