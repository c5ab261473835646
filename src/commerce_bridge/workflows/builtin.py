"""Built-in workflows and the routing table (in code until the YAML layer lands)."""

from __future__ import annotations

from collections.abc import Iterable

from commerce_bridge.workflows.spec import StepSpec, Trigger, WorkflowSpec

CORE_AUDIT = WorkflowSpec(
    name="core.audit",
    version="1",
    trigger=Trigger(sources=("*",), event_types=("*",)),
    steps=(StepSpec(id="record", uses="core.audit.record"),),
)

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

    def route(self, source: str, event_type: str | None) -> list[WorkflowSpec]:
        return [w for w in self._workflows if w.trigger.matches(source, event_type)]

    def get(self, name: str, version: str) -> WorkflowSpec | None:
        return self._by_key.get((name, version))

    def all(self) -> list[WorkflowSpec]:
        return list(self._workflows)
