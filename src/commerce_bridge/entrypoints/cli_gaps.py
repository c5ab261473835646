"""``commerce-bridge gaps``: find the events that never reached the bridge and feed them in (issue 14, point 6).

It runs the scheduled gap check once, by hand (``services.gaps``): the Stripe events of the types the enabled
workflows start on, and the Clarity changes the poll cursors passed, compared with the inbox; each missing one
is stored as its webhook or poll would have been (``--dry-run``: nothing is stored) and the workers pick it up.

Exit codes as the other commands: 0 done (gaps found are a result, not a failure), 1 a system or the database
cannot be read (the error and what to fix), 2 invalid settings or options, or neither Stripe nor Clarity set.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import bridge_error_text, print_error
from commerce_bridge.errors import BridgeError
from commerce_bridge.services.gaps import MAX_WINDOW, GapReport

LISTED = 50
"""The table lists at most this many gaps (the totals count all; ``--json`` lists all)."""


def _day(value: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--since") from exc
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


FIXES = {
    ("stripe", "upstream_auth_failed"): "CB_STRIPE_API_KEY was refused: use a secret key, or a restricted key "
                                        "that may read Events",
    ("stripe", ""): "check that CB_STRIPE_API_BASE (default https://api.stripe.com) is reachable from here, then "
                    "run again",
    ("clarity", "upstream_auth_failed"): "Clarity refused CB_CLARITY_USER / CB_CLARITY_PASSWORD (`commerce-bridge "
                                         "doctor` checks them)",
    ("clarity", ""): "check that CB_CLARITY_BASE_URL is reachable from here (`commerce-bridge doctor`), then run "
                     "again",
}


def _cannot_read(exc: BridgeError) -> typer.Exit:
    """A system (or the database) could not be read: the error and what to fix; exit 1."""
    if exc.code == "store_unavailable":
        return _fail(exc)
    message, fix = bridge_error_text(exc)
    system = str(exc.details.get("reading") or "")
    fix = fix or FIXES.get((system, exc.code)) or FIXES.get((system, ""))
    print_error(f"cannot read {system or 'a system'}: {message}", title=f"error ({exc.code})", fix=fix)
    return typer.Exit(1)


def _print(report: GapReport, dry_run: bool) -> None:
    fed = {(g.source, g.event_type): 0 for g in report.gaps}
    for g in report.fed:
        fed[(g.source, g.event_type)] += 1
    title = f"gaps {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
    totals = Table("source", "type", "missing", "fed in", title=title + (" (dry run: nothing fed in)" if dry_run
                                                                          else ""))
    for (source, event_type), n in sorted(report.by_source_type().items()):
        totals.add_row(source, event_type, str(n), "-" if dry_run else str(fed[(source, event_type)]))
    console.print(totals)
    console.print("read: " + (", ".join(f"{n} {what}" for what, n in report.scanned.items()) or "nothing"))
    for reason in report.skipped:
        console.print(f"not compared: {reason}")
    if not report.gaps:
        console.print("no gaps: every event is in the inbox")
        return
    fed_ids = {g.event_id for g in report.fed}
    listed = Table("source", "type", "event", "about", "happened (UTC)", "fed in", title="missing events")
    for column in listed.columns[1:4]:
        column.overflow = "fold"  # ids whole, on two lines if need be: an operator looks them up
    for g in report.gaps[:LISTED]:
        listed.add_row(g.source, g.event_type, g.event_id, g.ref, f"{g.happened_at:%Y-%m-%d %H:%M:%S}",
                       "-" if dry_run else ("yes" if g.event_id in fed_ids else "arrived meanwhile"))
    console.print(listed)
    if len(report.gaps) > LISTED:
        console.print(f"{LISTED} of {len(report.gaps)} missing events shown (--json lists all)")
    if dry_run:
        console.print("dry run: nothing was stored; run without --dry-run to feed them in")
    else:
        console.print(f"fed in {len(report.fed)} event(s); the workers run their workflows"
                      + (f"; {len(report.arrived)} arrived meanwhile (stored once)" if report.arrived else ""))


def gaps(
    since: Annotated[str | None, typer.Option(
        help="Events created (changes made) on or after this day (YYYY-MM-DD, UTC), also before the bridge's first "
             "delivery; default: CB_GAP_WINDOW_DAYS back, from the first delivery on. Stripe keeps events 30 days: "
             "an earlier day reads from 30 days back.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the missing events; store nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON on stdout.")] = False,
) -> None:
    """Find the events that never reached the bridge (missed webhooks, missed poll windows) and feed them in.

    Compares the inbox with Stripe's events (of the types the workflows start on) and Clarity's polled changes.

    Each missing one is stored as its webhook or poll would have been; the workers run its workflows.

    Events younger than CB_GAP_SETTLE_S are left out. Exit 0 whatever was found, 1 when a system cannot be read.
    """
    settings = _settings()
    now = datetime.now(UTC)
    until = now - timedelta(seconds=settings.gap_settle_s)
    start = _day(since) if since else now - timedelta(days=settings.gap_window_days)
    if start >= until:
        raise typer.BadParameter(f"{since} is not in the past (nothing older than CB_GAP_SETTLE_S="
                                 f"{settings.gap_settle_s:g} s to compare)", param_hint="--since")
    if start < until - MAX_WINDOW and not as_json:
        console.print(f"Stripe keeps events 30 days: reading from {until - MAX_WINDOW:%Y-%m-%d %H:%M} UTC")
    c = _container("cli", settings)
    if c.gaps is None:
        print_error("the gap check compares Stripe's events and Clarity's changes with the inbox",
                    title="not configured", fix="set CB_STRIPE_API_KEY, or CB_CLARITY_BASE_URL (with "
                                                "CB_CLARITY_USER, CB_CLARITY_PASSWORD), or both")
        raise typer.Exit(2)
    try:
        with console.status("listing events", spinner="dots") if not as_json else _Quiet() as status:
            def progress(what: str, read: int) -> None:
                if status is not None:
                    status.update(f"listing {what}: {read} read")

            # an explicit --since may reach before the bridge's first delivery (a backfill); the default does not
            report = c.gaps.find(start, until, progress=progress, before_first_delivery=since is not None)
            if not dry_run and report.gaps:
                if status is not None:
                    status.update(f"feeding in {len(report.gaps)} event(s)")
                c.gaps.feed(report)
    except BridgeError as exc:
        raise _cannot_read(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps({**report.to_dict(), "dry_run": dry_run}) + "\n")
    else:
        _print(report, dry_run)


class _Quiet:
    """No status line (``--json``: stdout is for the report)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
