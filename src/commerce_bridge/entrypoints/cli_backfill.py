"""``commerce-bridge backfill customers|products|orders --from clarity|stripe|erp``: sync every existing customer or
product of one system, or feed the events of its existing orders.

Each record goes through its sync (``services.customer_sync``, ``services.product_sync``): its counterparts in the
other two systems are found (identity map, then keys and ids), merged by the policy, created where missing and
patched where different. Pages are read through the connectors (each request takes its rate-limit slot), a
progress bar shows the count (of the total, when the system tells it) and the time left, and a durable cursor
(``backfill.<kind>.<system>``) is written after each page: after a crash (kill -9 included) the same command
goes on after the last completed page (``--restart`` starts over). ``--dry-run`` merges and reports, and writes
nothing anywhere (the cursor included). The rules are ``services.backfill``'s.

Orders are not synced here: each becomes the event its poll or webhook would have stored, fed into the inbox
(``fed``), unless the inbox holds it (``known``) or no workflow would take it (``skipped``), and the workflows do
the rest (``services.order_backfill``).

Exit codes as the other commands: 0 done, 1 a record failed (the others were synced; the summary lists it)
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

from commerce_bridge.bootstrap_orders import order_feed
from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import bridge_error_text, print_error
from commerce_bridge.errors import BridgeError, ConfigurationError
from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.mapping.product_sync import ProductSyncPolicy
from commerce_bridge.services.backfill import (
    Backfill,
    BackfillSummary,
    Outcome,
    PageSource,
    Syncer,
    customer_pages,
)
from commerce_bridge.services.gateways import CursorStore

backfill_app = typer.Typer(help="Sync the records that already exist in a system: customers, products; feed its "
                                "orders to the workflows.",
                           no_args_is_help=True)

CONCURRENCY = 4
"""Records synced at once by default: enough to keep a remote system's rate limit busy despite round trips."""

LISTED = 50
"""The failures table lists at most this many (``--json`` lists all)."""


# the options every backfill command has (records: customers, products or orders)
Since = Annotated[str | None, typer.Option(help="Only records changed (Stripe: created) on or after this day "
                                                "(YYYY-MM-DD, UTC).")]
Limit = Annotated[int | None, typer.Option(min=1, help="Stop after the page on which this many records were reached "
                                                       "(run again to go on).")]
