"""Reconciliation row by row in plain Python: the rules of ``rules.py`` without a columnar engine.

It is the comparison arm of ``bench/reconcile.py`` and the oracle the tests hold the columnar job to:
both must give the same statuses, exceptions, journal lines and proof for any input. It takes the same
records the job takes (``job.TRANSACTION_FIELDS`` etc., one dict per row) and returns a ``Summary``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile.rules import (
    COUNTER_ROLE,
    EXCEPTION_KINDS,
    category_of,
    convert_half_even,
    rate_units,
    unit_factors,
)

Record = Mapping[str, Any]


@dataclass
class Summary:
    """What a reconciliation found, in plain Python (comparable between the job and the reference)."""

    status: dict[str, tuple[str, str]] = field(default_factory=dict)
    """txn id -> (category, exception kind or "" when matched)."""
    exceptions: set[tuple[str, str, str]] = field(default_factory=set)
    """(kind, ref, payout id) for every exception; ref is a txn id, or an order key for order_without_charge."""
    journal: dict[tuple[str, str], int] = field(default_factory=dict)
    """(payout id, account role) -> signed total in the settlement currency's minor units (+ debit)."""
    proof: dict[str, tuple[int, int, int, int, int, bool]] = field(default_factory=dict)
    """payout id -> (payout amount, net sum, matched net, clearing balance, journal balance, closed)."""

    @property
    def matched(self) -> int:
        return sum(1 for _, kind in self.status.values() if not kind)

    @property
    def unmatched(self) -> int:
        return sum(1 for _, kind in self.status.values() if kind)


def reconcile_rows(transactions: Iterable[Record], payouts: Iterable[Record], orders: Iterable[Record],
                   returns: Iterable[Record], disputes: Iterable[Record]) -> Summary:
    """Reconcile with a loop over the rows (see ``job.reconcile`` for the inputs and rules)."""
    factors = unit_factors()
    order_by_key = {o["order_key"]: o for o in orders}
    return_by_refund = {r["refund_id"]: r for r in returns}
    dispute_ids = {d["dispute_id"] for d in disputes}
    payout_by_id = {p["payout_id"]: p for p in payouts}
    out = Summary()
    journal: defaultdict[tuple[str, str], int] = defaultdict(int)
    net_sum: defaultdict[str, int] = defaultdict(int)
    matched_net: defaultdict[str, int] = defaultdict(int)
    flagged: set[str] = set()
    charged: set[str] = set()
    for t in sorted(transactions, key=lambda row: row["id"]):
        mul, div = _factor(factors, t["currency"])
        amount, fee, net = t["amount"] * mul // div, t["fee"] * mul // div, t["net"] * mul // div
        category = category_of(t["type"], t["reporting_category"])
        pid = t["payout_id"]
        src_cur = (t["source_currency"] or t["currency"]).upper()
        src_amount = t["source_amount"] if t["source_amount"] is not None else t["amount"]
        smul, sdiv = _factor(factors, src_cur)
        src_minor = abs(src_amount) * smul // sdiv
        kind = ""
        if category == "charge":
            order = order_by_key.get(t["order_key"])
            if order is None:
                kind = "charge_without_order"
            elif t["order_key"] in charged:
                kind = "duplicate_charge"
            elif src_cur != order["currency"]:
                kind = "currency_mismatch"
            elif src_minor != order["amount_minor"]:
                kind = "amount_mismatch"
            elif order["fee_minor"] is not None and order["fee_minor"] != fee:
                kind = "fee_mismatch"
            if order is not None:
                charged.add(t["order_key"])
        elif category == "refund":
            ret = return_by_refund.get(t["source_id"])
            if ret is None:
                kind = "refund_without_return"
            elif src_cur != ret["currency"]:
                kind = "currency_mismatch"
            elif src_minor != ret["amount_minor"]:
                kind = "amount_mismatch"
        elif category == "dispute":
            if t["source_id"] not in dispute_ids:
                kind = "dispute_without_record"
        elif category == "payout":
            payout = payout_by_id.get(pid)
            pmul, pdiv = _factor(factors, payout["currency"]) if payout is not None else (1, 1)
            if payout is None or -(payout["amount"] * pmul // pdiv) != amount:
                kind = "payout_mismatch"
        elif category == "unknown":
            kind = "unknown_type"
        if not kind and t["net"] != t["amount"] - t["fee"]:
            kind = "fee_mismatch"
        out.status[t["id"]] = (category, kind)
        if kind:
            out.exceptions.add((kind, t["id"], pid))
            flagged.add(pid)
        if category == "payout":
            continue
        net_sum[pid] += net
        if not kind:
            matched_net[pid] += net
        fx = 0
        if (not kind and category in ("charge", "refund") and t["exchange_rate"] is not None
                and src_cur != t["currency"].upper()):
            expected = convert_half_even(src_minor, minor_digits(src_cur), rate_units(t["exchange_rate"]),
                                         minor_digits(t["currency"].upper()))
            fx = amount - (expected if amount >= 0 else -expected)
        counter = "suspense" if kind else COUNTER_ROLE[category]
        journal[pid, "clearing"] += net
        journal[pid, counter] -= net + fee - fx  # = amount - fx unless net is not amount - fee
        journal[pid, "fx"] -= fx
        journal[pid, "dispute_fees" if category == "dispute" else "fees"] += fee
    for pid, payout in payout_by_id.items():
        mul, div = _factor(factors, payout["currency"])
        amount = payout["amount"] * mul // div
        journal[pid, "bank"] += amount
        journal[pid, "clearing"] -= amount
    out.journal = {key: value for key, value in journal.items() if value}
    for pid, payout in payout_by_id.items():
        mul, div = _factor(factors, payout["currency"])
        amount = payout["amount"] * mul // div
        clearing = journal.get((pid, "clearing"), 0)
        balance = sum(v for (p, _), v in journal.items() if p == pid)
        if net_sum[pid] != amount:
            out.exceptions.add(("payout_mismatch", pid, pid))
            flagged.add(pid)
        closed = pid not in flagged and clearing == 0 and balance == 0
        out.proof[pid] = (amount, net_sum[pid], matched_net[pid], clearing, balance, closed)
    for key in order_by_key:
        if key not in charged:
            out.exceptions.add(("order_without_charge", key, ""))
    assert set(k for k, _, _ in out.exceptions) <= set(EXCEPTION_KINDS)
    return out


def _factor(factors: Mapping[str, tuple[int, int]], code: str) -> tuple[int, int]:
    found = factors.get(code.lower())
    if found is None:
        raise MappingError(f"unknown currency {code!r} in the reconciliation input",
                           suggested_fix="use ISO 4217 codes as Stripe sends them")
    return found
