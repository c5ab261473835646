"""A Stripe payout is reconciled to the cent against what the bridge booked (issue 13, points 2-4 and 8), on SQLite
and PostgreSQL.

One sandbox stack per database for the module (Stripe emulator with its automatic payouts, Clarity and ERPNext
simulators, the bridge in this process); each test pays its own orders, then moves the emulator's clock: after
the payout delay the available balance is paid out (``payout.created``), once it arrives Stripe sends
``payout.paid`` and ``payout.reconciliation_completed``, and the bridge's ``stripe.payout_reconciled`` runs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import SCENARIOS, Placed
from commerce_bridge.testing import FakeAlertSink
from tests.support.stacks import account_rows, journals, stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
_numbers = itertools.count(900)
ALERTS: dict[int, FakeAlertSink] = {}
BANK, FEES, CLEARING = "Stripe Payouts Bank - SB", "Stripe Fees - SB", "Stripe Clearing - SB"
SUSPENSE = "Stripe Reconciliation Suspense - SB"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"payouts-{request.param}")) as stack:
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack


def paid_order(st: Stack, scenario: str = "paid (USD)") -> tuple[Placed, str]:
    order = st.traffic.place(next(_numbers), BY_NAME[scenario])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    pi = next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)
    wait_for(f"{order.key}'s Payment Entry", lambda: payment_entries(st, str(pi["latest_charge"])), st, 60)
    return order, str(pi["latest_charge"])


def payment_entries(st: Stack, reference: str) -> list[dict[str, Any]]:
    r = st.traffic.erp.get("/api/resource/Payment Entry", params={
        "filters": f'[["reference_no", "=", "{reference}"], ["docstatus", "=", 1]]', "limit_page_length": 0})
    return list(r.json()["data"])


def advance(st: Stack, days: int) -> dict[str, Any]:
    r = st.traffic.stripe.post("/_sandbox/clock/advance", json={"days": days})
    assert r.status_code == 200, r.text
    return dict(r.json())


def pay_out(st: Stack) -> str:
    """Move the clock until the balance is paid out and the payout has arrived; the payout's id."""
    created = advance(st, 3)["payouts_created"]
    usd = [p for p in created if st.traffic.stripe.get(f"/v1/payouts/{p}").json()["currency"] == "usd"]
    assert len(usd) == 1, created
    advance(st, 3)
    assert st.traffic.stripe.get(f"/v1/payouts/{usd[0]}").json()["status"] == "paid"
    return usd[0]


def transactions(st: Stack, payout_id: str) -> list[dict[str, Any]]:
    r = st.traffic.stripe.get("/v1/balance_transactions", params={"payout": payout_id, "limit": 100})
    assert r.status_code == 200 and not r.json()["has_more"], r.text
    return list(r.json()["data"])


def rows(entry: dict[str, Any]) -> dict[str, Decimal]:
    """Account -> debit - credit, in the account's currency."""
    return account_rows(entry, in_account_currency=True)


def alerts(st: Stack, kind: str, payout_id: str) -> list[Any]:
    return [a for m in ALERTS[id(st)].messages for a in m.alerts if a.kind == kind and payout_id in a.title]


def reconciled(st: Stack, payout_id: str) -> dict[str, Any]:
    return wait_for(f"{payout_id} reconciled and journaled", lambda: (
        (rec := st.container.reconciliations.get(payout_id)) is not None and rec["journal_entry"] and rec), st, 90)


def test_a_paid_payout_closes_with_one_journal_and_its_proof(st: Stack) -> None:
    charges = [paid_order(st)[1] for _ in range(2)]
    payout_id = pay_out(st)
    rec = reconciled(st, payout_id)
    assert rec["status"] == "closed", rec["exception_rows"]
    assert rec["exceptions"] == 0 and rec["exception_rows"] == []
    txns = transactions(st, payout_id)
    assert {t["source"] for t in txns if t["type"] == "charge"} >= set(charges)
    assert rec["transactions"] == len(txns) and rec["matched"] == len(txns)
    payout = st.traffic.stripe.get(f"/v1/payouts/{payout_id}").json()
    proof = rec["proof"]
    assert proof["payout_amount"] == payout["amount"] == proof["net_sum"]
    assert proof["sum_ok"] and proof["clearing_zero"] and proof["balanced"] and proof["closed"]
    [entry] = journals(st, payout_id)
    assert entry["name"] == rec["journal_entry"]
    fees = sum(t["fee"] for t in txns if t["type"] != "payout")
    got = rows(entry)
    assert got[BANK] == Decimal(payout["amount"]) / 100
    assert got[FEES] == Decimal(fees) / 100
    assert got[CLEARING] == -(Decimal(payout["amount"]) + Decimal(fees)) / 100  # the charges' gross was booked
    assert sum(got.values()) == 0
    # payout.paid and payout.reconciliation_completed both ran; again by hand: nothing new is posted
    again = st.container.reconciler.reconcile(payout_id)
    assert again["status"] == "closed"
    assert st.container.reconciler.post(payout_id)["posted"] is False
    assert [e["name"] for e in journals(st, payout_id)] == [entry["name"]]
    assert not alerts(st, "payout.exceptions", payout_id)


