"""Refund states the bridge must handle after the fact (issue 12, point 3), on SQLite and PostgreSQL: a refund the
bridge made for a Clarity return that later fails (its books reversed, the return back in the operator's hands, one
dead-letter entry, one alert, in any order of events), and a refund in ``requires_action`` on each path (one alert).

One sandbox stack (Stripe emulator, Clarity and ERPNext simulators, mail catcher, the bridge in this process) per
database for the whole module, with a recording alert sink; every test places its own orders. Stripe's back office
is the emulator's control API (``/_sandbox/refunds/{id}/fail``, ``/require_action``, ``/pending``); the store
operator makes returns through the Clarity simulator's admin routes. ``clarity.return.record_refund`` gets two
attempts (not five) so that a Clarity outage parks it fast, before the breaker opens.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed, Scenario
from commerce_bridge.testing import FakeAlertSink
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
APPROVED, FAILED, PAID = "Refund Approved", "Refund Failed", "Full Payment Received"
PENDING_REFUND = Scenario("paid, refunds pending", "USD", (("SKU-TEE", 2, "12.50"), ("SKU-MUG", 1, "8.00")),
                          payment_method="pm_card_pendingRefund")
ALERTS: dict[int, FakeAlertSink] = {}  # per stack: what the bridge's alerter sent
_numbers = itertools.count(900)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"refund-states-{request.param}"),
                  retry_policies={"clarity.return.record_refund": {"max_attempts": 2}}) as stack:
        for name in (APPROVED, FAILED):  # the store's own return statuses, made by the stack
            r = stack.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturnStatus/Key/{name}",
                                          headers=stack.traffic.session)
            assert r.status_code == 200 and r.json()["Name"] == name, r.text
        ALERTS[id(stack)] = FakeAlertSink()
        stack.container.alerter.sinks.append(ALERTS[id(stack)])
        yield stack



def paid_order(st: Stack, scenario: Scenario) -> tuple[Placed, dict[str, Any]]:
    order = st.traffic.place(next(_numbers), scenario)
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    pi = next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)
    return order, pi


def make_return(st: Stack, order: Placed, **body: Any) -> dict[str, Any]:
    r = st.traffic.clarity.post("/_sandbox/returns", json={"SalesOrderID": order.order_id, "Status": APPROVED,
                                                           "CustomKey": f"RMA-{next(_numbers)}", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def get_return(st: Stack, ret: dict[str, Any]) -> dict[str, Any]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/ID/{ret['ID']}", headers=st.traffic.session)
    return dict(got.json())


def return_in(st: Stack, ret: dict[str, Any], status: str) -> dict[str, Any]:
    return dict(wait_for(f"return {ret['CustomKey']} {status}",
                         lambda: (lambda now: now if now.get("StatusKey") == status else None)(get_return(st, ret)), st))


def order_of(st: Stack, order: Placed) -> dict[str, Any]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=st.traffic.session)
    return dict(got.json())


def refunds_of(st: Stack, pi: dict[str, Any]) -> list[dict[str, Any]]:
    return list(st.traffic.stripe.get("/v1/refunds", params={"payment_intent": pi["id"]}).json()["data"])


def erp_docs(st: Stack, doctype: str, field: str, value: str, docstatus: int = 1) -> list[dict[str, Any]]:
    r = st.traffic.erp.get(f"/api/resource/{doctype}", params={
        "filters": f'[["{field}", "=", "{value}"]]', "fields": '["*"]', "limit_page_length": 0})
    return [d for d in r.json()["data"] if d["docstatus"] == docstatus]


def booked(st: Stack, refund_id: str, docstatus: int = 1) -> list[int]:
    """How many credit notes and Pay entries of the refund are submitted (``docstatus`` 1) or cancelled (2)."""
    return [len(erp_docs(st, "Sales Invoice", "remarks", f"Stripe refund {refund_id}", docstatus)),
            len(erp_docs(st, "Payment Entry", "reference_no", refund_id, docstatus))]


def dead_letters(st: Stack, workflow: str, text: str) -> list[dict[str, Any]]:
    return [e for e in st.container.dead_letters.list(status="open")
            if workflow in e["run_id"] and text in e["error_message"]]


def alerts(st: Stack, kind: str, **facts: Any) -> list[Any]:
    return [a for m in ALERTS[id(st)].messages for a in m.alerts
            if a.kind == kind and all(a.details.get(k) == v for k, v in facts.items())]


def control(st: Stack, path: str, **body: Any) -> dict[str, Any]:
    r = st.traffic.stripe.post(f"/_sandbox/{path}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def settled(st: Stack, seconds: float = 3.0) -> None:
    """Let the events of the last change arrive and their runs end (the bridge has nothing queued or running); then
    send the alerts the alerter holds back (a second alert of a key within its window), so that they are counted."""
    time.sleep(seconds)
    wait_for("no run left", lambda: not {"queued", "running"} & {
        s for s, n in st.container.runs.counts_by_status().items() if n}, st)
    st.container.alerter.flush()


def test_a_bridge_refund_that_fails_reverses_the_books_and_hands_the_return_back_once(st: Stack) -> None:
    order, pi = paid_order(st, BY_NAME["paid (USD)"])
    ret = make_return(st, order, Lines=[{"Sku": "SKU-TEE", "Quantity": 1}])  # 12.50 of 33.00
    done = return_in(st, ret, "Completed")
    [refund] = refunds_of(st, pi)
    assert done["RefundTransactionID"] == refund["id"]
    wait_for("the credit note and the Pay entry", lambda: booked(st, refund["id"]) == [1, 1], st)
    wait_for("partially refunded", lambda: order_of(st, order)["StatusKey"] == "Partially Refunded", st)

    # Stripe's back office: the card's bank sends the money back (refund.updated, charge.refund.updated, refund.failed)
    control(st, f"refunds/{refund['id']}/fail", failure_reason="expired_or_canceled_card")
    back = return_in(st, ret, FAILED)
    wait_for("the books reversed", lambda: booked(st, refund["id"]) == [0, 0] and booked(st, refund["id"], 2) == [1, 1],
             st)
    wait_for("paid again", lambda: order_of(st, order)["StatusKey"] == PAID, st)
    [entry] = wait_for("the dead-letter entry", lambda: dead_letters(st, "stripe.refund_recorded", refund["id"]), st)
    assert "(expired_or_canceled_card)" in entry["error_message"] and ret["CustomKey"] in entry["error_message"]
    assert entry["error_code"] == "upstream_rejected" and "pay the customer back another way" in entry["suggested_fix"]
    assert [p["Slave"]["TransactionNumber"] for p in back.get("SalesReturnPayments") or []] == [refund["id"]]
    notes = [n for n in order_of(st, order).get("Notes") or [] if refund["id"] in str(n.get("CustomKey"))]
    assert len(notes) == 1 and "expired_or_canceled_card" in notes[0]["Note1"] and FAILED in notes[0]["Note1"]
    wait_for("its alert", lambda: alerts(st, "dlq.new", dlq_id=entry["id"]), st, 70)

    # the same failure told again, and later events of the charge (a new refund of another return): still once
    for event in st.traffic.stripe.get("/v1/events", params={"limit": 100}).json()["data"]:
        if event["data"]["object"].get("id") == refund["id"] and event["type"] != "refund.created":
            control(st, f"events/{event['id']}/resend")
    other = make_return(st, order, Lines=[{"Sku": "SKU-MUG", "Quantity": 1}])  # 8.00
    return_in(st, other, "Completed")
    settled(st)
    assert len(dead_letters(st, "stripe.refund_recorded", refund["id"])) == 1
    assert len(alerts(st, "dlq.new", dlq_id=entry["id"])) == 1
    assert len([n for n in order_of(st, order).get("Notes") or [] if refund["id"] in str(n.get("CustomKey"))]) == 1
    assert booked(st, refund["id"]) == [0, 0] and get_return(st, ret)["StatusKey"] == FAILED
    assert len(order_of(st, order).get("AssociatedSalesReturns") or []) == 2, "no return made for the echo"

    # the operator moves the return back to the refund status: refunded again, a new refund, booked once
    r = st.traffic.clarity.post(f"/_sandbox/returns/{ret['ID']}/status", json={"Status": APPROVED})
    assert r.status_code == 200, r.text
    again = wait_for("a second refund", lambda: [x for x in refunds_of(st, pi) if x["id"] != refund["id"]
                                                 and x["metadata"].get("clarity_return_id") == str(ret["ID"])], st)
    [second] = again
    assert second["amount"] == 1250 and second["status"] == "succeeded"
    wait_for("recorded", lambda: get_return(st, ret).get("RefundTransactionID") == second["id"], st)
    wait_for("booked", lambda: booked(st, second["id"]) == [1, 1], st)
    assert get_return(st, ret)["StatusKey"] == "Completed"


def test_a_bridge_refund_that_starts_pending_gets_its_pay_entry_once_it_succeeds(st: Stack) -> None:
    order, pi = paid_order(st, PENDING_REFUND)
    ret = make_return(st, order, Lines=[{"Sku": "SKU-MUG", "Quantity": 1}])  # 8.00 of 33.00
    [refund] = wait_for("the refund", lambda: refunds_of(st, pi), st)
    assert refund["status"] == "pending" and refund["amount"] == 800
    wait_for("the credit note, no Pay entry yet", lambda: booked(st, refund["id"]) == [1, 0], st)
    settled(st)
    assert booked(st, refund["id"]) == [1, 0]

    control(st, f"refunds/{refund['id']}/succeed")  # the card network confirms it (refund.updated, ...)
    wait_for("the Pay entry", lambda: booked(st, refund["id"]) == [1, 1], st)
    settled(st)
    assert booked(st, refund["id"]) == [1, 1]
    assert get_return(st, ret).get("RefundTransactionID") == refund["id"]  # recorded on the store's return
    assert len(order_of(st, order).get("AssociatedSalesReturns") or []) == 1, "no return made for the echo"
    assert not dead_letters(st, "stripe.refund_recorded", refund["id"])


def test_a_bridge_refund_that_fails_before_the_return_recorded_it_is_never_recorded(st: Stack) -> None:
    order, pi = paid_order(st, BY_NAME["paid (JPY)"])
    faults = {"rules": [{"path": "*/Providers/Returning/Actions/ManuallyRefund", "methods": ["POST"], "status": 503,
                         "times": 1000}]}
    st.traffic.clarity.put("/_sandbox/faults", json=faults).raise_for_status()
    try:
        ret = make_return(st, order, RefundAmount="500")
        [refund] = wait_for("the refund", lambda: refunds_of(st, pi), st)
        [parked] = wait_for("the record step parked", lambda: [e for e in dead_letters(
            st, "clarity.return_refunded", "") if e["step_id"] == "record"], st)
        control(st, f"refunds/{refund['id']}/fail", failure_reason="declined")
        return_in(st, ret, FAILED)
        wait_for("the dead-letter entry", lambda: dead_letters(st, "stripe.refund_recorded", refund["id"]), st)
    finally:
        st.traffic.clarity.delete("/_sandbox/faults")
    st.container.admin.replay(parked["id"])  # the return path goes on after the refund failed
    settled(st)
    now = get_return(st, ret)
    assert now["StatusKey"] == FAILED and not now.get("SalesReturnPayments") and not now.get("RefundTransactionID")
    assert booked(st, refund["id"]) == [0, 0] and order_of(st, order)["StatusKey"] == PAID
    assert len(dead_letters(st, "stripe.refund_recorded", refund["id"])) == 1
    assert not [e for e in dead_letters(st, "clarity.return_refunded", "") if ret["CustomKey"] in str(e)]


def test_a_refund_made_in_stripe_that_requires_action_is_reported_once(st: Stack) -> None:
    order, pi = paid_order(st, BY_NAME["paid (EUR)"])
    refund = control(st, "refunds", payment_intent=pi["id"], amount=1000, status="pending")
    control(st, f"refunds/{refund['id']}/require_action")
    [alert] = wait_for("the alert", lambda: alerts(st, "refund.requires_action", refund=refund["id"]), st)
    assert alert.details["order_key"] == order.key and alert.details["amount_minor"] == 1000
    assert alert.details["currency"] == "EUR" and "answer Stripe's e-mail" in alert.details["what_to_do"]
    assert "@" not in alert.title + str(alert.details), "no personal data in the alert"
    assert refund["id"] in alert.title and order.key in alert.title and "10.00 EUR" in alert.title
    # noted on the order where pending is: its Pending return, and a note
    wait_for("the note", lambda: [n for n in order_of(st, order).get("Notes") or []
                                  if n.get("CustomKey") == f"stripe-refund:{refund['id']}:requires_action"], st)
    wait_for("its Pending return", lambda: len(order_of(st, order).get("AssociatedSalesReturns") or []) == 1, st)
    # back to pending, requires action again, then it succeeds: still one alert
    control(st, f"refunds/{refund['id']}/pending")
    control(st, f"refunds/{refund['id']}/require_action")
    control(st, f"refunds/{refund['id']}/succeed")
    settled(st)
    assert len(alerts(st, "refund.requires_action", refund=refund["id"])) == 1


def test_a_bridge_refund_of_a_return_that_requires_action_is_reported_once(st: Stack) -> None:
    order, pi = paid_order(st, PENDING_REFUND)  # the card's refunds start pending
    ret = make_return(st, order, Lines=[{"Sku": "SKU-MUG", "Quantity": 1}])  # 8.00
    [refund] = wait_for("the refund", lambda: refunds_of(st, pi), st)
    assert refund["status"] == "pending" and refund["metadata"]["bridge"] == "commerce-bridge"
    return_in(st, ret, "Completed")
    control(st, f"refunds/{refund['id']}/require_action")
    [alert] = wait_for("the alert", lambda: alerts(st, "refund.requires_action", refund=refund["id"]), st)
    assert alert.details["clarity_return_key"] == ret["CustomKey"] and alert.details["order_key"] == order.key
    assert alert.details["amount_minor"] == 800 and "@" not in alert.title + str(alert.details)
    control(st, f"refunds/{refund['id']}/pending")
    control(st, f"refunds/{refund['id']}/require_action")
    settled(st)
    assert len(alerts(st, "refund.requires_action", refund=refund["id"])) == 1
    assert len(order_of(st, order).get("AssociatedSalesReturns") or []) == 1, "no second return (the echo)"
    assert Decimal(str(get_return(st, ret)["RefundAmount"])) == Decimal("8.00")
    assert booked(st, refund["id"]) == [1, 0]  # pending: a credit note, no Pay entry yet
    # the merchant cancels it in Stripe (only a refund in requires_action can be): reversed like a failure
    r = st.traffic.stripe.post(f"/v1/refunds/{refund['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    return_in(st, ret, FAILED)
    [entry] = wait_for("the dead-letter entry", lambda: dead_letters(st, "stripe.refund_recorded", refund["id"]), st)
    assert f"Stripe refund {refund['id']} canceled" in entry["error_message"]
    assert f"move return {ret['CustomKey']} back to {APPROVED}" in entry["suggested_fix"]
    wait_for("the credit note cancelled", lambda: booked(st, refund["id"]) == [0, 0], st)
    wait_for("paid again", lambda: order_of(st, order)["StatusKey"] == PAID, st)
