"""The ERPNext simulator's chart of accounts: companies, the seeded chart, the Account DocType and the
checks a Journal Entry's rows pass.

Rules (ERPNext's Company, Account and Journal Entry behaviour):
- every company has its own chart; an account is named ``"{account_name} - {company abbr}"``;
- the seeded chart per company is ERPNext's "Standard" template (Application of Funds (Assets), Source of
  Funds (Liabilities), Equity, Income, Expenses and their children, e.g. ``Debtors`` (Receivable),
  ``Sales``, ``Cost of Goods Sold``, ``Exchange Gain/Loss``) plus the accounts a merchant taking card payments
  through Stripe adds: ``Stripe Clearing`` and ``Stripe Payouts Bank`` (Bank: the Stripe balance, and the
  bank account payouts arrive in), ``VAT`` (Tax), ``Stripe Fees``, ``Chargebacks`` and ``Stripe Adjustments``
  (indirect expenses), ``Sales Returns and Refunds`` (direct income, the contra-revenue of refunds),
  ``Disputed Funds`` (an asset holding withdrawn dispute amounts) and ``Stripe Reconciliation Suspense`` (a
  temporary asset account for payout lines the bridge cannot match yet);
- seeded companies: ``Sandbox Bridge`` (abbr ``SB``, the bridge's default account names) and
  ``Sandbox Company`` (abbr ``SC``); both in USD;
- a new Account needs ``account_name``, ``company`` and a ``parent_account`` that exists, is a group and
  belongs to the same company; it inherits ``root_type`` and ``report_type``; a duplicate name is a
  ``DuplicateEntryError``;
- a Journal Entry row must name an existing account (``LinkValidationError`` "Could not find Row #1:
  Account: …"); the account must not be a group or disabled and must belong to the entry's company (which
  defaults to the first row's account's company); a row carries a debit or a credit, not both and not
  neither; a Receivable or Payable account needs ``party_type`` and ``party``;
- a Journal Entry's reference (``cheque_no``, "Reference No", and ``cheque_date``, "Reference Date") is
  required for a ``Bank Entry`` ("Reference No & Reference Date is required for Bank Entry"), and a
  reference date without a reference number is refused ("Reference No is mandatory if you entered
  Reference Date"), as ERPNext's ``validate_cheque_info`` does.
"""

from __future__ import annotations

from typing import Any

from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.erp_sim.errors import FrappeError

Doc = dict[str, Any]
COMPANIES = (("Sandbox Bridge", "SB"), ("Sandbox Company", "SC"))
_ROOTS = {
    "Application of Funds (Assets)": ("Asset", "Balance Sheet"),
    "Source of Funds (Liabilities)": ("Liability", "Balance Sheet"),
    "Equity": ("Equity", "Balance Sheet"),
    "Income": ("Income", "Profit and Loss"),
    "Expenses": ("Expense", "Profit and Loss"),
}
# (account name, parent name or None for a root, is_group, account_type)
_CHART: tuple[tuple[str, str | None, int, str], ...] = (
    *((root, None, 1, "") for root in _ROOTS),
    ("Current Assets", "Application of Funds (Assets)", 1, ""),
    ("Accounts Receivable", "Current Assets", 1, ""),
    ("Debtors", "Accounts Receivable", 0, "Receivable"),
    ("Bank Accounts", "Current Assets", 1, "Bank"),
    ("Stripe Clearing", "Bank Accounts", 0, "Bank"),
    ("Stripe Payouts Bank", "Bank Accounts", 0, "Bank"),
    ("Cash In Hand", "Current Assets", 1, "Cash"),
    ("Cash", "Cash In Hand", 0, "Cash"),
    ("Disputed Funds", "Current Assets", 0, ""),
    ("Stock Assets", "Current Assets", 1, "Stock"),
    ("Stock In Hand", "Stock Assets", 0, "Stock"),
    ("Tax Assets", "Current Assets", 1, ""),
    ("Fixed Assets", "Application of Funds (Assets)", 1, ""),
    ("Temporary Accounts", "Application of Funds (Assets)", 1, ""),
    ("Temporary Opening", "Temporary Accounts", 0, "Temporary"),
    ("Stripe Reconciliation Suspense", "Temporary Accounts", 0, ""),
    ("Current Liabilities", "Source of Funds (Liabilities)", 1, ""),
    ("Accounts Payable", "Current Liabilities", 1, ""),
    ("Creditors", "Accounts Payable", 0, "Payable"),
    ("Duties and Taxes", "Current Liabilities", 1, "Tax"),
    ("VAT", "Duties and Taxes", 0, "Tax"),
    ("Capital Stock", "Equity", 0, "Equity"),
    ("Retained Earnings", "Equity", 0, "Equity"),
    ("Opening Balance Equity", "Equity", 0, "Equity"),
    ("Direct Income", "Income", 1, ""),
    ("Sales", "Direct Income", 0, ""),
    ("Service", "Direct Income", 0, ""),
    ("Sales Returns and Refunds", "Direct Income", 0, ""),
    ("Indirect Income", "Income", 1, ""),
    ("Direct Expenses", "Expenses", 1, ""),
    ("Stock Expenses", "Direct Expenses", 1, ""),
    ("Cost of Goods Sold", "Stock Expenses", 0, "Cost of Goods Sold"),
    ("Indirect Expenses", "Expenses", 1, ""),
    ("Administrative Expenses", "Indirect Expenses", 0, ""),
    ("Miscellaneous Expenses", "Indirect Expenses", 0, "Chargeable"),
    ("Round Off", "Indirect Expenses", 0, "Round Off"),
    ("Write Off", "Indirect Expenses", 0, ""),
    ("Exchange Gain/Loss", "Indirect Expenses", 0, ""),
    ("Stripe Fees", "Indirect Expenses", 0, "Chargeable"),
    ("Chargebacks", "Indirect Expenses", 0, ""),
    ("Stripe Adjustments", "Indirect Expenses", 0, ""),
)


