"""Payout reconciliation, the pure core: match balance transactions, flag exceptions, journal and prove.

Not wired into workflows, the CLI or the API yet. ``rules`` holds the rules as data, ``job`` the
columnar job (polars), ``reference`` the same rules row by row (the benchmark's comparison arm and the
tests' oracle). docs/reference/reconciliation.md states the rules for people.
"""

from commerce_bridge.reconcile.job import Inputs, Result, frames_from_records, reconcile
from commerce_bridge.reconcile.rules import EXCEPTION_KINDS, LedgerAccounts

__all__ = ["EXCEPTION_KINDS", "Inputs", "LedgerAccounts", "Result", "frames_from_records", "reconcile"]
