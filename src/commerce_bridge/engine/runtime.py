"""The durable-execution adapter: workflow runs on DBOS Transact, behind a small interface.

This module keeps the engine's life cycle on DBOS (registration, launch and restart, the queue
``cb-runs`` and its pacing, the pinned application version), its lease and takeover loop (the fence
itself is ``engine.fence``), and the hand-over from the dispatcher (``engine.dispatch``): a delivery's
business runs are started directly (``DBOS.start_workflow``, at most ``worker_concurrency`` at once),
background runs, timers' wake-ups, takeovers and replays go through the queue. One DBOS workflow,
``cb.run``, walks a run; how is ``engine.interpreter`` (steps, retries, waits, parking). Replay and
recovery from any process are ``engine.admin``.

A run is pinned to its workflow's ``(name, version)`` and to the sha256 of the file text it was
planned with. DBOS replays recorded step results by position, so a run resumed on different steps
could hand one step's output to another: a run whose text is no longer loaded parks before walking.

Only this package imports ``dbos``.
"""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from dbos import DBOS, DBOSClient, SetEnqueueOptions, SetWorkflowID

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import (
    RunStatus,
    StoredDelivery,
)
from commerce_bridge.engine.breaker import BreakerRegistry
from commerce_bridge.engine.dispatch import Dispatcher, WorkflowRouter
from commerce_bridge.engine.fence import Fence, Fenced
from commerce_bridge.engine.interpreter import RunInterpreter
from commerce_bridge.engine.limits import CallLimiter
from commerce_bridge.engine.retry import RetryPolicies
from commerce_bridge.logsetup import adopt_foreign_loggers
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import (
    DeadLetters,
    Inbox,
    RateLimiter,
    Runs,
    Timers,
    WorkerLeases,
)
from commerce_bridge.workflows.spec import (
    Action,
)

_T = TypeVar("_T")
log = structlog.get_logger("commerce_bridge.engine")

APP_NAME = "commerce-bridge"
ENGINE_VERSION = "cb-engine-3"  # pinned: workers dequeue and recover only their own version
# cb-engine-3: inline (pure) steps are not DBOS steps, so recorded step positions differ from cb-engine-2
QUEUE = "cb-runs"
BACKGROUND_PRIORITY = 100
"""DBOS queue priority of bookkeeping runs (lower numbers start first; business runs have the default 0)."""
WORKFLOW_NAME = "cb.run"





_current: Engine | None = None  # DBOS is a per-process singleton; so is the engine it calls back into.


@dataclass
class EngineConfig:
    """Engine settings (from :class:`commerce_bridge.config.Settings`)."""

    system_database_url: str
    executor_id: str
    worker_concurrency: int = 16
    polling_interval_s: float = 0.1
    # Idle (no run for idle_after_s): the engine's queue is polled every idle_polling_interval_s instead, and
    # a dispatcher that ingress wakes in-process (serve) polls the inbox that often too. The first run after
    # an idle spell may wait up to that long to start; a busy engine polls at the fast intervals.
    idle_polling_interval_s: float = 5.0
    idle_after_s: float = 10.0
    woken_by_ingress: bool = False
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    rate_limit_margin: float = 0.10
    lease_s: float = 10.0
    heartbeat_interval_s: float = 2.0
    takeover_grace_s: float = 5.0
    dispatch_interval_s: float = 0.2
    dispatch_batch: int = 200
    long_wait_s: float = 30.0  # longer waits free the worker thread: the run ends and a timer forks it back
    # destinations whose connectors take a limiter slot per HTTP request themselves (a step may make several)
    self_limited: frozenset[str] = frozenset()
    # step types run without a checkpoint (catalogue ``inline``: pure and local, recomputed on replay;
    # ``replay_safe``: idempotent by key, run again on replay)
    unrecorded_steps: frozenset[str] = frozenset()
    # The dispatcher starts a delivery's runs itself (DBOS.start_workflow), at most worker_concurrency at
    # once, instead of putting them on the engine's queue for its poller to claim: no queue poll per run.
    direct_start: bool = True


