"""Money-back benchmark: CPU per business event of the refund and dispute flows, against the bare HTTP work.

DESIGN.md section 4: "a new flow states its ratio". For each arm and repetition, a fresh stack of sandbox peers
(``sandbox_peers``, in this process, as ``bench/order_to_cash.py`` starts them) and:

* **setup** (not measured): ``--events`` x 2 storefront checkouts (scenario "paid (USD)", 33.00 USD each) at
  ``--setup-rate`` through the arm's own order flow, waited for until every order is paid in Clarity and has
  its ERP Payment Entry, the emulator's webhook queue drained and the arm idle; then ``--idle`` seconds of the
  arm's idle CPU (started, polling Clarity, nothing to do).
* **refunds**: ``--events`` Dashboard refunds (the emulator's ``POST /_sandbox/refunds``, 10.01 of the 33.00,
  so partial), one per paid order, at ``--rate`` per second. One business event = one refund booked: a
  Clarity sales return (Completed, the refund's amount), the order Partially Refunded, an ERP credit note
  and its Pay entry (submitted, the refund's amount).
* **disputes**: on ``--events`` other paid orders, a dispute opened (``POST /_sandbox/charges/{id}/dispute``,
  a chargeback) at ``--rate`` per second and closed ``--close-after`` seconds later, won and lost in turn.
  One business event = one dispute created and closed: the withdrawal Journal Entry; won: the reinstatement
  Journal Entry and the order back to Full Payment Received; lost: the chargeback Journal Entry and the order
  in Chargeback; the closing note on the order. (The "opened" note is counted, not required: a dispute
  closed before its first event is handled is first seen closed, and then only the closing note is due.)
* **payout** (``--flows payout``, alone): the ``--events`` paid orders of the setup are placed in ``--payouts``
  batches (the first in the setup above, each later one between two measured windows, not measured); after
  each batch the emulator's clock moves ``POST /_sandbox/clock/advance {"days": 3}``: that settles the batch's
  charges and creates the automatic payout of the available balance (``payout.created``), and pays the payout
  created by the advance before (``payout.paid`` + ``payout.reconciliation_completed``); one advance more pays
  the last one. Each advance is a measured window that ends when the payout it paid has its Journal Entry
  (``cheque_no`` = payout id, submitted) and the webhook queue is drained and the arm idle; the phase's figures
  are the sum of its windows. One business event = one payout reconciled and its Journal Entry posted
  (``stripe.payout_reconciled``, run for both events); the CPU per balance transaction in the payouts (the
  charges and each payout's own line) is given too. Checked after: each payout has exactly one submitted
  Journal Entry, it balances and its bank line is the payout amount; the summary says whether both arms' entries
  have the same rows (account, debit, credit) for each batch.

A phase ends when every event's records exist in the peers (checked every 0.5 s with GETs that carry
``_bench=1``, left out of the call counts), the emulator's webhook queue is drained and the arm is idle (the
bridge: no inbox row waiting, no run queued or running; the naive arm: every money-back delivery it took has
been handled). After both phases every record is checked again (and with ``--flows`` naming one flow, the
other flow's orders must still be simply paid); the bridge must have no open dead-letter entry, the naive arm
no error.

Arms (``--arms``, interleaved per repetition as in order_to_cash: bridge, naive, bridge, naive, ...):

* **bridge**: ``commerce-bridge serve`` in its own process (``--bridge split``: ingress + ``--workers``
  workers, PostgreSQL only); its CPU is its processes' (``/proc``), plus on PostgreSQL the backends serving
  its database. It runs with ``CB_WORKFLOWS_DISABLED=stripe.dispute_evidence`` (``--disable``): staging
  evidence on each new dispute is work the naive arm does not do.
* **naive**: ``bench/_naive_money_back.py``, one process with no durability that does the order flow of
  ``_naive_order.py`` and, for each refund or dispute event, the same HTTP calls as the two workflows
  through the official clients, its state in memory; with ``--flows payout``, ``bench/_naive_payouts.py``: that
  and, for each ``payout.paid`` and ``payout.reconciliation_completed``, the same calls as
  ``stripe.payout_reconciled`` (the second event finds the entry and posts nothing, as in the bridge), the
  journal computed in plain Python instead of the bridge's polars core.

Per arm and flow: CPU ms per business event, with and without the idle cost, and the HTTP calls per business
event each peer answered (Stripe from the emulator's request log, Clarity and ERPNext from the simulators';
Clarity's change polls counted apart); then the ratio bridge/naive per flow. Everything, with the runs per
workflow and each route's calls, goes to ``bench/results/money-back-<UTC time>.json`` (not in git).

    .venv/bin/python bench/money_back.py --reps 2 --markdown
    .venv/bin/python bench/money_back.py --db postgres --reps 1 --events 20
    .venv/bin/python bench/money_back.py --flows payout --events 90 --payouts 3 --reps 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _arms import (
    Arm,
    arm_stack,
    arms_table,
    flow_summary,
    idle_cpu,
    loadavg,
    per_event,
    ratio_table,
    run_all,
    scheduled_checks_off,
    wait_events,
)
from commerce_bridge.sandbox.traffic import CLARITY_API
from commerce_bridge.store.tables import runs
from order_to_cash import (
    LOG,
    PAID,
    PEERS,
    PgBackends,
    _median,
    _num,
    _peer_calls,
    arm_ratios,
    chosen_databases,
    machine_busy_s,
    machine_steal_s,
    offer,
    pct,
)

MARK = "_bench"  # query parameter of this script's own checks: their requests are not the arm's calls
REFUND_MINOR = 1001  # of the order's 3300: a partial refund
MONEY_FLOWS = ("refund", "dispute")
FLOWS = (*MONEY_FLOWS, "payout")
ADVANCE_DAYS = 3  # past the emulator's payout_delay_days (2) and the payout's arrival (the next midnight)
CHECK_EVERY_S = 0.5


@dataclass
class Event:
    """One business event: a Dashboard refund, or a dispute opened then closed, on one paid order."""

    flow: str
    i: int
    order_id: int
    order_key: str
    charge: str
    at: float = math.nan  # monotonic: the last control call (the refund; the dispute's close)
    done: float = math.nan  # monotonic: its records were all seen
    refund: str = ""
    dispute: str = ""
    outcome: str = ""
    withdrawal: str = ""
    reinstatement: str = ""
    error: str = ""


# ---- the peers, read by this script -----------------------------------------------------------------
class Peers:
    """Reads of Clarity and ERPNext that the call counts leave out (``_bench=1``)."""

    def __init__(self, tr: Any) -> None:
        self.tr = tr

    def order(self, order_id: int) -> dict[str, Any]:
        r = self.tr.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order_id}", params={MARK: 1},
                                headers=self.tr.session)
        return dict(r.json()) if r.status_code == 200 and r.content else {}

    def sales_return(self, key: str) -> dict[str, Any]:
        r = self.tr.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/Key/{key}", params={MARK: 1},
                                headers=self.tr.session)
        return dict(r.json()) if r.status_code == 200 and r.content else {}

    def erp(self, doctype: str, field: str, value: str) -> list[dict[str, Any]]:
        """The submitted documents whose ``field`` is ``value``."""
        r = self.tr.erp.get(f"/api/resource/{doctype}", params={
            "filters": json.dumps([[field, "=", value], ["docstatus", "=", 1]]), "fields": '["*"]',
            "limit_page_length": 0, MARK: 1})
        return list(r.json().get("data") or []) if r.status_code == 200 else []

    def refund_booked(self, ev: Event) -> bool:
        amount = Decimal(REFUND_MINOR) / 100
        pays = self.erp("Payment Entry", "reference_no", ev.refund)
        if len(pays) != 1 or Decimal(str(pays[0]["paid_amount"])) != amount:
            return False
        notes = self.erp("Sales Invoice", "remarks", f"Stripe refund {ev.refund}")
        if len(notes) != 1 or Decimal(str(notes[0]["grand_total"])) != -amount:
            return False
        ret = self.sales_return(ev.refund)
        if ret.get("StatusKey") != "Completed" or Decimal(str(ret.get("RefundAmount"))) != amount:
            return False
        return self.order(ev.order_id).get("StatusKey") == "Partially Refunded"

    def dispute_closed(self, ev: Event) -> bool:
        if not ev.outcome:
            return False  # not closed yet
        final = ev.reinstatement if ev.outcome == "won" else f"{ev.dispute}:chargeback"
        if len(self.erp("Journal Entry", "cheque_no", final)) != 1:
            return False
        if len(self.erp("Journal Entry", "cheque_no", ev.withdrawal)) != 1:
            return False
        order = self.order(ev.order_id)
        notes = {n.get("CustomKey") for n in order.get("Notes") or []}
        status = PAID if ev.outcome == "won" else "Chargeback"
        return order.get("StatusKey") == status and f"{ev.dispute}:{ev.outcome}" in notes

    def done(self, ev: Event) -> bool:
        return self.refund_booked(ev) if ev.flow == "refund" else self.dispute_closed(ev)

    def journals(self, key: str) -> list[dict[str, Any]]:
        """The submitted Journal Entries whose ``cheque_no`` is ``key``, in full (with their accounts)."""
        return [dict(self.tr.erp.get(f"/api/resource/Journal Entry/{row['name']}", params={MARK: 1}).json()["data"])
                for row in self.erp("Journal Entry", "cheque_no", key)]


@dataclass
class Payout:
    """One business event of the payout flow: the automatic payout of one batch of paid orders."""

    batch: int
    orders: int
    payout: str = ""
    at: float = math.nan  # monotonic: the clock advance that paid it
    done: float = math.nan  # monotonic: its Journal Entry was seen
    amount_minor: int = 0
    transactions: int = 0
    journal_entry: str = ""
    rows: dict[str, str] = field(default_factory=dict)  # account -> debit - credit, as decimal text
    error: str = ""


# ---- setup ---------------------------------------------------------------------------------------------
def paid_orders(tr: Any, clarity_url: str, n: int, rate: float, timeout: float) -> list[tuple[int, str, str]]:
    """Place ``n`` checkouts and wait until each is paid in Clarity and has its ERP Payment Entry:
    [(order id, key, charge id)]."""
    placed = asyncio.run(offer(clarity_url, rate, n / rate))
    bad = [o.error for o in placed if o.error]
    if bad:
        raise RuntimeError(f"{len(bad)} checkouts failed: {bad[:3]}")
    peers, paid = Peers(tr), {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for o in placed:
            if o.order_id not in paid:
                doc = peers.order(int(o.order_id or 0))
                if doc.get("StatusKey") == PAID and str(doc.get("PaymentTransactionID") or "").startswith("ch_"):
                    paid[o.order_id] = (int(o.order_id or 0), o.key, str(doc["PaymentTransactionID"]))
        if len(paid) == n and all(peers.erp("Payment Entry", "reference_no", ch) for _, _, ch in paid.values()):
            return sorted(paid.values())
        time.sleep(1.0)
    raise RuntimeError(f"setup: {len(paid)} of {n} orders paid after {timeout:g} s")


# ---- the arm, watched ------------------------------------------------------------------------------------
def settle(stripe: httpx.Client, arm: Arm, timeout: float) -> bool:
    """Wait until the emulator has delivered every webhook and the arm has handled them (twice in a row)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        drained = stripe.post("/_sandbox/webhooks/drain", json={"timeout": 5}).json().get("drained")
        quiet = quiet + 1 if drained and arm.idle() else 0
        if quiet >= 2:
            return True
        time.sleep(0.2)
    return False


