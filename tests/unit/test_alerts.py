"""Alerter: fan-out to every sink, one immediate alert then one summary per window, failing sinks isolated."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from commerce_bridge import errors
from commerce_bridge.logsetup import configure_logging
from commerce_bridge.services.alerts import Alert, Alerter, Severity
from commerce_bridge.testing import FakeAlertSink, FakeClock


def dlq(n: int, severity: Severity = Severity.WARNING) -> Alert:
    return Alert("dlq.new", f"run r{n} dead-lettered", severity, {"run_id": f"r{n}"})


def make(**kw: Any) -> tuple[Alerter, FakeClock, FakeAlertSink, FakeAlertSink]:
    clock = FakeClock()
    a, b = FakeAlertSink(), FakeAlertSink()
    return Alerter([a, b], clock, **kw), clock, a, b


def test_a_storm_gives_one_immediate_alert_and_one_summary_at_every_sink() -> None:
    alerter, clock, a, b = make(window_s=60)
    sent = [alerter.alert(dlq(i)) for i in range(50)]
    assert sent == [True] + [False] * 49
    for sink in (a, b):
        assert [m.is_summary for m in sink.messages] == [False]
        assert sink.messages[0].summary == "run r0 dead-lettered" and sink.messages[0].count == 1
    clock.advance(59.9)
    assert alerter.tick() == 0
    clock.advance(0.1)
    assert alerter.tick() == 1
    for sink in (a, b):
        assert len(sink.messages) == 2
        summary = sink.messages[1]
        assert summary.is_summary and summary.count == 49 and len(summary.alerts) == 49
        assert summary.summary.startswith("49 more dlq.new alerts in the last 60 s: run r1 dead-lettered; ")
        assert summary.summary.endswith("; ...")
    assert alerter.tick() == 0


def test_kinds_are_limited_independently() -> None:
    alerter, _, a, _ = make()
    assert alerter.alert(dlq(1))
    assert alerter.alert(Alert("breaker.open", "clarity breaker opened", Severity.CRITICAL))
    assert alerter.alert(Alert("breaker.closed", "clarity breaker closed", Severity.INFO))
    assert not alerter.alert(dlq(2))
    assert [m.kind for m in a.messages] == ["dlq.new", "breaker.open", "breaker.closed"]
    assert alerter.pending() == {"dlq.new": 1}


def test_key_groups_within_a_kind() -> None:
    alerter, _, a, _ = make()
    assert alerter.alert(Alert("breaker.open", "clarity open", key="breaker.open:clarity"))
    assert alerter.alert(Alert("breaker.open", "erp open", key="breaker.open:erp"))
    assert not alerter.alert(Alert("breaker.open", "clarity open again", key="breaker.open:clarity"))
    assert len(a.messages) == 2


def test_a_lasting_storm_gets_one_summary_per_window_and_quiet_resets() -> None:
    alerter, clock, a, _ = make(window_s=10)
    alerter.alert(dlq(0))
    for i in range(5):
        alerter.alert(dlq(i))
    clock.advance(10)
    assert alerter.tick() == 1  # summary of 5; it opens the next window
    assert not alerter.alert(dlq(99))  # still storming: held for the next summary
    clock.advance(10)
    alerter.tick()
    assert [m.count for m in a.messages] == [1, 5, 1]
    assert a.messages[2].summary == "1 more dlq.new alert in the last 10 s: run r99 dead-lettered"
    clock.advance(10)
    assert alerter.tick() == 0  # the window closes quietly
    assert alerter.alert(dlq(100))  # next alert goes out at once again


def test_the_next_alert_closes_an_ended_window_without_a_tick() -> None:
    alerter, clock, a, _ = make(window_s=5)
    alerter.alert(dlq(0))
    alerter.alert(dlq(1))
    clock.advance(6)
    assert not alerter.alert(dlq(2))  # the summary went out first and opened the next window
    assert [m.is_summary for m in a.messages] == [False, True]


def test_flush_sends_held_summaries_now() -> None:
    alerter, _, a, _ = make()
    alerter.alert(dlq(0))
    alerter.alert(dlq(1))
    alerter.alert(dlq(2))
    assert alerter.flush() == 1
    assert a.messages[-1].count == 2 and alerter.pending() == {}


def test_max_per_window_allows_several_immediate_alerts() -> None:
    alerter, clock, a, _ = make(max_per_window=3)
    assert [alerter.alert(dlq(i)) for i in range(5)] == [True, True, True, False, False]
    clock.advance(60)
    alerter.tick()
    assert [m.count for m in a.messages] == [1, 1, 1, 2]


def test_summary_takes_the_highest_severity_and_caps_samples() -> None:
    clock = FakeClock()
    sink = FakeAlertSink()
    alerter = Alerter([sink], clock, max_held=3)
    alerter.alert(dlq(0))
    for i in range(10):
        alerter.alert(dlq(i, Severity.CRITICAL if i == 7 else Severity.INFO))
    alerter.flush()
    summary = sink.messages[-1]
    assert summary.severity is Severity.CRITICAL and summary.count == 10 and len(summary.alerts) == 3


def test_alerts_are_stamped_and_redacted_before_they_leave() -> None:
    alerter, clock, a, _ = make()
    alerter.alert(
        Alert(
            "dlq.new",
            "customer jane@example.com failed",
            details={"api_key": "sk_live_abcdef123", "card": "4242424242424242"},
        )
    )
    [msg] = a.messages
    assert msg.alerts[0].at == clock.now() and msg.sent_at == clock.now()
    assert msg.summary == "customer [EMAIL] failed"
    assert msg.alerts[0].details == {"api_key": "[REDACTED]", "card": "[CARD]"}
    assert "jane" not in json.dumps(msg.to_dict())


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging(stream=buf, capture_warnings=False)
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_a_failing_sink_is_logged_redacted_and_does_not_stop_the_others(log_buffer: io.StringIO) -> None:
    clock = FakeClock()
    broken = FakeAlertSink(
        fail_with=errors.UpstreamUnavailable("smtp down for ops@bridge.example token=abc123")
    )
    ok = FakeAlertSink()
    alerter = Alerter([broken, ok], clock)
    assert alerter.alert(dlq(1))
    assert len(ok.messages) == 1
    raw = log_buffer.getvalue()
    [line] = [json.loads(x) for x in raw.splitlines()]
    assert line["event"] == "alert.sink_failed" and line["sink"] == "FakeAlertSink"
    assert line["error_type"] == "UpstreamUnavailable" and line["level"] == "error"
    assert "ops@bridge" not in raw and "abc123" not in raw


def test_concurrent_storm_from_threads_still_gives_one_immediate_and_one_summary() -> None:
    alerter, clock, a, _ = make()
    barrier = threading.Barrier(8)

    def storm() -> None:
        barrier.wait()
        for i in range(50):
            alerter.alert(dlq(i))

    threads = [threading.Thread(target=storm) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clock.advance(60)
    alerter.tick()
    assert [m.count for m in a.messages] == [1, 399]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        Alerter([], FakeClock(), window_s=0)
    with pytest.raises(ValueError):
        Alerter([], FakeClock(), max_per_window=0)
