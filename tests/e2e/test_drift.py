"""Drift between Stripe, Clarity and ERPNext (issue 13, point 5), on SQLite and PostgreSQL.

One sandbox stack per database for the module (the bridge in this process, its drift check scheduled every
2 s with no settling time, alert windows of 1 s); the test makes real drift the way it happens (a payment taken
in Stripe with no order; a Payment Entry, a credit note and its Pay entry cancelled in ERPNext by hand) and
finds it through the container, through `commerce-bridge reconcile drift --json` (a subprocess on the stack's
settings) and in the scheduled check's alert.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import SCENARIOS, Placed
from commerce_bridge.testing import FakeAlertSink
from tests.support.processes import cli
from tests.support.stacks import cli_env, stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
_numbers = itertools.count(900)
ALERTS: dict[int, FakeAlertSink] = {}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"drift-{request.param}"), drift_interval_s=2,
                  drift_settle_s=0, alert_window_s=1) as stack:
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack


def env_of(st: Stack, **extra: Any) -> dict[str, str]:
    """The stack's connections as CB_* variables for a CLI subprocess, nothing left to settle."""
    return cli_env(st, **{"drift_settle_s": 0, **extra})


def paid_order(st: Stack) -> tuple[Placed, dict[str, Any]]:
    order = st.traffic.place(next(_numbers), BY_NAME["paid (USD)"])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    return order, next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)


def submitted(st: Stack, doctype: str, field: str, value: str) -> list[dict[str, Any]]:
    r = st.traffic.erp.get(f"/api/resource/{doctype}", params={
        "filters": json.dumps([[field, "=", value], ["docstatus", "=", 1]]), "limit_page_length": 0})
    return list(r.json()["data"])


def cancel(st: Stack, doctype: str, name: str) -> None:
    r = st.traffic.erp.put(f"/api/resource/{doctype}/{name}", json={"docstatus": 2})
    assert r.status_code == 200, r.text


def settled(st: Stack) -> None:
    """Let the events already sent be processed (deliveries drained, then a moment for the runs)."""
    st.traffic.stripe.post("/_sandbox/webhooks/drain", json={"timeout": 10})
    time.sleep(2.5)


def alerted(st: Stack, ref: str) -> list[dict[str, Any]]:
    return [d for m in ALERTS[id(st)].messages for a in m.alerts if a.kind == "drift.found"
            for d in a.details["differences"] if d["ref"] == ref]


def test_drift_is_found_by_kind_reported_by_the_cli_and_alerted_once(st: Stack) -> None:
    since = datetime.now(UTC) - timedelta(minutes=10)
    # a payment taken in Stripe alone (no order names it)
    lone = st.traffic.stripe.post("/v1/payment_intents", data={
        "amount": 4321, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
        "payment_method_types[]": "card"}).json()
    assert lone["status"] == "succeeded", lone
    # a paid order whose Payment Entry an accountant cancelled
    order, pi = paid_order(st)
    charge = str(pi["latest_charge"])
    [entry] = wait_for("the payment entry", lambda: submitted(st, "Payment Entry", "reference_no", charge), st)
    cancel(st, "Payment Entry", entry["name"])
    # a refund whose credit note and Pay entry were cancelled
    _, pi2 = paid_order(st)
    refund = st.traffic.stripe.post("/_sandbox/refunds", json={"payment_intent": pi2["id"], "amount": 1000}).json()
    [pay] = wait_for("the refund's Pay entry", lambda: submitted(st, "Payment Entry", "reference_no", refund["id"]), st)
    settled(st)  # the refund's later events (charge.refunded...) processed: nothing books it again afterwards
    [note] = submitted(st, "Sales Invoice", "remarks", f"Stripe refund {refund['id']}")
    cancel(st, "Payment Entry", pay["name"])
    cancel(st, "Sales Invoice", note["name"])

    report = st.container.drift.find(since) if st.container.drift else None
    assert report is not None and report.skipped == []
    found = {(d.kind, d.ref): d for d in report.differences}
    expected = {("charge_without_order", lone["latest_charge"]), ("charge_without_payment_entry", charge),
                ("refund_without_credit_note", refund["id"]), ("refund_without_payment_entry", refund["id"])}
    assert expected <= set(found), sorted(found)
    mine = {lone["latest_charge"], charge, refund["id"], order.key, pi2["latest_charge"]}
    assert {k for k in found if k[1] in mine} == expected, "nothing else about these records"
    assert found[("charge_without_order", lone["latest_charge"])].amount is not None
    assert found[("charge_without_payment_entry", charge)].ids["clarity.order"] == order.key

    out = cli(env_of(st), "reconcile", "drift", "--since", since.date().isoformat(), "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    listed = {(d["kind"], d["ref"]) for d in shown["differences"]}
    assert expected <= listed
    lone_row = next(d for d in shown["differences"] if d["ref"] == lone["latest_charge"])
    assert (lone_row["amount_minor"], lone_row["currency"]) == (4321, "USD")
    totals = {(t["kind"], t["currency"]): t for t in shown["totals"]}
    assert totals[("charge_without_order", "USD")]["amount_minor"] >= 4321
    assert sum(t["count"] for t in shown["totals"]) == shown["total"] >= 4
    # the admin API runs the same comparison
    token = st.container.settings.admin_tokens[0].get_secret_value()
    api = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/drift", headers={"Authorization": f"Bearer {token}"},
                    params={"since": since.date().isoformat(), "limit": 0}, timeout=120)
    assert api.status_code == 200, api.text
    assert expected <= {(d["kind"], d["ref"]) for d in api.json()["differences"]}
    assert api.json()["total"] == len(api.json()["differences"]) >= 4
    future = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/drift", headers={"Authorization": f"Bearer {token}"},
                       params={"since": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()})
    assert future.status_code == 422 and "not in the past" in future.json()["error"], future.text

    # the scheduled check alerted the lone charge (its difference existed from the start), once, ids and amounts
    [row] = wait_for("the drift alert", lambda: alerted(st, lone["latest_charge"]), st, 30)
    assert row == {"kind": "charge_without_order", "ref": lone["latest_charge"], "amount_minor": 4321,
                   "currency": "USD", "ids": {"stripe.charge": lone["latest_charge"],
                                              "stripe.payment_intent": lone["id"]}}
    checks = st.container.drift_schedule.checks if st.container.drift_schedule else 0
    wait_for("two more checks", lambda: st.container.drift_schedule and st.container.drift_schedule.checks >= checks + 2,
             st, 30)
    assert len(alerted(st, lone["latest_charge"])) == 1
    metrics = st.container.metrics.render().decode()
    assert 'cb_drift_differences_new_total{kind="charge_without_order"}' in metrics


def test_the_cli_says_what_is_wrong_with_its_options_or_the_systems(st: Stack) -> None:
    bad_date = cli(env_of(st), "reconcile", "drift", "--since", "2026-13-01")
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr
    down = cli(env_of(st, stripe_api_base="http://127.0.0.1:9"), "reconcile", "drift", "--since",
               (datetime.now(UTC) - timedelta(days=1)).date().isoformat())
    assert down.returncode == 1, down.stdout + down.stderr
    assert "unavailable" in down.stderr.lower() or "stripe" in down.stderr.lower()
    table = cli({**env_of(st), "COLUMNS": "200"}, "reconcile", "drift", "--since",
                (datetime.now(UTC) - timedelta(days=1)).date().isoformat(), "--limit", "1")
    assert table.returncode == 0, table.stderr
    assert "charge_without_order" in table.stdout and "differences shown (--limit)" in table.stdout
