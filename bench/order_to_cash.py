"""Order-to-cash benchmark: orders/s and order-to-paid latency with the Stripe emulator limited to 100 requests/s.

For each offered rate, a fresh sandbox (``sandbox_peers``: Stripe emulator, Clarity and ERPNext simulators and
mail catcher in this process; the bridge as ``commerce-bridge serve`` in its own process by default, or
``ingress`` + N ``worker`` processes with ``--bridge split``, or in this process with ``--bridge inprocess``)
gets an open-loop arrival of storefront checkouts
(scenario "paid (USD)", integration mode: the bridge makes every Stripe call). The emulator answers 429
beyond 100 requests in any 1-s window (``POST /_sandbox/rate_limit``); the bridge limits its own Stripe calls
with ``rate_limits["stripe"]``.

Ground truth for the Stripe side is a request log kept at the emulator: this script wraps the emulator
app's request handler (bench only, ``src/`` is untouched) and records the time, method, path, user agent and
status of every ``/v1`` request. That gives the requests/s the emulator saw, its busiest 1-s window (the same
windows its limiter counts) and every 429 it answered, retried or not.

Order-to-paid latency runs from the checkout answer to the moment a watcher thread, polling the bridge's
``runs`` table every 50 ms, sees the order's ``stripe.payment_succeeded`` run ``succeeded``. That run's steps
mark the order paid in Clarity and then create the ERP sales order and Payment Entry, so the figure is an upper
bound of "paid in Clarity" (it includes the ERP writes). After each phase every order is checked in Clarity
(status "Full Payment Received", balance 0) and in the ERP (a Payment Entry for its charge).

The **naive arm** (``--arms``, both by default) runs the same order flow with no durability:
``bench/_naive_order.py``, one process that polls Clarity, receives Stripe's webhooks and makes the same HTTP
calls through the official clients with its state in memory. For each rate the arms run interleaved (bridge,
naive, bridge, naive, ... with ``--reps N``), each against a fresh stack of peers with the same offered load.
Before the load, each arm's idle CPU (started, polling, no orders) is measured for ``--idle`` seconds. Per arm
the script reports paid orders, the CPU of the arm's own processes per paid order (the bridge: every bridge
process, plus on PostgreSQL the backends serving its database; the naive arm: its one process), the same
with the idle cost subtracted, and the HTTP calls per paid order each peer answered (the emulator's log for
Stripe, the same kind of wrapper for the Clarity and ERPNext simulators); then the ratio bridge/naive.

    .venv/bin/python bench/order_to_cash.py --rates 1,2,3,5 --duration 30 --db sqlite --arms bridge
    .venv/bin/python bench/order_to_cash.py --db sqlite --rates 2 --duration 20 --reps 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import fresh_database, postgres_problem, wait_http_ready  # noqa: E402
from commerce_bridge.config import Settings  # noqa: E402
from commerce_bridge.entrypoints.demo_order_to_cash import sandbox_peers, sandbox_stack  # noqa: E402
from commerce_bridge.logsetup import configure_logging  # noqa: E402
from commerce_bridge.sandbox import traffic as traffic_mod  # noqa: E402
from commerce_bridge.sandbox.stripe_emulator import app as stripe_app_mod  # noqa: E402
from commerce_bridge.store.tables import dead_letters, inbox, runs  # noqa: E402

WATCH_EVERY_S = 0.05
WATCHER_APP = "cb-bench-watcher"  # application_name of the benchmark's own PostgreSQL connections
PAID = "Full Payment Received"
SCENARIO = next(s for s in traffic_mod.SCENARIOS if s.name == "paid (USD)")


# ---- the emulator's request log ----------------------------------------------------------------------
@dataclass
class RequestLog:
    """Every /v1 request the Stripe emulator answered: (monotonic time, method, path, user agent, status)."""

    rows: list[tuple[float, str, str, str, int]] = field(default_factory=list)

    def install(self) -> None:
        """Make the next ``build_app()`` of the emulator record its answers here."""
        original = stripe_app_mod.build_app
        log = self

        def build_app(**kw: Any) -> Any:
            app = original(**kw)
            handle = app.handle

            async def logged(scope: Any, body: bytes) -> Any:
                out = await handle(scope, body)
                path = scope["path"]
                if path.startswith("/v1/"):
                    ua = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), "")
                    log.rows.append((time.monotonic(), scope["method"], path, ua.split("/")[0], out[0]))
                return out

            app.handle = logged  # type: ignore[method-assign]
            return app

        stripe_app_mod.build_app = build_app


LOG = RequestLog()


@dataclass
class PeerLog:
    """Every request the Clarity and ERPNext simulators answered: (monotonic time, peer, method, path, query,
    status). Wraps their ASGI apps the way ``RequestLog`` wraps the emulator (bench only)."""

    rows: list[tuple[float, str, str, str, str, int]] = field(default_factory=list)

    def install(self) -> None:
        from commerce_bridge.sandbox.clarity_sim import app as clarity_app_mod
        from commerce_bridge.sandbox.erp_sim import app as erp_app_mod

        for peer, mod in (("clarity", clarity_app_mod), ("erp", erp_app_mod)):
            mod.build_app = self._wrapping(peer, mod.build_app)  # type: ignore[attr-defined]

    def _wrapping(self, peer: str, original: Any) -> Any:
        log = self

        def build_app(**kw: Any) -> Any:
            app = original(**kw)

            async def logged(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await app(scope, receive, send)
                    return
                status = 0

                async def sending(message: Any) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                try:
                    await app(scope, receive, sending)
                finally:
                    log.rows.append((time.monotonic(), peer, scope["method"], scope["path"],
                                     scope.get("query_string", b"").decode("latin-1"), status))

            return logged

        return build_app


PEERS = PeerLog()


# ---- the watcher: paid orders seen in the bridge's runs table ---------------------------------------
class Watcher(threading.Thread):
    """Polls the runs table every 50 ms; records when each order's stripe.payment_succeeded run succeeded."""

    def __init__(self, db: Any) -> None:
        super().__init__(daemon=True, name="o2c-watcher")
        self.db = db
        self.seen: dict[str, tuple[float, datetime]] = {}  # order key -> (monotonic seen, DB updated_at)
        self._runs: set[str] = set()
        self._halt = threading.Event()
        self.polls = 0
        self.poll_s = 0.0

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        since: datetime | None = None
        while not self._halt.is_set():
            t0 = time.monotonic()
            stmt = (select(runs.c.run_id, runs.c.updated_at, inbox.c.body)
                    .join(inbox, inbox.c.id == runs.c.inbox_id)
                    .where(runs.c.workflow == "stripe.payment_succeeded", runs.c.status == "succeeded"))
            if since is not None:
                stmt = stmt.where(runs.c.updated_at >= since)
            try:
                with self.db.connect() as conn:
                    rows = conn.execute(stmt).all()
            except Exception:  # a locked SQLite file: try again next tick
                rows = []
            now = time.monotonic()
            self.polls += 1
            self.poll_s += now - t0
            for run_id, updated_at, body in rows:
                if run_id in self._runs:
                    continue
                self._runs.add(run_id)
                key = ((orjson.loads(body)["data"]["object"].get("metadata") or {}).get("clarity_order_key"))
                if key and key not in self.seen:
                    self.seen[key] = (now, updated_at)
                if since is None or updated_at.timestamp() - 2 > since.timestamp():
                    since = datetime.fromtimestamp(updated_at.timestamp() - 2, UTC)
            self._halt.wait(max(0.0, WATCH_EVERY_S - (time.monotonic() - t0)))


