"""The workflows defined in code: ``core.audit`` (every installation) and ``core.forward`` (when an outbound
webhook is configured). The others are YAML files in ``builtin_files/``."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

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

