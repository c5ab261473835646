"""Events that never reached the bridge, found and fed in (issue 14, point 6), on SQLite and PostgreSQL.

One sandbox stack per database for the module (the bridge in this process). Webhooks go missing the way they do
in production: the Stripe emulator's endpoint is disabled while an order is paid, so Stripe has the
``payment_intent.succeeded`` event and never delivers it (as Stripe does for a disabled endpoint); a Clarity
change goes missing when the poll cursor has passed it (a cursor moved or restored). The gap check is run by
``commerce-bridge gaps`` (a subprocess on the stack's settings) and by the scheduled path (the container's
check on a short interval); the test asserts each missing event is stored once, its workflow ran (the order is
paid in Clarity and ERPNext), the metrics counted it, one alert named it, a second check finds nothing, and
the webhook arriving afterwards is a duplicate.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commerce_bridge.connectors.clarity.changes import CursorState
from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import SCENARIOS, Placed
from commerce_bridge.services.gaps import GAP_LOCK
from commerce_bridge.services.schedule import LeaderSchedule
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.testing import FakeAlertSink
from tests.support.processes import bridge_env, cli
from tests.support.stacks import cli_env, stack_on, wait_for

pytestmark = pytest.mark.slow
PAID = next(s for s in SCENARIOS if s.name == "paid (USD)")
_numbers = itertools.count(700)
ALERTS: dict[int, FakeAlertSink] = {}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"gaps-{request.param}"), gap_interval_s=3600,
                  gap_settle_s=1, alert_window_s=1, drift_interval_s=0) as stack:
        schedule = stack.container.gap_schedule
        assert schedule is not None and schedule.leader is not None and schedule.leader.name == GAP_LOCK
        assert schedule.name == "gaps" and schedule.interval_s == 3600
        schedule.stop()  # its first check would come after a minute: the tests run the check when they mean to
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack


def env_of(st: Stack, **extra: Any) -> dict[str, str]:
    """The stack's connections as CB_* variables for a CLI subprocess, nothing left to settle."""
    return cli_env(st, **{"gap_settle_s": 0, **extra})


def endpoint(st: Stack, *, enabled: bool) -> None:
    [ep] = st.traffic.stripe.get("/v1/webhook_endpoints").json()["data"]
    r = st.traffic.stripe.post(f"/v1/webhook_endpoints/{ep['id']}", data={"disabled": str(not enabled).lower()})
    assert r.status_code == 200, r.text


def paid_without_its_webhook(st: Stack) -> tuple[Placed, str]:
    """An order paid in Stripe while the endpoint is disabled: (the order, its payment_intent.succeeded event)."""
    endpoint(st, enabled=False)
    try:
        order = st.traffic.place(next(_numbers), PAID)
        pi = wait_for(f"{order.key}'s payment", lambda: (st.traffic.intents_by_order_key().get(order.key) or {})
                      .get("status") == "succeeded" and st.traffic.intents_by_order_key()[order.key], st, 90)
        st.traffic.stripe.post("/_sandbox/webhooks/drain", json={"timeout": 10})
    finally:
        endpoint(st, enabled=True)
    events = st.traffic.stripe.get("/v1/events", params={"type": "payment_intent.succeeded", "limit": 100}).json()
    [event_id] = [e["id"] for e in events["data"] if e["data"]["object"]["id"] == pi["id"]]
    assert st.container.inbox.get("stripe", event_id) is None, "the emulator did not deliver it"
    return order, str(event_id)


def is_paid(st: Stack, order: Placed) -> bool:
    st.traffic.refresh([order])
    return order.done


def payment_entries(st: Stack, order: Placed) -> list[dict[str, Any]]:
    r = st.traffic.erp.get("/api/resource/Payment Entry", params={
        "filters": json.dumps([["reference_no", "=", st.traffic.intents_by_order_key()[order.key]["latest_charge"]]]),
        "limit_page_length": 0})
    return list(r.json()["data"])


def metric(st: Stack, line: str) -> float:
    for row in st.container.metrics.render().decode().splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def gaps_of(report: dict[str, Any], event_id: str) -> list[dict[str, Any]]:
    return [g for g in report["gaps"] if g["event_id"] == event_id]


