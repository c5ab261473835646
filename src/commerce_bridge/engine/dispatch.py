"""The dispatcher: inbox rows become runs, one delivery at a time, and poison is set aside.

Rules
-----
* Each delivery is parsed, routed and started on its own. One that cannot be (poison: not JSON, a
  workflow's ``trigger.filter`` fails for it, its runs cannot be created or serialised) is *isolated*:
  its runs that never started are parked at step ``(dispatch)``, a dead-letter entry
  ``source:event_id:(dispatch)`` says why with a suggested fix, an alert fires, a metric counts it, and
  the inbox marks it failed. Every other delivery of the batch goes on.
* Only an unavailable store (ours or the engine's), or an engine that is stopping, holds a batch back:
  then every delivery waits alike and the batch is tried again (not the delivery's fault).
* Deliveries wait in the inbox while the engine has no free run slot; when several wait, those that
  start a workflow of higher priority (``CB_WORKFLOW_PRIORITIES``: later stages of an order) go first,
  so under overload the orders already started finish before new ones begin.
* Starting a run id that exists is harmless, so a delivery dispatched twice (after a crash, or a replay
  of its entry) starts nothing twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
import structlog

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import (
    DISPATCH_STEP,
    HandOver,
    StoredDelivery,
    dispatch_entry_run_id,
    run_id_for,
)
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.ports import DeadLetters, DispatchPriority, Inbox, Runs
from commerce_bridge.workflows.spec import WorkflowSpec

log = structlog.get_logger("commerce_bridge.engine")



class WorkflowRouter(Protocol):
    """Which workflows an event starts, and any pinned version by name (its implementation: ``workflows.router.Router``)."""

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

    def dispatch_priorities(self) -> Sequence[DispatchPriority]:
        """Which deliveries the dispatcher takes first when several wait (``CB_WORKFLOW_PRIORITIES``)."""
        ...


class Enqueue(Protocol):
    def __call__(self, row: dict[str, Any], delivery: StoredDelivery, *, background: bool = False,
                 event: Any = None) -> None: ...


class Dispatcher:
    """Hands undispatched deliveries to the engine (``enqueue``), isolating the ones that cannot be."""

    def __init__(self, *, inbox: Inbox, runs: Runs, dead_letters: DeadLetters, router: WorkflowRouter, metrics: Metrics,
                 alert: Callable[[Alert], object], enqueue: Enqueue, batch: int,
                 may_start: Callable[[], bool] = lambda: True,
                 before_start: Callable[[int], None] = lambda n: None,
                 capacity: Callable[[], int] | None = None) -> None:
        self.inbox = inbox
        self.runs = runs
        self.dead_letters = dead_letters
        self.router = router
        self.metrics = metrics
        self.alert = alert
        self._enqueue = enqueue
        self._batch = batch
        self._may_start = may_start
        self._before_start = before_start
        self._capacity = capacity
        self.drained = False
        """The last pass found fewer waiting deliveries than it could take: none were left undispatched
        then (so the backlog gauge needs no count while the dispatcher keeps up)."""

    def dispatch_once(self) -> int:
        """Turn up to ``batch`` undispatched deliveries into runs; the number handed over.

        With a ``capacity`` (the engine's free run slots), a pass takes no more deliveries than that: the
        inbox is the backlog, and the engine wakes the dispatcher when a slot frees up.
        """
        limit = self._batch if self._capacity is None else min(self._batch, self._capacity())
        self.drained = False
        if limit <= 0:
            return 0
        n = self.inbox.dispatch_batch(limit, self._start_runs, self.router.dispatch_priorities())
        self.drained = n < limit
        return n

    def _start_runs(self, deliveries: list[StoredDelivery]) -> HandOver:
        """Create and enqueue the runs of these deliveries, each delivery on its own.

        A delivery that cannot be parsed, routed, started or serialised (poison) is isolated: its
        runs that did not start are parked, a dead-letter entry says why, and the batch goes on. Only
        an unavailable store (ours or the engine's) stops the batch: then every delivery waits alike.
        """
        self._before_start(len(deliveries))
        planned: dict[int, list[tuple[dict[str, Any], WorkflowSpec]]] = {}
        events: dict[int, Any] = {}
        failed: dict[int, tuple[str, BaseException]] = {}
        unjudged: dict[int, list[dict[str, Any]]] = {}  # run rows of workflows whose filter failed
        for d in deliveries:
            try:
                events[d.id] = event = orjson.loads(d.body)
                filter_errors: list[tuple[WorkflowSpec, str]] = []
                specs = self.router.route(d.source, d.event_type, event, d.event_id, filter_errors=filter_errors)
                planned[d.id] = [(_run_row(d, spec), spec) for spec in specs]
            except Exception as exc:
                _reraise_outage(exc)
                failed[d.id] = ("route", exc)
                continue
            if filter_errors:
                unjudged[d.id] = [_run_row(d, spec) for spec, _ in filter_errors]
                failed[d.id] = ("route", E.ValidationError(
                    "; ".join(f"the trigger.filter of {spec.name} v{spec.version} failed: {msg}"
                              for spec, msg in filter_errors)))
        for d in deliveries:  # a re-dispatch (``redispatch`` keeps dispatched_at): settle the runs it put back
            if d.dispatched_at is not None:
                self.runs.reroute(d.id, [row for row, _ in planned.get(d.id, [])] + unjudged.get(d.id, []),
                                  DISPATCH_STEP)
        try:
            self.runs.create([row for rows in planned.values() for row, _ in rows]
                             + [row for rows in unjudged.values() for row in rows])
        except Exception as exc:  # one delivery's rows can break the batch insert: find which, one by one
            _reraise_outage(exc)
            for d_id, rows in planned.items():
                try:
                    self.runs.create([row for row, _ in rows] + unjudged.get(d_id, []))
                except Exception as one:
                    _reraise_outage(one)
                    failed[d_id] = ("start", one)
            for d_id in failed:
                planned.pop(d_id, None)
        unstarted: dict[int, list[str]] = {d_id: [r["run_id"] for r in rows] for d_id, rows in unjudged.items()}
        for d in deliveries:
            rows = planned.get(d.id, [])
            for i, (row, spec) in enumerate(rows):
                try:
                    self._enqueue(row, d, background=spec.background, event=events[d.id])
                except Exception as exc:
                    _reraise_outage(exc)
                    if not self._may_start():  # DBOS is stopping, not the delivery's fault
                        raise E.StoreUnavailable("the engine is restarting") from exc
                    failed[d.id] = ("start", exc)
                    unstarted[d.id] = unstarted.get(d.id, []) + [r["run_id"] for r, _ in rows[i:]]
                    break
        for d in deliveries:
            if d.id in failed:
                stage, error = failed[d.id]
                self._isolate(d, stage, error, unstarted.get(d.id, []))
        idle = {d.id for d in deliveries if d.id not in failed and not planned.get(d.id)}
        return HandOver(idle=frozenset(idle), failed=frozenset(failed))

    def _isolate(self, d: StoredDelivery, stage: str, exc: BaseException, unstarted: list[str]) -> None:
        """File a delivery that cannot be dispatched in the dead-letter queue (the caller marks it failed)."""
        reason = _poison_reason(exc)
        code = exc.code if isinstance(exc, E.BridgeError) else "poison_delivery"
        verb = {"route": "routed", "start": "started"}[stage]
        self.runs.park_unstarted(unstarted, DISPATCH_STEP, code)
        entry_id = self.dead_letters.add({
            "run_id": dispatch_entry_run_id(d.source, d.event_id), "step_id": DISPATCH_STEP,
            "step_type": f"core.dispatch.{stage}", "attempts": 1, "error_code": code,
            "error_message": f"delivery {d.source}:{d.event_id} could not be {verb}: {reason}",
            "upstream_request_id": None,
            "suggested_fix": _poison_fix(stage, exc),
            "step_input": {"inbox_id": d.id, "source": d.source, "event_id": d.event_id,
                           "event_type": d.event_type, "body_bytes": len(d.body), "runs": unstarted},
            "traceback": None, "engine_workflow_id": None,
        })
        self.metrics.deliveries_isolated.labels(d.source, stage).inc()
        log.error("dispatch.isolated", source=d.source, event_id=d.event_id, stage=stage,
                  error=type(exc).__name__, dlq_id=entry_id)
        self.alert(Alert(kind="dispatch.isolated", severity=Severity.CRITICAL,
                         title=f"Delivery {d.source}:{d.event_id} could not be {verb} and was set aside: "
                               f"{type(exc).__name__}",
                         details={"dlq_id": entry_id, "source": d.source, "event_id": d.event_id,
                                  "stage": stage}, key=f"dispatch.{stage}"))


def _run_row(d: StoredDelivery, spec: WorkflowSpec) -> dict[str, Any]:
    return {"run_id": run_id_for(d.source, d.event_id, spec.name), "inbox_id": d.id, "source": d.source,
            "event_id": d.event_id, "workflow": spec.name, "workflow_version": spec.version}


def _reraise_outage(exc: BaseException) -> None:
    """Raise StoreUnavailable when ``exc`` says a database is unavailable (not the delivery's fault)."""
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, E.StoreUnavailable):
        raise exc
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | sqlite3.OperationalError):
        raise E.StoreUnavailable(f"the store is unavailable while dispatching: {type(exc).__name__}") from exc


def _poison_reason(exc: BaseException) -> str:
    """What went wrong, without the delivery's content (error messages can quote it)."""
    if isinstance(exc, E.BridgeError):
        return f"{exc.code}: {exc.message[:300]}"
    if isinstance(exc, RecursionError):
        return "RecursionError: the event is nested too deeply for the engine to serialise"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _poison_fix(stage: str, exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return ("The event is nested deeper than the engine can store. If it is genuine, flatten it at the "
                "sender or map it in a workflow; otherwise discard this entry. Replay re-dispatches it.")
    if stage == "route":
        return ("A workflow's trigger could not judge this event (see the error): fix the workflow file's "
                "trigger.filter (or the event at its source), then replay to dispatch it again, or discard.")
    return ("The engine could not start a run of this event (see the error). Fix the cause (an upgrade, "
            "the database), then replay to dispatch it again, or discard it.")
