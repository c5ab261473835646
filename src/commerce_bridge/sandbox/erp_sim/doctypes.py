"""The ERPNext simulator's DocTypes: naming, links, child tables, totals, validation, submit and cancel.

Money rules: amounts are Decimals at frappe's precision 2, never floats. Returns and refunds:
- a Sales Invoice with ``is_return: 1`` is a credit note: its item quantities are negative, so its totals are
  negative; ``return_against`` (optional, as in ERPNext) must name a *submitted* Sales Invoice of the same
  customer that is not itself a return ("Invalid Return Against: …"); each row's item must be on that
  invoice, at no higher rate, and no more may be returned than was sold minus what submitted credit notes
  already returned ("Row # 1: Cannot return more than 2 for Item SKU-A"); the credit note's grand total
  cannot exceed what is left of the original's;
- ``update_outstanding_for_self`` (default 1) keeps the credit note's own negative ``outstanding_amount``,
  which a Payment Entry of type ``Pay`` settles with a *negative* ``allocated_amount``; with 0, submitting
  the credit note reduces the original invoice's outstanding instead (and cancelling restores it);
- a Payment Entry reference must name a submitted Sales Invoice or Sales Order of the entry's customer
  ("… is not associated with Customer …", "… must be submitted"); one to an invoice with negative outstanding
  must allocate a negative amount no larger in size than that outstanding; a positive outstanding takes a
  positive allocation up to it. Submitting the entry reduces the invoice's ``outstanding_amount`` by the
  allocation (0: status Paid; cancelling restores it) or adds it to the Sales Order's ``advance_paid``.
Advances (as ERPNext's ``set_advances``, inferred from its behaviour): a Sales Invoice that is not a return with
``allocate_advances_automatically: 1`` gets, each time it is saved as a draft or submitted, its ``advances`` rows
(``reference_type`` Payment Entry, ``reference_name``, ``reference_row``, ``advance_amount``,
``allocated_amount``) from the submitted Receive Payment Entries of its customer allocated to the Sales Orders its
items name, then the customer's unallocated ones, oldest first, up to its grand total; its outstanding is the grand
total minus them. Submitting it re-points each entry's Sales Order row to the invoice (splitting off the
remainder; the Sales Order's ``advance_paid`` is left as it was). Cancelling such an invoice is not simulated.
Journal Entry accounts are checked against the chart (see ``accounts.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.erp_sim import accounts, masters
from commerce_bridge.sandbox.erp_sim.errors import FrappeError

Doc = dict[str, Any]
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def dec(value: Any, field_name: str) -> Decimal:
    """An exact Decimal from a JSON number or string; floats never reach here (JSON is parsed to Decimal)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip() or "0")
        except InvalidOperation as exc:
            raise FrappeError("ValidationError", f"{field_name}: {value!r} is not a number") from exc
    elif value is None:
        result = Decimal(0)
    else:
        raise FrappeError("ValidationError", f"{field_name}: {value!r} is not a number")
    if not result.is_finite():
        raise FrappeError("ValidationError", f"{field_name}: {value!r} is not a number")
    return result


def cur(value: Any, field_name: str) -> Decimal:
    """A currency amount at frappe's default precision (2)."""
    return dec(value, field_name).quantize(CENT)


@dataclass
class DocType:
    """One simulated DocType."""

    name: str
    series: str | None = None  # e.g. "SAL-ORD-.YYYY.-" -> SAL-ORD-2026-00001
    name_field: str | None = None
    submittable: bool = False
    children: dict[str, str] = field(default_factory=dict)  # table field -> child doctype
    mandatory: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)  # field -> linked doctype
    defaults: dict[str, Any] = field(default_factory=dict)
    compute: Callable[[DocStore, Doc], None] | None = None
    on_submit: Callable[[DocStore, Doc], None] | None = None
    on_cancel: Callable[[DocStore, Doc], None] | None = None
    status_for: Callable[[Doc], str] | None = None
    namer: Callable[[DocStore, Doc], str] | None = None
    after_save: Callable[[Any, Doc, bool], None] | None = None  # (simulator, saved doc, is_new), like on_update


