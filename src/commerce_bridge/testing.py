"""Test helpers shipped with the package: fakes at the ports (FakeClock, ...)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


from commerce_bridge.services.alerts import AlertMessage  # noqa: E402  (appended section: alert fakes)


class FakeAlertSink:
    """An alert sink that records what it is sent (and raises ``fail_with`` if given)."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.messages: list[AlertMessage] = []
        self.fail_with = fail_with

    def send(self, message: AlertMessage) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(message)

    @property
    def summaries(self) -> list[AlertMessage]:
        return [m for m in self.messages if m.is_summary]