class Engine(RunInterpreter):
    """Runs workflows durably: enqueue, execute, retry, park, replay, recover."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        router: WorkflowRouter,
        actions: Mapping[str, Action],
        inbox: Inbox,
        runs: Runs,
        dead_letters: DeadLetters,
        leases: WorkerLeases,
        limiter: RateLimiter,
        breakers: BreakerRegistry,
        retry_policies: RetryPolicies,
        metrics: Metrics,
        alert: Callable[[Alert], object],
        workflow_vars: Mapping[str, Mapping[str, Any]] | None = None,
        timers: Timers | None = None,
    ) -> None:
        self.config = config
        self.timers = timers
        self.call_limiter = CallLimiter(limiter, config.rate_limits, config.rate_limit_margin, metrics)
        self.workflow_vars = {k: dict(v) for k, v in (workflow_vars or {}).items()}
        self.router = router
        self.actions = dict(actions)
        self.inbox = inbox
        self.runs = runs
        self.dead_letters = dead_letters
        self.leases = leases
        self.limiter = limiter
        self.breakers = breakers
        self.retry_policies = retry_policies
        self.metrics = metrics
        self.alert = alert
        self._rng = random.Random()
        self._launched = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._epoch = 0
        self.fence = Fence()  # past the lease, no side effect begins; see engine.fence
        self._closing = threading.Event()  # set by shutdown: a restart after a fence must not begin
        self._with_dispatcher = True
        self.restarts = 0
        self.dispatcher = Dispatcher(
            inbox=inbox, runs=runs, dead_letters=dead_letters, router=router, metrics=metrics, alert=alert,
            enqueue=self.enqueue, batch=config.dispatch_batch, may_start=self._may_start,
            before_start=self._before_start, capacity=self._capacity,
        )
        self._active = 0  # runs executing in this process now
        self._active_lock = threading.Lock()
        self._polling_fast = True
        self._last_busy = time.monotonic()
        self._last_queue_use = time.monotonic()  # something went on the engine's queue from this process
        self._started = 0  # runs this process's dispatcher started directly that have not finished
        self._started_lock = threading.Lock()
        self._starved = False  # the dispatcher's last pass found no free slot
        self._last_dispatch_pass: float | None = None  # monotonic; None: no dispatcher has run in this process
        self._last_heartbeat = time.monotonic()

    # ---- life cycle ------------------------------------------------------------------------------
    def launch(self, *, dispatcher: bool = True) -> None:
        """Take this worker's lease, start DBOS (which recovers our own unfinished runs), then loops."""
        global _current
        if _current is not None and _current is not self:
            raise RuntimeError("another Engine is already running in this process")
        self._with_dispatcher = dispatcher
        self._register_lease()
        _current = self
        _register_dbos_functions()
        use_wal(self.config.system_database_url)
        config: Any = {  # DBOSConfig does not declare the SQLAlchemy engine kwargs DBOS passes on
            "name": APP_NAME,
            "system_database_url": self.config.system_database_url,
            "executor_id": self.config.executor_id,
            "application_version": ENGINE_VERSION,
            "log_level": "WARNING",
            "sys_db_pool_size": max(10, self.config.worker_concurrency + 4),
            **_engine_kwargs(self.config.system_database_url),
        }
        DBOS(config=config)
        adopt_foreign_loggers()  # DBOS may have configured its logger: its lines go through ours
        _pace_dbos_housekeeping(self.config.idle_polling_interval_s)
        DBOS.launch()
        self._queue = DBOS.register_queue(
            QUEUE, worker_concurrency=self.config.worker_concurrency,
            polling_interval_sec=self.config.polling_interval_s, on_conflict="always_update",
        )
        self._polling_fast = True
        self._last_busy = self._last_queue_use = time.monotonic()
        self._launched = True
        self._start_thread("heartbeat", self._heartbeat_loop)
        if dispatcher:
            self._last_dispatch_pass = time.monotonic()  # a fresh dispatcher gets its first pass's time
            self._start_thread("dispatcher", self._dispatch_loop)
        log.info("engine.launched", executor_id=self.config.executor_id, epoch=self._epoch)

    def shutdown(self, timeout_s: int = 10) -> None:
        global _current
        self._closing.set()
        self._stop_loops(timeout_s)
        try:
            self._stop_dbos(timeout_s)
        finally:
            _current = None
            try:
                self.leases.stop(self.config.executor_id, self._epoch)
            except E.BridgeError:
                log.warning("engine.lease_release_failed", executor_id=self.config.executor_id)

    def _stop_loops(self, timeout_s: float) -> None:
        self._stop.set()
        self._wake.set()
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _stop_dbos(self, timeout_s: int) -> None:
        global _registered
        try:
            if self._launched:
                DBOS.destroy(workflow_completion_timeout_sec=timeout_s, destroy_registry=True)
        finally:
            self._launched = False
            _registered = False

    def _guard(self, doing: str) -> None:
        """Raise :class:`Fenced` (unrecorded by DBOS) unless side effects may begin; a fenced run leaves
        its run PENDING, so the first one to find the lease gone trips the fence, which restarts the
        engine and so recovers every such run."""
        if self.fence.ok():
            return
        reason = self.fence.reason()
        if not self.fence.stale_run():
            self._fenced(reason)
        log.warning("engine.run_fenced", doing=doing, reason=reason)
        raise Fenced(f"{doing} not started: {reason}")

    def _fenced(self, reason: str) -> None:
        """The lease is lost or may have run out: fence every run, then restart the engine in-process."""
        if not self.fence.trip(reason):
            return
        log.critical("engine.fenced", executor_id=self.config.executor_id, reason=reason)
        self.metrics.engine_fenced.inc()
        self.alert(Alert(kind="worker.fenced", severity=Severity.CRITICAL,
                         title=f"Worker {self.config.executor_id} stopped its runs: {reason}; restarting its engine",
                         details={"executor_id": self.config.executor_id, "reason": reason},
                         key=self.config.executor_id))
        threading.Thread(target=self._restart_after_fence, name="cb-engine-restart", daemon=True).start()

    def _restart_after_fence(self) -> None:
        """Stop DBOS and our loops, wait for the store, take a new lease and launch again (same process).

        Runs in flight when the fence tripped stop at their next step unrecorded (PENDING under this
        executor id); the new DBOS recovers them at launch, unless a survivor took them over meanwhile.
        """
        self._stop_loops(5.0)
        try:
            self._stop_dbos(2)
        except Exception:
            log.exception("engine.restart_stop_failed")
        delay = 0.5
        while not self._closing.is_set():
            try:
                self._stop = threading.Event()  # the old loops keep the old (set) one, if they still run
                self.launch(dispatcher=self._with_dispatcher)
            except Exception as exc:
                log.warning("engine.restart_failed", error=type(exc).__name__, retry_in_s=delay)
                try:
                    self._stop_dbos(1)
                except Exception:
                    log.exception("engine.restart_stop_failed")
                self._closing.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.restarts += 1
            self.metrics.engine_restarts.inc()
            log.warning("engine.restarted", executor_id=self.config.executor_id, epoch=self._epoch,
                        generation=self.fence.generation)
            return

    def wake_dispatcher(self) -> None:
        self._wake.set()

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"cb-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    # ---- leases ----------------------------------------------------------------------------------
    def _register_lease(self) -> None:
        deadline = time.monotonic() + max(30.0, self.config.lease_s * 3)
        while True:
            try:
                started = time.monotonic()
                self._epoch = self.leases.register(self.config.executor_id, socket.gethostname(), os.getpid(),
                                                   self.config.lease_s)
                self.fence.reset(started, self.config.lease_s)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def lease_ok(self) -> bool:
        return self.fence.ok()

    def _heartbeat_loop(self) -> None:
        cfg = self.config
        stop = self._stop  # this launch's: a restart gives the next loops a new one
        while not stop.wait(cfg.heartbeat_interval_s):
            started = time.monotonic()
            try:
                if not self.leases.heartbeat(cfg.executor_id, self._epoch, cfg.lease_s):
                    self._fenced("another worker took over this worker's lease")
                    return
                self.fence.renewed(started, cfg.lease_s)
                self._last_heartbeat = started
                self.metrics.worker_heartbeat_age.set(0)
            except E.StoreUnavailable:
                self.metrics.worker_heartbeat_age.set(time.monotonic() - self._last_heartbeat)
                if not self.lease_ok():
                    self._fenced("the lease ran out while the store was unavailable")
                    return
                continue
            try:
                self._take_over_dead_workers()
            except Exception:
                log.exception("engine.takeover_failed")
            if self.timers is not None:
                try:
                    self.wake_due_runs()
                except Exception:
                    log.exception("engine.timers_failed")

    def _take_over_dead_workers(self) -> None:
        for dead in self.leases.expired(self.config.takeover_grace_s):
            if dead == self.config.executor_id:
                continue
            if not self.leases.begin_takeover(dead, self.config.executor_id, grace_s=self.config.takeover_grace_s):
                continue
            n = self._resume_pending_of(dead, via_client=None)
            self.leases.finish_takeover(dead, n)
            log.warning("engine.took_over", dead_executor=dead, runs=n)
            self.alert(Alert(kind="worker.recovered", severity=Severity.WARNING,
                             title=f"Worker {dead} stopped heartbeating; {n} runs resumed by "
                                   f"{self.config.executor_id}",
                             details={"dead_executor": dead, "runs": n}, key=dead))

    def _resume_pending_of(self, executor_id: str, via_client: DBOSClient | None) -> int:
        api: Any = via_client if via_client is not None else DBOS
        pending = api.list_workflows(status="PENDING", executor_id=executor_id, load_input=False,
                                     load_output=False)
        if pending and via_client is None:
            self._note_queue_use()
        for wf in pending:
            api.resume_workflow(wf.workflow_id, queue_name=QUEUE)
        return len(pending)

    # ---- dispatch --------------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        stop = self._stop  # this launch's: a restart gives the next loops a new one
        while not stop.is_set():
            try:
                n = self.dispatch_once()
                self._last_dispatch_pass = time.monotonic()
            except E.StoreUnavailable:
                n = 0
                stop.wait(1.0)
            except Exception:
                log.exception("engine.dispatch_failed")
                n = 0
                stop.wait(1.0)
            if n < self.config.dispatch_batch:
                self._wake.wait(self._pace(n))
                self._wake.clear()

    def backlog(self) -> int:
        """Deliveries received but not dispatched: 0 without a query while the last pass drained the inbox."""
        return 0 if self.dispatcher.drained else self.inbox.backlog()

    def dispatch_once(self) -> int:
        """Turn undispatched deliveries into queued runs (run id ``source:event_id:workflow``); see engine.dispatch."""
        return self.dispatcher.dispatch_once()

    def _may_start(self) -> bool:
        """False while DBOS is stopping or the worker is fenced: a start that fails then is not the delivery's fault."""
        return self._launched and not self.fence.tripped

    def _before_start(self, n: int) -> None:
        if not self.config.direct_start and not self._polling_fast:
            self._pace(n)  # back to fast polling before the runs are queued

    def _capacity(self) -> int:
        """Runs the dispatcher may start now (direct start): free slots of ``worker_concurrency``."""
        if not self.config.direct_start:
            return self.config.dispatch_batch
        with self._started_lock:
            free = self.config.worker_concurrency - self._started
            self._starved = free <= 0
        return max(0, free)

    def _run_done(self, _future: Any) -> None:
        with self._started_lock:
            self._started -= 1
            wake = self._starved
            self._starved = False
        if wake:
            self._wake.set()

    def dispatcher_health(self, stuck_after_s: float) -> tuple[bool, str]:
        """Stuck: a delivery has waited longer than ``stuck_after_s`` and no dispatch pass has completed for as long.

        A dispatcher that completes passes is working through a backlog (the backlog alert watches its
        size); one whose passes keep failing (a poison batch before issue 9) or hang is stuck.
        """
        waited = self.inbox.oldest_waiting_s()
        last = self._last_dispatch_pass
        since_pass = float("inf") if last is None else time.monotonic() - last
        if waited is not None and waited > stuck_after_s and since_pass > stuck_after_s:
            when = "no pass has run" if last is None else f"last completed pass {since_pass:.0f} s ago"
            return False, f"dispatcher stuck: the oldest undispatched delivery has waited {waited:.0f} s ({when})"
        return True, "keeping up" if waited is None else f"oldest undispatched delivery waited {waited:.1f} s"

    def enqueue(self, row: dict[str, Any], delivery: StoredDelivery, *, background: bool = False,
                event: Any = None) -> None:
        """Start the run of ``row`` (direct start), or queue it: a ``background`` one (bookkeeping) is always
        queued, behind the business runs waiting there.

        A direct start records the run (PENDING under this executor) and hands it to DBOS's executor in
        one step; starting an id that exists executes nothing (DBOS returns the existing run). A run
        started here that a crash interrupts is recovered like a queued one (DBOS at launch, or a
        survivor's takeover).
        """
        run = {
            "run_id": row["run_id"], "source": row["source"], "event_id": row["event_id"],
            "event_type": delivery.event_type, "workflow": row["workflow"], "version": row["workflow_version"],
            # the exact text it is planned with (None: defined in code); another text parks the run
            "digest": self.router.digest(row["workflow"], row["workflow_version"]),
            "event": orjson.loads(delivery.body) if event is None else event,
            "vars": self.workflow_vars.get(row["workflow"], {}),  # pinned into the run with its version
        }
        if self.config.direct_start and not background:
            with self._started_lock:
                self._started += 1
            try:
                with SetWorkflowID(row["run_id"]):
                    handle = DBOS.start_workflow(_workflow_function(), run)
            except BaseException:
                self._run_done(None)
                raise
            future = getattr(handle, "future", None)  # none: the run existed, nothing executes here
            if future is None:
                self._run_done(None)
            else:
                future.add_done_callback(self._run_done)
            return
        self._note_queue_use()
        with SetWorkflowID(row["run_id"]), SetEnqueueOptions(priority=BACKGROUND_PRIORITY if background else None):
            self._queue.enqueue(_workflow_function(), run)

    def _note_queue_use(self) -> None:
        """This process put work on the engine's queue: poll it at the fast interval for a while."""
        self._last_queue_use = time.monotonic()
        if not self._polling_fast:
            self._pace(0)

    # ---- pacing ----------------------------------------------------------------------------------
    def _pace(self, dispatched: int) -> float:
        """Fast polling while there is work, slow after ``idle_after_s`` without any; the dispatcher's next wait.

        The engine's queue thread (DBOS) polls its table at ``polling_interval_s`` while busy and at
        ``idle_polling_interval_s`` when idle: that poll was most of an idle process's CPU. With direct
        start the dispatcher's runs never touch the queue, so "busy" means that this process queued
        something (a background run, a timer's wake-up, a takeover) within ``idle_after_s``; runs
        queued by another process (a replay from the CLI) start within the idle interval. The switch is
        one write of the queue's row, made only on a change.
        """
        cfg = self.config
        now = time.monotonic()
        if dispatched or self._active:
            self._last_busy = now
        queue_busy = self._last_queue_use if cfg.direct_start else self._last_busy
        queue_idle = now - queue_busy > cfg.idle_after_s
        if queue_idle == self._polling_fast:
            interval = cfg.idle_polling_interval_s if queue_idle else cfg.polling_interval_s
            try:
                self._queue.set_polling_interval_sec(interval)
                self._polling_fast = not queue_idle
            except Exception as exc:  # the next pass tries again
                log.warning("engine.queue_pace_failed", error=type(exc).__name__)
        idle = now - self._last_busy > cfg.idle_after_s
        if idle and cfg.woken_by_ingress:
            return max(cfg.dispatch_interval_s, cfg.idle_polling_interval_s)
        return cfg.dispatch_interval_s

    def wake_due_runs(self) -> int:
        """Fork every run whose timer is due, right after its wait step."""
        woken = 0
        if self.timers is None:
            return 0
        for timer in self.timers.claim_due(time.time()):
            steps = DBOS.list_workflow_steps(timer["engine_workflow_id"], load_output=False)
            fids = [s["function_id"] for s in steps if s["function_name"] == timer["step_name"]]
            if not fids:
                log.error("engine.timer_lost_step", run_id=timer["run_id"], step=timer["step_name"])
                continue
            self._note_queue_use()
            with SetWorkflowID(f"{timer['run_id']}#wake-{int(timer['wake_at'])}"):
                handle = DBOS.fork_workflow(timer["engine_workflow_id"], max(fids) + 1, queue_name=QUEUE,
                                            application_version=ENGINE_VERSION)
            self.runs.set_status(timer["run_id"], RunStatus.QUEUED, engine_workflow_id=handle.get_workflow_id())
            woken += 1
        return woken


