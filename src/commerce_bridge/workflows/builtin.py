"""Built-in workflows and the routing table (in code until the YAML layer lands)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from commerce_bridge.errors import ValidationError
from commerce_bridge.workflows.spec import StepSpec, Trigger, WorkflowSpec

CORE_AUDIT = WorkflowSpec(
    name="core.audit",
    version="1",
    trigger=Trigger(sources=("*",), event_types=("*",)),
    steps=(StepSpec(id="record", uses="core.audit.record"),),
    background=True,  # one run per event: it must not queue ahead of the payments
)

log = structlog.get_logger("commerce_bridge.workflows")

BUILTIN_WORKFLOWS: tuple[WorkflowSpec, ...] = (CORE_AUDIT,)


def forward_workflow(event_types: Iterable[str]) -> WorkflowSpec:
    """``core.forward``: post each matching event, signed, to the configured outbound webhook."""
    return WorkflowSpec(
        name="core.forward",
        version="1",
        trigger=Trigger(sources=("*",), event_types=tuple(event_types) or ("*",)),
        steps=(StepSpec(id="post", uses="outbound.webhook.post"),),
    )


class Router:
    """Finds the workflows a delivery starts."""

    def __init__(self, workflows: Iterable[WorkflowSpec]) -> None:
        self._workflows = list(workflows)
        self._by_key = {w.key: w for w in self._workflows}

    def route(self, source: str, event_type: str | None, event: Any = None,
              event_id: str | None = None) -> list[WorkflowSpec]:
        """Workflows whose trigger accepts the event; a filter that cannot be evaluated is no match."""
        out = []
        for w in self._workflows:
            try:
                if w.accepts(source, event_type, event, event_id):
                    out.append(w)
            except ValidationError as exc:
                log.warning("workflow.filter_failed", workflow=w.name, error=exc.message)
        return out

    def get(self, name: str, version: str) -> WorkflowSpec | None:
        return self._by_key.get((name, version))

    def all(self) -> list[WorkflowSpec]:
        return list(self._workflows)
