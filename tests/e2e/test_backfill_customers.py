"""``commerce-bridge backfill customers --from clarity`` as a subprocess against the sandbox peers, on SQLite and
PostgreSQL (issue 14, point 5): 20 Clarity accounts (seeded through ``POST /_sandbox/accounts``); a dry run
writes nothing; ``--limit`` stops after whole pages and the next run goes on from the cursor; a re-run reports
every customer unchanged; a run killed with SIGKILL mid-page resumes and makes no duplicate; eight customers at
once still keep to Stripe's rate limit, counted at the emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.backfill_cli import Keys, backfill_json, cli_peers, kill_mid_backfill, peers_env
from tests.support.processes import cli

pytestmark = pytest.mark.slow
KEYS = Keys("bf-key", "bf-secret", "sk_test_backfill")
ACCOUNTS = 20  # pages of 10 (one after --limit 10) and of 5 (four: the kill lands inside)


@pytest.fixture
def peers() -> Iterator[dict[str, str]]:
    with cli_peers(KEYS) as urls:
        r = httpx.post(f"{urls['clarity']}/_sandbox/accounts", json={"count": ACCOUNTS, "prefix": "BF"},
                       timeout=30)
        assert r.status_code == 200 and r.json()["created"] == ACCOUNTS, r.text
        yield urls


@pytest.fixture
def env(peers: dict[str, str], database_url: str, tmp_path: Path) -> dict[str, str]:
    return peers_env(peers, KEYS, database_url, tmp_path)


def backfill(env: dict[str, str], *args: str, code: int = 0) -> dict[str, Any]:
    return backfill_json(env, "customers", *args, code=code)


def counts(peers: dict[str, str]) -> tuple[int, int]:
    """(Stripe customers, ERPNext Customers)."""
    stripe = httpx.get(f"{peers['stripe']}/v1/customers", params={"limit": 100},
                       headers=KEYS.stripe_auth).json()["data"]
    erp = httpx.get(f"{peers['erp']}/api/resource/Customer", params={"limit_page_length": 0},
                    headers=KEYS.erp_auth).json()["data"]
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
    done = kill_mid_backfill(env, database_url, "customers", page_size=5)  # SIGKILL after two pages
    assert done is not None and done >= 2, "killed after the run ended: the test proves nothing"
    resumed = backfill(env, "--page-size", "5")
    assert resumed["resumed_after"] == done and resumed["finished"]
    assert resumed["seen"] == ACCOUNTS - 5 * done
    assert counts(peers) == (ACCOUNTS, erp_before + ACCOUNTS)  # the page being synced when killed: no duplicate
    assert backfill(env)["unchanged"] == ACCOUNTS


def test_backfills_from_stripe_and_from_erpnext_page_through_those_systems(env: dict[str, str],
                                                                           peers: dict[str, str]) -> None:
    stripe = httpx.Client(base_url=peers["stripe"], headers=KEYS.stripe_auth)
    erp = httpx.Client(base_url=peers["erp"], headers=KEYS.erp_auth)
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


def test_customers_synced_eight_at_once_keep_to_the_rate_limit_at_the_receiver(
        peers: dict[str, str], database_url: str, tmp_path: Path) -> None:
    """The emulator answers 429 to a 9th request within one second of its clock; the bridge may send 5 a second
    (4.5 after its margin). Eight threads without the limiter send far more (two Stripe calls per new customer)."""
    httpx.post(f"{peers['stripe']}/_sandbox/rate_limit", json={"per_s": 8}).raise_for_status()
    limited = peers_env(peers, KEYS, database_url, tmp_path,
                        CB_RATE_LIMITS='{"stripe": 5, "clarity": 1000, "erp": 1000}')
    started = time.monotonic()
    summary = backfill(limited, "--concurrency", "8", "--page-size", "10")
    elapsed = time.monotonic() - started
    assert (summary["created"], summary["failed"]) == (ACCOUNTS, 0)
    calls = httpx.get(f"{peers['stripe']}/_sandbox/requests").json()["data"]
    assert len(calls) >= 2 * ACCOUNTS
    assert [c for c in calls if c["status"] == 429] == []
    assert elapsed >= (len(calls) - 5) / 5  # paced by the limit, not by the round trips
