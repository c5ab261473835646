"""``commerce-bridge stock push``: write ERPNext's stock to the Clarity inventory section the bridge keeps.

In ``serve`` and ``worker`` stock follows ERPNext through the poller and the ``erp.stock_changed`` workflow
(``CB_STOCK_POLL_INTERVAL_S``); this command writes directly, for a first load or a repair, with its own cursor: the Bins changed since the last push (``--full``: every Bin), summed per item, written as the
stock of ``CB_CLARITY_INVENTORY_SECTION``. ``--dry-run`` reads and prints, writes nothing, keeps the cursor.

Exit codes: 0 done (items without a Clarity product are a result, listed), 1 a system could not be read or
written, 2 not configured.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import print_error
from commerce_bridge.errors import BridgeError

stock_app = typer.Typer(help="Stock from ERPNext to Clarity: push.", no_args_is_help=True)


@stock_app.command("push")
def stock_push(
    full: Annotated[bool, typer.Option("--full", help="Every Bin, not only those changed since the last push.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and print; write nothing, keep the cursor.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(min=0, help="List at most this many items (0: all).")] = 50,
) -> None:
    """Push ERPNext stock (actual and reserved qty per item) to the Clarity inventory section of the bridge."""
    c = _container("cli", _settings())
    if c.stock is None:
        print_error("the stock push writes ERPNext's stock to one Clarity inventory section", title="not configured",
                    fix="set CB_CLARITY_INVENTORY_SECTION (the section's CustomKey), CB_CLARITY_BASE_URL (with "
                        "CB_CLARITY_USER, CB_CLARITY_PASSWORD) and CB_ERP_BASE_URL (with CB_ERP_API_KEY, "
                        "CB_ERP_API_SECRET)")
        raise typer.Exit(2)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} Bins"),
                      TimeElapsedColumn(), console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task("reading ERPNext Bins", total=None)
            result = c.stock.push_once(full=full, dry_run=dry_run,
                                       progress=lambda n: progress.advance(task, n))
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    verb = "would push" if dry_run else "pushed"
    table = Table("item", "quantity", "allocated", title=f"{verb} to Clarity section {c.stock.section_key}")
    for code, q in list(result.pushed.items())[:limit or None]:
        table.add_row(code, q["Quantity"], q["QuantityAllocated"])
    if result.pushed:
        console.print(table)
    console.print(f"{verb} {len(result.pushed)} item(s); {len(result.skipped)} without a Clarity product"
                  f"{': ' + ', '.join(result.skipped[:limit or None]) if result.skipped else ''}; "
                  f"{result.bins_read} Bin(s) read; cursor {result.cursor_from or '(start)'} -> "
                  f"{result.cursor_to or 'unchanged'}{' (not saved: dry run)' if dry_run else ''}")