# ---- the bridge in its own processes ------------------------------------------------------------------
def _env_value(v: Any) -> str:
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_line() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all processes: peers, bridge, PostgreSQL), from /proc/stat."""
    v = _cpu_line()
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    return (sum(v[:8]) - idle - steal) / os.sysconf("SC_CLK_TCK")


def machine_steal_s() -> float:
    """CPU seconds the hypervisor gave to others while this VM wanted to run (noise on shared cores)."""
    v = _cpu_line()
    return (v[7] if len(v) > 7 else 0) / os.sysconf("SC_CLK_TCK")


class BridgeProcesses:
    """``serve`` (one process) or ``ingress`` plus N ``worker`` processes, with the peers' settings as CB_*."""

    def __init__(self, settings: dict[str, Any], bridge_port: int, workdir: Path, mode: str, workers: int) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
        self.env.update({f"CB_{k.upper()}": _env_value(v) for k, v in settings.items()})
        self.env.update(CB_LOG_LEVEL="INFO", CB_LOG_JSON="true")
        self.workdir, self.port, self.mode, self.workers = workdir, bridge_port, mode, workers
        self.procs: list[tuple[subprocess.Popen[bytes], int | None]] = []
        url = settings["database_url"]
        self.db = create_engine(url, connect_args={"application_name": WATCHER_APP} if url.startswith("postgresql")
                                else {})

    def _spawn(self, args: list[str], name: str, port: int | None) -> None:
        cmd = [sys.executable, "-m", "commerce_bridge.entrypoints.cli", *args]
        if port is not None:
            cmd += ["--port", str(port)]
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs.append((subprocess.Popen(cmd, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True), port))

    def start(self) -> None:
        up = subprocess.run([sys.executable, "-m", "commerce_bridge.entrypoints.cli", "db", "upgrade"],
                            env=self.env, cwd=self.workdir, capture_output=True, text=True, check=False)
        if up.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {up.stdout}{up.stderr}")
        if self.mode == "serve":
            self._spawn(["serve", "--worker-id", "bench-serve"], "serve", self.port)
        else:
            self._spawn(["ingress"], "ingress", self.port)
            from commerce_bridge.sandbox.runner import free_port
            for i in range(self.workers):
                self._spawn(["worker", "--worker-id", f"bench-w{i + 1}"], f"worker{i + 1}", free_port())
        deadline = time.monotonic() + 90
        for proc, port in self.procs:
            if port is not None:
                wait_http_ready(proc, f"http://127.0.0.1:{port}/readyz", deadline, f"bridge process (see {self.workdir})")

    def cpu_s(self) -> float:
        return sum(_proc_cpu_s(p.pid) for p, _ in self.procs if p.poll() is None)

    def rate_limited_metric(self) -> float:
        total = 0.0
        for _, port in self.procs:
            if port is None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                total += _rate_limited_in(text)
        return total

    def open_dlq(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(select(func.count()).where(dead_letters.c.status == "open")).scalar_one())

    def run_counts(self) -> dict[str, int]:
        with self.db.connect() as conn:
            return {s: n for s, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))}

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.db.dispose()


