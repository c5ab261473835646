"""Per-destination call limits, enforced where each call is made: this process's call slots and the wait for them.

A destination limited to ``R`` calls per second gets call *slots* ``interval = (1 + margin) / R`` seconds
apart (GCRA: the next slot is ``max(tat, now)``, then ``tat`` moves on by ``interval``). A call is made only
within ``[slot, slot + tolerance]`` of a slot of its own, ``tolerance = 0.4 × margin`` seconds (at least
5 ms); a caller that wakes later than that (a busy machine) gives the slot up and takes a new one. So any
``R + 1`` calls use ``R + 1`` distinct slots, which span ``R × interval = 1 + margin`` seconds, and the calls
themselves at least ``1 + 0.6 × margin`` seconds: no 1-second window holds more than ``R`` calls. The rest of
the margin (60 ms at the default 10 %) is for the way from the check to the destination.

Where the slots come from is ``CB_RATE_LIMIT_SCOPE``:

``process`` (:class:`LocalSlots`)
    In this process's memory; no database write. Right when this process is the only one that calls out:
    ``serve`` on SQLite, or a single ``worker`` beside ``ingress`` processes (which call out to nobody).
``shared`` (:class:`BatchedSlots`)
    One row per destination in the bridge's database, shared by every worker (``SqlRateLimiter`` in
    ``store.coordination``). One transaction reserves consecutive slots for the callers this process has
    waiting and those its recent rate will bring before the slots pass (:func:`batch_size`), at most
    ``BATCH_HORIZON_S`` worth of the limit (so one worker cannot hoard), and they are handed out here. A slot that passes unused is lost: that costs capacity, never the
    limit. The database gives the slots on its own clock, which this process knows to within a round trip
    (the fastest recent one): each slot's window is that much shorter, so a call is never early and never
    later than the tolerance after it. When the last round trip took more than half the tolerance, the
    next reservation asks for its first slot that much ahead, so that on a slow database the first slot
    has not passed by the time the answer is back.
``auto`` (the default)
    ``process`` on SQLite, ``shared`` on PostgreSQL. Several processes calling out through one SQLite file
    (not the documented way to scale out) must set ``shared``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from commerce_bridge.metrics import Metrics
from commerce_bridge.services.ports import RateLimiter, SharedSlots

Scope = Literal["auto", "process", "shared"]

TOLERANCE_SHARE = 0.4
"""How late after its slot a call may still be made, as a share of the margin ..."""
MIN_TOLERANCE_S = 0.005
"""... and at least this (with no margin at all, a busy machine would otherwise miss most slots)."""
BATCH_HORIZON_S = 0.2
"""A shared reservation takes at most this many seconds' worth of a destination's slots."""
MAX_LEAD_S = 1.0
"""The most a shared reservation asks its first slot to be ahead of the database's now."""


def process_limiter(scope: Scope, dialect: str, shared: SharedSlots) -> RateLimiter:
    """This process's call slots for ``scope``; ``auto`` keeps them in memory on SQLite only.

    Parameters
    ----------
    scope:
        ``CB_RATE_LIMIT_SCOPE``.
    dialect:
        The bridge database's SQLAlchemy dialect name (``sqlite`` or ``postgresql``).
    shared:
        The database's shared slots, used in the ``shared`` scope.
    """
    if scope == "auto":
        scope = "process" if dialect == "sqlite" else "shared"
    return LocalSlots() if scope == "process" else BatchedSlots(shared)


