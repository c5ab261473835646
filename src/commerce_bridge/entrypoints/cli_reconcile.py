"""``commerce-bridge reconcile ...``: reconcile Stripe payouts against what the bridge booked, and report.

- ``reconcile payout PO_ID`` reconciles one payout as the ``stripe.payout_reconciled`` workflow does (records the
  result, posts its Journal Entry); ``--dry-run`` records and posts nothing and prints the journal it would post.
- ``reconcile payouts --since DATE`` does it for every paid payout created since then, with a progress bar; a
  payout already recorded is skipped, so after a crash (kill -9 included) the same command goes on where it
  stopped (``--again`` reconciles the recorded ones once more).
- ``reconcile report`` prints the recorded payouts and exceptions as a table, CSV, JSON or HTML.
- ``reconcile drift --since DATE`` compares Stripe, Clarity and ERPNext and lists every difference by kind.

Exit codes as the other commands: 0 done (exceptions found are a result, not a failure; ``--strict`` makes
them exit 1), 1 a payout could not be reconciled, 2 invalid settings or options.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from commerce_bridge.domain.money import Money
from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import print_error
from commerce_bridge.errors import BridgeError
from commerce_bridge.mapping.money import format_money
from commerce_bridge.services.drift import DriftReport
from commerce_bridge.services.reconciliation_report import PAYOUT_FIELDS, build_report
from commerce_bridge.workflows.steps.payouts import PayoutReconciler, summary_text

reconcile_app = typer.Typer(help="Payout reconciliation and drift: payout, payouts, report, drift.", no_args_is_help=True)



class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    html = "html"


def _reconciler() -> tuple[Any, PayoutReconciler]:
    c = _container("cli", _settings())
    if c.reconciler is None:
        print_error("reconciling payouts needs Stripe and the ERP", title="not configured",
                    fix="set CB_STRIPE_API_KEY and CB_ERP_BASE_URL (with CB_ERP_API_KEY, CB_ERP_API_SECRET)")
        raise typer.Exit(2)
    return c, c.reconciler


def _store() -> Any:
    c = _container("cli", _settings())
    if c.reconciliations is None:  # pragma: no cover - bootstrap always builds it
        raise typer.Exit(2)
    return c.reconciliations


def _money(minor: Any, currency: Any) -> str:
    return "-" if minor is None else f"{format_money(Money(int(minor), str(currency or 'USD')))} {currency or ''}"


def _print_result(result: dict[str, Any], posted: dict[str, Any] | None, dry_run: bool) -> None:
    console.print(summary_text(result))
    proof = result.get("proof") or {}
    if proof:
        checks = ", ".join(f"{k} {'yes' if proof.get(k) else 'NO'}" for k in ("sum_ok", "clearing_zero", "balanced"))
        console.print(f"proof: net {_money(proof.get('net_sum'), result['currency'])} against the payout's "
                      f"{_money(proof.get('payout_amount'), result['currency'])}; {checks}")
    table = Table("account", "debit", "credit", "transactions", title="journal" + (" (dry run: not posted)"
                                                                                   if dry_run else ""))
    for line in result.get("journal") or ():
        amount = int(line["amount_minor"])
        table.add_row(line["account"], _money(amount, line["currency"]) if amount > 0 else "",
                      _money(-amount, line["currency"]) if amount < 0 else "", str(len(line.get("refs") or ())))
    console.print(table)
    if result.get("exception_rows"):
        exc = Table("kind", "ref", "reason", "suggested fix", title="exceptions")
        for e in result["exception_rows"]:
            exc.add_row(str(e["kind"]), str(e["ref"]), str(e["reason"]), str(e["suggested_fix"]))
        console.print(exc)
    if result.get("reason"):
        console.print(f"{result['reason']}; fix: {result.get('suggested_fix')}")
    if posted is not None:
        console.print(f"journal entry: {posted.get('journal_entry') or '-'}"
                      + (" (replaced " + str(posted.get("cancelled")) + ")" if posted.get("replaced") else ""))


@reconcile_app.command("payout")
def reconcile_payout(
    payout_id: Annotated[str, typer.Argument(metavar="PO_ID", help="The Stripe payout id (po_...).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Record and post nothing; print the journal.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when the payout does not close.")] = False,
) -> None:
    """Reconcile one payout: match its transactions, record the result and post its Journal Entry."""
    _, reconciler = _reconciler()
    try:
        result = reconciler.reconcile(payout_id, record=not dry_run)
        posted = None
        if not dry_run and result["status"] != "not_reconcilable":
            posted = reconciler.post(payout_id)
    except BridgeError as exc:
        raise _fail(exc) from exc
    if dry_run:
        result["journal_doc"] = reconciler.journal_doc(payout_id, result)
    if as_json:
        sys.stdout.write(json.dumps({**result, "posted": posted}, default=str) + "\n")
    else:
        _print_result(result, posted, dry_run)
    if strict and result["status"] != "closed":
        raise typer.Exit(1)


def _since(value: str) -> int:
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@reconcile_app.command("payouts")
def reconcile_payouts(
    since: Annotated[str, typer.Option(help="Payouts created on or after this day (YYYY-MM-DD, UTC).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Record and post nothing.")] = False,
    again: Annotated[bool, typer.Option("--again", help="Reconcile payouts already recorded once more.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reconcile every paid payout since a day; a payout already recorded is skipped (so a re-run resumes)."""
    c, reconciler = _reconciler()
    start = _since(since)
    try:
        found = [p for page in reconciler.stripe_payouts(created_gte=start) for p in page]
    except BridgeError as exc:
        raise _fail(exc) from exc
    ids = [str(p["id"]) for p in sorted(found, key=lambda p: (int(p.get("created") or 0), str(p["id"])))]
    done = set() if again or dry_run or c.reconciliations is None else c.reconciliations.done(ids)
    todo = [i for i in ids if i not in done]
    outcome: dict[str, Any] = {"found": len(ids), "skipped": len(done), "closed": 0, "exceptions": 0,
                               "not_reconcilable": 0, "failed": []}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=as_json or (not console.is_terminal and not sys.stderr.isatty())) as bar:
        task = bar.add_task("reconciling payouts", total=len(todo))
        for payout_id in todo:
            try:
                result = reconciler.reconcile(payout_id, record=not dry_run)
                if not dry_run and result["status"] != "not_reconcilable":
                    reconciler.post(payout_id)
                outcome[result["status"] if result["status"] in outcome else "exceptions"] += 1
            except BridgeError as exc:
                outcome["failed"].append({"payout_id": payout_id, "error": exc.code, "message": str(exc)})
            bar.advance(task)
    if as_json:
        sys.stdout.write(json.dumps(outcome) + "\n")
    else:
        console.print(f"{outcome['found']} payouts since {since}: {outcome['skipped']} already reconciled, "
                      f"{outcome['closed']} closed, {outcome['exceptions']} with exceptions, "
                      f"{outcome['not_reconcilable']} not reconcilable (manual), {len(outcome['failed'])} failed")
        for f in outcome["failed"]:
            console.print(f"  {f['payout_id']}: {f['error']}: {f['message']}")
    if outcome["failed"]:
        raise typer.Exit(1)


