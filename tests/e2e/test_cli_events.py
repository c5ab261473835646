"""From a stored event to a dry run, through the real CLI: `events show`, `events export`, `workflows dry-run --event-id`.

The events are stored in the inbox as ingress stores them (the raw body), in a SQLite database of the module;
every command is a subprocess reading it through CB_DATABASE_URL. The last test runs the commands of
docs/howto/dry-run-a-stored-event.md as written (its blocks are skipped by the docs test, which has no
database holding these events).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.store import db as store_db
from commerce_bridge.store.inbox import SqlInbox
from tests.support.processes import bridge_env, cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HOWTO = ROOT / "docs/howto/dry-run-a-stored-event.md"

# the how-to's examples: a polled Clarity order (inbox id 1) and a Stripe payment (inbox id 2)
CLARITY = {"id": "clarity-so-7f3a9c2e4b1d4e8fa0c5b6d7e8f90123", "type": "salesorder.created",
           "data": {"ID": 1042, "CustomKey": "WEB-100042", "StatusKey": "Pending", "CurrencyKey": "USD",
                    "Total": 129.0, "CreatedDate": "2026-12-07T09:14:03", "UpdatedDate": "2026-12-07T09:14:03",
                    "BillingContact": {"FirstName": "Ann", "LastName": "Lee", "Email1": "ann@example.com",
                                       "Phone1": "+1 415 555 0123"}}}
STRIPE = {"id": "evt_3QdocsPaid0001", "object": "event", "type": "payment_intent.succeeded",
          "api_version": "2026-10-28", "created": 1765098843, "livemode": False, "pending_webhooks": 1,
          "data": {"object": {"id": "pi_3QdocsPaid0001", "object": "payment_intent", "amount": 12900,
                              "currency": "usd", "status": "succeeded", "customer": "cus_RdocsAnn0001",
                              "receipt_email": "ann@example.com", "client_secret": "pi_3QdocsPaid0001_secret_Zq8wXy",
                              "metadata": {"clarity_order_key": "WEB-100042", "clarity_order_id": "1042"}}},
          "request": {"id": None, "idempotency_key": "clarity-order:WEB-100042:payment"}}
NOT_JSON = b"<xml>not json</xml> contact ann@example.com"
# every connector configured (nothing is contacted: the dry run reads the settings only), so no workflow is off
CONNECTED = {"stripe_api_key": "sk_test_cli", "clarity_base_url": "http://127.0.0.1:9/API-Admin",
             "clarity_user": "dry-run", "clarity_password": "dry-run", "erp_base_url": "http://127.0.0.1:9",
             "erp_api_key": "dry-run", "erp_api_secret": "dry-run"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('events') / 'bridge.sqlite'}"
    engine = store_db.make_engine(url)
    store_db.upgrade(engine)
    now = datetime.now(UTC)
    stored = SqlInbox(engine).record_batch([
        Delivery("clarity", str(CLARITY["id"]), "salesorder.created", json.dumps(CLARITY).encode(), now),
        Delivery("stripe", str(STRIPE["id"]), "payment_intent.succeeded", json.dumps(STRIPE).encode(), now),
        Delivery("erp", "erp-not-json", "Sales Order", NOT_JSON, now),
        Delivery("stripe", "evt_twice", "charge.succeeded", b'{"id": "evt_twice"}', now),
        Delivery("erp", "evt_twice", "Sales Order", b'{"id": "evt_twice"}', now),
    ])
    engine.dispose()
    assert stored == [True] * 5
    yield {**bridge_env(database_url=url, **CONNECTED), "COLUMNS": "200"}


def run_all(env: dict[str, str], *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several CLI commands at once (most of each one's time is Python starting)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: cli(env, *args), commands))


def test_show_finds_an_event_by_any_id_an_operator_has(env: dict[str, str]) -> None:
    refs = ["2", "stripe:evt_3QdocsPaid0001", "stripe:evt_3QdocsPaid0001:stripe.payment_succeeded",
            "evt_3QdocsPaid0001"]
    for ref, out in zip(refs, run_all(env, *(("events", "show", ref, "--json") for ref in refs)), strict=True):
        assert out.returncode == 0, (ref, out.stderr)
        shown = json.loads(out.stdout)
        assert (shown["id"], shown["source"], shown["event_id"]) == (2, "stripe", "evt_3QdocsPaid0001"), ref
        assert shown["body"]["data"]["object"]["metadata"]["clarity_order_key"] == "WEB-100042"


def test_show_redacts_the_body_unless_raw(env: dict[str, str]) -> None:
    clarity, clarity_raw, stripe, stripe_raw = run_all(
        env, ("events", "show", "1"), ("events", "show", "1", "--raw"),
        ("events", "show", "stripe:evt_3QdocsPaid0001"), ("events", "show", "stripe:evt_3QdocsPaid0001", "--raw"))
    for out in (clarity, clarity_raw, stripe, stripe_raw):
        assert out.returncode == 0, out.stderr
    assert "event       clarity:clarity-so-7f3a9c2e4b1d4e8fa0c5b6d7e8f90123" in clarity.stdout
    assert "status      received" in clarity.stdout and "runs        none" in clarity.stdout
    for secret in ("ann@example.com", "Ann", "Lee", "415 555"):  # CB_LOG_PII_KEYS fields and e-mails
        assert secret not in clarity.stdout, secret
        assert secret in clarity_raw.stdout, secret
    assert '"Email1": "[REDACTED]"' in clarity.stdout and '"CustomKey": "WEB-100042"' in clarity.stdout
    assert "Zq8wXy" not in stripe.stdout and "ann@example.com" not in stripe.stdout
    assert '"client_secret": "pi_3QdocsPaid0001_secret_Zq8wXy"' in stripe_raw.stdout


def test_export_writes_what_dry_run_reads(env: dict[str, str], tmp_path: Path) -> None:
    exported, raw = run_all(env, ("events", "export", "2"), ("events", "export", "2", "--raw"))
    assert exported.returncode == 0 and raw.returncode == 0, exported.stderr + raw.stderr
    event = json.loads(exported.stdout)
    assert event["data"]["object"]["client_secret"] == "[REDACTED]"
    assert event["data"]["object"]["receipt_email"] == "[REDACTED]"
    assert raw.stdout.encode() == json.dumps(STRIPE).encode()  # the body exactly as stored
    path = tmp_path / "event.json"
    path.write_text(exported.stdout)
    ran = cli(env, "workflows", "dry-run", "stripe.payment_succeeded", "--event", str(path), "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["run_id"] == "stripe:evt_3QdocsPaid0001:stripe.payment_succeeded" and result["matched"]
    assert result["steps"][0]["params"] == {"payment_intent_id": "pi_3QdocsPaid0001"}


def test_dry_run_of_a_stored_event_is_the_run_it_would_get(env: dict[str, str]) -> None:
    by_id, raw, by_ref = run_all(
        env, ("workflows", "dry-run", "clarity.order_to_cash", "--event-id", "1"),
        ("workflows", "dry-run", "clarity.order_to_cash", "--event-id", "1", "--raw"),
        ("workflows", "dry-run", "stripe.payment_succeeded", "--event-id", "evt_3QdocsPaid0001", "--json"))
    assert by_id.returncode == 0, by_id.stderr
    run = "clarity:clarity-so-7f3a9c2e4b1d4e8fa0c5b6d7e8f90123:clarity.order_to_cash"
    assert f"clarity.order_to_cash version 3, run {run}" in by_id.stdout
    assert f"idempotency key {run}:payment" in by_id.stdout  # the keys a real run of this event uses
    assert 'params {"order_id": 1042}' in by_id.stdout  # read from the stored event
    assert "outcome: succeeded" in by_id.stdout
    # what it prints is redacted (the catalogue's example outputs carry an e-mail address), unless --raw
    assert "@example.com" not in by_id.stdout and "[REDACTED]" in by_id.stdout
    assert raw.returncode == 0 and "@example.com" in raw.stdout, raw.stderr
    assert by_ref.returncode == 0, by_ref.stderr
    result = json.loads(by_ref.stdout)  # stdout stays JSON: the event line goes to stderr
    assert result["run_id"] == "stripe:evt_3QdocsPaid0001:stripe.payment_succeeded"
    assert result["outcome"] == "succeeded" and "inbox id 2" in by_ref.stderr


def test_an_id_that_finds_nothing_says_what_to_check(env: dict[str, str]) -> None:
    outs = run_all(env, ("events", "show", "77"), ("events", "export", "stripe:evt_nope"),
                   ("workflows", "dry-run", "clarity.order_to_cash", "--event-id", "clarity:nope"),
                   ("events", "show", "evt_twice"))
    for out in outs[:3]:
        assert out.returncode == 1, out.stdout + out.stderr
        assert "no stored event" in out.stderr and "(CB_DATABASE_URL)" in out.stderr and "bridge.sqlite" in out.stderr
        assert "`commerce-bridge events list` shows the stored events with their ids" in out.stderr
        assert "Traceback" not in out.stderr
    assert "with inbox id 77" in outs[0].stderr
    assert "'stripe:evt_nope' (source stripe, event id 'evt_nope')" in outs[1].stderr
    ambiguous = outs[3]
    assert ambiguous.returncode == 1 and "stripe:evt_twice, erp:evt_twice" in ambiguous.stderr, ambiguous.stderr
    assert "give source:event_id" in ambiguous.stderr


def test_a_body_that_is_not_json_is_shown_but_not_exported(env: dict[str, str]) -> None:
    shown, exported, dry = run_all(env, ("events", "show", "erp:erp-not-json"),
                                   ("events", "export", "erp:erp-not-json"),
                                   ("workflows", "dry-run", "core.audit", "--event-id", "3"))
    assert shown.returncode == 0 and "<xml>not json</xml> contact [EMAIL]" in shown.stdout, shown.stderr
    for out in (exported, dry):
        assert out.returncode == 1, out.stdout + out.stderr
        assert "the stored body of event erp:erp-not-json (inbox id 3) is not JSON" in out.stderr
        assert "`commerce-bridge events show 3 --raw`" in out.stderr


def test_dry_run_needs_one_event(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text("{}")
    neither, both = run_all(env, ("workflows", "dry-run", "core.audit"),
                            ("workflows", "dry-run", "core.audit", "--event", str(tmp_path / "e.json"),
                             "--event-id", "1"))
    for out in (neither, both):
        assert out.returncode == 2 and "--event FILE (a JSON file) or --event-id ID" in out.stderr, out.stderr


# ---- the how-to, as written ------------------------------------------------------------------------------------
def howto_commands() -> list[tuple[int, str, list[str]]]:
    """(line, command, the output lines the page shows after it) of every console block of the how-to."""
    lines = HOWTO.read_text().splitlines()
    out: list[tuple[int, str, list[str]]] = []
    in_console = False
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            out.append((number, line[2:], []))
        elif line.strip() and out:
            out[-1][2].append(line.strip())
    return out


def test_the_how_to_runs_as_written(env: dict[str, str], tmp_path: Path) -> None:
    commands = howto_commands()
    assert len(commands) >= 8 and any("--event-id" in c for _, c, _ in commands)
    shell_env = {**env, "PATH": f"{ROOT / '.venv/bin'}:{os.environ.get('PATH', '')}"}
    for line, command, shown in commands:
        text = re.sub(r"(?<![\w.])/tmp/", f"{tmp_path}/", command)
        out = subprocess.run(["bash", "--noprofile", "--norc", "-c", text], env=shell_env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        where = f"{HOWTO.name}:{line}: `{command}`"
        assert out.returncode == 0, f"{where} exited {out.returncode}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
        for expected in shown:
            assert expected in out.stdout, f"{where}: the page shows {expected!r}, the command printed:\n{out.stdout}"