def test_a_charge_the_bridge_never_booked_is_an_exception_on_suspense_with_a_fix(st: Stack) -> None:
    _, booked = paid_order(st)
    stray = st.traffic.stripe.post("/v1/payment_intents", data={
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
        "payment_method_types[]": "card"})
    assert stray.status_code == 200, stray.text
    stray_charge = stray.json()["latest_charge"]
    payout_id = pay_out(st)
    rec = reconciled(st, payout_id)
    assert rec["status"] == "exceptions"
    [exc] = rec["exception_rows"]
    stray_txn = next(t for t in transactions(st, payout_id) if t["source"] == stray_charge)
    assert (exc["kind"], exc["ref"]) == ("charge_without_order", stray_txn["id"])
    assert "Clarity order" in exc["suggested_fix"] and exc["amount_minor"] == 1000
    assert not rec["proof"]["closed"] and rec["proof"]["sum_ok"] and rec["proof"]["balanced"]
    [entry] = journals(st, payout_id)
    got = rows(entry)
    assert got[SUSPENSE] == Decimal("-10.00")  # visible, tied to the exception, never a silent plug
    assert sum(got.values()) == 0
    alert = wait_for("the exceptions alert", lambda: alerts(st, "payout.exceptions", payout_id), st)
    assert "charge_without_order" in alert[0].title
    assert booked  # the booked order's charge matched: the only exception is the stray one


def test_a_failed_payout_reverses_its_bank_line_and_alerts(st: Stack) -> None:
    paid_order(st)
    payout_id = pay_out(st)
    rec = reconciled(st, payout_id)
    amount = Decimal(st.traffic.stripe.get(f"/v1/payouts/{payout_id}").json()["amount"]) / 100
    r = st.traffic.stripe.post(f"/_sandbox/payouts/{payout_id}/fail", json={"failure_code": "account_closed"})
    assert r.status_code == 200, r.text
    [reversal] = wait_for("the reversal", lambda: journals(st, f"{payout_id}:failed"), st, 60)
    assert rows(reversal) == {BANK: -amount, CLEARING: amount}
    wait_for("marked failed", lambda: st.container.reconciliations.get(payout_id)["status"] == "failed", st)
    assert [e["name"] for e in journals(st, payout_id)] == [rec["journal_entry"]]  # the payout's entry stays
    wait_for("the failure alert", lambda: alerts(st, "payout.failed", payout_id), st)


