"""A return refunded in Clarity becomes one Stripe refund, recorded on the return and booked in ERPNext (issue 12,
points 1 and 4), on SQLite and PostgreSQL.

One sandbox stack (Stripe emulator, Clarity and ERPNext simulators, mail catcher, the bridge in this process)
per database for the whole module; every test places its own orders. The store operator makes returns through
the simulator's admin routes (``/_sandbox/returns``) and moves them to the refund status the status map names
(``Refund Approved``, seeded by the stack as a store would create it); the bridge sees them by polling
``/Returning/SalesReturns``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
APPROVED = "Refund Approved"
_numbers = itertools.count(700)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"returns-{request.param}")) as stack:
        r = stack.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturnStatus/Key/{APPROVED}",
                                      headers=stack.traffic.session)
        assert r.status_code == 200 and r.json()["Name"] == APPROVED, r.text  # seeded as a store would
        yield stack



def intent_of(st: Stack, order: Placed) -> dict[str, Any] | None:
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    return next((p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key), None)


def paid_order(st: Stack, scenario: str = "paid (USD)") -> tuple[Placed, dict[str, Any]]:
    order = st.traffic.place(next(_numbers), BY_NAME[scenario])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    pi = intent_of(st, order)
    assert pi is not None
    return order, pi


def make_return(st: Stack, order: Placed, *, status: str | None = APPROVED, **body: Any) -> dict[str, Any]:
    """A return of the order's lines (``Lines``, default all that is left), as the store operator makes it."""
    r = st.traffic.clarity.post("/_sandbox/returns", json={"SalesOrderID": order.order_id,
                                                           "CustomKey": f"RMA-{next(_numbers)}", **body,
                                                           **({"Status": status} if status else {})})
    assert r.status_code == 200, r.text
    return dict(r.json())


def approve(st: Stack, ret: dict[str, Any]) -> None:
    r = st.traffic.clarity.post(f"/_sandbox/returns/{ret['ID']}/status", json={"Status": APPROVED})
    assert r.status_code == 200, r.text


def get_return(st: Stack, ret: dict[str, Any]) -> dict[str, Any]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/ID/{ret['ID']}", headers=st.traffic.session)
    return dict(got.json())


def refunded_return(st: Stack, ret: dict[str, Any]) -> dict[str, Any]:
    """The return once the bridge recorded its refund (Completed, with the transaction number)."""
    def done() -> dict[str, Any] | None:
        now = get_return(st, ret)
        return now if now.get("StatusKey") == "Completed" and now.get("RefundTransactionID") else None
    return dict(wait_for(f"return {ret['CustomKey']} refunded", done, st))


def refunds_of(st: Stack, pi: dict[str, Any]) -> list[dict[str, Any]]:
    return list(st.traffic.stripe.get("/v1/refunds", params={"payment_intent": pi["id"]}).json()["data"])


def erp_docs(st: Stack, doctype: str, field: str, value: str) -> list[dict[str, Any]]:
    r = st.traffic.erp.get(f"/api/resource/{doctype}", params={
        "filters": f'[["{field}", "=", "{value}"]]', "fields": '["*"]', "limit_page_length": 0})
    return [d for d in r.json()["data"] if d["docstatus"] == 1]


def booked(st: Stack, refund_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (erp_docs(st, "Sales Invoice", "remarks", f"Stripe refund {refund_id}"),
            erp_docs(st, "Payment Entry", "reference_no", refund_id))


def order_of(st: Stack, order: Placed) -> dict[str, Any]:
    got = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=st.traffic.session)
    return dict(got.json())


def dead_letters_of(st: Stack, text: str) -> list[dict[str, Any]]:
    return [e for e in st.container.dead_letters.list(status="open")
            if "clarity.return_refunded" in e["run_id"] and text in e["error_message"]]