# ---- the naive arm: the same flow with no durability, in its own process ---------------------------------
class NaiveProcess:
    """``bench/_naive_order.py`` (or ``script``, which takes its options) on the bridge's port, wired to the same
    peers with the same settings."""

    def __init__(self, settings: dict[str, Any], port: int, workdir: Path, script: str = "_naive_order.py") -> None:
        self.settings, self.port, self.workdir, self.script = settings, port, workdir, script
        self.events = workdir / "naive-events.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        s = self.settings
        self.events.touch()
        cmd = [sys.executable, str(ROOT / "bench" / self.script), "--port", str(self.port),
               "--events", str(self.events), "--webhook-secret", _env_value(s["stripe_webhook_secrets"]),
               "--stripe-key", s["stripe_api_key"], "--stripe-base", s["stripe_api_base"],
               "--clarity-base", s["clarity_base_url"], "--clarity-user", s["clarity_user"],
               "--clarity-password", s["clarity_password"], "--erp-base", s["erp_base_url"],
               "--erp-key", s["erp_api_key"], "--erp-secret", s["erp_api_secret"],
               "--poll-interval", str(s["clarity_poll_interval_s"])]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
        log = (self.workdir / "naive.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_http_ready(self.proc, f"http://127.0.0.1:{self.port}/healthz", time.monotonic() + 60,
                        f"naive arm (see {self.workdir})")

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid) if self.proc is not None and self.proc.poll() is None else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class EventsWatcher(threading.Thread):
    """The naive arm's counterpart of ``Watcher``: reads the JSON lines it appends (one per paid order) every
    50 ms, so nothing polls the arm itself. ``seen``: order key -> (monotonic seen here, the arm's own time)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="o2c-naive-watcher")
        self.path = path
        self.seen: dict[str, tuple[float, datetime]] = {}
        self.errors: list[str] = []
        self._offset = 0
        self._halt = threading.Event()
        self.polls = 0
        self.poll_s = 0.0

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self._read()

    def _read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        if not end:
            return
        self._offset += end
        now = time.monotonic()
        for line in chunk[:end].splitlines():
            doc = orjson.loads(line)
            if "paid" in doc:
                self.seen.setdefault(doc["paid"], (now, datetime.fromtimestamp(doc["wall"], UTC)))
            else:
                self.errors.append(str(doc.get("error")))

    def run(self) -> None:
        while not self._halt.is_set():
            t0 = time.monotonic()
            self._read()
            self.polls += 1
            self.poll_s += time.monotonic() - t0
            self._halt.wait(max(0.0, WATCH_EVERY_S - (time.monotonic() - t0)))


class PgBackends:
    """CPU seconds so far of the PostgreSQL backends serving the bridge's database (the server runs on this
    machine), read from ``/proc/<pid>/stat``; the benchmark's own watcher connection is left out by its
    ``application_name``. A backend that exits between two reads takes its CPU with it (pools keep theirs)."""

    def __init__(self, dbname: str) -> None:
        import psycopg

        self.dbname = dbname
        self.conn = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3",
                                    autocommit=True)

    def cpu(self) -> dict[int, float]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name <> %s",
                                 (self.dbname, WATCHER_APP)).fetchall()
        out: dict[int, float] = {}
        for (pid,) in rows:
            with contextlib.suppress(OSError):
                out[pid] = _proc_cpu_s(pid)
        return out

    @staticmethod
    def delta(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())

    def close(self) -> None:
        self.conn.close()


# ---- the load ------------------------------------------------------------------------------------------
@dataclass
class Order:
    i: int
    scheduled: float  # monotonic
    answered: float = math.nan  # monotonic, checkout answer
    answered_wall: float = math.nan
    key: str = ""
    order_id: int | None = None
    error: str = ""


def checkout_body(n: int) -> dict[str, Any]:
    return {"Email": f"shopper{n:06d}@example.com", "FirstName": "Shopper", "LastName": f"No{n}",
            "BillingAddress": {"Street1": f"{n} Main St", "City": "Austin", "RegionCode": "TX",
                               "PostalCode": "78701", "CountryCode": "US"},
            "Lines": [{"Sku": sku, "Quantity": q, "UnitPrice": p} for sku, q, p in SCENARIO.lines],
            "Currency": SCENARIO.currency, "PaymentMode": SCENARIO.mode, "PaymentMethod": SCENARIO.payment_method}


async def offer(clarity_url: str, rate: float, duration: float) -> list[Order]:
    """Open loop: checkout i is sent at t0 + i/rate, whatever happened to the earlier ones."""
    n = int(rate * duration)
    orders: list[Order] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=clarity_url, timeout=30, limits=limits) as client:
        async def one(o: Order) -> None:
            try:
                r = await client.post("/_sandbox/checkout", json=checkout_body(o.i))
                o.answered, o.answered_wall = time.monotonic(), time.time()
                doc = r.json()
                if r.status_code != 200 or not doc.get("Succeeded"):
                    o.error = f"checkout {r.status_code}: {str(doc)[:200]}"
                    return
                o.key, o.order_id = doc["OrderKey"], doc["OrderID"]
            except Exception as exc:
                o.error = f"{type(exc).__name__}: {exc}"

        t0 = time.monotonic() + 0.05
        tasks = []
        for i in range(n):
            at = t0 + i / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            o = Order(i=i, scheduled=at)
            orders.append(o)
            tasks.append(asyncio.create_task(one(o)))
        await asyncio.gather(*tasks)
    return orders


# ---- one phase --------------------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def verify(tr: Any, orders: list[Order]) -> dict[str, int]:
    """Clarity status and balance of every order, and the ERP's Payment Entries, read after the phase."""
    paid = 0
    for o in orders:
        if o.order_id is None:
            continue
        r = tr.clarity.get(f"{traffic_mod.CLARITY_API}/Ordering/SalesOrder/ID/{o.order_id}", headers=tr.session)
        if r.status_code == 200:
            d = r.json()
            if d.get("StatusKey") == PAID and traffic_mod._zero(str(d.get("BalanceDue", "0"))):
                paid += 1
    pe = tr.erp.get("/api/resource/Payment Entry", params={"limit_page_length": 1000000})
    entries = len(pe.json().get("data") or []) if pe.status_code == 200 else -1
    so = tr.erp.get("/api/resource/Sales Order", params={"limit_page_length": 1000000})
    sales = len(so.json().get("data") or []) if so.status_code == 200 else -1
    return {"clarity_paid": paid, "erp_payment_entries": entries, "erp_sales_orders": sales}


