"""The command line against real processes: config, db, doctor, events, the DLQ round trip, the demo."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commerce_bridge.sandbox.runner import PeerServer
from tests.e2e.test_crash_recovery import wait_processed
from tests.support.processes import BridgeProcess, bridge_env, cli, free_port, migrate
from tests.support.senders import SendLog, send_all

pytestmark = pytest.mark.slow
SECRET = "whsec_cli_e2e"


def test_bad_configuration_stops_start_up_naming_every_setting(tmp_path: Path) -> None:
    env = bridge_env(port="not-a-port", stripe_webhook_secrets="nope", rate_limits="{broken")
    out = cli(env, "serve")
    assert out.returncode == 2
    assert "CB_RATE_LIMITS" in out.stderr
    env = bridge_env(port="not-a-port", stripe_webhook_secrets="nope")
    out = cli(env, "serve")
    assert out.returncode == 2 and "CB_PORT" in out.stderr and "CB_STRIPE_WEBHOOK_SECRETS" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = bridge_env(stripe_webhook_secrets="whsec_topsecret", admin_tokens="tok-secret",
                     database_url="postgresql://bridge:pw-secret@db.example/bridge")
    out = cli(env, "config", "show", "--json")
    assert out.returncode == 0, out.stderr
    assert "topsecret" not in out.stdout and "tok-secret" not in out.stdout and "pw-secret" not in out.stdout
    data = json.loads(out.stdout)
    assert data["stripe_webhook_secrets"] == ["********"]
    assert cli(env, "config", "show").returncode == 0


def test_doctor_explains_what_is_wrong(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'b.sqlite'}"
    env = {**bridge_env(database_url=db, stripe_api_key="sk_test_x",
                        stripe_api_base=f"http://127.0.0.1:{free_port()}"), "COLUMNS": "300"}  # a line per check
    out = cli(env, "doctor")
    assert out.returncode == 1
    assert "cannot reach CB_STRIPE_API_BASE" in out.stdout
    assert "no webhook secret set: `serve` and `ingress` stop at start-up (exit 2)" in out.stdout
    assert cli(env, "db", "upgrade").returncode == 0
    assert cli(env, "db", "status").returncode == 0


def _head(database_url: str) -> str:
    from commerce_bridge.store import db as store_db

    engine = store_db.make_engine(database_url)
    try:
        return store_db.migration_status(engine)[1]
    finally:
        engine.dispose()


def test_doctor_says_what_serve_will_do_with_a_new_database(tmp_path: Path, database_url: str) -> None:
    """One rule: on SQLite `serve` migrates at start-up and doctor says so (exit 0); on PostgreSQL nothing
    migrates by itself, doctor fails saying `serve` will refuse, and `serve` does refuse until `db upgrade`."""
    head = _head(database_url)
    port = free_port()
    env = {**bridge_env(database_url=database_url, stripe_webhook_secrets=SECRET, admin_tokens="admintok",
                        port=port, worker_id="doctor-e2e"), "COLUMNS": "300"}
    before = cli(env, "doctor")
    lines = [line for line in before.stdout.splitlines() if "migrations" in line]
    assert len(lines) == 1, before.stdout
    if database_url.startswith("sqlite"):
        assert before.returncode == 0, before.stdout + before.stderr
        assert "note" in lines[0] and f"no schema yet (new database): `serve` will migrate it to {head} at start-up" \
            in lines[0], lines[0]
        serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()  # ready: it did migrate
        serve.stop()
    else:
        assert before.returncode == 1, before.stdout + before.stderr
        assert "FAIL" in lines[0] and f"code expects {head}" in lines[0]
        assert "`serve`, `ingress` and `worker` exit 2 (database not ready) until you run `commerce-bridge db " \
               "upgrade`" in lines[0], lines[0]
        refused = cli(env, "serve", "--port", str(port))
        assert refused.returncode == 2 and "database not ready" in refused.stderr, refused.stderr
        assert cli(env, "db", "upgrade").returncode == 0
    after = cli(env, "doctor")
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"at head {head}" in after.stdout


class ToggleReceiver:
    """A receiver that refuses (400) until told to accept; records idempotency keys."""

    def __init__(self) -> None:
        self.accept = False
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def server(self) -> PeerServer:
        async def hook(request: Request) -> JSONResponse:
            with self.lock:
                self.keys.append(request.headers.get("idempotency-key", ""))
            if not self.accept:
                return JSONResponse({"error": "unknown customer"}, status_code=400)
            return JSONResponse({"ok": True})

        return PeerServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))


def test_dlq_round_trip_through_cli_and_admin_api(tmp_path: Path) -> None:
    receiver = ToggleReceiver()
    with receiver.server() as srv:
        port = free_port()
        env = bridge_env(database_url=f"sqlite:///{tmp_path / 'b.sqlite'}", stripe_webhook_secrets=SECRET,
                         admin_tokens="admintok", port=port, outbound_webhook_url=f"{srv.url}/hook",
                         worker_id="cli-e2e", audit_runs="true")
        migrate(env, tmp_path)
        serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()
        try:
            log = SendLog()
            asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, ["evt_dlq_1", "evt_dlq_2"], log))
            assert log.acked_ids == {"evt_dlq_1", "evt_dlq_2"}
            deadline = time.monotonic() + 60
            entries: list[dict[str, Any]] = []
            while time.monotonic() < deadline and len(entries) < 2:
                out = cli(env, "dlq", "list", "--json")
                entries = json.loads(out.stdout)
                time.sleep(0.3)
            assert len(entries) == 2
            first = next(e for e in entries if "evt_dlq_1" in e["run_id"])
            assert first["error_code"] == "upstream_rejected" and first["attempts"] == 1
            assert "unknown customer" in first["error_message"] and first["suggested_fix"]
            shown = json.loads(cli(env, "dlq", "show", str(first["id"])).stdout)
            assert shown["run_id"] == "stripe:evt_dlq_1:core.forward"

            # the events list shows the failure
            events = json.loads(cli(env, "events", "list", "--status", "failed", "--json").stdout)
            assert {e["event_id"] for e in events} == {"evt_dlq_1", "evt_dlq_2"}

            # fix the receiver, replay one through the CLI and one through the admin API
            receiver.accept = True
            out = cli(env, "dlq", "replay", str(first["id"]))
            assert out.returncode == 0, out.stderr
            second = next(e for e in entries if "evt_dlq_2" in e["run_id"])
            h = {"Authorization": "Bearer admintok"}
            assert httpx.post(f"{serve.url}/api/v1/dlq/{second['id']}/replay", headers=h).status_code == 200
            wait_processed(env["CB_DATABASE_URL"], 2, timeout=60)
            # the same idempotency key was sent on the failed attempt and on the replay
            assert receiver.keys.count("stripe:evt_dlq_1:core.forward:post") == 2
            assert receiver.keys.count("stripe:evt_dlq_2:core.forward:post") == 2
            again = cli(env, "dlq", "replay", str(first["id"]))
            assert again.returncode == 1 and "already replayed" in again.stderr
            missing = httpx.post(f"{serve.url}/api/v1/dlq/9999/discard", headers=h, json={"reason": "x"})
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"
            no_reason = httpx.post(f"{serve.url}/api/v1/dlq/{first['id']}/discard", headers=h, json={})
            assert no_reason.status_code == 422
            metrics = httpx.get(f"{serve.url}/metrics").text
            assert "cb_dlq_open 0.0" in metrics
        finally:
            serve.stop()
        assert "Traceback" not in serve.log()


def test_webhook_demo_runs_to_completion(tmp_path: Path) -> None:
    out = cli(bridge_env(), "demo-webhooks", "--events", "60", timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "every event processed exactly once" in out.stdout


# `make demo`'s command (`demo`) runs in tests/e2e/test_demo_terminal.py, in real terminals 80 and 200 columns wide


def test_log_lines_of_a_run_carry_its_ids_and_no_secrets(tmp_path: Path) -> None:
    port = free_port()
    env = bridge_env(database_url=f"sqlite:///{tmp_path / 'b.sqlite'}", stripe_webhook_secrets=SECRET,
                     admin_tokens="admintok", port=port, worker_id="log-e2e", log_level="INFO", log_json="true",
                     audit_runs="true")
    migrate(env, tmp_path)
    serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()
    try:
        asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, ["evt_log_1"], SendLog()))
        wait_processed(env["CB_DATABASE_URL"], 1, timeout=60)
    finally:
        serve.stop()
    lines = [json.loads(line) for line in serve.log().splitlines() if line.startswith("{")]
    run_lines = [rec for rec in lines if rec.get("event", "").startswith("run.")]  # at INFO: one per run
    assert run_lines, serve.log()[-2000:]
    for rec in run_lines:
        assert rec["source"] == "stripe" and rec["event_id"] == "evt_log_1"
        assert rec["run_id"] == "stripe:evt_log_1:core.audit" and rec["workflow"] == "core.audit"
    raw = serve.log()
    assert SECRET not in raw and "admintok" not in raw
