"""Workflow definitions as data (trigger, steps, ``when``/``retry``/``on_error``) and the pure walk over them.

:mod:`commerce_bridge.workflows.loader` builds these objects from YAML files; code can build them
directly (:mod:`commerce_bridge.workflows.builtin`). :class:`Walker` is the single statement of how a
run moves through a workflow: which step comes next, whether it is skipped, what a permanent failure
does. The engine drives it with real step results; :mod:`commerce_bridge.workflows.dryrun` drives it
with placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.workflows.expressions import ExpressionError, compile_expression, is_pointer, is_template

__all__ = [
    "RETRY_FIELDS",
    "Action",
    "FailureDecision",
    "OnError",
    "OnErrorAction",
    "StepContext",
    "StepFailure",
    "StepSpec",
    "Trigger",
    "Walker",
    "WorkflowSpec",
    "make_scope",
    "resolve_params",
]

RETRY_FIELDS: tuple[str, ...] = ("max_attempts", "base_delay_s", "max_delay_s")


class OnErrorAction(StrEnum):
    """What a handled permanent failure does next."""

    STEPS = "steps"  # run the branch's steps, then end the run (outcome "handled")
    GOTO = "goto"  # jump forward to a later top-level step
    CONTINUE = "continue"  # go on with the next step as if nothing happened


@dataclass(frozen=True, slots=True)
class OnError:
    """The branch a step takes when it fails permanently (see :meth:`Walker.failed`).

    ``when`` (optional JMESPath) narrows it: the branch applies only if it is true in the scope,
    where ``errors.<step id>`` already holds the failure; otherwise the run parks as usual.
    """

    action: OnErrorAction
    steps: tuple[StepSpec, ...] = ()
    goto: str | None = None
    when: str | None = None


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step: ``uses`` is a step type ``system.resource.verb``; ``with_`` its parameters.

    ``when``: JMESPath; the step runs only if true (JMESPath truthiness), else it is skipped.
    ``retry``: overrides of the step type's retry policy, keys from :data:`RETRY_FIELDS`.
    ``on_error``: what a permanent failure does instead of parking the run.
    """

    id: str
    uses: str
    with_: Mapping[str, Any] = field(default_factory=dict)
    when: str | None = None
    retry: Mapping[str, int | float] = field(default_factory=dict)
    on_error: OnError | None = None
    description: str = ""

    @property
    def destination(self) -> str:
        """The system the step talks to (``stripe``, ``clarity``, ``erp``, ``core``...)."""
        return self.uses.split(".", 1)[0]

    def idempotency_key(self, run_id: str) -> str:
        """``run_id:step_id``: identical across retries, restarts and replays."""
        return f"{run_id}:{self.id}"


@dataclass(frozen=True, slots=True)
class Trigger:
    """Which deliveries start the workflow: sources and event types (``*`` or a prefix ending in ``*``).

    ``filter`` (optional JMESPath) is tested against ``{"event", "trigger", "vars"}``; see
    :meth:`WorkflowSpec.accepts`.
    """

    sources: tuple[str, ...] = ("*",)
    event_types: tuple[str, ...] = ("*",)
    filter: str | None = None

    def matches(self, source: str, event_type: str | None) -> bool:
        """Source and event type match (the filter is not looked at)."""
        return _match(self.sources, source) and _match(self.event_types, event_type or "")


