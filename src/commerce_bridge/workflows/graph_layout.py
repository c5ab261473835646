"""Where each node and arrow of a workflow diagram goes: a small deterministic layout, no outside tool.

:func:`layout` places a :class:`~commerce_bridge.workflows.graph.Flow` on a plane (y grows down) for
:mod:`commerce_bridge.workflows.graph_svg`. Its rules:

* **Text.** A label is wrapped to :data:`NODE_CHARS` characters a line (arrow labels to
  :data:`LABEL_CHARS`) at spaces, a longer word cut; widths are estimated for a monospace font of
  :data:`FONT_SIZE` px at :data:`CHAR_W` px a character (a little over the 0.6 em of common monospace
  faces), so the same spec always gives the same picture and text fits its box.
* **Columns.** The main column holds the trigger, each top-level step (its decision above its box)
  and ``done``; the steps of all ``on_error`` branches are one column to the right, each branch
  starting level with its failing step (or below the branch before it), ``handled`` at the bottom.
  A node sits :data:`V_GAP` below the one above it, so boxes never overlap.
* **Arrows** are polylines ending on the target's border: straight down to the next node of the same
  column; else along a vertical *lane* beside the column, into the top of the target. "no" arrows
  use lanes left of the main column (right of the branch column); ``on_error`` arrows lanes right of
  the main column (the label above the arrow, in a band of its own), those into a branch lanes just
  before the branch column. Arrows whose vertical spans overlap get different lanes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from commerce_bridge.workflows.graph import Edge, EdgeKind, Flow, Node, NodeKind

__all__ = [
    "CHAR_W",
    "FONT_SIZE",
    "LABEL_CHARS",
    "NODE_CHARS",
    "Box",
    "Label",
    "Layout",
    "Route",
    "layout",
    "wrap",
]

FONT_SIZE = 13
CHAR_W = 8.0  # px a character at FONT_SIZE (monospace)
LINE_H = 17
PAD_X, PAD_Y = 12, 8
NODE_CHARS = 40  # characters a line in a node
LABEL_SIZE = 11
LABEL_CHAR_W = 6.8  # px a character at LABEL_SIZE
LABEL_LINE_H = 14
LABEL_CHARS = 28  # characters a line of an arrow's label
V_GAP = 40
LANE_GAP = 16
MARGIN = 24
Point = tuple[float, float]


def wrap(text: str, width: int) -> tuple[str, ...]:
    """``text`` in lines of at most ``width`` characters, broken at whitespace (a longer word is cut)."""
    return tuple(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or ("",)


@dataclass(frozen=True, slots=True)
class Box:
    """A placed node: top-left corner, size, and its label wrapped (one tuple per line of ``node.lines``)."""

    node: Node
    x: float
    y: float
    w: float
    h: float
    text: tuple[tuple[str, ...], ...]

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True, slots=True)
class Label:
    """An arrow's label: ``y`` is the first line's baseline; ``anchor`` is SVG's ``text-anchor``."""

    x: float
    y: float
    anchor: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """A placed arrow: the polyline from the source's border to the target's, and its label."""

    edge: Edge
    points: tuple[Point, ...]
    label: Label | None


@dataclass(frozen=True, slots=True)
class Layout:
    """The placed diagram; ``width`` and ``height`` hold every box, arrow and label plus a margin."""

    flow: Flow
    boxes: dict[str, Box]
    routes: tuple[Route, ...]
    width: float
    height: float


def _measure(node: Node) -> tuple[float, float, tuple[tuple[str, ...], ...]]:
    text = tuple(wrap(line, NODE_CHARS) for line in node.lines)
    flat = [s for part in text for s in part]
    h = len(flat) * LINE_H + 2 * PAD_Y
    w = max(len(s) for s in flat) * CHAR_W + 2 * PAD_X
    if node.kind is NodeKind.DECISION:  # a hexagon: its points stick out h/2 on each side
        w += h
    elif node.kind in (NodeKind.TRIGGER, NodeKind.END, NodeKind.HANDLED):  # rounded ends
        w += 16
    return max(w, 80.0), h, text