def _child_rows(doc: Doc, table: str) -> list[Doc]:
    rows = doc.get(table) or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise FrappeError("ValidationError", f"{table} must be a list of rows")
    return rows


def _compute_selling(store: DocStore, doc: Doc) -> None:
    items = _child_rows(doc, "items")
    if not items:
        raise FrappeError("MandatoryError", f"Error: Value missing for {doc['doctype']}: Items")
    total_qty, total = Decimal(0), ZERO
    for row in items:
        if not row.get("item_code"):
            raise FrappeError("MandatoryError", f"Error: Value missing for {doc['doctype']} Item: Item Code")
        item = store.get("Item", str(row["item_code"]))
        if item is None:
            raise FrappeError("LinkValidationError", f"Could not find Row #{row.get('idx')}: Item Code: "
                                                     f"{row['item_code']}")
        qty = dec(row.get("qty", 1), "qty")
        if qty == 0:
            raise FrappeError("ValidationError", f"Row #{row.get('idx')}: Quantity cannot be zero")
        rate = cur(row.get("rate") if row.get("rate") is not None else item.get("standard_rate", 0), "rate")
        row.update({"qty": qty, "rate": rate, "amount": cur(qty * rate, "amount")})
        row.setdefault("item_name", item.get("item_name"))
        row.setdefault("uom", item.get("stock_uom", "Nos"))
        total_qty += qty
        total += row["amount"]
    taxes = _child_rows(doc, "taxes")
    tax_total = ZERO
    for row in taxes:
        row["tax_amount"] = cur(row.get("tax_amount", 0), "tax_amount")
        row.setdefault("charge_type", "Actual")
        tax_total += row["tax_amount"]
    discount = cur(doc.get("discount_amount", 0), "discount_amount")
    doc.update({"total_qty": total_qty, "total": total, "net_total": total, "base_total": total,
                "total_taxes_and_charges": tax_total, "discount_amount": discount})
    grand = cur(total + tax_total - discount, "grand_total")
    doc.update({"grand_total": grand, "base_grand_total": grand, "rounded_total": grand,
                "rounding_adjustment": ZERO})
    if doc["doctype"] == "Sales Invoice":
        doc["outstanding_amount"] = grand if doc.get("docstatus") == 1 else doc.get("outstanding_amount", grand)
        if doc.get("docstatus", 0) == 0:
            doc["outstanding_amount"] = grand
        if doc.get("is_return"):
            _check_return(store, doc)
        else:
            _set_advances(store, doc)


def _set_advances(store: DocStore, doc: Doc) -> None:
    """The ``advances`` rows of a draft invoice with ``allocate_advances_automatically`` (ERPNext's set_advances)."""
    if doc.get("allocate_advances_automatically") not in (1, "1", True):
        doc["advances"] = [r for r in _child_rows(doc, "advances") if r.get("allocated_amount")]
    else:
        orders = {str(r["sales_order"]) for r in _child_rows(doc, "items") if r.get("sales_order")}
        candidates: list[tuple[str, str, Doc | None, Decimal]] = []
        entries = sorted((pe for pe in store.all("Payment Entry")
                          if pe.get("docstatus") == 1 and pe.get("payment_type") == "Receive"
                          and pe.get("party_type") == "Customer" and pe.get("party") == doc.get("customer")),
                         key=lambda pe: (str(pe.get("posting_date")), str(pe.get("creation"))))
        for pe in entries:
            for row in pe.get("references") or []:
                if row.get("reference_doctype") == "Sales Order" and row.get("reference_name") in orders:
                    candidates.append((str(pe["creation"]), pe["name"], row, dec(row["allocated_amount"], "amount")))
        for pe in entries:
            if dec(pe.get("unallocated_amount", 0), "unallocated_amount") > 0:
                candidates.append((str(pe["creation"]), pe["name"], None, dec(pe["unallocated_amount"], "amount")))
        left, rows = dec(doc["grand_total"], "grand_total"), []
        for _created, pe_name, row, amount in candidates:
            if left <= 0 or amount <= 0:
                continue
            take = min(amount, left)
            left -= take
            rows.append({"reference_type": "Payment Entry", "reference_name": pe_name,
                         "reference_row": row["name"] if row else None, "remarks": "",
                         "advance_amount": amount, "allocated_amount": cur(take, "allocated_amount")})
        now = str(doc.get("modified") or doc.get("creation") or "")
        doc["advances"] = [child_row(doc, "advances", "Sales Invoice Advance", r, i + 1, now)
                           for i, r in enumerate(rows)]
    advance = sum((dec(r["allocated_amount"], "allocated_amount") for r in doc["advances"]), ZERO)
    doc["total_advance"] = cur(advance, "total_advance")
    doc["outstanding_amount"] = cur(dec(doc["grand_total"], "grand_total") - advance, "outstanding_amount")


