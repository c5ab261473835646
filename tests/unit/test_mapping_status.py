"""Status maps as configuration data, and the declared status precedence of each object kind."""

from __future__ import annotations

import json

import pytest

from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping.status import (
    DEFAULT_CONFIG,
    DEFAULT_PRECEDENCE,
    StatusMap,
    is_forward,
)


def test_default_map_is_the_seeds() -> None:
    status_map = StatusMap.default()
    assert status_map.clarity_status_for("payment_intent", "requires_payment_method") == "Pending"
    assert status_map.stripe_status_for("Pending") == "requires_payment_method"
    assert status_map.clarity_status_for("payment_intent", "succeeded") == "Full Payment Received"
    assert status_map.clarity_status_for("payment_intent", "processing") is None
    assert status_map.stripe_status_for("Void") == "canceled"
    assert status_map.stripe_status_for("On Hold") is None
    assert status_map.stripe_status_for("Pending", "unknown_kind") is None


def test_event_map_wins_over_the_status_map() -> None:
    status_map = StatusMap.default()
    assert status_map.clarity_status_for("payment_intent", "requires_payment_method",
                                         event_type="payment_intent.payment_failed") == "On Hold"
    assert status_map.clarity_status_for("charge", "succeeded", event_type="charge.refunded") == "Full Payment Received"


def test_map_loads_from_settings_json_and_round_trips() -> None:
    text = json.dumps({"stripe_events_to_clarity": {"payment_intent.payment_failed": "Payment Failed"}})
    status_map = StatusMap.from_json(text)
    assert status_map.clarity_status_for("payment_intent", "requires_payment_method",
                                         event_type="payment_intent.payment_failed") == "Payment Failed"
    assert status_map.clarity_status_for("payment_intent", "succeeded") == "Full Payment Received"
    again = StatusMap.from_config(status_map.to_config())
    assert again.to_config() == status_map.to_config()
    assert StatusMap.default().to_config() == json.loads(json.dumps(dict(DEFAULT_CONFIG)))


@pytest.mark.parametrize("config", [
    "[1]",
    '{"nonsense": {}}',
    '{"stripe_to_clarity": {"payment_intent": {"paid": "Full Payment Received"}}}',
    '{"stripe_to_clarity": {"rocket": {"succeeded": "X"}}}',
    '{"stripe_to_clarity": []}',
    '{"clarity_to_stripe": {"payment_intent": {"Pending": "waiting"}}}',
    '{"stripe_events_to_clarity": {"succeeded": "X"}}',
    '{"stripe_events_to_clarity": {"payment_intent.succeeded": ""}}',
    '{"stripe_events_to_clarity": ["x"]}',
    "{not json",
])
def test_bad_configuration_is_a_validation_error_with_a_fix(config: str) -> None:
    with pytest.raises(ValidationError) as info:
        StatusMap.from_json(config)
    assert info.value.suggested_fix


@pytest.mark.parametrize(("kind", "old", "new", "forward"), [
    ("payment_intent", None, "processing", True),
    ("payment_intent", "", "succeeded", True),
    ("payment_intent", "processing", "succeeded", True),
    ("payment_intent", "succeeded", "processing", False),
    ("payment_intent", "succeeded", "canceled", False),
    ("payment_intent", "canceled", "succeeded", False),
    ("payment_intent", "requires_action", "requires_payment_method", True),
    ("payment_intent", "requires_capture", "requires_payment_method", False),
    ("payment_intent", "requires_capture", "succeeded", True),
    ("payment_intent", "succeeded", "succeeded", False),
    ("charge", "succeeded", "pending", False),
    ("refund", "succeeded", "failed", True),
    ("dispute", "appeal_under_review", "lost", True),
    ("dispute", "won", "lost", False),
    ("payout", "paid", "failed", True),
    ("invoice", "paid", "open", False),
    ("subscription", "past_due", "active", True),
    ("subscription", "canceled", "active", False),
    ("setup_intent", "processing", "requires_payment_method", True),
    ("clarity_order", "Shipped", "Full Payment Received", False),
    ("clarity_order", "Pending", "On Hold", True),
    ("clarity_order", "On Hold", "Pending", False),
    ("clarity_order", "Void", "On Hold", False),
])
def test_status_precedence(kind: str, old: str | None, new: str, forward: bool) -> None:
    assert is_forward(kind, old, new) is forward


def test_status_map_uses_the_clarity_precedence() -> None:
    status_map = StatusMap.default()
    assert status_map.should_update_clarity("Pending", "Full Payment Received")
    assert not status_map.should_update_clarity("Completed", "Full Payment Received")


@pytest.mark.parametrize(("kind", "old", "new"), [
    ("rocket", None, "x"), ("payment_intent", None, "paid"), ("payment_intent", "paid", "succeeded"),
])
def test_unknown_kind_or_status_is_a_mapping_error(kind: str, old: str | None, new: str) -> None:
    with pytest.raises(MappingError) as info:
        is_forward(kind, old, new)
    assert info.value.suggested_fix


def test_terminal_statuses_never_move() -> None:
    for kind, precedence in DEFAULT_PRECEDENCE.items():
        top = max(precedence.ranks.values())
        for old, rank in precedence.ranks.items():
            if rank == top:
                assert not any(is_forward(kind, old, new) for new in precedence.ranks), (kind, old)