def seed(store: DocStore, now: str, owner: str) -> None:
    """Insert the companies and their charts; a restored state file gets only the accounts it lacks."""
    base = {"owner": owner, "modified_by": owner, "creation": now, "modified": now, "docstatus": 0, "idx": 0}
    for company, abbr in COMPANIES:
        if store.get("Company", company) is None:
            store.put("Company", company, {**base, "doctype": "Company", "name": company, "company_name": company,
                                           "abbr": abbr, "default_currency": "USD", "country": "United States"})
        for account_name, parent, is_group, account_type in _CHART:
            if store.get("Account", f"{account_name} - {abbr}") is not None:
                continue
            root = parent is None
            doc: Doc = {**base, "doctype": "Account", "account_name": account_name, "company": company,
                        "parent_account": None if root else f"{parent} - {abbr}", "is_group": is_group,
                        "account_type": account_type, "account_currency": "USD", "disabled": 0}
            if root:
                doc["root_type"], doc["report_type"] = _ROOTS[account_name]
            else:
                inherit(store, doc)
            doc["name"] = f"{account_name} - {abbr}"
            store.put("Account", doc["name"], doc)


def inherit(store: DocStore, doc: Doc) -> None:
    """Check a new account's company and parent and copy the parent's root and report types."""
    company = store.get("Company", str(doc.get("company")))
    if company is None:
        raise FrappeError("LinkValidationError", f"Could not find Company: {doc.get('company')}")
    parent = store.get("Account", str(doc.get("parent_account") or ""))
    if parent is None:
        raise FrappeError("ValidationError", f"Parent account {doc.get('parent_account')} does not exist")
    if not parent.get("is_group"):
        raise FrappeError("ValidationError", f"Parent account {parent['name']} can not be a ledger")
    if parent.get("company") != company["name"]:
        raise FrappeError("ValidationError", f"Parent account {parent['name']} does not belong to company "
                                             f"{company['name']}")
    doc["root_type"], doc["report_type"] = parent["root_type"], parent["report_type"]
    doc.setdefault("account_currency", company.get("default_currency", "USD"))
    doc["is_group"] = 1 if doc.get("is_group") in (1, "1", True) else 0
    doc["disabled"] = 1 if doc.get("disabled") in (1, "1", True) else 0
    doc.setdefault("account_type", "")


def account_name(store: DocStore, doc: Doc) -> str:
    """``"{account_name} - {abbr}"`` for a new account of ``doc['company']``."""
    company = store.get("Company", str(doc.get("company")))
    abbr = company["abbr"] if company else ""
    name = f"{str(doc['account_name']).strip()} - {abbr}"
    if store.get("Account", name) is not None:
        raise FrappeError("DuplicateEntryError", f"Account {name} already exists")
    return name


def check_journal_rows(store: DocStore, doc: Doc, rows: list[Doc]) -> None:
    """The per-row account and party checks of a Journal Entry (see the module rules)."""
    company = doc.get("company")
    for row in rows:
        idx = row.get("idx")
        account = store.get("Account", str(row["account"]))
        if account is None:
            raise FrappeError("LinkValidationError", f"Could not find Row #{idx}: Account: {row['account']}")
        company = company or account["company"]
        if account["company"] != company:
            raise FrappeError("ValidationError", f"Row #{idx}: Account {account['name']} does not belong to "
                                                 f"company {company}")
        if account.get("is_group"):
            raise FrappeError("ValidationError", f"Row #{idx}: Account {account['name']} is a Group Account and "
                                                 "group accounts cannot be used in transactions")
        if account.get("disabled"):
            raise FrappeError("ValidationError", f"Row #{idx}: Account {account['name']} is disabled")
        if row["debit"] and row["credit"]:
            raise FrappeError("ValidationError", "You cannot credit and debit same account at the same time")
        if not row["debit"] and not row["credit"]:
            raise FrappeError("ValidationError", f"Row {idx}: Both Debit and Credit values cannot be zero")
        if account.get("account_type") in ("Receivable", "Payable"):
            if not row.get("party_type") or not row.get("party"):
                raise FrappeError("ValidationError", f"Row {idx}: Party Type and Party is required for "
                                                     f"Receivable / Payable account {account['name']}")
            if store.get(str(row["party_type"]), str(row["party"])) is None:
                raise FrappeError("LinkValidationError", f"Could not find Row #{idx}: Party: {row['party']}")
    doc["company"] = company


def check_journal_reference(doc: Doc) -> None:
    """ERPNext's ``validate_cheque_info`` (see the module rules)."""
    voucher_type = doc.get("voucher_type") or "Journal Entry"
    if voucher_type == "Bank Entry" and (not doc.get("cheque_no") or not doc.get("cheque_date")):
        raise FrappeError("ValidationError", f"Reference No & Reference Date is required for {voucher_type}")
    if doc.get("cheque_date") and not doc.get("cheque_no"):
        raise FrappeError("ValidationError", "Reference No is mandatory if you entered Reference Date")