def _apply_advances(store: DocStore, doc: Doc) -> None:
    """On submit: each advance's Payment Entry row to the Sales Order now points at the invoice (remainder split)."""
    for adv in doc.get("advances") or []:
        pe = store.get("Payment Entry", str(adv["reference_name"]))
        if pe is None or pe.get("docstatus") != 1:
            raise FrappeError("ValidationError", f"Payment Entry {adv['reference_name']} is not submitted")
        pe = dict(pe)
        refs = [dict(r) for r in pe.get("references") or []]
        take = dec(adv["allocated_amount"], "allocated_amount")
        new = {"reference_doctype": "Sales Invoice", "reference_name": doc["name"], "allocated_amount": take,
               "total_amount": doc["grand_total"], "outstanding_amount": doc["grand_total"]}
        if adv.get("reference_row"):
            row = next((r for r in refs if r.get("name") == adv["reference_row"]), None)
            if row is None or dec(row["allocated_amount"], "allocated_amount") < take:
                raise FrappeError("ValidationError", f"Payment Entry {pe['name']} has been modified after you "
                                                     "pulled it. Please pull it again.")
            rest = dec(row["allocated_amount"], "allocated_amount") - take
            if rest:
                row["allocated_amount"] = cur(rest, "allocated_amount")
            else:
                refs.remove(row)
        else:
            if dec(pe.get("unallocated_amount", 0), "unallocated_amount") < take:
                raise FrappeError("ValidationError", f"Payment Entry {pe['name']} has been modified after you "
                                                     "pulled it. Please pull it again.")
            pe["unallocated_amount"] = cur(dec(pe["unallocated_amount"], "unallocated_amount") - take, "unallocated")
            pe["total_allocated_amount"] = cur(dec(pe.get("total_allocated_amount", 0), "allocated") + take,
                                               "total_allocated_amount")
        refs.append(child_row(pe, "references", "Payment Entry Reference", new, len(refs) + 1,
                              str(doc.get("modified") or "")))
        for i, r in enumerate(refs):
            r["idx"] = i + 1
            r["docstatus"] = 1
        pe["references"] = refs
        store.put("Payment Entry", pe["name"], pe)


def _submit_invoice(store: DocStore, doc: Doc) -> None:
    _apply_return(store, doc, 1)
    if not doc.get("is_return"):
        _apply_advances(store, doc)


def _returned_before(store: DocStore, doc: Doc) -> tuple[dict[str, Decimal], Decimal]:
    """Quantities per item and the amount already credited by submitted returns against the same invoice."""
    qty: dict[str, Decimal] = {}
    amount = ZERO
    for other in store.all("Sales Invoice"):
        if (other.get("is_return") and other.get("return_against") == doc["return_against"]
                and other.get("docstatus") == 1 and other.get("name") != doc.get("name")):
            amount += -dec(other.get("grand_total", 0), "grand_total")
            for row in other.get("items") or []:
                qty[row["item_code"]] = qty.get(row["item_code"], Decimal(0)) - dec(row["qty"], "qty")
    return qty, amount


