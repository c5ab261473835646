"""Group commit with linger, and the inbox's direct insert, on a real SQLite file and PostgreSQL.

No test here measures speed (that is bench/ingest.py and ../shared/tools/ingest-peers); the time
bounds below are the contract's (a delivery is answered within its linger bound or its store
timeout), each checked with a wide margin.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, select

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.errors import StoreUnavailable
from commerce_bridge.services.ingest import GroupCommitter
from commerce_bridge.store import db as store_db
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.tables import inbox as inbox_table


def delivery(event_id: str, source: str = "stripe", event_type: str | None = "charge.succeeded") -> Delivery:
    return Delivery(source=source, event_id=event_id, event_type=event_type,
                    body=b'{"id":"%s"}' % event_id.encode(), received_at=datetime.now(UTC))


def stored(engine: Engine, event_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inbox_table)
                                .where(inbox_table.c.event_id == event_id)).scalar_one())


@pytest.fixture
def inbox(engine: Engine) -> Iterator[SqlInbox]:
    box = SqlInbox(engine)
    yield box
    box.close()


async def test_a_lone_delivery_is_committed_at_once(inbox: SqlInbox) -> None:
    committer = GroupCommitter(inbox, linger_s=0.05, commit_timeout_s=30.0)
    try:
        # no arrival rate yet, then a quiet spell: nobody is expected, so nothing waits for company
        assert await committer.submit(delivery("lone_1")) is True
        await asyncio.sleep(0.3)
        assert await committer.submit(delivery("lone_2")) is True
    finally:
        await committer.stop()
    assert (committer.batches, committer.items, committer.lingers) == (2, 2, 0)


async def test_a_stream_shares_commits_and_its_last_delivery_does_not_wait_for_the_bound(inbox: SqlInbox) -> None:
    committer = GroupCommitter(inbox, linger_s=20.0, commit_timeout_s=60.0)
    pending = []
    try:
        for i in range(60):  # a steady stream, one every 2 ms: company is always expected
            pending.append(asyncio.ensure_future(committer.submit(delivery(f"stream_{i}"))))
            await asyncio.sleep(0.002)
        # the stream stops: twice the usual gap without a delivery ends the wait, long before the 20 s bound
        results = await asyncio.wait_for(asyncio.gather(*pending), 15.0)
    finally:
        await committer.stop()
    assert results == [True] * 60
    assert committer.items == 60 and committer.batches < 60 and committer.lingers >= 1


async def test_linger_never_holds_a_delivery_past_its_bound(inbox: SqlInbox) -> None:
    linger = 0.2
    committer = GroupCommitter(inbox, linger_s=linger, commit_timeout_s=30.0)
    loop = asyncio.get_running_loop()
    answered_after: list[float] = []

    async def one(i: int) -> None:
        sent = loop.time()
        assert await committer.submit(delivery(f"bound_{i}")) is True
        answered_after.append(loop.time() - sent)

    tasks = []
    try:
        for i in range(150):  # 1 ms apart for about 0.15 s and more: the batch is cut at the bound, not at the end
            tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(0.001)
        await asyncio.wait_for(asyncio.gather(*tasks), 30.0)
    finally:
        await committer.stop()
    assert committer.items == 150 and committer.lingers >= 1
    # the first delivery of a batch waits at most the linger, then its commit: a few seconds cover any commit here
    assert max(answered_after) < linger + 5.0


async def test_a_burst_is_one_commit(inbox: SqlInbox) -> None:
    committer = GroupCommitter(inbox, linger_s=0.005, commit_timeout_s=30.0)
    try:
        results = await asyncio.gather(*(committer.submit(delivery(f"burst_{i}")) for i in range(50)))
    finally:
        await committer.stop()
    assert results == [True] * 50
    assert (committer.batches, committer.items) == (1, 50)


async def test_duplicates_are_answered_and_stored_once(engine: Engine, inbox: SqlInbox) -> None:
    committer = GroupCommitter(inbox, linger_s=0.005, commit_timeout_s=30.0)
    try:
        first = await asyncio.gather(*(committer.submit(delivery(e)) for e in ("dup_a", "dup_b", "dup_a")))
        again = await committer.submit(delivery("dup_b"))
    finally:
        await committer.stop()
    assert first == [True, True, False] and again is False
    assert stored(engine, "dup_a") == 1 and stored(engine, "dup_b") == 1


async def test_a_locked_sqlite_file_answers_503_within_the_store_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    engine = store_db.make_engine(f"sqlite:///{path}")
    store_db.upgrade(engine)
    box = SqlInbox(engine)
    committer = GroupCommitter(box, linger_s=0.005, commit_timeout_s=0.5)
    other = sqlite3.connect(path, isolation_level=None)  # another process's write transaction, as far as we know
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(committer.submit(delivery("late_1")), 8.0)  # 503 after 0.5 s, not at the 10 s busy timeout
    finally:
        other.execute("ROLLBACK")
        other.close()
    # the write went on and committed once the file was free: the sender's redelivery is a duplicate
    for _ in range(200):
        if stored(engine, "late_1"):
            break
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(committer.submit(delivery("late_1")), 20.0) is False
    await committer.stop()
    assert stored(engine, "late_1") == 1
    box.close()
    engine.dispose()


async def test_an_unreachable_database_answers_503() -> None:
    engine = store_db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    box = SqlInbox(engine)
    committer = GroupCommitter(box, linger_s=0.005, commit_timeout_s=10.0)
    try:
        with pytest.raises(StoreUnavailable):
            await committer.submit(delivery("nowhere"))
    finally:
        await committer.stop()
        box.close()
        engine.dispose()


def test_the_direct_insert_stores_what_the_pooled_insert_stores(engine: Engine, inbox: SqlInbox) -> None:
    at = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    rows = [Delivery("stripe", "same_1", None, b"\x00\xff{}", at), Delivery("erp", "same_1", "t", b"x", at)]
    assert inbox.record_batch(rows) == [True, True]
    assert inbox._insert_pooled([("stripe", "same_2", None, at, b"\x00\xff{}")]) == {("stripe", "same_2")}
    direct, pooled = inbox.get("stripe", "same_1"), inbox.get("stripe", "same_2")
    assert direct is not None and pooled is not None
    assert (direct.event_type, direct.status, direct.received_at, direct.body) == \
           (pooled.event_type, pooled.status, pooled.received_at, pooled.body) == (None, "received", at, b"\x00\xff{}")
    with engine.connect() as conn:  # the same stored representation, not only the same reading
        raw = conn.execute(select(func.count(func.distinct(inbox_table.c.received_at)))
                           .where(inbox_table.c.event_id.in_(["same_1", "same_2"]))).scalar_one()
    assert raw == 1


@pytest.mark.postgres
def test_a_write_stuck_on_another_transaction_does_not_hold_up_the_next(pg_database_url: str) -> None:
    engine = store_db.make_engine(pg_database_url)
    store_db.upgrade(engine)
    box = SqlInbox(engine)
    libpq = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    other = psycopg.connect(libpq)  # inserts the same key and keeps its transaction open
    other.execute("INSERT INTO inbox (source, event_id, status, received_at, body) "
                  "VALUES ('stripe', 'held', 'received', now(), '\\x00')")
    outcome: list[list[bool]] = []
    stuck = threading.Thread(target=lambda: outcome.append(box.record_batch([delivery("held")])))
    stuck.start()
    try:
        stuck.join(0.5)
        assert stuck.is_alive()  # waits on the other transaction's key, holding the direct connection
        assert box.record_batch([delivery("free")]) == [True]  # took the pooled path meanwhile
    finally:
        other.rollback()
        other.close()
    stuck.join(20)
    assert outcome == [[True]]  # the other transaction rolled back: the held key is ours, new
    box.close()
    engine.dispose()


@pytest.mark.postgres
def test_a_broken_direct_connection_falls_back_and_reconnects(pg_database_url: str) -> None:
    engine = store_db.make_engine(pg_database_url)
    store_db.upgrade(engine)
    box = SqlInbox(engine)
    assert box.record_batch([delivery("before")]) == [True]
    libpq = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as admin:  # a restart, as the bridge sees it
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert box.record_batch([delivery("after"), delivery("before")]) == [True, False]
    assert box.record_batch([delivery("later")]) == [True]
    assert [stored(engine, e) for e in ("before", "after", "later")] == [1, 1, 1]
    box.close()
    engine.dispose()


@pytest.mark.postgres
async def test_a_commit_stuck_on_another_transaction_answers_503_in_time_and_lands_later(pg_database_url: str) -> None:
    engine = store_db.make_engine(pg_database_url)
    store_db.upgrade(engine)
    box = SqlInbox(engine)
    committer = GroupCommitter(box, linger_s=0.005, commit_timeout_s=0.5)
    libpq = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    other = psycopg.connect(libpq)  # inserts the same key and keeps its transaction open
    other.execute("INSERT INTO inbox (source, event_id, status, received_at, body) "
                  "VALUES ('stripe', 'held', 'received', now(), '\\x00')")
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(committer.submit(delivery("held")), 10.0)
        # the stuck write keeps its connection; the next batch takes another path and is not held up
        assert await asyncio.wait_for(committer.submit(delivery("free")), 10.0) is True
    finally:
        other.rollback()
        other.close()
    for _ in range(200):  # the stuck write goes on and lands once the other transaction is gone
        if stored(engine, "held"):
            break
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(committer.submit(delivery("held")), 10.0) is False  # the redelivery: a duplicate
    await committer.stop()
    assert stored(engine, "held") == 1 and stored(engine, "free") == 1
    box.close()
    engine.dispose()
