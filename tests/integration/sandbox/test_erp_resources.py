"""The ERPNext simulator through a real httpx client: resources, filters, docstatus, errors, exact money."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import peer_fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commerce_bridge.sandbox.erp_sim.app import build_app
from commerce_bridge.sandbox.runner import PeerServer

ERP_KEY = peer_fixtures.ERP_KEY
ERP_SECRET = peer_fixtures.ERP_SECRET
erp_api = peer_fixtures.erp_api
erp_server = peer_fixtures.erp_server


def _data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json(parse_float=Decimal)["data"]


def _seed(api: httpx.Client) -> None:
    _data(
        api.post("/api/resource/Customer", json={"customer_name": "Ann Lee", "email_id": "ann@example.com"})
    )
    _data(api.post("/api/resource/Item", json={"item_code": "SKU-A", "standard_rate": "10.10"}))
    _data(api.post("/api/resource/Item", json={"item_code": "SKU-B", "item_name": "Widget B"}))


def _order(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {
        "customer": "Ann Lee",
        "delivery_date": "2026-12-01",
        "po_no": "WEB-1",
        "items": [{"item_code": "SKU-A", "qty": 3}, {"item_code": "SKU-B", "qty": 1, "rate": "0.20"}],
        "taxes": [{"charge_type": "Actual", "account_head": "VAT - SC", "tax_amount": "0.10"}],
        **extra,
    }
    return _data(api.post("/api/resource/Sales Order", json=body))


def test_auth_missing_is_403_and_wrong_token_is_401(erp_server: PeerServer) -> None:
    with httpx.Client(base_url=erp_server.url) as client:
        missing = client.get("/api/resource/Customer")
        assert missing.status_code == 403 and missing.json()["exc_type"] == "PermissionError"
        wrong = client.get("/api/resource/Customer", headers={"Authorization": f"token {ERP_KEY}:nope"})
        assert wrong.status_code == 401 and wrong.json()["exc_type"] == "AuthenticationError"
        ok = client.get(
            "/api/method/frappe.auth.get_logged_user",
            headers={"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"},
        )
        assert ok.status_code == 200 and ok.json()["message"]


def test_sales_order_is_named_by_series_and_totals_are_exact(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    first = _order(erp_api)
    second = _order(erp_api)
    year = first["creation"][:4]
    assert first["name"] == f"SAL-ORD-{year}-00001" and second["name"] == f"SAL-ORD-{year}-00002"
    assert first["docstatus"] == 0 and first["status"] == "Draft"
    assert [r["amount"] for r in first["items"]] == [Decimal("30.30"), Decimal("0.20")]
    assert first["total"] == Decimal("30.50") and first["grand_total"] == Decimal("30.60")
    assert first["items"][0]["parent"] == first["name"] and first["items"][0]["idx"] == 1
    fetched = _data(erp_api.get(f"/api/resource/Sales Order/{first['name']}"))
    assert fetched["grand_total"] == Decimal("30.60")


def test_errors_have_frappe_shapes_and_statuses(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    missing = erp_api.get("/api/resource/Sales Order/SAL-ORD-1999-00009")
    assert missing.status_code == 404 and missing.json()["exc_type"] == "DoesNotExistError"
    messages = json.loads(missing.json()["_server_messages"])
    assert "not found" in json.loads(messages[0])["message"]
    bad_link = erp_api.post(
        "/api/resource/Sales Order", json={"customer": "Nobody", "items": [{"item_code": "SKU-A"}]}
    )
    assert bad_link.status_code == 417 and bad_link.json()["exc_type"] == "LinkValidationError"
    no_customer = erp_api.post("/api/resource/Sales Order", json={"items": [{"item_code": "SKU-A"}]})
    assert no_customer.status_code == 417 and no_customer.json()["exc_type"] == "MandatoryError"
    duplicate = erp_api.post("/api/resource/Item", json={"item_code": "SKU-A"})
    assert duplicate.status_code == 409 and duplicate.json()["exc_type"] == "DuplicateEntryError"
    twin = _data(erp_api.post("/api/resource/Customer", json={"customer_name": "Ann Lee"}))
    assert twin["name"] == "Ann Lee - 1"


def test_docstatus_submit_cancel_and_edits_after_submit(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    name = _order(erp_api)["name"]
    edited = _data(erp_api.put(f"/api/resource/Sales Order/{name}", json={"po_no": "WEB-2"}))
    assert edited["po_no"] == "WEB-2" and edited["docstatus"] == 0
    submitted = _data(erp_api.put(f"/api/resource/Sales Order/{name}", json={"docstatus": 1}))
    assert submitted["docstatus"] == 1 and submitted["status"] == "To Deliver and Bill"
    locked = erp_api.put(f"/api/resource/Sales Order/{name}", json={"po_no": "WEB-3"})
    assert locked.status_code == 417 and locked.json()["exc_type"] == "UpdateAfterSubmitError"
    cancelled = _data(erp_api.put(f"/api/resource/Sales Order/{name}", json={"docstatus": 2}))
    assert cancelled["status"] == "Cancelled"
    again = erp_api.put(f"/api/resource/Sales Order/{name}", json={"docstatus": 1})
    assert again.status_code == 417
    other = _order(erp_api)["name"]
    via_method = erp_api.post(
        "/api/method/frappe.client.submit", json={"doc": {"doctype": "Sales Order", "name": other}}
    )
    assert via_method.status_code == 200 and via_method.json()["message"]["docstatus"] == 1


def test_list_supports_filters_fields_order_and_paging(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    names = [_order(erp_api, po_no=f"WEB-{n}")["name"] for n in range(5)]
    default = _data(erp_api.get("/api/resource/Sales Order"))
    assert default == [{"name": n} for n in reversed(names)]  # modified desc, only name
    page = _data(
        erp_api.get(
            "/api/resource/Sales Order",
            params={
                "fields": '["name","po_no","grand_total"]',
                "order_by": "name asc",
                "limit_start": 1,
                "limit_page_length": 2,
            },
        )
    )
    assert [r["name"] for r in page] == names[1:3] and page[0]["grand_total"] == Decimal("30.60")
    filtered = _data(erp_api.get("/api/resource/Sales Order", params={"filters": '[["po_no","=","WEB-3"]]'}))
    assert filtered == [{"name": names[3]}]
    as_dict = _data(
        erp_api.get(
            "/api/resource/Sales Order",
            params={"filters": '{"po_no": ["in", ["WEB-1","WEB-2"]]}', "order_by": "po_no asc"},
        )
    )
    assert [r["name"] for r in as_dict] == names[1:3]
    by_child = _data(
        erp_api.get(
            "/api/resource/Sales Order",
            params={"filters": '[["Sales Order Item","item_code","=","SKU-B"],["grand_total",">=",30]]'},
        )
    )
    assert len(by_child) == 5
    bad = erp_api.get("/api/resource/Sales Order", params={"filters": "not json"})
    assert bad.status_code == 417


def test_journal_entry_must_balance(erp_api: httpx.Client) -> None:
    unbalanced = erp_api.post(
        "/api/resource/Journal Entry",
        json={
            "posting_date": "2026-11-27",
            "accounts": [
                {"account": "Stripe Clearing - SC", "debit_in_account_currency": "100.00"},
                {"account": "Sales - SC", "credit_in_account_currency": "99.99"},
            ],
        },
    )
    assert unbalanced.status_code == 417 and unbalanced.json()["exc_type"] == "ValidationError"
    assert "0.01" in unbalanced.json()["exception"]
    entry = _data(
        erp_api.post(
            "/api/resource/Journal Entry",
            json={
                "posting_date": "2026-11-27",
                "docstatus": 1,
                "accounts": [
                    {"account": "Stripe Clearing - SC", "debit_in_account_currency": "0.10"},
                    {"account": "Stripe Clearing - SC", "debit_in_account_currency": "0.20"},
                    {"account": "Sales - SC", "credit_in_account_currency": "0.30"},
                ],
            },
        )
    )
    assert entry["name"].startswith("ACC-JV-") and entry["name"].endswith("-00001")
    assert entry["total_debit"] == entry["total_credit"] == Decimal("0.30") and entry["docstatus"] == 1


def test_payment_entry_against_invoice_updates_outstanding(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    invoice = _data(
        erp_api.post(
            "/api/resource/Sales Invoice",
            json={"customer": "Ann Lee", "docstatus": 1, "items": [{"item_code": "SKU-A", "qty": 2}]},
        )
    )
    assert invoice["name"].startswith("ACC-SINV-") and invoice["outstanding_amount"] == Decimal("20.20")
    assert invoice["status"] == "Unpaid"
    too_much = erp_api.post(
        "/api/resource/Payment Entry",
        json={
            "payment_type": "Receive",
            "party_type": "Customer",
            "party": "Ann Lee",
            "paid_amount": "30",
            "docstatus": 1,
            "references": [
                {
                    "reference_doctype": "Sales Invoice",
                    "reference_name": invoice["name"],
                    "allocated_amount": "30",
                }
            ],
        },
    )
    assert too_much.status_code == 417
    payment = _data(
        erp_api.post(
            "/api/resource/Payment Entry",
            json={
                "payment_type": "Receive",
                "party_type": "Customer",
                "party": "Ann Lee",
                "paid_amount": "20.20",
                "reference_no": "ch_1",
                "docstatus": 1,
                "references": [
                    {
                        "reference_doctype": "Sales Invoice",
                        "reference_name": invoice["name"],
                        "allocated_amount": "20.20",
                    }
                ],
            },
        )
    )
    assert payment["name"].startswith("ACC-PAY-")
    paid = _data(erp_api.get(f"/api/resource/Sales Invoice/{invoice['name']}"))
    assert paid["outstanding_amount"] == Decimal("0.00") and paid["status"] == "Paid"
    _data(erp_api.put(f"/api/resource/Payment Entry/{payment['name']}", json={"docstatus": 2}))
    reopened = _data(erp_api.get(f"/api/resource/Sales Invoice/{invoice['name']}"))
    assert reopened["outstanding_amount"] == Decimal("20.20") and reopened["status"] == "Unpaid"


def test_payment_entry_reference_to_a_draft_or_another_customers_invoice_is_refused(erp_api: httpx.Client) -> None:
    _seed(erp_api)
    _data(erp_api.post("/api/resource/Customer", json={"customer_name": "Bo Ray", "email_id": "bo@example.com"}))
    draft = _data(erp_api.post("/api/resource/Sales Invoice",
                               json={"customer": "Ann Lee", "items": [{"item_code": "SKU-A", "qty": 1}]}))
    theirs = _data(erp_api.post("/api/resource/Sales Invoice",
                                json={"customer": "Bo Ray", "docstatus": 1, "items": [{"item_code": "SKU-A"}]}))

    def pay(invoice: dict[str, Any]) -> httpx.Response:
        return erp_api.post("/api/resource/Payment Entry", json={
            "payment_type": "Receive", "party_type": "Customer", "party": "Ann Lee", "paid_amount": "10.10",
            "docstatus": 1, "references": [{"reference_doctype": "Sales Invoice", "reference_name": invoice["name"],
                                            "allocated_amount": "10.10"}]})

    refused = pay(draft)
    assert refused.status_code == 417 and f"Sales Invoice {draft['name']} must be submitted" in refused.text
    refused = pay(theirs)
    assert refused.status_code == 417 and "is not associated with Customer Ann Lee" in refused.text
    assert _data(erp_api.get(f"/api/resource/Sales Invoice/{theirs['name']}"))["outstanding_amount"] == Decimal("10.10")


def test_state_file_survives_restart_including_series(tmp_path: Path) -> None:
    state = str(tmp_path / "erp.sqlite")
    headers = {"Authorization": "token k:s"}
    for expected in ("00001", "00002"):
        with (
            PeerServer(build_app(state_file=state, api_key="k", api_secret="s")) as server,
            httpx.Client(base_url=server.url, headers=headers) as client,
        ):
            if expected == "00001":
                _seed(client)
            entry = _data(
                client.post(
                    "/api/resource/Sales Order",
                    json={"customer": "Ann Lee", "items": [{"item_code": "SKU-A", "qty": 1}]},
                )
            )
            assert entry["name"].endswith(expected)
            assert _data(client.get("/api/resource/Item/SKU-A"))["standard_rate"] == Decimal("10.10")


def test_fault_rules_apply_to_resource_routes(erp_server: PeerServer, erp_api: httpx.Client) -> None:
    control = erp_server.url + "/_sandbox/faults"
    httpx.put(control, json={"rules": [{"path": "/api/resource/Sales Order*", "status": 503, "times": 1}]})
    assert erp_api.get("/api/resource/Sales Order").status_code == 503
    assert erp_api.get("/api/resource/Sales Order").status_code == 200
    httpx.put(control, json={"rules": [{"path": "/api/resource/*", "status": 429, "error_rate": 1.0}]})
    assert erp_api.get("/api/resource/Customer").status_code == 429
    httpx.delete(control)
    assert erp_api.get("/api/resource/Customer").status_code == 200


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000.00"), places=2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(debits=st.lists(amounts, min_size=1, max_size=5), off_by_a_cent=st.booleans())
def test_journal_entries_balance_exactly_to_the_cent(
    erp_api: httpx.Client, debits: list[Decimal], off_by_a_cent: bool
) -> None:
    total = sum(debits, Decimal(0))
    credit = total + (Decimal("0.01") if off_by_a_cent else Decimal(0))
    rows = [{"account": "Stripe Clearing - SC", "debit_in_account_currency": str(d)} for d in debits]
    rows.append({"account": "Sales - SC", "credit_in_account_currency": str(credit)})
    response = erp_api.post("/api/resource/Journal Entry", json={"accounts": rows})
    if off_by_a_cent:
        assert response.status_code == 417 and response.json()["exc_type"] == "ValidationError"
    else:
        entry = _data(response)
        assert entry["total_debit"] == entry["total_credit"] == total
