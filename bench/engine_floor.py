"""Engine floor: the most orders/s the engine alone carries on this machine, every connector call free.

The engine here is what every order pays for whatever its connectors cost: DBOS Transact (workflow
status and input, one checkpoint per step that is not ``inline`` in the catalogue), our ``inbox`` and
``runs`` tables, the dispatcher (it starts the runs itself, at most ``worker_concurrency`` at once) and
our step wrapper (``Engine.workflow_body``/``_attempt``: ``when`` and ``with`` expressions, breaker,
metrics, a log line per run). It runs in this process (``bootstrap(..., "worker")``), on SQLite
(the default: ``bridge.sqlite`` and ``engine.sqlite`` in a temporary folder) or PostgreSQL (a fresh
database per phase, dropped afterwards), logging INFO as JSON to a file as ``serve`` does.

Shapes (code-defined workflows with no-op actions; counts from ``bench/order_to_cash.py --keep``,
see docs/performance.md "The engine floor and scale-out after issue 10"):

* ``baseline``: one delivery starts one run of one no-op step (the reference of the ratio).
* ``order``: one order = 6 deliveries and 2 runs of 6 and 7 executed steps, 3 and 6 of them
  checkpointed (9 DBOS steps, 2 DBOS workflows), like ``clarity.order_to_cash`` version 3 (no link
  steps) plus ``stripe.payment_succeeded`` with ``core.audit`` off (the default). Its pure steps use
  the real step types ``core.validate.order`` and ``core.identity.lookup`` (catalogue ``inline``:
  no checkpoint) bound to no-op actions. The deliveries arrive as in the real flow: the order's
  ``salesorder.created`` first; the no-op ``stripe.customer.ensure`` and
  ``stripe.payment_intent.create`` steps hand the webhooks Stripe
  would send (``customer.created``; ``payment_intent.created``/``.succeeded``, ``charge.succeeded``)
  to the feeder, and ``clarity.order.add_payment`` the ``salesorder.updated`` the Clarity poll would
  see. Step outputs and event bodies are padded to the sizes measured in the real flow.
* ``order+audit``: the same with ``core.audit`` on (``CB_AUDIT_RUNS``; off by default since issue 10):
  8 runs, 15 checkpoints.

After each phase the bench reads DBOS's ``workflow_status`` and ``operation_outputs`` and warns when
they hold another count per order than the shape says (``shape_as_recorded`` in the JSON).

Load: ``max`` keeps ``--outstanding`` orders in flight (a new one starts when one has finished all
its runs): the throughput ceiling. A number is an open-loop rate in orders/s (order i starts at
t0 + i/rate, latency from that scheduled time).

Measured over ``--duration`` seconds after ``--warmup``: orders that finished all their runs per
second, latency from an order's start to its "paid" run (``stripe.payment_succeeded``'s twin)
finished and to all its runs finished, this process's CPU (``time.process_time``), PostgreSQL's
backends of the phase's database (``/proc/<pid>/stat``), and the machine's busy and stolen CPU
(``/proc/stat``, helpers of ``bench/order_to_cash.py``). A run ends when its ``succeeded`` status is
committed in our ``runs`` table (DBOS writes the workflow's output right after). Writes
``bench/results/engine-floor-<UTC time>.json``.

    .venv/bin/python bench/engine_floor.py --db both --reps 2 --duration 20 --loads max,10,25 --markdown
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import pickle
import queue
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import pid_cpu_s  # noqa: E402
from commerce_bridge.bootstrap import Container, bootstrap  # noqa: E402
from commerce_bridge.config import load_settings  # noqa: E402
from commerce_bridge.domain.delivery import Delivery, RunStatus  # noqa: E402
from commerce_bridge.logsetup import configure_logging  # noqa: E402
from commerce_bridge.store.tables import runs as runs_table  # noqa: E402
from commerce_bridge.workflows.spec import StepContext, StepSpec, Trigger, WorkflowSpec  # noqa: E402
from order_to_cash import machine, machine_busy_s, machine_steal_s, pct  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# ---- what an order is made of (measured in the real flow, see the module docstring) -------------------
# kind -> (source, event type, body bytes as stored in the inbox by the real flow)
KINDS: dict[str, tuple[str, str, int]] = {
    "created": ("clarity", "salesorder.created", 2200),
    "updated": ("clarity", "salesorder.updated", 2374),
    "customer": ("stripe", "customer.created", 1394),
    "pi_created": ("stripe", "payment_intent.created", 2485),
    "pi_succeeded": ("stripe", "payment_intent.succeeded", 2503),
    "charge": ("stripe", "charge.succeeded", 4165),
    "ping": ("bench", "bench.ping", 2503),
}

# step -> length of its checkpoint in DBOS's operation_outputs (base64 of the pickled result), real flow
# ("order" and "known" as they were when those steps were checkpointed; inline now, so only their size in memory)
OUTPUT_B64 = {"get": 3900, "find": 3900, "order": 1065, "payment": 613, "known": 144, "customer": 144,
              "add_payment": 148, "erp_customer": 76, "erp_order": 116, "erp_payment": 84,
              "noop": 56}


def _padded(fields: dict[str, Any], b64_len: int) -> dict[str, Any]:
    """``fields`` plus a pad so that the checkpoint ``{"ok": True, "output": ...}`` is about ``b64_len`` long."""
    out = dict(fields)
    out["pad"] = ""
    base = len(base64.b64encode(pickle.dumps({"ok": True, "output": out})))
    out["pad"] = "x" * max(0, (b64_len - base) * 3 // 4)
    return out


ORDER_OUT = _padded({"needs_payment": True, "key": "K", "external_id": 1, "customer": {"email": "a@example.com"}},
                    OUTPUT_B64["order"])
PAYMENT_OUT = _padded({"id": "pi_1", "status": "succeeded", "reused": False,
                       "metadata": {"clarity_order_key": "K"}, "amount_received": {"minor": 3300, "currency": "USD"},
                       "amount": {"minor": 3300, "currency": "USD"}, "latest_charge": "ch_1"}, OUTPUT_B64["payment"])
OUTPUTS: dict[str, dict[str, Any]] = {
    "get": _padded({"ID": 1, "StatusKey": "Pending"}, OUTPUT_B64["get"]),
    "find": _padded({"ID": 1, "StatusKey": "Pending"}, OUTPUT_B64["find"]),
    "order": ORDER_OUT, "payment": PAYMENT_OUT,
    "known": _padded({"external_id": None}, OUTPUT_B64["known"]),
    "customer": _padded({"id": "cus_1", "created": True}, OUTPUT_B64["customer"]),
    "add_payment": _padded({"status_key": "Full Payment Received"}, OUTPUT_B64["add_payment"]),
    "erp_customer": _padded({"name": "CUST-1"}, OUTPUT_B64["erp_customer"]),
    "erp_order": _padded({"name": "SAL-ORD-1", "grand_total": "33.00"}, OUTPUT_B64["erp_order"]),
    "erp_payment": _padded({"name": "ACC-PAY-1"}, OUTPUT_B64["erp_payment"]),
    "noop": _padded({}, OUTPUT_B64["noop"]),
}

NEEDS_PAYMENT = "steps.order.needs_payment"
# The pure steps use the real step types (``core.validate.order``, ``core.identity.lookup``) bound to the
# bench's no-op actions, so the catalogue's ``inline`` decides, as in the real flow, that they run
# without a DBOS checkpoint.
ORDER_TO_CASH = WorkflowSpec(  # clarity.order_to_cash v3: 7 steps, 6 run (tell_authenticate is skipped), 3 checkpointed
    name="bench.order_to_cash", version="3", vars={"pending_status": "Pending"},
    trigger=Trigger(sources=("clarity",), event_types=("salesorder.created", "salesorder.updated"),
                    filter="event.data.ID && (event.data.StatusKey == `null` || event.data.StatusKey == "
                           "vars.pending_status)"),
    steps=(
        StepSpec(id="get", uses="clarity.bench_order.get", with_={"order_id": "${ event.data.ID }"}),
        StepSpec(id="order", uses="core.validate.order", with_={"order": "${ steps.get }"}),
        StepSpec(id="known_customer", uses="core.identity.lookup", when=NEEDS_PAYMENT,
                 with_={"entity": "customer", "key": "${ steps.order.customer.email }", "system": "stripe"}),
        StepSpec(id="customer", uses="stripe.bench_customer.ensure", when=NEEDS_PAYMENT,
                 with_={"customer": "${ steps.order.customer }",
                        "existing_id": "${ steps.known_customer.external_id }"}),
        StepSpec(id="known_payment", uses="core.identity.lookup", when=NEEDS_PAYMENT,
                 with_={"entity": "payment", "key": "${ steps.order.key }", "system": "stripe"}),
        StepSpec(id="payment", uses="stripe.bench_payment_intent.create", when=NEEDS_PAYMENT,
                 with_={"order": "${ steps.order }", "customer_id": "${ steps.customer.id }",
                        "existing_id": "${ steps.known_payment.external_id }",
                        "idempotency_key": "${ join(':', ['clarity-order', steps.order.key, 'payment']) }"}),
        StepSpec(id="tell_authenticate", uses="notify.bench_email.send",
                 when="steps.payment.status == 'requires_action' && !(steps.payment.reused)",
                 with_={"to": "${ steps.order.customer.email }", "template": "authentication_required"}),
    ),
)
PAYMENT_SUCCEEDED = WorkflowSpec(  # stripe.payment_succeeded: 8 steps, 7 run (mark_paid is skipped), 6 checkpointed
    name="bench.payment_succeeded", version="1", vars={"paid_status": "Full Payment Received"},
    trigger=Trigger(sources=("stripe",), event_types=("payment_intent.succeeded",),
                    filter="event.data.object.metadata.clarity_order_key"),
    steps=(
        StepSpec(id="payment", uses="stripe.bench_payment_intent.retrieve",
                 with_={"payment_intent_id": "${ event.data.object.id }"}),
        StepSpec(id="find", uses="clarity.bench_order.find_by_key", retry={"max_attempts": 12, "base_delay_s": 2},
                 with_={"order_key": "${ steps.payment.metadata.clarity_order_key }", "missing": "retry"}),
        StepSpec(id="add_payment", uses="clarity.bench_order.add_payment", when="steps.payment.status == 'succeeded'",
                 with_={"order_id": "${ steps.find.ID }", "amount": "${ steps.payment.amount_received }",
                        "transaction_number": "${ steps.payment.latest_charge }"}),
        StepSpec(id="mark_paid", uses="clarity.bench_order.set_status",
                 when="steps.add_payment && steps.add_payment.status_key != vars.paid_status "
                      "&& steps.payment.amount_received.minor >= steps.payment.amount.minor",
                 with_={"order_id": "${ steps.find.ID }", "status_key": "${ vars.paid_status }"}),
        StepSpec(id="order", uses="core.validate.order", with_={"order": "${ steps.find }"}),
        StepSpec(id="erp_customer", uses="erp.bench_customer.ensure", with_={"customer": "${ steps.order.customer }"}),
        StepSpec(id="erp_order", uses="erp.bench_sales_order.ensure",
                 with_={"order": "${ steps.order }", "customer": "${ steps.erp_customer.name }"}),
        StepSpec(id="erp_payment", uses="erp.bench_payment_entry.ensure", when="steps.payment.status == 'succeeded'",
                 with_={"sales_order": "${ steps.erp_order.name }", "customer": "${ steps.erp_customer.name }",
                        "amount": "${ steps.payment.amount_received }",
                        "reference_no": "${ steps.payment.latest_charge }"}),
    ),
)
ONE_STEP = WorkflowSpec(
    name="bench.one_step", version="1", trigger=Trigger(sources=("bench",), event_types=("bench.ping",)),
    steps=(StepSpec(id="noop", uses="core.bench.noop", with_={"id": "${ event.id }"}),),
)
# action -> (output, kinds of the deliveries it makes arrive)
ACTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "clarity.bench_order.get": (OUTPUTS["get"], ()),
    "core.validate.order": (OUTPUTS["order"], ()),
    "core.identity.lookup": (OUTPUTS["known"], ()),
    "stripe.bench_customer.ensure": (OUTPUTS["customer"], ("customer",)),
    "stripe.bench_payment_intent.create": (OUTPUTS["payment"], ("pi_created", "pi_succeeded", "charge")),
    "notify.bench_email.send": (OUTPUTS["noop"], ()),
    "stripe.bench_payment_intent.retrieve": (OUTPUTS["payment"], ()),
    "clarity.bench_order.find_by_key": (OUTPUTS["find"], ()),
    "clarity.bench_order.add_payment": (OUTPUTS["add_payment"], ("updated",)),
    "clarity.bench_order.set_status": (OUTPUTS["noop"], ()),
    "erp.bench_customer.ensure": (OUTPUTS["erp_customer"], ()),
    "erp.bench_sales_order.ensure": (OUTPUTS["erp_order"], ()),
    "erp.bench_payment_entry.ensure": (OUTPUTS["erp_payment"], ()),
    "core.bench.noop": (OUTPUTS["noop"], ()),
}


@dataclass(frozen=True)
class Shape:
    name: str
    workflows: tuple[WorkflowSpec, ...]
    audit: bool
    first: tuple[str, ...]  # the deliveries that start an order
    deliveries: int  # deliveries per order, all told
    runs: int  # runs per order
    steps: int  # checkpointed steps per order (DBOS operation_outputs rows; inline steps leave none)
    paid: str  # the run whose end is "paid"


SHAPES = {
    "baseline": Shape("baseline", (ONE_STEP,), False, ("ping",), 1, 1, 1, "bench.one_step"),
    "order": Shape("order", (ORDER_TO_CASH, PAYMENT_SUCCEEDED), False, ("created",), 6, 2, 9,
                   "bench.payment_succeeded"),
    "order+audit": Shape("order+audit", (ORDER_TO_CASH, PAYMENT_SUCCEEDED), True, ("created",), 6, 8, 15,
                         "bench.payment_succeeded"),
}


def event_id(n: int, kind: str) -> str:
    return f"o{n:07d}.{kind}"


def order_of(eid: str) -> int:
    return int(eid[1:8])


def delivery(n: int, kind: str) -> Delivery:
    source, etype, size = KINDS[kind]
    eid = event_id(n, kind)
    data: dict[str, Any]
    if source == "clarity":
        data = {"ID": n, "OrderKey": f"K{n}", "StatusKey": "Pending" if kind == "created" else "Full Payment Received"}
    else:
        data = {"object": {"id": f"pi_{n}", "metadata": {"clarity_order_key": f"K{n}"}}}
    doc = {"id": eid, "type": etype, "data": data}
    data["pad"] = "x" * max(0, size - len(json.dumps(doc)) - 10)
    return Delivery(source, eid, etype, json.dumps(doc).encode(), datetime.now(UTC))


# ---- who finished when ----------------------------------------------------------------------------------
@dataclass
class OrderState:
    t0: float  # monotonic: scheduled (open loop) or started (closed loop)
    paid: float = math.nan
    done: float = math.nan
    runs: int = 0


@dataclass
class Tracker:
    shape: Shape
    orders: dict[int, OrderState] = field(default_factory=dict)
    stored_at: dict[str, float] = field(default_factory=dict)
    run_latency: list[tuple[str, float, float]] = field(default_factory=list)  # (workflow, s, finished)
    parked: int = 0
    in_flight: int = 0
    on_done: Callable[[], None] = lambda: None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, n: int, t0: float) -> None:
        with self.lock:
            self.orders[n] = OrderState(t0)
            self.in_flight += 1

    def stored(self, batch: list[Delivery], at: float) -> None:
        with self.lock:
            for d in batch:
                self.stored_at.setdefault(d.event_id, at)

    def run_ended(self, run_id: str, status: RunStatus) -> None:
        now = time.monotonic()
        _source, eid, workflow = run_id.split(":", 2)
        done = False
        with self.lock:
            if status is RunStatus.PARKED:
                self.parked += 1
            stored = self.stored_at.get(eid)
            if stored is not None:
                self.run_latency.append((workflow, now - stored, now))
            st = self.orders.get(order_of(eid))
            if st is None:
                return
            st.runs += 1
            if workflow == self.shape.paid:
                st.paid = now
            if st.runs == self.shape.runs:
                st.done = now
                self.in_flight -= 1
                done = True
        if done:
            self.on_done()


class TimedRuns:
    """The engine's ``runs`` store, noting when each run reached ``succeeded`` or ``parked`` (bench only)."""

    def __init__(self, inner: Any, tracker: Tracker) -> None:
        self._inner, self._tracker = inner, tracker

    def set_status(self, run_id: str, status: RunStatus, **kw: Any) -> None:
        self._inner.set_status(run_id, status, **kw)
        if status in (RunStatus.SUCCEEDED, RunStatus.PARKED):
            self._tracker.run_ended(run_id, status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ---- the feeder: the ingress's part (new orders, and the webhooks the steps make arrive) ---------------
class Feeder(threading.Thread):
    """Stores deliveries in the inbox, a batch per commit like the ingress's group commit, and wakes the dispatcher."""

    def __init__(self, c: Container, shape: Shape, tracker: Tracker, rate: float | None, outstanding: int) -> None:
        super().__init__(daemon=True, name="floor-feeder")
        self.c, self.shape, self.tracker, self.rate, self.outstanding = c, shape, tracker, rate, outstanding
        self.q: queue.SimpleQueue[list[Delivery] | None] = queue.SimpleQueue()
        self.offering = threading.Event()
        self.offering.set()
        self.halt = threading.Event()
        self.started_orders = 0
        self.commits = 0
        self.errors: Counter[str] = Counter()
        tracker.on_done = lambda: self.q.put(None)

    def emit(self, n: int, kinds: tuple[str, ...]) -> None:
        self.q.put([delivery(n, k) for k in kinds])

    def run(self) -> None:
        engine = self.c.engine
        assert engine is not None
        t0 = time.monotonic() + 0.05
        n = 0
        carry: list[Delivery] = []
        while not self.halt.is_set():
            batch, carry = carry, []
            now = time.monotonic()
            if self.offering.is_set():
                if self.rate:
                    while t0 + n / self.rate <= now:
                        self.tracker.start(n, t0 + n / self.rate)
                        batch += [delivery(n, k) for k in self.shape.first]
                        n += 1
                else:
                    while self.tracker.in_flight < self.outstanding:
                        self.tracker.start(n, now)
                        batch += [delivery(n, k) for k in self.shape.first]
                        n += 1
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self.q.get_nowait()
                    if item:
                        batch += item
            if batch:
                try:
                    self.c.inbox.record_batch(batch)
                except Exception as exc:  # keep them and try again (a busy database)
                    self.errors[type(exc).__name__] += 1
                    carry = batch
                    time.sleep(0.05)
                    continue
                self.tracker.stored(batch, time.monotonic())
                self.commits += 1
                engine.wake_dispatcher()
            wait = 0.05
            if self.rate and self.offering.is_set():
                wait = min(wait, max(0.0005, t0 + n / self.rate - time.monotonic()))
            try:
                item = self.q.get(timeout=wait)
                if item:
                    carry += item
            except queue.Empty:
                pass
        self.started_orders = n


# ---- databases and CPU -------------------------------------------------------------------------------
def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_database(dbkind: str, admin_url: str, workdir: Path) -> Iterator[tuple[str, str | None]]:
    """(SQLAlchemy URL, PostgreSQL database name or None); a fresh database, dropped afterwards."""
    if dbkind == "sqlite":
        yield f"sqlite:///{workdir / 'bridge.sqlite'}", None
        return
    name = f"cbfloor_{uuid.uuid4().hex[:12]}"  # as tests/support/databases.py makes them
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1), name
    finally:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PgBackends:
    """CPU seconds so far of every PostgreSQL backend connected to one database (a server on this machine).

    It keeps its own connection, opened before the engine's pools fill the server's ``max_connections``.
    """

    def __init__(self, admin_url: str, dbname: str | None) -> None:
        self.dbname = dbname
        self.conn = psycopg.connect(_libpq(admin_url), autocommit=True) if dbname else None

    def cpu(self) -> dict[int, float]:
        if self.conn is None:
            return {}
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,))
        out = {}
        for (pid,) in rows:
            cpu = pid_cpu_s(pid)
            if cpu is not None:
                out[pid] = cpu
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def wait_for_pg_room(admin_url: str, free: int, timeout_s: float) -> int:
    """Wait until the server has ``free`` connections to spare (other helpers' tests share it); answer those in use."""
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('max_connections')::int, count(*) FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend'").fetchone()
        assert row is not None
        limit, used = row
        if limit - used >= free or time.monotonic() > deadline:
            return int(used)
        if not said:
            print(f"  waiting for PostgreSQL: {used} of {limit} connections in use, {free} needed", flush=True)
            said = True
        time.sleep(5)


