"""The walk over a workflow (what the engine does with when, retry and on_error), step by step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.workflows.expressions import ExpressionError
from commerce_bridge.workflows.spec import (
    FailureDecision,
    OnError,
    OnErrorAction,
    StepFailure,
    StepSpec,
    Trigger,
    Walker,
    WorkflowSpec,
)

DECLINE = {"code": "upstream_rejected", "message": "card declined", "details": {"decline_code": "x"},
           "transient": False}


def flow(*steps: StepSpec, **kw: Any) -> WorkflowSpec:
    return WorkflowSpec("t.flow", "1", Trigger(("stripe",), ("e.*",)), tuple(steps), **kw)


def drive(spec: WorkflowSpec, fail: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], Walker, str]:
    """Run ``spec`` like the engine: each step outputs {"n": <its index>} unless it is told to fail."""
    w = Walker.start(spec, {"amount": 5}, source="stripe", event_type="e.x", event_id="1")
    ran: list[str] = []
    while (step := w.next_step()) is not None:
        if not w.should_run(step):
            w.skip(step)
            continue
        ran.append(step.id)
        if fail and step.id in fail:
            if w.failed(step, StepFailure(**fail[step.id])) is FailureDecision.PARK:
                return ran, w, "parked"
            continue
        w.succeeded(step, {"n": len(ran)})
    return ran, w, w.outcome


def test_code_built_specs_keep_working_with_positional_fields() -> None:
    step = StepSpec("a", "stripe.refund.create", {"x": "$/event/amount"})
    spec = WorkflowSpec("t", "1", Trigger(("stripe",), ("e",)), (step,))
    assert step.when is None and step.on_error is None and dict(step.retry) == {}
    assert spec.trigger.matches("stripe", "e") and spec.key == ("t", "1")
    assert step.destination == "stripe" and step.idempotency_key("run") == "run:a"


def test_step_with_false_when_is_skipped_and_absent_from_steps() -> None:
    ran, w, outcome = drive(flow(StepSpec("a", "x.y.z"), StepSpec("b", "x.y.z", when="steps.a.n == `2`"),
                                 StepSpec("c", "x.y.z", when="!(steps.b)")))
    assert ran == ["a", "c"] and outcome == "succeeded"
    assert "b" not in w.scope["steps"] and w.state()["skipped"] == ["b"]


def test_permanent_failure_without_on_error_parks() -> None:
    ran, w, outcome = drive(flow(StepSpec("a", "x.y.z"), StepSpec("b", "x.y.z")), fail={"a": DECLINE})
    assert (ran, outcome, w.state()["failed"]) == (["a"], "parked", {"a": "upstream_rejected"})


def test_branch_steps_run_then_the_run_ends_handled() -> None:
    branch = OnError(OnErrorAction.STEPS, steps=(StepSpec("h1", "x.y.z", with_={"c": "${ errors.a.code }"}),
                                                 StepSpec("h2", "x.y.z")))
    spec = flow(StepSpec("a", "x.y.z", on_error=branch), StepSpec("b", "x.y.z"))
    ran, w, outcome = drive(spec, fail={"a": DECLINE})
    assert (ran, outcome) == (["a", "h1", "h2"], "handled")
    assert w.scope["errors"]["a"]["details"] == {"decline_code": "x"}
    assert w.state() == {"succeeded": ["h1", "h2"], "skipped": [], "failed": {"a": "upstream_rejected"},
                         "outcome": "handled"}


def test_branch_is_not_taken_when_the_step_succeeds() -> None:
    branch = OnError(OnErrorAction.STEPS, steps=(StepSpec("h1", "x.y.z"),))
    ran, _, outcome = drive(flow(StepSpec("a", "x.y.z", on_error=branch), StepSpec("b", "x.y.z")))
    assert (ran, outcome) == (["a", "b"], "succeeded")


@pytest.mark.parametrize("error", [
    {"code": "upstream_unavailable", "transient": True},  # retries exhausted
    {"code": "internal_error", "bug": True, "transient": False},
    {"code": "validation_error", "transient": False},  # filtered out by the branch's when
])
def test_transient_bug_and_unmatched_failures_park_even_with_on_error(error: dict[str, Any]) -> None:
    branch = OnError(OnErrorAction.CONTINUE, when="errors.a.code == 'upstream_rejected'")
    ran, _, outcome = drive(flow(StepSpec("a", "x.y.z", on_error=branch), StepSpec("b", "x.y.z")), fail={"a": error})
    assert (ran, outcome) == (["a"], "parked")


def test_continue_goes_on_with_the_next_step() -> None:
    spec = flow(StepSpec("a", "x.y.z", on_error=OnError(OnErrorAction.CONTINUE)),
                StepSpec("b", "x.y.z", when="errors.a.code == 'upstream_rejected'"))
    ran, w, outcome = drive(spec, fail={"a": DECLINE})
    assert (ran, outcome) == (["a", "b"], "succeeded") and "a" not in w.scope["steps"]


def test_goto_skips_forward_to_the_target() -> None:
    spec = flow(StepSpec("a", "x.y.z", on_error=OnError(OnErrorAction.GOTO, goto="d")),
                StepSpec("b", "x.y.z"), StepSpec("c", "x.y.z"), StepSpec("d", "x.y.z"))
    ran, w, outcome = drive(spec, fail={"a": DECLINE})
    assert (ran, outcome, w.state()["skipped"]) == (["a", "d"], "succeeded", ["b", "c"])


def test_when_that_cannot_be_evaluated_raises_for_the_engine_to_park() -> None:
    spec = flow(StepSpec("a", "x.y.z", when="length(event.amount)"))
    w = Walker.start(spec, {"amount": 5})
    step = w.next_step()
    assert step is not None
    with pytest.raises(ExpressionError):
        w.should_run(step)


def test_trigger_filter_sees_event_trigger_and_vars() -> None:
    spec = flow(StepSpec("a", "x.y.z"), vars={"min": 3})
    filtered = WorkflowSpec(spec.name, spec.version, Trigger(("stripe",), ("e.*",), filter=(
        "event.amount > vars.min && trigger.event_type == 'e.x'")), spec.steps, vars={"min": 3})
    assert filtered.accepts("stripe", "e.x", {"amount": 5}, "1")
    assert not filtered.accepts("stripe", "e.x", {"amount": 1}, "1")
    assert not filtered.accepts("stripe", "e.y", {"amount": 5}, "1")
    assert not filtered.accepts("clarity", "e.x", {"amount": 5}, "1")


def test_step_retry_overrides_merge_into_the_engine_retry_policy() -> None:
    from commerce_bridge.engine.retry import RetryPolicies
    from commerce_bridge.workflows.loader import load_text
    from commerce_bridge.workflows.registry import BUILTIN_DIR

    spec = load_text((BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()).spec
    find = next(s for s in spec.steps if s.id == "find")
    policy = RetryPolicies.from_config(overrides={"clarity.": {"max_attempts": 4}}).for_step(find.uses)
    merged = policy.merged(find.retry)
    assert (merged.max_attempts, merged.base_delay_s, merged.max_delay_s) == (12, 2, 60)
    assert merged.max_retry_after_s == policy.max_retry_after_s


def test_goto_to_an_earlier_or_unknown_step_parks_instead_of_looping() -> None:
    spec = flow(StepSpec("a", "x.y.z"), StepSpec("b", "x.y.z", on_error=OnError(OnErrorAction.GOTO, goto="a")))
    ran, _, outcome = drive(spec, fail={"b": DECLINE})
    assert (ran, outcome) == (["a", "b"], "parked")


@st.composite
def _flows(draw: st.DrawFn) -> tuple[WorkflowSpec, dict[str, dict[str, Any]]]:
    n = draw(st.integers(1, 6))
    ids = [f"s{i}" for i in range(n)]
    steps, fail = [], {}
    for i, sid in enumerate(ids):
        when = draw(st.sampled_from([None, "`true`", "`false`", f"steps.{ids[i - 1]}" if i else None]))
        kind = draw(st.sampled_from(["none", "steps", "goto", "continue"]))
        on_error = None
        if kind == "steps":
            on_error = OnError(OnErrorAction.STEPS, steps=(StepSpec(f"{sid}_h", "x.y.z"),))
        elif kind == "continue":
            on_error = OnError(OnErrorAction.CONTINUE)
        elif kind == "goto" and i + 1 < n:
            on_error = OnError(OnErrorAction.GOTO, goto=draw(st.sampled_from(ids[i + 1:])))
        steps.append(StepSpec(sid, "x.y.z", when=when, on_error=on_error))
        if draw(st.booleans()):
            fail[sid] = draw(st.sampled_from([DECLINE, {"code": "upstream_unavailable", "transient": True}]))
    return flow(*steps), fail


@settings(max_examples=200, deadline=None)
@given(_flows())
def test_walk_considers_each_step_at_most_once_in_file_order(case: tuple[WorkflowSpec, dict[str, Any]]) -> None:
    spec, fail = case
    ran, w, outcome = drive(spec, fail)
    state = w.state()
    seen = [*state["succeeded"], *state["skipped"], *state["failed"]]
    assert len(seen) == len(set(seen)), "no step is recorded twice"
    order = [s.id for s in spec.all_steps()]
    assert ran == sorted(ran, key=order.index), "steps run in file order"
    assert set(ran) == set(state["succeeded"]) | set(state["failed"])
    assert set(w.scope["steps"]) == set(state["succeeded"])
    if outcome == "parked":
        assert ran[-1] in state["failed"]
    elif outcome == "handled":
        assert w.ended_by_branch in state["failed"]
    else:
        assert spec.steps[-1].id in seen, "a run that succeeded reached the last step"