class LocalSlots:
    """Call slots in this process's memory (GCRA per destination), for a process that alone calls out."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def take(self, destination: str, interval_s: float, tolerance_s: float) -> tuple[float, float]:
        with self._lock:
            slot = max(self._tat.get(destination, 0.0), self._clock())
            self._tat[destination] = slot + interval_s
        return slot, slot + tolerance_s


@dataclass
class _Batch:
    earliest: float  # the first slot on the monotonic clock, at the earliest it can be
    latest: float  # ... and at the latest
    ready: float  # when the reservation was committed: none of its slots is used before
    interval: float
    count: int
    taken: int = 0


@dataclass
class _Book:
    cond: threading.Condition = field(default_factory=lambda: threading.Condition(threading.Lock()))
    batches: deque[_Batch] = field(default_factory=deque)
    waiting: int = 0  # callers in take() now
    refilling: bool = False
    recent: deque[float] = field(default_factory=deque)  # when this process asked for slots, over the last second
    lag: float = 0.0  # how far after its commit the last reservation's first slot came
    round_trip: float = 0.0  # how long the last reservation took


def batch_size(waiting: int, demand: float, lag: float, interval: float, tolerance: float, cap: int) -> int:
    """How many slots to reserve: those this process will likely use before they pass, at most ``cap``.

    Slot ``j`` (``lag + j × interval`` from now) is used if a caller asks for it before its window closes:
    one of the ``waiting`` callers, or one of the ``demand × (lag + j × interval + tolerance)`` expected by
    then at this process's recent rate. Below one call per interval that holds up to
    ``j = (waiting - 1 + demand × (lag + tolerance)) / (1 - demand × interval)``: one slot when the
    destination is idle and calls come one at a time, more when callers queue for slots.
    """
    share = demand * interval
    if share >= 1.0:
        return max(1, cap)
    j = (waiting - 1 + demand * (lag + tolerance)) / (1.0 - share)
    return max(1, min(cap, 1 + int(j)))


class BatchedSlots:
    """Call slots reserved from the shared store in batches and handed out to this process's callers.

    One reservation at a time per destination: the callers that arrive meanwhile wait for it, and the
    next one is sized by :func:`batch_size` (at most ``horizon_s`` of the limit's slots).

    Attributes
    ----------
    reservations:
        Transactions on the shared store so far.
    lost:
        Slots that passed unused or came back from the database too late to be used.
    vague:
        Slots handed out while the database's clock was known less precisely than the tolerance (every
        recent round trip slower than it): their window starts at the latest the slot can be and lasts
        the tolerance, so such a call may be up to that imprecision late.
    """

    def __init__(self, shared: SharedSlots, *, horizon_s: float = BATCH_HORIZON_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._shared = shared
        self._horizon_s = horizon_s
        self._clock = clock
        self._lock = threading.Lock()
        self._books: dict[str, _Book] = {}
        self.reservations = 0
        self.lost = 0
        self.vague = 0

    def take(self, destination: str, interval_s: float, tolerance_s: float) -> tuple[float, float]:
        with self._lock:
            book = self._books.setdefault(destination, _Book())
        with book.cond:
            book.waiting += 1
            asked = self._clock()
            book.recent.append(asked)
            while book.recent[0] < asked - 1.0:
                book.recent.popleft()
            try:
                while True:
                    slot = self._next(book, tolerance_s)
                    if slot is not None:
                        return slot
                    if book.refilling:
                        book.cond.wait()
                        continue
                    count = batch_size(book.waiting, len(book.recent), book.lag, interval_s, tolerance_s,
                                       int(self._horizon_s / interval_s))
                    # a round trip near the tolerance would bring the first slot back already passed
                    lead = min(max(0.0, book.round_trip - tolerance_s / 2), MAX_LEAD_S)
                    book.refilling = True
                    book.cond.release()  # the round trip runs unlocked; others wait for it on the condition
                    try:
                        sent = self._clock()
                        earliest, latest = self._shared.reserve_batch(destination, interval_s, count, lead)
                        ready = self._clock()
                    finally:
                        book.cond.acquire()
                        book.refilling = False
                        book.cond.notify_all()
                    book.batches.append(_Batch(earliest, latest, ready, interval_s, count))
                    book.lag = max(0.0, latest - ready)
                    book.round_trip = ready - sent
                    self.reservations += 1
            finally:
                book.waiting -= 1

    def _next(self, book: _Book, tolerance_s: float) -> tuple[float, float] | None:
        """The next slot of this process's batches whose window is still open (the lock is held)."""
        now = self._clock()
        while book.batches:
            batch = book.batches[0]
            vague = batch.latest - batch.earliest > tolerance_s
            while batch.taken < batch.count:
                offset = batch.taken * batch.interval
                batch.taken += 1
                start = max(batch.latest + offset, batch.ready)
                end = (batch.latest if vague else batch.earliest) + offset + tolerance_s
                if start <= end and now <= end:
                    self.vague += int(vague)
                    return start, end
                self.lost += 1
            book.batches.popleft()
        return None


class CallLimiter:
    """Waits for each call's slot in its destination's limit (the module docstring says why the limit holds).

    Parameters
    ----------
    limiter:
        This process's slots (:func:`process_limiter`).
    rates:
        ``CB_RATE_LIMITS``: calls per second per destination; others are not limited.
    margin:
        ``CB_RATE_LIMIT_MARGIN``: slots are ``(1 + margin) / rate`` apart; a call may be made up to
        ``0.4 × margin`` seconds (at least 5 ms) after its slot.
    clock, sleep:
        ``time.monotonic`` and ``time.sleep`` (tests inject others).

    Attributes
    ----------
    missed:
        Slots given up because the caller woke too late to use them (it then waits for another: a call
        never fails for want of a slot).
    """

    def __init__(self, limiter: RateLimiter, rates: Mapping[str, float], margin: float, metrics: Metrics, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._limiter = limiter
        self._rates = dict(rates)
        self._margin = margin
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.missed = 0

    def wait(self, destination: str) -> None:
        """Return within the window of a slot of ``destination``'s own (at once when it has no limit)."""
        rate = self._rates.get(destination)
        if not rate:
            return
        interval = (1.0 + self._margin) / rate
        tolerance = max(MIN_TOLERANCE_S, TOLERANCE_SHARE * self._margin)
        started = self._clock()
        while True:
            start, end = self._limiter.take(destination, interval, tolerance)
            while (delay := start - self._clock()) > 0:
                self._sleep(delay)
            now = self._clock()
            if now <= end:
                self._metrics.limiter_wait.labels(destination).observe(now - started)
                return
            self.missed += 1  # calling now could bunch with the next slots' calls: take a new slot

    def hook(self, destination: str) -> CallHook:
        """A no-argument callable for connectors: call it before each request to ``destination``."""
        return CallHook(self, destination)


class CallHook:
    def __init__(self, limiter: CallLimiter, destination: str) -> None:
        self._limiter = limiter
        self._destination = destination

    def __call__(self) -> None:
        self._limiter.wait(self._destination)
