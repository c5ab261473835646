"""Reconciliation row by row in plain Python: the rules of ``rules.py`` without a columnar engine.

It is the comparison arm of ``bench/reconcile.py`` and the oracle the tests hold the columnar job to:
both must give the same statuses, exceptions, journal lines and proof for any input, with or without
``booked`` rows. It takes the same records the job takes (``job.TRANSACTION_SCHEMA`` etc., one dict per
row) and returns a ``Summary``.
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
    to_minor,
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
    proof: dict[str, tuple[int | None, int, int, int, int, bool]] = field(default_factory=dict)
    """payout id -> (payout amount (None: not passed in), net sum, matched net, clearing balance, journal
    balance, closed)."""
    booked_clearing: dict[str, int] = field(default_factory=dict)
    """payout id -> what other documents already moved on clearing for its transactions (when not 0)."""

    @property
    def matched(self) -> int:
        return sum(1 for _, kind in self.status.values() if not kind)

    @property
    def unmatched(self) -> int:
        return sum(1 for _, kind in self.status.values() if kind)


def reconcile_rows(transactions: Iterable[Record], payouts: Iterable[Record], orders: Iterable[Record],
                   returns: Iterable[Record], disputes: Iterable[Record],
                   booked: Iterable[Record] | None = None) -> Summary:
    """Reconcile with a loop over the rows (see ``job.reconcile`` for the inputs and rules).

    Raises
    ------
    MappingError
        An unknown currency, a malformed rate, or a Stripe amount with no exact ISO minor-unit value.
    """
    factors = unit_factors()
    order_by_key = {o["order_key"]: o for o in orders}
    return_by_refund = {r["refund_id"]: r for r in returns}
    dispute_ids = {d["dispute_id"] for d in disputes}
    payout_by_id = {p["payout_id"]: p for p in payouts}
    payout_minor = {pid: to_minor(p["amount"], _factor(factors, p["currency"]), ref=pid, field="amount",
                                  currency=p["currency"]) for pid, p in payout_by_id.items()}
    booked_of: dict[str, tuple[int, int]] = {}
    for b in booked or ():
        gross, fee = booked_of.get(b["ref"], (0, 0))
        booked_of[b["ref"]] = (gross + (b["gross_minor"] or 0), fee + (b["fee_minor"] or 0))
    rows = [_row(t, factors) for t in sorted(transactions, key=lambda row: row["id"])]
    match_kind = _match_charges(rows, order_by_key)
    out = Summary()
    journal: defaultdict[tuple[str, str], int] = defaultdict(int)
    net_sum: defaultdict[str, int] = defaultdict(int)
    matched_net: defaultdict[str, int] = defaultdict(int)
    booked_clearing: defaultdict[str, int] = defaultdict(int)
    flagged: set[str] = set()
    charged: set[str] = set()
    charge_kind: dict[str, str] = {}
    for r in rows:
        if r.category == "charge" and r.t["source_id"] is not None:
            charge_kind.setdefault(r.t["source_id"], match_kind[r.t["id"]])
    for r in rows:
        t, category, pid = r.t, r.category, r.t["payout_id"]
        payout = payout_by_id.get(pid)
        kind = ""
        if payout is None:
            kind = "unknown_payout"
        elif r.cur != payout["currency"].upper():
            kind = "payout_currency_mismatch"
        elif category == "charge":
            kind = match_kind[t["id"]]
        elif category == "partial_capture":
            found = charge_kind.get(t["source_id"])
            kind = "reversal_without_charge" if found is None else found
        elif category == "refund":
            ret = return_by_refund.get(t["source_id"])
            if ret is None:
                kind = "refund_without_return"
            elif t["order_key"] is not None and ret["order_key"] is not None and t["order_key"] != ret["order_key"]:
                kind = "refund_order_mismatch"
            elif r.src_cur != ret["currency"].upper():
                kind = "currency_mismatch"
            elif r.src_minor != ret["amount_minor"]:
                kind = "amount_mismatch"
        elif category == "dispute":
            if t["source_id"] not in dispute_ids:
                kind = "dispute_without_record"
        elif category == "payout":
            if -payout_minor[pid] != r.amount:
                kind = "payout_mismatch"
        elif category == "unknown":
            kind = "unknown_type"
        if not kind and t["net"] != t["amount"] - t["fee"]:
            kind = "fee_mismatch"
        if category == "charge" and t["order_key"] in order_by_key:
            charged.add(t["order_key"])
        out.status[t["id"]] = (category, kind)
        if kind:
            out.exceptions.add((kind, t["id"], pid or ""))
            flagged.add(pid)
        if category == "payout":
            continue
        net_sum[pid] += r.net
        if not kind:
            matched_net[pid] += r.net
        fx = 0
        if (not kind and category in ("charge", "refund") and t["exchange_rate"] is not None
                and r.src_cur != r.cur):
            expected = convert_half_even(r.src_minor, minor_digits(r.src_cur), rate_units(t["exchange_rate"]),
                                         minor_digits(r.cur))
            fx = r.amount - (expected if r.amount >= 0 else -expected)
        gross, bfee = booked_of.get(t["id"], (0, 0))
        booked_clearing[pid] += gross - bfee
        counter = "suspense" if kind else COUNTER_ROLE[category]
        journal[pid, "clearing"] += r.net - (gross - bfee)
        journal[pid, counter] -= r.net + r.fee - fx - gross  # = amount - fx - G unless net is not amount - fee
        journal[pid, "fx"] -= fx
        journal[pid, "dispute_fees" if category == "dispute" else "fees"] += r.fee - bfee
    for pid, paid in payout_minor.items():
        journal[pid, "bank"] += paid
        journal[pid, "clearing"] -= paid
    out.journal = {key: value for key, value in journal.items() if value}
    named = {r.t["payout_id"] for r in rows if r.t["payout_id"] is not None}
    for pid in sorted(set(payout_minor) | named):
        amount: int | None = payout_minor.get(pid)
        clearing = journal.get((pid, "clearing"), 0)
        balance = sum(v for (p, _), v in journal.items() if p == pid)
        if amount is not None and net_sum[pid] != amount:
            out.exceptions.add(("payout_mismatch", pid, pid))
            flagged.add(pid)
        closed = (pid not in flagged and net_sum[pid] == amount and booked_clearing[pid] + clearing == 0
                  and balance == 0)
        out.proof[pid] = (amount, net_sum[pid], matched_net[pid], clearing, balance, closed)
        if booked_clearing[pid]:
            out.booked_clearing[pid] = booked_clearing[pid]
    for key in order_by_key:
        if key not in charged:
            out.exceptions.add(("order_without_charge", key, ""))
    assert set(k for k, _, _ in out.exceptions) <= set(EXCEPTION_KINDS)
    return out


@dataclass(frozen=True, slots=True)
class _Row:
    """One transaction with its category and amounts in ISO minor units."""

    t: Record
    category: str
    cur: str
    amount: int
    fee: int
    net: int
    src_cur: str
    src_minor: int


def _row(t: Record, factors: Mapping[str, tuple[int, int]]) -> _Row:
    cur = t["currency"].upper()
    factor = _factor(factors, cur)
    amount, fee, net = (to_minor(t[f], factor, ref=t["id"], field=f, currency=cur) for f in ("amount", "fee", "net"))
    src_cur = (t["source_currency"] or t["currency"]).upper()
    src_factor = _factor(factors, src_cur)
    if t["source_amount"] is not None:
        src_minor = abs(to_minor(t["source_amount"], src_factor, ref=t["id"], field="source_amount",
                                 currency=src_cur))
    else:
        src_minor = abs(amount) if src_cur == cur else abs(t["amount"]) * src_factor[0] // src_factor[1]
    return _Row(t, category_of(t["type"], t["reporting_category"]), cur, amount, fee, net, src_cur, src_minor)


def _match_charges(rows: list[_Row], order_by_key: Mapping[str, Record]) -> dict[str, str]:
    """Each charge's kind from matching it to its order (rows sorted by id; see ``job._match_charges``)."""
    reversals: defaultdict[str, int] = defaultdict(int)
    for r in rows:
        if r.category == "partial_capture" and r.cur == r.src_cur:
            reversals[r.t["source_id"]] += r.amount
    kinds: dict[str, str] = {}
    groups: defaultdict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for r in rows:
        if r.category != "charge":
            continue
        order = order_by_key.get(r.t["order_key"])
        if order is None:
            kinds[r.t["id"]] = "charge_without_order"
        elif r.src_cur != order["currency"].upper():
            kinds[r.t["id"]] = "currency_mismatch"
        else:
            eff = r.src_minor + (reversals.get(r.t["source_id"], 0) if r.t["source_id"] is not None else 0)
            groups[r.t["order_key"]].append((r.t["id"], eff, r.fee))
    for key, charges in groups.items():
        order = order_by_key[key]
        cum = fees = 0
        reached_at: int | None = None
        exact = fee_ok = False
        for i, (_, eff, fee) in enumerate(charges):
            cum, fees = cum + eff, fees + fee
            if reached_at is None and cum >= order["amount_minor"]:
                reached_at, exact = i, cum == order["amount_minor"]
                fee_ok = order["fee_minor"] is None or fees == order["fee_minor"]
        for i, (tid, _, _) in enumerate(charges):
            if reached_at is not None and i > reached_at:
                kinds[tid] = "duplicate_charge"
            elif not exact:
                kinds[tid] = "amount_mismatch"
            else:
                kinds[tid] = "" if fee_ok else "fee_mismatch"
    return kinds


def _factor(factors: Mapping[str, tuple[int, int]], code: str) -> tuple[int, int]:
    found = factors.get(code.lower())
    if found is None:
        raise MappingError(f"unknown currency {code!r} in the reconciliation input",
                           suggested_fix="use ISO 4217 codes as Stripe sends them")
    return found
