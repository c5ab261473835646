"""The Clarity simulator's sales returns for refunds, through httpx: operator-made returns, polling with
``ModifiedSince`` and paging, ManuallyRefund with SalesReturnPayments, AddPayment, the order's
AssociatedSalesReturns and refund statuses on the order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from typing import Any

import httpx
import pytest
from peer_fixtures import CLARITY_BASE

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer

ACTIONS = "/Providers/Returning/Actions"
_seq = count(1)


@pytest.fixture(scope="module")
def clarity() -> Iterator[PeerServer]:
    with PeerServer(build_clarity()) as server:
        yield server


@pytest.fixture(scope="module")
def api(clarity: PeerServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=clarity.url + CLARITY_BASE, timeout=10) as client:
        login = client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        assert login.status_code == 200, login.text
        yield client


def shipped_order(api: httpx.Client) -> tuple[int, str]:
    key = f"WEB-{next(_seq)}"
    body = {"CustomKey": key, "PaymentTransactionID": f"ch_{key}", "SalesItems": [
        {"Sku": "MUG", "Quantity": 2, "UnitCorePrice": "12.50"},
        {"Sku": "CAP", "Quantity": 1, "UnitCorePrice": "20.00", "UnitSoldPrice": "18.00"}]}  # fmt: skip
    created = api.post("/Ordering/SalesOrder/Create", json=body).json()
    assert created["ActionSucceeded"], created
    api.patch(f"/Ordering/SalesOrder/Ship/{created['Result']}")
    return int(created["Result"]), key


def operator(clarity: PeerServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{clarity.url}/_sandbox/{path}", json=body, timeout=10)


def get_return(api: httpx.Client, return_id: int) -> dict[str, Any]:
    response = api.get(f"/Returning/SalesReturn/ID/{return_id}")
    assert response.status_code == 200, response.text
    return response.json(parse_float=Decimal)  # type: ignore[no-any-return]


def test_operator_return_copies_order_lines_and_caps_quantities(
    api: httpx.Client, clarity: PeerServer
) -> None:
    order_id, key = shipped_order(api)
    made = operator(clarity, "returns", {"SalesOrderKey": key, "CustomKey": f"RMA-{key}",
                                         "Lines": [{"Sku": "MUG", "Quantity": 1}]})  # fmt: skip
    assert made.status_code == 200, made.text
    rma = get_return(api, made.json()["ID"])
    assert rma["StatusKey"] == "Pending" and rma["AssociatedSalesOrders"][0]["SlaveID"] == order_id
    assert [(i["Sku"], i["Quantity"]) for i in rma["SalesItems"]] == [("MUG", Decimal(1))]
    assert rma["RefundAmount"] == Decimal("12.5000") and rma["Totals"]["Total"] == Decimal("12.5000")
    too_many = operator(
        clarity, "returns", {"SalesOrderID": order_id, "Lines": [{"Sku": "MUG", "Quantity": 2}]}
    )
    assert too_many.status_code == 400 and "1 left to return" in too_many.json()["error"]
    unknown = operator(clarity, "returns", {"SalesOrderID": order_id, "Lines": [{"Sku": "HAT"}]})
    assert unknown.status_code == 400
    rest = operator(clarity, "returns", {"SalesOrderID": order_id, "Status": "Confirmed"}).json(
        parse_float=Decimal
    )
    assert rest["StatusKey"] == "Confirmed" and rest["StateKey"] == "WORK"
    order = api.get(f"/Ordering/SalesOrder/ID/{order_id}").json()
    assert [r["SlaveID"] for r in order["AssociatedSalesReturns"]] == [rma["ID"], rest["ID"]]
    assert rest["RefundAmount"] == Decimal("30.5000")  # what was left: 1 MUG at 12.50 + 1 CAP sold at 18.00


def test_returns_are_polled_with_modified_since_paging_and_status_filters(
    api: httpx.Client, clarity: PeerServer
) -> None:
    order_id, _ = shipped_order(api)
    ids = [operator(clarity, "returns", {"SalesOrderID": order_id, "Lines": [{"Sku": sku, "Quantity": 1}]}).json()["ID"]
           for sku in ("MUG", "MUG", "CAP")]  # fmt: skip
    cursor = get_return(api, ids[-1])["UpdatedDate"]
    time.sleep(0.01)
    moved = operator(clarity, f"returns/{ids[0]}/status", {"Status": "Payment Sent"})
    assert moved.status_code == 200 and moved.json()["StatusKey"] == "Payment Sent"
    changed = api.get("/Returning/SalesReturns", params={"ModifiedSince": cursor}).json()
    assert ids[0] in [r["ID"] for r in changed["Results"]] and ids[1] not in [
        r["ID"] for r in changed["Results"]
    ]
    by_status = api.get("/Returning/SalesReturns", params={"StatusKey": "Payment Sent"}).json()
    assert [r["ID"] for r in by_status["Results"]] == [ids[0]]
    page = api.get("/Returning/SalesReturns", params={"Paging": '{"Size":2,"StartIndex":1}'}).json()
    assert len(page["Results"]) == 2 and page["CurrentPage"] == 1 and page["TotalCount"] >= 3
    assert "SalesItems" not in page["Results"][0]  # the lite projection
    missing = operator(clarity, "returns/999999/status", {"Status": "Confirmed"})
    assert missing.status_code == 404


def test_manually_refund_records_the_stripe_refund_payment_and_completes(
    api: httpx.Client, clarity: PeerServer
) -> None:
    order_id, _ = shipped_order(api)
    rma = operator(
        clarity, "returns", {"SalesOrderID": order_id, "Lines": [{"Sku": "CAP"}], "Status": "Confirmed"}
    )
    return_id = rma.json()["ID"]
    refused = api.patch(f"{ACTIONS}/Refund/{return_id}").json()
    assert refused["ActionSucceeded"] is False and "does not support Refunds" in refused["Messages"][0]
    body = {"ID": return_id, "SalesReturnPayments": [{"Slave": {
        "Amount": "18.00", "TransactionNumber": "re_3Q1", "PaymentMethodKey": "Credit Card",
        "StatusKey": "Payment Received"}}]}  # fmt: skip
    assert api.post(f"{ACTIONS}/ManuallyRefund", json=body).json() == {"ActionSucceeded": True}
    done = get_return(api, return_id)
    assert (done["StatusKey"], done["StateKey"]) == ("Completed", "HISTORY")
    assert done["RefundTransactionID"] == "re_3Q1" and done["RefundAmount"] == Decimal("18.0000")
    payment = done["SalesReturnPayments"][0]["Slave"]
    assert payment["TransactionNumber"] == "re_3Q1" and payment["Amount"] == Decimal("18.0000")
    negative = api.post(f"{ACTIONS}/ManuallyRefund", json={"ID": return_id, "RefundAmount": "-1"})
    assert negative.status_code == 400
    added = api.patch(f"{ACTIONS}/AddPayment", json={"ID": return_id, "Payment": {"Amount": "1.00",
                                                                                   "TransactionNumber": "re_3Q2"}})  # fmt: skip
    assert added.json() == {"ActionSucceeded": True}
    again = get_return(api, return_id)
    assert [p["Slave"]["TransactionNumber"] for p in again["SalesReturnPayments"]] == ["re_3Q1", "re_3Q2"]
    assert again["StatusKey"] == "Completed" and again["UpdatedDate"] >= done["UpdatedDate"]


def test_order_can_be_marked_partially_refunded_then_refunded(api: httpx.Client) -> None:
    order_id, _ = shipped_order(api)
    for status in ("Partially Refunded", "Refunded"):
        updated = api.put("/Ordering/SalesOrder/Update", json={"ID": order_id, "StatusName": status}).json()
        assert updated["ActionSucceeded"] is True
        assert api.get(f"/Ordering/SalesOrder/ID/{order_id}").json()["StatusKey"] == status  # auto-created
    listed = api.get("/Ordering/SalesOrderStatuses").json()["Results"]
    assert {"Partially Refunded", "Refunded"} <= {s["Name"] for s in listed}
