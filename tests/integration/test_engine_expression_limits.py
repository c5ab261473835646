"""The engine with an expression over its limits: the run parks in the DLQ at that step; nothing crashes."""

from __future__ import annotations

from typing import Any

from commerce_bridge.workflows.spec import StepSpec, Trigger, WorkflowSpec
from tests.support.engine import deliver, run_status, wait_for

DOUBLING = " | ".join(["[@, @][]"] * 20)  # a million elements if nothing stops it


def flow(name: str, step: StepSpec) -> WorkflowSpec:
    return WorkflowSpec(name=name, version="1", trigger=Trigger(sources=("stripe",), event_types=("test.*",)),
                        steps=(step, StepSpec(id="after", uses="testsys.other.do")))


def open_entry(c: Any, run_id: str) -> dict[str, Any]:
    entries = [e for e in c.dead_letters.list(status="open", limit=100) if e["run_id"] == run_id]
    assert len(entries) == 1, entries
    return dict(entries[0])


def test_parameter_over_the_limit_parks_the_run_at_its_step_without_calling_the_action(engine_factory: Any) -> None:
    explode = flow("test.explode_with", StepSpec(id="build", uses="testsys.thing.do",
                                                 with_={"amount": f"${{ [event.data.amount_minor] | {DOUBLING} }}"}))
    c, flaky = engine_factory(workflows=[explode], workflows_disabled=["core.audit", "test.flow"])
    deliver(c, "evt_big")
    run_id = "stripe:evt_big:test.explode_with"
    wait_for(lambda: run_status(c, run_id) == "parked")
    entry = open_entry(c, run_id)
    assert (entry["step_id"], entry["error_code"], entry["attempts"]) == ("build", "validation_error", 1)
    assert "workflow test.explode_with, step build, with.amount: expression" in entry["error_message"]
    # the value limit stops it; on a machine too busy to build 100,000 values in 1 s, the time limit does
    assert "MAX_EXPRESSION_VALUES" in entry["error_message"] or "MAX_EXPRESSION_SECONDS" in entry["error_message"]
    assert "docs/reference/workflows.md#limits" in entry["suggested_fix"]
    assert flaky.calls == []  # neither the step nor the one after it ran


def test_when_over_the_limit_parks_the_run_naming_workflow_and_step(engine_factory: Any) -> None:
    explode = flow("test.explode_when", StepSpec(id="guarded", uses="testsys.thing.do",
                                                 when=f"length([event] | {DOUBLING}) > `1`"))
    c, flaky = engine_factory(workflows=[explode], workflows_disabled=["core.audit", "test.flow"])
    deliver(c, "evt_when")
    run_id = "stripe:evt_when:test.explode_when"
    wait_for(lambda: run_status(c, run_id) == "parked")
    entry = open_entry(c, run_id)
    assert (entry["step_id"], entry["error_code"]) == ("guarded", "validation_error")
    assert "workflow test.explode_when, step guarded, when: expression" in entry["error_message"]
    # the value limit stops it; on a machine too busy to build 100,000 values in 1 s, the time limit does
    assert "MAX_EXPRESSION_VALUES" in entry["error_message"] or "MAX_EXPRESSION_SECONDS" in entry["error_message"]
    assert flaky.calls == []


def test_a_wait_whose_parameter_cannot_be_resolved_parks_instead_of_hanging(engine_factory: Any) -> None:
    """Before, the ValidationError escaped the wait's checkpoint: the run stayed `running` for good."""
    waits = flow("test.bad_wait", StepSpec(id="pause", uses="core.wait.until",
                                           with_={"delay_s": f"${{ length([event] | {DOUBLING}) }}"}))
    c, flaky = engine_factory(workflows=[waits], workflows_disabled=["core.audit", "test.flow"])
    deliver(c, "evt_wait")
    run_id = "stripe:evt_wait:test.bad_wait"
    wait_for(lambda: run_status(c, run_id) == "parked")
    entry = open_entry(c, run_id)
    assert (entry["step_id"], entry["error_code"]) == ("pause", "validation_error")
    assert "workflow test.bad_wait, step pause" in entry["error_message"]
    assert flaky.calls == []