def _columns(flow: Flow) -> tuple[list[str], list[list[str]]]:
    """The main column and the branch groups, top to bottom (a decision above its step's box)."""
    ids = {n.id for n in flow.nodes}
    main: list[str] = ["trigger"]
    groups: dict[str, list[str]] = {}
    for n in flow.nodes:
        if n.kind not in (NodeKind.STEP, NodeKind.BRANCH_STEP):
            continue
        column = main if n.branch_of is None else groups.setdefault(n.branch_of, [])
        decision = "w_" + n.id[2:]
        column.extend([decision, n.id] if decision in ids else [n.id])
    return [*main, "done"], list(groups.values())


def _lanes(spans: Iterable[tuple[float, float]]) -> list[int]:
    """A lane index for each vertical span (lo, hi): overlapping spans get different lanes."""
    order = sorted(range(len(spans := list(spans))), key=lambda i: (spans[i][0], spans[i][1], i))
    ends: list[float] = []  # the lowest y used in each lane
    out = [0] * len(spans)
    for i in order:
        lo, hi = spans[i]
        lane = next((k for k, end in enumerate(ends) if end + 8 < lo), len(ends))
        if lane == len(ends):
            ends.append(hi)
        else:
            ends[lane] = hi
        out[i] = lane
    return out


def _label_height(edge: Edge) -> float:
    return len(wrap(edge.label, LABEL_CHARS)) * LABEL_LINE_H


def layout(flow: Flow) -> Layout:
    """Place every node and arrow of ``flow`` (the rules are in the module docstring)."""
    sizes = {n.id: _measure(n) for n in flow.nodes}
    main, groups = _columns(flow)
    column_of = {nid: 0 for nid in main} | {nid: 1 for g in groups for nid in g} | {"handled": 1}
    errors = {e.source: e for e in flow.edges if e.kind is EdgeKind.ON_ERROR}

    # vertical positions of the main column (an on_error label must fit above its arrow)
    tops: dict[str, float] = {}
    y, label_floor = float(MARGIN), float(MARGIN) - 7  # no label above the margin
    for nid in main:
        h = sizes[nid][1]
        top = y
        if nid in errors:
            top = max(top, label_floor + _label_height(errors[nid]) + 14 - h / 2)
            label_floor = top + h / 2
        tops[nid] = top
        y = top + h + V_GAP
    # vertical positions of the branch column
    floor = float("-inf")
    for group in groups:
        src = "s_" + (flow.node(group[0]).branch_of or "")
        top = max(tops[src] + sizes[src][1] / 2 - sizes[group[0]][1] / 2, floor)
        for nid in group:
            tops[nid] = top
            top += sizes[nid][1] + V_GAP
        floor = top
    if groups:
        tops["handled"] = floor

    def cy_of(nid: str) -> float:
        return tops[nid] + sizes[nid][1] / 2

    adjacent = {
        (a, b)
        for col in (main, [nid for g in groups for nid in g] + (["handled"] if groups else []))
        for a, b in pairwise(col)
    }
    # how each arrow (by index) is drawn: "straight" down to the next node of its column; along a lane
    # "left" of the main column ("no"), "right" of it (on_error within the main column), "entrance"
    # (on_error into a branch) or right of the branch column ("branch": "no", and the ends of branches)
    kinds: dict[int, str] = {}
    for i, e in enumerate(flow.edges):
        if e.kind in (EdgeKind.NEXT, EdgeKind.YES) and (e.source, e.target) in adjacent:
            kinds[i] = "straight"
        elif e.kind is EdgeKind.ON_ERROR:
            kinds[i] = "entrance" if column_of[e.target] == 1 else "right"
        else:
            kinds[i] = "left" if column_of[e.source] == 0 else "branch"
    spans: dict[str, list[tuple[int, tuple[float, float]]]] = {}
    for i, e in enumerate(flow.edges):
        if kinds[i] == "straight":
            continue
        end = cy_of(e.target) if kinds[i] == "entrance" else _enter_y(kinds[i], tops[e.target])
        spans.setdefault(kinds[i], []).append((i, (cy_of(e.source), end)))
    lane: dict[int, int] = {}
    count: dict[str, int] = {}
    for kind, items in spans.items():
        assigned = _lanes(s for _, s in items)
        lane.update({i: k for (i, _), k in zip(items, assigned, strict=True)})
        count[kind] = max(assigned, default=-1) + 1

    # horizontal positions, left to right
    half = max(sizes[nid][0] for nid in main) / 2
    left_lanes = count.get("left", 0)
    main_cx = MARGIN + (left_lanes * LANE_GAP + 2 + 24 if left_lanes else 0) + half
    label_x = main_cx + half + 10
    right0 = label_x + (LABEL_CHARS * LABEL_CHAR_W + 8 if errors else 0) + 14
    entrance0 = right0 + count.get("right", 0) * LANE_GAP + 8
    branch_half = max((sizes[nid][0] for g in groups for nid in g), default=0.0) / 2
    branch_half = max(branch_half, sizes["handled"][0] / 2 if groups else 0.0)
    branch_cx = entrance0 + count.get("entrance", 0) * LANE_GAP + 20 + branch_half
    cxs = (main_cx, branch_cx)
    boxes = {
        nid: Box(
            flow.node(nid),
            cxs[column_of[nid]] - sizes[nid][0] / 2,
            tops[nid],
            sizes[nid][0],
            sizes[nid][1],
            sizes[nid][2],
        )
        for nid in [*main, *(n for g in groups for n in g), *(["handled"] if groups else [])]
    }

    def lane_x(i: int) -> float:
        k = lane[i]
        return {
            "left": main_cx - half - 16 - k * LANE_GAP,
            "right": right0 + k * LANE_GAP,
            "entrance": entrance0 + k * LANE_GAP,
            "branch": branch_cx + branch_half + 16 + k * LANE_GAP,
        }[kinds[i]]

    routes = []
    for i, e in enumerate(flow.edges):
        s, t = boxes[e.source], boxes[e.target]
        routes.append(_route(e, kinds[i], s, t, lane_x(i) if kinds[i] != "straight" else 0.0, label_x))
    width = (
        max(
            [b.x + b.w for b in boxes.values()]
            + [x + (24 if r.edge.kind is EdgeKind.NO else 0) for r in routes for x, _ in r.points]
            + ([label_x + LABEL_CHARS * LABEL_CHAR_W] if errors else [])
        )
        + MARGIN
    )
    height = max(b.y + b.h for b in boxes.values()) + MARGIN
    return Layout(flow, boxes, tuple(routes), round(width), round(height))


