"""StepOutcome: what an attempt came to, and the record DBOS keeps of it (read back unchanged)."""

from __future__ import annotations

from typing import Any

import pytest

from commerce_bridge import errors as E
from commerce_bridge.engine import StepOutcome


def test_a_success_records_only_its_output() -> None:
    out = StepOutcome.succeeded({"id": "pi_1"})
    assert out.to_record() == {"ok": True, "output": {"id": "pi_1"}}
    assert StepOutcome.from_record(out.to_record()) == out


def test_a_classified_error_round_trips_and_rebuilds_its_class_for_the_retry_policy() -> None:
    exc = E.RateLimited("slow down", retry_after=3.0, details={"limit": 100})
    out = StepOutcome.of_error(exc, {"amount": 5})
    back = StepOutcome.from_record(out.to_record())
    assert back == out
    err = back.error()
    assert isinstance(err, E.RateLimited) and err.retry_after == 3.0 and err.details == {"limit": 100}
    assert back.failure.transient and not back.failure.bug and back.failure.code == exc.code


def test_a_bug_keeps_its_traceback_is_never_retried_and_gets_the_bug_fix() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        out = StepOutcome.of_bug(exc, {"x": 1})
    assert out.bug and out.code == "internal_error" and "KeyError" in (out.traceback or "")
    assert isinstance(out.error(), RuntimeError)
    assert "report it with the traceback" in out.fix()
    assert StepOutcome.from_record(out.to_record()) == out


@pytest.mark.parametrize(("record", "fix"), [
    ({"ok": False, "code": "upstream_unavailable", "message": "502", "transient": True}, "kept failing"),
    ({"ok": False, "code": "validation_error", "message": "bad", "transient": False}, "Correct the data"),
    ({"ok": False, "code": "validation_error", "message": "bad", "transient": False, "suggested_fix": "do X"}, "do X"),
])
def test_records_of_earlier_versions_read_back_with_the_fix_of_their_kind(record: dict[str, Any], fix: str) -> None:
    """The keys DBOS recorded before StepOutcome existed are the keys it reads (runs in flight replay)."""
    out = StepOutcome.from_record(record)
    assert not out.ok and out.code == record["code"] and fix in out.fix()
    assert out.to_record() == record


def test_inputs_and_details_are_recorded_as_plain_json() -> None:
    from datetime import date
    out = StepOutcome.of_error(E.ValidationError("bad date", details={"on": date(2026, 12, 7)}), {"on": date(2026, 1, 2)})
    assert out.details == {"on": "2026-12-07"} and out.input == {"on": "2026-01-02"}
