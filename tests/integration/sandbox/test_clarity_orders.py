"""The Clarity simulator's sales-order API through a real httpx client: CRUD, search, paging, actions."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import peer_fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

clarity_api = peer_fixtures.clarity_api
clarity_server = peer_fixtures.clarity_server

ORDER: dict[str, Any] = {
    "CustomKey": "ERP-1001",
    "SalesItems": [
        {"Sku": "SKU-A", "Quantity": 2, "UnitCorePrice": "10.25"},
        {"Sku": "SKU-B", "Quantity": 1, "UnitCorePrice": "5.10", "UnitSoldPrice": "4.60"},
    ],
    "Totals": {"Shipping": "3.00", "Tax": "1.99", "Discounts": "-1.00"},
    "BillingContact": {
        "FirstName": "Ann",
        "LastName": "Lee",
        "Email1": "ann@example.com",
        "Address": {"Street1": "1 Main St", "City": "Austin", "PostalCode": "78701", "CountryCode": "US"},
    },
}


def _create(api: httpx.Client, body: dict[str, Any]) -> int:
    response = api.post("/Ordering/SalesOrder/Create", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["ActionSucceeded"] is True
    return int(payload["Result"])


def _get(api: httpx.Client, order_id: int) -> dict[str, Any]:
    response = api.get(f"/Ordering/SalesOrder/ID/{order_id}")
    assert response.status_code == 200, response.text
    return response.json(parse_float=Decimal)


def test_created_order_comes_back_in_full_with_items_totals_and_default_status(
    clarity_api: httpx.Client,
) -> None:
    order_id = _create(clarity_api, ORDER)
    order = _get(clarity_api, order_id)
    assert order["ID"] == order_id and order["CustomKey"] == "ERP-1001"
    assert order["StatusKey"] == "Pending" and order["StateKey"] == "WORK" and order["TypeKey"] == "Web"
    assert order["Status"]["Name"] == "Pending"
    assert [i["Sku"] for i in order["SalesItems"]] == ["SKU-A", "SKU-B"]
    assert order["SalesItems"][0]["ExtendedPrice"] == Decimal("20.5000")
    assert order["SalesItems"][1]["ExtendedPrice"] == Decimal("4.6000")
    assert order["Totals"]["SubTotal"] == Decimal("25.1000")
    assert order["Totals"]["Total"] == Decimal("29.0900")
    assert order["BalanceDue"] == Decimal("29.0900")
    assert order["BillingContact"]["Address"]["City"] == "Austin"
    assert "UpdatedDate" in order and "CreatedDate" in order
    assert all(item["MasterID"] == order_id for item in order["SalesItems"])


def test_empty_and_default_fields_are_omitted(clarity_api: httpx.Client) -> None:
    order = _get(clarity_api, _create(clarity_api, {"CustomKey": "EMPTY-1", "PurchaseOrderNumber": ""}))
    assert "PurchaseOrderNumber" not in order
    assert "SalesItems" not in order  # an empty collection is omitted
    assert "Handling" not in order.get("Totals", {})  # a zero amount is a default value


def test_get_by_key_and_missing_records_answer_204(clarity_api: httpx.Client) -> None:
    order_id = _create(clarity_api, {**ORDER, "CustomKey": "KEY/WITH/SLASHES"})
    by_key = clarity_api.get("/Ordering/SalesOrder/Key/KEY/WITH/SLASHES")
    assert by_key.status_code == 200 and by_key.json()["ID"] == order_id
    assert clarity_api.get("/Ordering/SalesOrder/ID/999999").status_code == 204
    assert clarity_api.get("/Ordering/SalesOrder/Key/nope").status_code == 204
    assert clarity_api.get(f"/Ordering/SalesOrder/Exists/ID/{order_id}").json() == order_id


def test_duplicate_custom_key_is_a_400_with_a_cef_error_code(clarity_api: httpx.Client) -> None:
    _create(clarity_api, ORDER)
    response = clarity_api.post("/Ordering/SalesOrder/Create", json=ORDER)
    assert response.status_code == 400
    status = response.json()["ResponseStatus"]
    assert status["ErrorCode"].startswith("CEF-")
    assert "Another record with a matching CustomKey was found" in status["Message"]
    assert status["Message"].startswith("Log ID: CEF: ")


def test_update_by_custom_key_bumps_updated_date_and_unknown_key_fails(clarity_api: httpx.Client) -> None:
    order_id = _create(clarity_api, ORDER)
    before = _get(clarity_api, order_id)
    response = clarity_api.put(
        "/Ordering/SalesOrder/Update",
        json={"CustomKey": "ERP-1001", "PurchaseOrderNumber": "PO-7", "StatusKey": "On Hold"},
    )
    assert response.status_code == 200 and response.json() == {"ActionSucceeded": True, "Result": order_id}
    after = _get(clarity_api, order_id)
    assert after["PurchaseOrderNumber"] == "PO-7" and after["StatusName"] == "On Hold"
    assert after["UpdatedDate"] > before["UpdatedDate"]
    assert len(after["SalesItems"]) == 2
    missing = clarity_api.put(
        "/Ordering/SalesOrder/Update", json={"CustomKey": "nope", "PurchaseOrderNumber": "x"}
    )
    assert missing.status_code == 400
    assert "Must supply an ID or CustomKey" in missing.json()["ResponseStatus"]["Message"]


def test_upsert_matches_by_custom_key_then_creates(clarity_api: httpx.Client) -> None:
    first = clarity_api.post("/Ordering/SalesOrder/Upsert", json={"CustomKey": "UP-1"}).json()["Result"]
    again = clarity_api.post(
        "/Ordering/SalesOrder/Upsert", json={"CustomKey": "UP-1", "TrackingNumber": "1Z"}
    )
    assert again.json()["Result"] == first
    assert _get(clarity_api, first)["TrackingNumber"] == "1Z"
    other = clarity_api.post("/Ordering/SalesOrder/Upsert", json={"CustomKey": "UP-2"}).json()["Result"]
    assert other != first


def test_unknown_status_key_is_auto_created(clarity_api: httpx.Client) -> None:
    order = _get(clarity_api, _create(clarity_api, {"CustomKey": "S-1", "StatusKey": "Awaiting ERP"}))
    assert order["StatusKey"] == "Awaiting ERP"
    status = clarity_api.get("/Ordering/SalesOrderStatus/Key/Awaiting ERP")
    assert status.status_code == 200 and status.json()["ID"] == order["StatusID"]


def test_status_actions_move_status_and_state_and_repeat_is_info(clarity_api: httpx.Client) -> None:
    order_id = _create(clarity_api, ORDER)
    for action, status, state in (
        ("Confirm", "Confirmed", "WORK"),
        ("Hold", "On Hold", "WORK"),
        ("Ship", "Shipped", "WORK"),
        ("Complete", "Completed", "HISTORY"),
    ):
        before = _get(clarity_api, order_id)["UpdatedDate"]
        response = clarity_api.patch(f"/Ordering/SalesOrder/{action}/{order_id}")
        assert response.json() == {"ActionSucceeded": True}
        order = _get(clarity_api, order_id)
        assert (order["StatusKey"], order["StateKey"]) == (status, state)
        assert order["UpdatedDate"] > before
    repeat = clarity_api.patch(f"/Ordering/SalesOrder/Complete/{order_id}").json()
    assert repeat["ActionSucceeded"] is True and repeat["Messages"][0].startswith("INFO!")
    void = clarity_api.patch(f"/Ordering/SalesOrder/Void/{order_id}").json()
    assert void == {"ActionSucceeded": True}
    missing = clarity_api.patch("/Ordering/SalesOrder/Confirm/424242").json()
    assert missing["ActionSucceeded"] is False and missing["Messages"][0].startswith("ERROR!")


def test_add_payment_reduces_balance_and_rejects_bad_amounts(clarity_api: httpx.Client) -> None:
    order_id = _create(clarity_api, ORDER)
    too_much = clarity_api.patch(
        "/Ordering/SalesOrder/AddPayment", json={"ID": order_id, "Payment": {"Amount": 100}}
    )
    assert too_much.status_code == 200 and too_much.json()["ActionSucceeded"] is False
    zero = clarity_api.patch(
        "/Ordering/SalesOrder/AddPayment", json={"ID": order_id, "Payment": {"Amount": 0}}
    )
    assert zero.json()["ActionSucceeded"] is False
    part = clarity_api.patch(
        "/Ordering/SalesOrder/AddPayment",
        json={"ID": order_id, "Payment": {"Amount": 9.09, "TransactionNumber": "pi_1"}},
    )
    assert part.json()["ActionSucceeded"] is True
    order = _get(clarity_api, order_id)
    assert order["BalanceDue"] == Decimal("20.0000") and order["StatusKey"] == "Partial Payment Received"
    rest = clarity_api.patch(
        "/Ordering/SalesOrder/AddPayment", json={"ID": order_id, "Payment": {"Amount": "20"}}
    )
    assert rest.json()["ActionSucceeded"] is True
    order = _get(clarity_api, order_id)
    assert "BalanceDue" not in order  # zero is omitted
    assert order["StatusKey"] == "Full Payment Received"


def test_search_pages_are_one_based_and_echo_the_request(clarity_api: httpx.Client) -> None:
    ids = [_create(clarity_api, {"CustomKey": f"P-{n}"}) for n in range(5)]
    page = clarity_api.get("/Ordering/SalesOrders", params={"Paging": '{"Size":2,"StartIndex":2}'}).json()
    assert [r["ID"] for r in page["Results"]] == ids[2:4]
    assert (page["TotalCount"], page["TotalPages"], page["CurrentPage"], page["CurrentCount"]) == (5, 3, 2, 2)
    last = clarity_api.get("/Ordering/SalesOrders", params={"Paging.Size": 2, "Paging.StartIndex": 3}).json()
    assert [r["ID"] for r in last["Results"]] == ids[4:]
    desc = clarity_api.get("/Ordering/SalesOrders", params={"Sorts": '[{"field":"ID","dir":"desc"}]'}).json()
    assert [r["ID"] for r in desc["Results"]] == list(reversed(ids))
    assert all("SalesItems" not in r for r in page["Results"])


def test_modified_since_returns_changed_orders_only(clarity_api: httpx.Client) -> None:
    old = _create(clarity_api, {"CustomKey": "OLD"})
    _create(clarity_api, {"CustomKey": "OTHER"})
    cursor = _get(clarity_api, old)["UpdatedDate"]
    time.sleep(0.01)
    marker = clarity_api.get("/Ordering/SalesOrders").json()["Results"][-1]["UpdatedDate"]
    assert marker >= cursor
    clarity_api.patch(f"/Ordering/SalesOrder/Confirm/{old}")
    since = _get(clarity_api, old)["UpdatedDate"]
    changed = clarity_api.get("/Ordering/SalesOrders", params={"ModifiedSince": since}).json()
    assert [r["ID"] for r in changed["Results"]] == [old]
    bad = clarity_api.get("/Ordering/SalesOrders", params={"ModifiedSince": "yesterday"})
    assert bad.status_code == 400 and bad.json()["ResponseStatus"]["ErrorCode"].startswith("CEF-")


def test_search_filters_by_status_key_and_custom_key(clarity_api: httpx.Client) -> None:
    a = _create(clarity_api, {"CustomKey": "F-A"})
    _create(clarity_api, {"CustomKey": "F-B"})
    clarity_api.patch(f"/Ordering/SalesOrder/Confirm/{a}")
    confirmed = clarity_api.get("/Ordering/SalesOrders", params={"StatusKey": "Confirmed"}).json()
    assert [r["ID"] for r in confirmed["Results"]] == [a]
    strict = clarity_api.get(
        "/Ordering/SalesOrders", params={"CustomKey": "F-A", "CustomKeyStrict": "true"}
    ).json()
    assert [r["CustomKey"] for r in strict["Results"]] == ["F-A"]
    listing = clarity_api.post("/Ordering/SalesOrdersForConnect", json={"CustomKeys": ["F-A", "F-B"]}).json()
    assert [r["CustomKey"] for r in listing] == ["F-A", "F-B"]
    assert all("UpdatedDate" not in r for r in listing)


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)
quantities = st.integers(min_value=1, max_value=999)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(prices, quantities), min_size=1, max_size=6), shipping=prices, tax=prices)
def test_order_totals_are_exact_decimal_sums(
    clarity_api: httpx.Client, lines: list[tuple[Decimal, int]], shipping: Decimal, tax: Decimal
) -> None:
    body = {
        "SalesItems": [
            {"Sku": f"S{i}", "Quantity": q, "UnitCorePrice": str(p)} for i, (p, q) in enumerate(lines)
        ],
        "Totals": {"Shipping": str(shipping), "Tax": str(tax)},
    }
    order = _get(clarity_api, _create(clarity_api, body))
    expected = sum((p * q for p, q in lines), Decimal(0))
    assert order["Totals"]["SubTotal"] == expected
    assert order["Totals"]["Total"] == expected + shipping + tax
    assert [i["ExtendedPrice"] for i in order["SalesItems"]] == [p * q for p, q in lines]
