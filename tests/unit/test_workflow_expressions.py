"""The expression language: JMESPath compiled once, truthiness, ${ } and $/pointer parameters, static analysis."""

from __future__ import annotations

import pytest

from commerce_bridge.errors import ValidationError
from commerce_bridge.workflows.expressions import ExpressionError, compile_expression, truthy
from commerce_bridge.workflows.spec import make_scope, resolve_params

SCOPE = make_scope({"id": "evt_1", "data": {"object": {"id": "pi_1", "amount": 0, "metadata": {"k": "WEB-1"}},
                                             "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}},
                   source="stripe", event_type="payment_intent.succeeded", event_id="evt_1",
                   vars={"status": "On Hold"})
SCOPE["steps"]["get"] = {"ID": 42, "StatusKey": "On Hold"}


def test_whole_string_expression_returns_the_raw_value_when_resolving_params() -> None:
    params = resolve_params({"obj": "${ event.data.object }", "n": "${event.data.object.amount}",
                             "skus": "${ event.data.lines[*].sku }", "missing": "${ event.nope.deeper }",
                             "pointer": "$/steps/get/ID", "literal": "$${ not.an.expression }",
                             "text": "plain ${ x } text", "nested": {"list": ["${ trigger.source }", 3]}},
                            SCOPE)
    assert params == {"obj": SCOPE["event"]["data"]["object"], "n": 0, "skus": ["A", "B"], "missing": None,
                      "pointer": 42, "literal": "${ not.an.expression }", "text": "plain ${ x } text",
                      "nested": {"list": ["stripe", 3]}}


def test_pointer_that_does_not_resolve_is_an_error_when_resolving_params() -> None:
    with pytest.raises(ValidationError, match="does not resolve"):
        resolve_params({"x": "$/steps/nope/ID"}, SCOPE)


def test_expression_that_fails_at_run_time_is_a_validation_error() -> None:
    with pytest.raises(ExpressionError, match="failed"):
        resolve_params({"x": "${ length(event.data.object.amount) }"}, SCOPE)


@pytest.mark.parametrize("text", ["event.data[", "steps.get ==", "", "${ }", "foo bar"])
def test_invalid_expression_does_not_compile(text: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(text)


@pytest.mark.parametrize(("value", "expected"), [
    (None, False), (False, False), ("", False), ([], False), ({}, False),
    (0, True), (0.0, True), ("0", True), ([0], True), (True, True), ({"a": None}, True),
])
def test_truthiness_follows_jmespath(value: object, expected: bool) -> None:
    assert truthy(value) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("steps.get.StatusKey == vars.status", True),
    ("event.data.object.amount", True),  # 0 is true
    ("event.data.object.metadata.missing", False),
    ("contains(['On Hold', 'Void'], steps.get.StatusKey)", True),
    ("length(event.data.lines[?qty > `1`]) == `1`", True),
    ("!(steps.get.StatusKey)", False),
    ("${ trigger.event_type == 'payment_intent.succeeded' }", True),
])
def test_conditions_evaluate_against_the_scope(text: str, expected: bool) -> None:
    assert compile_expression(text).test(SCOPE) is expected


def test_root_paths_name_what_an_expression_reads_from_the_scope() -> None:
    expr = compile_expression("steps.pay.status == 'ok' && length(event.items[?x > `1`].y) > `0` || vars.a[0]")
    assert sorted(expr.root_paths()) == [("event", "items"), ("steps", "pay", "status"), ("vars", "a")]


def test_negated_path_without_parentheses_is_reported_as_a_pitfall() -> None:
    assert compile_expression("!event.data.x").pitfalls()
    assert not compile_expression("!(event.data.x)").pitfalls()
