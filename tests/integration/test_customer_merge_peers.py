"""Duplicates and merges against the sandbox peers (Clarity simulator, Stripe emulator, ERPNext simulator) on SQLite
and PostgreSQL (issue 14, point 2): two Stripe customers with one e-mail raise one alert and write nothing; a
merge retires the duplicate, whose later event writes nothing; two Clarity accounts merged leave nothing that
names the loser; a look-up that finds two records keeps the oldest and alerts once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from commerce_bridge.errors import NotFound
from commerce_bridge.services.alerts import Alert
from commerce_bridge.services.customer_merge import CustomerMerge
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.tables import identity_keys, identity_links, identity_retired, poll_cursors
from tests.support.sync_peers import clarity_account, customer_gateways, sync_peer_fixtures

STRIPE_KEY = "sk_test_customer_merge"
peers, clarity_api, erp_api, stripe_api = sync_peer_fixtures(STRIPE_KEY)


@pytest.fixture
def alerts() -> list[Alert]:
    return []


@pytest.fixture
def syncer(peers: dict[str, str], engine: Engine, alerts: list[Alert]) -> Iterator[CustomerSyncer]:
    with customer_gateways(peers, engine, STRIPE_KEY) as (clarity, stripe, erp):
        yield CustomerSyncer(clarity=clarity, stripe=stripe, erp=erp, identity=SqlIdentityMap(engine),
                             snapshots=SqlCursorStore(engine), alert=alerts.append)


def stripe_customer(api: httpx.Client, email: str, name: str = "Ada Lovelace") -> dict[str, Any]:
    r = api.post("/v1/customers", data={"email": email, "name": name, "phone": "+14155550101"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def stripe_count(api: httpx.Client, email: str) -> int:
    customers = api.get("/v1/customers", params={"limit": 100}).json()["data"]
    return sum(1 for c in customers if c.get("email") == email)


def naming(engine: Engine, entity: str) -> list[str]:
    """Every identity row and cursor that names ``entity`` (an orphan check)."""
    with engine.connect() as conn:
        out = [f"link:{r.system}" for r in conn.execute(select(identity_links).where(
            identity_links.c.entity_id == entity))]
        out += [f"key:{r.dedupe_key}" for r in conn.execute(select(identity_keys).where(
            identity_keys.c.entity_id == entity))]
        out += [f"retired:{r.external_id}" for r in conn.execute(select(identity_retired).where(
            identity_retired.c.entity_id == entity))]
        out += [f"cursor:{r.name}" for r in conn.execute(select(poll_cursors).where(
            poll_cursors.c.name.contains(entity)))]
    return out


def test_two_stripe_customers_with_one_email_alert_once_then_a_merge_retires_the_duplicate(
        syncer: CustomerSyncer, engine: Engine, alerts: list[Alert], stripe_api: httpx.Client) -> None:
    email = f"dup.{uuid.uuid4().hex[:8]}@example.com"
    first = stripe_customer(stripe_api, email)
    synced = syncer.sync_from("stripe", first["id"])
    assert synced.result == "created" and synced.duplicate_of is None
    entity = synced.entity_id
    assert entity is not None
    second = stripe_customer(stripe_api, email)

    for _ in range(2):  # the duplicate writes nothing and is alerted once, not on every sync
        outcome = syncer.sync_from("stripe", second["id"])
        assert (outcome.entity_id, outcome.duplicate_of, outcome.changes, outcome.result) == (
            entity, first["id"], {}, "unchanged")
    assert [a.kind for a in alerts] == ["customer.duplicates"]
    assert alerts[0].details["ids"] == sorted([first["id"], second["id"]])
    assert alerts[0].details["kept"] == first["id"]
    assert alerts[0].details["commands"] == [
        f"commerce-bridge customers merge --system stripe --from {second['id']} --into {first['id']}"]
    assert SqlIdentityMap(engine).lookup("customer", "stripe", second["id"]) is None

    merge = CustomerMerge.from_syncer(syncer)
    dry = merge.merge("stripe", second["id"], first["id"], dry_run=True)
    assert dry.retired == {"stripe": second["id"]} and dry.dry_run
    assert SqlIdentityMap(engine).lookup("customer", "stripe", second["id"]) is None  # nothing written
    assert "cb_merged_into" not in (stripe_api.get(f"/v1/customers/{second['id']}").json()["metadata"] or {})

    report = merge.merge("stripe", second["id"], first["id"])
    assert (report.survivor, report.loser, report.retired, report.moved) == (
        entity, None, {"stripe": second["id"]}, {})
    [todo] = report.by_hand
    assert todo.system == "stripe" and todo.external_id == second["id"]
    assert "delete" in todo.todo and "subscription" in todo.todo and todo.facts["into"] == first["id"]
    assert [a.kind for a in alerts] == ["customer.duplicates", "customer.merged"]
    assert stripe_api.get(f"/v1/customers/{second['id']}").json()["metadata"]["cb_merged_into"] == first["id"]

    # the duplicate's late customer.updated (the metadata write above makes one) writes nothing
    before = stripe_count(stripe_api, email)
    late = syncer.sync_from("stripe", second["id"])
    assert (late.merged_into, late.changes, late.result) == (entity, {}, "unchanged")
    assert stripe_count(stripe_api, email) == before
    assert SqlIdentityMap(engine).lookup("customer", "stripe", second["id"]) == entity
    assert merge.merge("stripe", second["id"], first["id"]).nothing_to_do  # merged already: nothing to do
    assert syncer.sync_from("stripe", first["id"]).changes["stripe"].external_id == first["id"]


def test_two_clarity_accounts_merged_leave_nothing_naming_the_loser(
        syncer: CustomerSyncer, engine: Engine, alerts: list[Alert], clarity_api: httpx.Client,
        stripe_api: httpx.Client) -> None:
    keep = clarity_account(clarity_api, email=f"keep.{uuid.uuid4().hex[:8]}@example.com")
    gone = clarity_account(clarity_api, email=f"gone.{uuid.uuid4().hex[:8]}@example.com")
    kept, lost = syncer.sync_from("clarity", str(keep)), syncer.sync_from("clarity", str(gone))
    assert kept.entity_id and lost.entity_id and kept.entity_id != lost.entity_id
    ids = SqlIdentityMap(engine)
    loser_links = ids.externals("customer", lost.entity_id)
    assert set(loser_links) == {"clarity_account", "stripe", "erp"}

    report = CustomerMerge.from_syncer(syncer).merge("clarity", str(gone), str(keep))
    assert (report.loser, report.survivor, report.moved, report.keys) == (lost.entity_id, kept.entity_id, {}, 1)
    assert report.retired == loser_links and report.snapshot_dropped
    assert naming(engine, lost.entity_id) == []  # no link, key, retired row or snapshot names the loser
    assert sorted(b.system for b in report.by_hand) == ["clarity", "erp", "stripe"]
    clarity_todo = next(b for b in report.by_hand if b.system == "clarity")
    assert clarity_todo.facts["contacts"] == 1 and "deactivate account" in clarity_todo.todo
    assert "Merge with existing" in next(b for b in report.by_hand if b.system == "erp").todo
    assert alerts[-1].kind == "customer.merged"

    # the deactivated account's poll, the retired Stripe customer's event: nothing read, written or linked
    for system in ("clarity", "stripe", "erp"):
        late = syncer.sync_from(system, loser_links[{"clarity": "clarity_account"}.get(system, system)])
        assert (late.merged_into, late.changes) == (kept.entity_id, {})
    assert ids.externals("customer", kept.entity_id) == {
        "clarity_account": str(keep), "stripe": kept.changes["stripe"].external_id,
        "erp": kept.changes["erp"].external_id}
    assert naming(engine, lost.entity_id) == []


def test_a_lookup_finding_two_stripe_customers_keeps_the_oldest_and_alerts_once(
        syncer: CustomerSyncer, alerts: list[Alert], clarity_api: httpx.Client, stripe_api: httpx.Client) -> None:
    email = f"two.{uuid.uuid4().hex[:8]}@example.com"
    made = [stripe_customer(stripe_api, email), stripe_customer(stripe_api, email)]
    oldest = min(made, key=lambda c: (int(c["created"]), str(c["id"])))["id"]
    account = clarity_account(clarity_api, email=email)
    outcome = syncer.sync_from("clarity", str(account))
    assert outcome.changes["stripe"].external_id == oldest
    assert [a.kind for a in alerts] == ["customer.duplicates"]
    assert alerts[0].details["kept"] == oldest and alerts[0].details["system"] == "stripe"
    syncer.sync_from("clarity", str(account))
    assert len(alerts) == 1


def test_merging_an_id_unknown_to_the_identity_map_says_to_run_the_backfill(
        syncer: CustomerSyncer, stripe_api: httpx.Client) -> None:
    lone = stripe_customer(stripe_api, f"lone.{uuid.uuid4().hex[:8]}@example.com")
    merge = CustomerMerge.from_syncer(syncer)
    with pytest.raises(NotFound) as caught:
        merge.merge("stripe", "cus_doesnotexist", lone["id"])
    assert "backfill customers --from stripe" in (caught.value.suggested_fix or "")
    synced = syncer.sync_from("stripe", lone["id"])
    with pytest.raises(NotFound, match="unknown to the identity map and to stripe"):
        merge.merge("stripe", "cus_doesnotexist", lone["id"])
    assert synced.entity_id is not None


class MergeWhenLocked:
    """A ``KeyLocks`` port fake: the first time the sync takes ``entity``'s lock, a merge runs just before (the race
    of a merge between the sync's look-up of its customer and its lock)."""

    def __init__(self, entity: str, merge: Callable[[], object]) -> None:
        self.entity, self.merge, self.ran = entity, merge, False

    @contextmanager
    def hold(self, scope: str, key: str) -> Iterator[None]:
        if key == self.entity and not self.ran:
            self.ran = True
            self.merge()
        yield

    def try_acquire(self, name: str, holder: str, *, lease_s: float | None = None) -> bool:
        return True

    def release(self, name: str, holder: str) -> bool:
        return True


