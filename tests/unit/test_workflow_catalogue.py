"""Docs-as-tests for the step catalogue: every step type documented, every example valid, the page in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from commerce_bridge import errors as E
from commerce_bridge.workflows.catalogue import (
    MARKDOWN_BANNER,
    catalogue_markdown,
    workflow_schema,
)
from commerce_bridge.workflows.expressions import compile_expression, is_template
from commerce_bridge.workflows.loader import check_text
from commerce_bridge.workflows.steps import step_catalogue

ROOT = Path(__file__).resolve().parents[2]
CAT = step_catalogue()
TYPES = CAT.all()
FLOW_STEP_TYPES = [
    "core.audit.record", "outbound.webhook.post", "core.identity.link", "core.identity.lookup",
    "core.validate.order", "core.shipment.capture_amount", "clarity.order.get", "clarity.order.set_status",
    "clarity.order.add_payment", "clarity.order.find_by_key", "stripe.customer.ensure", "stripe.payment_intent.create",
    "stripe.payment_intent.capture", "stripe.payment_intent.cancel", "stripe.payment_intent.retrieve",
    "stripe.refund.create", "erp.customer.ensure", "erp.sales_order.ensure", "erp.payment_entry.ensure",
    "notify.email.send", "core.wait.until",
    # the refund path (stripe.refund_recorded)
    "stripe.refund.list", "clarity.return.sync", "clarity.order.set_refund_status", "erp.sales_invoice.ensure",
    "erp.credit_note.sync", "core.refund.report_failed", "notify.refund.action_required",
    # a return refunded in Clarity (clarity.return_refunded)
    "clarity.return.get", "stripe.return.refund", "clarity.return.record_refund", "erp.return_credit_note.ensure",
    # dispute evidence (stripe.dispute_evidence)
    "stripe.dispute_evidence.read", "core.sent_mail.list", "stripe.dispute_evidence.stage",
    # disputes and early fraud warnings (stripe.dispute_recorded, stripe.early_fraud_warning)
    "stripe.dispute.read", "clarity.order.set_dispute_status", "clarity.order.add_dispute_note",
    "erp.dispute_journal.sync", "notify.operations.alert", "stripe.early_fraud_warning.read",
    "stripe.early_fraud_warning.refund",
    # payouts reconciled (stripe.payout_reconciled)
    "stripe.payout.reconcile", "erp.payout_journal.post", "erp.payout_journal.reverse",
    # stock from ERPNext to Clarity (erp.stock_changed)
    "erp.stock.totals", "clarity.inventory.set",
    # customers both ways (stripe.customer_changed, clarity.account_changed, erp.customer_changed)
    "customer.sync",
    # products and prices both ways (stripe.product_changed, clarity.product_changed, erp.item_changed)
    "product.sync",
]


def _wrap(step: dict[str, Any]) -> dict[str, Any]:
    return {"name": "example.flow", "version": 1, "trigger": {"event_types": ["*"]}, "steps": [step]}


def test_catalogue_declares_every_step_type_of_the_order_to_cash_flow() -> None:
    assert sorted(FLOW_STEP_TYPES) == CAT.names()


def test_generated_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(workflow_schema(CAT))


@pytest.mark.parametrize("step_type", TYPES, ids=[t.type for t in TYPES])
def test_step_type_is_documented_and_has_a_valid_example(step_type: Any) -> None:
    assert step_type.summary and step_type.description and step_type.output and step_type.idempotency
    assert step_type.errors, "every step type says which errors it raises"
    assert step_type.examples, "every step type has at least one example"
    assert all(p.description for p in step_type.params)
    validator = jsonschema.Draft202012Validator(workflow_schema(CAT))
    for example in step_type.examples:
        assert example["uses"] == step_type.type
        problems = [e.message for e in validator.iter_errors(_wrap(dict(example)))]
        assert problems == []
        for value in dict(example.get("with") or {}).values():
            if is_template(value):
                compile_expression(value)


@pytest.mark.parametrize("step_type", TYPES, ids=[t.type for t in TYPES])
def test_errors_named_by_a_step_type_exist_in_the_error_tree(step_type: Any) -> None:
    names = {cls.__name__ for cls in E.all_error_classes()}
    assert {name for name, _ in step_type.errors} <= names


def test_schema_rejects_a_missing_required_parameter_and_an_unknown_one() -> None:
    validator = jsonschema.Draft202012Validator(workflow_schema(CAT))
    bad = _wrap({"id": "s", "uses": "clarity.order.set_status", "with": {"order_id": "1", "colour": "red"}})
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "Additional properties" in messages
    missing = _wrap({"id": "s", "uses": "clarity.order.set_status", "with": {"order_id": "1"}})
    assert any("status_key" in e.message for e in validator.iter_errors(missing))


def test_schema_accepts_expressions_for_typed_parameters_and_rejects_wrong_literals() -> None:
    validator = jsonschema.Draft202012Validator(workflow_schema(CAT))
    ok = _wrap({"id": "s", "uses": "stripe.refund.create",
                "with": {"payment_intent_id": "$/steps/p/id", "amount": {"minor": "${ x }", "currency": "EUR"}}})
    assert list(validator.iter_errors(ok)) == []
    bad = _wrap({"id": "s", "uses": "stripe.refund.create",
                 "with": {"payment_intent_id": "pi_1", "amount": {"minor": 1.5, "currency": "eur"}}})
    assert list(validator.iter_errors(bad))


def test_examples_pass_the_workflow_linter_apart_from_references_to_absent_steps() -> None:
    import yaml

    for t in TYPES:
        for example in t.examples:
            text = yaml.safe_dump(_wrap(dict(example)), sort_keys=False)
            problems = [p for p in check_text(text, f"{t.type}.example") if "no step has that id" not in p.message]
            assert problems == [], (t.type, [str(p) for p in problems])


def test_steps_reference_page_is_generated_from_the_catalogue() -> None:
    page = (ROOT / "docs" / "reference" / "steps.md").read_text(encoding="utf-8")
    generated = catalogue_markdown(CAT)
    assert MARKDOWN_BANNER in page
    body = generated.split("\n", 1)[1]
    assert body in page, "docs/reference/steps.md is stale: regenerate it from catalogue_markdown()"
    for t in TYPES:
        assert f"## {t.type}" in generated


def test_workflow_format_reference_documents_every_key_and_command() -> None:
    page = (ROOT / "docs" / "reference" / "workflows.md").read_text(encoding="utf-8")
    schema = workflow_schema(CAT)
    keys = [*schema["properties"], *schema["properties"]["trigger"]["properties"],
            *schema["$defs"]["step"]["properties"], *schema["$defs"]["retry"]["properties"], "goto", "continue"]
    assert [k for k in keys if f"`{k}`" not in page and f"{k}:" not in page] == []
    from commerce_bridge.entrypoints.cli_workflows import workflows_app

    commands = [c.name or (c.callback.__name__ if c.callback else "") for c in workflows_app.registered_commands]
    assert [c for c in commands if f"`workflows {c}" not in page] == []


def test_the_catalogue_is_the_step_types_declared_beside_their_actions() -> None:
    """Every module of workflows/steps that declares STEP_TYPES is collected, and nothing else is."""
    import importlib
    import pkgutil

    from commerce_bridge.workflows import steps

    declaring = set()
    for info in pkgutil.iter_modules(steps.__path__):
        module = importlib.import_module(f"{steps.__name__}.{info.name}")
        if hasattr(module, "STEP_TYPES"):
            declaring.add(module.__name__)
    assert declaring == {m.__name__ for m in steps.STEP_MODULES}, "add the module to STEP_MODULES"
    declared = [t.type for m in steps.STEP_MODULES for t in m.STEP_TYPES]
    assert sorted(declared) == CAT.names() and len(declared) == len(set(declared))


def test_every_declared_step_type_has_an_action_once_every_connector_is_there() -> None:
    """build_actions binds an action to each declared step type given every gateway (none is left unbound)."""
    from commerce_bridge.workflows import steps

    params = steps.build_actions.__code__.co_varnames[:steps.build_actions.__code__.co_kwonlyargcount]
    class Unused:  # stands in for a gateway: binding only closes over it (or a bound method), nothing is called
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

        def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a factory (the customer syncer's)
            return self

    every_setting = steps.FlowSettings(inventory_section="MAIN", customer_sync=True)  # the steps a setting enables (needs_setting)
    actions = steps.build_actions(**{p: Unused() for p in params if p != "flow"}, flow=every_setting)
    syncer: Any = Unused()  # bound by bootstrap_products.product_actions (CB_PRODUCT_SYNC), not build_actions
    actions.update(steps.products.actions(syncer))
    assert sorted(actions) == CAT.names()