def test_the_cli_lists_a_missed_webhook_feeds_it_in_once_and_its_workflow_runs(st: Stack) -> None:
    order, event_id = paid_without_its_webhook(st)
    time.sleep(1.5)
    assert not is_paid(st, order), "nothing told the bridge the order was paid"

    dry = cli(env_of(st), "gaps", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    [gap] = gaps_of(json.loads(dry.stdout), event_id)
    assert gap == {**gap, "source": "stripe", "type": "payment_intent.succeeded", "fed": False}
    assert st.container.inbox.get("stripe", event_id) is None, "a dry run stores nothing"

    fill = cli(env_of(st), "gaps", "--json")
    assert fill.returncode == 0, fill.stderr
    report = json.loads(fill.stdout)
    assert [g["fed"] for g in gaps_of(report, event_id)] == [True]
    assert {"source": "stripe", "type": "payment_intent.succeeded", "count": report["found"]} in report["by_type"]
    stored = st.container.inbox.get("stripe", event_id)
    assert stored is not None and stored.event_type == "payment_intent.succeeded"
    assert json.loads(stored.body)["data"]["object"]["metadata"]["clarity_order_key"] == order.key
    wait_for(f"{order.key} paid everywhere", lambda: is_paid(st, order), st, 90)

    again = cli(env_of(st), "gaps", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["found"] == 0, again.stdout

    # the webhook arrives after all (Stripe's retry, a resend): stored once, booked once
    duplicates = metric(st, 'cb_webhook_deliveries_total{outcome="duplicate",source="stripe"}')
    assert st.traffic.stripe.post(f"/_sandbox/events/{event_id}/resend", json={}).json()["queued"] == 1
    st.traffic.stripe.post("/_sandbox/webhooks/drain", json={"timeout": 10})
    wait_for("the late webhook", lambda: metric(
        st, 'cb_webhook_deliveries_total{outcome="duplicate",source="stripe"}') > duplicates, st, 30)
    assert len(st.container.inbox.list(source="stripe", limit=500)) == len(
        {r["event_id"] for r in st.container.inbox.list(source="stripe", limit=500)})
    time.sleep(1.5)
    assert len(payment_entries(st, order)) == 1

    table = cli({**env_of(st), "COLUMNS": "200"}, "gaps", "--dry-run")
    assert table.returncode == 0, table.stderr
    assert "no gaps: every event is in the inbox" in table.stdout


def test_the_scheduled_check_feeds_in_counts_and_alerts_once(st: Stack) -> None:
    order, event_id = paid_without_its_webhook(st)
    c = st.container
    assert c.gap_schedule is not None
    found = metric(st, 'cb_gaps_found_total{source="stripe",type="payment_intent.succeeded"}')
    filled = metric(st, 'cb_gaps_filled_total{source="stripe"}')
    assert c.gap_watch is not None and c.gap_schedule.job == c.gap_watch.check_once
    schedule = LeaderSchedule("gaps", c.gap_watch.check_once, interval_s=0.5, what="The gap check",
                              leader=c.gap_schedule.leader, alert=c.alerter.alert)
    schedule.start()
    try:
        wait_for(f"{order.key} paid everywhere", lambda: is_paid(st, order), st, 90)
        wait_for("two more checks", lambda: schedule.checks >= 3, st, 30)
    finally:
        schedule.stop()
    assert st.container.inbox.get("stripe", event_id) is not None
    assert metric(st, 'cb_gaps_found_total{source="stripe",type="payment_intent.succeeded"}') == found + 1
    assert metric(st, 'cb_gaps_filled_total{source="stripe"}') == filled + 1
    assert metric(st, "cb_gaps_last_run_timestamp_seconds") > time.time() - 60
    alerted = wait_for("the gaps alert", lambda: [
        a for m in ALERTS[id(st)].messages for a in m.alerts if a.kind == "gaps.found"
        and any(g["event_id"] == event_id for g in a.details["gaps"])], st, 30)
    assert len(alerted) == 1, "one alert, and later checks found nothing more"
    assert alerted[0].details["by_type"] == {"stripe payment_intent.succeeded": 1}
    assert PAID.name not in json.dumps(alerted[0].details) and "@" not in json.dumps(alerted[0].details)
    assert len(payment_entries(st, order)) == 1


def test_a_clarity_change_behind_the_poll_cursor_is_fed_in_and_its_order_goes_through(st: Stack) -> None:
    cursors = SqlCursorStore(st.container.db)
    before = cursors.get("clarity.salesorders")
    ahead = CursorState(since=CursorState.load(before).since or None)
    assert ahead.since is not None, "the poller has polled"
    ahead.since = ahead.since.replace(year=ahead.since.year + 1)  # a cursor restored from the wrong place
    try:
        cursors.set("clarity.salesorders", ahead.dump())
        order = st.traffic.place(next(_numbers), PAID)
        time.sleep(3)  # a few poll cycles: the poller reads from its cursor on and never sees the order
        assert cursors.get("clarity.salesorders") == ahead.dump()
        assert st.traffic.intents_by_order_key().get(order.key) is None, "the bridge never saw the order"
        c = st.container
        assert c.gap_watch is not None
        report = c.gap_watch.check_once()
        mine = [g for g in report.gaps if g.source == "clarity" and g.ref == str(order.order_id)]
        assert [g.event_type for g in mine] == ["salesorder.created"], [g.to_dict() for g in report.gaps]
        assert [g.event_id for g in report.fed if g.source == "clarity"] == [mine[0].event_id]
        wait_for(f"{order.key} paid everywhere", lambda: is_paid(st, order), st, 90)
        assert metric(st, 'cb_gaps_filled_total{source="clarity"}') >= 1
        assert c.gap_watch.check_once().gaps == []
    finally:
        cursors.set("clarity.salesorders", before or CursorState().dump())


def test_the_cli_says_what_is_wrong_with_its_options_or_the_systems(st: Stack) -> None:
    bad_date = cli(env_of(st), "gaps", "--since", "2026-13-01")
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr
    down = cli(env_of(st, stripe_api_base="http://127.0.0.1:9"), "gaps", "--dry-run")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "fix:" in down.stderr and "stripe" in down.stderr.lower(), down.stderr
    nothing = cli(bridge_env(database_url=st.container.settings.database_url), "gaps")
    assert nothing.returncode == 2 and "CB_STRIPE_API_KEY" in nothing.stderr, nothing.stderr
