"""Disputes and early fraud warnings reach Clarity, ERPNext and operations (issue 12, points 5 and 7), on SQLite
and PostgreSQL.

One sandbox stack (Stripe emulator, Clarity and ERPNext simulators, mail catcher, the bridge in this process)
per database for the whole module, started with ``CB_EARLY_FRAUD_REFUND=true``; every test places its own
orders. The store has the dispute statuses of the status map (the stack creates them, as an operator would).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commerce_bridge.domain.signature import sign
from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed
from commerce_bridge.testing import FakeAlertSink
from tests.support.stacks import account_rows, journals, stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
_numbers = itertools.count(700)
ALERTS: dict[int, FakeAlertSink] = {}  # per stack: what the bridge's alerter sent
PAID = "Full Payment Received"
EFW = "stripe.early_fraud_warning"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"disputes-{request.param}"),
                  early_fraud_refund=True) as stack:
        for name in ("Disputed", "Chargeback"):  # the store's own statuses, made by the stack
            r = stack.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrderStatus/Key/{name}",
                                          headers=stack.traffic.session)
            assert r.status_code == 200 and r.json()["Name"] == name, r.text
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack



def paid_order(st: Stack, scenario: str = "paid (USD)") -> tuple[Placed, str]:
    """A paid order and its charge id."""
    order = st.traffic.place(next(_numbers), BY_NAME[scenario])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    pi = next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)
    return order, str(pi["latest_charge"])


def open_dispute(st: Stack, charge_id: str, **body: Any) -> dict[str, Any]:
    r = st.traffic.stripe.post(f"/_sandbox/charges/{charge_id}/dispute", json={"reason": "fraudulent", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def resolve(st: Stack, dispute_id: str, outcome: str) -> None:
    r = st.traffic.stripe.post(f"/_sandbox/disputes/{dispute_id}/resolve", json={"outcome": outcome})
    assert r.status_code == 200, r.text


def order_doc(st: Stack, order: Placed) -> dict[str, Any]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=st.traffic.session)
    return dict(got.json())


def status(st: Stack, order: Placed) -> str:
    return str(order_doc(st, order)["StatusKey"])


def notes(st: Stack, order: Placed) -> dict[str, str]:
    return {n["CustomKey"]: n["Note1"] for n in order_doc(st, order).get("Notes") or []}


def alerts(st: Stack, kind: str, key: str, field: str) -> list[Any]:
    return [a for m in ALERTS[id(st)].messages for a in m.alerts if a.kind == kind and a.details.get(field) == key]


def post_copy(st: Stack, object_id: str, type_: str, new_id: str) -> None:
    """Stripe's event about ``object_id`` again as a second Event object (a new id, so a run of its own), signed and
    posted to the bridge as Stripe would: a later run for the same object must change nothing."""
    events = st.traffic.stripe.get("/v1/events", params={"limit": 100, "type": type_}).json()["data"]
    event = next(e for e in events if e["data"]["object"].get("id") == object_id)
    body = json.dumps({**event, "id": new_id}).encode()
    secret = st.container.settings.stripe_webhook_secrets[0].get_secret_value()
    r = httpx.post(f"{st.urls['bridge']}/webhooks/stripe", content=body, headers={
        "Stripe-Signature": sign(body, secret, int(time.time())), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def settled(st: Stack) -> None:
    """Let the events already sent be processed (deliveries drained, then a moment for the runs)."""
    st.traffic.stripe.post("/_sandbox/webhooks/drain", json={"timeout": 10})
    time.sleep(2.5)


def test_a_chargeback_marks_the_order_notes_it_alerts_and_books_the_withdrawal(st: Stack) -> None:
    order, charge = paid_order(st)
    dispute = open_dispute(st, charge)
    [txn] = dispute["balance_transactions"]
    wait_for("the order disputed", lambda: status(st, order) == "Disputed" and journals(st, txn["id"]), st)
    note = wait_for("the note", lambda: notes(st, order).get(f"{dispute['id']}:opened"), st)
    assert "fraudulent" in note and "33.00 USD" in note and "evidence due" in note
    [entry] = journals(st, txn["id"])
    assert account_rows(entry) == {"Disputed Funds - SB": Decimal("33.00"), "Stripe Fees - SB": Decimal("15.00"),
                           "Stripe Clearing - SB": Decimal("-48.00")}
    assert order.key in entry["user_remark"]
    [alert] = wait_for("the alert", lambda: alerts(st, "dispute.created", dispute["id"], "dispute"), st)
    assert alert.details["order_key"] == order.key and alert.details["amount_minor"] == 3300
    assert "@" not in alert.title + str(alert.details), "no personal data in the alert"


def test_a_won_dispute_gives_the_money_and_the_earlier_status_back(st: Stack) -> None:
    order, charge = paid_order(st)
    dispute = open_dispute(st, charge)
    wait_for("the order disputed", lambda: status(st, order) == "Disputed", st)
    resolve(st, dispute["id"], "won")
    reinstated = st.traffic.stripe.get(f"/v1/disputes/{dispute['id']}").json()["balance_transactions"][1]
    wait_for("the status back", lambda: status(st, order) == PAID and journals(st, reinstated["id"]), st)
    assert account_rows(journals(st, reinstated["id"])[0]) == {"Disputed Funds - SB": Decimal("-33.00"),
                                                        "Stripe Clearing - SB": Decimal("33.00")}
    assert journals(st, f"{dispute['id']}:chargeback") == []
    wait_for("the won note", lambda: f"{dispute['id']}:won" in notes(st, order), st)


def test_a_lost_dispute_in_a_three_decimal_currency_becomes_an_exact_chargeback(st: Stack) -> None:
    order, charge = paid_order(st, "paid (KWD)")
    dispute = open_dispute(st, charge)
    [txn] = dispute["balance_transactions"]
    wait_for("the order disputed", lambda: status(st, order) == "Disputed", st)
    resolve(st, dispute["id"], "lost")
    lost = wait_for("the chargeback", lambda: status(st, order) == "Chargeback" and journals(
        st, f"{dispute['id']}:chargeback"), st)
    assert account_rows(lost[0]) == {"Chargebacks - SB": Decimal("12.75"), "Disputed Funds - SB": Decimal("-12.75")}
    assert account_rows(journals(st, txn["id"])[0]) == {"Disputed Funds - SB": Decimal("12.75"),
                                                 "Stripe Fees - SB": Decimal("1.50"),
                                                 "Stripe Clearing - SB": Decimal("-14.25")}
    wait_for("the lost alert", lambda: alerts(st, "dispute.lost", dispute["id"], "dispute"), st)
    assert f"{dispute['id']}:lost" in wait_for("the lost note", lambda: notes(st, order), st)


def test_an_inquiry_moves_no_money_and_closes_back_to_the_earlier_status(st: Stack) -> None:
    order, charge = paid_order(st, "paid (EUR)")
    dispute = open_dispute(st, charge, inquiry=True, reason="product_not_received")
    wait_for("the order disputed", lambda: status(st, order) == "Disputed", st)
    resolve(st, dispute["id"], "warning_closed")
    wait_for("the status back", lambda: status(st, order) == PAID and f"{dispute['id']}:warning_closed" in notes(
        st, order), st)
    r = st.traffic.erp.get("/api/resource/Journal Entry", params={
        "filters": f'[["user_remark", "like", "%{dispute["id"]}%"]]', "limit_page_length": 0})
    assert r.json()["data"] == []


def test_duplicated_and_reordered_dispute_events_book_everything_once(st: Stack) -> None:
    order, charge = paid_order(st, "paid (JPY)")
    st.traffic.stripe.post("/_sandbox/webhooks/options",
                           json={"shuffle": True, "shuffle_window_ms": 400, "duplicate_probability": 1.0, "seed": 7})
    try:
        dispute = open_dispute(st, charge, reason="product_not_received")
        resolve(st, dispute["id"], "won")
        # the dispute's first events again, after it closed (as Stripe may redeliver them)
        events = st.traffic.stripe.get("/v1/events", params={"limit": 50}).json()["data"]
        mine = [e for e in events if e["data"]["object"].get("id") == dispute["id"]
                and e["type"] in ("charge.dispute.created", "charge.dispute.funds_withdrawn")]
        for event in mine:
            st.traffic.stripe.post(f"/_sandbox/events/{event['id']}/resend").raise_for_status()
        post_copy(st, dispute["id"], "charge.dispute.created", f"evt_copy_{dispute['id']}")  # a run of its own
        settled(st)
    finally:
        st.traffic.stripe.post("/_sandbox/webhooks/options", json={"shuffle": False, "duplicate_probability": 0.0})
    txns = st.traffic.stripe.get(f"/v1/disputes/{dispute['id']}").json()["balance_transactions"]
    wait_for("both journals", lambda: all(journals(st, t["id"]) for t in txns), st)
    settled(st)
    assert [len(journals(st, t["id"])) for t in txns] == [1, 1]
    assert account_rows(journals(st, txns[0]["id"])[0])["Disputed Funds - SB"] == Decimal("1500")
    assert journals(st, f"{dispute['id']}:chargeback") == []
    assert status(st, order) == PAID
    assert len(alerts(st, "dispute.created", dispute["id"], "dispute")) == 1
    assert set(notes(st, order)) <= {f"{dispute['id']}:opened", f"{dispute['id']}:won"}
    assert not [e for e in st.container.dead_letters.list() if dispute["id"] in e["run_id"]]


def _refunds(st: Stack, charge: str) -> list[dict[str, Any]]:
    return list(st.traffic.stripe.get("/v1/refunds", params={"charge": charge}).json()["data"])


def _booked(st: Stack, refund_id: str) -> tuple[int, int]:
    """The refund's credit notes and Pay entries in the ERP that are not cancelled."""
    counts = []
    for doctype, field in (("Sales Invoice", "remarks"), ("Payment Entry", "reference_no")):
        value = f"Stripe refund {refund_id}" if field == "remarks" else refund_id
        r = st.traffic.erp.get(f"/api/resource/{doctype}", params={
            "filters": f'[["{field}", "=", "{value}"], ["docstatus", "=", 1]]', "limit_page_length": 0})
        counts.append(len(r.json()["data"]))
    return counts[0], counts[1]


