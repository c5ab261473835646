"""``commerce-bridge workflows ...`` through Typer's runner: list, validate, show, graph, dry-run, schema, catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli_workflows import workflows_app
from commerce_bridge.workflows.registry import BUILTIN_DIR
from commerce_bridge.workflows.steps import step_catalogue

runner = CliRunner()
# every connector configured (nothing is contacted: the CLI reads the settings only), so no workflow is off
CONNECTED = {"CB_STRIPE_API_KEY": "sk_test_cli", "CB_CLARITY_BASE_URL": "http://127.0.0.1:9/API-Admin",
             "CB_ERP_BASE_URL": "http://127.0.0.1:9"}


def test_list_shows_builtins_and_code_workflows(tmp_path: Path) -> None:
    (tmp_path / "paid.yaml").write_text((BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
                                        .replace("version: 3", "version: 4"))
    result = runner.invoke(workflows_app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert any(line[:4] == ["stripe.payment_succeeded", "3", "-", "builtin"] for line in lines)
    assert any(line[:4] == ["stripe.payment_succeeded", "4", "yes", "user"] for line in lines)
    assert any(line[:4] == ["core.audit", "1", "yes", "code"] for line in lines)


def test_validate_passes_for_the_builtins() -> None:
    result = runner.invoke(workflows_app, ["validate", *map(str, sorted(BUILTIN_DIR.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == len(list(BUILTIN_DIR.glob("*.yaml")))


def test_validate_fails_with_line_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nversion: 1\ntrigger: {event_types: [x]}\nsteps:\n  - id: a\n    uses: core.audit.recrd\n")
    result = runner.invoke(workflows_app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:6:11: unknown step type 'core.audit.recrd'" in result.output
    assert "did you mean 'core.audit.record'" in result.output and "1 problem(s) found" in result.output


def test_validate_refuses_a_builtins_name_and_version_with_another_text(tmp_path: Path) -> None:
    builtin = BUILTIN_DIR / "stripe.payment_succeeded.yaml"
    same = tmp_path / "same" / "paid.yaml"
    same.parent.mkdir()
    same.write_text(builtin.read_text())  # the very text: nothing to refuse
    edited = tmp_path / "edited" / "paid.yaml"
    edited.parent.mkdir()
    edited.write_text(builtin.read_text().replace("steps:\n", "steps:\n  # my change\n", 1))
    bumped = tmp_path / "bumped" / "paid.yaml"
    bumped.parent.mkdir()
    bumped.write_text(edited.read_text().replace("version: 3\n", "version: 4\n", 1))
    for args in (["validate", str(same)], ["validate", "--dir", str(same.parent)],
                 ["validate", str(bumped)], ["validate", "--dir", str(bumped.parent)]):
        assert runner.invoke(workflows_app, args).exit_code == 0, args
    for args in (["validate", str(edited)], ["validate", "--dir", str(edited.parent)]):
        refused = runner.invoke(workflows_app, args)
        assert refused.exit_code == 1, args
        assert f"error {edited}: stripe.payment_succeeded version 3 is also the built-in, with a different text" \
            in refused.output and "needs a new `version`" in refused.output


def test_validate_says_which_status_name_runs_get_when_the_file_says_another(tmp_path: Path) -> None:
    text = (BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
    assert "  paid_status: Full Payment Received\n" in text
    (tmp_path / "paid.yaml").write_text(text.replace("version: 3\n", "version: 4\n", 1)
                                        .replace("  paid_status: Full Payment Received\n", "  paid_status: Paid\n"))
    result = runner.invoke(workflows_app, ["validate", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [note] = [line for line in result.output.splitlines() if line.startswith("note")]
    assert 'vars.paid_status is "Full Payment Received" in runs, from the default status map' in note
    assert '(the file says "Paid")' in note and "CB_STATUS_MAP" in note and "CB_WORKFLOW_VARS" in note


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
                                           "--fail", "payment=upstream_rejected"], env=CONNECTED)
    assert result.exit_code == 0, result.output
    assert "- payment: stripe.payment_intent.create -> failed" in result.output
    assert "idempotency key clarity:evt_9:clarity.order_to_cash:hold" in result.output
    assert result.output.rstrip().endswith("outcome: handled")
    as_json = runner.invoke(workflows_app, ["dry-run", "clarity.order_to_cash", "--event", str(event), "--json"],
                            env=CONNECTED)
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
    assert len(listing) == len(step_catalogue().all())


# ---- the settings a run would see (CB_WORKFLOWS_DISABLED, CB_STATUS_MAP, CB_WORKFLOW_VARS) -----------
PAID = {"id": "evt_p", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "metadata": {"clarity_order_key": "WEB-1"}}}}
RENAMED_PAID = json.dumps({"stripe_events_to_clarity": {"payment_intent.succeeded": "Paid by Card"}})


def _event(tmp_path: Path, event: dict[str, object]) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return str(path)


def _processing(tmp_path: Path) -> list[str]:
    """--outputs: Clarity answers the payment with a status that is not the paid one, so mark_paid runs."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"add_payment": {"order_id": "42", "added": True, "status_key": "Processing"}}))
    return ["--outputs", str(path)]


