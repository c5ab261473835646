"""The demo's second table: the money that went back on each order, as each system records it.

One row per order whose money went back (``sandbox/money_back.py``): Stripe's refunds and dispute, the Clarity
order's status and returns, ERPNext's credit notes, Pay entries and dispute journal entries. Amounts are
exact, with the currency's own decimals (``money_text``); ``wide`` adds each record's id.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from commerce_bridge.entrypoints.money_text import money_text

WHAT = {"return": "return refunded in Clarity", "refund": "refund in the Dashboard",
        "won": "dispute won", "lost": "dispute lost"}


def _money(minor: int | None, currency: str) -> str:
    return money_text(minor, currency) if minor is not None else "no amount"


def _with_id(text: str, ident: str, wide: bool) -> str:
    return f"{text} ({ident})" if wide and ident else text


def _stripe(o: Any, wide: bool) -> list[str]:
    cur = o.scenario.currency
    out = [_with_id(f"refund {_money(r.amount_minor, cur)} {r.status}", r.id, wide) for r in o.back.refunds]
    out += [_with_id(f"dispute {_money(d.amount_minor, cur)} {d.status.replace('_', ' ')}", d.id, wide)
            for d in o.back.disputes]
    return out


def _clarity(o: Any, wide: bool) -> list[str]:
    cur = o.scenario.currency
    status = o.clarity_status or "-"
    if o.back.was and o.back.was != status:
        status += f" (was {o.back.was})"
    return [status] + [
        _with_id(f"return {_money(r.amount_minor, cur)} {r.status}", r.key, wide) for r in o.back.returns]


def _erp(o: Any, wide: bool) -> list[str]:
    cur = o.scenario.currency
    out = [_with_id(f"credit note {_money(-d.amount_minor if d.amount_minor is not None else None, cur)}", d.name,
                    wide) for d in o.back.credit_notes]
    out += [_with_id(f"Pay entry {_money(d.amount_minor, cur)}", d.name, wide) for d in o.back.pay_entries]
    kinds = {key: ("withdrawal (with fee)" if amount < 0 else "reinstatement")
             for dispute in o.back.disputes for key, amount, _ in dispute.movements}
    for j in o.back.journals:
        kind = "chargeback" if j.key.endswith(":chargeback") else kinds.get(j.key, "journal")
        out.append(_with_id(f"{kind} {_money(j.amount_minor, cur)}", j.name, wide))
    return out


def money_back_table(placed: list[Any], *, wide: bool = False) -> Table:
    """One row per order whose money went back: each system's records of it, and whether they are as expected."""
    t = Table(title="Money going back, in each system", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column("order", no_wrap=True)
    t.add_column("what")
    t.add_column("Stripe")
    t.add_column("Clarity")
    t.add_column("ERPNext")
    t.add_column("ok", no_wrap=True)
    for o in placed:
        if o.back is None:
            continue
        cells = [_stripe(o, wide), _clarity(o, wide), _erp(o, wide)]
        t.add_row(o.key or "-", WHAT.get(o.back.then, o.back.then), *("\n".join(c) or "-" for c in cells),
                  "[green]yes[/]" if o.done else "[red]no[/]")
    return t
