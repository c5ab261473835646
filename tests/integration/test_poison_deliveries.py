"""One delivery that cannot be dispatched harms only itself (SQLite and PostgreSQL, engine in-process).

A poison delivery (it cannot be parsed, routed, started or serialised) is set aside on its own: marked
failed, filed in the dead-letter queue with the reason and a fix, counted, and every other delivery of
the same batch and after it goes on. Replay dispatches it again after a fix; discard gives up on it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.workflows.spec import StepSpec, Trigger, WorkflowSpec
from tests.support.engine import deliver_raw, run_status, wait_for


def normal(event_id: str, **data: Any) -> tuple[str, str, bytes]:
    return event_id, "test.happened", json.dumps(
        {"id": event_id, "type": "test.happened", "data": {"amount_minor": 100, **data}}).encode()


def deep(event_id: str, levels: int = 500) -> tuple[str, str, bytes]:
    """Valid JSON that the engine cannot serialise (pickle hits Python's recursion limit)."""
    nested = "[" * levels + "]" * levels
    return event_id, "test.happened", (
        f'{{"id": "{event_id}", "type": "test.happened", "data": {{"amount_minor": 1}}, "d": {nested}}}'
    ).encode()


def isolated_count(c: Any, stage: str) -> float:
    value = c.metrics.registry.get_sample_value(
        "cb_deliveries_isolated_total", {"source": "stripe", "stage": stage})
    return value or 0.0


def open_entries(c: Any) -> dict[str, dict[str, Any]]:
    return {e["run_id"]: e for e in c.dead_letters.list(status="open", limit=500)}


def test_a_delivery_the_engine_cannot_serialise_is_set_aside_and_the_batch_goes_on(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    deliver_raw(c, [normal("evt_before"), deep("evt_deep"), normal("evt_after")])
    wait_for(lambda: run_status(c, "stripe:evt_after:test.flow") == "succeeded")
    wait_for(lambda: run_status(c, "stripe:evt_before:test.flow") == "succeeded")

    assert c.inbox.get("stripe", "evt_deep").status == "failed"  # type: ignore[union-attr]
    entry = open_entries(c)["stripe:evt_deep:(dispatch)"]
    assert entry["step_id"] == "(dispatch)" and entry["step_type"] == "core.dispatch.start"
    assert "RecursionError" in entry["error_message"] and "serialise" in entry["error_message"]
    assert "replay" in entry["suggested_fix"].lower()
    assert entry["step_input"]["inbox_id"] == c.inbox.get("stripe", "evt_deep").id  # type: ignore[union-attr]
    # its runs never started: parked at dispatch, not "queued" for ever
    assert run_status(c, "stripe:evt_deep:test.flow") == "parked"
    assert run_status(c, "stripe:evt_deep:core.audit") == "parked"
    assert isolated_count(c, "start") == 1
    assert all(key[0] != "stripe:evt_deep:test.flow:first" for key in flaky.calls)

    # later deliveries are not held back either
    deliver_raw(c, [normal("evt_later")])
    wait_for(lambda: run_status(c, "stripe:evt_later:test.flow") == "succeeded")
    assert c.check_dispatcher()[0]


def test_a_filter_that_fails_files_the_event_and_replay_after_the_fix_runs_it(engine_factory: Any) -> None:
    """A workflow whose filter cannot judge an event does not drop it: it waits in the DLQ for the fix."""
    def picky(version: str, expr: str) -> WorkflowSpec:
        return WorkflowSpec(name="test.picky", version=version,
                            trigger=Trigger(sources=("stripe",), event_types=("test.*",), filter=expr),
                            steps=(StepSpec(id="only", uses="testsys.thing.do", with_={"amount": "$/event/data/n"}),))

    broken = picky("1", "length(event.data.note) > `0`")  # a number has no length: the filter fails
    c, _ = engine_factory(workflows=[broken])
    deliver_raw(c, [normal("evt_note", note=5, n=7), normal("evt_fine", note="gift", n=8)])
    wait_for(lambda: c.inbox.get("stripe", "evt_note").status == "failed")  # type: ignore[union-attr]
    wait_for(lambda: run_status(c, "stripe:evt_fine:test.picky") == "succeeded")
    # the workflows that could judge it still ran; the one that could not waits, parked at dispatch
    wait_for(lambda: run_status(c, "stripe:evt_note:test.flow") == "succeeded")
    assert run_status(c, "stripe:evt_note:test.picky") == "parked"
    entry = open_entries(c)["stripe:evt_note:(dispatch)"]
    assert "test.picky" in entry["error_message"] and entry["step_type"] == "core.dispatch.route"
    assert isolated_count(c, "route") == 1

    # the operator fixes the workflow file (a new version) and restarts, then replays the entry
    assert c.engine is not None
    c.engine.shutdown()
    fixed = picky("2", "to_string(event.data.note) != ''")
    c2, flaky2 = engine_factory(workflows=[fixed])
    c2.admin.replay(entry["id"], "filter fixed")
    wait_for(lambda: run_status(c2, "stripe:evt_note:test.picky") == "succeeded")
    assert ("stripe:evt_note:test.picky:only", 1) in flaky2.calls
    wait_for(lambda: c2.inbox.get("stripe", "evt_note").status == "processed")  # type: ignore[union-attr]
    assert c2.dead_letters.get(entry["id"])["status"] == "replayed"
    assert "stripe:evt_note:(dispatch)" not in open_entries(c2)


def test_replay_of_a_delivery_that_is_still_poison_files_it_again_and_discard_closes_it(engine_factory: Any) -> None:
    c, _ = engine_factory()
    deliver_raw(c, [deep("evt_stubborn")])
    wait_for(lambda: "stripe:evt_stubborn:(dispatch)" in open_entries(c))
    first = open_entries(c)["stripe:evt_stubborn:(dispatch)"]

    c.admin.replay(first["id"], "try again")
    wait_for(lambda: any(e["id"] != first["id"] for e in open_entries(c).values()
                         if e["run_id"] == "stripe:evt_stubborn:(dispatch)"))
    second = open_entries(c)["stripe:evt_stubborn:(dispatch)"]
    assert c.dead_letters.get(first["id"])["status"] == "replayed"
    assert isolated_count(c, "start") == 2

    c.admin.discard(second["id"], "cannot be processed; asked the sender")
    assert c.dead_letters.get(second["id"])["status"] == "discarded"
    assert run_status(c, "stripe:evt_stubborn:test.flow") == "discarded"
    assert c.dead_letters.count_open() == 0


def test_readiness_reports_a_stuck_dispatcher(engine_factory: Any) -> None:
    """A delivery waiting undispatched longer than the limit makes serve/worker unready, saying why."""
    c, _ = engine_factory(launch=False, dispatch_stuck_after_s=30)
    assert c.check_dispatcher() == (True, "keeping up")
    old = datetime.now(UTC) - timedelta(seconds=45)
    c.inbox.record_batch([Delivery("stripe", "evt_waiting", "test.happened", normal("evt_waiting")[2], old)])
    ok, detail = c.check_dispatcher()
    assert not ok and "dispatcher stuck" in detail, detail
