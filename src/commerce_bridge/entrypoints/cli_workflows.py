"""``commerce-bridge workflows ...``: list, validate, show, graph and dry-run workflow files; print the schema and catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from commerce_bridge.workflows.builtin import BUILTIN_WORKFLOWS
from commerce_bridge.workflows.catalogue import catalogue_markdown, default_catalogue, workflow_schema
from commerce_bridge.workflows.dryrun import dry_run
from commerce_bridge.workflows.graph import mermaid
from commerce_bridge.workflows.loader import WorkflowFileError, load_file
from commerce_bridge.workflows.registry import RegisteredWorkflow, WorkflowRegistry

workflows_app = typer.Typer(help="Workflow files: list, validate, show, graph, dry-run.", no_args_is_help=True)
err_console = Console(stderr=True)

DirOpt = Annotated[Path | None, typer.Option(
    "--dir", envvar="CB_WORKFLOWS_DIR",
    help="Folder of user workflow files that add to or override the built-ins.")]
VersionOpt = Annotated[str | None, typer.Option("--version", help="A loaded version (default: the active one).")]


def _registry(folder: Path | None, *, quiet: bool = False) -> WorkflowRegistry:
    reg = WorkflowRegistry(user_dir=folder, code=BUILTIN_WORKFLOWS)
    problems = reg.reload()
    if problems and not quiet:
        err_console.print(f"[yellow]warning[/]: {len(problems)} problem(s) in workflow files (skipped); "
                          "run `commerce-bridge workflows validate`")
    return reg


def _entry(reg: WorkflowRegistry, name: str, version: str | None) -> RegisteredWorkflow:
    entry = reg.entry(name, version)
    if entry is None:
        known = sorted({e.spec.name for e in reg.entries()})
        what = f"{name} version {version}" if version else name
        err_console.print(f"[bold red]error[/]: no workflow {what}; loaded: {', '.join(known)}")
        raise typer.Exit(1)
    return entry


@workflows_app.command("list")
def list_(folder: DirOpt = None) -> None:
    """List every loaded workflow version; the active one is what new runs use."""
    reg = _registry(folder)
    rows = [("NAME", "VERSION", "ACTIVE", "ORIGIN", "STEPS", "TRIGGER", "FILE")]
    for r in reg.describe():
        trigger = f"{','.join(r['sources'])}: {','.join(r['event_types'])}" + (" (filtered)" if r["filter"] else "")
        rows.append((r["name"], r["version"], "yes" if r["active"] else "-", r["origin"], str(r["steps"]), trigger,
                     r["file"] or "(code)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))


@workflows_app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Files to check (default: built-ins and --dir).")] = None,
    folder: DirOpt = None,
) -> None:
    """Validate workflow files against the schema and the semantic rules; exit 1 on any problem."""
    if files:
        count = 0
        for path in files:
            try:
                loaded = load_file(path)
                typer.echo(f"ok    {path}: {loaded.spec.name} version {loaded.spec.version}")
            except WorkflowFileError as exc:
                count += len(exc.problems)
                for p in exc.problems:
                    typer.echo(f"error {p}", err=True)
        if count:
            typer.echo(f"{count} problem(s) found", err=True)
            raise typer.Exit(1)
        return
    reg = _registry(folder, quiet=True)
    for e in reg.entries():
        if e.file:
            typer.echo(f"ok    {e.file}: {e.spec.name} version {e.spec.version}")
    for p in reg.problems:
        typer.echo(f"error {p}", err=True)
    if reg.problems:
        typer.echo(f"{len(reg.problems)} problem(s) found", err=True)
        raise typer.Exit(1)


@workflows_app.command()
def show(name: str, version: VersionOpt = None, folder: DirOpt = None) -> None:
    """Print a workflow's file (or, for one defined in code, its YAML form)."""
    reg = _registry(folder)
    e = _entry(reg, name, version)
    active = "active" if reg.is_active(e) else "not active"
    typer.echo(f"# {e.spec.name} version {e.spec.version} ({e.origin}, {active}) {e.file or ''}".rstrip())
    if e.text is not None:
        typer.echo(e.text.rstrip())
        return
    data = {"name": e.spec.name, "version": e.spec.version,
            "trigger": {"sources": list(e.spec.trigger.sources), "event_types": list(e.spec.trigger.event_types)},
            "steps": [{"id": s.id, "uses": s.uses, **({"with": dict(s.with_)} if s.with_ else {})}
                      for s in e.spec.steps]}
    typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@workflows_app.command()
