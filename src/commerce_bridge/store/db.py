"""Database engines (SQLite with WAL + synchronous=FULL, or PostgreSQL), migrations and health checks."""

from __future__ import annotations

import collections
import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import psycopg
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import NullPool, QueuePool

from commerce_bridge.errors import StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged event survives a power cut.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class FairLock:
    """A reentrant lock that hands itself to the waiters in arrival order.

    ``threading.RLock`` lets any waiter win, so under a stream of short transactions an unlucky thread
    could wait for many turns; here each waiter waits on its own event and the releasing thread
    passes ownership to the longest-waiting one.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._count = 0
        self._waiters: collections.deque[tuple[int, threading.Event]] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._count += 1
                return True
            if self._owner is None and not self._waiters:
                self._owner, self._count = me, 1
                return True
            if not blocking:
                return False
            turn = (me, threading.Event())
            self._waiters.append(turn)
        turn[1].wait(None if timeout < 0 else timeout)
        with self._mutex:
            if self._owner == me:  # handed over (possibly just as the wait timed out)
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a lock this thread does not hold")
            self._count -= 1
            if self._count:
                return
            if self._waiters:
                owner, event = self._waiters.popleft()
                self._owner, self._count = owner, 1
                event.set()
            else:
                self._owner = None


_WRITER_LOCKS: dict[str, FairLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: str) -> FairLock:
    key = str(Path(path).resolve())
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, FairLock())


WRITER_LOCK_TIMEOUT_S = 30.0
"""How long a writer waits for the file's writer lock by default (``make_engine(writer_lock_timeout_s=)``).

Like SQLite's own busy timeout: a transaction left open for this long is a bug; fail loudly."""


def _locked(timeout_s: float) -> str:
    return (f"database is locked (another thread of this process held the write lock for more than "
            f"{timeout_s:g} s)")


class _HoldsWriterLock:
    """Mixin for pysqlite connections: the file's writer lock, held until commit, rollback or close.

    ``lock_timeout_s`` is how long this connection waits for the lock (``make_engine`` sets it)."""

    lock: FairLock
    lock_timeout_s: float = WRITER_LOCK_TIMEOUT_S
    holds: int = 0

    def take_lock(self) -> None:
        if not self.lock.acquire(timeout=self.lock_timeout_s):
            raise sqlite3.OperationalError(_locked(self.lock_timeout_s))
        self.holds += 1

    def release_lock(self) -> None:
        while self.holds:
            self.holds -= 1
            self.lock.release()

    def commit(self) -> None:
        try:
            super().commit()  # type: ignore[misc]
        finally:
            self.release_lock()

    def rollback(self) -> None:
        try:
            super().rollback()  # type: ignore[misc]
        finally:
            self.release_lock()

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self.release_lock()


class _QueuedWriterConnection(_HoldsWriterLock, sqlite3.Connection):
    """A pysqlite connection whose transactions queue on one lock per database file in this process.

    Every transaction begins with ``BEGIN IMMEDIATE`` (it takes SQLite's write lock up front). When
    several threads of one process want it at once, SQLite's busy handler makes the losers sleep and
    retry with growing sleeps (up to 100 ms each), so under load a short transaction waited hundreds
    of milliseconds for a lock that was free most of that time. Here the threads wait on a Python
    lock instead and the next one starts as soon as the previous one has committed. Other processes
    (the CLI, a second bridge process) still meet SQLite's own lock and busy timeout.
    """

    def begin_immediate(self) -> None:
        try:
            self.take_lock()
        except sqlite3.OperationalError as exc:  # raised from SQLAlchemy's begin hook: give callers our own error
            raise StoreUnavailable(str(exc), suggested_fix="look for a transaction left open (a bug) in the log") from exc
        try:
            self.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # another process kept the file locked past the busy timeout
            self.release_lock()
            raise StoreUnavailable(f"database unavailable: {exc}",
                                   suggested_fix="another process holds the SQLite file's write lock "
                                                 "(a backup, VACUUM or sqlite3 shell?)") from exc
        except BaseException:
            self.release_lock()
            raise


