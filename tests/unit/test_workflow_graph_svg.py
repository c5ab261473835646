"""SVG and HTML diagrams of workflows, and ``workflows graph --format/--output``.

The SVG is read back with ``xml.etree``: every step has one box (its id, its type, its retry), its
``when`` is written in its decision, boxes and labels do not overlap and stay inside the picture, each
arrow runs from its source's border to its target's and ends in an arrowhead, and there are as many
arrows as the spec implies (counted here from the spec, not from the renderer's model).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import combinations, pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli_workflows import workflows_app
from commerce_bridge.workflows.builtin import BUILTIN_WORKFLOWS, forward_workflow
from commerce_bridge.workflows.graph_layout import CHAR_W, LABEL_CHARS, NODE_CHARS
from commerce_bridge.workflows.graph_svg import html, svg
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.spec import OnError, OnErrorAction, StepSpec, Trigger, WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue

NS = "{http://www.w3.org/2000/svg}"
LABEL_CW = 6.8  # px a character of an arrow label (11 px monospace), as the layout estimates it
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1

MIXED = WorkflowSpec(
    "acme.mixed",
    "2",
    Trigger(("stripe", "clarity"), ("payment_intent.*",), filter='event.kind == "x" && event.n < `3`'),
    (
        StepSpec(
            "a",
            "core.audit.record",
            on_error=OnError(OnErrorAction.GOTO, goto="d"),
            retry={"max_attempts": 5, "base_delay_s": 2},
        ),
        StepSpec(
            "b",
            "stripe.refund.create",
            when="steps.a.ok && vars.x > `1`",
            on_error=OnError(OnErrorAction.CONTINUE, when="errors.b.code == 'not_found'"),
        ),
        StepSpec(
            "c",
            "clarity.order.get",
            on_error=OnError(
                OnErrorAction.STEPS,
                steps=(
                    StepSpec("c1", "notify.email.send", when="vars.notify"),
                    StepSpec("c2", "core.audit.record"),
                ),
            ),
        ),
        StepSpec(
            "d",
            "erp.invoice.upsert",
            when="vars.erp",
            on_error=OnError(OnErrorAction.STEPS, steps=(StepSpec("d1", "notify.email.send"),)),
        ),
        StepSpec("e", "core.audit.record", on_error=OnError(OnErrorAction.CONTINUE)),
    ),
    description='A <mixed> & "odd" workflow',
)
LONG_WHEN = (
    "contains(['requires_payment_method', 'requires_confirmation', 'requires_action'], steps.first.status)"
    " && steps.first.amount.minor > `0` && !(steps.first.reused)"
)
CROWDED = WorkflowSpec(
    "acme.crowded",
    "1",
    Trigger(("clarity",), ("salesorder.created",)),
    (
        StepSpec(
            "first", "clarity.order.get", on_error=OnError(OnErrorAction.GOTO, goto="last", when=LONG_WHEN)
        ),
        StepSpec(
            "second",
            "core.audit.record",
            when=LONG_WHEN,
            on_error=OnError(
                OnErrorAction.STEPS,
                when=LONG_WHEN,
                steps=(
                    StepSpec(
                        "handle_a_very_long_step_identifier_here",
                        "notify.email.send",
                        when=LONG_WHEN,
                        retry={"max_attempts": 3},
                    ),
                ),
            ),
        ),
        StepSpec("third", "core.audit.record", on_error=OnError(OnErrorAction.CONTINUE, when=LONG_WHEN)),
        StepSpec(
            "fourth",
            "core.audit.record",
            on_error=OnError(
                OnErrorAction.STEPS, steps=(StepSpec("fourth_fix", "core.audit.record", when="x < y"),)
            ),
        ),
        StepSpec("last", "core.audit.record", when="vars.z"),
    ),
)
EMPTY = WorkflowSpec("acme.empty", "1", Trigger(), ())
HAND_WRITTEN = [MIXED, CROWDED, EMPTY]
ALL = [*WorkflowRegistry.load().all(), *BUILTIN_WORKFLOWS, forward_workflow(["order.paid"]), *HAND_WRITTEN]


def expected_arrows(spec: WorkflowSpec) -> int:
    """Trigger to the first step; each step to what follows (plus yes and no with ``when``); on_error."""

    def chain(steps: tuple[StepSpec, ...]) -> int:
        return sum(3 if s.when else 1 for s in steps)

    return 1 + chain(spec.steps) + sum(1 + chain(s.on_error.steps) for s in spec.steps if s.on_error)


def lines(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(f"{NS}tspan")]


def bbox(g: ET.Element) -> Rect:
    shape = g.find(f"{NS}rect")
    if shape is not None:
        x, y = float(shape.get("x", 0)), float(shape.get("y", 0))
        return x, y, x + float(shape.get("width", 0)), y + float(shape.get("height", 0))
    polygon = g.find(f"{NS}polygon")
    assert polygon is not None, ET.tostring(g)
    pts = [tuple(map(float, p.split(","))) for p in (polygon.get("points") or "").split()]
    return min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)


def label_boxes(root: ET.Element) -> list[Rect]:
    """Where each arrow label's lines are, estimated as the layout estimates text."""
    out = []
    for text in root.iter(f"{NS}text"):
        if text.get("class") != "label":
            continue
        for span in text.iter(f"{NS}tspan"):
            x, y, w = float(span.get("x", 0)), float(span.get("y", 0)), len(span.text or "") * LABEL_CW
            x0 = x - w if text.get("anchor", text.get("text-anchor")) == "end" else x
            out.append((x0, y - 9, x0 + w, y + 3))
    return out


