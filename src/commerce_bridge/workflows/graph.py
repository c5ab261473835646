"""Mermaid flowcharts of workflows: steps in order, ``when`` as decisions, ``on_error`` branches dashed."""

from __future__ import annotations

from commerce_bridge.workflows.spec import OnErrorAction, StepSpec, WorkflowSpec

__all__ = ["mermaid"]

_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;"}


def _label(*parts: str) -> str:
    """Escape each part for a quoted Mermaid label; parts are joined by line breaks."""
    return "<br/>".join("".join(_ESCAPES.get(c, c) for c in part) for part in parts)


def _entry(step: StepSpec) -> str:
    """The node an arrow into ``step`` points at: its decision when it has a ``when``."""
    return f"w_{step.id}" if step.when else f"s_{step.id}"


def mermaid(spec: WorkflowSpec) -> str:
    """A ``flowchart TD`` of ``spec``.

    Each step is a box (id and step type). A step with ``when`` is preceded by a decision whose
    "no" arrow skips to the next step. ``on_error`` arrows are dashed: into the branch's steps (which
    end the run as "handled"), to the ``goto`` target, or on to the next step for ``continue``.
    """
    t = spec.trigger
    trigger = [f"{', '.join(t.sources)}: {', '.join(t.event_types)}"]
    if t.filter:
        trigger.append(f"filter: {t.filter}")
    lines = ["flowchart TD", f'    trigger(["{_label(*trigger)}"])', '    done(["end"])']
    has_branch = any(s.on_error and s.on_error.action is OnErrorAction.STEPS for s in spec.steps)
    if has_branch:
        lines.append('    handled(["end (handled)"])')
    steps = list(spec.steps)
    first = _entry(steps[0]) if steps else "done"
    lines.append(f"    trigger --> {first}")
    for i, step in enumerate(steps):
        nxt = _entry(steps[i + 1]) if i + 1 < len(steps) else "done"
        _step(lines, step, nxt)
        branch = step.on_error
        if branch is None:
            continue
        cond = f" when {branch.when}" if branch.when else ""
        if branch.action is OnErrorAction.CONTINUE:
            lines.append(f'    s_{step.id} -. "{_label("on error" + cond + ": continue")}" .-> {nxt}')
        elif branch.action is OnErrorAction.GOTO:
            target = next((s for s in steps if s.id == branch.goto), None)
            dest = _entry(target) if target else "done"
            lines.append(f'    s_{step.id} -. "{_label("on error" + cond + ": goto " + str(branch.goto))}" .-> {dest}')
        else:
            chain = list(branch.steps)
            lines.append(f'    s_{step.id} -. "{_label("on error" + cond)}" .-> {_entry(chain[0])}')
            for j, b in enumerate(chain):
                _step(lines, b, _entry(chain[j + 1]) if j + 1 < len(chain) else "handled", branch=True)
    return "\n".join(lines) + "\n"


def _step(lines: list[str], step: StepSpec, nxt: str, *, branch: bool = False) -> None:
    box = [step.id, step.uses]
    if step.retry:
        box.append("retry: " + ", ".join(f"{k}={v}" for k, v in step.retry.items()))
    shape = f'["{_label(*box)}"]' if not branch else f'[/"{_label(*box)}"/]'
    lines.append(f"    s_{step.id}{shape}")
    if step.when:
        lines.append(f'    w_{step.id}{{"{_label("when " + step.when)}"}}')
        lines.append(f"    w_{step.id} -- yes --> s_{step.id}")
        lines.append(f"    w_{step.id} -- no --> {nxt}")
    lines.append(f"    s_{step.id} --> {nxt}")