def graph(name: str, version: VersionOpt = None, folder: DirOpt = None) -> None:
    """Print a Mermaid flowchart of a workflow."""
    typer.echo(mermaid(_entry(_registry(folder), name, version).spec).rstrip())


@workflows_app.command("dry-run")
def dry_run_(
    name: str,
    event: Annotated[Path, typer.Option("--event", help="The trigger event as a JSON file.")],
    source: Annotated[str | None, typer.Option(help="Delivery source (default: the trigger's only source).")] = None,
    event_type: Annotated[str | None, typer.Option(help="Event type (default: the event's `type`).")] = None,
    outputs: Annotated[Path | None, typer.Option(
        help="JSON file {step_id: output} replacing the catalogue's placeholder outputs.")] = None,
    fail: Annotated[list[str] | None, typer.Option(
        help="STEP=CODE: make a step fail with an error code (repeatable), e.g. payment=upstream_rejected.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    version: VersionOpt = None,
    folder: DirOpt = None,
) -> None:
    """Show the steps a workflow would run for an event and the calls they would make, without making them."""
    spec = _entry(_registry(folder), name, version).spec
    failures: dict[str, Any] = {}
    for item in fail or []:
        step_id, sep, code = item.partition("=")
        if not sep or not step_id or not code:
            err_console.print(f"[bold red]error[/]: --fail expects STEP=CODE, got {item!r}")
            raise typer.Exit(2)
        failures[step_id] = code
    result = dry_run(spec, _read_json(event), source=source, event_type=event_type,
                     outputs=_read_json(outputs) if outputs else None, failures=failures)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    typer.echo(f"{result.workflow} version {result.version}, run {result.run_id}")
    if not result.matched:
        typer.echo(f"not started: {result.reason}")
        return
    for s in result.steps:
        where = f" (on_error of {s.branch_of})" if s.branch_of else ""
        typer.echo(f"- {s.step_id}{where}: {s.uses} -> {s.status}")
        if s.status == "skipped":
            typer.echo(f"    when {s.when} is false")
            continue
        if s.params is not None:
            kind = "write" if s.writes else "read"
            typer.echo(f"    call {s.destination} ({kind}), idempotency key {s.idempotency_key}")
            typer.echo(f"    params {json.dumps(s.params, sort_keys=True, default=str)}")
        if s.error:
            typer.echo(f"    error {s.error.get('code')}: {s.error.get('message')}")
    typer.echo(f"outcome: {result.outcome}" + (f" at step {result.parked_at}" if result.parked_at else ""))


@workflows_app.command()
def schema() -> None:
    """Print the JSON Schema of workflow files (generated from the step catalogue)."""
    typer.echo(json.dumps(workflow_schema(), indent=2))


@workflows_app.command()
def catalogue(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Print the step catalogue (Markdown, as in docs/reference/steps.md)."""
    if not as_json:
        typer.echo(catalogue_markdown().rstrip())
        return
    typer.echo(json.dumps([{"type": t.type, "summary": t.summary, "destination": t.destination,
                            "params": [{"name": p.name, "type": p.type, "required": p.required,
                                        "default": p.default, "choices": list(p.choices),
                                        "description": p.description} for p in t.params],
                            "output": t.output, "idempotency": t.idempotency,
                            "errors": [list(e) for e in t.errors]} for t in default_catalogue().all()], indent=2))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err_console.print(f"[bold red]error[/]: cannot read JSON from {path}: {exc}")
        raise typer.Exit(2) from exc