def disjoint(a: Rect, b: Rect) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def on_border(p: tuple[float, float], r: Rect) -> bool:
    x, y = p
    inside = r[0] - 0.6 <= x <= r[2] + 0.6 and r[1] - 0.6 <= y <= r[3] + 0.6
    return inside and min(abs(x - r[0]), abs(x - r[2]), abs(y - r[1]), abs(y - r[3])) <= 0.6


def path_points(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"([-\d.]+),([-\d.]+)", d)]


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_svg_has_one_box_per_step_with_its_type_when_and_retry(spec: WorkflowSpec) -> None:
    root = ET.fromstring(svg(spec))
    assert root.tag == f"{NS}svg" and root.get("width") and root.get("height")
    nodes = [g for g in root.iter(f"{NS}g") if (g.get("class") or "").startswith("node ")]
    for step in spec.all_steps():
        boxes = [g for g in nodes if step.id in lines(g) and step.uses in lines(g)]
        assert len(boxes) == 1, step.id
        assert boxes[0].get("id") == f"node-s_{step.id}"
        if step.retry:
            assert any(line.startswith("retry: ") for line in lines(boxes[0]))
        if step.when:
            (decision,) = [g for g in nodes if g.get("id") == f"node-w_{step.id}"]
            assert re.sub(r"\s", "", step.when) in re.sub(r"\s", "", "".join(lines(decision)))
    assert sum(1 for g in nodes if g.get("id") == "node-done") == 1


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_svg_boxes_and_labels_do_not_overlap_and_fit_the_picture(spec: WorkflowSpec) -> None:
    root = ET.fromstring(svg(spec))
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    nodes = [g for g in root.iter(f"{NS}g") if (g.get("class") or "").startswith("node ")]
    boxes = [bbox(g) for g in nodes]
    labels = label_boxes(root)
    for r in boxes + labels:
        assert r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height, r
    for a, b in combinations(boxes + labels, 2):
        assert disjoint(a, b), (a, b)
    for g, r in zip(nodes, boxes, strict=True):  # text fits its box as the layout measures it
        room = r[2] - r[0] - 2 * 12 - ((r[3] - r[1]) if "decision" in (g.get("class") or "") else 0)
        assert all(len(line) <= NODE_CHARS and len(line) * CHAR_W <= room for line in lines(g)), lines(g)
    assert all(
        len(line) <= LABEL_CHARS
        for t in root.iter(f"{NS}text")
        if t.get("class") == "label"
        for line in lines(t)
    )


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_svg_arrows_join_their_nodes_and_end_in_an_arrowhead(spec: WorkflowSpec) -> None:
    root = ET.fromstring(svg(spec))
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    markers = {m.get("id") for m in root.iter(f"{NS}marker")}
    nodes = {
        g.get("id", "")[len("node-") :]: bbox(g)
        for g in root.iter(f"{NS}g")
        if (g.get("class") or "").startswith("node ")
    }
    edges = [g for g in root.iter(f"{NS}g") if (g.get("class") or "").startswith("edge ")]
    assert len(edges) == expected_arrows(spec)
    for g in edges:
        title, path = g.find(f"{NS}title"), g.find(f"{NS}path")
        assert title is not None and path is not None
        source, target = (title.text or "").split(":")[0].split(" → ")
        pts = path_points(path.get("d", ""))
        assert on_border(pts[0], nodes[source]) and on_border(pts[-1], nodes[target]), title.text
        assert all(0 <= x <= width and 0 <= y <= height for x, y in pts)
        segments = list(pairwise(pts))
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in segments)  # right angles
        for (x0, y0), (x1, y1) in segments:  # never through a box (touching a border is fine)
            seg = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            assert all(disjoint(seg, (r[0] + 1, r[1] + 1, r[2] - 1, r[3] - 1)) for r in nodes.values()), (
                title.text
            )
        assert re.fullmatch(r"url\(#(.+)\)", path.get("marker-end", "")).group(1) in markers  # type: ignore[union-attr]
        assert ("stroke-dasharray" in path.attrib) == ("on_error" in (g.get("class") or ""))