# ---- a phase -------------------------------------------------------------------------------------------
def watch(events: list[Event], peers: Peers, halt: threading.Event) -> None:
    """Every 0.5 s, check the records of each event offered and not yet seen done; note when they all exist."""
    while not halt.is_set():
        t0 = time.monotonic()
        for ev in events:
            offered = ev.outcome if ev.flow == "dispute" else ev.refund
            if math.isnan(ev.done) and not ev.error and offered and peers.done(ev):
                ev.done = time.monotonic()
        halt.wait(max(0.0, CHECK_EVERY_S - (time.monotonic() - t0)))


def offer_events(stripe: httpx.Client, events: list[Event], rate: float, close_after: float) -> None:
    """Open loop: event i's first control call at t0 + i/rate (a dispute's close ``close_after`` s later)."""
    t0 = time.monotonic() + 0.05
    plan: list[tuple[float, int, Callable[[], None]]] = []
    for ev in events:
        at = t0 + ev.i / rate
        if ev.flow == "refund":
            plan.append((at, 0, lambda ev=ev: refund(stripe, ev)))  # type: ignore[misc]
        else:
            plan.append((at, 0, lambda ev=ev: open_dispute(stripe, ev)))  # type: ignore[misc]
            plan.append((at + close_after, 1, lambda ev=ev: close_dispute(stripe, ev)))  # type: ignore[misc]
    for at, _, call in sorted(plan, key=lambda p: (p[0], p[1])):
        time.sleep(max(0.0, at - time.monotonic()))
        call()


