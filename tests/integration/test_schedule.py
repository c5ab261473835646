"""``services.schedule.LeaderSchedule``: one process at a time (real key-lock rows on a SQLite file), failures
logged and alerted once at the third in a row, a bug never stops the loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from commerce_bridge.errors import UpstreamUnavailable
from commerce_bridge.services.alerts import Alert
from commerce_bridge.services.polling import Leadership
from commerce_bridge.services.schedule import LeaderSchedule
from commerce_bridge.store import db as store_db
from commerce_bridge.store.locks import SqlKeyLocks


@pytest.fixture
def locks(tmp_path: Path) -> SqlKeyLocks:
    engine = store_db.make_engine(f"sqlite:///{tmp_path / 'locks.sqlite'}")
    store_db.upgrade(engine)
    return SqlKeyLocks(engine, scope="shared")


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_only_the_lease_holder_runs_the_job_and_a_standby_takes_over_when_it_stops(locks: SqlKeyLocks) -> None:
    ran = {"a": 0, "b": 0}

    def job(name: str) -> None:
        ran[name] += 1

    a = LeaderSchedule("job", lambda: job("a"), what="The job", interval_s=0.02, first_after_s=0,
                       leader=Leadership(locks, "job:lock", "a", lease_s=0.6))
    b = LeaderSchedule("job", lambda: job("b"), what="The job", interval_s=0.02, first_after_s=0,
                       leader=Leadership(locks, "job:lock", "b", lease_s=0.6))
    a.start()
    wait_until(lambda: ran["a"] >= 3)
    b.start()
    time.sleep(0.3)
    assert ran["b"] == 0 and b.checks == 0, "the standby runs nothing while the leader holds the lease"
    a.stop()
    wait_until(lambda: ran["b"] >= 3)  # the lease was given back: the standby takes over at its next ask
    b.stop()
    assert a.checks == ran["a"] and b.checks == ran["b"]


def test_failures_are_alerted_once_at_the_third_in_a_row_and_a_bug_does_not_stop_the_loop() -> None:
    alerts: list[Alert] = []
    calls = 0
    recovered = threading.Event()

    def job() -> None:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise UpstreamUnavailable("ERPNext answered 503")
        if calls == 5:
            raise KeyError("a bug")
        recovered.set()

    s = LeaderSchedule("stock", job, what="The stock push", interval_s=0.01, first_after_s=0, alert=alerts.append)
    s.start()
    assert recovered.wait(5)
    s.stop()
    assert [(a.kind, a.title) for a in alerts] == [
        ("stock.failing", "The stock push keeps failing: ERPNext answered 503")]
    assert alerts[0].details["failures"] == 3
    assert s.failures == 0 and s.checks >= 1


def test_the_first_cycle_waits_for_the_shorter_of_the_interval_and_first_after() -> None:
    started = time.monotonic()
    ran = threading.Event()
    s = LeaderSchedule("x", ran.set, what="X", interval_s=3600, first_after_s=0.2)
    s.start()
    assert ran.wait(5)
    s.stop()
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ValueError, match="interval_s must be positive"):
        LeaderSchedule("x", ran.set, what="X", interval_s=0)