def test_svg_draws_goto_continue_and_branches_to_their_targets() -> None:
    root = ET.fromstring(svg(MIXED))
    titles = {
        (g.get("class"), (g.findtext(f"{NS}title") or ""))
        for g in root.iter(f"{NS}g")
        if (g.get("class") or "").startswith("edge ")
    }
    assert ("edge on_error", "s_a → w_d: on error: goto d") in titles
    assert ("edge on_error", "s_b → s_c: on error when errors.b.code == 'not_found': continue") in titles
    assert ("edge on_error", "s_c → w_c1: on error") in titles and (
        "edge on_error",
        "s_d → s_d1: on error",
    ) in titles
    assert {
        ("edge next", "s_c2 → handled"),
        ("edge next", "s_d1 → handled"),
        ("edge no", "w_c1 → s_c2: no"),
        ("edge yes", "w_b → s_b: yes"),
        ("edge on_error", "s_e → done: on error: continue"),
    } <= titles
    labels = " ".join(" ".join(lines(t)) for t in root.iter(f"{NS}text") if t.get("class") == "label")
    assert "on error: goto d" in labels and "yes" in labels and "no" in labels
    assert 'filter: event.kind == "x" &amp;&amp; event.n &lt; `3`' in svg(MIXED)  # escaped, and parsed above
    assert [n.get("class") for n in root.iter(f"{NS}g") if n.get("id") in ("node-s_c1", "node-handled")] == [
        "node branch_step",
        "node handled",
    ]
    assert svg(MIXED) == svg(MIXED)  # deterministic


@pytest.mark.parametrize("spec", [MIXED, *WorkflowRegistry.load().all()], ids=lambda s: s.name)
def test_html_is_one_page_with_the_picture_and_a_row_per_step(spec: WorkflowSpec) -> None:
    page = html(spec)
    assert page.startswith("<!DOCTYPE html>") and svg(spec) in page
    assert re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE) is None
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", page))
    assert f"<h1>{spec.name} <small>version {spec.version}</small></h1>" in page
    rows = re.findall(r'<tr class="(?:step|branch)">(.*?)</tr>', page)
    assert len(rows) == len(spec.all_steps())
    for row, step in zip(rows, spec.all_steps(), strict=True):
        assert f"<code>{step.id}</code>" in row and f"<code>{step.uses}</code>" in row
        summary = step_catalogue().get(step.uses)
        assert summary is None or summary.summary.replace("'", "&#x27;") in row


def test_html_escapes_the_description_and_shows_on_error_and_retry() -> None:
    page = html(MIXED)
    assert "A &lt;mixed&gt; &amp; &quot;odd&quot; workflow" in page and "<mixed>" not in page
    assert "when errors.b.code == &#x27;not_found&#x27;: continue" in page
    assert "run c1, c2, then end (handled)" in page and "goto d" in page
    assert "max_attempts=5, base_delay_s=2" in page and "(on_error of <code>c</code>)" in page


# ---- the command --------------------------------------------------------------------------------------
runner = CliRunner()


@pytest.mark.parametrize(
    ("fmt", "start"), [("mermaid", "flowchart TD"), ("svg", "<svg xmlns="), ("html", "<!DOCTYPE html>")]
)
def test_graph_prints_or_writes_each_format(tmp_path: Path, fmt: str, start: str) -> None:
    printed = runner.invoke(
        workflows_app, ["graph", "clarity.order_to_cash", "--dir", str(tmp_path), "--format", fmt]
    )
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith(start) and printed.stderr == ""
    out = tmp_path / "out" / f"flow.{fmt}"
    out.parent.mkdir()
    written = runner.invoke(
        workflows_app,
        ["graph", "clarity.order_to_cash", "--dir", str(tmp_path), "--format", fmt, "--output", str(out)],
    )
    assert written.exit_code == 0, written.output
    assert written.stdout == "" and written.stderr == f"wrote {out}\n"
    assert out.read_text(encoding="utf-8").rstrip() == printed.stdout.rstrip()
    if fmt == "svg":
        ET.fromstring(out.read_text(encoding="utf-8"))


def test_graph_default_is_mermaid_and_a_bad_format_or_folder_is_refused(tmp_path: Path) -> None:
    default = runner.invoke(workflows_app, ["graph", "clarity.order_voided", "--dir", str(tmp_path)])
    assert default.exit_code == 0 and default.stdout.startswith("flowchart TD")
    bad = runner.invoke(
        workflows_app, ["graph", "clarity.order_voided", "--dir", str(tmp_path), "--format", "png"]
    )
    said = re.sub(r"[\s│]+", " ", bad.stderr)  # the message is in a box, wrapped
    assert bad.exit_code == 2 and "'png' is not one of 'mermaid', 'svg', 'html'" in said, said
    nowhere = runner.invoke(
        workflows_app,
        ["graph", "clarity.order_voided", "--dir", str(tmp_path), "-o", str(tmp_path / "missing" / "x.svg")],
    )
    assert nowhere.exit_code == 1 and "cannot write" in nowhere.stderr and "fix:" in nowhere.stderr
