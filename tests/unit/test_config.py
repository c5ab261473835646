"""Settings: environment, TOML file, secrets from files, one error naming every bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from commerce_bridge.config import load_settings
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.workflows.enabled import run_vars
from commerce_bridge.workflows.registry import WorkflowRegistry


def test_defaults_use_sqlite_under_data() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///./data/bridge.sqlite"
    assert s.effective_engine_database_url() == "sqlite:///data/engine.sqlite"


def test_environment_variables_are_read_with_the_cb_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_STRIPE_WEBHOOK_SECRETS", "whsec_a, whsec_b")
    monkeypatch.setenv("CB_RATE_LIMITS", '{"stripe": 90}')
    monkeypatch.setenv("CB_DATABASE_URL", "postgresql://u:pw@db/x")
    s = load_settings()
    assert [x.get_secret_value() for x in s.stripe_webhook_secrets] == ["whsec_a", "whsec_b"]
    assert s.rate_limits == {"stripe": 90.0}
    assert s.database_url == "postgresql+psycopg://u:pw@db/x"
    assert s.effective_engine_database_url() == s.database_url


def test_disabled_workflows_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_WORKFLOWS_DISABLED", "core.audit, clarity.order_voided")
    assert load_settings().workflows_disabled == ["core.audit", "clarity.order_voided"]


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "commerce-bridge.toml").write_text('port = 9100\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("CB_LOG_LEVEL", "ERROR")
    s = load_settings()
    assert s.port == 9100
    assert s.log_level == "ERROR"


def test_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("tok-1,tok-2\n")
    monkeypatch.setenv("CB_ADMIN_TOKENS_FILE", str(f))
    s = load_settings()
    assert [t.get_secret_value() for t in s.admin_tokens] == ["tok-1", "tok-2"]


def test_every_bad_setting_is_named_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_PORT", "eighty")
    monkeypatch.setenv("CB_STRIPE_WEBHOOK_SECRETS", "not-a-whsec")
    monkeypatch.setenv("CB_CLARITY_ALLOWED_CIDRS", "10.0.0.0/8,nonsense")
    monkeypatch.setenv("CB_ADMIN_TOKENS_FILE", "/does/not/exist")
    monkeypatch.setenv("CB_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    text = " ".join(info.value.errors)
    for name in ("CB_PORT", "CB_STRIPE_WEBHOOK_SECRETS", "CB_CLARITY_ALLOWED_CIDRS", "CB_ADMIN_TOKENS_FILE",
                 "CB_DATABASE_URL"):
        assert name in text
    assert len(info.value.errors) == 5


def test_invalid_json_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_RATE_LIMITS", "{oops")
    with pytest.raises(ConfigurationError, match="CB_RATE_LIMITS"):
        load_settings()


def test_missing_explicit_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_CONFIG_FILE", "/nope.toml")
    with pytest.raises(ConfigurationError, match="CB_CONFIG_FILE"):
        load_settings()


def test_webhook_alert_sink_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_ALERT_SINKS", "log,webhook")
    with pytest.raises(ConfigurationError, match="CB_ALERT_WEBHOOK_URL"):
        load_settings()


def test_group_commit_linger_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().group_commit_linger_ms == 5.0
    monkeypatch.setenv("CB_GROUP_COMMIT_LINGER_MS", "51")
    with pytest.raises(ConfigurationError, match="CB_GROUP_COMMIT_LINGER_MS"):
        load_settings()
    monkeypatch.setenv("CB_GROUP_COMMIT_LINGER_MS", "20")
    monkeypatch.setenv("CB_INGEST_STORE_TIMEOUT_S", "0.02")  # a delivery would time out while it lingers
    with pytest.raises(ConfigurationError, match="CB_GROUP_COMMIT_LINGER_MS"):
        load_settings()


def test_masked_view_hides_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_STRIPE_WEBHOOK_SECRETS", "whsec_supersecret")
    monkeypatch.setenv("CB_STRIPE_API_KEY", "sk_test_supersecret")
    monkeypatch.setenv("CB_DATABASE_URL", "postgresql+psycopg://user:hunter2@db/x")
    text = repr(load_settings().masked())
    assert "supersecret" not in text
    assert "hunter2" not in text
    assert "user:********@db" in text


def test_dispute_evidence_submit_is_off_by_default_and_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().dispute_evidence_submit is False
    monkeypatch.setenv("CB_DISPUTE_EVIDENCE_SUBMIT", "true")
    assert load_settings().dispute_evidence_submit is True
    monkeypatch.setenv("CB_DISPUTE_EVIDENCE_SUBMIT", "sometimes")
    with pytest.raises(ConfigurationError, match="CB_DISPUTE_EVIDENCE_SUBMIT"):
        load_settings()


def test_erp_invoice_on_is_paid_by_default_and_pinned_into_the_payment_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.erp_invoice_on == "paid"
    pinned = run_vars(settings, WorkflowRegistry.load())
    billing = {"stripe.payment_succeeded", "clarity.order_shipped"}
    assert all(pinned[name]["invoice_on"] == "paid" for name in billing)
    assert not any("invoice_on" in v for name, v in pinned.items() if name not in billing)
    monkeypatch.setenv("CB_ERP_INVOICE_ON", "invoiced")
    with pytest.raises(ConfigurationError, match="CB_ERP_INVOICE_ON"):
        load_settings()


def test_erp_invoice_on_shipped_is_pinned_into_the_payment_and_shipping_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_ERP_INVOICE_ON", "shipped")
    pinned = run_vars(load_settings(), WorkflowRegistry.load())
    assert pinned["stripe.payment_succeeded"]["invoice_on"] == pinned["clarity.order_shipped"]["invoice_on"] == "shipped"
