"""Workflow files: YAML text -> validated :class:`~commerce_bridge.workflows.spec.WorkflowSpec`, with errors by line.

Validation has two layers. The JSON Schema generated from the step catalogue checks the shape
(keys, types, each step type's parameters). Semantic checks then catch what a schema cannot: unknown
step types (with a suggestion), duplicate step ids, expressions that do not compile, references to
unknown or later steps, undefined ``vars``, and ``goto`` targets that do not lie ahead. Every problem
names the file, the line and column, and a fix.

A problem never shows more of a file than the start of the offending value's first line: a file that
resolves outside its folder (a symbolic link, ``..``), or is not a regular file, is refused unread
(:func:`load_file`), so printing problems cannot show the content of any other file.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from commerce_bridge.errors import ValidationError
from commerce_bridge.workflows.catalogue import Catalogue, workflow_schema
from commerce_bridge.workflows.expressions import (
    SCOPE_ROOTS,
    ExpressionError,
    compile_expression,
    is_pointer,
    is_template,
)
from commerce_bridge.workflows.spec import OnError, OnErrorAction, StepSpec, Trigger, WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue

__all__ = ["LoadedWorkflow", "Problem", "WorkflowFileError", "check_text", "load_file", "load_text"]

Path_ = tuple[str | int, ...]
DOCS = "docs/reference/workflows.md"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workflow file."""

    file: str
    line: int
    column: int
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}\n    fix: {self.fix}"


