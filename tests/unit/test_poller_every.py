"""``Every``: a part of a poll cycle that runs less often than the cycle (the Clarity returns poll)."""

from __future__ import annotations

import pytest

from commerce_bridge.services.polling import Every


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_due_at_once_then_once_per_interval_counted_from_the_last_success() -> None:
    clock = Clock()
    every = Every(10.0, clock=clock)
    assert every.due()
    every.done()
    clock.now += 9.9
    assert not every.due()
    clock.now += 0.1
    assert every.due()  # a poll that fails does not call done(): it is due again next cycle
    clock.now += 3.0
    assert every.due()
    every.done()
    clock.now += 9.0
    assert not every.due()


def test_zero_is_never_and_a_negative_interval_is_refused() -> None:
    assert not Every(0.0, clock=Clock()).due()
    with pytest.raises(ValueError, match="must not be negative"):
        Every(-1.0)