def _check_return(store: DocStore, doc: Doc) -> None:
    doc["is_return"] = 1
    self_outstanding = doc.get("update_outstanding_for_self", 1) in (1, "1", True)
    doc["update_outstanding_for_self"] = 1 if self_outstanding else 0
    if not self_outstanding:
        doc["outstanding_amount"] = ZERO
    for row in doc["items"]:
        if row["qty"] >= 0:
            raise FrappeError("ValidationError", f"Row # {row.get('idx')}: Qty must be negative in return document")
    if not doc.get("return_against"):
        return
    original = store.get("Sales Invoice", str(doc["return_against"]))
    if original is None:
        raise FrappeError("LinkValidationError", f"Could not find Return Against: {doc['return_against']}")
    if (original.get("docstatus") != 1 or original.get("customer") != doc.get("customer")
            or original.get("is_return")):
        raise FrappeError("ValidationError", f"Invalid Return Against: {doc['return_against']}")
    sold: dict[str, tuple[Decimal, Decimal]] = {}
    for row in original.get("items") or []:
        q, r = sold.get(row["item_code"], (Decimal(0), ZERO))
        sold[row["item_code"]] = (q + dec(row["qty"], "qty"), max(r, cur(row["rate"], "rate")))
    returned, credited = _returned_before(store, doc)
    wanted: dict[str, Decimal] = {}
    for row in doc["items"]:
        code, idx = row["item_code"], row.get("idx")
        if code not in sold:
            raise FrappeError("ValidationError", f"Row # {idx}: Returned Item {code} does not exist in Sales Invoice "
                                                 f"{original['name']}")
        if row["rate"] > sold[code][1]:
            raise FrappeError("ValidationError", f"Row # {idx}: Rate cannot be greater than the rate used in Sales "
                                                 f"Invoice {original['name']}")
        wanted[code] = wanted.get(code, Decimal(0)) - row["qty"]
        left = sold[code][0] - returned.get(code, Decimal(0))
        if wanted[code] > left:
            raise FrappeError("ValidationError", f"Row # {idx}: Cannot return more than {left} for Item {code}")
    left_amount = dec(original.get("grand_total", 0), "grand_total") - credited
    if -doc["grand_total"] > left_amount:
        raise FrappeError("ValidationError", f"Total return amount {-doc['grand_total']} cannot be greater than "
                                             f"the amount not yet returned on {original['name']} ({left_amount})")


def _apply_return(store: DocStore, doc: Doc, sign: int) -> None:
    """A credit note with ``update_outstanding_for_self: 0`` moves the original invoice's outstanding."""
    if not doc.get("is_return") or not doc.get("return_against") or doc.get("update_outstanding_for_self"):
        return
    original = store.get("Sales Invoice", str(doc["return_against"]))
    if original is None:
        return
    original = dict(original)
    outstanding = dec(original.get("outstanding_amount", 0), "outstanding_amount")
    original["outstanding_amount"] = cur(outstanding + sign * dec(doc["grand_total"], "grand_total"), "outstanding")
    original["status"] = _invoice_status(original)
    store.put("Sales Invoice", original["name"], original)


def _order_status(doc: Doc) -> str:
    return {0: "Draft", 1: "To Deliver and Bill", 2: "Cancelled"}[doc.get("docstatus", 0)]


def _invoice_status(doc: Doc) -> str:
    if doc.get("docstatus", 0) == 0:
        return "Draft"
    if doc["docstatus"] == 2:
        return "Cancelled"
    if doc.get("is_return"):
        return "Return"
    outstanding = dec(doc.get("outstanding_amount", 0), "outstanding_amount")
    if outstanding <= 0:
        return "Paid"
    return "Partly Paid" if outstanding < dec(doc.get("grand_total", 0), "grand_total") else "Unpaid"