def test_an_early_fraud_warning_refunds_an_unshipped_order_booked_once(st: Stack) -> None:
    order, charge = paid_order(st)
    r = st.traffic.stripe.post(f"/_sandbox/charges/{charge}/early_fraud_warning",
                               json={"fraud_type": "made_with_stolen_card"})
    warning = r.json()
    [refund] = wait_for("the refund", lambda: _refunds(st, charge), st)
    assert refund["amount"] == 3300 and refund["reason"] == "fraudulent"
    assert refund["metadata"].get("early_fraud_warning") == warning["id"] and "bridge" not in refund["metadata"]
    wait_for("refunded in Clarity and the ERP", lambda: status(st, order) == "Refunded" and _booked(
        st, refund["id"]) == (1, 1), st)
    post_copy(st, warning["id"], "radar.early_fraud_warning.created", f"evt_copy_{warning['id']}")  # a second run
    settled(st)
    assert len(_refunds(st, charge)) == 1 and _booked(st, refund["id"]) == (1, 1)
    got = st.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/Key/{refund['id']}", headers=st.traffic.session)
    assert got.status_code == 200 and Decimal(str(got.json()["RefundAmount"])) == Decimal("33.00")
    [alert] = alerts(st, "early_fraud_warning.created", warning["id"], "warning")
    assert alert.details["order_key"] == order.key and "@" not in alert.title + str(alert.details)


def test_an_early_fraud_warning_only_alerts_when_refunds_are_off(st: Stack) -> None:
    order, charge = paid_order(st)
    pinned = st.container.engine.workflow_vars.setdefault(EFW, {})  # CB_EARLY_FRAUD_REFUND=false, for new runs
    pinned["refund_unshipped"] = False
    try:
        warning = st.traffic.stripe.post(f"/_sandbox/charges/{charge}/early_fraud_warning", json={}).json()
        wait_for("the alert", lambda: alerts(st, "early_fraud_warning.created", warning["id"], "warning"), st)
        settled(st)
    finally:
        pinned["refund_unshipped"] = True
    assert _refunds(st, charge) == [] and status(st, order) == PAID