@dataclass
class Snapshot:
    t: float
    cpu: float
    user: float
    system: float
    busy: float
    steal: float
    pg: dict[int, float]

    @classmethod
    def take(cls, pg: PgBackends) -> Snapshot:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.monotonic(), time.process_time(), ru.ru_utime, ru.ru_stime, machine_busy_s(),
                   machine_steal_s(), pg.cpu())


def engine_counts(c: Container, url: str) -> dict[str, Any]:
    """Runs per workflow (our table) and DBOS's workflows and step checkpoints, read after the phase."""
    with c.db.connect() as conn:
        by_wf = {w: n for w, n in conn.execute(select(runs_table.c.workflow, func.count()).group_by(runs_table.c.workflow))}
    schema = "dbos." if url.startswith("postgresql") else ""
    eng = create_engine(c.settings.effective_engine_database_url())
    try:
        with eng.connect() as conn:
            wfs = conn.execute(text(f"SELECT count(*) FROM {schema}workflow_status")).scalar_one()
            steps = conn.execute(text(f"SELECT count(*) FROM {schema}operation_outputs")).scalar_one()
    finally:
        eng.dispose()
    return {"runs_by_workflow": by_wf, "dbos_workflows": wfs, "dbos_steps": steps}


# ---- one phase -------------------------------------------------------------------------------------------
def phase(dbkind: str, shape: Shape, load: str, a: argparse.Namespace) -> dict[str, Any]:
    rate = None if load == "max" else float(load)
    tracker = Tracker(shape)
    pg_in_use = wait_for_pg_room(a.database_url, a.pg_free, a.pg_wait) if dbkind == "postgres" else None
    with contextlib.ExitStack() as es:
        workdir = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="cb-floor-")))
        url, dbname = es.enter_context(fresh_database(dbkind, a.database_url, workdir))
        pg = PgBackends(a.database_url, dbname)
        es.callback(pg.close)
        configure_logging(a.log_level, json=True, stream=es.enter_context((workdir / "bridge.log").open("w")))
        overrides: dict[str, Any] = {"database_url": url, "worker_id": "engine-floor", "rate_limits": {}}
        overrides["audit_runs"] = shape.audit
        if a.worker_concurrency:
            overrides["worker_concurrency"] = a.worker_concurrency
        settings = load_settings(**overrides)
        feeder_box: list[Feeder] = []

        def action_for(output: Mapping[str, Any], emits: tuple[str, ...]) -> Callable[[StepContext, Any], Any]:
            def act(ctx: StepContext, params: Mapping[str, Any]) -> Any:
                if emits:
                    feeder_box[0].emit(order_of(ctx.event_id), emits)
                return output
            return act

        actions = {name: action_for(out, emits) for name, (out, emits) in ACTIONS.items()}
        c = bootstrap(settings, "worker", extra_workflows=list(shape.workflows), extra_actions=actions, migrate=True)
        es.callback(c.close)
        assert c.engine is not None
        active = sorted(w.name for w in c.router.all())
        expected = sorted([w.name for w in shape.workflows] + (["core.audit"] if shape.audit else []))
        if active != expected:
            raise RuntimeError(f"unexpected active workflows {active} (wanted {expected})")
        pure = {"core.validate.order", "core.identity.lookup"} & {s.uses for w in shape.workflows for s in w.steps}
        if not pure <= c.engine.config.unrecorded_steps:
            raise RuntimeError(f"the catalogue no longer declares {sorted(pure - c.engine.config.unrecorded_steps)} "
                               "inline: the shape's checkpoint count is wrong")
        c.engine.runs = TimedRuns(c.engine.runs, tracker)
        c.engine.launch()
        es.callback(c.engine.shutdown)
        feeder = Feeder(c, shape, tracker, rate, a.outstanding)
        feeder_box.append(feeder)
        feeder.start()
        time.sleep(a.warmup)
        s0 = Snapshot.take(pg)
        time.sleep(a.duration)
        s1 = Snapshot.take(pg)
        feeder.offering.clear()
        deadline = time.monotonic() + a.drain
        while tracker.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        t_drained = time.monotonic()
        feeder.halt.set()
        feeder.q.put(None)
        feeder.join(10)
        counts = engine_counts(c, url)
        counts["pg_connections_in_use_before"] = pg_in_use
        counts["log_levels"] = log_levels(workdir / "bridge.log")
    return summarize(dbkind, shape, load, a, tracker, feeder, s0, s1, t_drained, counts)


