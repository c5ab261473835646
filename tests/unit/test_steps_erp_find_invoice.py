"""``erp.payment_entry.ensure`` with ``find_invoice`` (CB_ERP_INVOICE_ON=shipped): the payment goes to the invoice
made at shipping if it is submitted, else to the Sales Order (an advance), decided under the invoice's key lock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import pytest

from commerce_bridge.services.gateways import ErpGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.steps import FlowSettings
from commerce_bridge.workflows.steps.erp import actions

PARAMS = {"sales_order": "SAL-ORD-2026-00042", "customer": "CUST-00042", "amount": {"minor": 3570, "currency": "USD"},
          "reference_no": "ch_3Example"}


class Erp:
    """The calls the step makes, with the lock held at each."""

    def __init__(self, invoice: dict[str, Any] | None, locks: Locks) -> None:
        self.invoice, self.locks = invoice, locks
        self.entries: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []
        self.looked_up_under: list[list[tuple[str, str]]] = []

    def get_doc(self, doctype: str, name: str) -> dict[str, Any]:
        assert (doctype, name) == ("Sales Order", "SAL-ORD-2026-00042")
        return {"name": name, "po_no": "WEB-100001"}

    def find_by(self, doctype: str, field: str, value: Any) -> dict[str, Any] | None:
        self.looked_up_under.append(list(self.locks.held))
        assert (doctype, field, value) == ("Sales Invoice", "po_no", "WEB-100001")
        return self.invoice

    def ensure_payment_entry(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        self.entries.append((dict(doc), list(self.locks.held)))
        return {"name": "ACC-PAY-2026-00042"}


class Locks:
    def __init__(self) -> None:
        self.held: list[tuple[str, str]] = []

    @contextmanager
    def hold(self, scope: str, key: str) -> Iterator[None]:
        self.held.append((scope, key))
        try:
            yield
        finally:
            self.held.pop()


def run(found: dict[str, Any] | None, **params: Any) -> Erp:
    locks = Locks()
    erp = Erp(found, locks)
    step = actions(cast(ErpGateway, erp), FlowSettings(), cast(IdentityMap, None), cast(KeyLocks, locks))
    assert step["erp.payment_entry.ensure"](cast(StepContext, None), {**PARAMS, **params}) == {
        "name": "ACC-PAY-2026-00042"}
    return erp


def references(erp: Erp) -> list[tuple[str, str]]:
    [(doc, _held)] = erp.entries
    return [(r["reference_doctype"], r["reference_name"]) for r in doc["references"]]


def test_a_submitted_invoice_takes_the_payment_found_under_the_invoice_lock() -> None:
    erp = run({"name": "ACC-SINV-2026-00042", "docstatus": 1, "is_return": 0}, find_invoice=True)
    assert references(erp) == [("Sales Invoice", "ACC-SINV-2026-00042")]
    lock = ("erp.sales_invoice.po_no", "WEB-100001")  # the lock the gateway's ensure of the invoice holds
    assert erp.looked_up_under == [[lock]] and erp.entries[0][1] == [lock]


@pytest.mark.parametrize("invoice", [None, {"name": "ACC-SINV-2026-00042", "docstatus": 0, "is_return": 0}],
                         ids=["not billed yet", "a draft"])
def test_without_a_submitted_invoice_the_payment_is_an_advance_on_the_sales_order(
        invoice: dict[str, Any] | None) -> None:
    assert references(run(invoice, find_invoice=True)) == [("Sales Order", "SAL-ORD-2026-00042")]


def test_without_find_invoice_nothing_is_looked_up() -> None:
    erp = run({"name": "ACC-SINV-2026-00042", "docstatus": 1}, find_invoice=False)
    assert references(erp) == [("Sales Order", "SAL-ORD-2026-00042")] and erp.looked_up_under == []
    named = run(None, invoice="ACC-SINV-2026-00001", find_invoice=True)
    assert references(named) == [("Sales Invoice", "ACC-SINV-2026-00001")] and named.looked_up_under == []
