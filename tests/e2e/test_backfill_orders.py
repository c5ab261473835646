"""``commerce-bridge backfill orders`` against the sandbox peers, on SQLite and PostgreSQL (issue 14, point 5).

One sandbox stack per database for the module (the bridge in this process, its gap check stopped: the backfill is
what brings the orders in here). Orders are placed in Clarity while the poll cursor is a year ahead (a bridge that
was not polling), so nothing processes them; ``backfill orders --from clarity --dry-run`` lists them and feeds
nothing; a run feeds each order's change event (the poller's id) and the order reaches its end state (paid in
Stripe and Clarity, the ERPNext Sales Order and Payment Entry); once the poller has read their later changes, a
second run finds every event ``known``. ``--from stripe`` on orders paid through their webhooks finds their events
``known``; fed again under the made-up id (Stripe no longer lists an event after 30 days: the feed is run with a
clock 31 days on) the payment workflow changes nothing, no second Payment Entry. ``--from erp`` checks the Sales
Orders against Clarity and feeds nothing the inbox holds. Paging and the cursor are ``services.backfill``'s
(tests/unit/test_backfill_pages.py; the order pages' resume: tests/unit/test_order_backfill.py).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commerce_bridge.bootstrap_orders import workflow_wants
from commerce_bridge.connectors.clarity.changes import CursorState
from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import SCENARIOS, Placed
from commerce_bridge.services.backfill import Backfill
from commerce_bridge.services.order_backfill import OrderFeed
from commerce_bridge.store.cursors import SqlCursorStore
from tests.support.backfill_cli import backfill_json
from tests.support.processes import cli
from tests.support.stacks import cli_env, stack_on, wait_for

pytestmark = pytest.mark.slow
PAID = next(s for s in SCENARIOS if s.name == "paid (USD)")
_numbers = itertools.count(900)
POLL_CURSOR = "clarity.salesorders"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"bfo-{request.param}"), gap_interval_s=3600,
                  drift_interval_s=0) as stack:
        if stack.container.gap_schedule is not None:
            stack.container.gap_schedule.stop()  # it would feed the orders the poller skipped: that is our job here
        yield stack


def backfill(st: Stack, source: str, *args: str) -> dict[str, Any]:
    return backfill_json(cli_env(st), "orders", "--since", datetime.now(UTC).date().isoformat(), *args,
                         source=source, timeout=120)


def paid_everywhere(st: Stack, orders: list[Placed]) -> bool:
    st.traffic.refresh(orders)
    return all(o.done for o in orders)


def current_event_ids(st: Stack, orders: list[Placed]) -> set[str]:
    """The poller's event ids of the orders' current state (a hash of ID and UpdatedDate)."""
    clarity = st.container.gaps.clarity if st.container.gaps else None
    assert clarity is not None
    out = set()
    for o in orders:
        r = st.traffic.clarity.get(f"/DesktopModules/ClarityEcommerce/API-Admin/Ordering/SalesOrder/ID/{o.order_id}",
                                   headers=st.traffic.session)
        assert r.status_code == 200, r.text
        out.add(str(clarity.change_event_of("orders", r.json())["id"]))
    return out


def payment_entries(st: Stack, charge_id: str) -> list[dict[str, Any]]:
    r = st.traffic.erp.get("/api/resource/Payment Entry", params={
        "filters": json.dumps([["reference_no", "=", charge_id]]), "limit_page_length": 0})
    return list(r.json()["data"])


def test_orders_the_bridge_never_polled_are_fed_from_clarity_once_and_reach_their_end_state(st: Stack) -> None:
    cursors = SqlCursorStore(st.container.db)
    before = cursors.get(POLL_CURSOR)
    ahead = CursorState(since=datetime.now(UTC) + timedelta(days=365))  # a bridge that was not polling
    try:
        cursors.set(POLL_CURSOR, ahead.dump())
        orders = [st.traffic.place(next(_numbers), PAID) for _ in range(3)]
        assert all(o.order_id for o in orders), [o.error for o in orders]
        time.sleep(2)  # poll cycles: the poller reads from its cursor on and never sees them
        assert not set(st.traffic.intents_by_order_key()) & {o.key for o in orders}, "nothing processed them"

        dry = backfill(st, "clarity", "--dry-run")
        listed = {r["id"]: r for r in dry["would_feed"]}
        ours = {str(o.order_id) for o in orders}
        assert ours <= set(listed), dry
        assert {listed[i]["type"] for i in ours} == {"salesorder.created"}
        event_ids = {listed[i]["event_id"] for i in ours}
        assert event_ids == current_event_ids(st, orders)  # the poller's ids
        assert (dry["dry_run"], dry["failed"], dry["finished"]) == (True, 0, True)
        assert st.container.inbox.stored_ids("clarity", event_ids) == set(), "a dry run feeds nothing"
        assert cursors.get("backfill.orders.clarity") is None, "nor moves a cursor"

        run = backfill(st, "clarity", "--page-size", "2")
        assert (run["failed"], run["finished"], run["dry_run"]) == (0, True, False), run
        assert run["fed"] >= 3 and run["pages"] >= 2, run
        assert st.container.inbox.stored_ids("clarity", event_ids) == event_ids
        wait_for("the fed orders paid everywhere", lambda: paid_everywhere(st, orders), st, 90)
    finally:
        cursors.set(POLL_CURSOR, before or CursorState().dump())
    # the poller, back on its cursor, stores the orders' later changes (the bridge's own writes)
    wait_for("the poller to catch up", lambda: current_event_ids(st, orders) <= st.container.inbox.stored_ids(
        "clarity", current_event_ids(st, orders)), st, 30)
    again = backfill(st, "clarity")
    assert (again["fed"], again["failed"], again["resumed_after"]) == (0, 0, None), again
    assert again["known"] >= 3, again
    assert all(len(payment_entries(st, st.traffic.intents_by_order_key()[o.key]["latest_charge"])) == 1
               for o in orders)


def test_paid_orders_fed_again_from_stripe_or_erp_change_nothing(st: Stack) -> None:
    orders = [st.traffic.place(next(_numbers), PAID) for _ in range(2)]
    wait_for("the orders paid everywhere", lambda: paid_everywhere(st, orders), st, 90)
    intents = st.traffic.intents_by_order_key()
    pis = {o.key: intents[o.key] for o in orders}

    dry = backfill(st, "stripe", "--dry-run")
    assert (dry["fed"], dry["failed"]) == (0, 0), dry
    assert dry["known"] >= 2, "their payment_intent.succeeded events were delivered"
    erp = backfill(st, "erp")
    assert (erp["fed"], erp["failed"]) == (0, 0), erp
    assert erp["known"] >= 2, erp
    table = cli({**cli_env(st), "COLUMNS": "200"}, "backfill", "orders", "--from", "erp", "--dry-run", timeout=120)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "backfill orders from erp (dry run: nothing fed)" in table.stdout and "known" in table.stdout

    # 31 days on, Stripe no longer lists the events: each PaymentIntent is fed under its made-up id
    c = st.container
    assert c.gateways is not None and c.cursors is not None
    feed = OrderFeed(c.inbox, clarity=None, stripe=c.gateways.stripe,
                     erp=None, wants=workflow_wants(c.router), on_fed=c.wake_dispatchers,
                     clock=lambda: time.time() + 31 * 86400)
    summary = Backfill("orders", feed, feed.pages, c.cursors).run(
        "stripe", since=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0), restart=True)
    assert summary.failed == [] and summary.fed >= 2, summary.as_dict()
    made_up = [f"evt_backfill_{pi['id']}_succeeded" for pi in pis.values()]
    assert c.inbox.stored_ids("stripe", made_up) == set(made_up)

    def runs_done() -> bool:
        rows = [r for r in c.inbox.list(source="stripe", limit=200) if r["event_id"] in made_up]
        return len(rows) == 2 and all(r["runs"] and all(run["status"] == "succeeded" for run in r["runs"])
                                      for r in rows)

    wait_for("the payment workflow on the fed events", runs_done, st, 60)
    assert paid_everywhere(st, orders)
    for pi in pis.values():
        assert len(payment_entries(st, str(pi["latest_charge"]))) == 1, "no second Payment Entry"
