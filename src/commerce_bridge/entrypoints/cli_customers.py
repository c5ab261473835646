"""``commerce-bridge customers merge --system clarity|stripe|erp --from ID --into ID [--dry-run]``.

Two records of one system are one customer (the merchant merged two Clarity accounts, or two Stripe customers
are duplicates): the bridge moves every identity link and de-duplication key of the losing customer to the
surviving one in one database transaction, retires the losing record's id (an event or poll naming it then finds
the survivor and writes nothing), drops the loser's sync snapshot, and prints (and alerts) what must be done by
hand in each system (``services.customer_merge``). ``--dry-run`` prints the same and writes nothing.

Exit codes: 0 merged, or nothing to do (both ids are already one customer); 1 an id is unknown (run
``backfill customers`` first) or a system or the database failed; 2 invalid options, or Stripe, Clarity and the
ERP not all configured.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from commerce_bridge.entrypoints.cli import _container, _fail, _settings, console
from commerce_bridge.entrypoints.startup_errors import print_error
from commerce_bridge.errors import BridgeError
from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.services.customer_merge import CustomerMerge, MergeReport

customers_app = typer.Typer(help="Customers across the systems: merge two records of one customer.",
                            no_args_is_help=True)


class System(StrEnum):
    clarity = "clarity"
    stripe = "stripe"
    erp = "erp"


def _print(report: MergeReport) -> None:
    verb = "would be " if report.dry_run else ""
    title = f"merge {report.system} {report.from_id} into {report.into_id}" + (
        " (dry run: nothing written)" if report.dry_run else "")
    if report.nothing_to_do:
        console.print(f"{title}: nothing to do, both ids are already customer {report.survivor}")
        return
    table = Table("system", "id", "what", title=title)
    for system, ext in sorted(report.moved.items()):
        table.add_row(system, ext, f"{verb}moved to customer {report.survivor}")
    for system, ext in sorted(report.retired.items()):
        table.add_row(system, ext, f"{verb}retired into {report.kept.get(system, '')}")
    for system, ext in sorted(report.kept.items()):
        table.add_row(system, ext, "kept (the survivor's)")
    console.print(table)
    console.print(f"de-duplication keys {verb}moved: {report.keys}; sync snapshot of the loser "
                  f"{verb}dropped: {'yes' if report.snapshot_dropped else 'no'}"
                  + (f"; earlier merges {verb}re-pointed: {report.rehomed}" if report.rehomed else ""))
    if report.by_hand:
        todo = Table("system", "id", "to do by hand", title="the bridge cannot do these")
        for item in report.by_hand:
            todo.add_row(item.system, item.external_id, item.todo)
        console.print(todo)


@customers_app.command("merge")
def merge(
    system: Annotated[System, typer.Option(help="The system both ids belong to: clarity (Account IDs), stripe "
                                                "(cus_…) or erp (Customer names).")],
    from_id: Annotated[str, typer.Option("--from", help="The record that goes away (its id is retired).")],
    into_id: Annotated[str, typer.Option("--into", help="The record that stays (the survivor).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would move; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Merge two records of one customer: links and keys move to the survivor, the other id is retired."""
    c = _container("cli", _settings())
    try:
        if c.customer_syncer is None:
            print_error("customer merges need Stripe, Clarity and the ERP", title="not configured",
                        fix="set CB_STRIPE_API_KEY, CB_CLARITY_BASE_URL (with its user) and CB_ERP_BASE_URL "
                            "(with CB_ERP_API_KEY, CB_ERP_API_SECRET)")
            raise typer.Exit(2)
        merger = CustomerMerge.from_syncer(c.customer_syncer(SyncPolicy()), alert=c.alerter.alert)
        try:
            report = merger.merge(system.value, from_id, into_id, dry_run=dry_run)
        except BridgeError as exc:
            raise _fail(exc) from exc
        c.alerter.flush()
    finally:
        c.close()
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    else:
        _print(report)
