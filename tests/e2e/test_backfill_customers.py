"""``commerce-bridge backfill customers --from clarity`` as a subprocess against the sandbox peers, on SQLite and
PostgreSQL (issue 14, point 5): 20 Clarity accounts (seeded through ``POST /_sandbox/accounts``); a dry run
writes nothing; ``--limit`` stops after whole pages and the next run goes on from the cursor; a re-run reports
every customer unchanged; a run killed with SIGKILL mid-page resumes and makes no duplicate."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe
from commerce_bridge.store import db as store_db
from commerce_bridge.store.cursors import SqlCursorStore
from tests.support.processes import CLI, bridge_env, cli, migrate

pytestmark = pytest.mark.slow
CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"
ERP_KEY, ERP_SECRET, STRIPE_KEY = "bf-key", "bf-secret", "sk_test_backfill"
ACCOUNTS = 20  # pages of 10 (one after --limit 10) and of 5 (four: the kill lands inside)


@pytest.fixture
def peers() -> Iterator[dict[str, str]]:
    with (PeerServer(build_clarity()) as clarity, PeerServer(build_stripe()) as stripe,
          PeerServer(build_erp(api_key=ERP_KEY, api_secret=ERP_SECRET)) as erp):
        r = httpx.post(f"{clarity.url}/_sandbox/accounts", json={"count": ACCOUNTS, "prefix": "BF"}, timeout=30)
        assert r.status_code == 200 and r.json()["created"] == ACCOUNTS, r.text
        yield {"clarity": clarity.url, "stripe": stripe.url, "erp": erp.url}


@pytest.fixture
def env(peers: dict[str, str], database_url: str, tmp_path: Path) -> dict[str, str]:
    e = bridge_env(database_url=database_url, stripe_api_key=STRIPE_KEY, stripe_api_base=peers["stripe"],
                   clarity_base_url=peers["clarity"] + CLARITY_BASE, clarity_user=DEFAULT_USER,
                   clarity_password=DEFAULT_PASSWORD, erp_base_url=peers["erp"], erp_api_key=ERP_KEY,
                   erp_api_secret=ERP_SECRET)
    migrate(e, tmp_path)
    return e


def backfill(env: dict[str, str], *args: str, code: int = 0) -> dict[str, Any]:
    out = cli(env, "backfill", "customers", "--from", "clarity", "--json", *args, timeout=300)
    assert out.returncode == code, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


def counts(peers: dict[str, str]) -> tuple[int, int]:
    """(Stripe customers, ERPNext Customers)."""
    stripe = httpx.get(f"{peers['stripe']}/v1/customers", params={"limit": 100},
                       headers={"Authorization": f"Bearer {STRIPE_KEY}"}).json()["data"]
    erp = httpx.get(f"{peers['erp']}/api/resource/Customer", params={"limit_page_length": 0},
                    headers={"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"}).json()["data"]
    return len(stripe), len(erp)


def test_backfill_dry_run_then_limit_then_resume_then_all_unchanged(env: dict[str, str],
                                                                    peers: dict[str, str]) -> None:
    erp_before = counts(peers)[1]
    dry = backfill(env, "--dry-run")
    assert (dry["created"], dry["updated"], dry["unchanged"], dry["failed"], dry["finished"]) == (
        ACCOUNTS, 0, 0, 0, True)
    assert dry["by_system"] == {s: {"created": ACCOUNTS, "updated": 0, "fields": {}} for s in ("erp", "stripe")}
    assert counts(peers) == (0, erp_before)  # nothing written
    table = cli(env, "backfill", "customers", "--from", "clarity", "--dry-run", timeout=300)
    assert table.returncode == 0 and "dry run: nothing written" in table.stdout, table.stdout + table.stderr
    assert "would be created" in table.stdout

    first = backfill(env, "--limit", "10", "--page-size", "10")
    assert (first["seen"], first["created"], first["pages"], first["finished"]) == (10, 10, 1, False)
    rest = backfill(env, "--page-size", "10")
    assert rest["resumed_after"] == 1  # the page number after which it went on
    assert (rest["created"], rest["unchanged"], rest["pages"], rest["finished"]) == (
        ACCOUNTS - 10, 0, -(-(ACCOUNTS - 10) // 10), True)
    assert counts(peers) == (ACCOUNTS, erp_before + ACCOUNTS)

    again = backfill(env)
    assert again["resumed_after"] is None  # a finished run starts the next one from the beginning
    assert (again["created"], again["updated"], again["unchanged"], again["conflicts"], again["failed"]) == (
        0, 0, ACCOUNTS, 0, 0)
    assert counts(peers) == (ACCOUNTS, erp_before + ACCOUNTS)


def test_a_backfill_killed_mid_run_resumes_from_its_cursor_without_duplicates(
        env: dict[str, str], peers: dict[str, str], database_url: str) -> None:
    erp_before = counts(peers)[1]
    cursors = SqlCursorStore(store_db.make_engine(database_url))
    proc = subprocess.Popen([*CLI, "backfill", "customers", "--from", "clarity", "--json", "--page-size", "5"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            saved = json.loads(cursors.get("backfill.customers.clarity") or "{}")
            if (saved.get("position") or 0) >= 2:
                break
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = json.loads(cursors.get("backfill.customers.clarity") or "{}")["position"]
    assert done is not None and done >= 2, "killed after the run ended: the test proves nothing"
    resumed = backfill(env, "--page-size", "5")
    assert resumed["resumed_after"] == done and resumed["finished"]
    assert resumed["seen"] == ACCOUNTS - 5 * done
    assert counts(peers) == (ACCOUNTS, erp_before + ACCOUNTS)  # the page being synced when killed: no duplicate
    assert backfill(env)["unchanged"] == ACCOUNTS


def test_backfills_from_stripe_and_from_erpnext_page_through_those_systems(env: dict[str, str],
                                                                           peers: dict[str, str]) -> None:
    stripe = httpx.Client(base_url=peers["stripe"], headers={"Authorization": f"Bearer {STRIPE_KEY}"})
    erp = httpx.Client(base_url=peers["erp"], headers={"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"})
    erp_before = counts(peers)[1]
    for n in range(3):
        r = stripe.post("/v1/customers", data={"email": f"s{n}@example.org", "name": f"Stripe Person {n}"})
        assert r.status_code == 200, r.text
        r = erp.post("/api/resource/Customer", json={"customer_name": f"Erp Person {n}", "email_id": f"e{n}@example.org"})
        assert r.status_code == 200, r.text
    out = cli(env, "backfill", "customers", "--from", "stripe", "--json", "--page-size", "2", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {k: json.loads(out.stdout)[k] for k in ("created", "unchanged", "pages", "finished")} == {
        "created": 3, "unchanged": 0, "pages": 2, "finished": True}
    out = cli(env, "backfill", "customers", "--from", "erp", "--json", "--page-size", "2", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    # ERPNext now holds the 3 made from Stripe (unchanged) and its own 3 (made in Clarity and Stripe)
    assert (summary["created"], summary["unchanged"], summary["failed"]) == (3, 3 + erp_before, 0)
    assert counts(peers) == (6, erp_before + 6)
