"""The admin API and the CLI show the store redacted exactly as the logs are (CB_LOG_PII_KEYS included).

A real store (SQLite file and PostgreSQL) holds a delivery, its run, a dead-letter entry and a dead
worker whose event id, error message, step input, traceback and suggested fix carry Luhn-valid card
numbers, an e-mail address and a URL with ``?token=``. Every view of the API (through the real ASGI
app) and of the CLI (Typer's runner on the real app, against the same database) shows none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.entrypoints.cli import app as cli_app
from commerce_bridge.logsetup import CARD, EMAIL, REDACTED, Redactor
from tests.support.admin_data import (
    ADDRESS,
    CARD_DIGITS,
    CARD_SPACED,
    LEAKS,
    URL_TOKEN,
    Seeded,
    init_engine_database,
    seed_sensitive,
)

TOKEN = "redaction-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def seeded(database_url: str) -> Iterator[tuple[Container, Seeded]]:
    c = bootstrap(load_settings(database_url=database_url, stripe_webhook_secrets="whsec_r", admin_tokens=TOKEN),
                  "ingress", migrate=True)
    yield c, seed_sensitive(c)
    c.close()


def assert_redacted(text: str) -> None:
    leaked = [secret for secret in LEAKS if secret in text]
    assert leaked == [], f"{leaked} shown in: {text[:2000]}"


def test_the_seeded_store_holds_what_must_not_be_shown(seeded: tuple[Container, Seeded]) -> None:
    c, s = seeded  # the store itself keeps everything: the views redact, not the writes
    raw = json.dumps(c.dead_letters.get(s.dlq_id), default=str)
    assert all(secret in raw for secret in (CARD_SPACED, CARD_DIGITS, ADDRESS, URL_TOKEN))


async def test_every_admin_view_redacts_cards_emails_and_url_tokens(seeded: tuple[Container, Seeded]) -> None:
    from commerce_bridge.entrypoints.http.app import build_app

    c, s = seeded
    views = ["/api/v1/dlq", "/api/v1/dlq?status=", f"/api/v1/dlq/{s.dlq_id}", "/api/v1/events",
             f"/api/v1/runs/{quote(s.run_id, safe=':@')}", "/api/v1/workers"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(c)), base_url="http://bridge") as http:
        answers = {v: await http.get(v, headers=AUTH) for v in views}
    for view, r in answers.items():
        assert r.status_code == 200, (view, r.text)
        assert_redacted(r.text)
    entry = answers[f"/api/v1/dlq/{s.dlq_id}"].json()["entry"]
    # redacted, not dropped: the operator still sees what kind of data was there
    assert CARD in entry["error_message"] and EMAIL in entry["error_message"]
    assert "token=" in entry["error_message"] and REDACTED in entry["error_message"]
    assert entry["step_input"]["card_number"] == CARD and entry["step_input"]["customer"]["email"] == REDACTED
    assert CARD in entry["traceback"] and EMAIL in entry["suggested_fix"]
    assert entry["id"] == s.dlq_id and entry["attempts"] == 3  # our counters stay numbers
    [event] = answers["/api/v1/events"].json()["events"]
    assert EMAIL in event["event_id"] and EMAIL in event["runs"][0]["run_id"]
    assert answers[f"/api/v1/runs/{quote(s.run_id, safe=':@')}"].json()["run"]["event_id"] == event["event_id"]


async def test_the_admin_views_redact_the_configured_pii_keys(database_url: str) -> None:
    from commerce_bridge.entrypoints.http.app import build_app

    c = bootstrap(load_settings(database_url=database_url, stripe_webhook_secrets="whsec_r", admin_tokens=TOKEN,
                                log_pii_keys="note"), "ingress", migrate=True)
    try:
        s = seed_sensitive(c)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(c)), base_url="http://b") as http:
            entry = (await http.get(f"/api/v1/dlq/{s.dlq_id}", headers=AUTH)).json()["entry"]
        assert entry["step_input"]["note"] == REDACTED  # a PII key of this installation's settings
        assert entry["step_input"]["customer"]["email"] == EMAIL  # not a PII key here: still no address shown
        assert entry == Redactor(["note"]).redact({**c.dead_letters.get(s.dlq_id)}) | {
            "created_at": entry["created_at"], "id": s.dlq_id, "attempts": 3}  # exactly the log's redaction
    finally:
        c.close()


@pytest.mark.parametrize("args", [
    ["events", "list"], ["events", "list", "--json"], ["dlq", "list"], ["dlq", "list", "--json"],
    ["dlq", "list", "--status", "all", "--json"], ["dlq", "show", "{dlq_id}"],
])
def test_every_cli_view_redacts_cards_emails_and_url_tokens(
    seeded: tuple[Container, Seeded], database_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str],
) -> None:
    _, s = seeded
    monkeypatch.setenv("CB_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "400")  # rich tables would otherwise cut the cells before a leak shows
    result = CliRunner().invoke(cli_app, [a.format(dlq_id=s.dlq_id) for a in args])
    assert result.exit_code == 0, result.output
    assert_redacted(result.stdout)
    if args[:2] == ["dlq", "show"]:
        shown: dict[str, Any] = json.loads(result.stdout)
        assert shown["step_input"]["card_number"] == CARD and CARD in shown["traceback"]
    assert CARD in result.stdout or EMAIL in result.stdout  # redacted, not left out


def test_a_cli_error_quoting_a_run_id_is_redacted(seeded: tuple[Container, Seeded], database_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, s = seeded
    init_engine_database(load_settings(database_url=database_url, worker_id="redaction-test"))
    monkeypatch.setenv("CB_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli_app, ["dlq", "replay", str(s.dlq_id)])  # the engine holds no such run
    assert result.exit_code == 1, result.output
    assert "not found in run stripe:[EMAIL]:shop.pay" in result.stderr.replace("\n", "")
    assert_redacted(result.output)
