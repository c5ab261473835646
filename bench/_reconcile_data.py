"""Synthetic payouts for bench/reconcile.py: balance transactions with a realistic mix and injected discrepancies.

Mix (issue 13, point 7): about 85 % charges, 8 % refunds (partial, often in a later payout than their
charge), 4.5 % Stripe fees, 0.5 % dispute lines (withdrawal with a dispute fee, some reinstated),
2 % other adjustments, one payout line per payout; 10 % of the charges are made in another currency
than the payout's (EUR into USD, USD into JPY and KWD) with an ``exchange_rate`` shown with 6 decimals
while Stripe converted at a finer rate, so a few FX lines are not zero. Payouts settle in USD (90 %),
JPY (5 %) and KWD (5 %, Stripe amounts multiples of 10).

Every kind in ``INJECTED_KINDS`` is injected ``per_kind`` times into otherwise clean data; ``injected``
lists the (kind, ref) pairs the reconciliation must report, and nothing else may be reported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from commerce_bridge.reconcile.rules import convert_half_even, rate_units

Columns = dict[str, list[Any]]

INJECTED_KINDS = ("charge_without_order", "duplicate_charge", "currency_mismatch", "amount_mismatch",
                  "fee_mismatch", "refund_without_return", "dispute_without_record", "unknown_type",
                  "payout_mismatch", "order_without_charge")

TXN_COLUMNS = ("id", "payout_id", "type", "reporting_category", "amount", "fee", "net", "currency",
               "exchange_rate", "source_id", "source_type", "source_amount", "source_currency", "order_key")
_DIGITS = {"usd": 2, "eur": 2, "jpy": 0, "kwd": 3}
_STEP = {"usd": 1, "eur": 1, "jpy": 1, "kwd": 10}
_DISPUTE_FEE = {"usd": 1500, "jpy": 2000, "kwd": 4600}
_RATES = {("eur", "usd"): 1.0843, ("usd", "jpy"): 149.7, ("usd", "kwd"): 0.3075}


@dataclass
class Dataset:
    transactions: Columns
    payouts: Columns
    orders: Columns
    returns: Columns
    disputes: Columns
    injected: set[tuple[str, str]] = field(default_factory=set)


def _money(rng: random.Random, cur: str, low: float, high: float) -> int:
    value = int(rng.uniform(low, high) * 10 ** _DIGITS[cur])
    return max(_STEP[cur], value - value % _STEP[cur])


def generate(rows: int, seed: int, per_payout: int = 2000) -> Dataset:
    """About ``rows`` transactions (plus the injected extras), deterministic for a seed."""
    rng = random.Random(seed)
    txn: Columns = {c: [] for c in TXN_COLUMNS}
    orders: Columns = {"order_key": [], "amount_minor": [], "currency": [], "fee_minor": []}
    returns: Columns = {"refund_id": [], "order_key": [], "amount_minor": [], "currency": []}
    disputes: Columns = {"dispute_id": [], "order_key": []}
    charges_by_cur: dict[str, list[int]] = {"usd": [], "jpy": [], "kwd": []}
    n_payouts = max(1, rows // per_payout)
    payout_cur = {f"po_{p:06d}": ("usd" if p % 20 < 18 else "jpy" if p % 20 == 18 else "kwd")
                  for p in range(n_payouts)}
    seq = 0

    def add(**values: Any) -> int:
        nonlocal seq
        for c in TXN_COLUMNS:
            txn[c].append(values.get(c))
        seq += 1
        return len(txn["id"]) - 1

    for pid, cur in payout_cur.items():
        for _ in range(max(1, rows // n_payouts - 1)):
            tid = f"txn_{seq:09d}"
            draw = rng.random()
            pool = charges_by_cur[cur]
            if draw < 0.85 or len(pool) < 10:
                key = f"ord_{seq:09d}"
                fx = rng.random() < 0.10
                src = ("eur" if cur == "usd" else "usd") if fx else cur
                src_amount = _money(rng, src, 5, 400)
                rate_text = None
                amount = src_amount
                if fx:
                    base = _RATES[(src, cur)] * rng.uniform(0.98, 1.02)
                    fine = f"{base:.9f}"
                    rate_text = f"{base:.6f}"
                    amount = convert_half_even(src_amount, _DIGITS[src], rate_units(fine), _DIGITS[cur])
                    amount -= amount % _STEP[cur]
                fee = (amount * 29 // 1000 + (30 if cur == "usd" else 40 if cur == "jpy" else 90))
                fee -= fee % _STEP[cur]
                i = add(id=tid, payout_id=pid, type="charge", reporting_category="charge", amount=amount, fee=fee,
                        net=amount - fee, currency=cur, exchange_rate=rate_text, source_id=f"ch_{seq:09d}",
                        source_type="charge", source_amount=src_amount, source_currency=src, order_key=key)
                orders["order_key"].append(key)
                orders["amount_minor"].append(src_amount)
                orders["currency"].append(src.upper())
                orders["fee_minor"].append(fee if rng.random() < 0.5 else None)
                pool.append(i)
            elif draw < 0.93:
                c = rng.choice(pool)
                src, src_total = txn["source_currency"][c], txn["source_amount"][c]
                part = max(_STEP[src], (src_total * rng.randint(10, 50) // 100) // _STEP[src] * _STEP[src])
                amount, rate_text = part, None
                if src != cur:
                    rate_text = txn["exchange_rate"][c]
                    amount = convert_half_even(part, _DIGITS[src], rate_units(rate_text), _DIGITS[cur])
                    amount -= amount % _STEP[cur]
                rid = f"re_{seq:09d}"
                add(id=tid, payout_id=pid, type="refund", reporting_category="refund", amount=-amount, fee=0,
                    net=-amount, currency=cur, exchange_rate=rate_text, source_id=rid, source_type="refund",
                    source_amount=part, source_currency=src, order_key=txn["order_key"][c])
                returns["refund_id"].append(rid)
                returns["order_key"].append(txn["order_key"][c])
                returns["amount_minor"].append(part)
                returns["currency"].append(src.upper())
            elif draw < 0.975:
                amount = _money(rng, cur, 0.5, 30)
                add(id=tid, payout_id=pid, type="stripe_fee", reporting_category="fee", amount=-amount, fee=0,
                    net=-amount, currency=cur, source_id=f"fee_{seq:09d}", source_type="fee")
            elif draw < 0.98:
                c = rng.choice(pool)
                did = f"dp_{seq:09d}"
                amount, fee = txn["amount"][c], _DISPUTE_FEE[cur]
                add(id=tid, payout_id=pid, type="adjustment", reporting_category="dispute", amount=-amount,
                    fee=fee, net=-amount - fee, currency=cur, source_id=did, source_type="dispute",
                    order_key=txn["order_key"][c])
                disputes["dispute_id"].append(did)
                disputes["order_key"].append(txn["order_key"][c])
                if rng.random() < 0.3:
                    add(id=f"txn_{seq:09d}", payout_id=pid, type="adjustment", reporting_category="dispute_reversal",
                        amount=amount, fee=0, net=amount, currency=cur, source_id=did, source_type="dispute",
                        order_key=txn["order_key"][c])
            else:
                amount = _money(rng, cur, 0.1, 50) * rng.choice((1, -1))
                kind = rng.choice(("adjustment", "reserve_release", "application_fee_refund"))
                add(id=tid, payout_id=pid, type=kind, reporting_category="other_adjustment", amount=amount,
                    fee=0, net=amount, currency=cur, source_id=f"adj_{seq:09d}", source_type="adjustment")
    data = Dataset(txn, {"payout_id": [], "amount": [], "currency": []}, orders, returns, disputes)
    _inject(data, rng, per_kind=max(1, rows // 20000), payout_cur=payout_cur)
    return data


def _inject(d: Dataset, rng: random.Random, per_kind: int, payout_cur: dict[str, str]) -> None:
    t = d.transactions
    by_type: dict[str, list[int]] = {}
    for i, (typ, rc) in enumerate(zip(t["type"], t["reporting_category"], strict=True)):
        by_type.setdefault("dispute" if rc == "dispute" else typ, []).append(i)
    order_pos = {k: i for i, k in enumerate(d.orders["order_key"])}
    return_pos = {k: i for i, k in enumerate(d.returns["refund_id"])}
    dispute_lines: dict[str, list[int]] = {}
    for i, (src, rc) in enumerate(zip(t["source_id"], t["reporting_category"], strict=True)):
        if rc in ("dispute", "dispute_reversal"):
            dispute_lines.setdefault(src, []).append(i)
    used: set[int] = set()
    taken_orders: set[str] = set()

    def pick(pool: str) -> int:
        while True:
            i = rng.choice(by_type[pool])
            key = t["order_key"][i]
            if i not in used and (key is None or key not in taken_orders):
                used.add(i)
                if key is not None:
                    taken_orders.add(key)
                return i

    drop_orders: set[int] = set()
    drop_returns: set[int] = set()
    drop_disputes: set[str] = set()
    for _ in range(per_kind):
        i = pick("charge")
        drop_orders.add(order_pos[t["order_key"][i]])
        d.injected.add(("charge_without_order", t["id"][i]))
        i = pick("charge")
        o = order_pos[t["order_key"][i]]
        d.orders["currency"][o] = "GBP" if d.orders["currency"][o] != "GBP" else "CHF"
        d.injected.add(("currency_mismatch", t["id"][i]))
        i = pick("charge")
        d.orders["amount_minor"][order_pos[t["order_key"][i]]] += 1
        d.injected.add(("amount_mismatch", t["id"][i]))
        i = pick("charge")
        d.orders["fee_minor"][order_pos[t["order_key"][i]]] = t["fee"][i] + 1
        d.injected.add(("fee_mismatch", t["id"][i]))
        i = pick("adjustment")
        t["net"][i] -= 1  # net is not amount - fee
        d.injected.add(("fee_mismatch", t["id"][i]))
        i = pick("refund")
        drop_returns.add(return_pos[t["source_id"][i]])
        d.injected.add(("refund_without_return", t["id"][i]))
        i = pick("dispute")
        drop_disputes.add(t["source_id"][i])
        for j in dispute_lines[t["source_id"][i]]:
            used.add(j)
            d.injected.add(("dispute_without_record", t["id"][j]))
        i = pick("stripe_fee")
        t["type"][i] = "mystery_fee"
        d.injected.add(("unknown_type", t["id"][i]))
        i = pick("charge")
        for c in t:
            t[c].append(t[c][i])
        t["id"][-1] = t["id"][i] + "_dup"
        t["source_id"][-1] = t["source_id"][i] + "_dup"
        d.injected.add(("duplicate_charge", t["id"][-1]))
        key = f"ord_orphan_{len(d.injected):06d}"
        d.orders["order_key"].append(key)
        d.orders["amount_minor"].append(1000)
        d.orders["currency"].append("USD")
        d.orders["fee_minor"].append(None)
        d.injected.add(("order_without_charge", key))
    for c in d.orders:
        d.orders[c] = [v for j, v in enumerate(d.orders[c]) if j not in drop_orders]
    for c in d.returns:
        d.returns[c] = [v for j, v in enumerate(d.returns[c]) if j not in drop_returns]
    keep = [j for j, did in enumerate(d.disputes["dispute_id"]) if did not in drop_disputes]
    for c in d.disputes:
        d.disputes[c] = [d.disputes[c][j] for j in keep]
    net: dict[str, int] = dict.fromkeys(payout_cur, 0)
    for pid, value in zip(t["payout_id"], t["net"], strict=True):
        net[pid] += value
    mismatched = set(rng.sample(sorted(payout_cur), min(len(payout_cur), per_kind)))
    for pid, cur in payout_cur.items():
        i = len(t["id"])
        for c in t:
            t[c].append(None)
        t["id"][i], t["payout_id"][i], t["type"][i], t["reporting_category"][i] = f"txn_po_{pid}", pid, "payout", "payout"
        t["amount"][i], t["fee"][i], t["net"][i], t["currency"][i] = -net[pid], 0, -net[pid], cur
        t["source_id"][i], t["source_type"][i] = pid, "payout"
        d.payouts["payout_id"].append(pid)
        d.payouts["amount"].append(net[pid] + (_STEP[cur] if pid in mismatched else 0))
        d.payouts["currency"].append(cur)
        if pid in mismatched:
            d.injected.add(("payout_mismatch", f"txn_po_{pid}"))
            d.injected.add(("payout_mismatch", pid))