def log_levels(path: Path) -> dict[str, int]:
    """Lines per level in the engine's JSON log (warnings or errors mean the figures need a look)."""
    levels: Counter[str] = Counter()
    with path.open() as f:
        for line in f:
            with contextlib.suppress(ValueError):
                levels[str(json.loads(line).get("level", "?"))] += 1
    return dict(levels)


def summarize(dbkind: str, shape: Shape, load: str, a: argparse.Namespace, tracker: Tracker, feeder: Feeder,
              s0: Snapshot, s1: Snapshot, t_drained: float, counts: dict[str, Any]) -> dict[str, Any]:
    window = s1.t - s0.t
    orders = tracker.orders.values()
    done_in = [o for o in orders if s0.t <= o.done <= s1.t]
    paid_in = [o for o in orders if s0.t <= o.paid <= s1.t]
    started_in = [o for o in orders if s0.t <= o.t0 <= s1.t]
    lat_paid = [o.paid - o.t0 for o in started_in if not math.isnan(o.paid)]
    lat_done = [o.done - o.t0 for o in started_in if not math.isnan(o.done)]
    runs_in = [r for r in tracker.run_latency if s0.t <= r[2] <= s1.t]
    n_done = max(1, len(done_in))
    cpu = s1.cpu - s0.cpu
    pg = sum(v - s0.pg.get(pid, 0.0) for pid, v in s1.pg.items()) if s1.pg else None
    all_done = [o for o in orders if not math.isnan(o.done)]
    by_wf: dict[str, list[float]] = {}
    for wf, secs, _ in runs_in:
        by_wf.setdefault(wf, []).append(secs)
    return {
        "db": dbkind, "shape": shape.name, "load": load, "outstanding": a.outstanding if load == "max" else None,
        "worker_concurrency": a.worker_concurrency or 16, "window_s": window,
        "deliveries_per_order": shape.deliveries, "runs_per_order": shape.runs, "steps_per_order": shape.steps,
        "orders_started": feeder.started_orders, "orders_done": len(all_done),
        "orders_not_done_after_drain": feeder.started_orders - len(all_done), "drain_s": t_drained - s1.t,
        "parked_runs": tracker.parked, "feeder_commits": feeder.commits, "feeder_errors": dict(feeder.errors),
        "completed_orders_per_s": len(done_in) / window, "paid_orders_per_s": len(paid_in) / window,
        "runs_per_s": len(runs_in) / window, "steps_per_s": len(done_in) * shape.steps / window,
        "latency_paid_p50_s": pct(lat_paid, 50), "latency_paid_p99_s": pct(lat_paid, 99),
        "latency_done_p50_s": pct(lat_done, 50), "latency_done_p99_s": pct(lat_done, 99),
        "latency_orders": len(lat_paid), "latency_orders_missing": len(started_in) - len(lat_done),
        "run_latency_p50_s": pct([r[1] for r in runs_in], 50), "run_latency_p99_s": pct([r[1] for r in runs_in], 99),
        "run_latency_by_workflow": {wf: {"runs": len(v), "p50_s": pct(v, 50), "p99_s": pct(v, 99)}
                                    for wf, v in sorted(by_wf.items())},
        "process_cpu_s": cpu, "process_user_s": s1.user - s0.user, "process_system_s": s1.system - s0.system,
        "process_cpu_cores": cpu / window, "process_cpu_ms_per_order": 1000 * cpu / n_done,
        "pg_backends_cpu_s": pg, "pg_backends_at_end": len(s1.pg) if s1.pg else None, "pg_backends_cpu_ms_per_order": None if pg is None else 1000 * pg / n_done,
        "engine_cpu_ms_per_order": 1000 * (cpu + (pg or 0.0)) / n_done,
        "machine_busy_cores": (s1.busy - s0.busy) / window, "machine_steal_cores": (s1.steal - s0.steal) / window,
        "machine_cpu_ms_per_order": 1000 * (s1.busy - s0.busy) / n_done,
        **counts,
        "dbos_steps_per_done_order": counts["dbos_steps"] / max(1, len(all_done)),
        "dbos_workflows_per_done_order": counts["dbos_workflows"] / max(1, len(all_done)),
        # what the engine recorded is the shape's count (None: some orders never finished, so no exact count)
        "shape_as_recorded": None if len(all_done) != feeder.started_orders else (
            counts["dbos_steps"] == shape.steps * len(all_done)
            and counts["dbos_workflows"] == shape.runs * len(all_done)),
    }


