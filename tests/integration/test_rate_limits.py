"""Shared call limits on SQLite and PostgreSQL: batches of slots across processes, and where slots live."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.engine.limits import BatchedSlots, CallLimiter, LocalSlots
from commerce_bridge.metrics import Metrics
from commerce_bridge.store import db as store_db
from commerce_bridge.store.coordination import SqlRateLimiter, SqlWorkerLeases
from tests.support.limits import CheckClock, Recording, max_in_window


def test_two_processes_keep_one_limit_with_batches_of_slots(database_url: str) -> None:
    rate, margin = 40, 0.1
    engines = [store_db.make_engine(database_url) for _ in range(2)]  # two pools: as two worker processes
    store_db.upgrade(engines[0])
    clock = CheckClock()
    processes = []
    for engine in engines:
        batched = BatchedSlots(SqlRateLimiter(engine, SqlWorkerLeases(engine)))
        slots = Recording(batched)
        processes.append((batched, slots, CallLimiter(slots, {"stripe": rate}, margin, Metrics(), clock=clock)))
    calls: list[tuple[float, tuple[float, float]]] = []
    lock = threading.Lock()

    def caller(slots: Recording, limiter: CallLimiter) -> None:
        for _ in range(12):
            limiter.wait("stripe")
            with lock:
                calls.append((clock.last(), slots.last_window()))

    threads = [threading.Thread(target=caller, args=(slots, limiter))
               for _batched, slots, limiter in processes for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for engine in engines:
            engine.dispose()
    assert len(calls) == 96
    for at, (start, end) in calls:  # every call was made within a window of its own ...
        assert start <= at <= end
    assert max_in_window([at for at, _ in calls]) <= rate  # ... so no second holds more than the limit
    reservations = sum(batched.reservations for batched, _slots, _limiter in processes)
    assert reservations < 96 * 0.75, reservations  # waiting callers shared transactions


@pytest.mark.parametrize(("scope", "kind"), [("auto", None), ("process", LocalSlots), ("shared", BatchedSlots)])
def test_slots_live_in_memory_on_sqlite_unless_the_scope_says_shared(
        database_url: str, tmp_path: Path, scope: str, kind: type | None) -> None:
    settings = load_settings(database_url=database_url, rate_limit_scope=scope,
                             engine_database_url=f"sqlite:///{tmp_path / 'engine.sqlite'}")
    c = bootstrap(settings, "cli")
    try:
        expected = kind or (LocalSlots if database_url.startswith("sqlite") else BatchedSlots)
        assert isinstance(c.limiter, expected)
    finally:
        c.close()
