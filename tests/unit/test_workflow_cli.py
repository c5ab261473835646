"""``commerce-bridge workflows ...`` through Typer's runner: list, validate, show, graph, dry-run, schema, catalogue."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli_workflows import workflows_app
from commerce_bridge.workflows.registry import BUILTIN_DIR

runner = CliRunner()


def test_list_shows_builtins_and_code_workflows(tmp_path: Path) -> None:
    (tmp_path / "paid.yaml").write_text((BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
                                        .replace("version: 1", "version: 2"))
    result = runner.invoke(workflows_app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert any(line[:4] == ["stripe.payment_succeeded", "1", "-", "builtin"] for line in lines)
    assert any(line[:4] == ["stripe.payment_succeeded", "2", "yes", "user"] for line in lines)
    assert any(line[:4] == ["core.audit", "1", "yes", "code"] for line in lines)


def test_validate_passes_for_the_builtins() -> None:
    result = runner.invoke(workflows_app, ["validate", *map(str, sorted(BUILTIN_DIR.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == 4


def test_validate_fails_with_line_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nversion: 1\ntrigger: {event_types: [x]}\nsteps:\n  - id: a\n    uses: core.audit.recrd\n")
    result = runner.invoke(workflows_app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:6:11: unknown step type 'core.audit.recrd'" in result.output
    assert "did you mean 'core.audit.record'" in result.output and "1 problem(s) found" in result.output


def test_validate_without_files_checks_the_user_folder(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("name: t\n")
    result = runner.invoke(workflows_app, ["validate", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "'version' is a required property" in result.output


def test_show_and_graph_print_the_workflow() -> None:
    shown = runner.invoke(workflows_app, ["show", "clarity.order_voided"])
    assert shown.exit_code == 0 and "uses: stripe.payment_intent.cancel" in shown.output
    assert "(builtin, active)" in shown.output
    code = runner.invoke(workflows_app, ["show", "core.audit"])
    assert code.exit_code == 0 and "uses: core.audit.record" in code.output
    graph = runner.invoke(workflows_app, ["graph", "clarity.order_shipped"])
    assert graph.exit_code == 0 and graph.output.startswith("flowchart TD")
    missing = runner.invoke(workflows_app, ["show", "nope", "--version", "9"])
    assert missing.exit_code == 1 and "no workflow nope version 9" in missing.output


def test_dry_run_prints_steps_and_calls_without_making_them(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"id": "evt_9", "type": "salesorder.created", "data": {"ID": 7}}))
    result = runner.invoke(workflows_app, ["dry-run", "clarity.order_to_cash", "--event", str(event),
                                           "--fail", "payment=upstream_rejected"])
    assert result.exit_code == 0, result.output
    assert "- payment: stripe.payment_intent.create -> failed" in result.output
    assert "idempotency key clarity:evt_9:clarity.order_to_cash:hold" in result.output
    assert result.output.rstrip().endswith("outcome: handled")
    as_json = runner.invoke(workflows_app, ["dry-run", "clarity.order_to_cash", "--event", str(event), "--json"])
    data = json.loads(as_json.output)
    assert data["outcome"] == "succeeded" and data["steps"][0]["params"] == {"order_id": 7}
    bad = runner.invoke(workflows_app, ["dry-run", "clarity.order_to_cash", "--event", str(event), "--fail", "x"])
    assert bad.exit_code == 2


def test_schema_and_catalogue_print_generated_documents() -> None:
    schema = json.loads(runner.invoke(workflows_app, ["schema"]).output)
    assert schema["$schema"].endswith("2020-12/schema") and "stripe.refund.create" in json.dumps(schema)
    md = runner.invoke(workflows_app, ["catalogue"]).output
    assert "## clarity.order.set_status" in md
    listing = json.loads(runner.invoke(workflows_app, ["catalogue", "--json"]).output)
    assert len(listing) == 21
