"""Workflow definitions as data: a trigger, and steps that each call one action of the catalogue.

Issue 2 ships the routing in code (:mod:`commerce_bridge.workflows.builtin`); the YAML format that
users edit builds the same objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ports import Action, StepContext

__all__ = ["Action", "StepContext", "StepSpec", "Trigger", "WorkflowSpec", "resolve_params"]


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step: ``uses`` is a step type ``system.resource.verb``; ``with_`` its parameters."""

    id: str
    uses: str
    with_: Mapping[str, Any] = field(default_factory=dict)

    @property
    def destination(self) -> str:
        """The system the step talks to (``stripe``, ``clarity``, ``erp``, ``core``...)."""
        return self.uses.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Trigger:
    """Which deliveries start the workflow: sources and event types (``*`` or a prefix ending in ``*``)."""

    sources: tuple[str, ...] = ("*",)
    event_types: tuple[str, ...] = ("*",)

    def matches(self, source: str, event_type: str | None) -> bool:
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

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


def resolve_params(with_: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``"$/json/pointer"`` strings by the value they point to in ``scope`` (event, steps)."""

    def walk(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("$/"):
            return _pointer(scope, value[1:])
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return {k: walk(v) for k, v in with_.items()}


def _pointer(doc: Any, pointer: str) -> Any:
    cur = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise ValidationError(f"Reference ${pointer} does not resolve (missing {part!r})")
    return cur
