"""Call slots (in memory and in shared batches) and the rule that a call is made only within its slot's window."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time

import pytest

from commerce_bridge.engine.limits import (
    BatchedSlots,
    CallLimiter,
    LocalSlots,
    batch_size,
    process_limiter,
)
from commerce_bridge.metrics import Metrics
from commerce_bridge.store.coordination import ClockOffset
from commerce_bridge.testing import FakeClock
from tests.support.limits import CheckClock, Recording, max_in_window


class MemoryShared:
    """``SharedSlots`` in memory (a fake at the port): GCRA on a clock, with a database round trip.

    The "database" reads its now half-way through the round trip of ``rtt_s`` and commits ``commit_s`` later;
    ``firsts`` keeps the true time of each reservation's first slot, ``counts`` and ``leads`` what was asked.
    """

    def __init__(self, clock: FakeClock, *, rtt_s: float = 0.0, commit_s: float = 0.0) -> None:
        self.clock = clock
        self.rtt_s = rtt_s
        self.commit_s = commit_s
        self.tat = 0.0
        self.firsts: list[float] = []
        self.counts: list[int] = []
        self.leads: list[float] = []

    def reserve_batch(self, destination: str, interval_s: float, count: int, lead_s: float) -> tuple[float, float]:
        before = self.clock.monotonic()
        db_now = before + self.rtt_s / 2
        first = max(self.tat, db_now + lead_s)
        self.tat = first + count * interval_s
        self.firsts.append(first)
        self.counts.append(count)
        self.leads.append(lead_s)
        self.clock.advance(self.rtt_s + self.commit_s)
        return before + (first - db_now), before + self.rtt_s + (first - db_now)


def test_local_slots_follow_each_other_an_interval_apart_and_start_at_once_when_idle() -> None:
    clock = FakeClock()
    slots = LocalSlots(clock=clock.monotonic)
    t0 = clock.monotonic()
    taken = [bound for _ in range(3) for bound in slots.take("stripe", 0.1, 0.02)]
    assert taken == pytest.approx([t0, t0 + 0.02, t0 + 0.1, t0 + 0.12, t0 + 0.2, t0 + 0.22])
    assert slots.take("erp", 0.1, 0.02) == (t0, t0 + 0.02)  # each destination has its own slots
    clock.advance(5)
    assert slots.take("stripe", 0.1, 0.02)[0] == clock.monotonic()  # unused slots are not saved up


def test_a_caller_that_wakes_too_late_gives_its_slot_up_and_calls_in_a_new_slots_window() -> None:
    clock = FakeClock()
    late = [0.05]  # the tolerance is 0.4 × margin = 40 ms: the first wake-up is 50 ms late

    def sleep(seconds: float) -> None:
        clock.advance(seconds + (late.pop() if late else 0.0))

    slots = Recording(LocalSlots(clock=clock.monotonic))
    limiter = CallLimiter(slots, {"stripe": 10}, 0.1, Metrics(), clock=clock.monotonic, sleep=sleep)
    limiter.wait("stripe")  # the idle destination's first slot is now: no sleep
    limiter.wait("stripe")
    first, missed, used = slots.windows
    assert missed[0] == pytest.approx(first[0] + 0.11)  # slots are 1.1 / rate apart
    assert limiter.missed == 1
    assert used[0] == pytest.approx(missed[0] + 0.11)  # not the missed one, which the next caller's slot follows
    assert clock.monotonic() == pytest.approx(used[0])


def test_a_destination_without_a_limit_never_waits() -> None:
    clock = FakeClock()
    slots = Recording(LocalSlots(clock=clock.monotonic))
    limiter = CallLimiter(slots, {"stripe": 10}, 0.1, Metrics(), clock=clock.monotonic, sleep=clock.advance)
    for _ in range(50):
        limiter.wait("erp")
    assert slots.windows == [] and clock.monotonic() == 1000.0


def test_threads_that_wake_late_never_call_outside_a_window_of_their_own() -> None:
    rate, margin = 50, 0.1
    interval = (1 + margin) / rate
    rng = random.Random(7)

    def busy_sleep(seconds: float) -> None:  # a busy machine: a third of the wake-ups come up to 120 ms late
        time.sleep(seconds + (rng.uniform(0, 0.12) if rng.random() < 1 / 3 else 0.0))

    clock = CheckClock()
    slots = Recording(LocalSlots())
    limiter = CallLimiter(slots, {"stripe": rate}, margin, Metrics(), clock=clock, sleep=busy_sleep)
    calls: list[tuple[float, tuple[float, float]]] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(10):
            limiter.wait("stripe")
            with lock:
                calls.append((clock.last(), slots.last_window()))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 80
    assert limiter.missed > 0  # late wake-ups happened, and their slots were given up
    for at, (start, end) in calls:
        assert start <= at <= end
    used = sorted(start for _, (start, _end) in calls)
    assert all(b - a >= interval - 1e-9 for a, b in itertools.pairwise(used))
    assert max_in_window([at for at, _ in calls]) <= rate


def test_batched_slots_narrow_each_window_by_the_database_round_trip() -> None:
    clock = FakeClock()
    shared = MemoryShared(clock, rtt_s=0.01)
    slots = BatchedSlots(shared, clock=clock.monotonic)
    slots.take("stripe", 0.1, 0.04)
    start, end = slots.take("stripe", 0.1, 0.04)  # a slot in the future: the round trip alone narrows it
    first = shared.firsts[-1]  # the true slot, which the process only knows to within the round trip
    assert (start, end) == pytest.approx((first + 0.005, first - 0.005 + 0.04))
    assert slots.reservations == 2 and slots.lost == 0


def test_a_slot_that_passed_before_its_reservation_came_back_is_lost_and_the_next_one_asks_for_a_lead() -> None:
    clock = FakeClock()
    shared = MemoryShared(clock, commit_s=0.2)  # the answer comes back 200 ms after the database's now
    slots = BatchedSlots(shared, clock=clock.monotonic)
    start, end = slots.take("stripe", 0.1, 0.04)
    assert shared.leads == pytest.approx([0.0, 0.18])  # the second asked for the last round trip less tolerance / 2
    assert slots.lost == 1 and slots.reservations == 2
    assert shared.firsts[-1] <= start == clock.monotonic() <= end  # still open when the answer came back


def test_a_clock_known_less_precisely_than_the_tolerance_gives_windows_that_are_never_early() -> None:
    clock = FakeClock()
    shared = MemoryShared(clock, rtt_s=0.05)  # every round trip is slower than the 40-ms tolerance
    slots = BatchedSlots(shared, clock=clock.monotonic)
    slots.take("stripe", 0.1, 0.04)
    start, end = slots.take("stripe", 0.1, 0.04)
    first = shared.firsts[-1]
    assert start == pytest.approx(first + 0.025) and end == pytest.approx(first + 0.025 + 0.04)
    assert slots.vague == 2 and slots.lost == 0


def test_the_database_clock_is_placed_by_the_fastest_recent_round_trip_and_found_again_after_a_step() -> None:
    offset = ClockOffset()
    assert offset.read(10.0, 0.0, 10.004) == pytest.approx((10.0, 10.004))
    assert offset.read(20.0, 10.0, 20.001) == pytest.approx((10.0, 10.001))  # the faster reading narrows it
    lo, hi = offset.read(30.0, 20.0, 30.1)  # a slow round trip (100 ms) ...
    assert lo == pytest.approx(10.0) and hi == pytest.approx(10.001 + 2e-4 * (30.1 - 20.001))  # ... keeps it narrow
    assert offset.read(40.0, 25.0, 40.001) == pytest.approx((15.0, 15.001))  # the database's clock jumped


@pytest.mark.parametrize(("interval_s", "cap"), [(0.01, 20), (0.06, 3)])
def test_one_reservation_serves_the_callers_waiting_for_it_up_to_a_cap(interval_s: float, cap: int) -> None:
    class Blocking:
        """Exact in-memory shared slots whose first reservation waits until the test lets it go."""

        def __init__(self) -> None:
            self.inner = LocalSlots()
            self.counts: list[int] = []
            self.go = threading.Event()

        def reserve_batch(self, destination: str, interval_s: float, count: int, lead_s: float) -> tuple[float, float]:
            self.counts.append(count)
            if len(self.counts) == 1:
                self.go.wait(10)
            first, _ = self.inner.take(destination, count * interval_s, 0.0)
            return first, first

    shared = Blocking()
    slots = BatchedSlots(shared, horizon_s=0.2)  # the cap: 0.2 s worth of slots
    got: list[tuple[float, float]] = []
    arrived = threading.Semaphore(0)

    def caller() -> None:
        arrived.release()
        got.append(slots.take("stripe", interval_s, 0.5))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        arrived.acquire()
    time.sleep(0.5)  # generous: the seven others are now waiting for the first reservation
    shared.go.set()
    for t in threads:
        t.join()
    assert shared.counts[0] == 1 and sum(shared.counts) >= 8
    assert max(shared.counts) <= cap  # one process never holds more than 0.2 s of the limit
    assert len(shared.counts) <= 2 + math.ceil(7 / cap)  # not one transaction per caller
    assert all(start <= end for start, end in got)


def test_batches_grow_with_queued_callers_and_demand_and_stay_single_when_calls_come_one_at_a_time() -> None:
    interval, tolerance, cap = 1.1 / 90, 0.04, 16  # 90/s with the default margin; 0.2 s of it
    assert batch_size(1, 16, 0.0, interval, tolerance, cap) == 1  # 16 calls/s, one at a time: no slot to spare
    assert batch_size(5, 0, 0.0, interval, tolerance, cap) == 5  # five callers wait now
    assert batch_size(1, 30, 0.05, interval, tolerance, cap) == 5  # at 30/s, with slots 50 ms ahead
    assert batch_size(1, 90, 0.0, interval, tolerance, cap) == cap  # every slot is wanted
    assert batch_size(40, 0, 0.0, interval, tolerance, cap) == cap


@pytest.mark.parametrize(("scope", "dialect", "kind"), [
    ("auto", "sqlite", LocalSlots), ("auto", "postgresql", BatchedSlots),
    ("shared", "sqlite", BatchedSlots), ("process", "postgresql", LocalSlots),
])
def test_the_scope_decides_where_slots_live(scope: str, dialect: str, kind: type) -> None:
    assert isinstance(process_limiter(scope, dialect, MemoryShared(FakeClock())), kind)  # type: ignore[arg-type]
