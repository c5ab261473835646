"""Mermaid diagrams of workflows: steps in order, when as decisions, on_error dashed."""

from __future__ import annotations

from commerce_bridge.workflows.graph import mermaid
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.spec import OnError, OnErrorAction, StepSpec, Trigger, WorkflowSpec


def test_order_to_cash_graph_shows_decisions_and_the_decline_branch() -> None:
    spec = WorkflowRegistry.load().get("clarity.order_to_cash", "3")
    assert spec is not None
    text = mermaid(spec)
    assert text.startswith("flowchart TD\n")
    assert "trigger --> s_get" in text
    assert 'w_payment{"when steps.order.needs_payment"}' in text
    assert "w_payment -- no --> w_tell_authenticate" in text
    assert "s_payment -. \"on error when errors.payment.code == 'upstream_rejected'\" .-> s_hold" in text
    assert 's_hold[/"hold<br/>clarity.order.set_status"/]' in text
    assert "w_tell_cancelled -- no --> handled" in text and "s_tell_authenticate --> done" in text


def test_goto_continue_retry_and_quotes_are_drawn() -> None:
    spec = WorkflowSpec("t", "1", Trigger(("s",), ("e",), filter='event.kind == "x" && event.n < `3`'), (
        StepSpec("a", "core.audit.record", on_error=OnError(OnErrorAction.GOTO, goto="c"), retry={"max_attempts": 2}),
        StepSpec("b", "core.audit.record", on_error=OnError(OnErrorAction.CONTINUE)),
        StepSpec("c", "core.audit.record"),
    ))
    text = mermaid(spec)
    assert 's_a -. "on error: goto c" .-> s_c' in text
    assert 's_b -. "on error: continue" .-> s_c' in text
    assert "retry: max_attempts=2" in text
    assert "#quot;x#quot;" in text and "#lt; #96;3#96;" in text and "handled" not in text
