"""``commerce-bridge backfill customers --from clarity|stripe|erp``: sync every existing customer of one system.

Each customer goes through the customer sync (``services.customer_sync``): its counterparts in the other two
systems are found (identity map, then e-mail and ids), merged by the policy, created where missing and patched
where different. Pages are read through the connectors (each request takes its rate-limit slot), a progress
bar shows the count (of the total, when the system tells it) and the time left, and a durable cursor
(``backfill.customers.<system>``) is written after each page: after a crash (kill -9 included) the same command
goes on after the last completed page (``--restart`` starts over). ``--dry-run`` merges and reports, and writes
nothing anywhere (the cursor included).

Exit codes as the other commands: 0 done, 1 a customer failed (the others were synced; the summary lists it)
or a system cannot be read, 2 invalid settings or options, or Stripe, Clarity and the ERP not all configured.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import bridge_error_text, print_error
from commerce_bridge.errors import BridgeError, ConfigurationError
from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.services.customer_backfill import BackfillSummary, CustomerBackfill
from commerce_bridge.services.customer_sync import SyncOutcome

backfill_app = typer.Typer(help="Sync the records that already exist in a system: customers.", no_args_is_help=True)

LISTED = 50
"""The failures table lists at most this many (``--json`` lists all)."""


class Source(StrEnum):
    clarity = "clarity"
    stripe = "stripe"
    erp = "erp"


def _day(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--since") from exc
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _policy(pairs: list[str]) -> SyncPolicy:
    truth: dict[str, str] = {}
    for pair in pairs:
        name, sep, system = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not FIELD=SYSTEM", param_hint="--source-of-truth")
        truth[name.strip()] = system.strip()
    try:
        return SyncPolicy(source_of_truth=truth)
    except ConfigurationError as exc:
        raise typer.BadParameter(exc.message + (f" ({exc.suggested_fix})" if exc.suggested_fix else ""),
                                 param_hint="--source-of-truth") from exc


def _failures(summary: BackfillSummary) -> list[dict[str, Any]]:
    out = []
    for f in summary.failed:
        message, fix = bridge_error_text(f.error)  # e-mail addresses and other stored data redacted
        out.append({"id": f.record_id, "code": f.code, "field": f.error.details.get("field"), "reason": message,
                    "fix": fix})
    return out


def _print(summary: BackfillSummary) -> None:
    table = Table("created", "updated", "unchanged", "conflicts", "failed", "pages", "seconds",
                  title=f"backfill customers from {summary.source}" + (" (dry run: nothing written)"
                                                                        if summary.dry_run else ""))
    table.add_row(str(summary.created), str(summary.updated), str(summary.unchanged), str(summary.conflicts),
                  str(len(summary.failed)), str(summary.pages), f"{summary.elapsed_s:.1f}")
    console.print(table)
    if summary.by_system:
        verb = "would be " if summary.dry_run else ""
        systems = Table("system", f"{verb}created", f"{verb}updated", "fields written (customers)",
                        title="by system")
        for system, counts in sorted(summary.by_system.items()):
            fields = ", ".join(f"{name} {n}" for name, n in sorted(counts["fields"].items()))
            systems.add_row(system, str(counts["created"]), str(counts["updated"]), fields)
        console.print(systems)
    if summary.resumed_after is not None:
        console.print(f"resumed after {summary.resumed_after} (the cursor of an earlier run)")
    if not summary.finished:
        console.print("stopped before the end (--limit): run the same command to go on")
    failures = _failures(summary)
    if failures:
        listed = Table("customer", "code", "field", "reason", title="failed")
        for f in failures[:LISTED]:
            listed.add_row(f["id"], f["code"], f["field"] or "", f["reason"])
        console.print(listed)
        if len(failures) > LISTED:
            console.print(f"... and {len(failures) - LISTED} more (--json lists all)")


@backfill_app.command("customers")
def backfill_customers(
    source: Annotated[Source, typer.Option("--from", help="The system whose customers are read: clarity, stripe "
                                                          "or erp.")],
    since: Annotated[str | None, typer.Option(help="Only customers changed (Stripe: created) on or after this day "
                                                   "(YYYY-MM-DD, UTC).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Merge and report; write nothing anywhere.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after the page on which this many customers were "
                                                          "reached (run again to go on).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore the cursor of an earlier run: start over.")]
    = False,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Customers per page.")] = 100,
    source_of_truth: Annotated[list[str] | None, typer.Option(
        help="FIELD=SYSTEM: that system decides the field (name, email, phone, billing_address, shipping_address, "
             "tax_id); repeat for several. Other fields: the latest change wins.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sync every customer of one system with the other two; resumable, with a summary at the end."""
    policy = _policy(source_of_truth or [])
    start = _day(since)
    c = _container("cli", _settings())
    if c.customer_syncer is None or c.cursors is None:
        print_error("the customer backfill needs Stripe, Clarity and the ERP", title="not configured",
                    fix="set CB_STRIPE_API_KEY, CB_CLARITY_BASE_URL (with its user) and CB_ERP_BASE_URL "
                        "(with CB_ERP_API_KEY, CB_ERP_API_SECRET)")
        raise typer.Exit(2)
    backfill = CustomerBackfill(c.customer_syncer(policy), c.cursors)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console,
                  disable=as_json or (not console.is_terminal and not sys.stderr.isatty())) as bar:
        task = bar.add_task(f"customers from {source.value}", total=None)

        def on_total(total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)

        def on_customer(record_id: str, outcome: SyncOutcome | None) -> None:
            bar.advance(task)

        def on_resume(done: int) -> None:
            bar.update(task, completed=done)

        try:
            summary = backfill.run(source.value, since=start, dry_run=dry_run, limit=limit, restart=restart,
                                   page_size=page_size, on_total=on_total, on_customer=on_customer,
                                   on_resume=on_resume)
        except BridgeError as exc:  # a page could not be read: the cursor keeps the pages done
            raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps({**summary.as_dict(), "failures": _failures(summary)}, indent=2) + "\n")
    else:
        _print(summary)
    if summary.failed:
        raise typer.Exit(1)
