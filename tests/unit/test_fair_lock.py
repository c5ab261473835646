"""The writer lock of SQLite files: reentrant, first come first served, timeouts leave no ghost waiter."""

from __future__ import annotations

import threading
import time

import pytest

from commerce_bridge.store.db import FairLock


def _waiters(lock: FairLock) -> int:
    return len(lock._waiters)


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = FairLock()
    lock.acquire()
    order: list[int] = []

    def waiter(n: int) -> None:
        lock.acquire()
        order.append(n)
        time.sleep(0.01)
        lock.release()

    threads = []
    for n in range(5):
        t = threading.Thread(target=waiter, args=(n,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while _waiters(lock) < n + 1 and time.monotonic() < deadline:  # queued before the next starts
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_the_owner_may_take_it_again_and_must_release_as_often() -> None:
    lock = FairLock()
    assert lock.acquire() and lock.acquire()
    lock.release()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
    t.start()
    t.join()
    assert got == [False]  # still held once
    lock.release()
    t = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
    t.start()
    t.join()
    assert got == [False, True]


def test_a_timed_out_waiter_leaves_the_queue() -> None:
    lock = FairLock()
    lock.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join(5)
    assert got == [False] and _waiters(lock) == 0
    lock.release()
    assert lock.acquire(blocking=False)  # free: not handed to the thread that gave up
    lock.release()


def test_only_the_owner_may_release() -> None:
    lock = FairLock()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    lock.release()