# ---- output --------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def with_ratios(results: list[dict[str, Any]]) -> None:
    """Each result's completed orders/s over the baseline's (same db, same repetition, load max)."""
    for r in results:
        base = next((b for b in results if b["shape"] == "baseline" and b["load"] == "max" and b["db"] == r["db"]
                     and b["rep"] == r["rep"]), None)
        r["baseline_per_s"] = base["completed_orders_per_s"] if base else None
        r["ratio_to_baseline"] = (r["completed_orders_per_s"] / base["completed_orders_per_s"]
                                  if base and base["completed_orders_per_s"] else None)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| db | rep | shape (runs, steps per order) | load | completed orders/s | ratio to baseline "
            "| p50 paid ms | p99 paid ms | not done | process CPU (cores) | process CPU ms/order "
            "| PostgreSQL backends ms/order | engine CPU ms/order | machine CPU (cores) | steal (cores) |")
    lines = [head, "|" + "---|" * 15]
    for r in results:
        ratio = r.get("ratio_to_baseline")
        pgms = r["pg_backends_cpu_ms_per_order"]
        lines.append(
            f"| {r['db']} | {r['rep']} | {r['shape']} ({r['runs_per_order']}, {r['steps_per_order']}) "
            f"| {r['load'] if r['load'] == 'max' else r['load'] + '/s'} "
            f"| {r['completed_orders_per_s']:.1f} | {'-' if ratio is None else f'{ratio:.3f}'} "
            f"| {_ms(r['latency_paid_p50_s'])} | {_ms(r['latency_paid_p99_s'])} | {r['orders_not_done_after_drain']} "
            f"| {r['process_cpu_cores']:.2f} | {r['process_cpu_ms_per_order']:.1f} "
            f"| {'-' if pgms is None else f'{pgms:.1f}'} | {r['engine_cpu_ms_per_order']:.1f} "
            f"| {r['machine_busy_cores']:.2f} | {r['machine_steal_cores']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--database-url", default=os.environ.get("CB_TEST_DATABASE_URL") or DEFAULT_PG,
                   help="PostgreSQL server (a database there to connect to; each phase creates its own)")
    p.add_argument("--shapes", default="baseline,order,order+audit", help="comma separated: " + ",".join(SHAPES))
    p.add_argument("--loads", default="max",
                   help="comma separated: max (keep --outstanding orders in flight) or offered orders/s")
    p.add_argument("--outstanding", type=int, default=32, help="orders in flight with load max")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the measurement")
    p.add_argument("--drain", type=float, default=30.0, help="max seconds to wait for the last orders")
    p.add_argument("--reps", type=int, default=1, help="repetitions (interleaved: every phase once, then again)")
    p.add_argument("--worker-concurrency", type=int, default=0, help="CB_WORKER_CONCURRENCY (default: the setting's 16)")
    p.add_argument("--pg-free", type=int, default=45,
                   help="wait until the PostgreSQL server has this many free connections before a phase")
    p.add_argument("--pg-wait", type=float, default=600.0, help="... but at most this many seconds")
    p.add_argument("--log-level", default="INFO", help="the engine's log level (to a file, as JSON)")
    p.add_argument("--markdown", action="store_true", help="print the results as a Markdown table")
    a = p.parse_args()
    shapes = [SHAPES[s] for s in a.shapes.split(",") if s]
    loads = [x.strip() for x in a.loads.split(",") if x.strip()]
    dbs = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    if "baseline" not in [s.name for s in shapes]:
        print("note: no baseline shape, so no ratio")
    started = datetime.now(UTC)
    out = ROOT / "bench" / "results" / f"engine-floor-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    info = machine()
    results: list[dict[str, Any]] = []
    for rep in range(1, a.reps + 1):
        for dbkind in dbs:
            for shape in shapes:
                for load in (["max"] if shape.name == "baseline" else loads):
                    print(f"rep {rep}, {dbkind}, {shape.name}, load {load} ...", flush=True)
                    r = phase(dbkind, shape, load, a)
                    r["rep"] = rep
                    results.append(r)
                    with_ratios(results)
                    print(table([r]).splitlines()[-1], flush=True)
                    if r["shape_as_recorded"] is False:
                        print(f"  warning: DBOS recorded {r['dbos_steps_per_done_order']:.2f} steps and "
                              f"{r['dbos_workflows_per_done_order']:.2f} workflows per order, the shape says "
                              f"{shape.steps} and {shape.runs}", flush=True)
                    args = {k: v for k, v in vars(a).items() if k != "database_url"}
                    out.write_text(json.dumps({"started": started.isoformat(), "args": args, "machine": info,
                                               "results": results}, indent=1, default=str))
    if a.markdown:
        print()
        print(table(results))
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
