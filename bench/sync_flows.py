"""Sync benchmark: CPU per business event of the customer, price and stock flows (issue 14), against the bare HTTP work.

DESIGN.md section 4: "a new flow states its ratio". For each arm and repetition, a fresh stack of sandbox peers
(``sandbox_peers``, in this process, as ``bench/money_back.py`` starts them) with every flow of issue 14 on
(``CB_CUSTOMER_SYNC``, ``CB_PRODUCT_SYNC``, ``CB_CLARITY_INVENTORY_SECTION=DEFAULT-MAIN``) and every poller of
them (Clarity accounts, contacts and products; ERPNext customers, items, item prices and bins) every
``--poll`` seconds, the order and returns polls at the same interval, the gap and drift checks off; then:

* **setup** (not measured): ``--events`` Clarity accounts (a billing contact with e-mail and phone) and
  ``--events`` ERPNext Items with an Item Price in ``Standard Selling`` (49.00 USD), at ``--setup-rate`` per
  second each, waited for until every account is a Stripe customer naming its ERPNext customer
  (``metadata.erp_customer``) and every item a Stripe product naming its Clarity product
  (``metadata.clarity_product_id``); then the arm idle (``--quiet`` s with nothing to do) and ``--idle`` seconds
  of its idle CPU (started, every poller running, nothing to do).
* **customer**: ``--events`` edits in Clarity, at ``--rate`` per second, one per account: its ``Name`` and its
  billing contact's ``Phone1`` (``PUT Account/Update``, ``PUT Contact/Update``). One business event = the new
  name and phone in Stripe (the customer) and ERPNext (the Customer's name, its primary Contact's mobile).
* **price**: ``--events`` Item Price changes in ERPNext (``PUT Item Price``, 49.00 -> 60.00 + i), one per item.
  One business event = the new price in Clarity (``PriceBase``) and in Stripe (the active Price with the
  ``lookup_key`` ``cb:<code>:usd`` has the new amount; it is the product's only active Price).
* **stock**: ``--events`` Stock Entries (Material Receipt, ``5 + i`` into ``Stores - SB``), one per item. One
  business event = Clarity's inventory for the product (``CalculateInventory``: ``QuantityPresent``) equal to
  the item's ERPNext Bins summed.

The script's own requests (the edits and the checks) carry ``_bench=1`` (Clarity, ERPNext) or the user agent
``cb-bench-check`` (Stripe) and are left out of the call counts. A phase ends when every event is seen done
(checked every 0.5 s), the emulator's webhook queue is drained and the arm has had nothing to do for ``--quiet``
seconds (the bridge: no inbox row waiting, no run queued or running; the naive arm: every unit of work it queued
ended), so the echoes of the arm's own writes (the bridge reads each once to know it as its own) are in the
phase that caused them. The bridge must end with no open dead-letter entry, the naive arm with no error.

Arms (``--arms``, interleaved per repetition: bridge, naive, bridge, naive):

* **bridge**: ``commerce-bridge serve`` in its own process (SQLite, or ``--db postgres``); its CPU is its
  process's (``/proc``), plus on PostgreSQL the backends serving its database.
* **naive**: ``bench/_naive_sync.py``, one process with no durability polling the same sources at the same
  interval and doing each flow one way with the official clients, its state in memory (see its docstring).

Per arm and flow: CPU ms per business event, with and without the idle cost, HTTP calls per event per peer
(the pollers' list calls counted apart, per second); the ratio bridge/naive per flow. Everything, with each
route's calls, goes to ``bench/results/sync-flows-<UTC time>.json`` (not in git). ``--profile`` records the
bridge's first customer phase with ``py-spy record --gil`` (``py-spy`` on PATH or in ``/tmp/pyspy/bin``).

    .venv/bin/python bench/sync_flows.py --reps 2 --events 30 --rate 2 --markdown
    .venv/bin/python bench/sync_flows.py --db postgres --reps 1 --events 20
    .venv/bin/python bench/sync_flows.py --arms bridge --reps 1 --flows customer --profile /tmp/sync-prof
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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
from order_to_cash import LOG, PEERS, PgBackends, _peer_route, _route, chosen_databases, machine_busy_s

MARK = "_bench"  # query parameter of this script's Clarity and ERPNext requests: not the arm's calls
CHECK_UA = "cb-bench-check"  # user agent of this script's Stripe requests: not the arm's calls
FLOWS = ("customer", "price", "stock")
PRICE_LIST = "Standard Selling"
SECTION = "DEFAULT-MAIN"
WAREHOUSE = "Stores - SB"
SETUP_RATE_USD = "49.00"
CHECK_EVERY_S = 0.5
CLARITY_LISTS = ("/SalesOrders", "/SalesReturns", "/Accounts/Accounts", "/Contacts/Contacts", "/Products/Products")


@dataclass
class Account:
    """One customer of the setup: its Clarity account and billing contact, and its ids once synced."""

    account_id: int
    email: str
    contact_id: int = 0
    cus: str = ""
    erp: str = ""


@dataclass
class Item:
    """One product of the setup: its item code, and its ids once synced."""

    code: str
    clarity_id: int = 0
    stripe_id: str = ""


@dataclass
class Event:
    """One business event of a phase."""

    i: int
    at: float = math.nan  # monotonic: the edit made
    done: float = math.nan  # monotonic: seen in every system
    want: str = ""
    error: str = ""


# ---- the peers, as this script edits and reads them ----------------------------------------------------
class Peers:
    """The script's requests: marked so the call counts leave them out."""

    def __init__(self, tr: Any, stripe_url: str) -> None:
        self.tr = tr
        self.stripe = httpx.Client(base_url=stripe_url, timeout=30, headers={
            "Authorization": tr.stripe.headers["Authorization"], "User-Agent": f"{CHECK_UA}/1"})

    def close(self) -> None:
        self.stripe.close()

    def cef(self, method: str, path: str, **kw: Any) -> Any:
        r = self.tr.clarity.request(method, f"{CLARITY_API}{path}", headers=self.tr.session,
                                    params={**kw.pop("params", {}), MARK: 1}, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"Clarity {method} {path}: {r.status_code} {r.text[:200]}")
        return r.json(parse_float=Decimal) if r.content else {}

    def erp(self, method: str, path: str, **kw: Any) -> Any:
        r = self.tr.erp.request(method, path, params={**kw.pop("params", {}), MARK: 1}, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"ERPNext {method} {path}: {r.status_code} {r.text[:200]}")
        return r.json(parse_float=Decimal)["data"]

    def stripe_get(self, path: str, **params: Any) -> Any:
        r = self.stripe.get(path, params=params)
        if r.status_code >= 400:
            raise RuntimeError(f"Stripe GET {path}: {r.status_code} {r.text[:200]}")
        return r.json()

    # setup
    def create_account(self, tag: str, i: int) -> Account:
        email = f"sync.{tag}.{i}@example.com"
        contact = {"FirstName": "Ada", "LastName": f"Bench{i}", "Email1": email, "Phone1": "+14155550101",
                   "Address": {"Street1": "1 Main St", "City": "San Francisco", "RegionCode": "CA",
                               "PostalCode": "94105", "CountryCode": "US"}}
        made = self.cef("POST", "/Accounts/Account/Create", json={
            "ID": 0, "CustomKey": f"ACCT-{tag}-{i}", "Name": f"Ada Bench{i}",
            "AccountContacts": [{"Slave": contact, "IsBilling": True, "IsPrimary": False}]})
        return Account(int(made["Result"]), email)

    def create_item(self, code: str) -> Item:
        self.erp("POST", "/api/resource/Item", json={"item_code": code, "item_name": f"Bench {code}",
                                                     "description": "bench item", "item_group": "Products",
                                                     "stock_uom": "Nos"})
        self.erp("POST", "/api/resource/Item Price", json={"item_code": code, "price_list": PRICE_LIST,
                                                           "price_list_rate": SETUP_RATE_USD})
        return Item(code)

    def account_synced(self, acct: Account) -> bool:
        found = self.stripe_get("/v1/customers/search", query=f"email:'{acct.email}'")["data"]
        if len(found) != 1 or not (found[0].get("metadata") or {}).get("erp_customer"):
            return False
        acct.cus, acct.erp = found[0]["id"], found[0]["metadata"]["erp_customer"]
        return True

    def item_synced(self, item: Item) -> bool:
        found = self.stripe_get("/v1/products/search", query=f"metadata['item_code']:'{item.code}'")["data"]
        if len(found) != 1 or not (found[0].get("metadata") or {}).get("clarity_product_id"):
            return False
        item.stripe_id, item.clarity_id = found[0]["id"], int(found[0]["metadata"]["clarity_product_id"])
        return bool(self.stripe_get("/v1/prices", product=item.stripe_id, active="true")["data"])

    # the business events
    def edit_account(self, acct: Account, name: str, phone: str) -> None:
        self.cef("PUT", "/Accounts/Account/Update", json={"ID": acct.account_id, "Name": name})
        doc = self.cef("GET", f"/Accounts/Account/ID/{acct.account_id}")
        billing = next(r["Slave"] for r in doc.get("AccountContacts") or ()
                       if r.get("IsBilling") and r.get("Active", True))
        contact = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in billing.items() if not isinstance(v, list)}
        self.cef("PUT", "/Contacts/Contact/Update", json={**contact, "Phone1": phone})

    def customer_done(self, acct: Account, name: str, phone: str) -> bool:
        cus = self.stripe_get(f"/v1/customers/{acct.cus}")
        if cus.get("name") != name or cus.get("phone") != phone:
            return False
        customer = self.erp("GET", f"/api/resource/Customer/{acct.erp}")
        if customer.get("customer_name") != name or not customer.get("customer_primary_contact"):
            return False
        contact = self.erp("GET", f"/api/resource/Contact/{customer['customer_primary_contact']}")
        return bool(contact.get("mobile_no") == phone)

    def set_price(self, item: Item, rate: str) -> None:
        rows = self.erp("GET", "/api/resource/Item Price", params={
            "filters": json.dumps([["item_code", "=", item.code], ["price_list", "=", PRICE_LIST]])})
        self.erp("PUT", f"/api/resource/Item Price/{rows[0]['name']}", json={"price_list_rate": rate})

    def price_done(self, item: Item, rate: str) -> bool:
        cents = int(Decimal(rate) * 100)
        product = self.cef("GET", f"/Products/Product/ID/{item.clarity_id}")
        if product.get("PriceBase") is None or Decimal(str(product["PriceBase"])) != Decimal(rate):
            return False
        prices = self.stripe_get("/v1/prices", product=item.stripe_id, limit=100)["data"]
        active = [p for p in prices if p.get("active")]
        return (len(active) == 1 and active[0].get("unit_amount") == cents
                and active[0].get("lookup_key") == f"cb:{item.code}:usd"
                and any(not p.get("active") for p in prices))

    def receive(self, item: Item, qty: int) -> None:
        self.erp("POST", "/api/resource/Stock Entry", json={
            "stock_entry_type": "Material Receipt", "docstatus": 1,
            "items": [{"item_code": item.code, "qty": qty, "t_warehouse": WAREHOUSE}]})

    def stock_done(self, item: Item) -> bool:
        bins = self.erp("GET", "/api/resource/Bin", params={
            "filters": json.dumps([["item_code", "=", item.code]]), "fields": '["actual_qty"]',
            "limit_page_length": 0})
        erp_total = sum((Decimal(str(b["actual_qty"])) for b in bins), Decimal(0))
        got = self.cef("GET", f"/Providers/Inventory/CalculateInventory/{item.clarity_id}")
        present = (got.get("Result") or {}).get("QuantityPresent")
        return present is not None and erp_total > 0 and Decimal(str(present)) == erp_total


