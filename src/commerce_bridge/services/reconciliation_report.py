"""The reconciliation report: the recorded payouts (one summary row each) and their open exceptions, as CSV,
JSON or HTML. ``commerce-bridge reconcile report`` and ``GET /api/v1/reconciliation/report`` both print this,
so the two never disagree.

Rules:

- The columns are fixed (``PAYOUT_FIELDS``, ``EXCEPTION_FIELDS``): a spreadsheet or a BI import keeps working
  when the store gains a field. Amounts stay integer minor units with their currency code, as stored.
- CSV is one table (``what``: exceptions or payouts); JSON and HTML carry both.
- HTML escapes every value (a reason may quote text from Stripe or Clarity).
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

EXCEPTION_FIELDS = ("payout_id", "kind", "ref", "reason", "suggested_fix", "amount_minor", "currency",
                    "expected_minor", "expected_currency", "created_at")
PAYOUT_FIELDS = ("payout_id", "status", "currency", "amount_minor", "transactions", "matched", "exceptions",
                 "journal_entry", "reconciled_at")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8"}

Table = Literal["exceptions", "payouts"]


@dataclass(frozen=True, slots=True)
class Report:
    """The recorded payouts (without their exception rows: those are ``exceptions``) and open exceptions."""

    payouts: list[dict[str, Any]]
    exceptions: list[dict[str, Any]]

    def csv(self, what: Table = "exceptions") -> str:
        if what == "exceptions":
            return _csv(self.exceptions, EXCEPTION_FIELDS)
        return _csv(self.payouts, PAYOUT_FIELDS)

    def json(self) -> str:
        return json.dumps({"payouts": self.payouts, "exceptions": self.exceptions}, default=str, indent=2) + "\n"

    def html(self) -> str:
        style = ("body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
                 "padding:2px 6px;text-align:left}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>Payout reconciliation</title>"
                f"<style>{style}</style></head><body><h1>Payout reconciliation</h1>"
                + _html_table(f"Payouts ({len(self.payouts)})", self.payouts, PAYOUT_FIELDS)
                + _html_table(f"Exceptions ({len(self.exceptions)})", self.exceptions, EXCEPTION_FIELDS)
                + "</body></html>\n")

    def render(self, fmt: str, what: Table = "exceptions") -> str:
        if fmt == "csv":
            return self.csv(what)
        if fmt == "json":
            return self.json()
        if fmt == "html":
            return self.html()
        raise ValueError(f"unknown report format {fmt!r} (csv, json or html)")


def build_report(store: Any, *, payout_id: str | None = None, kind: str | None = None) -> Report:
    """Read the report from the reconciliations store (``store.reconciliations.SqlReconciliations``)."""
    payouts = [p for p in [store.get(payout_id)] if p is not None] if payout_id else store.payouts()
    exceptions = store.exceptions(payout_id=payout_id, kind=kind)
    for p in payouts:
        p.pop("exception_rows", None)
    return Report(payouts, exceptions)


def _csv(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _html_table(title: str, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(f)))}</td>" for f in fields) + "</tr>"
                   for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