def _mark_paid(output: str) -> dict[str, object]:
    data = json.loads(output)
    return next(s for s in data["steps"] if s["step_id"] == "mark_paid")


CONNECTED_TOML = "".join(f'{key.removeprefix("CB_").lower()} = "{value}"\n' for key, value in CONNECTED.items())


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps stderr lines at the terminal width


def test_connectors_alone_give_every_workflow_and_the_seed_status_names(tmp_path: Path) -> None:
    listed = runner.invoke(workflows_app, ["list"], env=CONNECTED)
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines()[1:] if not line.startswith(("ENABLED", " "))]
    customer_sync = {"stripe.customer_changed", "clarity.account_changed", "erp.customer_changed"}
    product_sync = {"stripe.product_changed", "clarity.product_changed", "erp.item_changed"}
    needs_setting = {"core.audit", "erp.stock_changed", *customer_sync, *product_sync}
    assert rows and all(row[4] == ("no" if row[0] in needs_setting else "yes") for row in rows)
    # core.audit starts only with CB_AUDIT_RUNS=true, erp.stock_changed with CB_CLARITY_INVENTORY_SECTION and the
    # customer sync with CB_CUSTOMER_SYNC (a step type they use needs it); nothing else is off
    flat = _flat(listed.output)
    assert ("ENABLED no: off unless CB_AUDIT_RUNS=true (the inbox row of each delivery is its audit record) "
            "(core.audit); no run starts") in flat
    # only what is missing is named: the connectors are configured
    assert "erp.stock_changed: clarity.inventory.set (set CB_CLARITY_INVENTORY_SECTION)" in flat
    for name in customer_sync:
        assert f"{name}: customer.sync (set CB_CUSTOMER_SYNC)" in flat
    for name in product_sync:
        assert f"{name}: product.sync (set CB_PRODUCT_SYNC)" in flat
    opted_in = runner.invoke(workflows_app, ["list"], env={**CONNECTED, "CB_CLARITY_INVENTORY_SECTION": "MAIN",
                                                           "CB_CUSTOMER_SYNC": "true"})
    assert not any(f"  {name}:" in opted_in.output for name in ("erp.stock_changed", *customer_sync))
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", _event(tmp_path, PAID),
                                        "--json", *_processing(tmp_path)], env=CONNECTED)
    assert ran.exit_code == 0, ran.output
    assert _mark_paid(ran.output)["params"]["status_key"] == "Full Payment Received"