def refund(stripe: httpx.Client, ev: Event) -> None:
    r = stripe.post("/_sandbox/refunds", json={"charge": ev.charge, "amount": REFUND_MINOR,
                                               "reason": "requested_by_customer"})
    ev.at = time.monotonic()
    if r.status_code != 200 or r.json().get("status") != "succeeded":
        ev.error = f"refund {r.status_code}: {r.text[:200]}"
        return
    ev.refund = r.json()["id"]


def open_dispute(stripe: httpx.Client, ev: Event) -> None:
    r = stripe.post(f"/_sandbox/charges/{ev.charge}/dispute", json={"reason": "fraudulent"})
    if r.status_code != 200:
        ev.error = f"dispute {r.status_code}: {r.text[:200]}"
        return
    ev.dispute, ev.withdrawal = r.json()["id"], r.json()["balance_transactions"][0]["id"]


def close_dispute(stripe: httpx.Client, ev: Event) -> None:
    if not ev.dispute:
        return
    outcome = "won" if ev.i % 2 == 0 else "lost"
    r = stripe.post(f"/_sandbox/disputes/{ev.dispute}/resolve", json={"outcome": outcome})
    ev.at = time.monotonic()
    if r.status_code != 200:
        ev.error = f"resolve {r.status_code}: {r.text[:200]}"
        return
    if outcome == "won":
        ev.reinstatement = r.json()["balance_transactions"][1]["id"]
    ev.outcome = outcome


