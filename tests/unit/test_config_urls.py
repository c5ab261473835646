"""URL settings: checked at start-up (http(s) and a host); credentials masked wherever settings are printed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from commerce_bridge.config import HTTP_URL_FIELDS, load_settings
from commerce_bridge.config_sources import mask_url, mask_urls_in
from commerce_bridge.entrypoints.cli import app
from commerce_bridge.errors import ConfigurationError

# every URL-valued setting, with credentials in the user info, the query and the fragment
URLS = {
    "CB_DATABASE_URL": "postgresql+psycopg://bridge:db-pw-S1@db.example/bridge?sslmode=require&password=db-pw-S2",
    "CB_ENGINE_DATABASE_URL": "postgresql://dbos:engine-pw-S3@engine.example/dbos",
    "CB_ALERT_WEBHOOK_URL": "https://hooks.alerts.example/services/T1/B1?token=alert-tok-S4",
    "CB_OUTBOUND_WEBHOOK_URL": "https://out-user-S5@forward.example/in/events?sig=out-sig-S6&api_key=out-key-S7",
    "CB_STRIPE_API_BASE": "http://stripe-user:stripe-pw-S8@stripe.example:12111/base",
    "CB_CLARITY_BASE_URL": "https://clarity.example/DesktopModules/API-Admin?access_token=clarity-tok-S9",
    "CB_ERP_BASE_URL": "https://erp-key:erp-secret-S10@erp.example/erp#session=erp-frag-S11",
    "CB_PAYMENT_RETRY_URL": "https://shop.example/pay/{order_key}?auth=retry-auth-S12",
}
SECRETS = [f"-S{i}" for i in range(1, 13)]
VISIBLE = ["db.example/bridge", "sslmode=require", "engine.example/dbos", "hooks.alerts.example/services/T1/B1",
           "forward.example/in/events", "stripe-user:********@stripe.example:12111/base",
           "clarity.example/DesktopModules/API-Admin", "erp.example/erp", "shop.example/pay/{order_key}"]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://user:hunter2@db/x", "postgresql+psycopg://user:********@db/x"),
    ("postgresql://bridge@db/bridge?sslmode=require&password=pw", "postgresql://bridge@db/bridge?sslmode=require&password=********"),
    ("https://tok_123@hooks.example/a/b?token=abc&sig=def&bare", "https://********@hooks.example/a/b?token=********&sig=********&********"),
    ("https://hooks.example/a?Signature=x&API_KEY=y&timeout=5", "https://hooks.example/a?Signature=********&API_KEY=********&timeout=5"),
    ("http://u:p@ss@h:8080/p#access_token=zz", "http://u:********@h:8080/p#********"),
    ("https://erp.example/api", "https://erp.example/api"),
    ("sqlite:///./data/bridge.sqlite", "sqlite:///./data/bridge.sqlite"),
    ("not a url", "not a url"),
    ("http://[::1/broken:pw@", "********"),
])
def test_mask_url_hides_credentials_and_keeps_host_and_path(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_urls_inside_a_message_are_masked() -> None:
    text = "Could not parse SQLAlchemy URL from string 'postgresql://u:pw-1@h/db'; http://a:pw-2@c/x: HTTP 401"
    masked = mask_urls_in(text)
    assert "pw-1" not in masked and "pw-2" not in masked
    assert "'postgresql://u:********@h/db'" in masked and "http://a:********@c/x: HTTP 401" in masked


def test_masked_settings_hide_the_credentials_of_every_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in URLS.items():
        monkeypatch.setenv(name, value)
    text = json.dumps(load_settings().masked())
    assert [s for s in SECRETS if s in text] == []
    assert [v for v in VISIBLE if v not in text] == []


def cli(*args: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "400"})  # wide: no wrapped values
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("args", [["config", "show"], ["config", "show", "--json"]])
def test_config_show_prints_no_credential_of_any_url_setting(args: list[str]) -> None:
    out = cli(*args, env=URLS)
    assert [s for s in SECRETS if s in out] == []
    assert [v for v in VISIBLE if v not in out] == []
    if "--json" in args:
        assert json.loads(out)["erp_base_url"] == "https://erp-key:********@erp.example/erp#********"


# ---- validation at start-up ----------------------------------------------------------------------
def test_every_bad_url_setting_is_named_in_one_error_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {
        "CB_ALERT_WEBHOOK_URL": "ftp://user:bad-pw-1@files.example/alerts",
        "CB_OUTBOUND_WEBHOOK_URL": "hooks.example/no-scheme?token=bad-tok-2",
        "CB_STRIPE_API_BASE": "http:///no-host",
        "CB_CLARITY_BASE_URL": "javascript:alert(1)",
        "CB_ERP_BASE_URL": "https://:bad-pw-3@/path",
        "CB_PAYMENT_RETRY_URL": "file:///etc/passwd",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert sorted(line.split(":", 1)[0] for line in info.value.errors) == sorted(bad)
    assert sorted(f"CB_{f.upper()}" for f in HTTP_URL_FIELDS) == sorted(bad)
    text = str(info.value) + " ".join(info.value.errors)
    assert "bad-pw" not in text and "bad-tok" not in text
    assert "must be an http:// or https:// URL" in text and "must name a host" in text


def test_http_and_https_urls_with_a_host_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in URLS.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.outbound_webhook_url == URLS["CB_OUTBOUND_WEBHOOK_URL"]  # kept exactly as given
    assert s.payment_retry_url == URLS["CB_PAYMENT_RETRY_URL"]


def test_bad_url_stops_the_cli_with_the_start_up_message() -> None:
    result = CliRunner().invoke(app, ["config", "show"], env={"CB_OUTBOUND_WEBHOOK_URL": "ftp://u:secret-x@h/"})
    assert result.exit_code == 2
    assert "CB_OUTBOUND_WEBHOOK_URL: must be an http:// or https:// URL" in result.output
    assert "secret-x" not in result.output