def test_dry_run_sets_the_status_the_merchant_mapped_and_no_config_shows_the_file(tmp_path: Path) -> None:
    event = _event(tmp_path, PAID)
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event, "--json"],
                        env={"CB_STATUS_MAP": RENAMED_PAID, **CONNECTED})
    assert ran.exit_code == 0, ran.output
    step = _mark_paid(ran.output)
    assert step["status"] == "run" and step["params"] == {"order_id": 42, "status_key": "Paid by Card"}
    assert json.loads(ran.output)["vars"] == {"paid_status": "Paid by Card", "invoice_on": "paid"}
    text = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event],
                         env={"CB_STATUS_MAP": RENAMED_PAID, **CONNECTED})
    assert '"status_key": "Paid by Card"' in text.output
    # the catalogue's example answer of add_payment is the seed's paid status: the file alone skips mark_paid
    file_only = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event, "--json",
                                              "--no-config"], env={"CB_STATUS_MAP": RENAMED_PAID})
    assert _mark_paid(file_only.output)["status"] == "skipped"
    file_only = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event, "--json",
                                              "--no-config", *_processing(tmp_path)], env={"CB_STATUS_MAP": RENAMED_PAID})
    assert _mark_paid(file_only.output)["params"]["status_key"] == "Full Payment Received"


def test_the_status_map_and_workflows_dir_of_the_toml_file_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "paid.yaml").write_text((BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
                                      .replace("version: 3", "version: 4"))
    # the autouse fixture runs each test in tmp_path: this is ./commerce-bridge.toml
    (tmp_path / "commerce-bridge.toml").write_text(
        f'workflows_dir = "{folder}"\n{CONNECTED_TOML}'
        '[status_map.stripe_events_to_clarity]\n"payment_intent.succeeded" = "Settled"\n')
    listed = runner.invoke(workflows_app, ["list"])
    assert any(line.split()[:5] == ["stripe.payment_succeeded", "4", "yes", "user", "yes"]
               for line in listed.output.splitlines()), listed.output
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", _event(tmp_path, PAID),
                                        "--json"])
    assert json.loads(ran.output)["version"] == "4"
    assert _mark_paid(ran.output)["params"]["status_key"] == "Settled"


def test_show_prints_the_file_then_the_vars_a_run_is_pinned_with_and_their_origin() -> None:
    env = {"CB_STATUS_MAP": RENAMED_PAID,
           "CB_WORKFLOW_VARS": json.dumps({"clarity.order_to_cash": {"capture_method": "manual"}})}
    paid = runner.invoke(workflows_app, ["show", "stripe.payment_succeeded"], env=env)
    assert paid.exit_code == 0, paid.output
    assert ('#   paid_status: "Paid by Card"  <- CB_STATUS_MAP (the file says "Full Payment Received")'
            in paid.output)
    assert (BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text().rstrip() in paid.output
    # everything after the file is a comment: the output is still a workflow file
    assert yaml.safe_load(paid.output)["vars"] == {"paid_status": "Full Payment Received", "invoice_on": "paid"}
    assert '#   invoice_on: "paid"  <- CB_ERP_INVOICE_ON' in paid.output
    cash = runner.invoke(workflows_app, ["show", "clarity.order_to_cash"], env=env).output
    assert '#   capture_method: "manual"  <- CB_WORKFLOW_VARS (the file says "automatic")' in cash
    assert "#   reminder_after_s: 86400  <- the file" in cash
    assert '#   hold_status: "On Hold"  <- CB_STATUS_MAP' in cash  # same value as the file: no "file says"
    seed = runner.invoke(workflows_app, ["show", "stripe.payment_succeeded"]).output
    assert ('#   paid_status: "Full Payment Received"  <- the default status map (CB_STATUS_MAP not set)'
            in seed)
    file_only = runner.invoke(workflows_app, ["show", "stripe.payment_succeeded", "--no-config"], env=env).output
    assert "pinned" not in file_only and "Paid by Card" not in file_only
    assert file_only.rstrip().endswith((BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text().rstrip())


def test_a_disabled_workflow_is_listed_as_not_enabled_and_its_dry_run_does_not_start(tmp_path: Path) -> None:
    env = {"CB_WORKFLOWS_DISABLED": "stripe.payment_succeeded, core.audit", **CONNECTED}
    listed = runner.invoke(workflows_app, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    enabled = {line.split()[0]: line.split()[4] for line in listed.output.splitlines()[1:]
               if not line.startswith(("ENABLED", " "))}
    assert enabled == {"clarity.order_shipped": "yes", "clarity.order_to_cash": "yes", "erp.stock_changed": "no",
                       "clarity.order_voided": "yes", "core.audit": "no", "stripe.payment_succeeded": "no",
                       "stripe.refund_recorded": "yes", "clarity.return_refunded": "yes",
                       "stripe.dispute_evidence": "yes", "stripe.dispute_recorded": "yes",
                       "stripe.early_fraud_warning": "yes", "stripe.payout_reconciled": "yes",
                       "stripe.customer_changed": "no", "clarity.account_changed": "no",  # CB_CUSTOMER_SYNC
                       "erp.customer_changed": "no", "stripe.product_changed": "no",  # CB_PRODUCT_SYNC
                       "clarity.product_changed": "no", "erp.item_changed": "no"}
    assert ("ENABLED no: disabled by CB_WORKFLOWS_DISABLED (core.audit, stripe.payment_succeeded); no run starts"
            in listed.output)
    event = _event(tmp_path, PAID)
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event], env=env)
    assert ran.exit_code == 0, ran.output
    assert ran.output.splitlines()[-1] == "not started: disabled by CB_WORKFLOWS_DISABLED"
    assert "mark_paid" not in ran.output
    data = json.loads(runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event,
                                                    "--json"], env=env).output)
    assert (data["matched"], data["outcome"], data["reason"], data["steps"]) == (
        False, "not_started", "disabled by CB_WORKFLOWS_DISABLED", [])
    shown = runner.invoke(workflows_app, ["show", "core.audit"], env=env)
    assert "# disabled by CB_WORKFLOWS_DISABLED: no run starts" in shown.output
    file_only = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event,
                                              "--no-config", *_processing(tmp_path)], env=env)
    assert file_only.exit_code == 0 and "- mark_paid: clarity.order.set_status -> run" in file_only.output
    assert "ENABLED no" not in runner.invoke(workflows_app, ["list", "--no-config"], env=env).output


