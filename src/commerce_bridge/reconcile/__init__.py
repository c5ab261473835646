"""Payout reconciliation, the pure core: match balance transactions, flag exceptions, journal and prove.

``rules`` holds the rules as data, ``checks`` what the job refuses, ``job`` the columnar job (polars) and
``matching`` its charge-to-order matching, ``reference`` the same rules row by row (the benchmark's
comparison arm and the tests' oracle), ``posting`` the journal summed per account (one Journal Entry per
payout), ``columns`` the transactions frame built page by page from Stripe's SDK objects.
docs/reference/reconciliation.md states the rules for people.
"""

from commerce_bridge.reconcile.columns import TransactionColumns
from commerce_bridge.reconcile.job import Inputs, Result, frames_from_records, reconcile
from commerce_bridge.reconcile.posting import PostingLine, journal_by_account
from commerce_bridge.reconcile.rules import EXCEPTION_KINDS, LedgerAccounts

__all__ = ["EXCEPTION_KINDS", "Inputs", "LedgerAccounts", "PostingLine", "Result", "TransactionColumns",
           "frames_from_records", "journal_by_account", "reconcile"]
