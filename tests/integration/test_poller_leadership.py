"""One poller per source across processes: the lease on a key lock, on SQLite and PostgreSQL.

Two pollers share a database as two ``serve``/``worker`` processes would (separate lock-store objects,
so only the database row decides). Exactly one polls; when it stops, the other takes over; when it
dies without giving the lease back, the other takes over once the lease has run out. Each test checks
the order of events against the lease the database holds (its ``expires_at``), not elapsed times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from commerce_bridge.services.polling import ChangePoller, Leadership, poll_lease_s
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.locks import SqlKeyLocks
from commerce_bridge.store.tables import key_locks

LEASE_S = 0.9
CRASH_LEASE_S = 3.0  # its last renewal ends at least 2 s after the crash: time to read it first
INTERVAL_S = 0.03
LOCK = "poller:clarity"


class Source:
    """The polled system: counts the polls of each poller, notes when each first polled (epoch seconds,
    the clock of the SQLite lease and, on this host, of PostgreSQL's) and hands each a new change."""

    def __init__(self) -> None:
        self.polls: dict[str, int] = {}
        self.first: dict[str, float] = {}
        self._lock = threading.Lock()

    def poll_for(self, who: str) -> Callable[[Callable[[list[dict[str, Any]]], Any]], None]:
        def poll(deliver: Callable[[list[dict[str, Any]]], Any]) -> None:
            with self._lock:
                self.first.setdefault(who, time.time())
                n = self.polls[who] = self.polls.get(who, 0) + 1
            deliver([{"id": f"{who}-{n}", "type": "salesorder.updated"}])
        return poll


def _poller(engine: Engine, source: Source, who: str, lease_s: float = LEASE_S,
            clock: Callable[[], float] = time.monotonic) -> ChangePoller:
    leader = Leadership(SqlKeyLocks(engine), LOCK, f"host:{who}", lease_s=lease_s, clock=clock)
    return ChangePoller("clarity", source.poll_for(who), SqlInbox(engine), interval_s=INTERVAL_S, leader=leader)


def _lease(engine: Engine) -> tuple[str, float]:
    """Who holds the poller lease in the database, and when it runs out (epoch seconds)."""
    with engine.connect() as conn:
        row = conn.execute(select(key_locks.c.holder, key_locks.c.expires_at).where(key_locks.c.name == LOCK)).one()
    return str(row[0]), float(row[1])


def _wait_for(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _ten_times_faster() -> float:
    return time.monotonic() * 10


def test_only_one_process_polls_and_the_other_takes_over_when_it_stops(engine: Engine) -> None:
    # The pollers ask the database every third of a lease on a clock ten times faster than the lease
    # they take there: they ask every 0.3 s, and a lease runs 9 s. A standby that took over only once
    # the lease ran out would poll after the lease end the database held when the leader stopped.
    source = Source()
    a, b = (_poller(engine, source, who, lease_s=9.0, clock=_ten_times_faster) for who in ("a", "b"))
    a.start()
    assert _wait_for(lambda: source.polls.get("a", 0) >= 3, 10), "the first poller never led"
    b.start()
    time.sleep(2.0)  # the leader renewed several times, the standby asked several times
    assert source.polls.get("b", 0) == 0, "both pollers polled at once"
    assert a.leader is not None and a.leader.leading and b.leader is not None and not b.leader.leading

    holder, lease_end = _lease(engine)
    assert holder == "host:a"
    a.stop()  # gives the lease back
    assert _wait_for(lambda: source.polls.get("b", 0) >= 1, 10), "the standby did not take over"
    assert source.first["b"] < lease_end, "the standby waited for the lease to run out"
    polls_a = source.polls["a"]
    time.sleep(0.2)
    assert source.polls["a"] == polls_a
    b.stop()


def test_a_crashed_leader_is_replaced_once_its_lease_runs_out(engine: Engine) -> None:
    source = Source()
    a, b = (_poller(engine, source, who, lease_s=CRASH_LEASE_S) for who in ("a", "b"))
    a.start()
    assert _wait_for(lambda: source.polls.get("a", 0) >= 1, 10)
    b.start()
    # a crash: the thread stops polling and never gives the lease back
    a._stop.set()
    assert a._thread is not None
    a._thread.join(5)
    holder, lease_end = _lease(engine)  # its last renewal
    assert holder == "host:a"
    assert _wait_for(lambda: source.polls.get("b", 0) >= 1, CRASH_LEASE_S * 4 / 3 + 10), "nobody took over"
    assert source.first["b"] >= lease_end, "the standby polled while the crashed leader's lease still ran"
    assert source.first["b"] - lease_end < CRASH_LEASE_S / 3 + 5  # at its next ask after the end (generous)
    b.stop()


def test_the_leader_renews_its_lease_and_a_standby_cannot_take_it(engine: Engine) -> None:
    # a lease of 3 s: b's attempt follows a's renewal at once, so only a stall of 3 s between two statements could
    # let b in (0.9 s did once, in a clean-clone CI run on the loaded 2-core machine)
    lease_s = 3.0
    locks_a, locks_b = SqlKeyLocks(engine), SqlKeyLocks(engine)
    now = [0.0]
    a = Leadership(locks_a, LOCK, "host:a", lease_s=lease_s, clock=lambda: now[0])
    b = Leadership(locks_b, LOCK, "host:b", lease_s=lease_s, clock=lambda: now[0])
    assert a.lead() and not b.lead()
    for _ in range(4):  # a asks again every third of the lease; real time passes beyond the first lease
        time.sleep(lease_s / 3)
        now[0] += lease_s / 3
        assert a.lead()
        assert not locks_b.try_acquire(LOCK, "host:b", lease_s=lease_s)
    a.resign()
    now[0] += lease_s / 3
    assert b.lead() and not a.leading


def test_lease_follows_the_poll_interval() -> None:
    assert poll_lease_s(0.1) == 10.0
    assert poll_lease_s(2.0) == 20.0


def test_a_restarted_leader_with_the_same_worker_id_polls_again_at_once(engine: Engine) -> None:
    """The holder is the worker id (stable across restarts): no wait for its own old lease."""
    first = Leadership(SqlKeyLocks(engine), "poller:clarity", "host-serve", lease_s=30)
    standby = Leadership(SqlKeyLocks(engine), "poller:clarity", "host-worker-2", lease_s=30)
    assert first.lead() and not standby.lead()
    # kill -9: no resign; the process starts again with the same id
    restarted = Leadership(SqlKeyLocks(engine), "poller:clarity", "host-serve", lease_s=30)
    assert restarted.lead()
