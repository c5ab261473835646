"""The routing policy, in one place: which workflows a delivery starts, and which version a pinned run walks.

Rules
-----
* A delivery starts the **active** version (see :class:`~commerce_bridge.workflows.registry.WorkflowRegistry`)
  of every **enabled** workflow whose trigger matches its source and event type and whose ``filter`` is
  true for the event. Disabled: named in ``CB_WORKFLOWS_DISABLED`` or needing a connector that is not
  configured (bootstrap decides the set).
* A filter sees the vars the run will be pinned with (``workflow_vars``, over the file's own), so a
  filter and the run's steps always read the same values.
* A filter that cannot be evaluated for an event is no match, logged at error level
  (``workflow.filter_failed``) and appended to ``filter_errors``: the dispatcher files the delivery in
  the dead-letter queue for that workflow, so nothing is dropped silently, and the other workflows
  still start.
* **Echo suppression**: when the event is our own write coming back (``echo`` says so), only the
  workflows that see every source (``sources: ["*"]``: audit, forward) start.
* A pinned run asks for its exact version (and text digest) with :meth:`Router.get`, active or not.
* :meth:`Router.dispatch_priorities`: the triggers of the enabled workflows with a priority
  (``CB_WORKFLOW_PRIORITIES``), highest first; the dispatcher takes their deliveries first.

This is the only implementation of the engine's ``WorkflowRouter`` protocol (``engine.dispatch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ports import DispatchPriority
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.spec import WorkflowSpec

log = structlog.get_logger("commerce_bridge.workflows")


class Router:
    """Routes deliveries to the registry's active, enabled workflows; finds any pinned version."""

    def __init__(self, registry: WorkflowRegistry, *, disabled: Iterable[str] = (),
                 echo: Callable[[str, Any], bool] | None = None,
                 workflow_vars: Mapping[str, Mapping[str, Any]] | None = None,
                 priorities: Mapping[str, int] | None = None) -> None:
        self.registry = registry
        self.disabled = set(disabled)
        self._echo = echo
        self.workflow_vars = {name: dict(v) for name, v in (workflow_vars or {}).items()}
        self.priorities = dict(priorities or {})

    def route(self, source: str, event_type: str | None, event: Any = None, event_id: str | None = None, *,
              filter_errors: list[tuple[WorkflowSpec, str]] | None = None) -> list[WorkflowSpec]:
        """The workflows this delivery starts (``event`` None: by trigger only, filters not evaluated)."""
        out = []
        for spec in self.all():
            if not spec.trigger.matches(source, event_type):
                continue
            if event is None or not spec.trigger.filter:
                out.append(spec)
                continue
            try:
                if spec.accepts(source, event_type, event, event_id, self.workflow_vars.get(spec.name)):
                    out.append(spec)
            except ValidationError as exc:
                log.error("workflow.filter_failed", workflow=spec.name, version=spec.version, source=source,
                          event_type=event_type, event_id=event_id, error=exc.message)
                if filter_errors is not None:
                    filter_errors.append((spec, exc.message))
        if out and self._echo is not None and self._echo(source, event):
            # our own write came back: only the workflows that see every event (audit, forward) run
            return [w for w in out if w.trigger.sources == ("*",)]
        return out

    def get(self, name: str, version: str, digest: str | None = None) -> WorkflowSpec | None:
        return self.registry.get(name, version, digest)

    def digest(self, name: str, version: str) -> str | None:
        return self.registry.digest(name, version)

    def all(self) -> list[WorkflowSpec]:
        """The active version of every enabled workflow."""
        return [w for w in self.registry.all() if w.name not in self.disabled]

    def event_types(self, source: str) -> list[str]:
        """The event types (patterns: exact, ``prefix*``, ``*``) the enabled workflows start on for ``source``."""
        return sorted({t for w in self.all() for t in w.trigger.event_types if w.trigger.matches(source, t)})

    def dispatch_priorities(self) -> list[DispatchPriority]:
        found = [DispatchPriority(w.trigger.sources, w.trigger.event_types, self.priorities[w.name])
                 for w in self.all() if self.priorities.get(w.name)]
        return sorted(found, key=lambda p: -p.priority)


__all__ = ["Router"]