def test_an_unknown_disabled_name_gives_the_start_up_error(tmp_path: Path) -> None:
    env = {"CB_WORKFLOWS_DISABLED": "core.audt"}
    for args in (["list"], ["show", "core.audit"],
                 ["dry-run", "stripe.payment_succeeded", "--event", _event(tmp_path, PAID)]):
        result = runner.invoke(workflows_app, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        out = _flat(result.output)
        assert "commerce-bridge cannot start: invalid configuration" in out
        installed = sorted([yaml.safe_load(f.read_text())["name"] for f in BUILTIN_DIR.glob("*.yaml")]
                           + ["core.audit"])
        assert f"CB_WORKFLOWS_DISABLED: no workflow named core.audt (installed: {', '.join(installed)})" in out
    assert runner.invoke(workflows_app, ["list", "--no-config"], env=env).exit_code == 0


def test_core_forward_is_listed_and_can_be_disabled_when_outbound_webhooks_are_configured() -> None:
    env = {"CB_OUTBOUND_WEBHOOK_URL": "http://127.0.0.1:9/hook", "CB_WORKFLOWS_DISABLED": "core.forward"}
    listed = runner.invoke(workflows_app, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert any(line.split()[:5] == ["core.forward", "1", "yes", "code", "no"] for line in listed.output.splitlines())
    # without the URL there is no core.forward, so naming it is the start-up error
    assert runner.invoke(workflows_app, ["list"], env={"CB_WORKFLOWS_DISABLED": "core.forward"}).exit_code == 2


def test_invalid_unrelated_settings_stop_with_the_usual_message_and_no_config_still_works(tmp_path: Path) -> None:
    env = {"CB_ALERT_SINKS": "pager", "CB_STRIPE_API_KEY_FILE": str(tmp_path / "missing")}
    result = runner.invoke(workflows_app, ["list"], env=env)
    assert result.exit_code == 2
    out = _flat(result.output)
    assert "commerce-bridge cannot start: invalid configuration" in out
    assert "CB_ALERT_SINKS: unknown sink(s) ['pager']" in out and "CB_STRIPE_API_KEY_FILE: cannot read" in out
    assert "--no-config shows the workflow files without the settings" in out
    assert runner.invoke(workflows_app, ["list", "--no-config"], env=env).exit_code == 0
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", _event(tmp_path, PAID),
                                        "--no-config"], env=env)
    assert ran.exit_code == 0 and "outcome: succeeded" in ran.output