def _enter_y(kind: str, top: float) -> float:
    """The height at which a lane arrow turns toward the top of its target: ``on_error`` arrows turn
    lower than the others, so a dashed arrow and a "no" arrow into the same node stay apart."""
    return top - V_GAP * (0.3 if kind == "right" else 0.6)


def _route(e: Edge, kind: str, s: Box, t: Box, lx: float, label_x: float) -> Route:
    """The polyline and label of one arrow drawn as ``kind`` (see :func:`layout`), along lane ``lx``."""
    if kind == "straight":
        points: list[Point] = [(s.cx, s.y + s.h), (t.cx, t.y)]
        label = Label(s.cx + 6, (s.y + s.h + t.y) / 2 + 4, "start", (e.label,)) if e.label else None
        return Route(e, tuple(points), label)
    start = (s.x, s.cy) if kind == "left" else (s.x + s.w, s.cy)
    if kind == "entrance":
        points = [start, (lx, s.cy), (lx, t.cy), (t.x, t.cy)] if s.cy != t.cy else [start, (t.x, t.cy)]
    else:
        ye = _enter_y(kind, t.y)
        points = [start, (lx, s.cy), (lx, ye), (t.cx, ye), (t.cx, t.y)]
    label = None
    if e.kind is EdgeKind.ON_ERROR:
        lines = wrap(e.label, LABEL_CHARS)
        label = Label(label_x, s.cy - 6 - (len(lines) - 1) * LABEL_LINE_H, "start", lines)
    elif e.label:  # "no", beside the lane just below the turn
        label = Label(
            lx - 4 if kind == "left" else lx + 4, s.cy + 14, "end" if kind == "left" else "start", (e.label,)
        )
    return Route(e, tuple((round(x, 1), round(y, 1)) for x, y in points), label)