def test_a_return_refunded_in_clarity_is_one_stripe_refund_recorded_on_the_return_and_booked(st: Stack) -> None:
    order, pi = paid_order(st)
    ret = make_return(st, order, Lines=[{"Sku": "SKU-TEE", "Quantity": 1}])  # 12.50 of 33.00
    done = refunded_return(st, ret)
    [refund] = refunds_of(st, pi)
    assert refund["amount"] == 1250 and refund["status"] == "succeeded"
    assert refund["metadata"] | {} == {**refund["metadata"], "clarity_return_key": ret["CustomKey"],
                                       "clarity_return_id": str(ret["ID"]), "bridge": "commerce-bridge",
                                       "clarity_order_key": order.key}
    assert done["RefundTransactionID"] == refund["id"] and Decimal(str(done["RefundAmount"])) == Decimal("12.50")
    payments = [p["Slave"] for p in done.get("SalesReturnPayments") or []]
    assert [p["TransactionNumber"] for p in payments] == [refund["id"]]
    wait_for("the credit note and the Pay entry", lambda: all(booked(st, refund["id"])), st)
    notes, pays = booked(st, refund["id"])
    [invoice] = erp_docs(st, "Sales Invoice", "po_no", order.key)
    assert len(notes) == 1 and notes[0]["is_return"] == 1 and notes[0]["return_against"] == invoice["name"]
    assert Decimal(str(notes[0]["grand_total"])) == Decimal("-12.50")
    assert len(pays) == 1 and pays[0]["payment_type"] == "Pay" and Decimal(str(pays[0]["paid_amount"])) == Decimal(
        "12.50")
    wait_for("partially refunded", lambda: order_of(st, order)["StatusKey"] == "Partially Refunded", st)
    # the echo: the refund's own events (refund.created, charge.refunded) came back; nothing is booked twice
    time.sleep(3)
    assert len(order_of(st, order).get("AssociatedSalesReturns") or []) == 1, "no second return (the echo)"
    assert [len(x) for x in booked(st, refund["id"])] == [1, 1] and len(refunds_of(st, pi)) == 1
    assert not dead_letters_of(st, ret["CustomKey"]) and not dead_letters_of(st, refund["id"])


def test_a_partial_return_then_another_pays_back_the_whole_charge(st: Stack) -> None:
    order, pi = paid_order(st)
    first = make_return(st, order, Lines=[{"Sku": "SKU-TEE", "Quantity": 1}])
    refunded_return(st, first)
    second = make_return(st, order, RefundAmount="20.50")  # everything left: a tee and the mug
    refunded_return(st, second)
    refunds = refunds_of(st, pi)
    assert sorted(r["amount"] for r in refunds) == [1250, 2050]
    wait_for("both booked", lambda: all(all(booked(st, r["id"])) for r in refunds), st)
    wait_for("refunded", lambda: order_of(st, order)["StatusKey"] == "Refunded", st)
    notes = erp_docs(st, "Sales Invoice", "is_return", "1")
    mine = [n for n in notes if n["remarks"] in {f"Stripe refund {r['id']}" for r in refunds}]
    assert sorted(Decimal(str(n["grand_total"])) for n in mine) == [Decimal("-20.50"), Decimal("-12.50")]


def test_two_partial_returns_racing_are_decided_one_after_the_other(st: Stack) -> None:
    order, pi = paid_order(st)
    one = make_return(st, order, status=None, Lines=[{"Sku": "SKU-TEE", "Quantity": 1}], RefundAmount="20.00")
    two = make_return(st, order, status=None, Lines=[{"Sku": "SKU-TEE", "Quantity": 1}], RefundAmount="20.00")
    approve(st, one)
    approve(st, two)  # both seen by the same poll: their runs start together
    entry = wait_for("the second one parked", lambda: dead_letters_of(st, "asks for 20.00 USD"), st)[0]
    assert entry["error_code"] == "validation_error" and "only 13.00 USD is left" in entry["error_message"]
    assert "captured 33.00, already refunded 20.00" in entry["error_message"]
    assert "at most 13.00 USD" in entry["suggested_fix"]
    [refund] = refunds_of(st, pi)
    assert refund["amount"] == 2000
    # the first run may still be recording its refund on its return when the second one parks (a loaded machine)
    paid_back = wait_for("the first one recorded", lambda: [
        r for r in (get_return(st, one), get_return(st, two)) if r.get("RefundTransactionID")], st)
    assert [r["RefundTransactionID"] for r in paid_back] == [refund["id"]]
    parked = next(r for r in (one, two) if str(r["ID"]) != refund["metadata"]["clarity_return_id"])
    assert get_return(st, parked)["StatusKey"] == APPROVED  # left for the operator, nothing recorded
    assert parked["CustomKey"] in entry["error_message"]


