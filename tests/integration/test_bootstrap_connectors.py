"""bootstrap binds exactly the step types ``available_step_types`` names, so the CLI's answer is serve's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.entrypoints.cli_workflows import workflows_app
from commerce_bridge.workflows.enabled import available_step_types

STRIPE = {"stripe_api_key": "sk_test_boot"}
CLARITY = {"clarity_base_url": "http://127.0.0.1:9/API-Admin", "clarity_user": "bridge", "clarity_password": "pw"}
ERP = {"erp_base_url": "http://127.0.0.1:9", "erp_api_key": "key", "erp_api_secret": "secret"}
CASES: dict[str, dict[str, Any]] = {
    "none": {},
    "stripe": STRIPE,
    "clarity+erp": {**CLARITY, **ERP},
    "all": {**STRIPE, **CLARITY, **ERP, "outbound_webhook_url": "http://127.0.0.1:9/hook",
            "clarity_inventory_section": "MAIN", "customer_sync": "true",
            "product_sync": "true"},  # the settings steps need (needs_setting)
}


@pytest.mark.parametrize("configured", list(CASES))
def test_the_worker_binds_the_step_types_the_cli_reports_and_disables_the_same_workflows(
        tmp_path: Path, configured: str) -> None:
    overrides = CASES[configured]
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'bridge.sqlite'}", worker_id="boot-test",
                             **overrides)
    c = bootstrap(settings, "worker")  # the engine is built, not launched: nothing is contacted
    try:
        assert c.engine is not None
        assert set(c.engine.actions) == available_step_types(settings)
        env = {f"CB_{key.upper()}": value for key, value in overrides.items()}
        listed = CliRunner().invoke(workflows_app, ["list"], env=env)
        assert listed.exit_code == 0, listed.output
        off = {line.split(":", 1)[0].strip() for line in listed.output.splitlines() if line.startswith("  ")}
        assert off == set(c.disabled_workflows)
        if configured == "all":
            assert c.disabled_workflows == {}
    finally:
        c.close()