def phase(flow: str, events: list[Event], a: argparse.Namespace, stripe: httpx.Client, peers: Peers, arm: Arm,
          idle: dict[str, Any]) -> dict[str, Any]:
    """Offer the events, wait for their records and for the arm to be idle; the arm's CPU and calls meanwhile."""
    load = loadavg()
    log_start, peer_start = len(LOG.rows), len(PEERS.rows)
    cpu0, pg0 = arm.cpu()
    busy0, steal0 = machine_busy_s(), machine_steal_s()
    t0 = time.monotonic()
    halt = threading.Event()
    watcher = threading.Thread(target=watch, args=(events, peers, halt), name="money-back-checks", daemon=True)
    watcher.start()
    offer_events(stripe, events, a.rate, a.close_after)
    t_offered, deadline = wait_events(events, a.drain, halt, watcher)
    settled = settle(stripe, arm, max(5.0, deadline - time.monotonic()))
    t1 = time.monotonic()
    cpu1, pg1 = arm.cpu()
    busy, steal = machine_busy_s() - busy0, machine_steal_s() - steal0
    calls = _calls(LOG.rows[log_start:], PEERS.rows[peer_start:], t0, t1)
    done = sum(1 for ev in events if not math.isnan(ev.done))
    n = max(1, done)
    cpu = cpu1 - cpu0 + (PgBackends.delta(pg0, pg1) if arm.pg else 0.0)
    latency = [ev.done - ev.at for ev in events if not math.isnan(ev.done)]
    return {
        "flow": flow, "events": len(events), "done": done, "errors": [ev.error for ev in events if ev.error],
        "elapsed_s": t1 - t0, "offer_s": t_offered - t0, "settled": settled, "loadavg_at_start": load,
        "cpu_s": cpu, "pg_backends_cpu_s": PgBackends.delta(pg0, pg1) if arm.pg else None,
        **per_event(cpu, idle, t1 - t0, n, calls, latency),
        "machine_busy_cores": busy / (t1 - t0), "machine_steal_cores": steal / (t1 - t0),
    }


def _calls(stripe_rows: list[Any], peer_rows: list[Any], t0: float, t1: float) -> dict[str, Any]:
    """order_to_cash's count of the peers' answers, without this script's checks (``_bench=1``) and with every
    Clarity change poll (a GET of a list of orders or returns by ``ModifiedSince``, or the first one without
    it; not a search by ``CustomKey``) counted apart as ``polls``."""
    def is_poll(row: Any) -> bool:
        _, peer, method, path, query, _ = row
        return (peer == "clarity" and method == "GET" and path.endswith(("/SalesOrders", "/SalesReturns"))
                and "CustomKey" not in query)

    mine = [r for r in peer_rows if t0 <= r[0] <= t1 and MARK not in r[4]]
    calls = _peer_calls(stripe_rows, [r for r in mine if not is_poll(r)], t0, t1)
    del calls["clarity_polls"]
    return {**calls, "polls": sum(1 for r in mine if is_poll(r))}


