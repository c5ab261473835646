"""Key locks: short-lived named locks, one critical section per key across every process that shares the store.

A find-then-create step ("is there a Stripe customer with this e-mail? no: create one") is only
idempotent if no second run does the same for the same key in between. Two orders of one new customer
processed at once would otherwise both find nothing and both create. Such steps hold the lock named by
their key around the find and the create, and nothing else: never across a retry's backoff.

Where a lock lives (``SqlKeyLocks(scope=...)``), cheapest first:

* ``process`` (one process calls out: ``serve`` on SQLite): an in-process lock, no database write.
* ``shared`` on PostgreSQL: ``pg_advisory_xact_lock`` in a transaction held around the critical section; it is
  released by the commit, or by the server when the holder's connection dies (no lease to wait for).
* ``shared`` on SQLite (several processes on one file): a lease row in ``key_locks``, taken and deleted
  by a write transaction each.

The lease rows are also what long-lived holders (the Clarity poller's leader) use, through
:meth:`SqlKeyLocks.try_acquire` on every backend.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from sqlalchemy import Engine, delete, func, select

from commerce_bridge.errors import Conflict
from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.raw import RawSql
from commerce_bridge.store.tables import key_locks

__all__ = ["SqlKeyLocks", "lock_name"]

log = structlog.get_logger("commerce_bridge.store.locks")
MAX_SCOPE = 150


def lock_name(scope: str, key: str) -> str:
    """``scope:<digest of key>``: a fixed-length row key that keeps e-mails (PII) out of the table and logs."""
    if not scope or len(scope) > MAX_SCOPE:
        raise ValueError(f"a lock scope must be 1-{MAX_SCOPE} characters")
    return f"{scope}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


class _LocalQueue:
    """One in-process lock per name, created on demand and dropped when nobody uses it.

    Threads of one process wanting the same key wait here, so only one of them at a time polls the
    database (on SQLite every attempt is a write transaction).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, list[Any]] = {}  # name -> [lock, users]

    def acquire(self, name: str, timeout_s: float) -> list[Any] | None:
        with self._guard:
            entry = self._entries.setdefault(name, [threading.Lock(), 0])
            entry[1] += 1
        if entry[0].acquire(timeout=max(0.0, timeout_s)):
            return entry
        self._drop(name, entry)
        return None

    def release(self, name: str, entry: list[Any]) -> None:
        entry[0].release()
        self._drop(name, entry)

    def _drop(self, name: str, entry: list[Any]) -> None:
        with self._guard:
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[name]


_PROCESS_LOCKS = _LocalQueue()  # scope "process": the one set of key locks of this process


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock`` (a collision only makes two keys wait for each other)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_ADVISORY_LOCK = ("SELECT pg_advisory_xact_lock(:key) FROM (SELECT set_config('lock_timeout', :timeout, true)) "
                  "AS timeout")


