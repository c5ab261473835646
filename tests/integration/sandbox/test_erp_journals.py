"""The ERPNext simulator as the payout journal uses it, through httpx: the accounts a Stripe payout posts to,
Journal Entries submitted with a reference (``cheque_no``/``cheque_date``), found by it, cancelled, refused
when unbalanced, and Payment Entries of many charges looked up in one request with an ``in`` filter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.erp_sim.app import build_app
from commerce_bridge.sandbox.runner import PeerServer

PAYOUT_ACCOUNTS = {
    "Stripe Clearing - SB": ("Asset", "Bank", "Bank Accounts - SB"),
    "Stripe Payouts Bank - SB": ("Asset", "Bank", "Bank Accounts - SB"),
    "Debtors - SB": ("Asset", "Receivable", "Accounts Receivable - SB"),
    "Stripe Fees - SB": ("Expense", "Chargeable", "Indirect Expenses - SB"),
    "Disputed Funds - SB": ("Asset", "", "Current Assets - SB"),
    "Chargebacks - SB": ("Expense", "", "Indirect Expenses - SB"),
    "Exchange Gain/Loss - SB": ("Expense", "", "Indirect Expenses - SB"),
    "Stripe Adjustments - SB": ("Expense", "", "Indirect Expenses - SB"),
    "Stripe Reconciliation Suspense - SB": ("Asset", "", "Temporary Accounts - SB"),
    "Sales Returns and Refunds - SB": ("Income", "", "Direct Income - SB"),
}


@pytest.fixture(scope="module")
def erp() -> Iterator[httpx.Client]:
    with (
        PeerServer(build_app(api_key="k", api_secret="s")) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "token k:s"}, timeout=10) as client,
    ):
        yield client


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json(parse_float=Decimal)["data"]


def refused(response: httpx.Response, exc_type: str, text: str) -> None:
    assert response.status_code == 417, response.text
    body = response.json()
    assert body["exc_type"] == exc_type and text in body["exception"], body["exception"]


def payout_journal(po: str, **extra: Any) -> dict[str, Any]:
    """A payout of 95.10: gross 100.00 of charges, 3.20 fees, a 1.70 refund, paid to the bank."""
    rows = [
        {"account": "Stripe Payouts Bank - SB", "debit_in_account_currency": "95.10"},
        {"account": "Stripe Fees - SB", "debit_in_account_currency": "3.20"},
        {"account": "Sales Returns and Refunds - SB", "debit_in_account_currency": "1.70"},
        {"account": "Stripe Clearing - SB", "credit_in_account_currency": "100.00"},
    ]
    return {
        "voucher_type": "Bank Entry",
        "posting_date": "2026-12-07",
        "cheque_no": po,
        "cheque_date": "2026-12-08",
        "user_remark": f"Stripe payout {po}",
        "docstatus": 1,
        "accounts": rows,
        **extra,
    }


def find_by_reference(erp: httpx.Client, po: str) -> list[dict[str, Any]]:
    return data(
        erp.get(
            "/api/resource/Journal Entry",
            params={  # type: ignore[no-any-return]
                "filters": json.dumps([["cheque_no", "=", po], ["docstatus", "!=", 2]]),
                "fields": json.dumps(
                    ["name", "docstatus", "cheque_no", "cheque_date", "user_remark", "total_debit"]
                ),
            },
        )
    )


def test_payout_accounts_exist_with_erpnext_root_types_when_the_chart_is_seeded(erp: httpx.Client) -> None:
    for name, (root_type, account_type, parent) in PAYOUT_ACCOUNTS.items():
        account = data(erp.get(f"/api/resource/Account/{name}"))
        assert (
            account["root_type"],
            account["account_type"],
            account["parent_account"],
            account["is_group"],
        ) == (root_type, account_type, parent, 0), name
    assert data(erp.get("/api/resource/Account/Stripe Payouts Bank - SC"))["company"] == "Sandbox Company"


def test_chart_gains_new_accounts_when_an_older_state_file_is_reopened(tmp_path: Any) -> None:
    state = str(tmp_path / "erp.sqlite")
    with PeerServer(build_app(state_file=state, api_key="k", api_secret="s")) as server:
        headers = {"Authorization": "token k:s"}
        assert (
            httpx.delete(
                f"{server.url}/api/resource/Account/Stripe Adjustments - SB", headers=headers
            ).status_code
            == 202
        )
    with PeerServer(build_app(state_file=state, api_key="k", api_secret="s")) as server:
        found = httpx.get(f"{server.url}/api/resource/Account/Stripe Adjustments - SB", headers=headers)
        assert found.status_code == 200, found.text


def test_payout_journal_is_submitted_found_by_reference_and_cancelled_when_posted_then_reversed(
    erp: httpx.Client,
) -> None:
    je = data(erp.post("/api/resource/Journal Entry", json=payout_journal("po_1Journal")))
    assert (je["docstatus"], je["status"], je["company"], je["cheque_no"], je["cheque_date"]) == (
        1,
        "Submitted",
        "Sandbox Bridge",
        "po_1Journal",
        "2026-12-08",
    )
    assert je["total_debit"] == je["total_credit"] == Decimal("100.00") and je["difference"] == 0
    assert je["user_remark"] == "Stripe payout po_1Journal"
    data(erp.post("/api/resource/Journal Entry", json=payout_journal("po_2Other")))
    [found] = find_by_reference(erp, "po_1Journal")
    assert (found["name"], found["docstatus"], found["user_remark"]) == (je["name"], 1, je["user_remark"])
    cancelled = httpx.post(
        f"{erp.base_url}/api/method/frappe.client.cancel",
        headers=erp.headers,
        json={"doctype": "Journal Entry", "name": je["name"]},
    )
    assert cancelled.status_code == 200, cancelled.text
    gone = data(erp.get(f"/api/resource/Journal Entry/{je['name']}"))
    assert (gone["docstatus"], gone["status"]) == (2, "Cancelled")
    assert all(row["docstatus"] == 2 for row in gone["accounts"])
    assert find_by_reference(erp, "po_1Journal") == []
    second = data(erp.post("/api/resource/Journal Entry", json=payout_journal("po_2Other", docstatus=0)))
    submitted = data(erp.put(f"/api/resource/Journal Entry/{second['name']}", json={"docstatus": 1}))
    reversed_ = data(erp.put(f"/api/resource/Journal Entry/{submitted['name']}", json={"docstatus": 2}))
    assert reversed_["docstatus"] == 2
    refused(
        erp.put(f"/api/resource/Journal Entry/{second['name']}", json={"docstatus": 1}),
        "ValidationError",
        "Cannot edit cancelled document",
    )


def test_journal_is_refused_when_debits_and_credits_do_not_balance(erp: httpx.Client) -> None:
    body = payout_journal("po_3Unbalanced")
    body["accounts"][0]["debit_in_account_currency"] = "95.11"
    refused(
        erp.post("/api/resource/Journal Entry", json=body),
        "ValidationError",
        "Total Debit must be equal to Total Credit. The difference is 0.01",
    )
    assert find_by_reference(erp, "po_3Unbalanced") == []


def test_journal_reference_is_checked_as_erpnext_does_when_it_is_a_bank_entry(erp: httpx.Client) -> None:
    refused(
        erp.post("/api/resource/Journal Entry", json=payout_journal("po_4", cheque_no=None)),
        "ValidationError",
        "Reference No & Reference Date is required for Bank Entry",
    )
    refused(
        erp.post(
            "/api/resource/Journal Entry",
            json=payout_journal("po_4", voucher_type="Journal Entry", cheque_no=""),
        ),
        "ValidationError",
        "Reference No is mandatory if you entered Reference Date",
    )
    plain = payout_journal("po_4", voucher_type="Journal Entry", cheque_date=None)
    assert data(erp.post("/api/resource/Journal Entry", json=plain))["cheque_no"] == "po_4"


def test_payment_entries_of_many_charges_are_found_in_one_request_when_filtered_with_in(
    erp: httpx.Client,
) -> None:
    customer = data(erp.post("/api/resource/Customer", json={"customer_name": "Payer"}))["name"]
    charges = [f"ch_{i:04d}" for i in range(60)]
    for ch in charges:
        data(
            erp.post(
                "/api/resource/Payment Entry",
                json={
                    "payment_type": "Receive",
                    "party_type": "Customer",
                    "party": customer,
                    "paid_amount": "10.00",
                    "paid_to": "Stripe Clearing - SB",
                    "reference_no": ch,
                    "reference_date": "2026-12-07",
                    "docstatus": 1,
                },
            )
        )
    wanted = [*charges[::3], "ch_unknown"]
    fields = json.dumps(["name", "reference_no", "paid_amount"])
    listed = data(
        erp.get(
            "/api/resource/Payment Entry",
            params={
                "filters": json.dumps([["reference_no", "in", wanted]]),
                "fields": fields,
                "limit_page_length": 0,
            },
        )
    )
    assert sorted(p["reference_no"] for p in listed) == charges[::3]
    as_dict = data(
        erp.get(
            "/api/resource/Payment Entry",
            params={
                "filters": json.dumps({"reference_no": ["in", wanted[:5]], "docstatus": 1}),
                "fields": fields,
            },
        )
    )
    assert sorted(p["reference_no"] for p in as_dict) == wanted[:5]
    four = data(
        erp.get(
            "/api/resource/Payment Entry",
            params={
                "filters": json.dumps([["Payment Entry", "reference_no", "not in", charges[4:]]]),
                "fields": fields,
            },
        )
    )
    assert sorted(p["reference_no"] for p in four) == charges[:4]
