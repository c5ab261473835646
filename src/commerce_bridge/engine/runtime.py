"""The durable-execution adapter: workflow runs on DBOS Transact, behind a small interface.

One DBOS workflow, ``cb.run``, interprets a :class:`~commerce_bridge.workflows.spec.WorkflowSpec`
step by step. Each attempt of a step is one checkpointed DBOS step; between attempts the run sleeps
durably (our retry policy with full jitter, not DBOS's). A step that fails for good parks the run in
the dead-letter queue; replay forks the DBOS workflow from the failed step's first attempt, so
earlier steps are not repeated and the idempotency key (``run_id:step_id``) stays the same.

A run is pinned to its workflow's ``(name, version)`` and to the sha256 of the file text it was
planned with. DBOS replays recorded step results by position, so a run resumed on different steps
could hand one step's output to another: a run whose text is no longer loaded parks before walking.

Only this package imports ``dbos``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
import structlog
from dbos import DBOS, DBOSClient, SetEnqueueOptions, SetWorkflowID

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import (
    RunStatus,
    StoredDelivery,
)
from commerce_bridge.engine.breaker import BreakerRegistry
from commerce_bridge.engine.dispatch import Dispatcher
from commerce_bridge.engine.fence import Fence, Fenced
from commerce_bridge.engine.limits import CallLimiter
from commerce_bridge.engine.retry import RetryPolicies, decide
from commerce_bridge.logsetup import adopt_foreign_loggers
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import DeadLetters, Inbox, RateLimiter, Runs, Timers, WorkerLeases
from commerce_bridge.workflows.spec import (
    Action,
    FailureDecision,
    StepContext,
    StepSpec,
    Walker,
    WorkflowSpec,
    resolve_params,
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
_ERROR_CLASSES = {cls.code: cls for cls in E.all_error_classes()}
WAIT_STEP = "core.wait.until"
BEFORE_STEPS = "(start)"  # the step id of a DLQ entry for a run that parked before walking any step




def _wait_params(with_: dict[str, Any], scope: dict[str, Any], workflow: str | None = None,
                 step: str | None = None) -> dict[str, Any]:
    """When a ``core.wait.until`` step ends (``delay_s`` from now, or ``at``), checkpointed once."""
    from datetime import datetime

    try:
        params = resolve_params(with_, scope, workflow=workflow, step=step)
    except E.ValidationError as exc:  # a pointer that does not resolve, an expression over its limits: park
        return {"error": exc.message}
    delay, at = params.get("delay_s"), params.get("at")
    if (delay is None) == (at is None):
        return {"error": "core.wait.until needs exactly one of delay_s or at"}
    if delay is not None:
        return {"wake_at": time.time() + max(0.0, float(delay)), "requested_s": float(delay)}
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return {"error": f"core.wait.until `at` is not an ISO-8601 time: {at!r}"}
    if moment.tzinfo is None:
        return {"error": f"core.wait.until `at` needs a UTC offset: {at!r}"}
    return {"wake_at": moment.timestamp(), "requested_s": max(0.0, moment.timestamp() - time.time())}

class WorkflowRouter(Protocol):
    """Which workflows an event starts, and any pinned version by name."""

    def route(self, source: str, event_type: str | None, event: Any = None,
              event_id: str | None = None, *,
              filter_errors: list[tuple[WorkflowSpec, str]] | None = None) -> list[WorkflowSpec]:
        """Workflows to start; a ``filter`` that fails for this event is no match, appended to ``filter_errors``."""
        ...

    def get(self, name: str, version: str, digest: str | None = None) -> WorkflowSpec | None:
        """A loaded version; with ``digest``, only the version loaded from exactly that text."""
        ...

    def digest(self, name: str, version: str) -> str | None:
        """The sha256 of the text ``(name, version)`` was loaded from (None: defined in code)."""
        ...

    def all(self) -> list[WorkflowSpec]:
        """The active version of every (enabled) workflow."""
        ...


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
    idle_polling_interval_s: float = 1.0
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
    # step types that are pure and local (catalogue ``inline``): run without a checkpoint, recomputed on replay
    inline_steps: frozenset[str] = frozenset()


def error_from_result(res: Mapping[str, Any]) -> BaseException:
    """Rebuild the error a step attempt recorded (so the retry policy can judge it)."""
    if res.get("bug"):
        return RuntimeError(res.get("message", "bug"))
    cls = _ERROR_CLASSES.get(res.get("code", ""), E.BridgeError)
    kwargs: dict[str, Any] = {"details": dict(res.get("details") or {})}
    if issubclass(cls, E.RateLimited):
        kwargs["retry_after"] = res.get("retry_after")
    return cls(res.get("message"), **kwargs)


class Engine:
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
            before_start=self._before_start,
        )
        self._active = 0  # runs executing in this process now
        self._active_lock = threading.Lock()
        self._polling_fast = True
        self._last_busy = time.monotonic()
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
            **_sqlite_engine_kwargs(self.config.system_database_url),
        }
        DBOS(config=config)
        adopt_foreign_loggers()  # DBOS may have configured its logger: its lines go through ours
        DBOS.launch()
        self._queue = DBOS.register_queue(
            QUEUE, worker_concurrency=self.config.worker_concurrency,
            polling_interval_sec=self.config.polling_interval_s, on_conflict="always_update",
        )
        self._polling_fast = True
        self._last_busy = time.monotonic()
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
            try:
                backlog = self.inbox.backlog()
                self.metrics.inbox_backlog.set(backlog)
            except E.BridgeError:
                pass
            if n < self.config.dispatch_batch:
                self._wake.wait(self._pace(n))
                self._wake.clear()

    def dispatch_once(self) -> int:
        """Turn undispatched deliveries into queued runs (run id ``source:event_id:workflow``); see engine.dispatch."""
        return self.dispatcher.dispatch_once()

    def _may_start(self) -> bool:
        """False while DBOS is stopping or the worker is fenced: a start that fails then is not the delivery's fault."""
        return self._launched and not self.fence.tripped

    def _before_start(self, n: int) -> None:
        if not self._polling_fast:
            self._pace(n)  # back to fast polling before the runs are queued

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
        """Queue the run of ``row``; a ``background`` one (bookkeeping) starts after the business runs waiting."""
        run = {
            "run_id": row["run_id"], "source": row["source"], "event_id": row["event_id"],
            "event_type": delivery.event_type, "workflow": row["workflow"], "version": row["workflow_version"],
            # the exact text it is planned with (None: defined in code); another text parks the run
            "digest": self.router.digest(row["workflow"], row["workflow_version"]),
            "event": orjson.loads(delivery.body) if event is None else event,
            "vars": self.workflow_vars.get(row["workflow"], {}),  # pinned into the run with its version
        }
        with SetWorkflowID(row["run_id"]), SetEnqueueOptions(priority=BACKGROUND_PRIORITY if background else None):
            self._queue.enqueue(_workflow_function(), run)

    # ---- executing one run -----------------------------------------------------------------------
    def workflow_body(self, run: dict[str, Any]) -> dict[str, Any]:
        """The durable program of one run (called by DBOS), in this engine generation (see engine.fence)."""
        self.fence.enter_run()
        with self._active_lock:
            self._active += 1
        try:
            return self._walk(run)
        finally:
            with self._active_lock:
                self._active -= 1
                self._last_busy = time.monotonic()
            self.fence.leave_run()

    def _pace(self, dispatched: int) -> float:
        """Fast polling while there is work, slow after ``idle_after_s`` without any; the dispatcher's next wait.

        The engine's queue thread (DBOS) polls its table at ``polling_interval_s`` while busy and at
        ``idle_polling_interval_s`` when idle: that poll was most of an idle process's CPU. The switch is
        one write of the queue's row, made only on a change.
        """
        cfg = self.config
        now = time.monotonic()
        if dispatched or self._active:
            self._last_busy = now
        idle = now - self._last_busy > cfg.idle_after_s
        if idle == self._polling_fast:
            interval = cfg.idle_polling_interval_s if idle else cfg.polling_interval_s
            try:
                self._queue.set_polling_interval_sec(interval)
                self._polling_fast = not idle
            except Exception as exc:  # the next pass tries again
                log.warning("engine.queue_pace_failed", error=type(exc).__name__)
        if idle and cfg.woken_by_ingress:
            return max(cfg.dispatch_interval_s, cfg.idle_polling_interval_s)
        return cfg.dispatch_interval_s

    def _walk(self, run: dict[str, Any]) -> dict[str, Any]:
        """The durable program of one run (deterministic given its step results).

        The pinned workflow version is walked step by step (``when``, ``retry``, ``on_error`` as
        :class:`~commerce_bridge.workflows.spec.Walker` defines them); each attempt is a checkpointed
        DBOS step and the waits between attempts are durable sleeps. A run that carries a ``digest``
        walks only the text with that sha256; when that text is not loaded (the file was edited in
        place under the same version) it parks before walking, as it does when its version is gone.
        """
        spec = self.router.get(run["workflow"], run["version"], run.get("digest"))
        wf_id = DBOS.workflow_id or run["run_id"]
        self._mark(run["run_id"], RunStatus.RUNNING.value, wf_id)
        if spec is None:
            res = self._unpinned(run)
            # Not a DBOS step: a resumed or forked run has its recorded steps at the first positions and
            # DBOS refuses a step of another name there. Parking again after a crash is harmless: a run
            # has one open DLQ entry, and a plain replay resumes after the recorded steps.
            self._park(run, BEFORE_STEPS, "(workflow)", 0, res, wf_id)
            return {"status": "parked", "step": BEFORE_STEPS, "code": res["code"]}
        if run.get("vars"):
            spec = dataclasses.replace(spec, vars={**spec.vars, **run["vars"]})
        walker = Walker.start(spec, run["event"], source=run["source"], event_type=run.get("event_type"),
                              event_id=run["event_id"])
        while (step := walker.next_step()) is not None:
            try:
                runs_now = walker.should_run(step)
            except E.ValidationError as exc:
                res = {"ok": False, "code": exc.code, "transient": False, "message": f"when: {exc.message}",
                       "suggested_fix": exc.suggested_fix or "fix the step's `when` expression, then replay"}
                DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, 0, res, wf_id)
                return {"status": "parked", "step": step.id, "code": exc.code}
            if not runs_now:
                walker.skip(step)
                continue
            if step.uses == WAIT_STEP:
                waited = self._durable_wait(run, step, walker.scope, wf_id)
                if waited.get("status") == "waiting":
                    return waited
                if waited.get("error"):
                    res = {"ok": False, "code": "validation_error", "transient": False, "message": waited["error"],
                           "input": dict(step.with_)}
                    DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, 1, res, wf_id)
                    return {"status": "parked", "step": step.id, "code": "validation_error"}
                walker.succeeded(step, waited)
                continue
            base = self.retry_policies.for_step(step.uses)
            policy = base.merged(step.retry) if step.retry else base
            # A pure, local step (declared ``inline`` in the catalogue) is not checkpointed: it is computed
            # again on replay, and its retries sleep without a record, so it leaves no trace in DBOS.
            inline = step.uses in self.config.inline_steps
            attempt = 0
            while True:
                attempt += 1
                if inline:
                    res = self._attempt(run, step.id, step.uses, dict(step.with_), walker.scope, attempt)
                else:
                    res = DBOS.run_step({"name": f"step:{step.id}"}, self._attempt, run, step.id, step.uses,
                                        dict(step.with_), walker.scope, attempt)
                if res["ok"]:
                    walker.succeeded(step, res.get("output"))
                    break
                decision = decide(policy, attempt, error_from_result(res), self._rng)
                if decision.retry:
                    self.metrics.retries.labels(step.uses, res.get("code", "")).inc()
                    if inline:
                        time.sleep(decision.delay_s)
                    else:
                        DBOS.sleep(decision.delay_s)
                    continue
                if walker.failed(step, res) is FailureDecision.PARK:
                    DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, attempt, res, wf_id)
                    return {"status": "parked", "step": step.id, "code": res.get("code"), **walker.state()}
                break
        self._mark(run["run_id"], RunStatus.SUCCEEDED.value, wf_id)
        self.metrics.runs_finished.labels(run["workflow"], walker.outcome).inc()
        return {"status": "succeeded", **walker.state()}

    def _unpinned(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """Why a run's pinned workflow text cannot be walked: a failed-step result for :meth:`_park`."""
        name, version, digest = run["workflow"], run["version"], run.get("digest")
        if digest is None or self.router.get(name, version) is None:
            return {"ok": False, "code": "validation_error", "transient": False,
                    "message": f"workflow {name} version {version} is not installed",
                    "suggested_fix": "restore the workflow file of that version, then replay; or "
                                     "`commerce-bridge dlq replay --from-start <id>` to run it again on the "
                                     "active version"}
        now = self.router.digest(name, version)
        return {"ok": False, "code": "validation_error", "transient": False,
                "message": f"workflow {name} version {version} changed since this run started "
                           f"(file {digest[:8]}, now {now[:8] if now else 'defined in code'})",
                "suggested_fix": f"restore the file this run started with (sha256 {digest[:8]}...), then replay; "
                                 "or `commerce-bridge dlq replay --from-start <id>` to run it again on the "
                                 "current text. Bump `version` when you change a workflow's steps."}

    def _durable_wait(self, run: dict[str, Any], step: StepSpec, scope: dict[str, Any],
                      wf_id: str) -> dict[str, Any]:
        """``core.wait.until``: wait until a checkpointed wake-up time.

        A short wait is a durable sleep. A long one (dunning: days) must not hold a worker thread:
        the run records a timer and ends as ``waiting``; when the timer is due, the engine forks the
        run right after this step (earlier steps are not repeated) and it carries on.
        """
        params = DBOS.run_step({"name": f"wait:{step.id}"}, _wait_params, dict(step.with_), scope,
                               run["workflow"], step.id)
        if "error" in params:
            return {"error": params["error"]}
        remaining = float(params["wake_at"]) - time.time()
        if remaining > self.config.long_wait_s:
            DBOS.run_step({"name": "cb.sleep_until"}, self._schedule_wake, run["run_id"], wf_id,
                          f"wait:{step.id}", float(params["wake_at"]))
            return {"status": "waiting", "step": step.id, "wake_at": params["wake_at"]}
        if remaining > 0:
            DBOS.sleep(remaining)
        return {"waited_s": params.get("requested_s", 0.0)}

    def _schedule_wake(self, run_id: str, wf_id: str, step_name: str, wake_at: float) -> None:
        if self.timers is None:
            raise E.ConfigurationError("a long durable wait needs the engine's timer store (Engine(timers=...))")
        self._until_stored("timer", self.timers.add, run_id, wf_id, step_name, wake_at)
        self._until_stored("run status", self.runs.set_status, run_id, RunStatus.WAITING, engine_workflow_id=wf_id)

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
            with SetWorkflowID(f"{timer['run_id']}#wake-{int(timer['wake_at'])}"):
                handle = DBOS.fork_workflow(timer["engine_workflow_id"], max(fids) + 1, queue_name=QUEUE,
                                            application_version=ENGINE_VERSION)
            self.runs.set_status(timer["run_id"], RunStatus.QUEUED, engine_workflow_id=handle.get_workflow_id())
            woken += 1
        return woken

    def _mark(self, run_id: str, status: str, wf_id: str) -> None:
        self._until_stored("run status", self.runs.set_status, run_id, RunStatus(status), engine_workflow_id=wf_id)

    def _until_stored(self, what: str, write: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``write(*args, **kwargs)``, our own bookkeeping of a run, retried while our database is unavailable.

        A run's body must not fail because the database refused a connection for a moment (a restart,
        "too many clients"): DBOS would record the run as failed for good (not parked, never retried)
        while our tables said it was running. DBOS waits out its own database the same way. The lease
        bounds the wait: once it has run out, another worker may own the run, and this process stops.
        """
        delay = 0.05
        while True:
            try:
                return write(*args, **kwargs)
            except E.StoreUnavailable as exc:
                log.warning("engine.store_unavailable", writing=what, error=exc.message, retry_in_s=delay)
                self._guard(f"writing the {what}")  # past the lease a survivor may own this run
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _attempt(self, run: dict[str, Any], step_id: str, uses: str, with_: dict[str, Any],
                 scope: dict[str, Any], attempt: int) -> dict[str, Any]:
        """One attempt of one step: fence, breaker, rate limit, the action; never raises."""
        with structlog.contextvars.bound_contextvars(
            source=run["source"], event_id=run["event_id"], run_id=run["run_id"], step_id=step_id,
        ):
            self._guard(f"step {step_id} ({uses})")
            destination = uses.split(".", 1)[0]
            ctx = StepContext(run_id=run["run_id"], step_id=step_id, attempt=attempt, source=run["source"],
                              event_id=run["event_id"], event_type=run.get("event_type"), event=run["event"])
            try:
                action = self.actions.get(uses)
                if action is None:
                    raise E.ValidationError(f"unknown step type {uses!r}",
                                            suggested_fix="install the connector or fix the workflow file")
                params = resolve_params(with_, scope, workflow=run["workflow"], step=step_id)
                breaker = self.breakers.get(destination) if destination != "core" else None
                permit = breaker.before_call() if breaker else None
                try:
                    self._wait_for_slot(destination)
                    output = action(ctx, params)
                except BaseException as exc:  # every outcome goes back to the breaker, bugs included
                    if breaker:
                        breaker.on_failure(exc, permit)
                    raise
                if breaker:
                    breaker.on_success(permit)
                self.metrics.step_attempts.labels(uses, "ok").inc()
                log.info("step.succeeded", step_type=uses, attempt=attempt)
                return {"ok": True, "output": output}
            except E.BridgeError as exc:
                self.metrics.step_attempts.labels(uses, exc.code).inc()
                log.warning("step.failed", step_type=uses, attempt=attempt, code=exc.code, error=exc.message)
                return {
                    "ok": False, "code": exc.code, "message": exc.message, "transient": exc.transient,
                    "retry_after": getattr(exc, "retry_after", None), "details": _plain(exc.details),
                    "upstream_request_id": exc.upstream_request_id, "suggested_fix": exc.suggested_fix,
                    "input": _plain(with_),
                }
            except Exception as exc:  # a bug: no automatic retry, straight to the DLQ with the traceback
                self.metrics.step_attempts.labels(uses, "bug").inc()
                log.error("step.bug", step_type=uses, attempt=attempt, error=type(exc).__name__)
                return {"ok": False, "bug": True, "code": "internal_error", "transient": False,
                        "message": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                        "input": _plain(with_)}

    def _wait_for_slot(self, destination: str) -> None:
        if destination not in self.config.self_limited:
            self.call_limiter.wait(destination)

    def _park(self, run: dict[str, Any], step_id: str, uses: str, attempts: int, res: dict[str, Any],
              wf_id: str) -> int:
        entry_id = self._until_stored("dead-letter entry", self.dead_letters.add, {
            "run_id": run["run_id"], "step_id": step_id, "step_type": uses, "attempts": attempts,
            "error_code": res.get("code", "internal_error"), "error_message": res.get("message", ""),
            "upstream_request_id": res.get("upstream_request_id"), "suggested_fix": res.get("suggested_fix")
            or _default_fix(res), "step_input": res.get("input"), "traceback": res.get("traceback"),
            "engine_workflow_id": wf_id,
        })
        self._until_stored("run status", self.runs.set_status, run["run_id"], RunStatus.PARKED,
                           engine_workflow_id=wf_id, failed_step=step_id, error_code=res.get("code"))
        self.metrics.runs_finished.labels(run["workflow"], "parked").inc()
        self.alert(Alert(kind="dlq.new", severity=Severity.CRITICAL,
                         title=f"Run {run['run_id']} parked at step {step_id}: {res.get('code')}",
                         details={"dlq_id": entry_id, "run_id": run["run_id"], "step_id": step_id,
                                  "code": res.get("code")}, key=uses))
        return entry_id


def _sqlite_engine_kwargs(url: str) -> dict[str, Any]:
    """On SQLite, DBOS's connections queue for the file's write lock in this process (see store.db)."""
    if not url.startswith("sqlite:///"):
        return {}
    from commerce_bridge.store.db import QueuedImplicitConnection

    return {"db_engine_kwargs": {"connect_args": {"factory": QueuedImplicitConnection}}}


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


def _default_fix(res: Mapping[str, Any]) -> str:
    if res.get("bug"):
        return "A bug in commerce-bridge: report it with the traceback; replay once fixed."
    if res.get("transient"):
        return "The destination kept failing; check its status, then replay."
    return "Correct the data or mapping named in the error, then replay."


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


# ---- DBOS registration ---------------------------------------------------------------------------
_registered = False


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