def _engine_kwargs(url: str) -> dict[str, Any]:
    """DBOS's engine settings: on SQLite its connections queue for the file's write lock in this process;
    on PostgreSQL its pool checks a connection at checkout without the round trip of DBOS's default
    ``pool_pre_ping`` (``store.db.CheckedQueuePool``: a ping per transaction, two per checkpointed step)."""
    if url.startswith("sqlite:///"):
        from commerce_bridge.store.db import QueuedImplicitConnection

        return {"db_engine_kwargs": {"connect_args": {"factory": QueuedImplicitConnection}}}
    if url.startswith("postgresql"):
        from commerce_bridge.store.db import CheckedQueuePool

        return {"db_engine_kwargs": {"poolclass": CheckedQueuePool, "pool_pre_ping": False}}
    return {}


def use_wal(url: str) -> None:
    """Put an SQLite engine database in WAL mode before DBOS opens it.

    DBOS leaves SQLite in its default rollback-journal mode, where readers and the writer lock each
    other out and every commit creates and deletes a journal file. With a worker's threads all
    checkpointing at once that made runs queue for seconds. WAL is a property of the file (it
    persists), keeps ``synchronous=FULL`` durability (the log is fsynced at each commit) and lets
    readers go on while one thread writes.
    """
    if not url.startswith("sqlite:///"):
        return
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