def _match(patterns: tuple[str, ...], value: str) -> bool:
    return any(p == "*" or p == value or (p.endswith("*") and value.startswith(p[:-1])) for p in patterns)


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A named, versioned workflow. A run pins the version it started with."""

    name: str
    version: str
    trigger: Trigger
    steps: tuple[StepSpec, ...]
    description: str = ""
    vars: Mapping[str, Any] = field(default_factory=dict)
    background: bool = False
    """Bookkeeping (``core.audit``): its runs start after every waiting business run (a lower queue
    priority), so under load they cannot delay the payments and orders queued with them."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    def accepts(self, source: str, event_type: str | None, event: Any, event_id: str | None = None,
                vars: Mapping[str, Any] | None = None) -> bool:
        """Trigger types match and the filter (if any) is true for this event.

        ``vars`` are the values a run would be pinned with (status map, ``CB_WORKFLOW_VARS``); they
        override the file's own ``vars`` in the filter, as they do in the run.

        Raises
        ------
        ExpressionError
            When the filter cannot be evaluated (a function given the wrong type, a limit of
            :mod:`~commerce_bridge.workflows.expressions` exceeded); the message names the workflow
            and ``trigger.filter``.
        """
        if not self.trigger.matches(source, event_type):
            return False
        if not self.trigger.filter:
            return True
        scope = {"event": event, "trigger": _trigger_scope(source, event_type, event_id),
                 "vars": {**self.vars, **(vars or {})}}
        return bool(_evaluate(self.trigger.filter, scope, _where(self.name, None, "trigger.filter"), test=True))

    def all_steps(self) -> list[StepSpec]:
        """Top-level steps and the steps of their ``on_error`` branches, in file order."""
        out: list[StepSpec] = []
        for step in self.steps:
            out.append(step)
            if step.on_error is not None:
                out.extend(step.on_error.steps)
        return out


def _trigger_scope(source: str, event_type: str | None, event_id: str | None) -> dict[str, Any]:
    return {"source": source, "event_type": event_type, "event_id": event_id}