# ---- the workflows serve turns off because a step type has no configured connector ---------------------
CLARITY = "(set CB_CLARITY_BASE_URL, CB_CLARITY_USER, CB_CLARITY_PASSWORD)"
STRIPE = "(set CB_STRIPE_API_KEY)"
ERP = "(set CB_ERP_BASE_URL, CB_ERP_API_KEY, CB_ERP_API_SECRET)"
PAID_ERP = f"erp.customer.ensure, erp.payment_entry.ensure, erp.sales_invoice.ensure, erp.sales_order.ensure {ERP}"


def _enabled(output: str) -> dict[str, str]:
    """NAME -> ENABLED of the table (the lines before the explanations under it)."""
    rows = []
    for line in output.splitlines()[1:]:
        if line.startswith(("ENABLED", " ")):
            break
        rows.append(line.split())
    return {row[0]: row[4] for row in rows}


def test_list_shows_workflows_whose_connectors_are_not_configured_as_not_enabled_with_the_settings_to_set(
        tmp_path: Path) -> None:
    listed = runner.invoke(workflows_app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert _enabled(listed.output) == {"clarity.order_shipped": "no", "clarity.order_to_cash": "no",
                                       "clarity.order_voided": "no", "core.audit": "no",
                                       "stripe.payment_succeeded": "no", "stripe.refund_recorded": "no",
                                       "clarity.return_refunded": "no", "stripe.dispute_evidence": "no",
                                       "stripe.dispute_recorded": "no", "stripe.early_fraud_warning": "no",
                                       "stripe.payout_reconciled": "no", "erp.stock_changed": "no",
                                       # the customer sync needs all three
                                       "stripe.customer_changed": "no", "clarity.account_changed": "no",
                                       "erp.customer_changed": "no", "stripe.product_changed": "no",
                                       "clarity.product_changed": "no", "erp.item_changed": "no"}
    lines = listed.output.splitlines()
    assert "ENABLED no: no connector configured for a step type they use; no run starts:" in lines
    assert (f"  clarity.order_voided: clarity.order.get {CLARITY}; stripe.payment_intent.cancel, "
            f"stripe.payment_intent.retrieve, stripe.refund.create {STRIPE}") in lines
    assert (f"  stripe.payment_succeeded: clarity.order.add_payment, clarity.order.find_by_key, "
            f"clarity.order.set_status {CLARITY}; {PAID_ERP}; stripe.payment_intent.retrieve {STRIPE}") in lines
    # the connectors of a commerce-bridge.toml count, and only the missing one is named
    (tmp_path / "commerce-bridge.toml").write_text(
        'stripe_api_key = "sk_test_cli"\nclarity_base_url = "http://127.0.0.1:9/API-Admin"\n')
    listed = runner.invoke(workflows_app, ["list"])
    # the shipping flow bills the order in the ERP (CB_ERP_INVOICE_ON=shipped): it needs the ERP too
    assert _enabled(listed.output) == {"clarity.order_shipped": "no", "clarity.order_to_cash": "yes",
                                       "clarity.order_voided": "yes", "core.audit": "no",
                                       "stripe.payment_succeeded": "no", "stripe.refund_recorded": "no",
                                       "clarity.return_refunded": "no", "stripe.dispute_evidence": "yes",
                                       # the journals need the ERP; a fraud warning's refund does not
                                       "stripe.dispute_recorded": "no", "stripe.early_fraud_warning": "yes",
                                       "stripe.payout_reconciled": "no", "erp.stock_changed": "no",
                                       # the customer sync needs all three
                                       "stripe.customer_changed": "no", "clarity.account_changed": "no",
                                       "erp.customer_changed": "no", "stripe.product_changed": "no",
                                       "clarity.product_changed": "no", "erp.item_changed": "no"}
    assert f"  stripe.payment_succeeded: {PAID_ERP}" in listed.output.splitlines()
    # the settings were only read: no database file was made (the default is ./data/bridge.sqlite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["commerce-bridge.toml"]
    file_only = runner.invoke(workflows_app, ["list", "--no-config"])
    assert set(_enabled(file_only.output).values()) == {"yes"} and "ENABLED no" not in file_only.output


def test_show_and_dry_run_give_the_missing_connector_as_the_reason_no_run_starts(tmp_path: Path) -> None:
    env = {"CB_STRIPE_API_KEY": "sk_test_cli", "CB_CLARITY_BASE_URL": "http://127.0.0.1:9/API-Admin"}
    reason = f"no connector configured for {PAID_ERP}"
    shown = runner.invoke(workflows_app, ["show", "stripe.payment_succeeded"], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"# {reason}: no run starts" in shown.output.splitlines()
    event = _event(tmp_path, PAID)
    ran = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event], env=env)
    assert ran.exit_code == 0, ran.output
    assert ran.output.splitlines()[-1] == f"not started: {reason}"
    data = json.loads(runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event,
                                                    "--json"], env=env).output)
    assert (data["outcome"], data["reason"]) == ("not_started", reason)
    both = runner.invoke(workflows_app, ["dry-run", "stripe.payment_succeeded", "--event", event],
                         env={**env, "CB_WORKFLOWS_DISABLED": "stripe.payment_succeeded"})
    assert both.output.splitlines()[-1] == f"not started: disabled by CB_WORKFLOWS_DISABLED, and {reason}"
    enabled = runner.invoke(workflows_app, ["show", "clarity.order_voided"], env=env)
    assert "no run starts" not in enabled.output


