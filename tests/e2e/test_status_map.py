"""A custom status map (CB_STATUS_MAP) end to end: Clarity shows the map's statuses, and the trigger
filters follow it, against the sandbox peers on SQLite and PostgreSQL (issue 4, point 8).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, Scenario
from tests.e2e.test_order_to_cash import BY_NAME, erp_count, intents_for, make_stack, runs_by_workflow

pytestmark = pytest.mark.slow
__all__ = ["make_stack"]  # the fixture (SQLite, and PostgreSQL when CB_TEST_DATABASE_URL is set)

PAID = "Paid by Card"
DECLINED = "Payment Declined"
CAPTURE_AT = "Ready for Pickup"
STATUS_MAP = {
    "stripe_events_to_clarity": {"payment_intent.succeeded": PAID, "payment_intent.payment_failed": DECLINED,
                                 "payment_intent.canceled": "Void"},
    "clarity_payment_actions": {CAPTURE_AT: "capture"},
}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def clarity_order(st: Stack, order_id: int | None) -> dict[str, Any]:
    r = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order_id}", headers=st.traffic.session)
    assert r.status_code == 200, r.text
    return dict(r.json())


def clarity_action(st: Stack, action: str, order_id: int | None) -> None:
    r = st.traffic.clarity.patch(f"{CLARITY_API}/Ordering/SalesOrder/{action}/{order_id}", headers=st.traffic.session)
    assert r.status_code == 200, r.text


def create_status(st: Stack, name: str) -> None:
    """The install's own sales-order status (CEF installs add and rename statuses)."""
    r = st.traffic.clarity.post(f"{CLARITY_API}/Ordering/SalesOrderStatus/Create", headers=st.traffic.session,
                                json={"CustomKey": name, "Name": name, "DisplayName": name, "SortOrder": 25})
    assert r.status_code == 200, r.text


def dispatched_change(st: Stack, order_id: int | None, status: str) -> dict[str, Any] | None:
    """The polled Clarity change that moved the order to ``status``, once dispatched (with its runs)."""
    for row in st.container.inbox.list(source="clarity", limit=500):
        stored = st.container.inbox.get("clarity", row["event_id"])
        data = json.loads(stored.body).get("data", {}) if stored is not None else {}
        if data.get("ID") == order_id and data.get("StatusKey") == status and row["dispatched_at"]:
            return row
    return None


def test_clarity_shows_the_maps_statuses_and_captures_at_the_maps_status(make_stack: Callable[..., Stack]) -> None:
    st = make_stack(status_map=STATUS_MAP, long_wait_s=0.5)
    for name in (PAID, DECLINED):
        create_status(st, name)
    paid = st.traffic.place(1, BY_NAME["paid (USD)"])
    declined = st.traffic.place(2, BY_NAME["declined"])
    manual = st.traffic.place(3, Scenario("manual capture", "USD", (("SKU-MUG", 1, "9.00"),), capture="manual",
                                          expect_paid=False))

    def settled() -> bool:
        st.traffic.refresh([paid, declined])
        return paid.clarity_status == PAID and bool(paid.erp_payment) and declined.clarity_status == DECLINED

    wait_for("the paid order to show the paid status and the declined one the hold status", settled)
    assert float(clarity_order(st, paid.order_id).get("BalanceDue") or 0) == 0  # CEF leaves zero out
    assert erp_count(st, "Sales Order", "po_no", paid.key) == 1
    assert intents_for(st, declined.key)[0]["status"] == "requires_payment_method"

    # the warehouse ships the manual-capture order: "Shipped" is not the map's capture status any more
    wait_for("the authorisation", lambda: intents_for(st, manual.key)[0]["status"] == "requires_capture")
    clarity_action(st, "Ship", manual.order_id)
    shipped: dict[str, Any] | None = None

    def shipped_seen() -> bool:
        nonlocal shipped
        shipped = dispatched_change(st, manual.order_id, "Shipped")
        return shipped is not None

    wait_for("the Shipped change to be polled and dispatched", shipped_seen)
    assert shipped is not None
    assert "clarity.order_shipped" not in {r["workflow"] for r in shipped["runs"]}
    assert intents_for(st, manual.key)[0]["status"] == "requires_capture"

    # the map's capture status starts clarity.order_shipped, which captures; Clarity then shows the paid status
    clarity_action(st, "ReadyForPickup", manual.order_id)
    wait_for("the capture and the paid status", lambda: intents_for(st, manual.key)[0]["status"] == "succeeded"
             and clarity_order(st, manual.order_id)["StatusKey"] == PAID)

    runs = runs_by_workflow(st)
    assert runs["clarity.order_shipped"] == 1
    assert runs["clarity.order_voided"] == 0
    assert runs["stripe.payment_succeeded"] == 2
    assert st.container.dead_letters.count_open() == 0
    assert st.container.engine is not None
    assert st.container.engine.workflow_vars["stripe.payment_succeeded"] == {"paid_status": PAID, "invoice_on": "paid"}
