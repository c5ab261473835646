"""The ERPNext simulator's refund and dispute bookkeeping through httpx: the seeded chart of accounts, new
accounts, Journal Entry account checks, credit notes (``is_return``) against submitted invoices and Payment
Entries of type Pay that refund them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.erp_sim.app import build_app
from commerce_bridge.sandbox.runner import PeerServer

_seq = count(1)


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
    assert response.status_code in (404, 409, 417), response.text
    body = response.json()
    assert body["exc_type"] == exc_type and text in body["exception"], body["exception"]


def customer_and_invoice(erp: httpx.Client, qty: int = 2) -> tuple[str, dict[str, Any]]:
    n = next(_seq)
    name = data(erp.post("/api/resource/Customer", json={"customer_name": f"Buyer {n}"}))["name"]
    data(erp.post("/api/resource/Item", json={"item_code": f"MUG-{n}", "standard_rate": "10.10"}))
    data(erp.post("/api/resource/Item", json={"item_code": f"CAP-{n}", "standard_rate": "5.00"}))
    invoice = data(erp.post("/api/resource/Sales Invoice", json={
        "customer": name, "docstatus": 1, "items": [{"item_code": f"MUG-{n}", "qty": qty}]}))  # fmt: skip
    return name, invoice


def credit_note(
    erp: httpx.Client, customer: str, against: str | None, item: str, qty: int, **extra: Any
) -> httpx.Response:
    body = {"customer": customer, "is_return": 1, "return_against": against, "docstatus": 1,
            "items": [{"item_code": item, "qty": qty}], **extra}  # fmt: skip
    return erp.post("/api/resource/Sales Invoice", json=body)


def journal(erp: httpx.Client, rows: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return erp.post(
        "/api/resource/Journal Entry", json={"posting_date": "2026-11-27", "accounts": rows, **extra}
    )


def test_the_chart_is_seeded_per_company_and_accounts_can_be_added(erp: httpx.Client) -> None:
    clearing = data(erp.get("/api/resource/Account/Stripe Clearing - SB"))
    assert (clearing["account_type"], clearing["root_type"], clearing["parent_account"]) == (
        "Bank", "Asset", "Bank Accounts - SB")  # fmt: skip
    assert data(erp.get("/api/resource/Account/Debtors - SC"))["account_type"] == "Receivable"
    leaves = data(erp.get("/api/resource/Account", params={
        "filters": '[["company","=","Sandbox Bridge"],["is_group","=",0]]', "limit_page_length": 0}))  # fmt: skip
    names = {a["name"] for a in leaves}
    assert {"Sales - SB", "Stripe Fees - SB", "Chargebacks - SB", "Disputed Funds - SB", "VAT - SB"} <= names
    made = data(erp.post("/api/resource/Account", json={
        "account_name": "Dispute Fees", "company": "Sandbox Bridge", "parent_account": "Indirect Expenses - SB"}))  # fmt: skip
    assert (made["name"], made["root_type"], made["report_type"], made["is_group"]) == (
        "Dispute Fees - SB", "Expense", "Profit and Loss", 0)  # fmt: skip
    again = {
        "account_name": "Dispute Fees",
        "company": "Sandbox Bridge",
        "parent_account": "Indirect Expenses - SB",
    }
    refused(erp.post("/api/resource/Account", json=again), "DuplicateEntryError", "Dispute Fees - SB")
    refused(erp.post("/api/resource/Account", json={**again, "account_name": "X", "parent_account": "Sales - SB"}),
            "ValidationError", "can not be a ledger")  # fmt: skip
    refused(erp.post("/api/resource/Account", json={**again, "account_name": "Y",
                                                    "parent_account": "Indirect Expenses - SC"}),
            "ValidationError", "does not belong to company")  # fmt: skip
    refused(erp.post("/api/resource/Account", json={**again, "account_name": "Z", "company": "Acme"}),
            "LinkValidationError", "Company")  # fmt: skip
    refused(erp.post("/api/resource/Company", json={"company_name": "Acme", "abbr": "A"}),
            "ValidationError", "not simulated")  # fmt: skip


def test_journal_entry_rows_must_name_usable_accounts_of_one_company(erp: httpx.Client) -> None:
    ok = [{"account": "Disputed Funds - SB", "debit_in_account_currency": "30.00"},
          {"account": "Stripe Fees - SB", "debit_in_account_currency": "15.00"},
          {"account": "Stripe Clearing - SB", "credit_in_account_currency": "45.00"}]  # fmt: skip
    entry = data(journal(erp, ok, docstatus=1, user_remark="dispute dp_1 funds withdrawn"))
    assert entry["company"] == "Sandbox Bridge" and entry["total_debit"] == Decimal("45.00")
    unknown = [*ok[:2], {"account": "Stripe Payouts - SB", "credit_in_account_currency": "45.00"}]
    refused(
        journal(erp, unknown), "LinkValidationError", "Could not find Row #3: Account: Stripe Payouts - SB"
    )
    group = [{"account": "Indirect Expenses - SB", "debit_in_account_currency": "1.00"}, ok[2] | {
        "credit_in_account_currency": "1.00"}]  # fmt: skip
    refused(journal(erp, group), "ValidationError", "is a Group Account")
    mixed = [ok[0] | {"debit_in_account_currency": "45.00"}, {"account": "Stripe Clearing - SC",
                                                              "credit_in_account_currency": "45.00"}]  # fmt: skip
    refused(journal(erp, mixed), "ValidationError", "does not belong to company Sandbox Bridge")
    refused(journal(erp, ok, company="Sandbox Company"), "ValidationError", "does not belong to company")
    both = [
        {"account": "Stripe Fees - SB", "debit_in_account_currency": "1", "credit_in_account_currency": "1"}
    ]
    refused(journal(erp, both), "ValidationError", "cannot credit and debit same account")
    zero = [*ok, {"account": "Sales - SB"}]
    refused(journal(erp, zero), "ValidationError", "Both Debit and Credit values cannot be zero")
    debtors = [{"account": "Debtors - SB", "credit_in_account_currency": "5.00"},
               {"account": "Stripe Clearing - SB", "debit_in_account_currency": "5.00"}]  # fmt: skip
    refused(journal(erp, debtors), "ValidationError", "Party Type and Party is required")
    customer, _ = customer_and_invoice(erp)
    debtors[0] |= {"party_type": "Customer", "party": customer}
    assert data(journal(erp, debtors))["accounts"][0]["party"] == customer
    unbalanced = [ok[0], ok[2]]
    refused(journal(erp, unbalanced), "ValidationError", "Total Debit must be equal to Total Credit")


def test_credit_note_against_a_submitted_invoice_is_checked_and_refunded_by_a_pay_entry(
    erp: httpx.Client,
) -> None:
    customer, invoice = customer_and_invoice(erp)
    item = invoice["items"][0]["item_code"]
    note = data(credit_note(erp, customer, invoice["name"], item, -1))
    assert (note["grand_total"], note["outstanding_amount"], note["status"]) == (Decimal("-10.10"),
                                                                                 Decimal("-10.10"), "Return")  # fmt: skip
    assert note["update_outstanding_for_self"] == 1
    assert data(erp.get(f"/api/resource/Sales Invoice/{invoice['name']}"))["outstanding_amount"] == Decimal(
        "20.20"
    )
    refused(credit_note(erp, customer, invoice["name"], item, -2), "ValidationError",
            f"Row # 1: Cannot return more than 1 for Item {item}")  # fmt: skip
    refused(credit_note(erp, customer, invoice["name"], item, 1), "ValidationError", "must be negative")
    dearer = {"customer": customer, "is_return": 1, "return_against": invoice["name"],
              "items": [{"item_code": item, "qty": -1, "rate": "10.11"}]}  # fmt: skip
    refused(erp.post("/api/resource/Sales Invoice", json=dearer), "ValidationError", "Rate cannot be greater")
    cap = item.replace("MUG", "CAP")
    refused(
        credit_note(erp, customer, invoice["name"], cap, -1),
        "ValidationError",
        "does not exist in Sales Invoice",
    )
    other, _ = customer_and_invoice(erp)
    refused(credit_note(erp, other, invoice["name"], item, -1), "ValidationError", "Invalid Return Against")
    refused(
        credit_note(erp, customer, "ACC-SINV-1999-99999", item, -1), "LinkValidationError", "Return Against"
    )
    draft = data(erp.post("/api/resource/Sales Invoice", json={"customer": customer, "items": [
        {"item_code": item, "qty": 1}]}))  # fmt: skip
    refused(credit_note(erp, customer, draft["name"], item, -1), "ValidationError", "Invalid Return Against")
    refused(credit_note(erp, customer, note["name"], item, -1), "ValidationError", "Invalid Return Against")
    pay = {"payment_type": "Pay", "party_type": "Customer", "party": customer, "paid_amount": "10.10",
           "paid_from": "Stripe Clearing - SB", "paid_to": "Debtors - SB", "reference_no": "re_3Q1",
           "reference_date": "2026-11-27", "docstatus": 1,
           "references": [{"reference_doctype": "Sales Invoice", "reference_name": note["name"],
                           "allocated_amount": "-10.11"}]}  # fmt: skip
    refused(erp.post("/api/resource/Payment Entry", json=pay), "ValidationError", "Total Allocated Amount")
    pay["paid_amount"] = "10.11"
    refused(erp.post("/api/resource/Payment Entry", json=pay), "ValidationError", "outstanding amount")
    pay["paid_amount"], pay["references"][0]["allocated_amount"] = "10.10", "-10.10"
    entry = data(erp.post("/api/resource/Payment Entry", json=pay))
    assert entry["payment_type"] == "Pay" and entry["status"] == "Submitted"
    settled = data(erp.get(f"/api/resource/Sales Invoice/{note['name']}"))
    assert settled["outstanding_amount"] == Decimal("0.00")
    data(erp.put(f"/api/resource/Payment Entry/{entry['name']}", json={"docstatus": 2}))
    assert data(erp.get(f"/api/resource/Sales Invoice/{note['name']}"))["outstanding_amount"] == Decimal(
        "-10.10"
    )


def test_credit_note_can_reduce_the_original_invoice_outstanding_instead(erp: httpx.Client) -> None:
    customer, invoice = customer_and_invoice(erp, qty=3)
    item = invoice["items"][0]["item_code"]
    note = data(credit_note(erp, customer, invoice["name"], item, -2, update_outstanding_for_self=0))
    assert note["outstanding_amount"] == Decimal("0.00") and note["grand_total"] == Decimal("-20.20")
    original = data(erp.get(f"/api/resource/Sales Invoice/{invoice['name']}"))
    assert (original["outstanding_amount"], original["status"]) == (Decimal("10.10"), "Partly Paid")
    data(erp.put(f"/api/resource/Sales Invoice/{note['name']}", json={"docstatus": 2}))
    assert data(erp.get(f"/api/resource/Sales Invoice/{invoice['name']}"))["outstanding_amount"] == Decimal(
        "30.30"
    )
    again = data(credit_note(erp, customer, invoice["name"], item, -3))  # the cancelled note no longer counts
    assert again["grand_total"] == Decimal("-30.30")


def test_standalone_credit_note_needs_no_original(erp: httpx.Client) -> None:
    customer, invoice = customer_and_invoice(erp)
    note = data(credit_note(erp, customer, None, invoice["items"][0]["item_code"], -5))
    assert note["grand_total"] == Decimal("-50.50") and note["return_against"] is None


def test_invoice_allocates_its_orders_advances_automatically_and_repoints_the_payment_entry(
    erp: httpx.Client,
) -> None:
    n = next(_seq)
    customer = data(erp.post("/api/resource/Customer", json={"customer_name": f"Buyer {n}"}))["name"]
    data(erp.post("/api/resource/Item", json={"item_code": f"ADV-{n}", "standard_rate": "10.00"}))
    order = data(erp.post("/api/resource/Sales Order", json={
        "customer": customer, "docstatus": 1, "items": [{"item_code": f"ADV-{n}", "qty": 3}]}))  # fmt: skip
    entry = data(erp.post("/api/resource/Payment Entry", json={
        "payment_type": "Receive", "party_type": "Customer", "party": customer, "paid_amount": "25.00",
        "paid_to": "Stripe Clearing - SB", "reference_no": f"ch_adv{n}", "reference_date": "2026-11-27",
        "docstatus": 1, "references": [{"reference_doctype": "Sales Order", "reference_name": order["name"],
                                         "allocated_amount": "25.00"}]}))  # fmt: skip
    row = entry["references"][0]["name"]
    body = {"customer": customer, "items": [{"item_code": f"ADV-{n}", "qty": 3, "sales_order": order["name"]}]}
    plain = data(erp.post("/api/resource/Sales Invoice", json=body))  # without the flag: no advances
    assert (plain["advances"], plain["outstanding_amount"]) == ([], Decimal("30.00"))
    draft = data(erp.post("/api/resource/Sales Invoice", json={**body, "allocate_advances_automatically": 1}))
    (advance,) = draft["advances"]
    assert (advance["reference_type"], advance["reference_name"], advance["reference_row"]) == (
        "Payment Entry", entry["name"], row)
    assert (advance["advance_amount"], advance["allocated_amount"]) == (Decimal("25.00"), Decimal("25.00"))
    assert (draft["total_advance"], draft["outstanding_amount"]) == (Decimal("25.00"), Decimal("5.00"))
    assert data(erp.get(f"/api/resource/Payment Entry/{entry['name']}"))["references"][0]["reference_doctype"] == (
        "Sales Order")  # a draft moves nothing
    invoice = data(erp.put(f"/api/resource/Sales Invoice/{draft['name']}", json={"docstatus": 1}))
    assert (invoice["outstanding_amount"], invoice["status"]) == (Decimal("5.00"), "Partly Paid")
    (ref,) = data(erp.get(f"/api/resource/Payment Entry/{entry['name']}"))["references"]
    assert (ref["reference_doctype"], ref["reference_name"], ref["allocated_amount"]) == (
        "Sales Invoice", invoice["name"], Decimal("25.00"))
    # the advance is spent: a second invoice of the order finds none; the rest is paid against the invoice
    again = data(erp.post("/api/resource/Sales Invoice", json={**body, "allocate_advances_automatically": 1}))
    assert again["advances"] == []
    rest = data(erp.post("/api/resource/Payment Entry", json={
        "payment_type": "Receive", "party_type": "Customer", "party": customer, "paid_amount": "5.00",
        "paid_to": "Stripe Clearing - SB", "reference_no": f"ch_rest{n}", "reference_date": "2026-11-27",
        "docstatus": 1, "references": [{"reference_doctype": "Sales Invoice", "reference_name": invoice["name"],
                                         "allocated_amount": "5.00"}]}))  # fmt: skip
    assert rest["status"] == "Submitted"
    paid = data(erp.get(f"/api/resource/Sales Invoice/{invoice['name']}"))
    assert (paid["outstanding_amount"], paid["status"]) == (Decimal("0.00"), "Paid")


def test_an_advance_larger_than_the_invoice_is_split(erp: httpx.Client) -> None:
    n = next(_seq)
    customer = data(erp.post("/api/resource/Customer", json={"customer_name": f"Buyer {n}"}))["name"]
    data(erp.post("/api/resource/Item", json={"item_code": f"ADV-{n}", "standard_rate": "10.00"}))
    order = data(erp.post("/api/resource/Sales Order", json={
        "customer": customer, "docstatus": 1, "items": [{"item_code": f"ADV-{n}", "qty": 3}]}))  # fmt: skip
    entry = data(erp.post("/api/resource/Payment Entry", json={
        "payment_type": "Receive", "party_type": "Customer", "party": customer, "paid_amount": "30.00",
        "paid_to": "Stripe Clearing - SB", "reference_no": f"ch_adv{n}", "reference_date": "2026-11-27",
        "docstatus": 1, "references": [{"reference_doctype": "Sales Order", "reference_name": order["name"],
                                         "allocated_amount": "30.00"}]}))  # fmt: skip
    invoice = data(erp.post("/api/resource/Sales Invoice", json={
        "customer": customer, "allocate_advances_automatically": 1, "docstatus": 1,
        "items": [{"item_code": f"ADV-{n}", "qty": 1, "sales_order": order["name"]}]}))  # fmt: skip
    assert (invoice["advances"][0]["allocated_amount"], invoice["status"]) == (Decimal("10.00"), "Paid")
    refs = data(erp.get(f"/api/resource/Payment Entry/{entry['name']}"))["references"]
    assert [(r["reference_doctype"], r["allocated_amount"]) for r in refs] == [
        ("Sales Order", Decimal("20.00")), ("Sales Invoice", Decimal("10.00"))]