def test_a_return_larger_than_what_remains_parks_with_the_numbers(st: Stack) -> None:
    order, pi = paid_order(st, "paid (KWD)")  # 12.750 KWD
    ret = make_return(st, order, RefundAmount="13.000")
    entry = wait_for("parked", lambda: dead_letters_of(st, f"Clarity return {ret['CustomKey']} asks for"), st)[0]
    assert "asks for 13.000 KWD but only 12.750 KWD is left (captured 12.750, already refunded 0.000)" in entry[
        "error_message"]
    assert refunds_of(st, pi) == [] and get_return(st, ret)["StatusKey"] == APPROVED


def test_an_uncaptured_order_is_captured_for_the_remainder_instead_of_refunded(st: Stack) -> None:
    order = st.traffic.place(next(_numbers), BY_NAME["manual capture"])  # 39.00, captured when shipped
    def authorised() -> dict[str, Any] | None:
        pi = intent_of(st, order)
        return pi if pi is not None and pi["status"] == "requires_capture" else None

    pi = wait_for("authorised", authorised, st, 90)
    ret = make_return(st, order, Lines=[{"Sku": "SKU-MUG", "Quantity": 1}], RefundAmount="9.75")
    done = refunded_return(st, ret)
    after = st.traffic.stripe.get(f"/v1/payment_intents/{pi['id']}").json()
    assert after["status"] == "succeeded" and after["amount_received"] == 2925  # 39.00 - 9.75
    assert refunds_of(st, pi) == []  # nothing was refunded: the customer was never charged for it
    assert done["RefundTransactionID"] == pi["id"] and Decimal(str(done["RefundAmount"])) == Decimal("9.75")
    # the ERP: a credit note for the part never captured, against the invoice; no Pay entry (no money went back)
    notes = wait_for("the credit note", lambda: erp_docs(st, "Sales Invoice", "remarks",
                                                          f"Clarity return {ret['CustomKey']}"), st)
    [invoice] = erp_docs(st, "Sales Invoice", "po_no", order.key)
    assert len(notes) == 1 and notes[0]["return_against"] == invoice["name"]
    assert Decimal(str(notes[0]["grand_total"])) == Decimal("-9.75") and Decimal(str(invoice["grand_total"])) == 39
    entries = wait_for("the remainder's payment", lambda: erp_docs(st, "Payment Entry", "party", notes[0]["customer"]),
                       st)
    assert [(p["payment_type"], Decimal(str(p["paid_amount"]))) for p in entries] == [("Receive", Decimal("29.25"))]


def test_an_uncaptured_order_returned_whole_is_canceled_and_nothing_is_booked(st: Stack) -> None:
    order = st.traffic.place(next(_numbers), BY_NAME["manual capture"])

    def authorised() -> dict[str, Any] | None:
        pi = intent_of(st, order)
        return pi if pi is not None and pi["status"] == "requires_capture" else None

    pi = wait_for("authorised", authorised, st, 90)
    ret = make_return(st, order)  # every line: 39.00, all of the authorisation
    done = refunded_return(st, ret)
    after = st.traffic.stripe.get(f"/v1/payment_intents/{pi['id']}").json()
    assert after["status"] == "canceled" and after["amount_received"] == 0 and refunds_of(st, pi) == []
    assert done["RefundTransactionID"] == pi["id"] and Decimal(str(done["RefundAmount"])) == Decimal("39.00")
    time.sleep(2)
    assert erp_docs(st, "Sales Invoice", "po_no", order.key) == []  # the order never reached the ERP's books
    assert erp_docs(st, "Sales Invoice", "remarks", f"Clarity return {ret['CustomKey']}") == []


def test_a_clarity_outage_mid_flow_recovers_with_one_refund(st: Stack) -> None:
    order, pi = paid_order(st, "paid (JPY)")
    faults = {"rules": [{"path": "*/Providers/Returning/Actions/ManuallyRefund", "methods": ["POST"], "status": 503,
                         "times": 3}]}
    st.traffic.clarity.put("/_sandbox/faults", json=faults).raise_for_status()
    try:
        ret = make_return(st, order, RefundAmount="500")
        done = refunded_return(st, ret)  # the refund was made, Clarity failed three times, then recorded it
        fired = st.traffic.clarity.get("/_sandbox/faults").json()
    finally:
        st.traffic.clarity.delete("/_sandbox/faults")
    assert fired["rules"][0]["fired"] == 3
    [refund] = refunds_of(st, pi)
    assert refund["amount"] == 500 and done["RefundTransactionID"] == refund["id"]
    wait_for("booked once", lambda: [len(x) for x in booked(st, refund["id"])] == [1, 1], st)
