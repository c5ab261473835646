"""Workflow diagrams a browser opens as they are: a standalone SVG, and one self-contained HTML page.

Both draw :func:`commerce_bridge.workflows.graph.flow` as placed by
:func:`commerce_bridge.workflows.graph_layout.layout`; nothing outside the package is used. Rules:

* the SVG is standalone: ``xmlns``, ``width``/``height`` and a ``viewBox``, no script, no reference
  to another file; every text is XML-escaped;
* each node is a ``<g class="node KIND" id="node-ID">`` (ID as in the Mermaid text: ``s_<step>``,
  ``w_<step>``, ``trigger``, ``done``, ``handled``) holding one shape and its text; each arrow a
  ``<g class="edge KIND">`` whose ``<title>`` names its ends; arrows end in an arrowhead marker,
  ``on_error`` arrows are dashed;
* the HTML page holds the SVG inline, the workflow's name, version, description and trigger, and a
  table of every step (branch steps included) with its step type's summary from the catalogue; it
  loads nothing (no script, stylesheet, font or image from anywhere).
"""

from __future__ import annotations

from html import escape

from commerce_bridge.workflows.catalogue import Catalogue
from commerce_bridge.workflows.graph import EdgeKind, NodeKind, flow
from commerce_bridge.workflows.graph_layout import (
    FONT_SIZE,
    LABEL_LINE_H,
    LABEL_SIZE,
    LINE_H,
    PAD_Y,
    Box,
    Layout,
    Route,
    layout,
)
from commerce_bridge.workflows.spec import OnErrorAction, StepSpec, WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue

__all__ = ["html", "svg"]

FONT_FAMILY = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace"
_FILL = {
    NodeKind.TRIGGER: ("#e8f5e9", "#2e7d32"),
    NodeKind.END: ("#eceff1", "#455a64"),
    NodeKind.HANDLED: ("#fff3e0", "#b45309"),
    NodeKind.STEP: ("#e3f2fd", "#1565c0"),
    NodeKind.BRANCH_STEP: ("#fff3e0", "#b45309"),
    NodeKind.DECISION: ("#fffde7", "#8d6e00"),
}
_EDGE_COLOUR = {EdgeKind.ON_ERROR: "#b45309", EdgeKind.NO: "#616161"}
_ARROW = "#37474f"


def _n(v: float) -> str:
    """A coordinate as SVG text: at most one decimal, no trailing zeros."""
    return f"{round(v, 1):g}"


def _shape(b: Box) -> str:
    fill, stroke = _FILL[b.node.kind]
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"'
    if b.node.kind is NodeKind.DECISION:
        d = b.h / 2
        pts = [
            (b.x, b.cy),
            (b.x + d, b.y),
            (b.x + b.w - d, b.y),
            (b.x + b.w, b.cy),
            (b.x + b.w - d, b.y + b.h),
            (b.x + d, b.y + b.h),
        ]
        return f'<polygon points="{" ".join(f"{_n(x)},{_n(y)}" for x, y in pts)}" {paint}/>'
    rx = min(b.h / 2, 18) if b.node.kind in (NodeKind.TRIGGER, NodeKind.END, NodeKind.HANDLED) else 6
    dash = ' stroke-dasharray="5 3"' if b.node.kind is NodeKind.BRANCH_STEP else ""
    return (
        f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" rx="{_n(rx)}" '
        f"{paint}{dash}/>"
    )


def _node(b: Box) -> str:
    bold = b.node.kind in (NodeKind.STEP, NodeKind.BRANCH_STEP)  # the step id
    spans = []
    y = b.y + PAD_Y + LINE_H * 0.75
    for i, part in enumerate(b.text):
        weight = ' font-weight="bold"' if bold and i == 0 else ""
        for line in part:
            spans.append(f'<tspan x="{_n(b.cx)}" y="{_n(y)}"{weight}>{escape(line, quote=False)}</tspan>')
            y += LINE_H
    title = escape(" / ".join(b.node.lines), quote=False)
    return (
        f'<g class="node {b.node.kind.value}" id="node-{escape(b.node.id)}"><title>{title}</title>'
        f'{_shape(b)}<text text-anchor="middle" fill="#1a1a1a">{"".join(spans)}</text></g>'
    )