Restart = Annotated[bool, typer.Option("--restart", help="Ignore the cursor of an earlier run: start over.")]
PageSize = Annotated[int, typer.Option(min=1, max=100, help="Records per page.")]
Concurrency = Annotated[int, typer.Option(min=1, max=32, help="Records of a page synced (orders: checked) at once, "
                                                              "in threads; the rate limits still hold.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


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


def _truth(pairs: list[str]) -> dict[str, str]:
    truth: dict[str, str] = {}
    for pair in pairs:
        name, sep, system = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not FIELD=SYSTEM", param_hint="--source-of-truth")
        truth[name.strip()] = system.strip()
    return truth


def _policy(pairs: list[str]) -> SyncPolicy:
    try:
        return SyncPolicy(source_of_truth=_truth(pairs))
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


def _print_orders(summary: BackfillSummary) -> None:
    table = Table("fed", "known", "skipped", "failed", "pages", "seconds",
                  title=f"backfill orders from {summary.source}" + (" (dry run: nothing fed)" if summary.dry_run
                                                                     else ""))
    table.add_row(str(summary.fed), str(summary.known), str(summary.skipped), str(len(summary.failed)),
                  str(summary.pages), f"{summary.elapsed_s:.1f}")
    console.print(table)
    if summary.skip_reasons:
        reasons = Table("reason", "orders", title="skipped")
        for reason, n in sorted(summary.skip_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            reasons.add_row(reason, str(n))
        console.print(reasons)
    if summary.listed:
        listed = Table("record", "event", "type", title="would be fed")
        for row in summary.listed[:LISTED]:
            listed.add_row(row["id"], row["event_id"], row["type"])
        console.print(listed)
        if len(summary.listed) > LISTED:
            console.print(f"... and {len(summary.listed) - LISTED} more (--json lists all)")


def _print(summary: BackfillSummary) -> None:
    if summary.kind == "orders":
        _print_orders(summary)
        _print_tail(summary)
        return
    table = Table("created", "updated", "unchanged", "conflicts", "failed", "pages", "seconds",
                  title=f"backfill {summary.kind} from {summary.source}" + (" (dry run: nothing written)"
                                                                             if summary.dry_run else ""))
    table.add_row(str(summary.created), str(summary.updated), str(summary.unchanged), str(summary.conflicts),
                  str(len(summary.failed)), str(summary.pages), f"{summary.elapsed_s:.1f}")
    console.print(table)
    if summary.by_system:
        verb = "would be " if summary.dry_run else ""
        systems = Table("system", f"{verb}created", f"{verb}updated", f"fields written ({summary.kind})",
                        title="by system")
        for system, counts in sorted(summary.by_system.items()):
            fields = ", ".join(f"{name} {n}" for name, n in sorted(counts["fields"].items()))
            systems.add_row(system, str(counts["created"]), str(counts["updated"]), fields)
        console.print(systems)
    _print_tail(summary)


def _print_tail(summary: BackfillSummary) -> None:
    if summary.resumed_after is not None:
        console.print(f"resumed after {summary.resumed_after} (the cursor of an earlier run)")
    if not summary.finished:
        console.print("stopped before the end (--limit): run the same command to go on")
    failures = _failures(summary)
    if failures:
        listed = Table(summary.kind.removesuffix("s"), "code", "field", "reason", title="failed")
        for f in failures[:LISTED]:
            listed.add_row(f["id"], f["code"], f["field"] or "", f["reason"])
        console.print(listed)
        if len(failures) > LISTED:
            console.print(f"... and {len(failures) - LISTED} more (--json lists all)")


def _run(kind: str, syncer: Syncer, pages: PageSource, cursors: CursorStore, source: Source, *, since: datetime | None,
         dry_run: bool, limit: int | None, restart: bool, page_size: int, concurrency: int, as_json: bool) -> None:
    """One backfill with its progress bar (count, total when known, time left) and summary; exit 1 on a failure."""
    backfill = Backfill(kind, syncer, pages, cursors)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console,
                  disable=as_json or (not console.is_terminal and not sys.stderr.isatty())) as bar:
        task = bar.add_task(f"{kind} from {source.value}", total=None)

        def on_total(total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)

        def on_record(record_id: str, outcome: Outcome | None) -> None:
            bar.advance(task)

        def on_resume(done: int) -> None:
            bar.update(task, completed=done)

        try:
            summary = backfill.run(source.value, since=since, dry_run=dry_run, limit=limit, restart=restart,
                                   page_size=page_size, concurrency=concurrency, on_total=on_total,
                                   on_record=on_record,
                                   on_resume=on_resume)
        except BridgeError as exc:  # a page could not be read: the cursor keeps the pages done
            raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps({**summary.as_dict(), "failures": _failures(summary)}, indent=2) + "\n")
    else:
        _print(summary)
    if summary.failed:
        raise typer.Exit(1)


def _not_configured(kind: str) -> typer.Exit:
    print_error(f"the {kind} backfill needs Stripe, Clarity and the ERP", title="not configured",
                fix="set CB_STRIPE_API_KEY, CB_CLARITY_BASE_URL (with its user) and CB_ERP_BASE_URL "
                    "(with CB_ERP_API_KEY, CB_ERP_API_SECRET)")
    return typer.Exit(2)


@backfill_app.command("customers")
def backfill_customers(
    source: Annotated[Source, typer.Option("--from", help="The system whose customers are read: clarity, stripe "
                                                          "or erp.")],
    since: Since = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Merge and report; write nothing anywhere.")] = False,
    limit: Limit = None,
    restart: Restart = False,
    page_size: PageSize = 100,
    concurrency: Concurrency = CONCURRENCY,
    source_of_truth: Annotated[list[str] | None, typer.Option(
        help="FIELD=SYSTEM: that system decides the field (name, email, phone, billing_address, shipping_address, "
             "tax_id); repeat for several. Other fields: the latest change wins.")] = None,
    as_json: AsJson = False,
) -> None:
    """Sync every customer of one system with the other two; resumable, with a summary at the end."""
    policy = _policy(source_of_truth or [])
    start = _day(since)
    c = _container("cli", _settings())
    if c.customer_syncer is None or c.cursors is None:
        raise _not_configured("customer")
    syncer = c.customer_syncer(policy)
    _run("customers", syncer, customer_pages(syncer), c.cursors, source, since=start, dry_run=dry_run, limit=limit,
         restart=restart, page_size=page_size, concurrency=concurrency, as_json=as_json)


@backfill_app.command("products")
def backfill_products(
    source: Annotated[Source, typer.Option("--from", help="The system whose products are read: clarity (products), "
                                                          "stripe (products) or erp (Items).")],
    since: Since = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Merge and report; write nothing anywhere.")] = False,
    limit: Limit = None,
    restart: Restart = False,
    page_size: PageSize = 100,
    concurrency: Concurrency = CONCURRENCY,
    source_of_truth: Annotated[list[str] | None, typer.Option(
        help="FIELD=SYSTEM: that system decides the field (name, description, active, uom, prices); repeat for "
             "several. Other fields: the latest change wins. Default: CB_PRODUCT_SOURCE_OF_TRUTH.")] = None,
    as_json: AsJson = False,
) -> None:
    """Sync every product (and its prices) of one system with the other two; resumable, with a summary at the end."""
    truth = _truth(source_of_truth or [])
    start = _day(since)
    settings = _settings()
    try:
        policy = ProductSyncPolicy(source_of_truth=truth or dict(settings.product_source_of_truth))
    except ConfigurationError as exc:
        raise typer.BadParameter(exc.message + (f" ({exc.suggested_fix})" if exc.suggested_fix else ""),
                                 param_hint="--source-of-truth") from exc
    c = _container("cli", settings)
    if c.product_syncer is None or c.product_pages is None or c.cursors is None:
        raise _not_configured("product")
    _run("products", c.product_syncer(policy), c.product_pages, c.cursors, source, since=start, dry_run=dry_run,
         limit=limit, restart=restart, page_size=page_size, concurrency=concurrency, as_json=as_json)


@backfill_app.command("orders")
def backfill_orders(
    source: Annotated[Source, typer.Option("--from", help="clarity: its sales orders, as the order poller's events; "
                                                          "stripe: its succeeded PaymentIntents of orders, as "
                                                          "payment_intent.succeeded; erp: its Sales Orders, checked "
                                                          "against Clarity by po_no.")],
    since: Since = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be fed; feed nothing.")] = False,
    limit: Limit = None,
    restart: Restart = False,
    page_size: PageSize = 100,
    concurrency: Concurrency = CONCURRENCY,
    as_json: AsJson = False,
) -> None:
    """Feed the events of the orders that exist into the inbox; the workflows make what is missing."""
    start = _day(since)
    c = _container("cli", _settings())
    feed = order_feed(c)
    if feed is None or c.cursors is None:
        raise _not_configured("order")
    needs = {Source.clarity: ("clarity",), Source.stripe: ("stripe",), Source.erp: ("erp", "clarity")}[source]
    settings = c.settings
    configured = {"clarity": bool(settings.clarity_base_url), "stripe": bool(settings.stripe_api_key),
                  "erp": bool(settings.erp_base_url)}
    if not all(configured[n] for n in needs):
        fixes = {"clarity": "CB_CLARITY_BASE_URL (with its user)", "stripe": "CB_STRIPE_API_KEY",
                 "erp": "CB_ERP_BASE_URL (with CB_ERP_API_KEY, CB_ERP_API_SECRET)"}
        print_error(f"the order backfill from {source.value} needs {' and '.join(needs)} configured",
                    title="not configured", fix="set " + " and ".join(fixes[n] for n in needs if not configured[n]))
        raise typer.Exit(2)
    _run("orders", feed, feed.pages, c.cursors, source, since=start, dry_run=dry_run, limit=limit, restart=restart,
         page_size=page_size, concurrency=concurrency, as_json=as_json)