# ---- the payout flow -------------------------------------------------------------------------------------
def batch_sizes(events: int, payouts: int) -> list[int]:
    """``events`` orders split into ``payouts`` batches as evenly as can be (the first ones larger)."""
    return [events // payouts + (1 if k < events % payouts else 0) for k in range(payouts)]


def _merge_calls(into: dict[str, Any], calls: dict[str, Any]) -> None:
    for key in ("by_peer", "routes"):
        for k, v in calls[key].items():
            into.setdefault(key, {})[k] = into.get(key, {}).get(k, 0) + v
    into["polls"] = into.get("polls", 0) + calls["polls"]


def payout_phase(a: argparse.Namespace, stripe: httpx.Client, peers: Peers, arm: Arm, idle: dict[str, Any],
                 place: Callable[[int], object]) -> dict[str, Any]:
    """Advance the clock after each batch (``place(n)`` pays the later batches' orders, between the windows) and
    once more; measure each advance until the payout it paid has its Journal Entry and the arm is idle."""
    sizes = batch_sizes(a.events, a.payouts)
    payouts = [Payout(k + 1, n) for k, n in enumerate(sizes)]
    load = loadavg()
    cpu = pg_cpu = busy = steal = elapsed = 0.0
    calls: dict[str, Any] = {}
    windows: list[dict[str, Any]] = []
    settled_all, errors = True, []
    for k in range(len(payouts) + 1):
        if 0 < k < len(payouts):
            t_batch = time.monotonic()
            place(sizes[k])
            if not settle(stripe, arm, 60):
                raise RuntimeError(f"setup of batch {k + 1}: the arm did not become idle")
            windows.append({"batch_setup": k + 1, "s": time.monotonic() - t_batch})
        paid = payouts[k - 1] if k else None
        log_start, peer_start = len(LOG.rows), len(PEERS.rows)
        cpu0, pg0 = arm.cpu()
        busy0, steal0 = machine_busy_s(), machine_steal_s()
        t0 = time.monotonic()
        r = stripe.post("/_sandbox/clock/advance", json={"days": ADVANCE_DAYS})
        t_adv = time.monotonic()
        created = list(r.json().get("payouts_created") or []) if r.status_code == 200 else []
        if r.status_code != 200:
            errors.append(f"advance {r.status_code}: {r.text[:200]}")
        elif k < len(payouts):
            if len(created) == 1:
                payouts[k].payout = created[0]
            else:
                payouts[k].error = f"the advance after batch {k + 1} created {created}"
        if paid is not None and paid.payout:
            paid.at = t_adv
            deadline = t_adv + a.drain
            while time.monotonic() < deadline and not peers.erp("Journal Entry", "cheque_no", paid.payout):
                time.sleep(CHECK_EVERY_S)
            if peers.erp("Journal Entry", "cheque_no", paid.payout):
                paid.done = time.monotonic()
        settled = settle(stripe, arm, max(5.0, a.drain - (time.monotonic() - t_adv)))
        settled_all = settled_all and settled
        t1 = time.monotonic()
        cpu1, pg1 = arm.cpu()
        w_pg = PgBackends.delta(pg0, pg1) if arm.pg else 0.0
        w_calls = _calls(LOG.rows[log_start:], PEERS.rows[peer_start:], t0, t1)
        _merge_calls(calls, w_calls)
        windows.append({"advance": k + 1, "paid": paid.payout if paid else None,
                        "created": created, "s": t1 - t0, "cpu_s": cpu1 - cpu0 + w_pg,
                        "pg_backends_cpu_s": w_pg if arm.pg else None, "settled": settled,
                        "calls": w_calls["by_peer"]})
        cpu += cpu1 - cpu0 + w_pg
        pg_cpu += w_pg
        busy += machine_busy_s() - busy0
        steal += machine_steal_s() - steal0
        elapsed += t1 - t0
    # every payout once more, outside the windows: Stripe's figures (the API's, with the key), and its one journal
    api = peers.tr.stripe
    for po in payouts:
        if not po.payout:
            continue
        doc = api.get(f"/v1/payouts/{po.payout}").json()
        po.amount_minor = int(doc.get("amount") or 0)
        params: dict[str, Any] = {"payout": po.payout, "limit": 100}
        while True:
            page = api.get("/v1/balance_transactions", params=params).json()
            po.transactions += len(page.get("data") or [])
            if not page.get("has_more") or not page.get("data"):
                break
            params["starting_after"] = page["data"][-1]["id"]
        if doc.get("status") != "paid":
            po.error = f"payout {po.payout} is {doc.get('status')}"
    checked = 0
    for po in payouts:
        entries = peers.journals(po.payout) if po.payout else []
        if len(entries) != 1:
            po.error = po.error or f"{len(entries)} journal entries for {po.payout}"
            continue
        sums: dict[str, Decimal] = {}
        for row in entries[0].get("accounts") or []:
            sums[row["account"]] = sums.get(row["account"], Decimal(0)) + Decimal(
                str(row["debit_in_account_currency"])) - Decimal(str(row["credit_in_account_currency"]))
        po.journal_entry = str(entries[0]["name"])
        po.rows = {account: f"{v:.2f}" for account, v in sorted(sums.items())}
        bank = [v for account, v in sums.items() if "Bank" in account]
        if sum(sums.values()) != 0 or bank != [Decimal(po.amount_minor) / 100]:
            po.error = po.error or f"journal {po.journal_entry} of {po.payout}: {po.rows}"
            continue
        checked += 1
    errors += [po.error for po in payouts if po.error]
    done = sum(1 for po in payouts if not math.isnan(po.done))
    n = max(1, done)
    txns = sum(po.transactions for po in payouts if not math.isnan(po.done))
    idle_rate = idle["cpu_s"] / idle["s"]
    latency = [po.done - po.at for po in payouts if not math.isnan(po.done)]
    net = cpu - idle_rate * elapsed
    return {
        "flow": "payout", "events": len(payouts), "done": done, "errors": errors, "elapsed_s": elapsed,
        "settled": settled_all, "loadavg_at_start": load, "cpu_s": cpu,
        "pg_backends_cpu_s": pg_cpu if arm.pg else None,
        "cpu_ms_per_event": 1000 * cpu / n, "cpu_ms_per_event_minus_idle": 1000 * net / n,
        "transactions": txns, "transactions_per_payout": txns / n,
        "cpu_ms_per_txn": 1000 * cpu / max(1, txns), "cpu_ms_per_txn_minus_idle": 1000 * net / max(1, txns),
        "http_calls": calls, "http_calls_per_event": {k: v / n for k, v in calls["by_peer"].items()},
        "http_calls_per_event_total": sum(calls["by_peer"].values()) / n,
        "polls_per_s": calls["polls"] / max(elapsed, 1e-9),
        "latency_p50_s": pct(latency, 50), "latency_p99_s": pct(latency, 99),
        "machine_busy_cores": busy / max(elapsed, 1e-9), "machine_steal_cores": steal / max(elapsed, 1e-9),
        "checked_after": checked, "windows": windows, "payouts": [asdict(po) for po in payouts],
    }


# ---- one arm, one repetition -------------------------------------------------------------------------
def run_arm(a: argparse.Namespace, dbkind: str, kind: str, rep: int) -> dict[str, Any]:
    LOG.rows.clear()
    PEERS.rows.clear()
    overrides = scheduled_checks_off({"rate_limits": {"stripe": 100, "clarity": 1000, "erp": 1000},
                                      "clarity_poll_interval_s": a.clarity_poll, "workflows_disabled": a.disable})
    started = datetime.now(UTC)
    naive_script = "_naive_payouts.py" if "payout" in a.flows else "_naive_money_back.py"
    with arm_stack(a, dbkind, kind, rep, prefix="cb-money-back-", naive_script=naive_script, workers=a.workers,
                   **overrides) as (st, arm, stripe):
        peers = Peers(st.traffic)
        t_setup = time.monotonic()
        def place(n: int) -> list[tuple[int, str, str]]:
            return paid_orders(st.traffic, st.urls["Clarity simulator"], n, a.setup_rate, a.setup_timeout)

        payout = "payout" in a.flows  # alone (main checks it): its first batch is the setup's orders
        orders = place(batch_sizes(a.events, a.payouts)[0] if payout else 2 * a.events)
        if not settle(stripe, arm, 60):
            raise RuntimeError("setup: the arm did not become idle")
        setup_s = time.monotonic() - t_setup
        time.sleep(a.idle_settle)
        log_start, peer_start = len(LOG.rows), len(PEERS.rows)
        idle = idle_cpu(arm, a.idle, lambda t0, t1: _calls(LOG.rows[log_start:], PEERS.rows[peer_start:], t0, t1))
        by_flow = {} if payout else {flow: [Event(flow, i, *orders[j * a.events + i]) for i in range(a.events)]
                                     for j, flow in enumerate(MONEY_FLOWS)}
        phases = ([payout_phase(a, stripe, peers, arm, idle, place)] if payout else
                  [phase(flow, by_flow[flow], a, stripe, peers, arm, idle) for flow in MONEY_FLOWS if flow in a.flows])
        # every record once more, after the measurement; the orders nobody touched are still simply paid
        for p in phases:
            if p["flow"] == "payout":  # checked by payout_phase
                continue
            p["checked_after"] = sum(1 for ev in by_flow[p["flow"]] if not ev.error and peers.done(ev))
            if p["flow"] == "dispute":  # counted, not required (see the module docstring)
                p["opened_noted"] = sum(1 for ev in by_flow["dispute"] if f"{ev.dispute}:opened" in {
                    n.get("CustomKey") for n in peers.order(ev.order_id).get("Notes") or []})
        untouched = [o for flow in by_flow if flow not in a.flows for o in by_flow[flow]]
        changed = sum(1 for ev in untouched if peers.order(ev.order_id).get("StatusKey") != PAID)
        run_counts = None
        if arm.bridge is not None:
            run_counts = arm.bridge.run_counts()
            with arm.bridge.db.connect() as conn:  # runs per workflow (events x the workflows each one starts)
                run_counts["by_workflow"] = dict(conn.execute(  # type: ignore[assignment]
                    select(runs.c.workflow, func.count()).group_by(runs.c.workflow)).all())
        open_dlq = arm.open_dead_letters()
        naive_errors = arm.naive_errors()
    for p in phases:
        ok = p["done"] == p["checked_after"] == p["events"] and not p["errors"] and p["settled"]
        p["complete"] = bool(ok and not open_dlq and not naive_errors and not changed)
    return {"db": dbkind, "arm": kind, "rep": rep, "bridge_mode": a.bridge if kind == "bridge" else "naive",
            "started": started.isoformat(), "setup_s": setup_s, "orders": len(orders), "idle": idle,
            "phases": phases, "open_dlq": open_dlq, "runs": run_counts, "naive_errors": naive_errors[:5],
            "untouched_orders_changed": changed,
            "event_samples": {f: [asdict(ev) for ev in evs[:2]] for f, evs in by_flow.items()}}


# ---- output ---------------------------------------------------------------------------------------------
def money_back_table(results: list[dict[str, Any]]) -> str:
    return arms_table(results, lambda r: r["arm"] if r["arm"] == "naive" else f"bridge ({r['bridge_mode']})",
                      lambda p: p["flow"] + (f" ({p['transactions']} txns)" if p["flow"] == "payout" else ""))


def _payout_summary(s: dict[str, Any], flow: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """The payout flow's figures per balance transaction, and whether every run posted the same journal rows."""
    if flow != "payout":
        return
    for key, name in (("cpu_ms_per_txn", "txn_gross"), ("cpu_ms_per_txn_minus_idle", "txn_net")):
        s.update(arm_ratios({arm: [p[key] for k, p in rows if k == arm and p["done"]]
                             for arm in ("bridge", "naive")}, name))
    s["transactions_per_payout"] = _median([p["transactions_per_payout"] for _, p in rows])
    # the same orders in the same batches: every run's entries must have the same rows, batch by batch
    entries = [[po["rows"] for po in p["payouts"]] for _, p in rows]
    s["journals_agree"] = bool(entries) and all(e == entries[0] for e in entries)
    s["journal_rows"] = entries[0] if entries else []


def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per database and flow: each arm's CPU per event (every rep, the median) and the ratio of the medians,
    with and without the idle cost; calls per event; the payout flow per balance transaction too."""
    return flow_summary(results, FLOWS, _payout_summary)


def payout_table(rows: list[dict[str, Any]]) -> str:
    """The payout flow per balance transaction, and whether both arms posted the same entries."""
    head = ("| db | transactions/payout | bridge CPU ms/txn | naive | ratio | bridge minus idle | naive minus idle "
            "| ratio minus idle | same journal rows in every run |")
    lines = [head, "|" + "---|" * 9]
    for s in rows:
        if s["flow"] != "payout":
            continue
        lines.append(
            f"| {s['db']} | {_num(s['transactions_per_payout'], '.1f')} "
            f"| {', '.join(f'{x:.1f}' for x in s['bridge_ms_txn_gross'])} "
            f"| {', '.join(f'{x:.1f}' for x in s['naive_ms_txn_gross'])} | **{_num(s['ratio_txn_gross'], '.2f')}** "
            f"| {', '.join(f'{x:.1f}' for x in s['bridge_ms_txn_net'])} "
            f"| {', '.join(f'{x:.1f}' for x in s['naive_ms_txn_net'])} | **{_num(s['ratio_txn_net'], '.2f')}** "
            f"| {'yes' if s['journals_agree'] else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rate", type=float, default=2.0, help="business events offered per second, in each phase")
    p.add_argument("--events", type=int, default=30, help="business events per flow (refunds; disputes)")
    p.add_argument("--flows", default="refund,dispute", help="refund, dispute or both; or payout alone")
    p.add_argument("--payouts", type=int, default=3,
                   help="payouts of the payout flow: its --events paid orders in this many batches, one payout each")
    p.add_argument("--close-after", type=float, default=3.0, help="seconds from a dispute's opening to its close")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--bridge", choices=["serve", "split"], default="serve",
                   help="serve: one process; split: ingress + --workers worker processes (PostgreSQL only)")
    p.add_argument("--workers", type=int, default=2, help="worker processes with --bridge split")
    p.add_argument("--arms", default="bridge,naive", help="bridge, naive or both (interleaved per repetition)")
    p.add_argument("--reps", type=int, default=2, help="runs of each arm, interleaved")
    p.add_argument("--setup-rate", type=float, default=4.0, help="checkouts per second of the setup")
    p.add_argument("--setup-timeout", type=float, default=180.0, help="seconds for every setup order to be paid")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of each arm's idle CPU, after the setup")
    p.add_argument("--idle-settle", type=float, default=3.0, help="seconds between the setup and the idle window")
    p.add_argument("--drain", type=float, default=90.0, help="max seconds after a phase's offer for its records")
    p.add_argument("--clarity-poll", type=float, default=0.5, help="clarity_poll_interval_s (order_to_cash's 0.5)")
    p.add_argument("--disable", default="stripe.dispute_evidence",
                   help="CB_WORKFLOWS_DISABLED of the bridge arm: stripe.dispute_evidence stages evidence on every "
                        "new dispute (3 more Stripe calls and one more Clarity read per dispute), work the naive arm "
                        "does not do; empty to run every built-in workflow")
    p.add_argument("--keep", metavar="DIR", help="keep each run's folder (bridge.log, naive.log, SQLite file)")
    p.add_argument("--markdown", action="store_true",
                   help="no per-run table line while running: only the Markdown tables at the end")
    a = p.parse_args()
    a.flows = [f.strip() for f in a.flows.split(",") if f.strip()]
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if not arms or any(x not in ("bridge", "naive") for x in arms) or any(f not in FLOWS for f in a.flows):
        p.error("--arms takes bridge and/or naive; --flows refund and/or dispute, or payout")
    if "payout" in a.flows and (len(a.flows) > 1 or not 1 <= a.payouts <= a.events):
        p.error("--flows payout runs alone, with 1 <= --payouts <= --events")
    dbs = chosen_databases(p, a)

    def announce(db: str, kind: str, rep: int) -> str:
        if "payout" in a.flows:
            return f"{db}: {kind} arm, run {rep}: {a.events} paid orders in {a.payouts} payouts ..."
        return (f"{db}: {kind} arm, run {rep}: {2 * a.events} paid orders, then {a.events} events per "
                f"flow at {a.rate:g}/s ...")

    def ratio_tables(rows: list[dict[str, Any]]) -> list[str]:
        return [ratio_table(rows), *([payout_table(rows)] if "payout" in a.flows else [])]

    return run_all(a, dbs, arms, name="money-back", announce=announce,
                   run_arm=lambda db, kind, rep: run_arm(a, db, kind, rep), table=money_back_table, summary=summary,
                   ratio_tables=ratio_tables)

if __name__ == "__main__":
    sys.exit(main())