def _edge(r: Route) -> tuple[str, str]:
    """The arrow's markup and its label's (labels are drawn last, above everything)."""
    e = r.edge
    colour = _EDGE_COLOUR.get(e.kind, _ARROW)
    marker = "cb-arrow-error" if e.kind is EdgeKind.ON_ERROR else "cb-arrow"
    dash = ' stroke-dasharray="6 4"' if e.kind is EdgeKind.ON_ERROR else ""
    d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in r.points)
    title = escape(f"{e.source} → {e.target}" + (f": {e.label}" if e.label else ""), quote=False)
    path = (
        f'<g class="edge {e.kind.value}"><title>{title}</title><path d="{d}" fill="none" stroke="{colour}" '
        f'stroke-width="1.4"{dash} marker-end="url(#{marker})"/></g>'
    )
    if r.label is None:
        return path, ""
    spans = "".join(
        f'<tspan x="{_n(r.label.x)}" y="{_n(r.label.y + i * LABEL_LINE_H)}">{escape(line, quote=False)}'
        "</tspan>"
        for i, line in enumerate(r.label.lines)
    )
    label = (
        f'<text class="label" text-anchor="{r.label.anchor}" font-size="{LABEL_SIZE}" fill="{colour}" '
        f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{spans}</text>'
    )
    return path, label


def _svg(lay: Layout) -> str:
    spec = lay.flow.spec
    w, h = _n(lay.width), _n(lay.height)
    edges = [_edge(r) for r in lay.routes]
    markers = "".join(
        f'<marker id="{mid}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for mid, colour in (("cb-arrow", _ARROW), ("cb-arrow-error", _EDGE_COLOUR[EdgeKind.ON_ERROR]))
    )
    return (
        "\n".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                f'font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}" role="img">',
                f"<title>{escape(f'{spec.name} version {spec.version}', quote=False)}</title>",
                f"<defs>{markers}</defs>",
                f'<rect class="background" width="{w}" height="{h}" fill="#ffffff"/>',
                '<g class="edges">',
                *(p for p, _ in edges),
                "</g>",
                '<g class="nodes">',
                *(_node(b) for b in lay.boxes.values()),
                "</g>",
                '<g class="labels">',
                *(label for _, label in edges if label),
                "</g>",
                "</svg>",
            ]
        )
        + "\n"
    )


def svg(spec: WorkflowSpec) -> str:
    """A standalone SVG diagram of ``spec`` (a file a browser opens directly)."""
    return _svg(layout(flow(spec)))


def _on_error(step: StepSpec) -> str:
    branch = step.on_error
    if branch is None:
        return ""
    when = f"when {branch.when}: " if branch.when else ""
    if branch.action is OnErrorAction.CONTINUE:
        return when + "continue"
    if branch.action is OnErrorAction.GOTO:
        return f"{when}goto {branch.goto}"
    return f"{when}run {', '.join(s.id for s in branch.steps)}, then end (handled)"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; }
h1 small { font-weight: normal; color: #555; }
figure { margin: 1.5rem 0; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace; }
tr.branch td:first-child { padding-left: 1.5rem; }
"""


def html(spec: WorkflowSpec, catalogue: Catalogue | None = None) -> str:
    """One self-contained HTML page: the diagram inline, the workflow's description and its steps.

    Parameters
    ----------
    spec
        The workflow.
    catalogue
        Where each step type's one-line summary comes from (default: the bridge's catalogue); a type
        it does not know gets an empty cell.
    """
    cat = catalogue or step_catalogue()
    t = spec.trigger

    def code(text: str) -> str:
        return f"<code>{escape(text)}</code>" if text else ""

    rows = []
    for step in spec.all_steps():
        top = step in spec.steps
        owner = "" if top else next(s.id for s in spec.steps if s.on_error and step in s.on_error.steps)
        step_type = cat.get(step.uses)
        retry = ", ".join(f"{k}={v}" for k, v in step.retry.items())
        cells = [
            code(step.id) + ("" if top else f" <small>(on_error of {code(owner)})</small>"),
            code(step.uses),
            escape(step_type.summary if step_type else ""),
            code(step.when or ""),
            code(retry),
            code(_on_error(step)),
        ]
        rows.append(
            f'<tr class="{"step" if top else "branch"}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    trigger = f"sources {code(', '.join(t.sources))}, event types {code(', '.join(t.event_types))}"
    if t.filter:
        trigger += f", filter {code(t.filter)}"
    title = escape(f"{spec.name} version {spec.version}")
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8">',
                f"<title>{title}</title>",
                f"<style>{_CSS}</style>",
                "</head>",
                "<body>",
                f"<h1>{escape(spec.name)} <small>version {escape(spec.version)}</small></h1>",
                *([f"<p>{escape(spec.description.strip())}</p>"] if spec.description.strip() else []),
                f"<p>Trigger: {trigger}.</p>",
                f"<figure>\n{svg(spec)}</figure>",
                "<table>",
                "<thead><tr><th>step</th><th>type</th><th>what it does</th><th>when</th><th>retry</th>"
                "<th>on error</th></tr></thead>",
                "<tbody>",
                *rows,
                "</tbody>",
                "</table>",
                "<p><small>Drawn by <code>commerce-bridge workflows graph --format html</code>.</small></p>",
                "</body>",
                "</html>",
            ]
        )
        + "\n"
    )
