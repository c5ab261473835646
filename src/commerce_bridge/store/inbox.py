"""The inbox: every verified delivery, stored raw, unique by (source, event_id)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
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
from commerce_bridge.services.ports import DispatchPriority
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.raw import Cursor, RawSql
from commerce_bridge.store.tables import inbox, runs


def insert_ignore(engine: Engine, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect."""
    mod = postgresql if engine.dialect.name == "postgresql" else sqlite
    return mod.insert(table)


Row = tuple[str, str, str | None, datetime, bytes]
IDS_PER_QUERY = 500
"""Ids per ``IN (...)`` of :meth:`SqlInbox.stored_ids` (under SQLite's 999 bound parameters)."""  # source, event_id, event_type, received_at, body


class SqlInbox:
    """Inbox repository on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = (
            insert_ignore(engine, inbox)
            .on_conflict_do_nothing(index_elements=["source", "event_id"])
            .returning(inbox.c.source, inbox.c.event_id)
        )
        self._direct = DirectInsert.for_engine(engine)
        self._sql = RawSql(engine)

    def close(self) -> None:
        """Close the connection of the direct insert (the pooled ones close with the engine)."""
        if self._direct is not None:
            self._direct.close()

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Store deliveries in ONE durable commit; for each, True if new, False if a duplicate."""
        first_seen, rows = _unique_rows(deliveries)
        inserted: set[tuple[str, str]] = set()
        if rows:
            with translate_db_errors():
                direct = self._direct.write(rows) if self._direct is not None else None
                # None: no direct path here, or it is busy or lost its connection
                inserted = direct if direct is not None else self._insert_pooled(rows)
        return _answers(deliveries, first_seen, inserted)

    async def record_batch_async(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """:meth:`record_batch` from the event loop: on PostgreSQL on the loop itself (no thread to wake
        per commit), elsewhere, or when that path is busy or broken, in a worker thread."""
        if self._direct is not None and self._direct.is_postgres:
            first_seen, rows = _unique_rows(deliveries)
            inserted = await self._direct.write_async(rows) if rows else set()
            if inserted is not None:
                return _answers(deliveries, first_seen, inserted)
        return await asyncio.get_running_loop().run_in_executor(None, self.record_batch, deliveries)

    def _insert_pooled(self, rows: list[Row]) -> set[tuple[str, str]]:
        params = [{"source": s, "event_id": e, "event_type": t, "status": DeliveryStatus.RECEIVED.value,
                   "received_at": r, "body": b} for s, e, t, r, b in rows]
        with self._engine.begin() as conn:
            return {(s, e) for s, e in conn.execute(self._insert, params)}

    def dispatch_batch(self, limit: int,
                       handler: Callable[[list[StoredDelivery]], HandOver | Iterable[int] | None],
                       priorities: Sequence[DispatchPriority] = ()) -> int:
        """Hand the oldest undispatched deliveries to ``handler``, then mark them dispatched.

        ``handler`` may return a :class:`HandOver` (or just the ids of the idle deliveries): the
        deliveries that started no run (no workflow wanted them) are marked processed at once, so they
        do not look pending forever; those it isolated as poison are marked failed. A handler that
        raises leaves the whole batch received (it raises only when the store itself is unavailable).

        On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until they are marked, so
        several dispatchers share the work without overlap. On SQLite (one writer) the rows are read,
        handled and marked without holding the write lock, so ingress is never blocked; handling the
        same row twice after a crash is harmless because starting a run id twice is.

        ``priorities``: deliveries matching a higher one are taken first (under overload, later stages of
        orders already started before new orders); the order is otherwise the arrival order.
        """
        sql, params = _claim_sql(tuple(priorities), pg=self._sql.pg)
        params = {**params, "limit": limit}
        if self._sql.pg:
            with self._sql.write() as cur:  # the rows stay locked until marked, in this transaction
                rows = [self._delivery(r) for r in cur.execute(sql, params).all()]
                if rows:
                    self._mark_handed_over(cur, [r.id for r in rows], _hand_over(handler(rows)))
            return len(rows)
        with self._sql.read() as cur:
            rows = [self._delivery(r) for r in cur.execute(sql, params).all()]
        if rows:
            outcome = _hand_over(handler(rows))
            with self._sql.write() as cur:
                self._mark_handed_over(cur, [r.id for r in rows], outcome)
        return len(rows)

    def _delivery(self, r: tuple[Any, ...]) -> StoredDelivery:
        ts = self._sql.from_ts
        received_at = ts(r[5])
        assert received_at is not None  # NOT NULL
        return StoredDelivery(id=r[0], source=r[1], event_id=r[2], event_type=r[3], status=r[4],
                              received_at=received_at, dispatched_at=ts(r[6]), processed_at=ts(r[7]),
                              body=bytes(r[8]))

    def _mark_handed_over(self, cur: Cursor, ids: list[int], outcome: HandOver) -> None:
        """Mark a dispatched batch: started, idle (processed at once) or isolated (failed).

        Only rows still ``received`` move (a row another pass marked meanwhile keeps its state).
        """
        now = self._sql.now()
        idle, failed = outcome.idle - outcome.failed, outcome.failed
        started = [i for i in ids if i not in idle and i not in failed]
        for group, status, processed in ((started, DeliveryStatus.DISPATCHED, None),
                                         (sorted(idle), DeliveryStatus.PROCESSED, now),
                                         (sorted(failed), DeliveryStatus.FAILED, None)):
            if not group:
                continue
            marks = ", ".join(f":i{n}" for n in range(len(group)))
            cur.execute(
                "UPDATE inbox SET status = :status, dispatched_at = :now"
                + (", processed_at = :now" if processed is not None else "")
                + f" WHERE status = :received AND id IN ({marks})",
                {"status": status.value, "now": now, "received": DeliveryStatus.RECEIVED.value,
                 **{f"i{n}": i for n, i in enumerate(group)}},
            )

    def redispatch(self, inbox_id: int) -> bool:
        """Put a delivery isolated at dispatch back in line (after a fix): False if it was not failed.

        Its runs parked at dispatch never started (the engine has no record of them): they go back to
        ``queued``, still naming the dispatch step, so that a run of the same delivery that finishes
        before the dispatcher's next pass sees work outstanding and does not mark the delivery processed.
        The delivery keeps its ``dispatched_at``: that tells the dispatcher it is a re-dispatch, which
        routes it afresh and settles those rows (:meth:`~commerce_bridge.store.runs.SqlRuns.reroute`): a
        workflow that no longer wants it leaves no run behind, one that does starts its run (a run id that
        exists is harmless).
        """
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(
                update(inbox).where(inbox.c.id == inbox_id, inbox.c.status == DeliveryStatus.FAILED.value)
                .values(status=DeliveryStatus.RECEIVED.value, processed_at=None)
            ).rowcount
            if n:
                conn.execute(update(runs).where(*_undispatched(inbox_id))
                             .values(status=RunStatus.QUEUED.value, error_code=None, updated_at=datetime.now(UTC)))
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

    def stored_ids(self, source: str, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` of ``source`` the inbox holds (one query per :data:`IDS_PER_QUERY` ids)."""
        wanted = sorted(set(event_ids))
        found: set[str] = set()
        with translate_db_errors(), self._engine.connect() as conn:
            for i in range(0, len(wanted), IDS_PER_QUERY):
                found.update(conn.execute(select(inbox.c.event_id).where(
                    inbox.c.source == source, inbox.c.event_id.in_(wanted[i:i + IDS_PER_QUERY]))).scalars())
        return found

    def first_received_at(self) -> datetime | None:
        """When the inbox's first delivery arrived (the bridge's first day in service); None when empty."""
        with translate_db_errors(), self._engine.connect() as conn:
            first = conn.execute(select(inbox.c.received_at).order_by(inbox.c.id).limit(1)).scalar()
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        return first

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
        """Deliveries received but not yet dispatched (SQL text: ``ingress`` asks once a second)."""
        with self._sql.read() as cur:
            return int(cur.execute(_BACKLOG, {"received": DeliveryStatus.RECEIVED.value}).one())


_BACKLOG = "SELECT count(*) FROM inbox WHERE status = :received"


def _unique_rows(deliveries: Sequence[Delivery]) -> tuple[dict[tuple[str, str], int], list[Row]]:
    """(index of each key's first delivery, the rows to insert: one per key)."""
    first_seen: dict[tuple[str, str], int] = {}
    rows: list[Row] = []
    for i, d in enumerate(deliveries):
        key = (d.source, d.event_id)
        if key in first_seen:
            continue
        first_seen[key] = i
        rows.append((d.source, d.event_id, d.event_type, d.received_at, d.body))
    return first_seen, rows


def _answers(deliveries: Sequence[Delivery], first_seen: dict[tuple[str, str], int],
             inserted: set[tuple[str, str]]) -> list[bool]:
    """Per delivery: new only if its key was inserted now and it is the first delivery of that key."""
    return [first_seen[(d.source, d.event_id)] == i and (d.source, d.event_id) in inserted
            for i, d in enumerate(deliveries)]


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


# One text for every batch size (so psycopg prepares it once), parameters in binary (no quoting).
_PG_INSERT = (
    "INSERT INTO inbox (source, event_id, event_type, status, received_at, body) "
    "SELECT s, e, t, %b, r, b FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], %b::timestamptz[], "
    "%b::bytea[]) AS u(s, e, t, r, b) "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
)


class DirectInsert:
    """The inbox insert on a connection of its own, through the driver: the ingest hot path.

    At a steady low rate a batch holds one or two deliveries, and what surrounds the INSERT costs
    more than the INSERT: a pool checkout with its ping (a round trip on PostgreSQL), SQLAlchemy's
    statement handling and transaction bookkeeping. This keeps one connection and one statement:

    * **PostgreSQL**: autocommit and ONE statement per batch whatever its size (``unnest`` over
      arrays, so the text never changes and psycopg prepares it once): one round trip, and the rows
      are durable when it returns (the server's ``synchronous_commit``, as for every other commit).
    * **SQLite** (a file): ``BEGIN IMMEDIATE`` through the file's writer queue
      (:mod:`commerce_bridge.store.db`), one cached INSERT per delivery, ``COMMIT``, fsynced (WAL,
      ``synchronous=FULL``) like every other commit.

    One write at a time: a caller that finds the connection busy (a write that outlived its request's
    timeout, a poller storing at the same moment) gets None and takes the pooled path instead, as
    does one whose PostgreSQL connection broke (the pool's ping reconnects). If that break hid a
    commit, the retry finds the rows present and answers "duplicate": stored once, never lost.
    """

    def __init__(self, engine: Engine, kind: str) -> None:
        self._engine = engine
        self._kind = kind
        self._lock = threading.Lock()
        self._fairy: Any = None
        self._closed = False
        self._aconn: Any = None  # psycopg.AsyncConnection of self._aloop, for write_async
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._abusy = False
        if kind == "sqlite":
            stmt = sqlite.insert(inbox).on_conflict_do_nothing(index_elements=["source", "event_id"])
            self._sql = str(stmt.compile(dialect=engine.dialect, column_keys=[
                "source", "event_id", "event_type", "status", "received_at", "body"]))
            # the column types' own conversions, so the rows read back exactly as the pooled path's
            self._date = inbox.c.received_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)

    @classmethod
    def for_engine(cls, engine: Engine) -> DirectInsert | None:
        """The direct path for ``engine``: PostgreSQL, or a SQLite file (not ``:memory:``); else None."""
        if engine.dialect.name == "postgresql":
            return cls(engine, "postgresql")
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            return cls(engine, "sqlite")
        return None

    def write(self, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
        """Insert ``rows`` in one durable commit; the keys that were new, or None: use the pooled path."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._closed:
                return None
            if self._kind == "postgresql":
                return self._write_pg(rows)
            return self._write_sqlite(rows)
        finally:
            self._lock.release()

    @property
    def is_postgres(self) -> bool:
        return self._kind == "postgresql"

    async def write_async(self, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
        """:meth:`write` on the event loop (PostgreSQL): an async connection of its own, no thread."""
        import psycopg  # the driver lives here and in the engine only

        if self._abusy or self._closed:
            return None
        self._abusy = True
        try:
            loop = asyncio.get_running_loop()
            if self._aconn is not None and self._aloop is not loop:  # made on a loop that has ended
                self._drop_async()
            if self._aconn is None:
                cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
                self._aconn = await psycopg.AsyncConnection.connect(
                    *cargs, **{"connect_timeout": 5, **cparams}, autocommit=True)
                self._aloop = loop
            sources, ids, types, dates, bodies = (list(col) for col in zip(*rows, strict=True))
            cur = await self._aconn.execute(
                _PG_INSERT, (DeliveryStatus.RECEIVED.value, sources, ids, types, dates, bodies))
            return {(s, e) for s, e in await cur.fetchall()}
        except Exception:  # broken or refused: the pooled path pings, reconnects or says why
            self._drop_async()
            return None
        except BaseException:
            self._drop_async()
            raise
        finally:
            self._abusy = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
            self._drop_async()

    def _drop_async(self) -> None:
        aconn, self._aconn, self._aloop = self._aconn, None, None
        if aconn is not None:
            aconn.pgconn.finish()  # closes the socket now; needs no loop (it may have ended)

    def _connection(self) -> Any:
        if self._fairy is None:
            fairy: Any = self._engine.raw_connection()
            fairy.detach()  # never back into the pool: its settings here (autocommit) stay with it
            if self._kind == "postgresql":
                fairy.dbapi_connection.autocommit = True
            self._fairy = fairy
        return self._fairy.dbapi_connection

    def _drop(self) -> None:
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone either way
                fairy.close()

    def _write_pg(self, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
        import psycopg  # the driver lives here and in the engine only

        sources, ids, types, dates, bodies = (list(col) for col in zip(*rows, strict=True))
        try:
            conn = self._connection()
            cur = conn.execute(_PG_INSERT, (DeliveryStatus.RECEIVED.value, sources, ids, types, dates, bodies))
            return {(s, e) for s, e in cur.fetchall()}
        except psycopg.OperationalError:
            self._drop()
            return None
        except BaseException:
            self._drop()
            raise

    def _write_sqlite(self, rows: Sequence[Row]) -> set[tuple[str, str]] | None:
        conn = self._connection()
        if not hasattr(conn, "begin_immediate"):  # an engine not made by make_engine: no writer queue
            self._closed = True
            self._drop()
            return None
        conn.begin_immediate()  # the file's writer lock, then BEGIN IMMEDIATE (StoreUnavailable on timeout)
        status, date, sql = DeliveryStatus.RECEIVED.value, self._date, self._sql
        inserted: set[tuple[str, str]] = set()
        try:
            for source, event_id, event_type, received_at, body in rows:
                if conn.execute(sql, (source, event_id, event_type, status,
                                      date(received_at) if date else received_at, body)).rowcount:
                    inserted.add((source, event_id))
            conn.commit()  # fsynced; also releases the writer lock
        except BaseException:
            try:
                conn.rollback()  # releases the writer lock
            except Exception:
                self._drop()
            raise
        return inserted


_CLAIM_COLUMNS = "id, source, event_id, event_type, status, received_at, dispatched_at, processed_at, body"


@functools.lru_cache(maxsize=32)
def _claim_sql(priorities: tuple[DispatchPriority, ...], *, pg: bool) -> tuple[str, dict[str, Any]]:
    """The dispatcher's claim: the oldest ``received`` deliveries, those of higher ``priorities`` first.

    SQL text with its constant parameters, built once per priority set (a pass runs it several times
    a second under load). On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``.
    """
    params: dict[str, Any] = {"received": DeliveryStatus.RECEIVED.value}
    ranked = sorted((p for p in priorities if p.priority), key=lambda p: -p.priority)
    whens = [f"WHEN ({_pattern_sql('source', p.sources, params)}) AND ({_pattern_sql('event_type', p.event_types, params)})"
             f" THEN {-int(p.priority)}" for p in ranked]
    order = (f"CASE {' '.join(whens)} ELSE 0 END, " if whens else "") + "id"
    sql = f"SELECT {_CLAIM_COLUMNS} FROM inbox WHERE status = :received ORDER BY {order} LIMIT :limit"
    return sql + (" FOR UPDATE SKIP LOCKED" if pg else ""), params


def _pattern_sql(column: str, patterns: tuple[str, ...], params: dict[str, Any]) -> str:
    """SQL for a trigger's patterns (``*``, exact, ``prefix*``) on ``column``; values go into ``params``."""
    conds = []
    for p in patterns:
        if p == "*":
            return "1 = 1"
        name = f"p{len(params)}"
        if p.endswith("*"):
            params[name] = p[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append(f"{column} LIKE :{name} ESCAPE '\\'")
        else:
            params[name] = p
            conds.append(f"{column} = :{name}")
    return " OR ".join(conds) if conds else "1 = 0"
