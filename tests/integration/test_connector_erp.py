"""HttpErpGateway against the sandbox ERPNext simulator on a free port (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from commerce_bridge import errors as E
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer

KEY, SECRET = "test-key", "test-secret"


@pytest.fixture(scope="module")
def erp() -> Iterator[PeerServer]:
    with PeerServer(build_erp(api_key=KEY, api_secret=SECRET)) as server:
        yield server


@pytest.fixture
def gateway(erp: PeerServer) -> Iterator[HttpErpGateway]:
    httpx.delete(erp.url + "/_sandbox/faults").raise_for_status()
    gw = HttpErpGateway(erp.url, KEY, SECRET)
    yield gw
    gw.close()


def order_doc(customer: str, po_no: str, item: str) -> dict[str, Any]:
    return {"customer": customer, "po_no": po_no, "currency": "USD", "transaction_date": "2026-11-27",
            "items": [{"item_code": item, "qty": 2, "rate": "12.50"}],
            "taxes": [{"charge_type": "Actual", "account_head": "Tax - SB", "tax_amount": "1.20"}]}


def test_customer_created_twice_with_the_same_email_is_one_customer(gateway: HttpErpGateway) -> None:
    doc = {"customer_name": "Ann Lee", "email_id": "ann.cust@example.com", "customer_type": "Individual"}
    first = gateway.ensure_customer(doc)
    second = gateway.ensure_customer(doc)
    assert first["name"] == second["name"]
    assert len(gateway.list_docs("Customer", filters=[["email_id", "=", "ann.cust@example.com"]])) == 1


def test_item_created_twice_is_one_item(gateway: HttpErpGateway) -> None:
    first = gateway.ensure_item({"item_code": "SKU-ERP-1", "item_name": "Widget", "standard_rate": "12.50"})
    second = gateway.ensure_item({"item_code": "SKU-ERP-1", "item_name": "Widget", "standard_rate": "12.50"})
    assert first["name"] == second["name"] == "SKU-ERP-1"
    assert first["standard_rate"] == "12.50"  # decimals come back as strings


def test_sales_order_and_payment_entry_are_created_once_and_submitted(gateway: HttpErpGateway) -> None:
    customer = gateway.ensure_customer({"customer_name": "Bo Chen", "email_id": "bo.so@example.com"})
    gateway.ensure_item({"item_code": "SKU-ERP-2", "standard_rate": "12.50"})
    so = gateway.ensure_sales_order(order_doc(customer["name"], "WEB-900001", "SKU-ERP-2"))
    again = gateway.ensure_sales_order(order_doc(customer["name"], "WEB-900001", "SKU-ERP-2"))
    assert so["name"] == again["name"] and so["docstatus"] == 1
    assert so["grand_total"] == "26.20"
    payment = {"payment_type": "Receive", "party_type": "Customer", "party": customer["name"],
               "paid_amount": "26.20", "received_amount": "26.20", "paid_to": "Stripe - SB",
               "reference_no": "ch_erp_1", "reference_date": "2026-11-27", "mode_of_payment": "Stripe",
               "references": [{"reference_doctype": "Sales Order", "reference_name": so["name"],
                               "allocated_amount": "26.20"}]}
    pe = gateway.ensure_payment_entry(payment)
    assert gateway.ensure_payment_entry(payment)["name"] == pe["name"] and pe["docstatus"] == 1
    assert gateway.get_doc("Sales Order", so["name"])["advance_paid"] == "26.20"
    assert [r["name"] for r in gateway.list_docs("Payment Entry", filters={"reference_no": "ch_erp_1"})] == [pe["name"]]


def test_a_draft_left_by_a_crash_is_found_and_submitted(gateway: HttpErpGateway) -> None:
    customer = gateway.ensure_customer({"customer_name": "Cy Draft"})
    gateway.ensure_item({"item_code": "SKU-ERP-3", "standard_rate": "5.00"})
    draft = gateway.create_doc("Sales Order", order_doc(customer["name"], "WEB-900002", "SKU-ERP-3"))
    assert draft["docstatus"] == 0
    done = gateway.ensure_sales_order(order_doc(customer["name"], "WEB-900002", "SKU-ERP-3"))
    assert done["name"] == draft["name"] and done["docstatus"] == 1
    assert gateway.submit("Sales Order", done["name"])["docstatus"] == 1


def test_missing_document_is_not_found(gateway: HttpErpGateway) -> None:
    with pytest.raises(E.NotFound) as info:
        gateway.get_doc("Sales Order", "SAL-ORD-1999-00001")
    assert info.value.details["exc_type"] == "DoesNotExistError"


def test_validation_failure_is_rejected_with_the_server_message(gateway: HttpErpGateway) -> None:
    gateway.ensure_item({"item_code": "SKU-ERP-4"})
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.ensure_sales_order(order_doc("Nobody Known", "WEB-900003", "SKU-ERP-4"))
    assert "Could not find Customer" in str(info.value)
    assert info.value.errors and info.value.details["http_status"] == 417


def test_missing_key_is_rejected_before_any_call(gateway: HttpErpGateway) -> None:
    with pytest.raises(E.UpstreamRejected):
        gateway.ensure_sales_order({"customer": "x", "items": []})


def test_wrong_secret_is_auth_failed(erp: PeerServer) -> None:
    with pytest.raises(E.UpstreamAuthFailed):
        HttpErpGateway(erp.url, KEY, "wrong").get_doc("Customer", "x")


def test_injected_503_and_429(erp: PeerServer, gateway: HttpErpGateway) -> None:
    httpx.put(erp.url + "/_sandbox/faults", json={"rules": [
        {"path": "/api/resource/Customer*", "status": 503, "times": 1}]}).raise_for_status()
    with pytest.raises(E.UpstreamUnavailable):
        gateway.list_docs("Customer")
    httpx.put(erp.url + "/_sandbox/faults", json={"rules": [
        {"path": "/api/resource/Customer*", "status": 429, "retry_after": 2, "times": 1}]}).raise_for_status()
    with pytest.raises(E.RateLimited) as info:
        gateway.list_docs("Customer")
    assert info.value.retry_after == 2.0
    assert isinstance(gateway.list_docs("Customer"), list)


def test_the_limiter_hook_runs_before_every_erp_request(erp: PeerServer) -> None:
    calls: list[int] = []
    gw = HttpErpGateway(erp.url, KEY, SECRET, before_request=lambda: calls.append(1))
    gw.list_docs("Customer")
    gw.list_docs("Item")
    gw.close()
    assert calls == [1, 1]  # one slot per HTTP request


def test_pages_walk_a_whole_listing_in_order_and_stop_at_the_first_short_page(gateway: HttpErpGateway) -> None:
    codes = [f"SKU-PAGES-{i}" for i in range(5)]
    for code in codes:
        gateway.ensure_item({"item_code": code, "standard_rate": "1.00"})
    mine = [["item_code", "like", "SKU-PAGES-%"]]
    by_two = list(gateway.pages("Item", filters=mine, fields=["item_code"], order_by="item_code asc", page_size=2))
    assert [[r["item_code"] for r in page] for page in by_two] == [codes[0:2], codes[2:4], codes[4:5]]
    by_five = list(gateway.pages("Item", filters=mine, fields=["item_code"], order_by="item_code asc", page_size=5))
    assert [len(p) for p in by_five] == [5]  # a full last page: one more (empty) read, nothing yielded for it
    assert list(gateway.pages("Item", filters=[["item_code", "=", "SKU-NONE"]], page_size=5)) == []
