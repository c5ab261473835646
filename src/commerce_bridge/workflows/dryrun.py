"""Dry runs: which steps a workflow would run for an event, with what parameters, and which calls they would make.

Nothing is called. The walk is the engine's own (:class:`~commerce_bridge.workflows.spec.Walker`),
fed with placeholder outputs: each step "returns" the example output its step type declares in the
catalogue, unless ``outputs`` gives one for that step id. ``failures`` makes chosen steps fail (an
error code, or ``{"code", "message", "details"}``) to show ``on_error`` paths; a transient code
behaves as if the retries were exhausted. A parameter that cannot be resolved fails the step with
``validation_error``, as it would in a real run. ``pinned_vars`` are the vars a real run would be
pinned with (status map, ``CB_WORKFLOW_VARS``); they override the file's ``vars`` as in the engine.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from commerce_bridge.domain.delivery import run_id_for
from commerce_bridge.errors import ValidationError, all_error_classes
from commerce_bridge.workflows.catalogue import Catalogue
from commerce_bridge.workflows.spec import FailureDecision, StepFailure, Walker, WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue

__all__ = ["DryRun", "PlannedStep", "dry_run"]

_TRANSIENT = {cls.code: cls.transient for cls in all_error_classes()}


@dataclass
class PlannedStep:
    """What one step would do: ``status`` is ``run``, ``skipped``, ``failed`` or ``when_failed``."""

    step_id: str
    uses: str
    destination: str
    status: str
    idempotency_key: str
    writes: bool = True
    params: dict[str, Any] | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    branch_of: str | None = None
    when: str | None = None


@dataclass
class DryRun:
    """The result of :func:`dry_run`. ``outcome``: ``succeeded``, ``handled``, ``parked`` or ``not_started``."""

    workflow: str
    version: str
    run_id: str
    matched: bool
    reason: str
    outcome: str
    steps: list[PlannedStep] = field(default_factory=list)
    parked_at: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)  # what the walk read as ``vars``

    def calls(self) -> list[dict[str, Any]]:
        """The calls the run would make, in order: destination, step type, idempotency key, params."""
        return [{"step": s.step_id, "uses": s.uses, "destination": s.destination,
                 "idempotency_key": s.idempotency_key, "params": s.params}
                for s in self.steps if s.status in ("run", "failed") and s.params is not None]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dry_run(spec: WorkflowSpec, event: Any, *, source: str | None = None, event_type: str | None = None,
            event_id: str | None = None, outputs: Mapping[str, Any] | None = None,
            failures: Mapping[str, str | Mapping[str, Any]] | None = None,
            catalogue: Catalogue | None = None, pinned_vars: Mapping[str, Any] | None = None,
            disabled: str | None = None) -> DryRun:
    """Walk ``spec`` for ``event`` without calling anything.

    Parameters
    ----------
    spec:
        The workflow.
    event:
        The trigger event as JSON data (a Stripe event, a Clarity change notice...).
    source, event_type, event_id:
        The delivery's routing fields. Defaults: the trigger's only source, ``event["type"]``,
        ``event["id"]``.
    outputs:
        Step id -> the output to pretend it returned (instead of the catalogue's example).
    failures:
        Step id -> the error it should fail with.
    pinned_vars:
        The vars a run would be pinned with; they win over the file's ``vars`` (trigger filter included).
    disabled:
        Why the workflow is turned off (e.g. ``"disabled by CB_WORKFLOWS_DISABLED"``): nothing starts
        and this is the reason given.

    Returns
    -------
    DryRun
        Every step considered, in order, with its status, resolved parameters and idempotency key.
    """
    cat = catalogue or step_catalogue()
    if pinned_vars:
        spec = dataclasses.replace(spec, vars={**spec.vars, **pinned_vars})  # as the engine does for a run
    outputs = dict(outputs or {})
    failures = dict(failures or {})
    src = source or _only(spec.trigger.sources) or "unknown"
    ev = event if isinstance(event, Mapping) else {}
    etype = event_type if event_type is not None else _str_or_none(ev.get("type"))
    eid = event_id or _str_or_none(ev.get("id")) or "dry-run"
    run_id = run_id_for(src, eid, spec.name)
    result = DryRun(spec.name, spec.version, run_id, matched=True, reason="", outcome="succeeded",
                    vars=dict(spec.vars))
    if disabled:
        result.matched, result.outcome, result.reason = False, "not_started", disabled
        return result
    try:
        accepted = spec.accepts(src, etype, event, eid)
    except ValidationError as exc:
        accepted, result.reason = False, f"the trigger filter failed: {exc.message}"
    if not accepted:
        result.matched, result.outcome = False, "not_started"
        result.reason = result.reason or _why_not(spec, src, etype)
        return result

    parents = {b.id: s.id for s in spec.steps if s.on_error for b in s.on_error.steps}
    walker = Walker.start(spec, event, source=src, event_type=etype, event_id=eid)
    while (step := walker.next_step()) is not None:
        declared = cat.get(step.uses)
        planned = PlannedStep(step.id, step.uses, step.destination, "run", step.idempotency_key(run_id),
                              writes=declared.writes if declared else True, branch_of=parents.get(step.id),
                              when=step.when)
        result.steps.append(planned)
        try:
            runs = walker.should_run(step)
        except ValidationError as exc:
            planned.status, planned.error = "when_failed", {"code": exc.code, "message": exc.message}
            result.outcome, result.parked_at = "parked", step.id
            break
        if not runs:
            planned.status = "skipped"
            walker.skip(step)
            continue
        failure: Mapping[str, Any] | None = _failure(failures[step.id]) if step.id in failures else None
        try:
            planned.params = walker.params(step)
        except ValidationError as exc:
            failure = {"code": exc.code, "message": exc.message, "details": {}, "transient": False}
        if failure is None:
            placeholder = declared.example_output if declared else None
            planned.output = copy.deepcopy(outputs.get(step.id, placeholder))
            walker.succeeded(step, planned.output)
            continue
        planned.status, planned.error = "failed", dict(failure)
        if walker.failed(step, StepFailure(code=str(failure["code"]), message=str(failure.get("message", "")),
                                           details=failure.get("details") or {},
                                           transient=bool(failure.get("transient")),
                                           bug=bool(failure.get("bug")))) is FailureDecision.PARK:
            result.outcome, result.parked_at = "parked", step.id
            break
    else:
        result.outcome = walker.outcome
    result.state = walker.state()
    return result


def _failure(raw: str | Mapping[str, Any]) -> dict[str, Any]:
    err: dict[str, Any] = {"code": raw} if isinstance(raw, str) else dict(raw)
    code = str(err.get("code", "upstream_rejected"))
    details = err.get("details")
    return {"code": code, "message": err.get("message", "simulated failure"),
            "details": dict(details) if isinstance(details, Mapping) else {}, "transient": bool(err.get("transient", _TRANSIENT.get(code))),
            "bug": code == "internal_error"}


def _only(patterns: tuple[str, ...]) -> str | None:
    real = [p for p in patterns if "*" not in p]
    return real[0] if len(real) == 1 else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _why_not(spec: WorkflowSpec, source: str, event_type: str | None) -> str:
    t = spec.trigger
    if not t.matches(source, event_type):
        return (f"the trigger does not match source {source!r} / event type {event_type!r} "
                f"(wants sources {list(t.sources)}, event types {list(t.event_types)})")
    return f"the trigger filter {t.filter!r} is false for this event"
