"""SQLite write transactions of one process queue on a lock per file instead of SQLite's busy handler."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from commerce_bridge.store.db import QueuedImplicitConnection, _writer_lock, make_engine


def _lock_is_free(path: Path) -> bool:
    """Asked from another thread: the lock is reentrant, so its holder could always take it again."""
    lock = _writer_lock(str(path))
    answer: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        answer.append(got)

    t = threading.Thread(target=probe)
    t.start()
    t.join(5)
    return answer == [True]


def test_concurrent_writers_all_commit_and_leave_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    engine = make_engine(f"sqlite:///{path}", pool_size=8)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (i INTEGER)"))
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(40):
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (:i)"), {"i": k * 1000 + i})
                with engine.connect() as conn:  # a read: its transaction ends when the connection closes
                    conn.execute(text("SELECT count(*) FROM t")).scalar_one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 320
    assert _lock_is_free(path)
    engine.dispose()


def test_a_failed_transaction_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (i INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert _lock_is_free(path)
    done = threading.Event()

    def other_thread_writes() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        done.set()

    threading.Thread(target=other_thread_writes).start()
    assert done.wait(5), "another thread could not write after a failed transaction"
    engine.dispose()


def _waiters(path: Path) -> int:
    return len(_writer_lock(str(path))._waiters)


def test_a_second_writer_queues_on_the_lock_and_goes_when_the_first_commits(tmp_path: Path) -> None:
    """Queued on the lock, not sleeping in SQLite's busy handler (whose sleeps reach 50-100 ms).

    The second writer's connection has SQLite's busy timeout at 0: had its ``BEGIN IMMEDIATE`` met the
    first writer's transaction in SQLite, it would fail at once with "database is locked". It waits on
    the file's writer lock instead, and the lock hands itself to it when the first commits.
    """
    path = tmp_path / "q.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (i INTEGER)"))
    order: list[str] = []
    errors: list[BaseException] = []
    first_in, second_ready, let_go = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            first_in.set()
            let_go.wait(10)
            order.append("first commits")

    def second() -> None:
        try:
            with engine.connect() as conn:
                conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                second_ready.set()
                first_in.wait(10)
                with conn.begin():
                    order.append("second began")
                    conn.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:
            errors.append(exc)

    one, two = threading.Thread(target=first), threading.Thread(target=second)
    two.start()
    assert second_ready.wait(10)
    one.start()
    deadline = time.monotonic() + 10
    while _waiters(path) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _waiters(path) == 1, "the second writer waits on the file's writer lock"
    let_go.set()
    one.join(10)
    two.join(10)
    assert errors == []
    assert order == ["first commits", "second began"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT i FROM t ORDER BY rowid")).scalars().all() == [1, 2]
    engine.dispose()


def test_implicit_transactions_of_the_engine_database_take_and_release_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite"
    conn = sqlite3.connect(str(path), factory=QueuedImplicitConnection, check_same_thread=False)
    conn.isolation_level = "IMMEDIATE"  # as DBOS opens its connections
    conn.execute("CREATE TABLE t (i INTEGER)")
    conn.commit()
    assert _lock_is_free(path)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM t").fetchone()
    assert not conn.in_transaction and _lock_is_free(path)  # a read takes nothing
    cur.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    seen: list[bool] = []
    probe = threading.Thread(target=lambda: seen.append(_lock_is_free(path)))
    probe.start()
    probe.join()
    assert seen == [False]  # held by this connection's open write transaction
    conn.commit()
    assert _lock_is_free(path)
    cur.execute("INSERT INTO t VALUES (2)")
    conn.rollback()
    assert _lock_is_free(path)
    conn.close()


def test_a_writer_that_cannot_get_the_lock_in_time_gets_store_unavailable(tmp_path: Path) -> None:
    from commerce_bridge import errors as E

    path = tmp_path / "t.sqlite"
    engine = make_engine(f"sqlite:///{path}", writer_lock_timeout_s=0.2)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (i INTEGER)"))
    holding, finish = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            finish.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    with pytest.raises(E.StoreUnavailable, match=r"database is locked .* more than 0\.2 s"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    finish.set()
    holder.join(10)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    assert _lock_is_free(path)
    engine.dispose()
