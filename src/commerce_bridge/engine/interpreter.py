"""The run interpreter: one run of a pinned workflow version, walked step by step on DBOS.

Rules
-----
* Each attempt of a step with side effects is one checkpointed DBOS step (``step:<id>``). Two kinds of
  step are not checkpointed and run again on replay, each declared in the catalogue: ``inline`` (pure
  and local: computed again) and ``replay_safe`` (idempotent by a key from its input, find-else-create
  under a key lock: a second execution finds what the first made). The waits between attempts of a
  checkpointed step are durable sleeps (our retry policy with full jitter); the others sleep plainly.
* An attempt never raises: it ends as a :class:`~commerce_bridge.engine.outcome.StepOutcome` that the
  retry policy judges and DBOS records (as its plain-dict record); a step that fails for good parks
  the run (a dead-letter entry, the run's status, an alert) in one checkpointed step.
* No side effect begins after the worker's lease is gone (``_guard``, see engine.fence); our own
  bookkeeping writes wait out an unavailable store instead of failing the run.
* A run carries the sha256 of the text it was planned with: a run whose text is no longer loaded
  parks before walking (DBOS replays recorded results by position).

:class:`RunInterpreter` is a part of :class:`~commerce_bridge.engine.runtime.Engine`, which provides
the attributes it declares; it is split out so that each of the two files keeps one concern.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from dbos import DBOS

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import RunStatus
from commerce_bridge.engine.breaker import BreakerRegistry
from commerce_bridge.engine.fence import Fence
from commerce_bridge.engine.limits import CallLimiter
from commerce_bridge.engine.outcome import StepOutcome
from commerce_bridge.engine.retry import RetryPolicies, decide
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import DeadLetters, Runs, Timers
from commerce_bridge.workflows.spec import (
    Action,
    FailureDecision,
    StepContext,
    StepSpec,
    Walker,
    resolve_params,
)

if TYPE_CHECKING:
    from commerce_bridge.engine.dispatch import WorkflowRouter
    from commerce_bridge.engine.runtime import EngineConfig

_T = TypeVar("_T")
log = structlog.get_logger("commerce_bridge.engine")

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


class RunInterpreter:
    """Walks one run (``workflow_body``, called by DBOS); the attributes are the engine's."""

    config: EngineConfig
    router: WorkflowRouter
    actions: dict[str, Action]
    runs: Runs
    dead_letters: DeadLetters
    breakers: BreakerRegistry
    retry_policies: RetryPolicies
    metrics: Metrics
    call_limiter: CallLimiter
    timers: Timers | None
    fence: Fence
    alert: Callable[[Alert], object]
    _rng: random.Random
    _active: int
    _active_lock: threading.Lock
    _last_busy: float

    def _guard(self, doing: str) -> None:
        """Raise Fenced unless side effects may begin (the engine's, see engine.fence)."""
        raise NotImplementedError

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
            out = self._unpinned(run)
            # Not a DBOS step: a resumed or forked run has its recorded steps at the first positions and
            # DBOS refuses a step of another name there. Parking again after a crash is harmless: a run
            # has one open DLQ entry, and a plain replay resumes after the recorded steps.
            self._park(run, BEFORE_STEPS, "(workflow)", 0, out, wf_id)
            return {"status": "parked", "step": BEFORE_STEPS, "code": out.code}
        if run.get("vars"):
            spec = dataclasses.replace(spec, vars={**spec.vars, **run["vars"]})
        walker = Walker.start(spec, run["event"], source=run["source"], event_type=run.get("event_type"),
                              event_id=run["event_id"])
        while (step := walker.next_step()) is not None:
            try:
                runs_now = walker.should_run(step)
            except E.ValidationError as exc:
                out = StepOutcome.invalid(f"when: {exc.message}", code=exc.code,
                                          suggested_fix=exc.suggested_fix or "fix the step's `when` expression, "
                                                                             "then replay")
                DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, 0, out, wf_id)
                return {"status": "parked", "step": step.id, "code": exc.code}
            if not runs_now:
                walker.skip(step)
                continue
            if step.uses == WAIT_STEP:
                waited = self._durable_wait(run, step, walker.scope, wf_id)
                if waited.get("status") == "waiting":
                    return waited
                if waited.get("error"):
                    out = StepOutcome.invalid(waited["error"], step_input=dict(step.with_))
                    DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, 1, out, wf_id)
                    return {"status": "parked", "step": step.id, "code": "validation_error"}
                walker.succeeded(step, waited)
                continue
            base = self.retry_policies.for_step(step.uses)
            policy = base.merged(step.retry) if step.retry else base
            # A step declared ``inline`` or ``replay_safe`` in the catalogue is not checkpointed: it runs
            # again on replay, and its retries sleep without a record, so it leaves no trace in DBOS.
            inline = step.uses in self.config.unrecorded_steps
            attempt = 0
            while True:
                attempt += 1
                if inline:
                    out = self._attempt(run, step.id, step.uses, dict(step.with_), walker.scope, attempt)
                else:
                    out = StepOutcome.from_record(DBOS.run_step(
                        {"name": f"step:{step.id}"}, self._recorded_attempt, run, step.id, step.uses,
                        dict(step.with_), walker.scope, attempt))
                if out.ok:
                    walker.succeeded(step, out.output)
                    break
                decision = decide(policy, attempt, out.error(), self._rng)
                if decision.retry:
                    self.metrics.retries.labels(step.uses, out.code).inc()
                    if inline:
                        time.sleep(decision.delay_s)
                    else:
                        DBOS.sleep(decision.delay_s)
                    continue
                if walker.failed(step, out.failure) is FailureDecision.PARK:
                    DBOS.run_step({"name": "cb.park"}, self._park, run, step.id, step.uses, attempt, out, wf_id)
                    return {"status": "parked", "step": step.id, "code": out.code, **walker.state()}
                break
        self._mark(run["run_id"], RunStatus.SUCCEEDED.value, wf_id)
        self.metrics.runs_finished.labels(run["workflow"], walker.outcome).inc()
        log.info("run.succeeded", source=run["source"], event_id=run["event_id"], run_id=run["run_id"],
                 workflow=run["workflow"], outcome=walker.outcome)  # its steps' lines are DEBUG
        return {"status": "succeeded", **walker.state()}

    def _unpinned(self, run: Mapping[str, Any]) -> StepOutcome:
        """Why a run's pinned workflow text cannot be walked: a failed outcome for :meth:`_park`."""
        name, version, digest = run["workflow"], run["version"], run.get("digest")
        if digest is None or self.router.get(name, version) is None:
            return StepOutcome.invalid(
                f"workflow {name} version {version} is not installed",
                suggested_fix="restore the workflow file of that version, then replay; or "
                              "`commerce-bridge dlq replay --from-start <id>` to run it again on the active version")
        now = self.router.digest(name, version)
        return StepOutcome.invalid(
            f"workflow {name} version {version} changed since this run started "
            f"(file {digest[:8]}, now {now[:8] if now else 'defined in code'})",
            suggested_fix=f"restore the file this run started with (sha256 {digest[:8]}...), then replay; "
                          "or `commerce-bridge dlq replay --from-start <id>` to run it again on the "
                          "current text. Bump `version` when you change a workflow's steps.")

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

    def _recorded_attempt(self, run: dict[str, Any], step_id: str, uses: str, with_: dict[str, Any],
                          scope: dict[str, Any], attempt: int) -> dict[str, Any]:
        """:meth:`_attempt` as DBOS records it (a checkpointed step): the outcome's plain-dict record."""
        return self._attempt(run, step_id, uses, with_, scope, attempt).to_record()

    def _attempt(self, run: dict[str, Any], step_id: str, uses: str, with_: dict[str, Any],
                 scope: dict[str, Any], attempt: int) -> StepOutcome:
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
                log.debug("step.succeeded", step_type=uses, attempt=attempt)
                return StepOutcome.succeeded(output)
            except E.BridgeError as exc:
                self.metrics.step_attempts.labels(uses, exc.code).inc()
                log.warning("step.failed", step_type=uses, attempt=attempt, code=exc.code, error=exc.message)
                return StepOutcome.of_error(exc, with_)
            except Exception as exc:  # a bug: no automatic retry, straight to the DLQ with the traceback
                self.metrics.step_attempts.labels(uses, "bug").inc()
                log.error("step.bug", step_type=uses, attempt=attempt, error=type(exc).__name__)
                return StepOutcome.of_bug(exc, with_)

    def _wait_for_slot(self, destination: str) -> None:
        if destination not in self.config.self_limited:
            self.call_limiter.wait(destination)

    def _park(self, run: dict[str, Any], step_id: str, uses: str, attempts: int, out: StepOutcome,
              wf_id: str) -> int:
        code = out.code or "internal_error"
        entry_id = self._until_stored("dead-letter entry", self.dead_letters.add, {
            "run_id": run["run_id"], "step_id": step_id, "step_type": uses, "attempts": attempts,
            "error_code": code, "error_message": out.message, "upstream_request_id": out.upstream_request_id,
            "suggested_fix": out.fix(), "step_input": out.input, "traceback": out.traceback,
            "engine_workflow_id": wf_id,
        })
        self._until_stored("run status", self.runs.set_status, run["run_id"], RunStatus.PARKED,
                           engine_workflow_id=wf_id, failed_step=step_id, error_code=code)
        self.metrics.runs_finished.labels(run["workflow"], "parked").inc()
        self.alert(Alert(kind="dlq.new", severity=Severity.CRITICAL,
                         title=f"Run {run['run_id']} parked at step {step_id}: {code}",
                         details={"dlq_id": entry_id, "run_id": run["run_id"], "step_id": step_id,
                                  "code": code}, key=uses))
        return entry_id


