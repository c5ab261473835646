"""Workflow tests as data: each file in test_workflow_cases/ gives an event (plus placeholder outputs and
simulated failures) and the step calls a built-in workflow must make, checked through the dry run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from commerce_bridge.workflows.dryrun import dry_run
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.spec import StepSpec, Trigger, WorkflowSpec

CASES = sorted((Path(__file__).parent / "test_workflow_cases").glob("*.yaml"))


@pytest.fixture(scope="module")
def registry() -> WorkflowRegistry:
    return WorkflowRegistry.load()


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def test_every_builtin_workflow_has_cases(registry: WorkflowRegistry) -> None:
    covered = {yaml.safe_load(p.read_text())["workflow"] for p in CASES}
    builtin = {e.spec.name for e in registry.entries() if e.origin == "builtin"}
    assert builtin <= covered, f"no dry-run case for {sorted(builtin - covered)}"


@pytest.mark.parametrize("case_file", CASES, ids=[p.stem for p in CASES])
def test_workflow_makes_the_expected_calls(case_file: Path, registry: WorkflowRegistry) -> None:
    case = yaml.safe_load(case_file.read_text())
    spec = registry.all()
    wf = next(s for s in spec if s.name == case["workflow"])
    result = dry_run(wf, case["event"], source=case.get("source"), outputs=case.get("outputs"),
                     failures=case.get("failures"), pinned_vars=case.get("vars"))
    expect = case["expect"]
    assert result.outcome == expect["outcome"], result.reason or result.state
    assert [c["step"] for c in result.calls()] == expect["calls"]
    if "skipped" in expect:
        assert [s.step_id for s in result.steps if s.status == "skipped"] == expect["skipped"]
    if "failed" in expect:
        assert result.state["failed"] == expect["failed"]
    if "parked_at" in expect:
        assert result.parked_at == expect["parked_at"]
    calls = {c["step"]: c for c in result.calls()}
    for step_id, params in (expect.get("params") or {}).items():
        assert _subset(params, calls[step_id]["params"]), (step_id, calls[step_id]["params"])
    for step_id, key in (expect.get("idempotency_keys") or {}).items():
        assert calls[step_id]["idempotency_key"] == key


def test_unresolvable_parameter_fails_the_step_as_in_a_real_run() -> None:
    wf = WorkflowSpec("t.flow", "1", Trigger(("s",), ("e",)),
                      (StepSpec("a", "core.audit.record", {"x": "$/event/missing"}),))
    result = dry_run(wf, {"id": "1", "type": "e"})
    assert result.outcome == "parked"
    assert result.steps[0].status == "failed"
    assert result.steps[0].error is not None and result.steps[0].error["code"] == "validation_error"


def test_when_that_cannot_be_evaluated_parks_at_that_step() -> None:
    wf = WorkflowSpec("t.flow", "1", Trigger(("s",), ("e",)),
                      (StepSpec("a", "core.audit.record", when="length(event.n)"),))
    result = dry_run(wf, {"id": "1", "type": "e", "n": 5})
    assert (result.outcome, result.parked_at, result.steps[0].status) == ("parked", "a", "when_failed")


def test_dry_run_uses_the_declared_example_output_as_placeholder() -> None:
    wf = WorkflowSpec("t.flow", "1", Trigger(("s",), ("e",)), (
        StepSpec("get", "clarity.order.get", {"order_id": "1"}),
        StepSpec("next", "core.audit.record", {"key": "${ steps.get.CustomKey }"}),
    ))
    result = dry_run(wf, {"id": "1", "type": "e"})
    assert result.calls()[1]["params"] == {"key": "WEB-100001"}