class WorkflowFileError(ValidationError):
    """A workflow file is not valid."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        head = f"{len(problems)} problem(s) in {problems[0].file}" if problems else "invalid workflow file"
        super().__init__("\n".join([head, *map(str, problems)]),
                         suggested_fix="correct the file as each problem says, then run "
                                       "`commerce-bridge workflows validate`")


@dataclass(frozen=True, slots=True)
class LoadedWorkflow:
    """A workflow and the file it came from (``digest``: sha256 of the text)."""

    spec: WorkflowSpec
    file: str
    text: str
    digest: str


def load_file(path: str | Path, catalogue: Catalogue | None = None, *,
              folder: str | Path | None = None) -> LoadedWorkflow:
    """Read and validate one workflow file.

    The file must really be inside ``folder`` (default: the folder it is listed in): a symbolic link
    or a ``..`` that resolves outside it is refused without being read, so that nothing printed about
    a workflow file (a problem, ``workflows show``) can show another file's content.

    Raises
    ------
    WorkflowFileError
        With every problem found (file, line, column, message, fix).
    """
    p = Path(path)
    try:
        text = _read_inside(p, Path(folder) if folder is not None else p.parent)
    except _Refused as exc:
        raise WorkflowFileError([Problem(str(p), 1, 1, f"refused: {exc}",
                                         "workflow files must be regular files inside the workflows folder; "
                                         "copy the file there instead of linking to it")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowFileError([Problem(str(p), 1, 1, f"cannot read the file: {_read_error(exc)}",
                                         "check the path and that the file is UTF-8 text")]) from exc
    return load_text(text, str(p), catalogue)


class _Refused(Exception):  # internal: a file that is not read, and why
    pass


def _read_inside(p: Path, folder: Path) -> str:
    """The text of ``p`` if its real path lies inside ``folder`` and it is a regular file."""
    real = p.resolve()
    if not real.is_relative_to(folder.resolve()):
        why = "a link that leads" if p.is_symlink() else "a path that leads"
        raise _Refused(f"{why} outside the workflows folder {folder}; it was not read")
    # O_NOFOLLOW: a link swapped in after the check is not followed; O_NONBLOCK: a FIFO cannot hang us
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _Refused("not a regular file; it was not read")
        return f.read().decode("utf-8")


def _read_error(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):  # its str() quotes the bytes around the error
        return f"not UTF-8 text (byte {exc.start})"
    return exc.strerror or type(exc).__name__


def load_text(text: str, file: str = "<string>", catalogue: Catalogue | None = None) -> LoadedWorkflow:
    """Validate workflow YAML ``text`` and build its spec (see :func:`load_file`)."""
    problems, data = _check(text, file, catalogue or step_catalogue())
    if problems:
        raise WorkflowFileError(problems)
    return LoadedWorkflow(_build(data), file, text, hashlib.sha256(text.encode()).hexdigest())


def check_text(text: str, file: str = "<string>", catalogue: Catalogue | None = None) -> list[Problem]:
    """Every problem of workflow YAML ``text`` (empty when valid)."""
    return _check(text, file, catalogue or step_catalogue())[0]


# ---- parsing with positions -----------------------------------------------------------------------
class _Marks:
    def __init__(self) -> None:
        self.values: dict[Path_, tuple[int, int]] = {}
        self.keys: dict[Path_, tuple[int, int]] = {}

    def at(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))


def _parse(text: str, file: str) -> tuple[Any, _Marks, list[Problem]]:
    marks = _Marks()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        # the parser's short reason only: str(exc) quotes lines of the file around the error
        what = _excerpt(getattr(exc, "problem", None) or str(exc))
        return None, marks, [Problem(file, line, col, f"not valid YAML: {what}",
                                     "fix the YAML syntax (indentation, quotes, colons)")]
    if node is None:
        return None, marks, [Problem(file, 1, 1, "the file is empty", "write a workflow; see " + DOCS)]
    problems: list[Problem] = []
    _mark_nodes(node, (), marks, problems, file)
    return data, marks, problems


def _mark_nodes(node: yaml.Node, path: Path_, marks: _Marks, problems: list[Problem], file: str) -> None:
    marks.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(file, line, key_node.start_mark.column + 1,
                                        f"key {key!r} appears twice (first on line {seen[key]})",
                                        "keep one of them: YAML would silently use the last"))
            seen[key] = line
            marks.keys[(*path, key)] = (line, key_node.start_mark.column + 1)
            _mark_nodes(value_node, (*path, key), marks, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _mark_nodes(item, (*path, i), marks, problems, file)


# ---- checks ---------------------------------------------------------------------------------------
@functools.cache
def _default_validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(workflow_schema(step_catalogue()))


def _validator(cat: Catalogue) -> jsonschema.protocols.Validator:
    if cat is step_catalogue():
        return _default_validator()
    return jsonschema.Draft202012Validator(workflow_schema(cat))


def _check(text: str, file: str, cat: Catalogue) -> tuple[list[Problem], Any]:
    data, marks, problems = _parse(text, file)
    if data is None and not problems:
        problems.append(Problem(file, 1, 1, "the file is empty", "write a workflow; see " + DOCS))
    if problems:
        return problems, data
    for err in _validator(cat).iter_errors(data):
        path = tuple(err.absolute_path)
        if len(path) >= 3 and path[-1] == "uses" and err.validator == "enum":
            continue  # reported by the semantic check, with a suggestion
        problems.append(_schema_problem(err, path, marks, file))
    if isinstance(data, Mapping):
        problems += _semantic(data, marks, file, cat)
    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda p: (p.line, p.column))
    return unique, data


def _schema_problem(err: jsonschema.ValidationError, path: Path_, marks: _Marks, file: str) -> Problem:
    where = _where(path)
    v = err.validator
    _shorten_quoted_values(err)
    if v == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(map(str, err.instance)) - set(allowed))
        line, col = marks.at((*path, extra[0]) if extra else path, key=True)
        nested = " (branch steps cannot have their own on_error)" if "on_error" in extra and "on_error" in path else ""
        return Problem(file, line, col, f"{where}: unknown key(s) {', '.join(extra)}{nested}",
                       f"remove or correct it; allowed here: {', '.join(allowed)}")
    line, col = marks.at(path)
    if v == "required":
        line, col = marks.at(path, key=True)
        return Problem(file, line, col, f"{where}: {err.message}", f"add the key ({DOCS})")
    if path and path[-1] == "on_error" and v in ("oneOf", "type"):
        return Problem(file, line, col, f"{where}: give exactly one of steps, goto or continue",
                       "use a list of steps, {steps: [...]}, {goto: step_id} or {continue: true}")
    if v in ("anyOf", "oneOf") and err.context:
        deeper = best_match(err.context)
        return Problem(file, line, col, f"{where}: {deeper.message}",
                       "give a literal of the declared type or an expression \"${ ... }\" / \"$/pointer\"")
    if v == "pattern" and path and path[-1] in ("id", "goto"):
        return Problem(file, line, col, f"{where}: {err.message}",
                       "step ids are snake_case: lower-case letters, digits and _, starting with a letter")
    if v == "pattern" and path == ("name",):
        return Problem(file, line, col, f"{where}: {err.message}", "use dotted snake_case, e.g. clarity.order_to_cash")
    if v == "type":
        return Problem(file, line, col, f"{where}: {err.message}", f"use a value of type {err.validator_value}")
    return Problem(file, line, col, f"{where}: {err.message}", f"see {DOCS} and `commerce-bridge workflows catalogue`")


_EXCERPT_CHARS = 60


def _excerpt(text: str) -> str:
    """At most the start of the first line of ``text`` (a message never quotes more of a file)."""
    first = text.split("\n", 1)[0].split("\\n", 1)[0]  # a line break, or one escaped inside a repr
    if len(first) > _EXCERPT_CHARS:
        return first[:_EXCERPT_CHARS - 3] + "..."
    return first if first == text else first + "..."


def _shorten_quoted_values(err: jsonschema.ValidationError) -> None:
    """jsonschema's messages quote the offending value whole (a file of one long string: all of it)."""
    stack = [err]
    while stack:  # the error and every error under it (best_match may answer any of them)
        e = stack.pop()
        stack.extend(e.context or ())
        quoted = repr(e.instance)
        if quoted in e.message and _excerpt(quoted) != quoted:
            e.message = e.message.replace(quoted, _excerpt(quoted))


