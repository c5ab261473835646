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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
import structlog
from dbos import DBOS, DBOSClient, SetEnqueueOptions, SetWorkflowID

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import RunStatus, StoredDelivery, run_id_for
from commerce_bridge.engine.breaker import BreakerRegistry
from commerce_bridge.engine.limits import CallLimiter
from commerce_bridge.engine.retry import RetryPolicies, decide
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
ENGINE_VERSION = "cb-engine-2"  # pinned: workers dequeue and recover only their own version
QUEUE = "cb-runs"
BACKGROUND_PRIORITY = 100
"""DBOS queue priority of bookkeeping runs (lower numbers start first; business runs have the default 0)."""
WORKFLOW_NAME = "cb.run"
_ERROR_CLASSES = {cls.code: cls for cls in E.all_error_classes()}
WAIT_STEP = "core.wait.until"
BEFORE_STEPS = "(start)"  # the step id of a DLQ entry for a run that parked before walking any step




def _wait_params(with_: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
    """When a ``core.wait.until`` step ends (``delay_s`` from now, or ``at``), checkpointed once."""
    from datetime import datetime

    params = resolve_params(with_, scope)
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
              event_id: str | None = None) -> list[WorkflowSpec]: ...

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
        self._lease_valid_until = 0.0  # monotonic; past it this process must not start side effects
        self._last_heartbeat = time.monotonic()

    # ---- life cycle ------------------------------------------------------------------------------
    def launch(self, *, dispatcher: bool = True) -> None:
        """Take this worker's lease, start DBOS (which recovers our own unfinished runs), then loops."""
        global _current
        if _current is not None and _current is not self:
            raise RuntimeError("another Engine is already running in this process")
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
        DBOS.launch()
        self._queue = DBOS.register_queue(
            QUEUE, worker_concurrency=self.config.worker_concurrency,
            polling_interval_sec=self.config.polling_interval_s, on_conflict="always_update",
        )
        self._launched = True
        self._start_thread("heartbeat", self._heartbeat_loop)
        if dispatcher:
            self._start_thread("dispatcher", self._dispatch_loop)
        log.info("engine.launched", executor_id=self.config.executor_id, epoch=self._epoch)

    def shutdown(self, timeout_s: int = 10) -> None:
        global _current
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout_s)
        try:
            if self._launched:
                DBOS.destroy(workflow_completion_timeout_sec=timeout_s, destroy_registry=True)
        finally:
            self._launched = False
            global _registered
            _registered = False
            _current = None
            try:
                self.leases.stop(self.config.executor_id, self._epoch)
            except E.BridgeError:
                log.warning("engine.lease_release_failed", executor_id=self.config.executor_id)

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
                self._lease_valid_until = started + self.config.lease_s
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def lease_ok(self) -> bool:
        return time.monotonic() < self._lease_valid_until

    def _heartbeat_loop(self) -> None:
        cfg = self.config
        while not self._stop.wait(cfg.heartbeat_interval_s):
            started = time.monotonic()
            try:
                if not self.leases.heartbeat(cfg.executor_id, self._epoch, cfg.lease_s):
                    log.critical("engine.lease_lost", executor_id=cfg.executor_id)
                    os._exit(75)  # another worker owns our runs now: stop at once, touch nothing
                self._lease_valid_until = started + cfg.lease_s
                self._last_heartbeat = started
                self.metrics.worker_heartbeat_age.set(0)
            except E.StoreUnavailable:
                self.metrics.worker_heartbeat_age.set(time.monotonic() - self._last_heartbeat)
                if not self.lease_ok():
                    log.critical("engine.lease_expired_unrenewed", executor_id=cfg.executor_id)
                    os._exit(75)
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
        while not self._stop.is_set():
            try:
                n = self.dispatch_once()
            except E.StoreUnavailable:
                n = 0
                self._stop.wait(1.0)
            except Exception:
                log.exception("engine.dispatch_failed")
                n = 0
                self._stop.wait(1.0)
            try:
                backlog = self.inbox.backlog()
                self.metrics.inbox_backlog.set(backlog)
            except E.BridgeError:
                pass
            if n < self.config.dispatch_batch:
                self._wake.wait(self.config.dispatch_interval_s)
                self._wake.clear()

    def dispatch_once(self) -> int:
        """Turn undispatched deliveries into queued runs (run id ``source:event_id:workflow``)."""
        return self.inbox.dispatch_batch(self.config.dispatch_batch, self._start_runs)

    def _start_runs(self, deliveries: list[StoredDelivery]) -> list[int]:
        """Create and enqueue the runs of these deliveries; answer the ids of those that start none."""
        planned: list[tuple[dict[str, Any], WorkflowSpec]] = []
        for d in deliveries:
            event = orjson.loads(d.body)
            for spec in self.router.route(d.source, d.event_type, event, d.event_id):
                planned.append(({
                    "run_id": run_id_for(d.source, d.event_id, spec.name), "inbox_id": d.id,
                    "source": d.source, "event_id": d.event_id, "workflow": spec.name,
                    "workflow_version": spec.version,
                }, spec))
        self.runs.create([row for row, _ in planned])
        bodies = {d.id: d for d in deliveries}
        for row, spec in planned:
            d = bodies[row["inbox_id"]]
            self.enqueue(row, d, background=spec.background)
        return sorted(bodies.keys() - {row["inbox_id"] for row, _ in planned})

    def enqueue(self, row: Mapping[str, Any], delivery: StoredDelivery, *, background: bool = False) -> None:
        """Queue the run of ``row``; a ``background`` one (bookkeeping) starts after the business runs waiting."""
        run = {
            "run_id": row["run_id"], "source": row["source"], "event_id": row["event_id"],
            "event_type": delivery.event_type, "workflow": row["workflow"], "version": row["workflow_version"],
            # the exact text it is planned with (None: defined in code); another text parks the run
            "digest": self.router.digest(row["workflow"], row["workflow_version"]),
            "event": orjson.loads(delivery.body),
            "vars": self.workflow_vars.get(row["workflow"], {}),  # pinned into the run with its version
        }
        with SetWorkflowID(row["run_id"]), SetEnqueueOptions(priority=BACKGROUND_PRIORITY if background else None):
            self._queue.enqueue(_workflow_function(), run)

    # ---- executing one run -----------------------------------------------------------------------
    def workflow_body(self, run: dict[str, Any]) -> dict[str, Any]:
        """The durable program of one run (called by DBOS; deterministic given its step results).

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
                       "suggested_fix": "fix the step's `when` expression, then replay"}
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
            attempt = 0
            while True:
                attempt += 1
                res = DBOS.run_step({"name": f"step:{step.id}"}, self._attempt, run, step.id, step.uses,
                                    dict(step.with_), walker.scope, attempt)
                if res["ok"]:
                    walker.succeeded(step, res.get("output"))
                    break
                decision = decide(policy, attempt, error_from_result(res), self._rng)
                if decision.retry:
                    self.metrics.retries.labels(step.uses, res.get("code", "")).inc()
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
        params = DBOS.run_step({"name": f"wait:{step.id}"}, _wait_params, dict(step.with_), scope)
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
                if not self.lease_ok():
                    log.critical("engine.fenced", writing=what)
                    os._exit(75)  # our lease ran out: a survivor may own this run now
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _attempt(self, run: dict[str, Any], step_id: str, uses: str, with_: dict[str, Any],
                 scope: dict[str, Any], attempt: int) -> dict[str, Any]:
        """One attempt of one step: fence, breaker, rate limit, the action; never raises."""
        with structlog.contextvars.bound_contextvars(
            source=run["source"], event_id=run["event_id"], run_id=run["run_id"], step_id=step_id,
        ):
            if not self.lease_ok():
                log.critical("engine.fenced", step_type=uses)
                os._exit(75)  # our lease ran out: a survivor may own this run now
            destination = uses.split(".", 1)[0]
            ctx = StepContext(run_id=run["run_id"], step_id=step_id, attempt=attempt, source=run["source"],
                              event_id=run["event_id"], event_type=run.get("event_type"), event=run["event"])
            try:
                action = self.actions.get(uses)
                if action is None:
                    raise E.ValidationError(f"unknown step type {uses!r}",
                                            suggested_fix="install the connector or fix the workflow file")
                params = resolve_params(with_, scope)
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


# ---- admin operations from any process (CLI, admin API) ------------------------------------------
class EngineAdmin:
    """Replay and recovery through a DBOS client: works from processes that run no workflows."""

    def __init__(self, system_database_url: str, *, runs: Runs, dead_letters: DeadLetters,
                 leases: WorkerLeases, router: WorkflowRouter) -> None:
        self._url = system_database_url
        self._runs = runs
        self._dlq = dead_letters
        self._leases = leases
        self._router = router
        self._client: DBOSClient | None = None

    @property
    def client(self) -> DBOSClient:
        if self._client is None:
            self._client = DBOSClient(system_database_url=self._url, application_name=APP_NAME)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None

    def replay(self, entry_id: int, reason: str = "replayed by operator", *,
               from_start: bool = False) -> dict[str, Any]:
        """Resume a parked run from its failed step (same run id, same idempotency keys).

        The steps before the failed one are not run again: their recorded outputs are reused, and the
        run stays pinned to its workflow text. A run parked before walking any step (its workflow
        version or text is not loaded) resumes after its recorded steps, on the same text again.

        When the fix was made to data an earlier step read (an order corrected in Clarity),
        ``from_start`` runs every step again, so they read the corrected data; the idempotency keys
        stay the same, so calls that already took effect are not repeated. It starts the same event
        afresh, re-pinned to the workflow text loaded now: the run's version if it is loaded, else
        the active version of the workflow (see :meth:`_repinned`).

        Raises
        ------
        ValidationError
            The entry is not open, or ``from_start`` finds no version of the workflow to run.
        NotFound
            The failed step is not in the run's recorded steps.
        """
        entry = self._dlq.get(entry_id)
        if entry["status"] != "open":
            raise E.ValidationError(f"dead-letter entry {entry_id} is already {entry['status']}")
        wf_id = entry["engine_workflow_id"]
        new_id = f"{entry['run_id']}#replay-{entry_id}"
        run: dict[str, Any] | None = None
        start: int | None = None
        if from_start:
            [parked] = self.client.list_workflows(workflow_ids=[wf_id], load_input=True, load_output=False)
            run = self._repinned(dict(parked.input["args"][0]) if parked.input else {})
        else:
            steps = self.client.list_workflow_steps(wf_id, load_output=False)
            if entry["step_id"] == BEFORE_STEPS:  # parked before walking: resume where it stood
                start = 1 + max((s["function_id"] for s in steps if s["function_name"] != "cb.park"), default=0)
            else:
                name = f"step:{entry['step_id']}"
                start = min((s["function_id"] for s in steps if s["function_name"] == name), default=None)
            if start is None:
                raise E.NotFound(f"step {entry['step_id']} not found in run {entry['run_id']}")
        # Resolve the entry and mark the run queued BEFORE the new run can start: a run that parks again
        # at once must get a new open entry (not find this one still open) and its own status must win.
        resolved = self._dlq.resolve(entry_id, "replayed", reason)
        self._runs.set_status(entry["run_id"], RunStatus.QUEUED, engine_workflow_id=new_id,
                              workflow_version=run["version"] if run else None)
        try:
            if run is not None:
                handle: Any = self.client.enqueue({"workflow_name": WORKFLOW_NAME, "queue_name": QUEUE,
                                                   "workflow_id": new_id, "app_version": ENGINE_VERSION}, run)
            else:
                assert start is not None  # found above, or NotFound was raised
                with SetWorkflowID(new_id):
                    handle = self.client.fork_workflow(wf_id, start, queue_name=QUEUE,
                                                       application_version=ENGINE_VERSION)
        except Exception as exc:
            # nothing started: the run stays parked, with a new open entry saying why the replay failed
            self._dlq.add({
                **{k: entry.get(k) for k in ("run_id", "step_id", "step_type", "attempts", "error_code",
                                             "upstream_request_id", "suggested_fix", "step_input", "traceback")},
                "error_message": f"{entry.get('error_message', '')} (replay of entry {entry_id} failed: "
                                 f"{type(exc).__name__}: {exc})",
                "engine_workflow_id": wf_id,
            })
            self._runs.set_status(entry["run_id"], RunStatus.PARKED, engine_workflow_id=wf_id,
                                  failed_step=entry["step_id"], error_code=entry["error_code"])
            raise
        new_id = handle.get_workflow_id()
        return {**resolved, "engine_workflow_id": new_id}

    def _repinned(self, run: dict[str, Any]) -> dict[str, Any]:
        """The arguments of a from-start replay: the same event, pinned to the workflow text loaded now.

        The run's version if it is loaded (with the digest of its current text), else the active
        version (the old file is gone). The run's ``vars`` stay as they were pinned.
        """
        name, version = run.get("workflow"), run.get("version")
        if not name:
            raise E.NotFound(f"the arguments of run {run.get('run_id')} are not in the engine database")
        spec = self._router.get(name, version) if version else None
        if spec is None:
            spec = next((s for s in self._router.all() if s.name == name), None)
        if spec is None:
            raise E.ValidationError(
                f"workflow {name} has no version {version} and no active version to run again on",
                suggested_fix=f"install a workflow file named {name} (or enable it), then replay")
        return {**run, "version": spec.version, "digest": self._router.digest(name, spec.version)}

    def discard(self, entry_id: int, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise E.ValidationError("a reason is required to discard a dead-letter entry")
        entry = self._dlq.resolve(entry_id, "discarded", reason)
        self._runs.set_status(entry["run_id"], RunStatus.DISCARDED)
        return entry

    def recover(self, executor_id: str, *, by: str, force: bool = False) -> int:
        """Resume a dead worker's unfinished runs on the shared queue (refuses a live worker unless forced)."""
        row = self._leases_get(executor_id)
        if row is None:
            raise E.NotFound(f"no worker {executor_id!r} has ever registered")
        if not self._leases.begin_takeover(executor_id, by, grace_s=0.0, force=force):
            raise E.ValidationError(
                f"worker {executor_id!r} still holds a live lease (status {row['status']}); it may be running. "
                "Wait for the lease to expire or pass --force if you are sure the process is gone."
            )
        pending = self.client.list_workflows(status="PENDING", executor_id=executor_id, load_input=False,
                                             load_output=False)
        for wf in pending:
            self.client.resume_workflow(wf.workflow_id, queue_name=QUEUE)
        self._leases.finish_takeover(executor_id, len(pending))
        return len(pending)

    def _leases_get(self, executor_id: str) -> dict[str, Any] | None:
        getter = getattr(self._leases, "get", None)
        return getter(executor_id) if getter else None

    def workflow_states(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        return {w.workflow_id: w.status for w in self.client.list_workflows(workflow_ids=list(ids),
                                                                             load_input=False, load_output=False)}
