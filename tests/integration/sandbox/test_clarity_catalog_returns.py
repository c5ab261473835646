"""Accounts, users, contacts, products and sales returns of the Clarity simulator through httpx."""

from __future__ import annotations

from decimal import Decimal

import httpx
import peer_fixtures

clarity_api = peer_fixtures.clarity_api
clarity_server = peer_fixtures.clarity_server


def _ok(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ActionSucceeded"] is True, body
    return int(body["Result"]) if "Result" in body and isinstance(body["Result"], int) else 0


def test_accounts_are_keyed_by_custom_key_with_default_type_and_status(clarity_api: httpx.Client) -> None:
    account_id = _ok(
        clarity_api.post(
            "/Accounts/Account/Create", json={"CustomKey": "CUST-9", "Name": "Acme", "Credit": "1500.5"}
        )
    )
    account = clarity_api.get("/Accounts/Account/Key/CUST-9").json(parse_float=Decimal)
    assert (
        account["ID"] == account_id and account["TypeKey"] == "CUSTOMER" and account["StatusKey"] == "NORMAL"
    )
    assert account["Credit"] == Decimal("1500.5000")
    _ok(
        clarity_api.post(
            "/Accounts/Account/Upsert",
            json={"CustomKey": "CUST-9", "Name": "Acme Corp", "TypeKey": "ORGANIZATION"},
        )
    )
    assert clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()["TypeKey"] == "ORGANIZATION"
    digest = clarity_api.get("/Accounts/AccountsDigest").json()
    assert {"ID": account_id, "Key": "CUST-9"} in digest
    _ok(clarity_api.patch("/Accounts/Account/Deactivate/Key/CUST-9"))
    inactive = clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()
    assert "Active" not in inactive  # false is a default value and is omitted
    assert clarity_api.get("/Accounts/Accounts", params={"Active": "false"}).json()["TotalCount"] == 1
    assert clarity_api.get("/Accounts/AccountsDigest").json() == []
    _ok(clarity_api.patch(f"/Accounts/Account/Reactivate/ID/{account_id}"))
    assert clarity_api.get(f"/Accounts/Account/ID/{account_id}").json()["Active"] is True


def test_users_link_accounts_and_contacts_and_have_extra_getters(clarity_api: httpx.Client) -> None:
    _ok(clarity_api.post("/Accounts/Account/Create", json={"CustomKey": "CUST-1", "Name": "Acme"}))
    user_id = _ok(
        clarity_api.post(
            "/Contacts/User/Create",
            json={
                "CustomKey": "U-1",
                "UserName": "bob",
                "Email": "bob@example.com",
                "AccountKey": "CUST-1",
                "Contact": {"FirstName": "Bob", "LastName": "Ray", "Email1": "bob@example.com"},
            },
        )
    )
    user = clarity_api.get(f"/Contacts/User/ID/{user_id}").json()
    assert (
        user["AccountKey"] == "CUST-1" and user["ContactFirstName"] == "Bob" and user["TypeKey"] == "Customer"
    )
    assert user["Contact"]["FullName"] == "Bob Ray"
    assert clarity_api.get("/Contacts/User/Email/bob@example.com").json()["ID"] == user_id
    assert clarity_api.get("/Contacts/User/CustomKey/U-1").json()["ID"] == user_id
    assert clarity_api.get("/Contacts/CurrentUser").json()["UserName"] == peer_fixtures.DEFAULT_USER
    contact_id = _ok(
        clarity_api.post("/Contacts/Contact/Create", json={"CustomKey": "C-1", "FirstName": "Cy"})
    )
    assert clarity_api.get("/Contacts/Contact/Key/C-1").json()["ID"] == contact_id


def test_products_carry_the_sku_as_custom_key_and_price_order_lines(clarity_api: httpx.Client) -> None:
    product_id = _ok(
        clarity_api.post(
            "/Products/Product/Create", json={"CustomKey": "SKU-7", "Name": "Seven", "PriceBase": "7.77"}
        )
    )
    order_id = _ok(
        clarity_api.post(
            "/Ordering/SalesOrder/Create", json={"SalesItems": [{"ProductKey": "SKU-7", "Quantity": 3}]}
        )
    )
    order = clarity_api.get(f"/Ordering/SalesOrder/ID/{order_id}").json(parse_float=Decimal)
    item = order["SalesItems"][0]
    assert (item["ProductID"], item["Sku"], item["Name"]) == (product_id, "SKU-7", "Seven")
    assert item["ExtendedPrice"] == Decimal("23.3100")
    by_product = clarity_api.get("/Ordering/SalesOrders", params={"ProductKey": "SKU-7"}).json()
    assert by_product["TotalCount"] == 1
    dup = clarity_api.post("/Products/Product/Create", json={"CustomKey": "SKU-7"})
    assert dup.status_code == 400 and dup.json()["ResponseStatus"]["ErrorCode"] == "CEF-10142"


def test_sales_returns_move_through_their_actions(clarity_api: httpx.Client) -> None:
    order_id = _ok(
        clarity_api.post(
            "/Ordering/SalesOrder/Create",
            json={"CustomKey": "O-1", "SalesItems": [{"Sku": "A", "Quantity": 1, "UnitCorePrice": "10"}]},
        )
    )
    ready = clarity_api.get(f"/Providers/Returning/Queries/IsSalesOrderReadyForReturn/{order_id}").json()
    assert ready == {"ActionSucceeded": True, "Result": False}
    clarity_api.patch(f"/Ordering/SalesOrder/Ship/{order_id}")
    assert clarity_api.get(f"/Providers/Returning/Queries/IsSalesOrderReadyForReturn/{order_id}").json()[
        "Result"
    ]
    created = clarity_api.post(
        "/Providers/Returning/Actions/CreateSalesReturn",
        json={
            "CustomKey": "RMA-1",
            "SalesOrderIDs": [order_id],
            "RefundAmount": "10",
            "SalesItems": [{"Sku": "A", "Quantity": 1, "UnitCorePrice": "10"}],
        },
    ).json()
    assert created["ActionSucceeded"] is True
    return_id = created["Result"]["ID"]
    sales_return = clarity_api.get(f"/Returning/SalesReturn/ID/{return_id}").json()
    assert (
        sales_return["StatusKey"] == "Pending"
        and sales_return["AssociatedSalesOrders"][0]["SlaveID"] == order_id
    )
    actions = "/Providers/Returning/Actions"
    assert clarity_api.patch(f"{actions}/Confirm/{return_id}").json() == {"ActionSucceeded": True}
    refund = clarity_api.patch(f"{actions}/Refund/{return_id}").json()
    assert refund["ActionSucceeded"] is False and "does not support Refunds" in refund["Messages"][0]
    manual = clarity_api.post(
        f"{actions}/ManuallyRefund", json={"ID": return_id, "RefundTransactionID": "re_1"}
    )
    assert manual.json() == {"ActionSucceeded": True}
    done = clarity_api.get(f"/Returning/SalesReturn/ID/{return_id}").json()
    assert (
        done["StatusKey"] == "Completed"
        and done["StateKey"] == "HISTORY"
        and done["RefundTransactionID"] == "re_1"
    )
    other = clarity_api.post(f"{actions}/CreateSalesReturn", json={"CustomKey": "RMA-2"}).json()["Result"][
        "ID"
    ]
    assert clarity_api.patch(f"{actions}/Cancel/{other}").json()["ActionSucceeded"] is True
    assert (
        clarity_api.get(f"/Returning/SalesReturn/ID/{other}").json()["StatusKey"] == "Canceled"
    )  # auto-created
    assert (
        clarity_api.get("/Returning/SalesReturns", params={"ModifiedSince": done["UpdatedDate"]}).json()[
            "TotalCount"
        ]
        == 2
    )