def _compute_payment(store: DocStore, doc: Doc) -> None:
    if doc.get("payment_type") not in ("Receive", "Pay", "Internal Transfer"):
        raise FrappeError("ValidationError", "Payment Type must be one of Receive, Pay, Internal Transfer")
    paid = cur(doc.get("paid_amount", 0), "paid_amount")
    if paid <= 0:
        raise FrappeError("ValidationError", "Paid Amount must be greater than zero")
    doc["paid_amount"] = paid
    doc["received_amount"] = cur(doc.get("received_amount", paid), "received_amount")
    doc["base_paid_amount"] = paid
    allocated = ZERO
    for row in _child_rows(doc, "references"):
        row["allocated_amount"] = cur(row.get("allocated_amount", 0), "allocated_amount")
        target_type, target_name = row.get("reference_doctype"), row.get("reference_name")
        if target_type not in ("Sales Invoice", "Sales Order") or not target_name:
            raise FrappeError("ValidationError", "References must name a Sales Invoice or Sales Order")
        target = store.get(target_type, str(target_name))
        if target is None:
            raise FrappeError("LinkValidationError", f"Could not find {target_type}: {target_name}")
        if doc.get("party_type") == "Customer" and doc.get("party") and target.get("customer") != doc["party"]:
            raise FrappeError("ValidationError", f"{target_type} {target_name} is not associated with Customer "
                                                 f"{doc['party']}")
        if target.get("docstatus") != 1:
            raise FrappeError("ValidationError", f"{target_type} {target_name} must be submitted")
        allocated += row["allocated_amount"]
    if abs(allocated) > paid:
        raise FrappeError("ValidationError", "Total Allocated Amount cannot be greater than Paid Amount")
    doc["total_allocated_amount"] = allocated
    doc["unallocated_amount"] = paid - allocated
    party_type = doc.get("party_type")
    if party_type == "Customer" and doc.get("party") and store.get("Customer", str(doc["party"])) is None:
        raise FrappeError("LinkValidationError", f"Could not find Party: {doc['party']}")


def _apply_payment(store: DocStore, doc: Doc, sign: int) -> None:
    for row in doc.get("references") or []:
        target = store.get(row["reference_doctype"], str(row["reference_name"]))
        if target is None:
            continue
        target = dict(target)
        amount = dec(row["allocated_amount"], "allocated_amount") * sign
        if row["reference_doctype"] == "Sales Invoice":
            outstanding = dec(target.get("outstanding_amount", 0), "outstanding_amount")
            if sign > 0 and (amount > outstanding if outstanding >= 0 else not outstanding <= amount < 0):
                raise FrappeError("ValidationError", f"Row #{row.get('idx')}: Allocated Amount {amount} cannot be "
                                                     f"greater than outstanding amount {outstanding}")
            target["outstanding_amount"] = cur(outstanding - amount, "outstanding_amount")
            target["status"] = _invoice_status(target)
        else:
            target["advance_paid"] = cur(dec(target.get("advance_paid", 0), "advance_paid") + amount, "advance_paid")
        store.put(row["reference_doctype"], target["name"], target)