class SqlKeyLocks:
    """Implements ``services.ports.KeyLocks``: in-process, PostgreSQL advisory locks, or ``key_locks`` rows.

    ``scope="process"`` (one process calls out, as ``serve`` on SQLite): :meth:`hold` takes an in-process
    lock and writes nothing. Shared, on PostgreSQL, :meth:`hold` takes a transaction-scoped advisory lock
    (waiting at most ``timeout_s``, through ``lock_timeout``). Otherwise (``shared`` on SQLite) it takes a
    lease row as described next; :meth:`try_acquire` / :meth:`release` always use the rows.

    A held lock is a row ``(name, holder, expires_at)``. Taking it is one statement: insert the row,
    or take over the row if its lease ran out (its holder crashed), returning the row only when this
    caller got it. A caller that finds the lock held sleeps a little (20 ms growing to 250 ms, with
    jitter) and tries again, up to ``timeout_s``; then it gets ``Conflict``, a transient error the
    engine retries with backoff (never a silent skip). Releasing deletes the row only for the holder
    that has it, so a holder whose lease was taken over cannot release the new holder's lock.

    The lease must outlast the longest critical section (a few HTTP calls with their timeouts): a
    holder that finds on release that its lease was taken over logs ``key_lock.lease_lost``. Lease
    times are on the database's clock for PostgreSQL (workers on different hosts agree) and on the
    local clock for SQLite (one host).

    Parameters
    ----------
    engine:
        Our database.
    lease_s:
        How long a lock protects its holder; a crashed holder blocks its key at most this long.
    timeout_s:
        How long :meth:`acquire` waits for a held lock before raising ``Conflict``.
    """

    def __init__(self, engine: Engine, *, lease_s: float = 60.0, timeout_s: float = 30.0,
                 poll_s: float = 0.02, max_poll_s: float = 0.25, scope: str = "shared") -> None:
        if lease_s <= 0 or timeout_s < 0:
            raise ValueError("lease_s must be positive and timeout_s not negative")
        if scope not in ("process", "shared"):
            raise ValueError(f"a key-lock scope is process or shared, not {scope!r}")
        self._engine = engine
        self._sql = RawSql(engine)
        self._pg = engine.dialect.name == "postgresql"
        self.mode = "process" if scope == "process" else ("advisory" if self._pg else "rows")
        self.lease_s, self.timeout_s = lease_s, timeout_s
        self._poll_s, self._max_poll_s = poll_s, max_poll_s
        self._owner = f"{socket.gethostname()[:60]}:{os.getpid()}"
        self._local = _LocalQueue()
        self._rng = random.Random()

    def new_holder(self) -> str:
        """A token naming one acquisition (host, process and a random part)."""
        return f"{self._owner}:{uuid.uuid4().hex[:16]}"

    def try_acquire(self, name: str, holder: str, *, lease_s: float | None = None) -> bool:
        """One attempt: take ``name`` for ``holder`` if it is free, its lease has expired, or ``holder``
        has it already (then its lease is renewed: a long-lived holder, such as the poller's leader, calls
        this again before its lease runs out)."""
        lease = self.lease_s if lease_s is None else lease_s
        now: Any = func.extract("epoch", func.clock_timestamp()) if self._pg else time.time()
        ins = insert_ignore(self._engine, key_locks).values(name=name, holder=holder, expires_at=now + lease)
        stmt = ins.on_conflict_do_update(
            index_elements=["name"], set_={"holder": ins.excluded.holder, "expires_at": ins.excluded.expires_at},
            where=(key_locks.c.expires_at < now) | (key_locks.c.holder == holder),
        ).returning(key_locks.c.holder)
        with translate_db_errors(), self._engine.begin() as conn:
            row = conn.execute(stmt).first()
        return row is not None and row[0] == holder

    def release(self, name: str, holder: str) -> bool:
        """Free ``name`` if ``holder`` still has it; False (and nothing changed) otherwise."""
        with translate_db_errors(), self._engine.begin() as conn:
            n = conn.execute(delete(key_locks).where(key_locks.c.name == name, key_locks.c.holder == holder)).rowcount
        return n == 1

    def holder_of(self, name: str, *, live: bool = False) -> str | None:
        """Who has ``name`` now, or None; with ``live``, only a holder whose lease has not run out."""
        stmt = select(key_locks.c.holder).where(key_locks.c.name == name)
        if live:
            now: Any = func.extract("epoch", func.clock_timestamp()) if self._pg else time.time()
            stmt = stmt.where(key_locks.c.expires_at >= now)
        with translate_db_errors(), self._engine.connect() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    def acquire(self, name: str, holder: str, *, timeout_s: float | None = None) -> None:
        """Wait until ``holder`` has ``name``.

        Raises
        ------
        Conflict
            Still held by someone else after ``timeout_s``.
        """
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        delay = self._poll_s
        while not self.try_acquire(name, holder):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._busy(name)
            time.sleep(min(remaining, delay * (0.5 + self._rng.random())))
            delay = min(self._max_poll_s, delay * 2)

    @contextmanager
    def hold(self, scope: str, key: str) -> Iterator[None]:
        """Run the ``with`` block while holding the lock of ``key`` in ``scope`` (see the class docstring).

        Raises
        ------
        Conflict
            The lock stayed held by another caller for ``timeout_s``.
        """
        name = lock_name(scope, key)
        deadline = time.monotonic() + self.timeout_s
        queue = _PROCESS_LOCKS if self.mode == "process" else self._local
        local = queue.acquire(name, self.timeout_s)
        if local is None:
            raise self._busy(name)
        try:
            if self.mode == "process":
                yield
            elif self.mode == "advisory":
                with self._advisory(name, max(0.0, deadline - time.monotonic())):
                    yield
            else:
                holder = self.new_holder()
                self.acquire(name, holder, timeout_s=max(0.0, deadline - time.monotonic()))
                try:
                    yield
                finally:
                    if not self.release(name, holder):
                        log.warning("key_lock.lease_lost", lock=name, lease_s=self.lease_s)
        finally:
            queue.release(name, local)

    @contextmanager
    def _advisory(self, name: str, timeout_s: float) -> Iterator[None]:
        """Hold ``pg_advisory_xact_lock`` of ``name`` for the block: one transaction, released at its end.

        One statement takes it: the subquery sets this transaction's ``lock_timeout`` before the lock is
        asked for (SQL text on the driver, ``store.raw``: this runs once per ensure step).
        """
        import psycopg  # the driver lives in the store only

        with self._sql.write() as cur:
            try:
                cur.execute(_ADVISORY_LOCK, {"key": _advisory_key(name),
                                             "timeout": f"{max(1, int(timeout_s * 1000))}ms"})
            except psycopg.errors.LockNotAvailable:  # lock_timeout ran out
                raise self._busy(name) from None
            yield

    def _busy(self, name: str) -> Conflict:
        scope = name.rsplit(":", 1)[0]
        return Conflict(
            f"another run is creating the same {scope} record (lock {name} still held after {self.timeout_s:g} s)",
            suggested_fix="retried automatically; if it persists, look for a stuck run in the logs "
                          "(a crashed holder's lock frees itself after its lease)",
        )