class _QueuedWriterCursor(sqlite3.Cursor):
    """For connections in pysqlite's implicit-transaction mode (DBOS's engine database): take the
    file's writer lock before a statement that may open a write transaction; release it when no
    transaction is left open."""

    connection: QueuedImplicitConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        return self._locked(sql, super().execute, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        return self._locked(sql, super().executemany, seq_of_parameters)

    def _locked(self, sql: str, run: Any, parameters: Any) -> Self:
        conn = self.connection
        take = not conn.in_transaction and _may_write(sql)
        if take:
            conn.take_lock()  # inside DBOS's statement execution: a driver error it knows how to treat
        try:
            return run(sql, parameters)  # type: ignore[no-any-return]
        finally:
            if take and not conn.in_transaction:
                conn.release_lock()


def _may_write(sql: str) -> bool:
    head = sql.lstrip()[:8].upper()
    return not (head.startswith("SELECT") or head.startswith("PRAGMA"))


class QueuedImplicitConnection(_HoldsWriterLock, sqlite3.Connection):
    """The engine database's connections (DBOS opens them with ``isolation_level="IMMEDIATE"``, so
    pysqlite begins a write transaction implicitly before a write): like
    :class:`_QueuedWriterConnection`, threads of this process queue on one lock per file instead of
    sleeping in SQLite's busy handler. Pass it to DBOS as ``connect_args={"factory": ...}``; the
    lock is found by the file's path."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.lock = _writer_lock(database)

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _QueuedWriterCursor)


def make_engine(url: str, *, pool_size: int = 5, writer_lock_timeout_s: float = WRITER_LOCK_TIMEOUT_S) -> Engine:
    """An engine for ``url``; SQLite files get their directory created and the durability pragmas.

    ``writer_lock_timeout_s``: how long a write transaction of this engine waits for the SQLite file's
    writer lock in this process before it fails with ``StoreUnavailable`` (ignored for PostgreSQL).
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        memory = not path or path == ":memory:"
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 10}
        if not memory:
            connect_args["factory"] = _QueuedWriterConnection
        engine = create_engine(url, poolclass=NullPool if memory else None, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        if not memory:
            lock = _writer_lock(path)

            @event.listens_for(engine, "connect")
            def _share_lock(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.lock = lock
                dbapi_conn.lock_timeout_s = writer_lock_timeout_s

        # pysqlite's own transaction handling defers BEGIN; make it explicit so writes lock up front.
        def _begin(conn: Connection) -> None:
            dbapi = conn.connection.dbapi_connection
            if isinstance(dbapi, _QueuedWriterConnection):
                dbapi.begin_immediate()
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine, "begin", _begin)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, poolclass=CheckedQueuePool,
                         pool_recycle=1800, connect_args={"connect_timeout": 5})


class CheckedQueuePool(QueuePool):
    """SQLAlchemy's ``QueuePool`` for PostgreSQL that checks a connection at checkout without a round trip.

    ``pool_pre_ping`` sends a statement on every checkout: on PostgreSQL that was about one in five of
    all statements per order (issue 10), each a round trip with a backend wake-up. A pooled connection
    is idle between checkouts, so the server has nothing to say to it; when it ends the session (a
    restart, ``pg_terminate_backend``, an idle timeout) it sends an error and closes the socket. So at
    checkout a connection whose socket is readable, or whose driver already knows it is broken, is
    discarded and the pool opens another one (``DisconnectionError``), like a failed pre-ping. A
    connection that dies silently (a network partition without a reset) is found by its next statement,
    as with a pre-ping (which then waits for the TCP time-out). Used for our engine and DBOS's.
    """


def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """The checkout check of :class:`CheckedQueuePool`: local only (a zero-timeout ``poll`` of the socket)."""
    pgconn = getattr(dbapi_conn, "pgconn", None)
    if pgconn is None:  # not psycopg: nothing to check locally
        return
    try:
        if dbapi_conn.closed or dbapi_conn.broken or pgconn.status != psycopg.pq.ConnStatus.OK:
            raise DisconnectionError("the connection is closed")
        if pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise DisconnectionError("the connection came back inside a transaction")
        watch = select.poll()
        watch.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        if watch.poll(0):  # the server spoke to an idle connection: most likely its goodbye
            raise DisconnectionError("the server sent data to an idle pooled connection (session ended?)")
    except psycopg.Error as exc:
        raise DisconnectionError(f"the connection is unusable: {type(exc).__name__}") from exc


event.listen(CheckedQueuePool, "checkout", _checked_out)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def migration_status(engine: Engine) -> tuple[str | None, str]:
    """(current revision of the database, head revision of the code)."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    head = script.get_current_head() or ""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn driver connection failures into StoreUnavailable (the one place that does it)."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # raised by pysqlite outside SQLAlchemy's wrapping (a begin hook)
        raise StoreUnavailable(f"database unavailable: {exc}") from exc
    except psycopg.OperationalError as exc:  # raised by psycopg used directly (store.raw, the inbox's direct insert)
        raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise StoreUnavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
        raise


def ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))
