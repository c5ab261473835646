"""The diagram of a workflow as data (:class:`Flow`: nodes and arrows) and its Mermaid text.

:func:`flow` is the one statement of what a workflow diagram shows; every renderer draws it as it
is (:func:`mermaid` here, :mod:`commerce_bridge.workflows.graph_svg` for SVG and HTML), so two formats
cannot disagree. Its rules:

* a ``trigger`` node (sources, event types, filter) comes first and a ``done`` node ("end") last;
* each step is one box (``s_<id>``: its id, its step type, its ``retry`` overrides if any);
* a step with ``when`` is preceded by a decision (``w_<id>``) whose "yes" arrow enters the step and
  whose "no" arrow skips to whatever follows the step;
* ``on_error`` arrows leave the step's box: to the next step for ``continue``, to the target's entry
  for ``goto`` (or to ``done`` when the target is unknown), or into the branch's first step for a list
  of steps; a branch's steps are chained like the top-level ones and end in ``handled``
  ("end (handled)"), a node that exists only when some step has such a branch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from commerce_bridge.workflows.spec import OnErrorAction, StepSpec, WorkflowSpec

__all__ = ["Edge", "EdgeKind", "Flow", "Node", "NodeKind", "flow", "mermaid"]


class NodeKind(StrEnum):
    """What a node of the diagram stands for."""

    TRIGGER = "trigger"
    END = "end"  # the run ends (``done``)
    HANDLED = "handled"  # the run ends after an on_error branch
    STEP = "step"
    BRANCH_STEP = "branch_step"  # a step of an on_error branch
    DECISION = "decision"  # a step's ``when``


class EdgeKind(StrEnum):
    """What an arrow means: the next node, a decision's answer, or a handled failure (dashed)."""

    NEXT = "next"
    YES = "yes"
    NO = "no"
    ON_ERROR = "on_error"


@dataclass(frozen=True, slots=True)
class Node:
    """A box of the diagram: ``lines`` is its label (plain text, one entry a line)."""

    id: str
    kind: NodeKind
    lines: tuple[str, ...]
    step: StepSpec | None = None
    branch_of: str | None = None  # the id of the step whose on_error branch holds this node


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow from node ``source`` to node ``target``; ``label`` is empty for ``NEXT``."""

    source: str
    target: str
    kind: EdgeKind
    label: str = ""


@dataclass(frozen=True, slots=True)
class Flow:
    """The diagram of ``spec``: ``items`` holds nodes and arrows in the order Mermaid declares them."""

    spec: WorkflowSpec
    items: tuple[Node | Edge, ...]

    @property
    def nodes(self) -> list[Node]:
        return [i for i in self.items if isinstance(i, Node)]

    @property
    def edges(self) -> list[Edge]:
        return [i for i in self.items if isinstance(i, Edge)]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def _entry(step: StepSpec) -> str:
    """The node an arrow into ``step`` points at: its decision when it has a ``when``."""
    return f"w_{step.id}" if step.when else f"s_{step.id}"


def _retry(step: StepSpec) -> str:
    return "retry: " + ", ".join(f"{k}={v}" for k, v in step.retry.items())


def _step(step: StepSpec, nxt: str, branch_of: str | None) -> Iterator[Node | Edge]:
    """A step's box, its decision (if it has ``when``) and the arrows between them and to ``nxt``."""
    box = (step.id, step.uses, *([_retry(step)] if step.retry else []))
    kind = NodeKind.BRANCH_STEP if branch_of else NodeKind.STEP
    yield Node(f"s_{step.id}", kind, box, step, branch_of)
    if step.when:
        yield Node(f"w_{step.id}", NodeKind.DECISION, ("when " + step.when,), step, branch_of)
        yield Edge(f"w_{step.id}", f"s_{step.id}", EdgeKind.YES, "yes")
        yield Edge(f"w_{step.id}", nxt, EdgeKind.NO, "no")
    yield Edge(f"s_{step.id}", nxt, EdgeKind.NEXT)


def flow(spec: WorkflowSpec) -> Flow:
    """The nodes and arrows of ``spec`` (the rules are in the module docstring)."""
    t = spec.trigger
    trigger = [f"{', '.join(t.sources)}: {', '.join(t.event_types)}"]
    if t.filter:
        trigger.append(f"filter: {t.filter}")
    items: list[Node | Edge] = [
        Node("trigger", NodeKind.TRIGGER, tuple(trigger)),
        Node("done", NodeKind.END, ("end",)),
    ]
    if any(s.on_error and s.on_error.action is OnErrorAction.STEPS for s in spec.steps):
        items.append(Node("handled", NodeKind.HANDLED, ("end (handled)",)))
    steps = list(spec.steps)
    items.append(Edge("trigger", _entry(steps[0]) if steps else "done", EdgeKind.NEXT))
    for i, step in enumerate(steps):
        nxt = _entry(steps[i + 1]) if i + 1 < len(steps) else "done"
        items.extend(_step(step, nxt, None))
        branch = step.on_error
        if branch is None:
            continue
        label = "on error" + (f" when {branch.when}" if branch.when else "")
        if branch.action is OnErrorAction.CONTINUE:
            items.append(Edge(f"s_{step.id}", nxt, EdgeKind.ON_ERROR, label + ": continue"))
        elif branch.action is OnErrorAction.GOTO:
            target = next((s for s in steps if s.id == branch.goto), None)
            items.append(
                Edge(
                    f"s_{step.id}",
                    _entry(target) if target else "done",
                    EdgeKind.ON_ERROR,
                    f"{label}: goto {branch.goto}",
                )
            )
        else:
            chain = list(branch.steps)
            items.append(Edge(f"s_{step.id}", _entry(chain[0]), EdgeKind.ON_ERROR, label))
            for j, b in enumerate(chain):
                items.extend(_step(b, _entry(chain[j + 1]) if j + 1 < len(chain) else "handled", step.id))
    return Flow(spec, tuple(items))


# ---- Mermaid ----------------------------------------------------------------------------------------
_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
_SHAPES = {
    NodeKind.TRIGGER: '(["{}"])',
    NodeKind.END: '(["{}"])',
    NodeKind.HANDLED: '(["{}"])',
    NodeKind.STEP: '["{}"]',
    NodeKind.BRANCH_STEP: '[/"{}"/]',
    NodeKind.DECISION: '{{"{}"}}',
}


def _label(*parts: str) -> str:
    """Escape each part for a quoted Mermaid label; parts are joined by line breaks."""
    return "<br/>".join("".join(_ESCAPES.get(c, c) for c in part) for part in parts)


def mermaid(spec: WorkflowSpec) -> str:
    """A ``flowchart TD`` of ``spec``: :func:`flow` in Mermaid's syntax.

    Shapes: the trigger and the ends are stadiums, steps boxes, branch steps parallelograms and
    decisions rhombi; ``on_error`` arrows are dotted and carry their label.
    """
    lines = ["flowchart TD"]
    for item in flow(spec).items:
        if isinstance(item, Node):
            lines.append(f"    {item.id}{_SHAPES[item.kind].format(_label(*item.lines))}")
        elif item.kind is EdgeKind.ON_ERROR:
            lines.append(f'    {item.source} -. "{_label(item.label)}" .-> {item.target}')
        elif item.label:
            lines.append(f"    {item.source} -- {item.label} --> {item.target}")
        else:
            lines.append(f"    {item.source} --> {item.target}")
    return "\n".join(lines) + "\n"
