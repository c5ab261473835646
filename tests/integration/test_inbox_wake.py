"""PostgreSQL LISTEN / NOTIFY wakes the workers' dispatchers when another process stores deliveries.

The notifier folds pokes into at most one NOTIFY per interval without losing the last one; the
listener calls back on each notification; a worker whose dispatcher would otherwise wait 30 s
starts a run stored by "another process" (a plain inbox write plus a NOTIFY) within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.store import db as store_db
from commerce_bridge.store.wake import InboxListener, InboxNotifier
from tests.support.engine import engine_factory_for, run_status, wait_for


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[tuple[str, Engine]]:
    eng = store_db.make_engine(pg_database_url)
    store_db.upgrade(eng)
    yield pg_database_url, eng
    eng.dispose()


def test_a_notify_wakes_the_listener_and_pokes_fold_into_few_notifies(pg: tuple[str, Engine]) -> None:
    url, eng = pg
    wakes: list[float] = []
    listener = InboxListener(url, lambda: wakes.append(time.monotonic()))
    notifier = InboxNotifier(eng, min_interval_s=0.25)
    listener.start()
    notifier.start()
    try:
        assert listener.listening.wait(10)
        wait_for(lambda: len(wakes) >= 1)  # the wake on (re)connect: whatever came while not listening
        before = len(wakes)
        started = time.monotonic()
        for _ in range(99):  # a burst of commits over about 1 s
            notifier.poke()
            time.sleep(0.01)
        last_poke = time.monotonic()  # taken before the last poke: a NOTIFY it causes is received after it
        notifier.poke()
        wait_for(lambda: bool(wakes) and wakes[-1] > last_poke, timeout=5)  # the last poke is not lost
        sent = len(wakes) - before
        assert 1 <= sent <= (last_poke - started) / 0.25 + 3, sent
    finally:
        notifier.stop()
        listener.stop()
    assert not listener.listening.is_set()


def test_a_worker_starts_a_run_stored_elsewhere_when_notified(pg_database_url: str, tmp_path: Path) -> None:
    # The dispatcher would wait 30 s between passes; the NOTIFY makes it look at once.
    factory = engine_factory_for(pg_database_url, tmp_path)
    make = next(factory)
    try:
        c, _ = make(dispatch_interval_s=30.0, engine_idle_poll_s=30.0, audit_runs=False)
        assert c.listener is not None and c.engine is not None
        c.listener.start()
        assert c.listener.listening.wait(10)
        time.sleep(1.0)  # the first passes are done; the dispatcher now waits 30 s
        body = b'{"id": "evt_wake_1", "type": "test.happened", "data": {"amount_minor": 1}}'
        c.inbox.record_batch([Delivery("stripe", "evt_wake_1", "test.happened", body, datetime.now(UTC))])
        stored = time.monotonic()
        notifier = InboxNotifier(c.db)
        notifier.start()
        notifier.poke()
        try:
            wait_for(lambda: run_status(c, "stripe:evt_wake_1:test.flow") == "succeeded", timeout=20)
        finally:
            notifier.stop()
        assert time.monotonic() - stored < 15
        c.listener.stop()
    finally:
        for _ in factory:  # stops the workers it made
            pass