def _compute_journal(store: DocStore, doc: Doc) -> None:
    rows = _child_rows(doc, "accounts")
    if not rows:
        raise FrappeError("MandatoryError", "Error: Value missing for Journal Entry: Accounting Entries")
    debit, credit = ZERO, ZERO
    for row in rows:
        if not row.get("account"):
            raise FrappeError("MandatoryError", f"Error: Value missing for Journal Entry Account: Account "
                                                f"(row {row.get('idx')})")
        row_debit = cur(row.get("debit_in_account_currency", row.get("debit", 0)), "debit")
        row_credit = cur(row.get("credit_in_account_currency", row.get("credit", 0)), "credit")
        if row_debit < 0 or row_credit < 0:
            raise FrappeError("ValidationError", f"Row {row.get('idx')}: Debit and Credit cannot be negative")
        row.update({"debit_in_account_currency": row_debit, "debit": row_debit,
                    "credit_in_account_currency": row_credit, "credit": row_credit})
        debit += row_debit
        credit += row_credit
    accounts.check_journal_rows(store, doc, rows)
    accounts.check_journal_reference(doc)
    doc.update({"total_debit": debit, "total_credit": credit, "difference": debit - credit})
    if debit != credit:
        raise FrappeError("ValidationError", f"Total Debit must be equal to Total Credit. "
                                             f"The difference is {debit - credit}")


def _no_new_company(store: DocStore, doc: Doc) -> None:
    raise FrappeError("ValidationError", "The sandbox seeds its companies (Sandbox Bridge, Sandbox Company); "
                                         "creating one is not simulated")


DOCTYPES: dict[str, DocType] = {
    d.name: d for d in (
        DocType("Customer", name_field="customer_name", mandatory=("customer_name",),
                defaults={"customer_type": "Company", "customer_group": "All Customer Groups",
                          "territory": "All Territories", "disabled": 0},
                after_save=masters.customer_after_save),
        DocType("Item", name_field="item_code", mandatory=("item_code",),
                defaults={"item_group": "All Item Groups", "stock_uom": "Nos", "is_stock_item": 1, "disabled": 0},
                compute=lambda store, doc: doc.update(
                    {"item_name": doc.get("item_name") or doc["item_code"],
                     "description": doc.get("description") or doc.get("item_name") or doc["item_code"],
                     "standard_rate": cur(doc.get("standard_rate", 0), "standard_rate")})),
        DocType("Contact", mandatory=("first_name",),
                children={"email_ids": "Contact Email", "phone_nos": "Contact Phone", "links": "Dynamic Link"},
                defaults={"status": "Passive", "unsubscribed": 0}, compute=masters.compute_contact,
                namer=masters.contact_name),
        DocType("Address", mandatory=("address_line1", "city", "country"), children={"links": "Dynamic Link"},
                defaults={"address_type": "Billing"}, compute=masters.compute_address, namer=masters.address_name),
        DocType("Price List", name_field="price_list_name", mandatory=("price_list_name", "currency"),
                defaults={"enabled": 1}, compute=masters.compute_price_list),
        DocType("Item Price", mandatory=("item_code", "price_list"), links={"item_code": "Item"},
                defaults={"packing_unit": 0}, compute=masters.compute_item_price, namer=masters.item_price_name),
        DocType("Warehouse", mandatory=("warehouse_name", "company"), links={"company": "Company"},
                defaults={"is_group": 0, "disabled": 0}, namer=masters.warehouse_name),
        DocType("Bin", compute=masters.no_api_writes),
        DocType("Stock Entry", series="MAT-STE-.YYYY.-", submittable=True, mandatory=("stock_entry_type",),
                children={"items": "Stock Entry Detail"}, defaults={"company": accounts.COMPANIES[0][0]},
                links={"company": "Company"}, compute=masters.compute_stock_entry,
                on_submit=lambda s, d: masters.apply_stock_entry(s, d, 1),
                on_cancel=lambda s, d: masters.apply_stock_entry(s, d, -1),
                status_for=lambda d: {0: "Draft", 1: "Submitted", 2: "Cancelled"}[d.get("docstatus", 0)]),
        DocType("Stock Reconciliation", series="MAT-RECO-.YYYY.-", submittable=True,
                children={"items": "Stock Reconciliation Item"},
                defaults={"company": accounts.COMPANIES[0][0], "purpose": "Stock Reconciliation"},
                links={"company": "Company"}, compute=masters.compute_reconciliation,
                on_submit=lambda s, d: masters.apply_reconciliation(s, d, 1),
                on_cancel=lambda s, d: masters.apply_reconciliation(s, d, -1),
                status_for=lambda d: {0: "Draft", 1: "Submitted", 2: "Cancelled"}[d.get("docstatus", 0)]),
        DocType("Sales Order", series="SAL-ORD-.YYYY.-", submittable=True, mandatory=("customer",),
                children={"items": "Sales Order Item", "taxes": "Sales Taxes and Charges"},
                links={"customer": "Customer"}, defaults={"currency": "USD", "order_type": "Sales",
                                                          "advance_paid": ZERO, "per_billed": 0, "per_delivered": 0},
                compute=_compute_selling, status_for=_order_status),
        DocType("Sales Invoice", series="ACC-SINV-.YYYY.-", submittable=True, mandatory=("customer",),
                children={"items": "Sales Invoice Item", "taxes": "Sales Taxes and Charges",
                          "advances": "Sales Invoice Advance"},
                links={"customer": "Customer"},
                defaults={"currency": "USD", "is_return": 0, "allocate_advances_automatically": 0},
                compute=_compute_selling, status_for=_invoice_status, on_submit=_submit_invoice,
                on_cancel=lambda s, d: _apply_return(s, d, -1)),
        DocType("Payment Entry", series="ACC-PAY-.YYYY.-", submittable=True, mandatory=("payment_type",),
                children={"references": "Payment Entry Reference"},
                defaults={"party_type": "Customer", "paid_to_account_currency": "USD"},
                compute=_compute_payment, on_submit=lambda s, d: _apply_payment(s, d, 1),
                on_cancel=lambda s, d: _apply_payment(s, d, -1),
                status_for=lambda d: {0: "Draft", 1: "Submitted", 2: "Cancelled"}[d.get("docstatus", 0)]),
        DocType("Journal Entry", series="ACC-JV-.YYYY.-", submittable=True, children={"accounts": "Journal Entry Account"},
                defaults={"voucher_type": "Journal Entry"}, compute=_compute_journal,
                status_for=lambda d: {0: "Draft", 1: "Submitted", 2: "Cancelled"}[d.get("docstatus", 0)]),
        DocType("Account", mandatory=("account_name", "company"), links={"company": "Company"},
                compute=accounts.inherit, namer=accounts.account_name),
        DocType("Company", mandatory=("company_name", "abbr"), compute=_no_new_company),
    )
}


