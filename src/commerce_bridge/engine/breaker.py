"""Circuit breakers, one per destination: fail fast while a system is down, probe it one call at a time.

States::

    closed ──(failure_threshold consecutive transient failures)──> open
    open ──(reset_timeout_s elapsed, next call)──> half_open      (exactly one probe call goes through)
    half_open ──(probe succeeds)──> closed
    half_open ──(probe fails transiently)──> open                 (the reset timer restarts)

A probe that never reports back (its caller crashed or forgot ``on_success``/``on_failure``) is
written off after another ``reset_timeout_s``; the next call becomes the new probe.

Only ``TransientError`` counts as a failure. A ``PermanentError`` (or any other ``BridgeError``)
means the destination answered, so it neither counts nor resets the streak, and a probe that
gets one closes the breaker. A non-``BridgeError`` is our bug, not the destination's: it does
not count, and a probe that raises one just frees the probe slot.

While open, every call fails at once with ``errors.CircuitOpen`` whose
``details["retry_after"]`` is the time until the breaker goes half-open.

The breaker is guarded by a ``threading.Lock`` held only for bookkeeping (never across the call),
so it is safe from threads and from asyncio tasks alike. State changes are reported to the
injected ``on_change(name, old, new)`` after the lock is released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from types import TracebackType
from typing import Any

from commerce_bridge.errors import BridgeError, CircuitOpen, ConfigurationError, TransientError
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.clock import Clock

__all__ = [
    "STATE_GAUGE_VALUE",
    "BreakerConfig",
    "BreakerGuard",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "OnChange",
    "Permit",
    "alert_for_change",
]

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


OnChange = Callable[[str, BreakerState, BreakerState], None]

# For a metrics gauge (e.g. ``bridge_breaker_state{destination=...}``).
STATE_GAUGE_VALUE: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}


def alert_for_change(name: str, old: BreakerState, new: BreakerState) -> Alert | None:
    """The alert an ``on_change`` callback should raise: on opening and on closing, else ``None``.

    Alerts are keyed per destination (``breaker.open:<name>``), so one destination's storm does
    not hold back another's alert.
    """
    if new is BreakerState.OPEN:
        again = " again (probe failed)" if old is BreakerState.HALF_OPEN else ""
        return Alert(
            "breaker.open",
            f"circuit breaker for {name} opened{again}; calls fail fast",
            Severity.CRITICAL,
            {"destination": name, "from": old.value},
            key=f"breaker.open:{name}",
        )
    if new is BreakerState.CLOSED:
        return Alert(
            "breaker.closed",
            f"circuit breaker for {name} closed; {name} is answering again",
            Severity.INFO,
            {"destination": name, "from": old.value},
            key=f"breaker.closed:{name}",
        )
    return None


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Tuning of one breaker.

    Parameters
    ----------
    failure_threshold:
        Consecutive transient failures that open the breaker.
    reset_timeout_s:
        How long the breaker stays open before it lets one probe through.
    probe_retry_after_s:
        The ``retry_after`` given to calls refused while a probe is in flight.
    """

    failure_threshold: int = 5
    reset_timeout_s: float = 30.0
    probe_retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int):
            raise ConfigurationError(
                f"breaker failure_threshold must be an integer, got {self.failure_threshold!r}"
            )
        if self.failure_threshold < 1:
            raise ConfigurationError(
                f"breaker failure_threshold must be at least 1, got {self.failure_threshold}"
            )
        for name in ("reset_timeout_s", "probe_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigurationError(f"breaker {name} must be a number >= 0, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: BreakerConfig | None = None) -> BreakerConfig:
        """A config from plain data; missing fields come from ``base`` (or the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"unknown breaker field(s) {', '.join(unknown)}")
        return replace(base or cls(), **dict(data))


@dataclass(frozen=True, slots=True)
class Permit:
    """Proof that ``before_call`` let a call through; hand it back with the outcome."""

    generation: int
    probe: bool


class CircuitBreaker:
    """The breaker of one destination. Use :meth:`guard`, or the explicit three calls."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock,
        on_change: OnChange | None = None,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0
        # Bumped on every state change; outcomes of calls admitted in an older generation are
        # ignored, so a slow call started before the breaker opened cannot close it mid-probe.
        self._generation = 0

    # -- inspection ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout has passed reads as half-open)."""
        changes: list[tuple[BreakerState, BreakerState]] = []
        with self._lock:
            self._maybe_half_open(changes)
            state = self._state
        self._notify(changes)
        return state

    @property
    def consecutive_failures(self) -> int:
        """Transient failures since the last success (or since the breaker last changed state)."""
        return self._failures

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when closed)."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                return max(0.0, self._opened_at + self.config.reset_timeout_s - self._clock.monotonic())
            if self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
                return self.config.probe_retry_after_s
            return 0.0

    # -- the explicit protocol ----------------------------------------------------------------

    def before_call(self) -> Permit:
        """Ask to make a call.

        Returns
        -------
        Permit
            Pass it to :meth:`on_success` / :meth:`on_failure`.

        Raises
        ------
        CircuitOpen
            The breaker is open, or half-open with its one probe already in flight.
        """
        changes: list[tuple[BreakerState, BreakerState]] = []
        try:
            with self._lock:
                self._maybe_half_open(changes)
                if self._state is BreakerState.CLOSED:
                    return Permit(self._generation, probe=False)
                if self._state is BreakerState.HALF_OPEN:
                    now = self._clock.monotonic()
                    if self._probe_in_flight and now - self._probe_started >= self.config.reset_timeout_s:
                        # The probe never reported back (its caller lost it): give up on it, and
                        # ignore its outcome should it still arrive.
                        self._generation += 1
                        self._probe_in_flight = False
                    if not self._probe_in_flight:
                        self._probe_in_flight = True
                        self._probe_started = now
                        return Permit(self._generation, probe=True)
                if self._state is BreakerState.OPEN:
                    wait = max(0.0, self._opened_at + self.config.reset_timeout_s - self._clock.monotonic())
                else:
                    wait = self.config.probe_retry_after_s
                raise CircuitOpen(
                    f"circuit breaker {self.name!r} is {self._state.value}",
                    details={"breaker": self.name, "state": self._state.value, "retry_after": wait},
                )
        finally:
            self._notify(changes)

    def on_success(self, permit: Permit | None = None) -> None:
        """Report that an admitted call succeeded."""
        changes: list[tuple[BreakerState, BreakerState]] = []
        with self._lock:
            if self._is_current(permit):
                if self._state is BreakerState.HALF_OPEN:
                    self._probe_in_flight = False
                    self._set(BreakerState.CLOSED, changes)
                elif self._state is BreakerState.CLOSED:
                    self._failures = 0
        self._notify(changes)

    def on_failure(self, error: BaseException, permit: Permit | None = None) -> None:
        """Report that an admitted call failed with ``error``."""
        changes: list[tuple[BreakerState, BreakerState]] = []
        with self._lock:
            if self._is_current(permit):
                transient = isinstance(error, TransientError)
                answered = isinstance(error, BridgeError) and not transient
                if self._state is BreakerState.HALF_OPEN:
                    self._probe_in_flight = False
                    if transient:
                        self._open(changes)
                    elif answered:
                        self._set(BreakerState.CLOSED, changes)
                elif self._state is BreakerState.CLOSED and transient:
                    self._failures += 1
                    if self._failures >= self.config.failure_threshold:
                        self._open(changes)
        self._notify(changes)

    def guard(self) -> BreakerGuard:
        """A context manager (sync or async) around one call: ``with breaker.guard(): ...``."""
        return BreakerGuard(self)

    # -- internals (call with the lock held) -----------------------------------------------------

    def _is_current(self, permit: Permit | None) -> bool:
        if permit is None:
            return True
        if permit.generation != self._generation:
            return False
        # In half-open only the probe's outcome counts.
        return self._state is not BreakerState.HALF_OPEN or permit.probe

    def _maybe_half_open(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic() - self._opened_at >= self.config.reset_timeout_s
        ):
            self._set(BreakerState.HALF_OPEN, changes)

    def _open(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        self._opened_at = self._clock.monotonic()
        self._set(BreakerState.OPEN, changes)

    def _set(self, new: BreakerState, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        old = self._state
        self._state = new
        self._failures = 0
        self._probe_in_flight = False
        self._generation += 1
        changes.append((old, new))

    def _notify(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        if self._on_change is None:
            return
        for old, new in changes:
            try:
                self._on_change(self.name, old, new)
            except Exception:
                log.exception("breaker on_change callback failed for %s (%s -> %s)", self.name, old, new)


class BreakerGuard:
    """Wraps one call: asks the breaker first, reports success or the exception afterwards.

    Works as ``with`` and as ``async with``; exceptions are never swallowed.
    """

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._permit: Permit | None = None

    def __enter__(self) -> Permit:
        self._permit = self._breaker.before_call()
        return self._permit

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        permit, self._permit = self._permit, None
        if exc is None:
            self._breaker.on_success(permit)
        else:
            self._breaker.on_failure(exc, permit)

    async def __aenter__(self) -> Permit:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class BreakerRegistry:
    """One breaker per destination name, created on first use.

    Parameters
    ----------
    config:
        The config every breaker gets unless ``overrides`` names the destination (``None``: defaults).
    clock:
        Time source (``SystemClock`` in production, ``FakeClock`` in tests).
    on_change:
        Called as ``on_change(name, old, new)`` on every state change of every breaker.
    overrides:
        Per-destination configs, e.g. ``{"clarity": BreakerConfig(reset_timeout_s=60)}``.
    """

    def __init__(
        self,
        config: BreakerConfig | None,
        clock: Clock,
        on_change: OnChange | None = None,
        *,
        overrides: Mapping[str, BreakerConfig] | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._overrides = dict(overrides or {})
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        """The breaker of destination ``name``."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    name, self._overrides.get(name, self.config), clock=self._clock, on_change=self._on_change
                )
                self._breakers[name] = breaker
            return breaker

    __getitem__ = get

    def states(self) -> dict[str, BreakerState]:
        """Every known breaker's current state (for metrics and the dashboard)."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.state for b in breakers}