@reconcile_app.command("report")
def reconcile_report(
    fmt: Annotated[Format, typer.Option("--format", help="table, csv, json or html.")] = Format.table,
    payout: Annotated[str | None, typer.Option(help="Only this payout.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only exceptions of this kind.")] = None,
    what: Annotated[str, typer.Option(help="For csv: exceptions or payouts.")] = "exceptions",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """The recorded payouts (per-payout summary) and their open exceptions."""
    if fmt == Format.csv and what not in ("exceptions", "payouts"):
        raise typer.BadParameter("--what is exceptions or payouts", param_hint="--what")
    try:
        report = build_report(_store(), payout_id=payout, kind=kind)
    except BridgeError as exc:
        raise _fail(exc) from exc
    if fmt == Format.table:
        table = Table(*PAYOUT_FIELDS[:-2], "journal entry", title="payouts")
        for p in report.payouts:
            table.add_row(p["payout_id"], p["status"], p["currency"], _money(p["amount_minor"], p["currency"]),
                          str(p["transactions"]), str(p["matched"]), str(p["exceptions"]), p["journal_entry"] or "-")
        console.print(table)
        listed = Table("payout", "kind", "ref", "reason", "suggested fix", title="exceptions")
        for e in report.exceptions:
            listed.add_row(e["payout_id"], e["kind"], e["ref"], e["reason"], e["suggested_fix"])
        console.print(listed)
        return
    text = report.render(fmt.value, "payouts" if what == "payouts" else "exceptions")
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _print_drift(report: DriftReport, limit: int) -> None:
    totals = Table("kind", "currency", "count", "amount", title=f"drift {report.since:%Y-%m-%d %H:%M} to "
                                                                 f"{report.until:%Y-%m-%d %H:%M} UTC")
    for t in report.totals():
        totals.add_row(t["kind"], t["currency"] or "-", str(t["count"]), _money(t["amount_minor"], t["currency"]))
    console.print(totals)
    console.print("read: " + ", ".join(f"{n} {name}" for name, n in report.scanned.items()))
    if not report.differences:
        console.print("no differences")
        return
    shown = report.differences[:limit] if limit else report.differences
    table = Table("kind", "ref", "records", "amount", "reason", "suggested fix", title="differences", show_lines=True)
    for d in shown:
        amount = _money(d.amount.minor, d.amount.currency) if d.amount else "-"
        if d.expected is not None:
            amount += f" (other side {_money(d.expected.minor, d.expected.currency)})"
        table.add_row(d.kind, d.ref, "\n".join(f"{k} {v}" for k, v in d.ids.items()), amount, d.reason,
                      d.suggested_fix)
    console.print(table)
    if len(shown) < len(report.differences):
        console.print(f"{len(shown)} of {len(report.differences)} differences shown (--limit)")
    for s in report.skipped:
        console.print(f"not compared: {s['system']} {s['ref']}: {s['reason']}")


@reconcile_app.command("drift")
def reconcile_drift(
    since: Annotated[str, typer.Option(help="Records created or changed on or after this day (YYYY-MM-DD, UTC).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(min=0, help="List at most this many differences (0: all); the totals "
                                                   "count every one.")] = 100,
) -> None:
    """Compare Stripe, Clarity and ERPNext since a day: every difference by kind, counts and amounts per currency.

    Records younger than CB_DRIFT_SETTLE_S are left out (the bridge may still be booking them). Exit 0 whatever
    was found (differences are a result), 1 when a system cannot be read.
    """
    start = datetime.fromtimestamp(_since(since), UTC)
    settings = _settings()
    until = datetime.now(UTC) - timedelta(seconds=settings.drift_settle_s)
    if start >= until:
        raise typer.BadParameter(f"{since} is not in the past (nothing older than CB_DRIFT_SETTLE_S="
                                 f"{settings.drift_settle_s:g} s to compare)", param_hint="--since")
    c = _container("cli", settings)
    if c.drift is None:
        print_error("the drift check compares Stripe, Clarity and the ERP", title="not configured",
                    fix="set CB_STRIPE_API_KEY, CB_CLARITY_BASE_URL (with CB_CLARITY_USER, CB_CLARITY_PASSWORD) and "
                        "CB_ERP_BASE_URL (with CB_ERP_API_KEY, CB_ERP_API_SECRET)")
        raise typer.Exit(2)
    try:
        report = c.drift.find(start, until)
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(limit=limit or None)) + "\n")
    else:
        _print_drift(report, limit)
