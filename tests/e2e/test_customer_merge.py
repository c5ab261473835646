"""``commerce-bridge customers merge`` as a subprocess against the sandbox peers, on SQLite and PostgreSQL (issue 14,
point 2): two Stripe customers with one e-mail, synced by ``backfill customers``; a dry run writes nothing; the
merge retires the duplicate (marked ``cb_merged_into`` in Stripe), prints what must be done by hand and alerts;
merging again is nothing to do; an unknown id says to run the backfill; two Clarity accounts merged leave nothing
that names the losing customer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.store import db as store_db
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.tables import identity_keys, identity_links, identity_retired, poll_cursors
from tests.support.backfill_cli import CLARITY_BASE, Keys, cli_peers, peers_env
from tests.support.processes import cli

pytestmark = pytest.mark.slow
KEYS = Keys("cm-key", "cm-secret", "sk_test_customer_merge_cli")


@pytest.fixture
def peers() -> Iterator[dict[str, str]]:
    with cli_peers(KEYS) as urls:
        yield urls


@pytest.fixture
def env(peers: dict[str, str], database_url: str, tmp_path: Path) -> dict[str, str]:
    return peers_env(peers, KEYS, database_url, tmp_path, COLUMNS="250")  # COLUMNS: Rich tables on one line each


def run(env: dict[str, str], *args: str, code: int = 0) -> Any:
    out = cli(env, *args, timeout=180)
    assert out.returncode == code, out.stdout + out.stderr
    return out


def merge(env: dict[str, str], *args: str, code: int = 0) -> dict[str, Any]:
    return dict(json.loads(run(env, "customers", "merge", "--json", *args, code=code).stdout))


def naming(database_url: str, entity: str) -> list[str]:
    engine = store_db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            out = [str(r.system) for r in conn.execute(select(identity_links).where(
                identity_links.c.entity_id == entity))]
            out += [str(r.dedupe_key) for r in conn.execute(select(identity_keys).where(
                identity_keys.c.entity_id == entity))]
            out += [str(r.external_id) for r in conn.execute(select(identity_retired).where(
                identity_retired.c.entity_id == entity))]
            out += [str(r.name) for r in conn.execute(select(poll_cursors).where(
                poll_cursors.c.name.contains(entity)))]
    finally:
        engine.dispose()
    return out


def lookup(database_url: str, system: str, external_id: str) -> str | None:
    engine = store_db.make_engine(database_url)
    try:
        return SqlIdentityMap(engine).lookup("customer", system, external_id)
    finally:
        engine.dispose()


def test_merge_duplicate_stripe_customers_then_two_clarity_accounts(env: dict[str, str], peers: dict[str, str],
                                                                    database_url: str) -> None:
    stripe = httpx.Client(base_url=peers["stripe"], headers=KEYS.stripe_auth, timeout=10)
    email = f"twice.{uuid.uuid4().hex[:8]}@example.com"
    first = stripe.post("/v1/customers", data={"email": email, "name": "Ada Lovelace"}).json()["id"]
    run(env, "backfill", "customers", "--from", "stripe", "--json")  # the first is synced and linked
    second = stripe.post("/v1/customers", data={"email": email, "name": "Ada Lovelace"}).json()["id"]
    synced = json.loads(run(env, "backfill", "customers", "--from", "stripe", "--json").stdout)
    assert synced["failed"] == 0  # the duplicate is not an error: it is alerted and left alone
    entity = lookup(database_url, "stripe", first)
    assert entity is not None and lookup(database_url, "stripe", second) is None

    dry = merge(env, "--system", "stripe", "--from", second, "--into", first, "--dry-run")
    assert (dry["dry_run"], dry["retired"], dry["survivor"]) == (True, {"stripe": second}, entity)
    assert lookup(database_url, "stripe", second) is None  # nothing written

    done = run(env, "customers", "merge", "--system", "stripe", "--from", second, "--into", first)
    assert f"retired into {first}" in done.stdout and "the bridge cannot do these" in done.stdout and f"delete {second}" in " ".join(done.stdout.split())
    assert "customer.merged" in done.stderr  # the alert (log sink), ids only
    assert email not in done.stdout + done.stderr
    assert lookup(database_url, "stripe", second) == entity
    assert stripe.get(f"/v1/customers/{second}").json()["metadata"]["cb_merged_into"] == first
    again = merge(env, "--system", "stripe", "--from", second, "--into", first)
    assert again["nothing_to_do"] is True
    before = len(stripe.get("/v1/customers", params={"limit": 100}).json()["data"])
    run(env, "backfill", "customers", "--from", "stripe", "--json")  # the retired customer writes nothing
    assert len(stripe.get("/v1/customers", params={"limit": 100}).json()["data"]) == before

    unknown = run(env, "customers", "merge", "--system", "stripe", "--from", first, "--into", "cus_nobody",
                  code=1)
    assert "backfill customers --from stripe" in " ".join((unknown.stdout + unknown.stderr).split())

    clarity = httpx.Client(base_url=peers["clarity"] + CLARITY_BASE, timeout=10)
    clarity.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
    accounts = []
    for tag in ("keep", "gone"):
        r = clarity.post("/Accounts/Account/Create", json={
            "ID": 0, "CustomKey": f"CM-{tag}-{uuid.uuid4().hex[:6]}", "Name": f"Account {tag}",
            "AccountContacts": [{"Slave": {"FirstName": "Ada", "LastName": tag,
                                           "Email1": f"{tag}.{uuid.uuid4().hex[:8]}@example.com"},
                                 "IsBilling": True, "IsPrimary": False}]})
        assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text
        accounts.append(str(r.json()["Result"]))
    run(env, "backfill", "customers", "--from", "clarity", "--json")
    keep, gone = (lookup(database_url, "clarity_account", a) for a in accounts)
    assert keep and gone and keep != gone
    report = merge(env, "--system", "clarity", "--from", accounts[1], "--into", accounts[0])
    assert (report["loser"], report["survivor"], report["moved"]) == (gone, keep, {})
    assert set(report["retired"]) == {"clarity_account", "stripe", "erp"} and report["snapshot_dropped"]
    assert sorted(b["system"] for b in report["by_hand"]) == ["clarity", "erp", "stripe"]
    assert naming(database_url, gone) == []
    assert lookup(database_url, "clarity_account", accounts[1]) == keep