def _where(path: Path_) -> str:
    if not path:
        return "workflow"
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


@dataclass
class _Ctx:
    file: str
    marks: _Marks
    problems: list[Problem]
    vars: Mapping[str, Any]
    all_ids: set[str]

    def add(self, path: Path_, message: str, fix: str) -> None:
        line, col = self.marks.at(path)
        self.problems.append(Problem(self.file, line, col, message, fix))


def _semantic(data: Mapping[str, Any], marks: _Marks, file: str, cat: Catalogue) -> list[Problem]:
    raw_vars = data.get("vars")
    ctx = _Ctx(file, marks, [], raw_vars if isinstance(raw_vars, Mapping) else {}, set())
    steps = data.get("steps")
    steps = steps if isinstance(steps, list) else []
    flat: list[tuple[Path_, Mapping[str, Any]]] = []
    for i, s in enumerate(steps):
        if isinstance(s, Mapping):
            flat.append((("steps", i), s))
            for j, b in enumerate(_branch_steps(s)):
                flat.append(((*_branch_path(s, i), j), b))
    first_seen: dict[str, int] = {}
    for path, s in flat:
        step_id = s.get("id")
        if isinstance(step_id, str):
            ctx.all_ids.add(step_id)
            if step_id in first_seen:
                ctx.add((*path, "id"), f"step id {step_id!r} is used twice (first on line {first_seen[step_id]})",
                        "give every step, including on_error branch steps, its own id")
            else:
                first_seen[step_id] = marks.at((*path, "id"))[0]
        uses = s.get("uses")
        if isinstance(uses, str) and uses not in cat:
            close = difflib.get_close_matches(uses, cat.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            ctx.add((*path, "uses"), f"unknown step type {uses!r}",
                    f"{hint}`commerce-bridge workflows catalogue` lists the step types")
    trigger = data.get("trigger")
    if isinstance(trigger, Mapping) and isinstance(trigger.get("filter"), str):
        _check_expr(ctx, ("trigger", "filter"), trigger["filter"], steps=set(), errors=set(),
                    roots=("event", "trigger", "vars"))
    top_ids = [s.get("id") if isinstance(s, Mapping) else None for s in steps]
    earlier: set[str] = set()
    for i, s in enumerate(steps):
        if not isinstance(s, Mapping):
            continue
        raw_id = s.get("id")
        sid: str = raw_id if isinstance(raw_id, str) else f"#{i}"
        _check_step(ctx, ("steps", i), s, steps=earlier, errors=earlier)
        branch = s.get("on_error")
        if isinstance(branch, Mapping):
            if isinstance(branch.get("when"), str):
                _check_expr(ctx, ("steps", i, "on_error", "when"), branch["when"], steps=earlier,
                            errors=earlier | {sid})
            goto = branch.get("goto")
            if isinstance(goto, str):
                if goto not in top_ids:
                    ctx.add(("steps", i, "on_error", "goto"), f"goto {goto!r}: no top-level step has that id",
                            "name a later step of this workflow")
                elif top_ids.index(goto) <= i:
                    ctx.add(("steps", i, "on_error", "goto"), f"goto {goto!r} jumps backwards",
                            "goto may only jump forward (loops are not allowed); name a later step")
        inner = set(earlier)
        for j, b in enumerate(_branch_steps(s)):
            _check_step(ctx, (*_branch_path(s, i), j), b, steps=inner, errors=earlier | {sid})
            branch_id = b.get("id")
            if isinstance(branch_id, str):
                inner.add(branch_id)
        earlier.add(sid)
    return ctx.problems


def _branch_steps(step: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    branch = step.get("on_error")
    items = branch if isinstance(branch, list) else branch.get("steps") if isinstance(branch, Mapping) else None
    return [b for b in items if isinstance(b, Mapping)] if isinstance(items, list) else []


def _branch_path(step: Mapping[str, Any], i: int) -> Path_:
    return ("steps", i, "on_error") if isinstance(step.get("on_error"), list) else ("steps", i, "on_error", "steps")


def _check_step(ctx: _Ctx, path: Path_, step: Mapping[str, Any], *, steps: set[str], errors: set[str]) -> None:
    if isinstance(step.get("when"), str):
        _check_expr(ctx, (*path, "when"), step["when"], steps=steps, errors=errors)
    with_ = step.get("with")
    if isinstance(with_, Mapping):
        for sub, value in _strings(with_, (*path, "with")):
            if value.startswith("$$"):
                continue
            if is_template(value):
                _check_expr(ctx, sub, value, steps=steps, errors=errors)
            elif is_pointer(value):
                parts = [p.replace("~1", "/").replace("~0", "~") for p in value[2:].split("/")]
                _check_refs(ctx, sub, value, [tuple(parts)], steps=steps, errors=errors, roots=SCOPE_ROOTS)


def _strings(value: Any, path: Path_) -> Iterable[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _check_expr(ctx: _Ctx, path: Path_, text: str, *, steps: set[str], errors: set[str],
                roots: tuple[str, ...] = SCOPE_ROOTS) -> None:
    try:
        expr = compile_expression(text)
    except ExpressionError as exc:
        ctx.add(path, exc.message, "write valid JMESPath: quote string literals 'like this', numbers `1` "
                                   "in backticks; see " + DOCS)
        return
    for trap in expr.pitfalls():
        ctx.add(path, f"{text!r}: {trap}", "add the parentheses")
    _check_refs(ctx, path, text, expr.root_paths(), steps=steps, errors=errors, roots=roots)


def _check_refs(ctx: _Ctx, path: Path_, text: str, refs: list[tuple[str, ...]], *, steps: set[str],
                errors: set[str], roots: tuple[str, ...]) -> None:
    for ref in refs:
        root = ref[0]
        if root in ("null", "true", "false") and len(ref) == 1:
            ctx.add(path, f"{text!r}: bare {root} is a field name in JMESPath, not a literal",
                    f"write `{root}` in backticks, or test truthiness (a missing value is null)")
            continue
        if root not in roots:
            ctx.add(path, f"{text!r} reads {root!r}, which is not in scope here",
                    f"start the reference with one of: {', '.join(roots)}")
            continue
        if len(ref) < 2:
            continue
        name = ref[1]
        if root == "vars" and name not in ctx.vars:
            ctx.add(path, f"{text!r} reads vars.{name}, which the workflow does not define",
                    f"add {name} under vars: or correct the name")
        elif root in ("steps", "errors"):
            allowed = steps if root == "steps" else errors
            if name in allowed:
                continue
            if name in ctx.all_ids:
                ctx.add(path, f"{text!r} reads {root}.{name}, which is not available here (it runs later or in "
                              "another branch)", "refer only to steps that run before this one")
            else:
                close = difflib.get_close_matches(name, sorted(ctx.all_ids), n=1)
                ctx.add(path, f"{text!r} reads {root}.{name}, but no step has that id",
                        f"did you mean {close[0]!r}?" if close else "correct the step id")


# ---- building the spec ----------------------------------------------------------------------------
def _build(data: Mapping[str, Any]) -> WorkflowSpec:
    trig = data["trigger"]
    trigger = Trigger(sources=tuple(trig.get("sources") or ("*",)), event_types=tuple(trig["event_types"]),
                      filter=trig.get("filter"))
    return WorkflowSpec(name=data["name"], version=str(data["version"]), trigger=trigger,
                        steps=tuple(_build_step(s) for s in data["steps"]),
                        description=str(data.get("description") or "").strip(), vars=dict(data.get("vars") or {}))


def _build_step(s: Mapping[str, Any]) -> StepSpec:
    return StepSpec(id=s["id"], uses=s["uses"], with_=dict(s.get("with") or {}), when=s.get("when"),
                    retry=dict(s.get("retry") or {}), on_error=_build_on_error(s.get("on_error")),
                    description=str(s.get("description") or ""))


def _build_on_error(raw: Any) -> OnError | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        return OnError(OnErrorAction.STEPS, steps=tuple(_build_step(b) for b in raw))
    when = raw.get("when")
    if "steps" in raw:
        return OnError(OnErrorAction.STEPS, steps=tuple(_build_step(b) for b in raw["steps"]), when=when)
    if "goto" in raw:
        return OnError(OnErrorAction.GOTO, goto=raw["goto"], when=when)
    return OnError(OnErrorAction.CONTINUE, when=when)
