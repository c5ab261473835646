"""Circuit breaker: opens on consecutive transient failures, fails fast, probes one call at a time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from commerce_bridge import errors
from commerce_bridge.engine.breaker import (
    STATE_GAUGE_VALUE,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    alert_for_change,
)
from commerce_bridge.services.alerts import Alerter, Severity
from commerce_bridge.testing import FakeAlertSink, FakeClock

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CONFIG = BreakerConfig(failure_threshold=3, reset_timeout_s=30.0)


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.seen.append((name, old, new))


def make(threshold: int = 3, reset: float = 30.0) -> tuple[CircuitBreaker, FakeClock, Changes]:
    clock, changes = FakeClock(), Changes()
    cfg = BreakerConfig(failure_threshold=threshold, reset_timeout_s=reset)
    return CircuitBreaker("clarity", cfg, clock=clock, on_change=changes), clock, changes


def fail(b: CircuitBreaker, error: BaseException | None = None) -> None:
    permit = b.before_call()
    b.on_failure(error or errors.UpstreamUnavailable("503"), permit)


def open_breaker(b: CircuitBreaker) -> None:
    for _ in range(b.config.failure_threshold):
        fail(b)
    assert b.state is OPEN


def test_breaker_opens_after_threshold_consecutive_transient_failures() -> None:
    b, _, changes = make()
    fail(b)
    fail(b)
    assert b.state is CLOSED and b.consecutive_failures == 2
    fail(b)
    assert b.state is OPEN
    assert changes.seen == [("clarity", CLOSED, OPEN)]


def test_success_resets_the_failure_streak() -> None:
    b, _, _ = make()
    fail(b)
    fail(b)
    b.on_success(b.before_call())
    fail(b)
    fail(b)
    assert b.state is CLOSED


def test_permanent_errors_and_bugs_do_not_count() -> None:
    b, _, _ = make()
    for err in [
        errors.UpstreamRejected(),
        errors.NotFound(),
        ValueError("bug"),
        errors.SignatureInvalid(),
    ] * 3:
        fail(b, err)
    assert b.state is CLOSED and b.consecutive_failures == 0
    fail(b)
    fail(b)
    fail(b, errors.ValidationError())  # neither counts nor resets
    fail(b)
    assert b.state is OPEN


def test_open_breaker_fails_fast_with_circuit_open_and_time_until_half_open() -> None:
    b, clock, _ = make()
    open_breaker(b)
    clock.advance(10)
    with pytest.raises(errors.CircuitOpen) as info:
        b.before_call()
    assert info.value.details["retry_after"] == pytest.approx(20.0)
    assert info.value.details["breaker"] == "clarity"
    assert isinstance(info.value, errors.TransientError)
    assert b.retry_after() == pytest.approx(20.0)


def test_after_reset_timeout_exactly_one_probe_goes_through() -> None:
    b, clock, changes = make()
    open_breaker(b)
    clock.advance(30)
    probe = b.before_call()
    assert probe.probe and b.state is HALF
    for _ in range(5):
        with pytest.raises(errors.CircuitOpen) as info:
            b.before_call()
        assert info.value.details["state"] == "half_open"
        assert info.value.details["retry_after"] == CONFIG.probe_retry_after_s
    assert changes.seen[-1] == ("clarity", OPEN, HALF)


def test_probe_success_closes_the_breaker() -> None:
    b, clock, changes = make()
    open_breaker(b)
    clock.advance(30)
    b.on_success(b.before_call())
    assert b.state is CLOSED
    assert [(o, n) for _, o, n in changes.seen] == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]
    b.before_call()  # calls flow again


def test_probe_failure_reopens_and_restarts_the_reset_timer() -> None:
    b, clock, changes = make()
    open_breaker(b)
    clock.advance(31)
    fail(b)
    assert b.state is OPEN
    clock.advance(29)
    with pytest.raises(errors.CircuitOpen) as info:
        b.before_call()
    assert info.value.details["retry_after"] == pytest.approx(1.0)
    clock.advance(1)
    assert b.before_call().probe
    assert [(o, n) for _, o, n in changes.seen][-2:] == [(HALF, OPEN), (OPEN, HALF)]


def test_probe_answered_with_a_permanent_error_closes_the_breaker() -> None:
    b, clock, _ = make()
    open_breaker(b)
    clock.advance(30)
    fail(b, errors.UpstreamRejected("400"))
    assert b.state is CLOSED


def test_probe_that_hits_a_bug_frees_the_slot_without_changing_state() -> None:
    b, clock, _ = make()
    open_breaker(b)
    clock.advance(30)
    fail(b, KeyError("oops"))
    assert b.state is HALF
    assert b.before_call().probe


def test_stale_outcome_from_before_the_breaker_opened_is_ignored() -> None:
    b, clock, _ = make()
    slow = b.before_call()  # admitted while closed, still running
    open_breaker(b)
    clock.advance(30)
    probe = b.before_call()
    b.on_success(slow)  # must not close the breaker while the probe is out
    assert b.state is HALF
    b.on_failure(errors.UpstreamUnavailable(), probe)
    assert b.state is OPEN


def test_guard_reports_success_and_failure_and_reraises() -> None:
    b, _, _ = make(threshold=2)
    with b.guard():
        pass
    for _ in range(2):
        with pytest.raises(errors.Conflict), b.guard():
            raise errors.Conflict()
    assert b.state is OPEN
    with pytest.raises(errors.CircuitOpen), b.guard():
        raise AssertionError("the body must not run while open")


async def test_guard_works_with_async_with_across_tasks() -> None:
    b, clock, _ = make(threshold=1)

    async def call(ok: bool) -> str:
        async with b.guard():
            await asyncio.sleep(0)
            if not ok:
                raise errors.UpstreamUnavailable()
            return "ok"

    with pytest.raises(errors.UpstreamUnavailable):
        await call(False)
    clock.advance(30)
    results = await asyncio.gather(*(call(True) for _ in range(10)), return_exceptions=True)
    assert results.count("ok") == 1
    assert sum(isinstance(r, errors.CircuitOpen) for r in results) == 9
    assert b.state is CLOSED


def test_only_one_probe_is_admitted_when_many_threads_race() -> None:
    b, clock, _ = make(threshold=1)
    fail(b)
    clock.advance(30)
    barrier = threading.Barrier(16)
    admitted: list[bool] = []
    refused: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            permit = b.before_call()
        except errors.CircuitOpen:
            with lock:
                refused.append(True)
        else:
            with lock:
                admitted.append(permit.probe)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted == [True] and len(refused) == 15


def test_failing_on_change_callback_does_not_break_the_breaker() -> None:
    def boom(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("alert sink down")

    b = CircuitBreaker("erp", BreakerConfig(failure_threshold=1), clock=FakeClock(), on_change=boom)
    fail(b)
    assert b.state is OPEN


def test_registry_gives_one_breaker_per_destination_with_overrides() -> None:
    changes = Changes()
    clock = FakeClock()
    reg = BreakerRegistry(
        CONFIG, clock, changes, overrides={"erp": BreakerConfig(failure_threshold=1, reset_timeout_s=5)}
    )
    assert reg.get("stripe") is reg["stripe"]
    assert reg.get("stripe") is not reg.get("clarity")
    assert reg.get("erp").config.failure_threshold == 1
    fail(reg.get("erp"))
    assert reg.states() == {"stripe": CLOSED, "clarity": CLOSED, "erp": OPEN}
    clock.advance(5)
    assert reg.states()["erp"] is HALF
    assert changes.seen == [("erp", CLOSED, OPEN), ("erp", OPEN, HALF)]


def test_breaker_config_from_dict_validates() -> None:
    cfg = BreakerConfig.from_dict({"failure_threshold": 2}, base=CONFIG)
    assert cfg == BreakerConfig(failure_threshold=2, reset_timeout_s=30.0)
    with pytest.raises(errors.ConfigurationError):
        BreakerConfig.from_dict({"threshold": 2})
    with pytest.raises(errors.ConfigurationError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(errors.ConfigurationError):
        BreakerConfig(reset_timeout_s=-1)


def test_breaker_changes_feed_alerts_on_open_and_close_only() -> None:
    clock = FakeClock()
    sink = FakeAlertSink()
    alerter = Alerter([sink], clock)
    gauge: dict[str, int] = {}

    def on_change(name: str, old: BreakerState, new: BreakerState) -> None:
        gauge[name] = STATE_GAUGE_VALUE[new]
        alert = alert_for_change(name, old, new)
        if alert is not None:
            alerter.alert(alert)

    b = CircuitBreaker(
        "clarity", BreakerConfig(failure_threshold=1, reset_timeout_s=10), clock=clock, on_change=on_change
    )
    fail(b)
    assert gauge == {"clarity": 2}
    clock.advance(10)
    assert b.before_call().probe and gauge == {"clarity": 1}
    b.on_success()
    assert gauge == {"clarity": 0}
    assert [(m.kind, m.key, m.severity) for m in sink.messages] == [
        ("breaker.open", "breaker.open:clarity", Severity.CRITICAL),
        ("breaker.closed", "breaker.closed:clarity", Severity.INFO),
    ]
    assert sink.messages[0].alerts[0].details == {"destination": "clarity", "from": "closed"}


def test_a_lost_probe_is_written_off_after_the_reset_timeout() -> None:
    b, clock, _ = make()
    open_breaker(b)
    clock.advance(30)
    lost = b.before_call()  # the caller never reports back
    clock.advance(29)
    with pytest.raises(errors.CircuitOpen):
        b.before_call()
    clock.advance(1)
    probe = b.before_call()
    assert probe.probe and probe != lost
    b.on_success(lost)  # too late: ignored
    assert b.state is HALF
    b.on_success(probe)
    assert b.state is CLOSED