def resolve_doctype(name: str) -> DocType:
    found = DOCTYPES.get(name)
    if found is None:
        raise FrappeError("DoesNotExistError", f"DocType {name} not found")
    return found


def new_name(store: DocStore, doctype: DocType, doc: Doc) -> str:
    """The document name: the naming series (``SAL-ORD-2026-00001``), the DocType's namer or the name field."""
    if doctype.namer:
        return doctype.namer(store, doc)
    if doctype.series:
        year = str(date.today().year)
        prefix = doctype.series.replace(".YYYY.", year).replace(".", "")
        return f"{prefix}{store.next_value('series:' + prefix):05d}"
    base = str(doc[doctype.name_field or "name"]).strip()
    if doctype.name == "Customer":
        name, n = base, 0
        while store.get("Customer", name) is not None:
            n += 1
            name = f"{base} - {n}"
        return name
    if store.get(doctype.name, base) is not None:
        raise FrappeError("DuplicateEntryError", f"{doctype.name} {base} already exists")
    return base


def child_row(parent: Doc, table: str, child_doctype: str, row: Doc, idx: int, now: str) -> Doc:
    out = {k: v for k, v in row.items() if k not in ("parent", "parentfield", "parenttype", "doctype", "idx")}
    out.setdefault("name", secrets.token_hex(5))
    out.update({"parent": parent["name"], "parentfield": table, "parenttype": parent["doctype"],
                "doctype": child_doctype, "idx": idx, "docstatus": parent.get("docstatus", 0),
                "owner": parent.get("owner"), "creation": parent.get("creation", now), "modified": now})
    return out
