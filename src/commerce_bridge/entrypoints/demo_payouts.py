"""The demo's last act: Stripe pays the balance out, and the bridge reconciles each payout to the cent.

Once every order is settled and the bridge is idle, the Stripe emulator's clock moves past the payout delay
(the available balance of each currency is paid out) and past the payouts' arrival (``payout.paid``,
``payout.reconciliation_completed``); the bridge's ``stripe.payout_reconciled`` matches each payout's balance
transactions with what it booked and posts one Journal Entry per payout. The table shows each payout's
proof: the transactions net to the payout amount, the clearing account is zero over every document, the
journal balances, and nothing is left unmatched.
"""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from commerce_bridge.entrypoints.money_text import money_text

DAYS_TO_PAYOUT = 3  # past the emulator's payout delay (2 days): the balance becomes available and is paid out
DAYS_TO_ARRIVAL = 3  # past the payouts' arrival date: paid


def run_payouts(console: Console, st: Any, timeout: float) -> tuple[bool, list[dict[str, Any]], str]:
    """Advance the emulator's clock, wait for the bridge to reconcile every payout; (all closed, records, problem)."""
    stripe = st.traffic.stripe
    created = stripe.post("/_sandbox/clock/advance", json={"days": DAYS_TO_PAYOUT}).json().get("payouts_created", [])
    stripe.post("/_sandbox/clock/advance", json={"days": DAYS_TO_ARRIVAL}).raise_for_status()
    if not created:
        return True, [], "no payout: no currency had a positive available balance"
    store = st.container.reconciliations
    deadline = time.monotonic() + timeout
    with console.status(f"Stripe paid out {len(created)} payout(s); the bridge reconciles them"):
        while time.monotonic() < deadline:
            records = [store.get(p) for p in created]
            if all(r is not None and (r["journal_entry"] or r["status"] == "not_reconcilable" or not r["journal"])
                   for r in records):
                done = [r for r in records if r is not None]
                return all(r["status"] == "closed" for r in done), done, ""
            time.sleep(0.5)
    missing = [p for p in created if store.get(p) is None]
    return False, [r for r in (store.get(p) for p in created) if r is not None], (
        f"not reconciled within {timeout:g} s: {', '.join(missing) or 'journal entries not posted'}")


def payouts_table(records: list[dict[str, Any]], *, wide: bool = False) -> Table:
    """One row per payout: amount, transactions matched, the proof's three checks, the journal entry."""
    t = Table(title="Payouts, reconciled to the cent", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column("payout", overflow="fold")  # an id is never cut short: it wraps
    t.add_column("amount", justify="right", no_wrap=True)
    t.add_column("matched", justify="right", no_wrap=True)
    t.add_column("proof")
    t.add_column("ERP journal", no_wrap=True)
    t.add_column("ok", no_wrap=True)
    for r in records:
        proof = r.get("proof") or {}
        checks = [("net = payout", proof.get("sum_ok")), ("clearing 0", proof.get("clearing_zero")),
                  ("balanced", proof.get("balanced"))]
        lines = [f"{'[green]✓[/]' if ok else '[red]✗[/]'} {name}" for name, ok in checks]
        if r.get("exceptions"):
            lines.append(f"[red]{r['exceptions']} exception(s)[/]: "
                         + ", ".join(sorted({str(e['kind']) for e in r.get('exception_rows') or ()})))
        journal = r.get("journal_entry") or "-"
        if wide:
            journal += "\n" + "\n".join(f"{line['account']} {money_text(line['amount_minor'], line['currency'])}"
                                        for line in r.get("journal") or ())
        t.add_row(r["payout_id"], money_text(int(r["amount_minor"]), str(r["currency"])),
                  f"{r['matched']}/{r['transactions']}", "\n".join(lines), journal,
                  "[green]yes[/]" if r["status"] == "closed" else "[red]no[/]")
    return t
