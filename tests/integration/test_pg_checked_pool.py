"""PostgreSQL pools check a connection at checkout without a round trip, and reads run without a transaction.

``store.db.CheckedQueuePool`` replaces ``pool_pre_ping`` (a statement per checkout) for our engine and
DBOS's: a pooled connection whose session the server ended (here ``pg_terminate_backend``, as a restart
or an idle time-out would) is found at checkout and replaced, so the caller never sees it; a healthy one
is reused. ``RawSql.read`` runs in autocommit on PostgreSQL and hands the connection back to the pool
as it found it. A worker whose DBOS connections were all ended goes on running workflows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from commerce_bridge.store import db as store_db
from commerce_bridge.store.raw import RawSql
from tests.support.engine import deliver, engine_factory_for, run_status, wait_for

pytestmark = pytest.mark.postgres


def _admin(url: str) -> psycopg.Connection:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True)


def _end_sessions(url: str, where: str, *params: object) -> int:
    """End the sessions of ``url``'s database matching ``where`` and wait until they are gone."""
    name = make_url(url).database
    with _admin(url) as admin:
        pids = [r[0] for r in admin.execute(
            f"SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() AND {where}",
            (name, *params)).fetchall()]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the sessions did not end"
            time.sleep(0.05)
    time.sleep(0.1)  # the goodbye reaches the client's socket
    return len(pids)


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[tuple[str, Engine]]:
    eng = store_db.make_engine(pg_database_url, pool_size=1)
    store_db.upgrade(eng)
    yield pg_database_url, eng
    eng.dispose()


def _backend_pid(sql: RawSql) -> int:
    with sql.read() as cur:
        return int(cur.execute("SELECT pg_backend_pid()").one())


def test_a_connection_the_server_ended_is_replaced_at_checkout_and_a_healthy_one_reused(
        pg: tuple[str, Engine]) -> None:
    url, eng = pg
    assert isinstance(eng.pool, store_db.CheckedQueuePool)
    sql = RawSql(eng)
    first = _backend_pid(sql)
    assert _backend_pid(sql) == first  # one pooled connection, reused while healthy
    assert _end_sessions(url, "pid = %s", first) == 1
    second = _backend_pid(sql)  # no error: the dead connection was dropped at checkout
    assert second != first
    with eng.begin() as conn:  # SQLAlchemy Core's checkouts go through the same check
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == second
    _end_sessions(url, "pid = %s", second)
    with eng.begin() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() not in (first, second)


def test_a_read_runs_outside_a_transaction_and_the_pool_gets_the_connection_back_as_it_was(
        pg: tuple[str, Engine]) -> None:
    _, eng = pg
    sql = RawSql(eng)
    with sql.read() as cur:
        cur.execute("SELECT count(*) FROM inbox")
        dbapi = cur._raw.connection  # the driver connection under the cursor
        assert dbapi.autocommit
        assert dbapi.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no BEGIN was sent
    with sql.write() as cur:
        cur.execute("SELECT count(*) FROM inbox")
        dbapi = cur._raw.connection
        assert not dbapi.autocommit
        assert dbapi.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    with pytest.raises(psycopg.errors.UndefinedTable), sql.read() as cur:
        cur.execute("SELECT * FROM no_such_table")
    fairy = eng.raw_connection()
    try:
        assert not fairy.driver_connection.autocommit  # type: ignore[union-attr]
    finally:
        fairy.close()
    with sql.write() as cur:  # a write after a failed read still commits
        cur.execute("UPDATE inbox SET status = status WHERE id = -1")


def test_a_worker_goes_on_after_its_dbos_connections_are_ended(pg_database_url: str, tmp_path: Path) -> None:
    factory = engine_factory_for(pg_database_url, tmp_path)
    make = next(factory)
    try:
        c, _ = make(audit_runs=False)
        deliver(c, "evt_pool_1")
        wait_for(lambda: run_status(c, "stripe:evt_pool_1:test.flow") == "succeeded", timeout=30)
        # DBOS's pooled connections (and its listener's): a restart of the server looks the same to them
        assert _end_sessions(pg_database_url, "application_name = %s", "dbos_transact") >= 1
        deliver(c, "evt_pool_2")
        wait_for(lambda: run_status(c, "stripe:evt_pool_2:test.flow") == "succeeded", timeout=30)
    finally:
        for _ in factory:
            pass