# ---- the arm's work, counted ---------------------------------------------------------------------------
def is_poll(peer: str, method: str, path: str, query: str) -> bool:
    """A poller's list request: Clarity's ``ModifiedSince`` lists (not a search by key), ERPNext's lists in
    ``modified`` order (by ``modified >=`` the cursor, or all of a doctype that had none) not narrowed to one
    item, document or e-mail."""
    if method != "GET":
        return False
    if peer == "clarity":
        return path.endswith(CLARITY_LISTS) and "CustomKey" not in query and "Email1" not in query
    if peer != "erp" or path.count("/") != 3:  # /api/resource/<Doctype>: a list
        return False
    q = parse_qs(query)
    if not (q.get("order_by") or [""])[0].startswith("modified"):
        return False
    try:
        filters = json.loads((q.get("filters") or ["[]"])[0])
    except ValueError:
        return False
    return not {f[-3] for f in filters if isinstance(f, list) and len(f) >= 3} & {"item_code", "name", "email_id"}


def calls_between(t0: float, t1: float) -> dict[str, Any]:
    """The arm's requests the peers answered between t0 and t1, by peer and route, the pollers' lists apart."""
    routes: Counter[str] = Counter()
    polls: Counter[str] = Counter()
    for t, method, path, ua, _status in list(LOG.rows):
        if t0 <= t <= t1 and ua != CHECK_UA and not path.startswith("/_sandbox"):
            routes[f"stripe {method} {_route(path)}"] += 1
    for t, peer, method, path, query, _status in list(PEERS.rows):
        if not t0 <= t <= t1 or path.startswith("/_sandbox") or MARK in query:
            continue
        route = f"{peer} {method} {_peer_route(path)}"
        (polls if is_poll(peer, method, path, query) else routes)[route] += 1
    by_peer = Counter({"stripe": 0, "clarity": 0, "erp": 0})
    for route, n in routes.items():
        by_peer[route.split(" ", 1)[0]] += n
    return {"by_peer": dict(by_peer), "polls": sum(polls.values()), "routes": dict(sorted(routes.items())),
            "poll_routes": dict(sorted(polls.items()))}