def process_cpu_s() -> float:
    """utime + stime of this process (every thread: peers, bridge and load)."""
    return _proc_cpu_s(os.getpid())


def _rate_limited_in(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("cb_step_attempts_total") and 'outcome="rate_limited"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


_RETURNS_POLL = "clarity_returns_poll_interval_s"

def phase(rate: float, a: argparse.Namespace, dbkind: str, arm: str = "bridge", rep: int = 1) -> dict[str, Any]:
    """One arm at one rate on a fresh stack of peers: idle cost first, then the offered load and the drain."""
    log = LOG
    log.rows.clear()
    PEERS.rows.clear()
    overrides: dict[str, Any] = {"rate_limits": {"stripe": a.bridge_stripe_limit, "clarity": 1000, "erp": 1000},
                                 "clarity_poll_interval_s": a.clarity_poll}
    if _RETURNS_POLL in Settings.model_fields:  # code before 7 Dec 2026 (A/B runs) polls no returns
        overrides[_RETURNS_POLL] = a.clarity_returns_poll
    overrides["audit_runs"] = a.audit
    # the scheduled checks (gaps: first after 60 s, every 15 min; drift: after 5 min) are not per-order work: a
    # check landing in a short run would be charged to its orders, so they are off here (code before 7 Dec: absent)
    for name in ("gap_interval_s", "drift_interval_s"):
        if name in Settings.model_fields:
            overrides[name] = 0
    if a.no_priority:
        overrides["workflow_priorities"] = {}
    pg: PgBackends | None = None
    naive_watcher: EventsWatcher | None = None
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    with contextlib.ExitStack() as es:
        if dbkind == "postgres" and arm == "bridge":
            fresh = es.enter_context(fresh_database("postgres"))
            db_url: str | None = fresh.url
        else:
            fresh, db_url = None, None  # the naive arm has no database
        name = f"{dbkind}-{rate:g}" + ("" if (arm, rep) == ("bridge", 1) else f"-{arm}-{rep}")
        workdir = Path(a.keep) / name if a.keep else Path(
            es.enter_context(tempfile.TemporaryDirectory(prefix="cb-o2c-")))
        workdir.mkdir(parents=True, exist_ok=True)
        if arm == "naive":
            peers = es.enter_context(sandbox_peers(database_url=db_url, workdir=workdir, **overrides))
            tr, urls = peers.traffic, peers.urls
            naive = NaiveProcess(peers.settings, peers.bridge_port, workdir)
            es.callback(naive.stop)
            naive.start()
            db, c, bp = None, None, None
            cpu_of_bridge = naive.cpu_s  # the arm's own process
            naive_watcher = EventsWatcher(naive.events)
            watcher: Watcher | EventsWatcher = naive_watcher
        elif a.bridge == "inprocess":
            # the bridge logs INFO as JSON to a file, like the demo (not to this terminal)
            configure_logging("INFO", json=True, stream=es.enter_context((workdir / "bridge.log").open("w")))
            st = es.enter_context(sandbox_stack(database_url=db_url, workdir=workdir, **overrides))
            tr, urls, db = st.traffic, st.urls, st.container.db
            c, bp = st.container, None
            cpu_of_bridge = None
            watcher = Watcher(db)
        else:
            peers = es.enter_context(sandbox_peers(database_url=db_url, workdir=workdir, **overrides))
            tr, urls = peers.traffic, peers.urls
            bp = BridgeProcesses(peers.settings, peers.bridge_port, workdir, a.bridge, a.workers)
            es.callback(bp.stop)
            bp.start()
            db, c = bp.db, None
            cpu_of_bridge = bp.cpu_s
            watcher = Watcher(db)
            if fresh is not None and fresh.pg_name:
                pg = PgBackends(fresh.pg_name)
                es.callback(pg.close)
        stripe_url = urls["Stripe emulator"]
        httpx.post(f"{stripe_url}/_sandbox/rate_limit", json={"per_s": a.emulator_limit}).raise_for_status()
        watcher.start()
        time.sleep(1.0 + a.idle_settle)
        # the arm's idle cost: started, polling Clarity, no orders (after the engine's fast start-up pace)
        i_t0 = time.monotonic()
        i_cpu0 = cpu_of_bridge() if cpu_of_bridge else 0.0
        i_pg0 = pg.cpu() if pg else {}
        time.sleep(a.idle)
        i_t1 = time.monotonic()
        idle_cpu = (cpu_of_bridge() - i_cpu0) if cpu_of_bridge else None
        idle_pg = PgBackends.delta(i_pg0, pg.cpu()) if pg else None
        idle_calls = _peer_calls(log.rows, PEERS.rows, i_t0, i_t1)
        log_start = len(log.rows)
        cpu0 = process_cpu_s()
        bcpu0 = cpu_of_bridge() if cpu_of_bridge else 0.0
        pg0 = pg.cpu() if pg else {}
        busy0, steal0 = machine_busy_s(), machine_steal_s()
        t_start = time.monotonic()
        orders = asyncio.run(offer(urls["Clarity simulator"], rate, a.duration))
        t_offer_end = time.monotonic()
        keys = {o.key for o in orders if o.key}
        deadline = time.monotonic() + a.drain
        while time.monotonic() < deadline and not keys <= watcher.seen.keys():
            time.sleep(0.1)
        t_end = time.monotonic()
        cpu = process_cpu_s() - cpu0
        bridge_cpu = (cpu_of_bridge() - bcpu0) if cpu_of_bridge else None
        pg_cpu = PgBackends.delta(pg0, pg.cpu()) if pg else None
        busy, steal = machine_busy_s() - busy0, machine_steal_s() - steal0
        watcher.stop()
        reqs = log.rows[log_start:]
        calls = _peer_calls(log.rows, PEERS.rows, t_start, t_end)
        check = verify(tr, orders)
        if arm == "naive":
            dlq, metric_rl, run_counts = None, None, {}
        elif c is not None:
            dlq, metric_rl, run_counts = (c.dead_letters.count_open(), _rate_limited_in(c.metrics.render().decode()),
                                          c.runs.counts_by_status())
        else:
            assert bp is not None
            dlq, metric_rl, run_counts = bp.open_dlq(), bp.rate_limited_metric(), bp.run_counts()
    measured = [o for o in orders if o.scheduled - orders[0].scheduled >= a.warmup] if orders else []
    lat = [watcher.seen[o.key][0] - o.answered for o in measured if o.key in watcher.seen]
    lat_db = [watcher.seen[o.key][1].timestamp() - o.answered_wall for o in measured if o.key in watcher.seen]
    missing = sum(1 for o in measured if o.key not in watcher.seen)
    window = a.duration
    done_in_window = sum(1 for o in orders if o.key in watcher.seen and watcher.seen[o.key][0] <= t_offer_end)
    in_win = [r for r in reqs if t_start <= r[0] <= t_offer_end]
    per_sec = Counter(int(r[0]) for r in reqs)
    full = [v for s, v in per_sec.items() if int(t_start) < s < int(t_end)]
    statuses = Counter(r[4] for r in reqs)
    by_call = Counter(f"{r[1]} {_route(r[2])}" for r in reqs)
    checkout_s = [o.answered - o.scheduled for o in orders if not math.isnan(o.answered)]
    paid = len(watcher.seen.keys() & keys)
    is_bridge = arm == "bridge"
    res = {
        "db": dbkind, "offered_per_s": rate, "emulator_limit": a.emulator_limit,
        "bridge_stripe_limit": a.bridge_stripe_limit, "orders": len(orders), "measured_orders": len(measured),
        "checkout_errors": sum(1 for o in orders if o.error),
        "completed": paid,
        "completed_per_s_in_window": done_in_window / window,
        "stripe_requests": len(reqs), "stripe_req_per_s_in_window": len(in_win) / window,
        "stripe_max_1s_window": max(full) if full else 0,
        "stripe_requests_per_order": len(reqs) / max(1, len(orders)),
        "emulator_429": statuses.get(429, 0), "emulator_statuses": dict(statuses),
        "stripe_calls": dict(by_call),
        "emulator_429_by_route": dict(Counter(f"{r[1]} {_route(r[2])}" for r in reqs if r[4] == 429)),
        "stripe_requests_per_1s_window": [per_sec.get(s, 0) for s in range(int(t_start), int(t_end) + 1)],
        "stripe_user_agents": dict(Counter(r[3] for r in reqs)),
        "bridge_rate_limited_metric": metric_rl,
        "latency_p50_s": pct(lat, 50), "latency_p99_s": pct(lat, 99), "latency_max_s": max(lat) if lat else None,
        "latency_db_p50_s": pct(lat_db, 50), "latency_db_p99_s": pct(lat_db, 99),
        "not_completed": missing, "checkout_answer_p99_s": pct(checkout_s, 99),
        "drain_s": t_end - t_offer_end, "process_cpu_s": cpu, "process_cpu_share": cpu / (t_end - t_start),
        "process_cpu_ms_per_completed_order": 1000 * cpu / max(1, paid),
        "bridge_mode": a.bridge if is_bridge else "naive",
        "workers": a.workers if is_bridge and a.bridge == "split" else None,
        "audit_runs": a.audit if is_bridge else None,
        "bridge_cpu_s": bridge_cpu if is_bridge else None,
        "bridge_cpu_ms_per_completed_order": (1000 * bridge_cpu / max(1, paid)
                                              if is_bridge and bridge_cpu is not None else None),
        "machine_busy_cores": busy / (t_end - t_start), "machine_steal_cores": steal / (t_end - t_start),
        "machine_cpu_ms_per_completed_order": 1000 * busy / max(1, paid),
        "open_dlq": dlq, "runs": run_counts, "loadavg_at_start": loadavg,
        "watch_polls": watcher.polls, "watch_poll_ms_mean": 1000 * watcher.poll_s / max(1, watcher.polls),
        **check,
        **_arm_figures(arm, rep, paid, t_end - t_start, bridge_cpu, pg_cpu,
                       not (is_bridge and dbkind == "postgres" and pg is None),
                       i_t1 - i_t0, idle_cpu, idle_pg, calls, idle_calls),
    }
    if naive_watcher is not None:
        res["naive_errors"] = len(naive_watcher.errors)
        res["naive_error_samples"] = naive_watcher.errors[:5]
    p99 = res["latency_p99_s"]
    res["meets_target"] = bool(res["emulator_429"] == 0 and missing == 0 and p99 is not None and p99 <= 1.0
                               and not res["open_dlq"] and res["clarity_paid"] == len(keys))
    return res


def _peer_calls(stripe_rows: list[tuple[float, str, str, str, int]],
                peer_rows: list[tuple[float, str, str, str, str, int]], t0: float, t1: float) -> dict[str, Any]:
    """The HTTP requests the peers answered between t0 and t1, by peer and by route: Stripe (every /v1 request),
    Clarity (its poll ``GET /Ordering/SalesOrders`` without ``CustomKey`` counted apart; the load generator's
    ``/_sandbox`` checkouts left out) and ERPNext."""
    routes: Counter[str] = Counter()
    for t, method, path, _ua, _status in stripe_rows:
        if t0 <= t <= t1:
            routes[f"stripe {method} {_route(path)}"] += 1
    polls = 0
    for t, peer, method, path, query, _status in peer_rows:
        if not t0 <= t <= t1 or path.startswith("/_sandbox"):
            continue
        if peer == "clarity" and path.endswith("/Ordering/SalesOrders") and "CustomKey" not in query:
            polls += 1
            continue
        routes[f"{peer} {method} {_peer_route(path)}"] += 1
    by_peer = Counter({"stripe": 0, "clarity": 0, "erp": 0})
    for route, n in routes.items():
        by_peer[route.split(" ", 1)[0]] += n
    return {"by_peer": dict(by_peer), "clarity_polls": polls, "routes": dict(sorted(routes.items()))}


def _peer_route(path: str) -> str:
    path = path.removeprefix(traffic_mod.CLARITY_API)
    return "/".join("{id}" if any(ch.isdigit() for ch in p) else p for p in path.split("/"))


def _arm_figures(arm: str, rep: int, paid: int, elapsed_s: float, cpu_s: float | None, pg_cpu_s: float | None,
                 complete: bool, idle_s: float, idle_cpu_s: float | None, idle_pg_s: float | None,
                 calls: dict[str, Any], idle_calls: dict[str, Any]) -> dict[str, Any]:
    """The per-arm figures of the bridge/naive comparison: the arm's CPU per paid order, with and without its
    idle cost, and its HTTP calls per paid order.

    ``cpu_s`` is the arm's own processes (the bridge's ``serve`` or ``ingress`` + workers; the naive process);
    ``pg_cpu_s`` the PostgreSQL backends of the bridge's database (None: SQLite, or not measured).
    ``complete`` says whether every process the arm needs was measured (False: PostgreSQL backends not read).
    """
    total = None if cpu_s is None else cpu_s + (pg_cpu_s or 0.0)
    idle_total = None if idle_cpu_s is None else idle_cpu_s + (idle_pg_s or 0.0)
    idle_rate = None if idle_total is None else idle_total / idle_s
    n = max(1, paid)
    net = None if total is None or idle_rate is None else total - idle_rate * elapsed_s
    by_peer = calls["by_peer"]
    return {
        "arm": arm, "rep": rep, "paid_orders": paid, "arm_elapsed_s": elapsed_s,
        "arm_cpu_s": cpu_s, "pg_backends_cpu_s": pg_cpu_s, "arm_total_cpu_s": total,
        "arm_cpu_complete": complete,
        "arm_cpu_ms_per_paid_order": None if total is None else 1000 * total / n,
        "idle_s": idle_s, "idle_cpu_s": idle_cpu_s, "idle_pg_backends_cpu_s": idle_pg_s,
        "idle_cpu_cores": idle_rate,
        "arm_cpu_ms_per_paid_order_minus_idle": None if net is None else 1000 * net / n,
        "http_calls": calls, "idle_http_calls": idle_calls,
        "http_calls_per_paid_order": {peer: v / n for peer, v in by_peer.items()},
        "http_calls_per_paid_order_total": sum(by_peer.values()) / n,
        "clarity_polls_per_s": calls["clarity_polls"] / elapsed_s,
    }


def _route(path: str) -> str:
    parts = path.split("/")
    return "/".join(p if i < 3 or p in ("confirm", "capture", "search", "cancel") else "{id}"
                    for i, p in enumerate(parts))


# ---- output -------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def table(results: list[dict[str, Any]]) -> str:
    head = ("| db | bridge | offered orders/s | completed orders/s | Stripe req/s at emulator (max 1-s window) | 429s "
            "| p50 ms | p99 ms | max ms | not done | open DLQ | machine CPU (cores) | machine CPU ms/order "
            "| bridge CPU ms/order | target |")
    lines = [head, "|" + "---|" * 15]
    for r in results:
        mode = r.get("bridge_mode", "inprocess")
        mode += f" x{r['workers']}" if r.get("workers") else ""
        mode += ", audit" if r.get("audit_runs") else ""
        bridge_ms = r.get("bridge_cpu_ms_per_completed_order")
        lines.append(
            f"| {r['db']} | {mode} | {r['offered_per_s']:g} | {r['completed_per_s_in_window']:.1f} "
            f"| {r['stripe_req_per_s_in_window']:.1f} ({r['stripe_max_1s_window']}) | {r['emulator_429']} "
            f"| {_ms(r['latency_p50_s'])} | {_ms(r['latency_p99_s'])} | {_ms(r['latency_max_s'])} "
            f"| {r['not_completed']} | {'-' if r['open_dlq'] is None else r['open_dlq']} "
            f"| {r.get('machine_busy_cores', math.nan):.2f} "
            f"| {r.get('machine_cpu_ms_per_completed_order', math.nan):.0f} "
            f"| {'-' if bridge_ms is None else f'{bridge_ms:.0f}'} | {'PASS' if r['meets_target'] else 'FAIL'} |")
    return "\n".join(lines)


def _num(v: float | None, fmt: str = ".0f") -> str:
    return "-" if v is None else format(v, fmt)


def arms_table(results: list[dict[str, Any]]) -> str:
    """One line per arm run: paid orders, the arm's CPU per paid order with and without its idle cost, calls."""
    head = ("| db | offered orders/s | arm | rep | paid | p50 / p99 ms | idle CPU (cores) | CPU ms/paid order "
            "| of which PostgreSQL backends | minus idle | HTTP calls/paid order: Stripe + Clarity + ERP (+ polls/s) |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        if "arm" not in r:
            continue
        per = r["http_calls_per_paid_order"]
        pg = r["pg_backends_cpu_s"]
        pg_ms = (_num(1000 * pg / max(1, r["paid_orders"])) if pg is not None
                 else ("not measured" if not r["arm_cpu_complete"] else "-"))
        arm = r["arm"] if r["arm"] == "naive" else f"bridge ({r['bridge_mode']}" + (
            f" x{r['workers']}" if r.get("workers") else "") + (", audit" if r.get("audit_runs") else "") + ")"
        lines.append(
            f"| {r['db']} | {r['offered_per_s']:g} | {arm} | {r['rep']} | {r['paid_orders']}/{r['orders']} "
            f"| {_ms(r['latency_p50_s'])} / {_ms(r['latency_p99_s'])} | {_num(r['idle_cpu_cores'], '.3f')} "
            f"| {_num(r['arm_cpu_ms_per_paid_order'])} | {pg_ms} | {_num(r['arm_cpu_ms_per_paid_order_minus_idle'])} "
            f"| {per['stripe']:.1f} + {per['clarity']:.1f} + {per['erp']:.1f} = "
            f"{r['http_calls_per_paid_order_total']:.1f} (+ {r['clarity_polls_per_s']:.1f}/s) |")
    return "\n".join(lines)


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def arm_ratios(per_arm: dict[str, list[float]], name: str) -> dict[str, Any]:
    """Each arm's CPU per unit of work (every rep, and the median) and the ratio bridge/naive of the medians and
    of each rep's pair, under the keys ``ratio_cells`` reads (``name``: ``gross`` or ``net``, minus idle)."""
    med = {arm: _median(v) for arm, v in per_arm.items()}
    return {f"bridge_ms_{name}": per_arm["bridge"], f"naive_ms_{name}": per_arm["naive"],
            f"bridge_ms_{name}_median": med["bridge"], f"naive_ms_{name}_median": med["naive"],
            f"ratio_{name}": med["bridge"] / med["naive"] if med["bridge"] is not None and med["naive"] else None,
            f"ratio_{name}_per_rep": [b / n for b, n in zip(per_arm["bridge"], per_arm["naive"], strict=False) if n]}


def arms_summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per database and rate: each arm's CPU per paid order (every rep, and the median) and the ratio
    bridge/naive of the medians, with and without the idle cost; also the ratio of each rep's pair."""
    out = []
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in results:
        if "arm" in r:
            groups.setdefault((r["db"], r["offered_per_s"]), []).append(r)
    for (db, rate), rs in groups.items():
        row: dict[str, Any] = {"db": db, "offered_per_s": rate}
        for key, name in (("arm_cpu_ms_per_paid_order", "gross"), ("arm_cpu_ms_per_paid_order_minus_idle", "net")):
            per_arm = {arm: [r[key] for r in rs if r["arm"] == arm and r[key] is not None and r["paid_orders"]]
                       for arm in ("bridge", "naive")}
            row.update(arm_ratios(per_arm, name))
        calls = {arm: [r["http_calls_per_paid_order_total"] for r in rs if r["arm"] == arm and r["paid_orders"]]
                 for arm in ("bridge", "naive")}
        row["http_calls_per_paid_order"] = {arm: _median(v) for arm, v in calls.items()}
        row["bridge_cpu_complete"] = all(r["arm_cpu_complete"] for r in rs if r["arm"] == "bridge")
        out.append(row)
    return out


def ratio_table(summary: list[dict[str, Any]]) -> str:
    head = ("| db | offered orders/s | bridge CPU ms/paid order | naive | ratio | bridge minus idle | naive minus idle "
            "| ratio minus idle | HTTP calls/paid order bridge / naive |")
    return ratio_rows(head, summary, lambda s: f"{s['db']} | {s['offered_per_s']:g}", "http_calls_per_paid_order",
                      lambda s: "" if s["bridge_cpu_complete"] else " (PostgreSQL backends not measured)")


def ratio_rows(head: str, rows: list[dict[str, Any]], lead: Callable[[dict[str, Any]], str], calls_key: str,
               note: Callable[[dict[str, Any]], str] = lambda s: "") -> str:
    """A ratio table: ``head``, then per row ``lead(row)``'s cells, ``ratio_cells`` and the HTTP calls per unit
    of work of each arm (``row[calls_key]``)."""
    lines = [head, "|" + "---|" * 9]
    for s in rows:
        calls = s[calls_key]
        lines.append(f"| {lead(s)} {ratio_cells(s, note(s))}"
                     f"| {_num(calls['bridge'], '.1f')} / {_num(calls['naive'], '.1f')} |")
    return "\n".join(lines)


def _each(xs: list[float], fmt: str = ".0f") -> str:
    return ", ".join(format(x, fmt) for x in xs) or "-"


def ratio_cells(s: dict[str, Any], note: str = "") -> str:
    """The six cells of a ratio table's row from ``arm_ratios``' keys: each arm's figures, then the ratio of the
    medians (each rep's pair in brackets), gross and minus idle; ``note`` follows the bridge's figures."""
    return (f"| {_each(s['bridge_ms_gross'])}{note} | {_each(s['naive_ms_gross'])} "
            f"| **{_num(s['ratio_gross'], '.2f')}** ({_each(s['ratio_gross_per_rep'], '.2f')}) "
            f"| {_each(s['bridge_ms_net'])} | {_each(s['naive_ms_net'])} "
            f"| **{_num(s['ratio_net'], '.2f')}** ({_each(s['ratio_net_per_rep'], '.2f')}) ")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "sqlite": sqlite3.sqlite_version}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    info["git_head"] = head.stdout.strip()
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        info["loadavg_at_start"] = f.read().split()[:3]
    return info


def chosen_databases(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[str]:
    """``--db`` as a list, without PostgreSQL when it is not usable (and says so); refuses ``--bridge split``
    on SQLite. Installs the peers' request logs, so do it before any peer starts."""
    dbs = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    if a.bridge == "split" and "sqlite" in dbs:
        p.error("--bridge split needs PostgreSQL (--db postgres): SQLite is one process's database")
    if "postgres" in dbs and (problem := postgres_problem()):
        print(f"skipping PostgreSQL: {problem}")
        dbs.remove("postgres")
    LOG.install()
    PEERS.install()
    return dbs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rates", default="1,2,3,5,10,20", help="offered orders/s, comma separated")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of offered load per rate")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--quick", action="store_true", help="rates 1,5 for 10 s each")
    p.add_argument("--warmup", type=float, default=3.0, help="orders of the first S seconds are not in latency")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for the last orders")
    p.add_argument("--emulator-limit", type=int, default=100, help="the emulator's requests/s before 429")
    p.add_argument("--bridge-stripe-limit", type=float, default=100.0, help="the bridge's rate_limits['stripe']")
    p.add_argument("--clarity-poll", type=float, default=0.5, help="clarity_poll_interval_s (the demo's 0.5)")
    p.add_argument("--clarity-returns-poll", type=float,
                   default=getattr(Settings.model_fields.get(_RETURNS_POLL), "default", 10.0),
                   help="clarity_returns_poll_interval_s (default: the shipped default; the demo polls returns every 0.5 s)")
    p.add_argument("--keep", metavar="DIR", help="keep each phase's folder (bridge.log, SQLite file) under DIR")
    p.add_argument("--bridge", choices=["serve", "split", "inprocess"], default="serve",
                   help="serve: the bridge in its own process; split: ingress + --workers worker processes "
                        "(PostgreSQL only); inprocess: in this process with the peers (the first measurements)")
    p.add_argument("--workers", type=int, default=2, help="worker processes with --bridge split")
    p.add_argument("--audit", action="store_true",
                   help="CB_AUDIT_RUNS=true: one core.audit run per event (the default before issue 10; 6 of 8 "
                        "runs per order)")
    p.add_argument("--arms", default="bridge,naive",
                   help="bridge, naive or both (interleaved per rate: bridge, naive, bridge, naive, ...); naive is "
                        "bench/_naive_order.py, the same order flow with no durability")
    p.add_argument("--reps", type=int, default=1, help="runs of each arm per rate, interleaved")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds of each arm's idle CPU (started, no orders), measured before the load")
    p.add_argument("--no-priority", action="store_true",
                   help="CB_WORKFLOW_PRIORITIES={}: deliveries dispatched in arrival order (the A/B of issue 10, point 11)")
    p.add_argument("--idle-settle", type=float, default=12.0,
                   help="seconds after start-up before the idle window (the engine polls fast for its first 10 s)")
    a = p.parse_args()
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if not arms or any(x not in ("bridge", "naive") for x in arms):
        p.error("--arms takes bridge, naive or bridge,naive")
    if a.quick:
        a.rates, a.duration = "1,5", 10.0
    rates = [float(x) for x in a.rates.split(",") if x]
    dbs = chosen_databases(p, a)
    started = datetime.now(UTC)
    info = machine()
    results: list[dict[str, Any]] = []
    out = ROOT / "bench" / "results" / f"order-to-cash-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    for dbkind in dbs:
        for rate in rates:
            for rep in range(1, a.reps + 1):
                for arm in arms:
                    print(f"{dbkind}: {rate:g} orders/s for {a.duration:g} s, {arm} arm, run {rep} ...", flush=True)
                    r = phase(rate, a, dbkind, arm, rep)
                    results.append(r)
                    print(table([r]).splitlines()[-1], flush=True)
                    print(arms_table([r]).splitlines()[-1], flush=True)
                    out.write_text(json.dumps({"started": started.isoformat(), "args": vars(a), "machine": info,
                                               "results": results, "arms_summary": arms_summary(results)},
                                              indent=1, default=str))
    print()
    print(table(results))
    print()
    print(arms_table(results))
    if len(arms) == 2:
        print()
        print(ratio_table(arms_summary(results)))
    ok = [r for r in results if r["meets_target"] and r.get("arm", "bridge") == "bridge"]
    for dbkind in dbs:
        best = max((r["offered_per_s"] for r in ok if r["db"] == dbkind), default=None)
        print(f"{dbkind}: highest offered rate meeting the targets: {best if best is not None else 'none'} orders/s")
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