def cli(st: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    s = st.container.settings
    env = {**os.environ, "CB_DATABASE_URL": s.database_url,
           "CB_STRIPE_API_KEY": s.stripe_api_key.get_secret_value() if s.stripe_api_key else "",
           "CB_STRIPE_API_BASE": s.stripe_api_base or "", "CB_ERP_BASE_URL": s.erp_base_url or "",
           "CB_ERP_API_KEY": s.erp_api_key or "",
           "CB_ERP_API_SECRET": s.erp_api_secret.get_secret_value() if s.erp_api_secret else ""}
    return subprocess.run([sys.executable, "-m", "commerce_bridge.entrypoints.cli", "reconcile", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_and_the_api_show_a_reconciliation_and_redo_it_without_posting_twice(st: Stack) -> None:
    paid_order(st)
    payout_id = pay_out(st)
    rec = reconciled(st, payout_id)
    dry = cli(st, "payout", payout_id, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    shown = json.loads(dry.stdout)
    assert shown["status"] == "closed" and shown["posted"] is None
    assert shown["journal_doc"]["cheque_no"] == payout_id and shown["journal"] == rec["journal"]
    again = cli(st, "payout", payout_id, "--json", "--strict")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["posted"] == {"payout_id": payout_id, "journal_entry": rec["journal_entry"],
                                                  "posted": False, "replaced": False}
    assert [e["name"] for e in journals(st, payout_id)] == [rec["journal_entry"]]
    since = datetime.fromtimestamp(time.time() - 86400 * 30, UTC).date().isoformat()
    resumed = cli(st, "payouts", "--since", since, "--json")
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout)
    assert outcome["found"] >= 1 and outcome["skipped"] == outcome["found"] and outcome["failed"] == []
    report = cli(st, "report", "--format", "csv", "--what", "payouts")
    assert report.returncode == 0, report.stderr
    assert any(line.startswith(f"{payout_id},closed,USD,") for line in report.stdout.splitlines())
    token = st.container.settings.admin_tokens[0].get_secret_value()
    api = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/payouts/{payout_id}",
                    headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200, api.text
    body = api.json()["payout"]
    assert (body["status"], body["journal_entry"], body["exception_rows"]) == ("closed", rec["journal_entry"], [])
    as_csv = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/report", headers={"Authorization": f"Bearer {token}"},
                       params={"format": "csv", "what": "payouts"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv"), as_csv.text
    assert as_csv.text == report.stdout  # the CLI and the API print the same report
    as_html = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/report", headers={"Authorization": f"Bearer {token}"},
                        params={"format": "html", "payout_id": payout_id})
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    assert f"<td>{payout_id}</td><td>closed</td>" in as_html.text
    missing = httpx.get(f"{st.urls['bridge']}/api/v1/reconciliation/payouts/po_NotThere",
                        headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and "not been reconciled" in missing.json()["error"]


def test_a_eur_order_settled_in_usd_is_booked_at_stripe_s_rate_and_closes(st: Stack) -> None:
    config = {"settlement_currency": "usd", "fx_rates": {"eur": "1.084350"}}
    assert st.traffic.stripe.post("/_sandbox/config", json=config).status_code == 200
    try:
        _, charge = paid_order(st, "paid (EUR)")
        payout_id = pay_out(st)
    finally:
        st.traffic.stripe.post("/_sandbox/config", json={"settlement_currency": None, "fx_rates": {}})
    rec = reconciled(st, payout_id)
    txn = next(t for t in transactions(st, payout_id) if t["source"] == charge)
    assert txn["currency"] == "usd" and txn["exchange_rate"] == 1.08435
    assert rec["status"] == "closed", rec["exception_rows"]
    assert rec["proof"]["clearing_zero"] and rec["proof"]["sum_ok"]
    [entry] = journals(st, payout_id)
    assert sum(rows(entry).values()) == 0 and rows(entry)[BANK] == Decimal(rec["amount_minor"]) / 100


def test_a_refund_and_a_lost_dispute_after_their_order_s_payout_close_in_the_next_one(st: Stack) -> None:
    _, refunded = paid_order(st)
    _, disputed = paid_order(st)
    first = pay_out(st)
    assert reconciled(st, first)["status"] == "closed"
    pi = st.traffic.stripe.get(f"/v1/charges/{refunded}").json()["payment_intent"]
    refund = st.traffic.stripe.post("/_sandbox/refunds", json={"payment_intent": pi, "amount": 1001})
    assert refund.status_code == 200, refund.text
    dispute = st.traffic.stripe.post(f"/_sandbox/charges/{disputed}/dispute", json={"reason": "fraudulent"})
    assert dispute.status_code == 200, dispute.text
    lost = st.traffic.stripe.post(f"/_sandbox/disputes/{dispute.json()['id']}/resolve", json={"outcome": "lost"})
    assert lost.status_code == 200, lost.text
    wait_for("the refund's Pay entry", lambda: payment_entries(st, refund.json()["id"]), st, 60)
    wait_for("the dispute's journals", lambda: [t for t in st.traffic.stripe.get(
        f"/v1/disputes/{dispute.json()['id']}").json()["balance_transactions"] if journals(st, t["id"])], st, 60)
    for _ in range(3):  # enough new sales that the balance is positive again
        paid_order(st)
    second = pay_out(st)
    rec = reconciled(st, second)
    kinds = {t["type"] for t in transactions(st, second)}
    assert {"refund", "adjustment", "charge", "payout"} <= kinds, kinds  # Stripe books a withdrawal as adjustment
    assert rec["status"] == "closed", rec["exception_rows"]
    assert rec["matched"] == rec["transactions"]
    [entry] = journals(st, second)
    got = rows(entry)
    # the refund's Pay entry and the dispute's journals booked their parts: only fees and the bank are left
    assert set(got) == {BANK, FEES, CLEARING} and sum(got.values()) == 0