# ---- DBOS registration ---------------------------------------------------------------------------
_registered = False


def _pace_dbos_housekeeping(interval_s: float) -> None:
    """Poll DBOS's own tables every ``interval_s`` instead of every second (idle CPU, issue 10).

    DBOS 3.4 runs two loops of its own each second whatever the load: the background jobs (delayed
    workflows and workflow time-outs, neither of which we use) and the internal queue (where DBOS puts
    the runs it recovers at launch and runs resumed without a queue; ours go to ``cb-runs``). Each
    poll is a transaction, about 5-10 ms of CPU on SQLite. Neither has a public setting: these are
    private names of the pinned version, and ``tests/unit/test_engine_dbos_pins.py`` fails if an
    upgrade renames them. Recovered runs start within ``interval_s`` of the launch.
    """
    import dbos._dbos as dbos_main
    import dbos._workflow_commands as workflow_commands

    workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC = max(1.0, interval_s)  # read when its thread starts
    internal = dbos_main._get_or_create_dbos_registry().get_internal_queue()
    internal._polling_interval_sec = max(1.0, interval_s)  # read before every poll


def _register_dbos_functions() -> None:
    global _registered
    if _registered:
        return

    @DBOS.workflow(name=WORKFLOW_NAME)
    def cb_run(run: dict[str, Any]) -> dict[str, Any]:
        if _current is None:
            raise RuntimeError("engine not running")
        return _current.workflow_body(run)

    _functions["run"] = cb_run
    _registered = True


_functions: dict[str, Callable[..., Any]] = {}


def _workflow_function() -> Callable[..., Any]:
    return _functions["run"]
