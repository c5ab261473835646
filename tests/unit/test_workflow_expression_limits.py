"""Expression limits: values built, size of what is built, time; and where the error says it happened."""

from __future__ import annotations

import itertools
from typing import Any

import jmespath
import pytest

from commerce_bridge.errors import ValidationError
from commerce_bridge.workflows.expressions import (
    MAX_EXPRESSION_BYTES,
    MAX_EXPRESSION_VALUES,
    ExpressionError,
    ExpressionLimitExceeded,
    ExpressionLimits,
    compile_expression,
)
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.router import Router
from commerce_bridge.workflows.spec import StepSpec, Trigger, Walker, WorkflowSpec, make_scope, resolve_params

# 20 doublings: a million elements (4 million took 3.2 s before the limits)
DOUBLING = " | ".join(["[@, @][]"] * 20)
FROZEN = ExpressionLimits(clock=lambda: 0.0)  # time never passes: only the size limits can stop an evaluation


class Ticking:
    """A clock that moves ``step`` seconds each time it is read (the interpreter reads it at every node)."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def lines(n: int) -> list[dict[str, Any]]:
    return [{"sku": f"SKU-{i}", "qty": i % 5, "name": f"item {i}", "tags": ["a", "b"]} for i in range(n)]


@pytest.mark.parametrize(("text", "data", "limit"), [
    (DOUBLING, [1], "MAX_EXPRESSION_VALUES"),                           # flatten copies: 2**20 elements
    (" | ".join(["[@, @][*][]"] * 20), [1], "MAX_EXPRESSION_VALUES"),    # the same through a projection
    (".".join(["[@, @]"] * 30), 1, "MAX_EXPRESSION_BYTES"),              # shared halves: 2**30 leaves as JSON
    (".".join(["[@, @]"] * 30) + " | to_string(@)", 1, "MAX_EXPRESSION_BYTES"),
    (" | ".join(["merge(@, {a: @, b: @})"] * 30), {"x": 1}, "MAX_EXPRESSION_BYTES"),
    (" | ".join(["join('', [@, @])"] * 30), "ab", "MAX_EXPRESSION_BYTES"),  # text doubling
])
def test_expression_that_grows_exponentially_is_stopped_by_a_size_limit(text: str, data: Any, limit: str) -> None:
    with pytest.raises(ExpressionLimitExceeded) as info:
        compile_expression(text).evaluate(data, FROZEN)
    assert info.value.details["limit"] == limit
    assert limit in info.value.message and "was stopped" in info.value.message
    assert info.value.suggested_fix and "docs/reference/workflows.md#limits" in info.value.suggested_fix
    assert isinstance(info.value, ValidationError) and info.value.code == "validation_error"


def test_values_limit_counts_intermediates_not_only_the_result() -> None:
    # the result is one number, but 2**20 elements are built on the way to it
    with pytest.raises(ExpressionLimitExceeded, match="MAX_EXPRESSION_VALUES"):
        compile_expression(f"length({DOUBLING})").evaluate([1], FROZEN)


def test_values_limit_is_exact_at_its_bound() -> None:
    expr = compile_expression("@[*].sku")  # builds one list: 1 + its elements
    data = lines(999)
    assert len(expr.evaluate(data, ExpressionLimits(max_values=1000, clock=lambda: 0.0))) == 999
    with pytest.raises(ExpressionLimitExceeded, match="more than 999 values"):
        expr.evaluate(data, ExpressionLimits(max_values=999, clock=lambda: 0.0))


def test_referring_to_a_large_value_twice_counts_it_twice() -> None:
    event = {"blob": "x" * 600}
    expr = compile_expression("[event, event]")
    assert expr.evaluate({"event": event}, ExpressionLimits(max_bytes=1300, clock=lambda: 0.0))
    with pytest.raises(ExpressionLimitExceeded, match="larger than 1200 bytes"):
        expr.evaluate({"event": event}, ExpressionLimits(max_bytes=1200, clock=lambda: 0.0))


def test_slow_expression_is_stopped_by_the_time_limit() -> None:
    clock = Ticking(step=0.01)  # each node visited "takes" 10 ms
    expr = compile_expression("@[?qty > `1`].{sku: sku, tags: tags[?@ == 'a']}")
    with pytest.raises(ExpressionLimitExceeded) as info:
        expr.evaluate(lines(1000), ExpressionLimits(max_seconds=1.0, clock=clock))
    assert info.value.details["limit"] == "MAX_EXPRESSION_SECONDS"
    assert "ran longer than 1 s" in info.value.message
    assert clock.reads < 200  # stopped at the first check past the budget, not at the end of the list
    # the same evaluation with time to spare is well within the size limits
    assert len(expr.evaluate(lines(1000), ExpressionLimits(clock=lambda: 0.0))) == 600


def test_normal_expressions_give_what_plain_jmespath_gives() -> None:
    event = {"id": "evt_1", "data": {"lines": lines(5000), "object": {"amount": 0, "metadata": {"k": "WEB-1"}}}}
    scope = make_scope(event, source="clarity", event_type="order.created", event_id="evt_1", vars={"x": "On Hold"})
    for text in [
        "event.data.lines[?qty > `1`].{sku: sku, qty: qty}",
        "sort_by(event.data.lines, &sku)[:3].sku",
        "join(',', event.data.lines[:50].sku)",
        "{order: event, again: event.data, id: event.id}",  # refers to a ~500 KB event twice: under 4 MB
        "length(event.data.lines[*].tags[])",
        "max_by(event.data.lines, &qty).sku",
        "merge(event.data.object, {extra: vars.x})",
        "to_string(event.data.lines[:100])",
        "event.data.object.amount",
    ]:
        assert compile_expression(text).evaluate(scope) == jmespath.search(text, scope), text


def test_default_limits_are_the_documented_constants() -> None:
    limits = ExpressionLimits()
    assert (limits.max_values, limits.max_bytes, limits.max_seconds) == (100_000, 4_000_000, 1.0)
    assert (MAX_EXPRESSION_VALUES, MAX_EXPRESSION_BYTES) == (100_000, 4_000_000)


# ---- where: the workflow and the step ------------------------------------------------------------
def flow(step: StepSpec, *, filter: str | None = None, name: str = "test.explode") -> WorkflowSpec:
    return WorkflowSpec(name, "1", Trigger(("stripe",), ("e.*",), filter=filter), (step,))


def test_limit_in_a_with_parameter_names_workflow_step_and_parameter() -> None:
    spec = flow(StepSpec("boom", "core.audit.record", with_={"items": {"all": f"${{ {DOUBLING} }}"}}))
    walker = Walker.start(spec, [1], source="stripe", event_type="e.x", event_id="1")
    step = walker.next_step()
    assert step is not None
    with pytest.raises(ExpressionLimitExceeded) as info:
        walker.params(step)
    message = info.value.message
    assert message.startswith("workflow test.explode, step boom, with.items.all: expression ")
    assert "MAX_EXPRESSION_VALUES" in message and info.value.suggested_fix
    assert info.value.details["limit"] == "MAX_EXPRESSION_VALUES"


def test_limit_in_when_names_workflow_and_step() -> None:
    spec = flow(StepSpec("boom", "core.audit.record", when=f"length(event | {DOUBLING}) > `0`"))
    walker = Walker.start(spec, [1], source="stripe", event_type="e.x", event_id="1")
    step = walker.next_step()
    assert step is not None
    with pytest.raises(ExpressionLimitExceeded, match=r"^workflow test\.explode, step boom, when: .*VALUES"):
        walker.should_run(step)


def test_limit_in_a_trigger_filter_names_the_workflow_and_the_filter() -> None:
    spec = flow(StepSpec("a", "core.audit.record"), filter=f"length(event | {DOUBLING}) > `0`")
    with pytest.raises(ExpressionLimitExceeded, match=r"^workflow test\.explode, trigger\.filter: "):
        spec.accepts("stripe", "e.x", [1])


def test_routing_treats_a_filter_over_the_limit_as_no_match_and_routes_the_others() -> None:
    reg = WorkflowRegistry(builtin_dir=None, code=[
        flow(StepSpec("a", "core.audit.record"), filter=f"length(event | {DOUBLING}) > `0`"),
        flow(StepSpec("a", "core.audit.record"), name="test.fine"),
    ])
    assert [s.name for s in Router(reg).route("stripe", "e.x", [1], "evt_1")] == ["test.fine"]


def test_other_expression_failures_also_say_where_they_are() -> None:
    with pytest.raises(ExpressionError, match=r"^workflow w, step s, with\.n\[1\]: expression .* failed"):
        resolve_params({"n": [1, "${ length(`1`) }"]}, {}, workflow="w", step="s")
    with pytest.raises(ValidationError, match=r"^with\.p: reference \$/steps/x does not resolve"):
        resolve_params({"p": "$/steps/x"}, {"steps": {}})


def test_each_evaluation_has_its_own_budget() -> None:
    expr = compile_expression("@[*].sku")
    limits = ExpressionLimits(max_values=1500, clock=lambda: 0.0)
    data = lines(1000)
    for _ in itertools.repeat(None, 5):  # 5 x 1001 values in total, 1001 per evaluation
        assert len(expr.evaluate(data, limits)) == 1000
