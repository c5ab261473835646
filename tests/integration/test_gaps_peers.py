"""The gap check's reads against real peers: ``StripeSdkGateway.list_events`` on the Stripe emulator (through the
official SDK: ``types[]`` in groups of 20, ``type`` wildcards, ``created`` bounds, paging) and
``SqlInbox.stored_ids`` on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge import errors as E
from commerce_bridge.connectors.stripe.gateway import (
    StripeSdkGateway,
    build_stripe_client,
    event_type_queries,
)
from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.store.inbox import IDS_PER_QUERY, SqlInbox

KEY = {"Authorization": "Bearer sk_test_gaps"}


@pytest.fixture
def gateway(stripe_base: str) -> StripeSdkGateway:
    return StripeSdkGateway(build_stripe_client("sk_test_gaps", api_base=stripe_base, timeout_s=10))


def paid(stripe_base: str, amount: int = 1500) -> dict[str, object]:
    r = httpx.post(f"{stripe_base}/v1/payment_intents", headers=KEY, data={
        "amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
        "payment_method_types[]": "card"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def events(gateway: StripeSdkGateway, **kwargs: object) -> list[dict[str, object]]:
    return [e for page in gateway.list_events(**kwargs) for e in page]  # type: ignore[arg-type]


def test_events_are_listed_by_type_in_groups_of_twenty_and_by_wildcard(gateway: StripeSdkGateway,
                                                                       stripe_base: str) -> None:
    start = int(time.time()) - 1
    pis = [paid(stripe_base, 1000 + n) for n in range(3)]
    every = events(gateway, created_gte=start)
    succeeded = [e for e in every if e["type"] == "payment_intent.succeeded"]
    assert {e["data"]["object"]["id"] for e in succeeded} == {p["id"] for p in pis}  # type: ignore[index]
    # 25 names: two requests (20 + 5); only the wanted types come back, each event once
    filler = [f"unused.type_{n}" for n in range(24)]
    listed = events(gateway, created_gte=start, types=[*filler, "payment_intent.succeeded"], page_size=2)
    assert sorted(str(e["id"]) for e in listed) == sorted(str(e["id"]) for e in succeeded)
    charges = events(gateway, created_gte=start, types=["charge.*"])
    assert charges and all(str(e["type"]).startswith("charge.") for e in charges)
    assert events(gateway, created_gte=start + 3600) == []  # created[gte] in the future: nothing
    assert events(gateway, created_gte=start, created_lte=start - 1) == []


def test_event_type_queries_split_exact_names_and_wildcards() -> None:
    names = [f"t.{n:02}" for n in range(41)]
    queries = event_type_queries([*names, "charge.*", "t.00"])
    assert [len(q["types"]) for q in queries if "types" in q] == [20, 20, 1]
    assert [q for q in queries if "type" in q] == [{"type": "charge.*"}]
    assert event_type_queries([]) == [{}] == event_type_queries(["x.y", "*"])


def test_the_emulator_refuses_what_stripe_refuses(stripe_base: str) -> None:
    too_many = httpx.get(f"{stripe_base}/v1/events", headers=KEY,
                         params=[("types[]", f"t.{n}") for n in range(21)])
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "types"
    both = httpx.get(f"{stripe_base}/v1/events", headers=KEY, params={"type": "charge.*", "types[]": "x.y"})
    assert both.status_code == 400, both.text


def test_a_stripe_that_cannot_be_read_is_an_upstream_error() -> None:
    down = StripeSdkGateway(build_stripe_client("sk_test_gaps", api_base="http://127.0.0.1:9", timeout_s=2))
    with pytest.raises(E.UpstreamUnavailable):
        events(down, created_gte=0)


def test_the_inbox_says_which_ids_it_holds_in_batches(engine: Engine) -> None:
    inbox = SqlInbox(engine)
    try:
        assert inbox.first_received_at() is None
        now = datetime.now(UTC)
        held = [f"evt_{n}" for n in range(IDS_PER_QUERY + 20)]
        inbox.record_batch([Delivery("stripe", i, "payment_intent.succeeded", b"{}", now) for i in held])
        inbox.record_batch([Delivery("clarity", "evt_missing", "salesorder.updated", b"{}", now)])
        asked = [*held, "evt_missing", "evt_other", held[0]]
        assert inbox.stored_ids("stripe", asked) == set(held)
        assert inbox.stored_ids("clarity", asked) == {"evt_missing"}
        assert inbox.stored_ids("stripe", []) == set()
        first = inbox.first_received_at()
        assert first is not None and abs((first - now).total_seconds()) < 1 and first.tzinfo is not None
    finally:
        inbox.close()