def quiet(stripe: httpx.Client, arm: Arm, quiet_s: float, timeout: float) -> bool:
    """Wait until the emulator has delivered every webhook and the arm has had nothing to do for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while time.monotonic() < deadline:
        drained = stripe.post("/_sandbox/webhooks/drain", json={"timeout": 5}).json().get("drained")
        if drained and arm.idle():
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= quiet_s:
                return True
        else:
            since = None
        time.sleep(0.1)
    return False


class Profile:
    """``py-spy record --gil`` of one process, while a phase runs (``--profile``)."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        exe = shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy"
        env = {**os.environ, "PYTHONPATH": "/tmp/pyspy"}
        self.out = out
        self.proc = subprocess.Popen([exe, "record", "--gil", "--rate", str(rate), "--format", "raw", "-o", str(out),
                                      "-p", str(pid)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> str:
        self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "py-spy did not stop"
        return err.decode(errors="replace")[-300:] if not self.out.exists() else str(self.out)


def phase(flow: str, events: list[Event], offer: Callable[[Event], None], done: Callable[[Event], bool],
          a: argparse.Namespace, stripe: httpx.Client, arm: Arm, idle: dict[str, Any],
          profile: Path | None) -> dict[str, Any]:
    """Offer the events at ``--rate`` (open loop), wait until each is done and the arm quiet; its CPU and calls."""
    load = loadavg()
    prof = Profile(arm.bridge.procs[0][0].pid, profile, a.profile_rate) if profile is not None and arm.bridge else None
    cpu0, pg0 = arm.cpu()
    busy0 = machine_busy_s()
    t0 = time.monotonic()
    halt = threading.Event()

    def watch() -> None:
        while not halt.is_set():
            t = time.monotonic()
            for ev in events:
                if math.isnan(ev.done) and not math.isnan(ev.at) and not ev.error:
                    try:
                        if done(ev):
                            ev.done = time.monotonic()
                    except RuntimeError:  # not there yet (a 404)
                        pass
            halt.wait(max(0.0, CHECK_EVERY_S - (time.monotonic() - t)))

    watcher = threading.Thread(target=watch, name=f"sync-{flow}-checks", daemon=True)
    watcher.start()
    start = time.monotonic() + 0.05
    for ev in events:
        time.sleep(max(0.0, start + ev.i / a.rate - time.monotonic()))
        try:
            offer(ev)
        except Exception as exc:
            ev.error = f"{type(exc).__name__}: {exc}"[:300]
        ev.at = time.monotonic()
    t_offered, deadline = wait_events(events, a.drain, halt, watcher)
    settled = quiet(stripe, arm, a.quiet, max(10.0, deadline - time.monotonic()))
    t1 = time.monotonic() - (a.quiet if settled else 0.0)  # the quiet tail is idle time, not the phase's
    cpu1, pg1 = arm.cpu()
    t_end = time.monotonic()
    busy = machine_busy_s() - busy0
    profiled = prof.stop() if prof is not None else None
    calls = calls_between(t0, t_end)
    n_done = sum(1 for ev in events if not math.isnan(ev.done))
    n = max(1, n_done)
    pg_cpu = PgBackends.delta(pg0, pg1) if arm.pg else 0.0
    cpu = cpu1 - cpu0 + pg_cpu
    latency = [ev.done - ev.at for ev in events if not math.isnan(ev.done)]
    return {
        "flow": flow, "events": len(events), "done": n_done, "errors": [ev.error for ev in events if ev.error],
        "not_done": [ev.i for ev in events if math.isnan(ev.done)][:20],
        "elapsed_s": t_end - t0, "busy_s": t1 - t0, "offer_s": t_offered - t0, "settled": settled,
        "loadavg_at_start": load, "cpu_s": cpu, "pg_backends_cpu_s": pg_cpu if arm.pg else None,
        **per_event(cpu, idle, t_end - t0, n, calls, latency),
        "machine_busy_cores": busy / (t_end - t0), "profile": profiled,
    }


# ---- one arm, one repetition ---------------------------------------------------------------------------
def wait_all(what: str, items: list[Any], check: Callable[[Any], bool], timeout: float) -> None:
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [x for x in pending if not check(x)]
        if pending:
            time.sleep(1.0)
    if pending:
        raise RuntimeError(f"setup: {len(pending)} of {len(items)} {what} not synced after {timeout:g} s")


def run_arm(a: argparse.Namespace, dbkind: str, kind: str, rep: int) -> dict[str, Any]:
    LOG.rows.clear()
    PEERS.rows.clear()
    poll = a.poll
    overrides = scheduled_checks_off({  # not per-event work (money_back)
        "rate_limits": {"stripe": 100, "clarity": 1000, "erp": 1000}, "clarity_poll_interval_s": poll,
        "clarity_returns_poll_interval_s": poll, "product_sync": True, "clarity_inventory_section": SECTION,
        "stock_poll_interval_s": poll, "clarity_accounts_poll_interval_s": poll, "erp_customers_poll_interval_s": poll,
        "clarity_products_poll_interval_s": poll, "erp_items_poll_interval_s": poll,
        "erp_selling_price_list": PRICE_LIST})
    started = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    with (arm_stack(a, dbkind, kind, rep, prefix="cb-sync-flows-", naive_script="_naive_sync.py", customer_sync=True,
                    **overrides) as (st, arm, stripe),
          contextlib.closing(Peers(st.traffic, st.urls["Stripe emulator"])) as peers):
        time.sleep(max(3.0, 4 * poll))  # every poller's first cycle (they start from now)
        t_setup = time.monotonic()
        accounts: list[Account] = []
        items: list[Item] = []
        for i in range(a.events):
            accounts.append(peers.create_account(tag, i))
            items.append(peers.create_item(f"SYN-{tag.upper()}-{i:03d}"))
            time.sleep(1 / a.setup_rate)
        wait_all("accounts", accounts, peers.account_synced, a.setup_timeout)
        wait_all("items", items, peers.item_synced, a.setup_timeout)
        if not quiet(stripe, arm, a.quiet, 120):
            raise RuntimeError("setup: the arm did not become quiet")
        setup_s = time.monotonic() - t_setup
        idle = idle_cpu(arm, a.idle, calls_between)
        idle["polls_per_s"] = idle["calls"]["polls"] / idle["s"]

        def new_name(ev: Event) -> tuple[str, str]:
            return f"Grace Bench{ev.i} {tag}", f"+1415555{200 + ev.i:04d}"

        def edit(ev: Event) -> None:
            peers.edit_account(accounts[ev.i], *new_name(ev))

        def price(ev: Event) -> str:
            return f"{60 + ev.i}.00"

        profile = Path(a.profile) / f"customer-{dbkind}-{rep}.txt" if a.profile and kind == "bridge" else None
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
        plans: dict[str, tuple[Callable[[Event], None], Callable[[Event], bool]]] = {
            "customer": (edit, lambda ev: peers.customer_done(accounts[ev.i], *new_name(ev))),
            "price": (lambda ev: peers.set_price(items[ev.i], price(ev)),
                      lambda ev: peers.price_done(items[ev.i], price(ev))),
            "stock": (lambda ev: peers.receive(items[ev.i], 5 + ev.i), lambda ev: peers.stock_done(items[ev.i])),
        }
        phases = []
        for flow in a.flows:
            offer, done = plans[flow]
            phases.append(phase(flow, [Event(i) for i in range(a.events)], offer, done, a, stripe, arm, idle,
                                profile if flow == "customer" and rep == 1 else None))
        run_counts = None
        if arm.bridge is not None:
            with arm.bridge.db.connect() as conn:
                run_counts = {"by_workflow_status": [list(r) for r in conn.execute(
                    select(runs.c.workflow, runs.c.status, func.count()).group_by(runs.c.workflow, runs.c.status))]}
        open_dlq = arm.open_dead_letters()
        naive_errors = arm.naive_errors()
    for p in phases:
        p["complete"] = bool(p["done"] == p["events"] and not p["errors"] and p["settled"] and not open_dlq
                             and not naive_errors)
    return {"db": dbkind, "arm": kind, "rep": rep, "started": started.isoformat(), "setup_s": setup_s,
            "idle": idle, "phases": phases, "open_dlq": open_dlq, "runs": run_counts,
            "naive_errors": naive_errors[:5]}


# ---- output -------------------------------------------------------------------------------------------
def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per database and flow: each arm's CPU per event (every rep, the median) and the ratio of the medians,
    with and without the idle cost; calls per event."""
    return flow_summary(results, FLOWS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rate", type=float, default=2.0, help="business events offered per second, in each phase")
    p.add_argument("--events", type=int, default=30, help="business events per flow (= accounts = items)")
    p.add_argument("--flows", default="customer,price,stock", help="customer, price and/or stock, in this order")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--arms", default="bridge,naive", help="bridge, naive or both (interleaved per repetition)")
    p.add_argument("--reps", type=int, default=2, help="runs of each arm, interleaved")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between polls of every poller, both arms")
    p.add_argument("--setup-rate", type=float, default=5.0, help="accounts (and items) created per second")
    p.add_argument("--setup-timeout", type=float, default=180.0, help="seconds for the setup to be synced")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of each arm's idle CPU, after the setup")
    p.add_argument("--quiet", type=float, default=2.0,
                   help="seconds with nothing to do that make an arm idle (a few polls: the echoes come back)")
    p.add_argument("--drain", type=float, default=90.0, help="max seconds after a phase's offer for its events")
    p.add_argument("--keep", metavar="DIR", help="keep each run's folder (serve.log, naive.log, SQLite file)")
    p.add_argument("--profile", metavar="DIR", help="py-spy --gil profile of the bridge's first customer phase")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second with --profile")
    p.add_argument("--markdown", action="store_true", help="only the Markdown tables at the end")
    a = p.parse_args()
    a.flows = [f.strip() for f in a.flows.split(",") if f.strip()]
    a.bridge = "serve"
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if not arms or any(x not in ("bridge", "naive") for x in arms) or any(f not in FLOWS for f in a.flows):
        p.error("--arms takes bridge and/or naive; --flows customer, price and/or stock")
    dbs = chosen_databases(p, a)

    def announce(db: str, kind: str, rep: int) -> str:
        return (f"{db}: {kind} arm, run {rep}: {a.events} accounts and items, then {a.events} events per "
                f"flow at {a.rate:g}/s ...")

    return run_all(a, dbs, arms, name="sync-flows", announce=announce,
                   run_arm=lambda db, kind, rep: run_arm(a, db, kind, rep), table=arms_table, summary=summary,
                   ratio_tables=lambda rows: [ratio_table(rows)])

if __name__ == "__main__":
    sys.exit(main())