def test_a_sync_that_a_merge_overtakes_writes_nothing_for_the_retired_record(
        syncer: CustomerSyncer, engine: Engine, clarity_api: httpx.Client, stripe_api: httpx.Client) -> None:
    keep = clarity_account(clarity_api, email=f"keep.{uuid.uuid4().hex[:8]}@example.com")
    gone_email = f"gone.{uuid.uuid4().hex[:8]}@example.com"
    gone = clarity_account(clarity_api, email=gone_email)
    kept, lost = syncer.sync_from("clarity", str(keep)), syncer.sync_from("clarity", str(gone))
    assert lost.entity_id is not None
    merge = CustomerMerge.from_syncer(syncer)
    racing = CustomerSyncer(clarity=syncer.gateways[0], stripe=syncer.gateways[1], erp=syncer.gateways[2],
                            identity=syncer.identity, snapshots=syncer.snapshots,
                            locks=MergeWhenLocked(lost.entity_id, lambda: merge.merge("clarity", str(gone),
                                                                                      str(keep))))
    before = stripe_count(stripe_api, gone_email)
    outcome = racing.sync_from("clarity", str(gone))
    assert (outcome.merged_into, outcome.changes) == (kept.entity_id, {})
    assert stripe_count(stripe_api, gone_email) == before  # nothing created again
    assert naming(engine, lost.entity_id) == []
