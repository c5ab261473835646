"""Hot statements on the driver connection: SQL text prepared once, no SQLAlchemy statement per call.

Rules
-----
* Only the statements that run several times per order and showed in the profile go here (issue 10,
  point 10: the identity map and the run status). Everything else stays SQLAlchemy Core, which costs
  about 0.3-0.5 ms of Python per statement to build, key and compile-cache; here a statement costs
  the driver's work only. On PostgreSQL psycopg prepares a statement it has run five times on a
  connection (server-side prepared statements).
* SQL is written once with ``:name`` parameters (sqlite3's style) and converted to ``%(name)s`` for
  psycopg. Timestamps are written as SQLAlchemy writes ``UtcDateTime`` (SQLite: naive UTC text
  ``YYYY-MM-DD HH:MM:SS.ffffff``; PostgreSQL: an aware datetime), so both layers read each other's rows.
* A write is one transaction: on SQLite it takes the file's writer lock and ``BEGIN IMMEDIATE``
  exactly as the engine's ``begin`` hook does (see ``store.db``); a failure rolls back. Driver errors
  that mean "the database is unavailable" become ``StoreUnavailable`` through ``translate_db_errors``.
* A read on PostgreSQL runs in autocommit: one round trip per statement, no ``BEGIN``/``COMMIT``
  around it (two of the three round trips of a lookup before). Our reads are plain ``SELECT``
  statements under READ COMMITTED, where each statement takes its own snapshot inside a transaction
  too, so they see the same rows; a read never takes a lock (``FOR UPDATE``, advisory locks) and never
  writes.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from commerce_bridge.store.db import translate_db_errors

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class Cursor:
    """A driver cursor that takes our ``:name`` SQL (see the module docstring)."""

    def __init__(self, raw: Any, pg: bool) -> None:
        self._raw = raw
        self._pg = pg

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        self._raw.execute(_for_pg(sql) if self._pg else sql, params or {})
        return self

    def executemany(self, sql: str, params: list[Mapping[str, Any]]) -> Cursor:
        self._raw.executemany(_for_pg(sql) if self._pg else sql, params)
        return self

    def one(self) -> Any:
        """The first column of the first row, or None."""
        row = self._raw.fetchone()
        return None if row is None else row[0]

    def row(self) -> tuple[Any, ...] | None:
        """The first row, or None."""
        row = self._raw.fetchone()
        return None if row is None else tuple(row)

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._raw.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)


_PG_SQL: dict[str, str] = {}


def _for_pg(sql: str) -> str:
    out = _PG_SQL.get(sql)
    if out is None:
        out = _PG_SQL[sql] = _PARAM.sub(r"%(\1)s", sql)
    return out


class RawSql:
    """Runs SQL text on ``engine``'s pooled driver connections (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.pg = engine.dialect.name == "postgresql"

    def ts(self, moment: datetime) -> Any:
        """``moment`` as a ``UtcDateTime`` column stores it on this database."""
        moment = moment.astimezone(UTC)
        return moment if self.pg else moment.replace(tzinfo=None).isoformat(" ", "microseconds")

    def now(self) -> Any:
        return self.ts(datetime.now(UTC))

    def from_ts(self, value: Any) -> datetime | None:
        """A ``UtcDateTime`` column's value as read by the driver, as an aware UTC datetime."""
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self._connection(write=False) as cur:
            yield cur

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        """One write transaction (committed at the end of the block, rolled back on an exception)."""
        with self._connection(write=True) as cur:
            yield cur

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Cursor]:
        with translate_db_errors():
            fairy = self._engine.raw_connection()
            try:
                dbapi: Any = fairy.driver_connection
                if write and not self.pg:
                    begin = getattr(dbapi, "begin_immediate", None)
                    if begin is not None:
                        begin()
                    else:  # an in-memory database (tests): no writer queue
                        dbapi.execute("BEGIN IMMEDIATE")
                autocommit = self.pg and not write
                if autocommit:  # a read: each statement its own snapshot, as under READ COMMITTED anyway
                    dbapi.autocommit = True
                raw = dbapi.cursor()
                try:
                    yield Cursor(raw, self.pg)
                    if write:
                        dbapi.commit()
                except BaseException:
                    if not autocommit:
                        dbapi.rollback()
                    raise
                finally:
                    raw.close()
                    if autocommit:  # back to the pool as SQLAlchemy expects it (a broken one is discarded)
                        with contextlib.suppress(Exception):
                            dbapi.autocommit = False
            finally:
                fairy.close()


class OwnConnection:
    """One driver connection of our own, outside the pool, in autocommit on PostgreSQL.

    For a hot statement that is a transaction by itself (the shared rate limiter's reservation): no
    pool checkout and its ping, no ``BEGIN``/``COMMIT`` round trips. One statement at a time (a lock);
    a connection that fails is dropped and the next call opens another, so a database restart costs
    one failed call, which surfaces as ``StoreUnavailable`` (``translate_db_errors``). PostgreSQL only.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("OwnConnection is for PostgreSQL (SQLite writes go through the file's writer queue)")
        self._engine = engine
        self._lock = threading.Lock()
        self._fairy: Any = None

    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        """A cursor of the connection, held alone for the block; each statement commits by itself."""
        with self._lock, translate_db_errors():
            try:
                if self._fairy is None:
                    fairy: Any = self._engine.raw_connection()
                    fairy.detach()  # never back into the pool: autocommit stays with it
                    fairy.dbapi_connection.autocommit = True
                    self._fairy = fairy
                yield Cursor(self._fairy.dbapi_connection.cursor(), True)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone anyway
                fairy.close()


__all__ = ["Cursor", "OwnConnection", "RawSql"]