def make_scope(event: Any, *, source: str = "", event_type: str | None = None, event_id: str | None = None,
               vars: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fresh scope for one run: ``event``, ``trigger``, empty ``steps``/``errors``, ``vars``."""
    return {"event": event, "trigger": _trigger_scope(source, event_type, event_id), "steps": {},
            "errors": {}, "vars": dict(vars or {})}


def _where(workflow: str | None, step: str | None, part: str) -> str:
    """Where an expression is, for error messages: ``workflow x, step y, with.amount``."""
    return ", ".join([*([f"workflow {workflow}"] if workflow else []), *([f"step {step}"] if step else []), part])


def _evaluate(text: str, scope: Mapping[str, Any], at: str, *, test: bool = False) -> Any:
    """Evaluate (or ``test``) the expression ``text``; an ``ExpressionError`` says where it is (``at``)."""
    try:
        expr = compile_expression(text)
        return expr.test(scope) if test else expr.evaluate(scope)
    except ExpressionError as exc:
        raise exc.within(at) from exc


def resolve_params(with_: Mapping[str, Any], scope: Mapping[str, Any], *, workflow: str | None = None,
                   step: str | None = None) -> dict[str, Any]:
    """Resolve a step's ``with`` against ``scope`` (recursively through objects and lists).

    * ``"$/json/pointer"``: the value it points to; a pointer that does not resolve raises.
    * ``"${ jmespath }"`` (the whole string): the raw value of the expression (``null`` if missing).
    * ``"$$..."``: the literal string without its first ``$``.
    * anything else: itself.

    ``workflow`` and ``step`` name where the parameters are in error messages.

    Raises
    ------
    ValidationError
        When a pointer does not resolve or an expression fails or exceeds a limit (``ExpressionError``
        is a subclass); the message names the workflow, the step and the parameter (``with.amount``).
    """

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            if value.startswith("$$"):
                return value[1:]
            if is_pointer(value):
                return _pointer(scope, value[1:], _where(workflow, step, path))
            if is_template(value):
                return _evaluate(value, scope, _where(workflow, step, path))
            return value
        if isinstance(value, Mapping):
            return {k: walk(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return {k: walk(v, f"with.{k}") for k, v in with_.items()}


def _pointer(doc: Any, pointer: str, at: str) -> Any:
    cur = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise ValidationError(f"{at}: reference ${pointer} does not resolve (missing {part!r})")
    return cur


class FailureDecision(StrEnum):
    """What :meth:`Walker.failed` tells the engine to do."""

    PARK = "park"  # the dead-letter queue, as without on_error
    HANDLED = "handled"  # the on_error branch applies; keep calling next_step()


@dataclass(frozen=True, slots=True)
class StepFailure:
    """A step's failure as the walker sees it: what ``on_error`` may handle and ``errors.<step>`` shows.

    Only a *permanent* failure (not ``transient``, not a ``bug``) may be handled by ``on_error``.
    """

    code: str
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    transient: bool = False
    bug: bool = False


@dataclass
class Walker:
    """The state of one run as it moves through a workflow; pure and deterministic.

    The engine (or the dry run) calls, in a loop::

        while (step := walker.next_step()) is not None:
            if not walker.should_run(step):      # evaluates `when`; ExpressionError -> park at step
                walker.skip(step); continue
            params = walker.params(step)         # or resolve inside the checkpointed attempt
            ... attempts with the step's retry policy ...
            walker.succeeded(step, output)  or  walker.failed(step, error) -> PARK | HANDLED

    ``state()`` gives ``{succeeded: [...], skipped: [...], failed: {step: code}, outcome}``.
    """

    spec: WorkflowSpec
    scope: dict[str, Any]
    succeeded_ids: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)
    failed_codes: dict[str, str] = field(default_factory=dict)
    ended_by_branch: str | None = None
    _queue: list[StepSpec] = field(default_factory=list)
    _pos: int = 0

    @classmethod
    def start(cls, spec: WorkflowSpec, event: Any, *, source: str = "", event_type: str | None = None,
              event_id: str | None = None) -> Walker:
        scope = make_scope(event, source=source, event_type=event_type, event_id=event_id, vars=spec.vars)
        return cls(spec=spec, scope=scope, _queue=list(spec.steps))

    def next_step(self) -> StepSpec | None:
        """The next step to consider, or None when the run is over."""
        if self._pos >= len(self._queue):
            return None
        step = self._queue[self._pos]
        self._pos += 1
        return step

    def should_run(self, step: StepSpec) -> bool:
        """Whether ``step`` runs: no ``when``, or ``when`` is truthy in the current scope.

        Raises
        ------
        ExpressionError
            When ``when`` cannot be evaluated or exceeds a limit; the message names workflow and step.
        """
        return step.when is None or bool(_evaluate(step.when, self.scope, _where(self.spec.name, step.id, "when"),
                                                   test=True))

    def skip(self, step: StepSpec) -> None:
        self.skipped_ids.append(step.id)

    def params(self, step: StepSpec) -> dict[str, Any]:
        return resolve_params(step.with_, self.scope, workflow=self.spec.name, step=step.id)

    def succeeded(self, step: StepSpec, output: Any) -> None:
        self.scope["steps"][step.id] = output
        self.succeeded_ids.append(step.id)

    def failed(self, step: StepSpec, error: StepFailure) -> FailureDecision:
        """Record a failure that will not be retried any more and decide what follows.

        The ``on_error`` branch applies only to a *permanent* failure (``transient`` false and not a
        bug) of a step that declares one, and only if its ``when`` is true. Otherwise: PARK. A ``when``
        that cannot be evaluated also parks.
        """
        code = error.code or "internal_error"
        self.failed_codes[step.id] = code
        self.scope["errors"][step.id] = {"code": code, "message": error.message, "details": dict(error.details)}
        branch = step.on_error
        if branch is None or error.bug or error.transient:
            return FailureDecision.PARK
        if branch.when is not None:
            try:
                if not compile_expression(branch.when).test(self.scope):
                    return FailureDecision.PARK
            except ValidationError:
                return FailureDecision.PARK
        if branch.action is OnErrorAction.CONTINUE:
            return FailureDecision.HANDLED
        if branch.action is OnErrorAction.GOTO:
            target = next((i for i, s in enumerate(self._queue) if s.id == branch.goto and i >= self._pos), None)
            if target is None:  # not a later step (the loader rejects this; code-built specs may not)
                return FailureDecision.PARK
            for s in self._queue[self._pos:target]:
                self.skipped_ids.append(s.id)
            self._pos = target
            return FailureDecision.HANDLED
        self._queue = [*self._queue[:self._pos], *branch.steps]  # the branch, then the end of the run
        self.ended_by_branch = step.id
        return FailureDecision.HANDLED

    @property
    def outcome(self) -> str:
        """``succeeded``, or ``handled`` when an ``on_error`` branch with steps ended the run."""
        return "handled" if self.ended_by_branch else "succeeded"

    def state(self) -> dict[str, Any]:
        """Run state as data (connect's ``meta_path``): what succeeded, was skipped, failed."""
        return {"succeeded": list(self.succeeded_ids), "skipped": list(self.skipped_ids),
                "failed": dict(self.failed_codes), "outcome": self.outcome}