# ---- validate and graph read workflows_dir from the settings ----------------------------------------------
PAYOUT = ("name: acme.payout\nversion: 1\ntrigger: {sources: [stripe], event_types: [payout.paid]}\n"
          "steps:\n  - id: record\n    uses: core.audit.record\n")


def test_validate_and_graph_use_the_workflows_dir_of_the_toml_file(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "payout.yaml").write_text(PAYOUT)
    (tmp_path / "commerce-bridge.toml").write_text(f'workflows_dir = "{folder}"\n')
    checked = runner.invoke(workflows_app, ["validate"])
    assert checked.exit_code == 0, checked.output
    assert f"ok    {folder / 'payout.yaml'}: acme.payout version 1" in checked.stdout
    graph = runner.invoke(workflows_app, ["graph", "acme.payout"])
    assert graph.exit_code == 0, graph.output
    assert graph.stdout.startswith("flowchart TD") and "core.audit.record" in graph.stdout
    (folder / "broken.yaml").write_text("name: t\n")
    failed = runner.invoke(workflows_app, ["validate"])
    assert failed.exit_code == 1 and "'version' is a required property" in failed.stderr
    # --dir wins over the file's folder
    other = tmp_path / "other"
    other.mkdir()
    assert runner.invoke(workflows_app, ["validate", "--dir", str(other)]).exit_code == 0


def test_validate_and_graph_check_the_files_when_the_settings_are_invalid_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "payout.yaml").write_text(PAYOUT)
    (tmp_path / "commerce-bridge.toml").write_text(f'workflows_dir = "{folder}"\nalert_sinks = ["pager"]\n')
    checked = runner.invoke(workflows_app, ["validate"])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.count("ok    ") == len(list(BUILTIN_DIR.glob("*.yaml")))  # the built-ins
    assert "acme.payout" not in checked.stdout
    warning = checked.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: invalid settings, workflows_dir not read")
    assert "CB_ALERT_SINKS: unknown sink(s) ['pager']" in warning[0]
    graph = runner.invoke(workflows_app, ["graph", "clarity.order_voided"])
    assert graph.exit_code == 0 and graph.stdout.startswith("flowchart TD")
    assert graph.stderr.startswith("warning: invalid settings") and len(graph.stderr.splitlines()) == 1
    # --dir needs no settings at all: no warning
    with_dir = runner.invoke(workflows_app, ["validate", "--dir", str(folder)])
    assert with_dir.exit_code == 0 and with_dir.stderr == "" and "acme.payout version 1" in with_dir.stdout
    files = runner.invoke(workflows_app, ["validate", str(folder / "payout.yaml")])
    assert files.exit_code == 0 and files.stderr == ""
