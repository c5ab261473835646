"""``commerce-bridge workflows ...``: list, validate, show, graph and dry-run workflow files; print the schema and catalogue.

``list``, ``show`` and ``dry-run`` read the settings as ``serve`` does (``CB_*`` variables,
``commerce-bridge.toml``), so they show what a run would see: the workflows ``serve`` turns off
(``CB_WORKFLOWS_DISABLED``, and those using a step type whose connector is not configured), the status
names of ``CB_STATUS_MAP`` and ``CB_WORKFLOW_VARS``; ``--no-config`` shows the files alone. Invalid
settings stop them with the start-up message (``--no-config`` still works then). ``validate`` and
``graph`` read only the settings' ``workflows_dir`` (when ``--dir`` is not given): invalid settings give
a warning and the built-in workflows, since checking a file needs no valid configuration.

``dry-run --event-id ID`` reads a stored event (the inbox row) from ``CB_DATABASE_URL``, as ``events show``
does; what it prints of it is redacted unless ``--raw``.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import Settings, load_settings
from commerce_bridge.config_sources import mask_urls_in
from commerce_bridge.entrypoints.startup_errors import bridge_error_text, config_error_exit, print_error
from commerce_bridge.entrypoints.stored_events import StoredEvent, find_event
from commerce_bridge.entrypoints.views import RedactedViews
from commerce_bridge.errors import BridgeError, ConfigurationError
from commerce_bridge.logsetup import configure_logging
from commerce_bridge.workflows.builtin import BUILTIN_WORKFLOWS, CORE_AUDIT
from commerce_bridge.workflows.catalogue import catalogue_markdown, workflow_schema
from commerce_bridge.workflows.dryrun import DryRun, dry_run
from commerce_bridge.workflows.enabled import (
    CONNECTORS,
    code_workflows,
    disabled_by_settings,
    disabled_for_connectors,
    run_vars,
)
from commerce_bridge.workflows.graph import mermaid
from commerce_bridge.workflows.graph_svg import html, svg
from commerce_bridge.workflows.loader import WorkflowFileError, load_file
from commerce_bridge.workflows.registry import RegisteredWorkflow, WorkflowRegistry
from commerce_bridge.workflows.spec import WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue

workflows_app = typer.Typer(help="Workflow files: list, validate, show, graph, dry-run.", no_args_is_help=True)

DirOpt = Annotated[Path | None, typer.Option(
    "--dir", envvar="CB_WORKFLOWS_DIR",
    help="Folder of user workflow files that add to or override the built-ins.")]
VersionOpt = Annotated[str | None, typer.Option("--version", help="A loaded version (default: the active one).")]
NoConfigOpt = Annotated[bool, typer.Option(
    "--no-config", help="Ignore the settings (CB_* variables, commerce-bridge.toml; --dir still applies): the "
                        "workflow files alone, with the vars written in them and nothing disabled.")]
DISABLED_REASON = "disabled by CB_WORKFLOWS_DISABLED"
AUDIT_REASON = "off unless CB_AUDIT_RUNS=true (the inbox row of each delivery is its audit record)"
NO_CONNECTOR_REASON = "no connector configured for"
SETTING_VARS = {"submit_evidence": "CB_DISPUTE_EVIDENCE_SUBMIT", "refund_unshipped": "CB_EARLY_FRAUD_REFUND",
                "invoice_on": "CB_ERP_INVOICE_ON"}  # the run vars a setting pins (enabled.run_vars), not the status map


def _missing_connectors(step_types: Iterable[str], settings: Settings | None = None) -> str:
    """The step types grouped by the settings that would bind them (as ``list`` prints them): their connector's,
    the connectors they also need, the setting they need (``needs_setting``); with ``settings``, only the ones
    missing there."""
    def missing(system: str) -> list[str]:
        connector = CONNECTORS.get(system)
        if connector is None or (settings is not None and connector.configured(settings)):
            return []
        return list(connector.settings)

    groups: dict[str, list[str]] = {}
    catalogue = step_catalogue()
    for step_type in step_types:
        declared = catalogue.get(step_type)
        names = missing(step_type.split(".", 1)[0])
        if declared is not None:
            names += [n for system in declared.also_needs for n in missing(system) if n not in names]
            if declared.needs_setting and (settings is None or not getattr(settings, declared.needs_setting)):
                names.append(f"CB_{declared.needs_setting.upper()}")
        how = f"set {', '.join(names)}" if names else "no setting configures it"
        groups.setdefault(how, []).append(step_type)
    return "; ".join(f"{', '.join(types)} ({how})" for how, types in groups.items())


def _registry(folder: Path | None, *, quiet: bool = False,
              code: Iterable[WorkflowSpec] = BUILTIN_WORKFLOWS) -> WorkflowRegistry:
    reg = WorkflowRegistry(user_dir=folder, code=code)
    problems = reg.reload()
    if problems and not quiet:  # each with its file and line: the file is skipped, so say which and why
        typer.echo(f"warning: {len(problems)} problem(s) in workflow files (those files are skipped; "
                   "`commerce-bridge workflows validate` checks them):", err=True)
        for p in problems[:5]:
            typer.echo(f"  {p}", err=True)
        if len(problems) > 5:
            typer.echo(f"  ... and {len(problems) - 5} more", err=True)
    return reg


@dataclass
class _View:
    """The workflows as runs see them: the registry, what serve turns off and why, the pinned vars."""

    registry: WorkflowRegistry
    settings: Settings | None = None  # None: --no-config
    turned_off: set[str] = field(default_factory=set)  # by CB_WORKFLOWS_DISABLED
    unbound: dict[str, list[str]] = field(default_factory=dict)  # name -> step types without a connector
    run_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def disabled(self) -> set[str]:
        """The workflows no run of starts (ENABLED no)."""
        return self.turned_off | set(self.unbound)

    def reasons(self, name: str) -> list[str]:
        """Why no run of ``name`` starts (empty: it is enabled)."""
        out = [self._off_reason(name)] if name in self.turned_off else []
        if name in self.unbound:
            out.append(f"{NO_CONNECTOR_REASON} {_missing_connectors(self.unbound[name], self.settings)}")
        return out

    def _off_reason(self, name: str) -> str:
        explicit = self.settings is not None and name in self.settings.workflows_disabled
        return DISABLED_REASON if explicit or name != CORE_AUDIT.name else AUDIT_REASON

    def var_origins(self, name: str, file_vars: dict[str, Any]) -> list[tuple[str, Any, str]]:
        """(var, value a run gets, where it comes from) for every var of a run of ``name``."""
        pinned = self.run_vars.get(name, {})
        overrides = self.settings.workflow_vars.get(name, {}) if self.settings else {}
        status_map = ("CB_STATUS_MAP" if self.settings and "status_map" in self.settings.model_fields_set
                      else "the default status map (CB_STATUS_MAP not set)")
        out = []
        for key, value in {**file_vars, **pinned}.items():
            if key not in pinned:
                origin = "the file"
            else:
                origin = "CB_WORKFLOW_VARS" if key in overrides else SETTING_VARS.get(key, status_map)
                if key in file_vars and file_vars[key] != value:
                    origin += f" (the file says {json.dumps(file_vars[key], default=str)})"
            out.append((key, value, origin))
        return out


def _view(folder: Path | None, *, no_config: bool) -> _View:
    """Load the settings as ``serve`` does (unless ``no_config``) and the workflows they select."""
    if no_config:
        return _View(_registry(folder))
    try:
        settings = load_settings()
        user_dir = folder or (Path(settings.workflows_dir) if settings.workflows_dir else None)
        reg = _registry(user_dir, code=code_workflows(settings))
        # the same answer bootstrap gives serve and worker, from the settings alone (no connection is made)
        return _View(reg, settings, disabled_by_settings(settings, reg), disabled_for_connectors(settings, reg),
                     run_vars(settings, reg))
    except ConfigurationError as exc:
        raise config_error_exit(exc, hint="(--no-config shows the workflow files without the settings)") from exc


def _files_dir(folder: Path | None) -> Path | None:
    """``--dir``, else the settings' ``workflows_dir``; invalid settings: a warning and no folder.

    Checking workflow files must not need a valid configuration, so a settings problem is only warned about.
    """
    if folder is not None:
        return folder
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problems = "; ".join(exc.errors or [exc.message])
        typer.echo(f"warning: invalid settings, workflows_dir not read ({problems}); "
                   "the built-in workflows only (--dir names a folder)", err=True)
        return None
    return Path(settings.workflows_dir) if settings.workflows_dir else None


def _entry(reg: WorkflowRegistry, name: str, version: str | None) -> RegisteredWorkflow:
    entry = reg.entry(name, version)
    if entry is None:
        known = sorted({e.spec.name for e in reg.entries()})
        if version and name in known:
            versions = sorted(e.spec.version for e in reg.entries() if e.spec.name == name)
            message = f"no workflow {name} version {version}; loaded versions of {name}: {', '.join(versions)}"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            message = (f"no workflow {name}" + (f" version {version}" if version else "")
                       + (f" (did you mean {close[0]}?)" if close else "") + f"; loaded: {', '.join(known)}")
        where = (f"the built-ins and the files in {reg.user_dir} (--dir or CB_WORKFLOWS_DIR)" if reg.user_dir
                 else "the built-ins only: user files are read from --dir or CB_WORKFLOWS_DIR, and neither is set")
        print_error(message, fix=f"use a name `commerce-bridge workflows list` shows; loaded from {where}")
        raise typer.Exit(1)
    return entry


@workflows_app.command("list")
def list_(folder: DirOpt = None, no_config: NoConfigOpt = False) -> None:
    """List every loaded workflow version; the active one is what new runs use, unless ENABLED is no."""
    view = _view(folder, no_config=no_config)
    rows = [("NAME", "VERSION", "ACTIVE", "ORIGIN", "ENABLED", "STEPS", "TRIGGER", "FILE")]
    for r in view.registry.describe():
        trigger = f"{','.join(r['sources'])}: {','.join(r['event_types'])}" + (" (filtered)" if r["filter"] else "")
        rows.append((r["name"], r["version"], "yes" if r["active"] else "-", r["origin"],
                     "no" if r["name"] in view.disabled else "yes", str(r["steps"]), trigger, r["file"] or "(code)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
    by_reason: dict[str, list[str]] = {}
    for name in sorted(view.turned_off):
        by_reason.setdefault(view.reasons(name)[0], []).append(name)
    for reason, names in by_reason.items():
        typer.echo(f"ENABLED no: {reason} ({', '.join(names)}); no run starts")
    if view.unbound:
        typer.echo(f"ENABLED no: {NO_CONNECTOR_REASON} a step type they use; no run starts:")
        for name in sorted(view.unbound):
            typer.echo(f"  {name}: {_missing_connectors(view.unbound[name], view.settings)}")


@workflows_app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Files to check (default: the built-ins and --dir, else the settings' workflows_dir).")] = None,
    folder: DirOpt = None,
) -> None:
    """Validate workflow files against the schema and the semantic rules; exit 1 on any problem.

    A file that has the name and version of a built-in (or of another file) but a different text is
    refused: runs are pinned to (name, version), so a changed text needs a new version.
    """
    if files:
        count = 0
        builtins = _registry(None, quiet=True)
        for path in files:
            try:
                loaded = load_file(path)
            except WorkflowFileError as exc:
                count += len(exc.problems)
                for p in exc.problems:
                    typer.echo(f"error {p}", err=True)
                continue
            first = builtins.clash_with(loaded.spec.name, loaded.spec.version, loaded.digest)
            if first is not None:
                count += 1
                typer.echo(f"error {path}: {_clash_message(loaded.spec.name, loaded.spec.version, first)}", err=True)
                continue
            typer.echo(f"ok    {path}: {loaded.spec.name} version {loaded.spec.version}")
        if count:
            typer.echo(f"{count} problem(s) found", err=True)
            raise typer.Exit(1)
        return
    reg = _registry(_files_dir(folder), quiet=True)
    clashes = {e.file: first for e, first in reg.text_clashes()}
    view = _settings_view(folder)
    for e in reg.entries():
        if e.file and e.file not in clashes:
            typer.echo(f"ok    {e.file}: {e.spec.name} version {e.spec.version}")
            if view is not None and e.origin == "user":
                for key, value, origin in view.var_origins(e.spec.name, dict(e.spec.vars)):
                    if "(the file says" in origin:  # the file's value loses: say which wins, why, and where to change it
                        typer.echo(f"note  {e.file}: vars.{key} is {json.dumps(value, default=str)} in runs, from "
                                   f"{origin}; status names come from the status map: set it in CB_STATUS_MAP, "
                                   f"or for this workflow alone in CB_WORKFLOW_VARS")
    for p in reg.problems:
        typer.echo(f"error {p}", err=True)
    for file, first in clashes.items():
        typer.echo(f"error {file}: {_clash_message(first.spec.name, first.spec.version, first)}", err=True)
    if reg.problems or clashes:
        typer.echo(f"{len(reg.problems) + len(clashes)} problem(s) found", err=True)
        raise typer.Exit(1)


def _settings_view(folder: Path | None) -> _View | None:
    """The settings' view for ``validate``'s notes, or None when the settings do not load (validate has said so)."""
    try:
        load_settings()
    except Exception:
        return None
    try:
        return _view(folder, no_config=False)
    except Exception:
        return None


def _clash_message(name: str, version: str, first: Any) -> str:
    where = "the built-in" if first.origin == "builtin" else (first.file or "a workflow defined in code")
    return (f"{name} version {version} is also {where}, with a different text: runs are pinned to (name, "
            f"version), so a changed workflow needs a new `version` (higher than the built-in's to replace it "
            f"for new runs; `commerce-bridge workflows list` shows the versions loaded)")


@workflows_app.command()
def show(name: str, version: VersionOpt = None, folder: DirOpt = None, no_config: NoConfigOpt = False) -> None:
    """Print a workflow's file (or, for one defined in code, its YAML form), then the vars a run gets."""
    view = _view(folder, no_config=no_config)
    reg = view.registry
    e = _entry(reg, name, version)
    active = "active" if reg.is_active(e) else "not active"
    typer.echo(f"# {e.spec.name} version {e.spec.version} ({e.origin}, {active}) {e.file or ''}".rstrip())
    if e.text is not None:
        typer.echo(e.text.rstrip())
    else:
        data = {"name": e.spec.name, "version": e.spec.version,
                "trigger": {"sources": list(e.spec.trigger.sources), "event_types": list(e.spec.trigger.event_types)},
                "steps": [{"id": s.id, "uses": s.uses, **({"with": dict(s.with_)} if s.with_ else {})}
                          for s in e.spec.steps]}
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    if view.settings is None:
        return
    # comments only, so the output stays a valid workflow file
    typer.echo("\n# ---- what a run gets from the settings (--no-config: the file alone) ----")
    for reason in view.reasons(e.spec.name):
        typer.echo(f"# {reason}: no run starts")
    origins = view.var_origins(e.spec.name, dict(e.spec.vars))
    typer.echo("# vars a run is pinned with:" if origins else "# vars a run is pinned with: none")
    for key, value, origin in origins:
        typer.echo(f"#   {key}: {json.dumps(value, default=str)}  <- {origin}")


class GraphFormat(StrEnum):
    """What ``workflows graph`` draws: Mermaid text, a standalone SVG, or an HTML page holding it."""

    MERMAID = "mermaid"
    SVG = "svg"
    HTML = "html"


_RENDERERS: dict[GraphFormat, Callable[[WorkflowSpec], str]] = {
    GraphFormat.MERMAID: mermaid, GraphFormat.SVG: svg, GraphFormat.HTML: html}


@workflows_app.command()
def graph(
    name: str,
    version: VersionOpt = None,
    folder: DirOpt = None,
    fmt: Annotated[GraphFormat, typer.Option(
        "--format", help="mermaid: a flowchart for a Mermaid viewer; svg: a picture any browser opens; html: "
                         "one page with the picture and a table of the steps (nothing loaded from elsewhere).",
    )] = GraphFormat.MERMAID,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the diagram to this file (its path is printed on stderr), not stdout.")] = None,
) -> None:
    """Draw a workflow: its steps, their type and `when`, and the on_error paths (the built-ins, and --dir
    or else the settings' workflows_dir)."""
    text = _RENDERERS[fmt](_entry(_registry(_files_dir(folder)), name, version).spec)
    if output is None:
        typer.echo(text.rstrip())
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print_error(f"cannot write {output}: {exc.strerror or exc}", fix="name a file in a folder that exists "
                    "and that you may write to")
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {output}", err=True)


@workflows_app.command("dry-run")
def dry_run_(
    name: str,
    event: Annotated[Path | None, typer.Option(
        "--event", help="The trigger event as a JSON file (`commerce-bridge events export ID > event.json` "
                        "writes one from a stored event).")] = None,
    event_id: Annotated[str | None, typer.Option(
        "--event-id", help="A stored event instead of a file, read from CB_DATABASE_URL: its inbox id, "
                           "source:event_id, a run id or the sender's event id (as `events show` takes them); "
                           "its source, type and id are the delivery's.")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="With --event-id: print the parameters as they are (default: redacted as `events show` "
                      "redacts the stored event).")] = False,
    source: Annotated[str | None, typer.Option(
        help="Delivery source (default: the stored event's; for a file, the trigger's only source).")] = None,
    event_type: Annotated[str | None, typer.Option(
        help="Event type (default: the stored event's; for a file, the event's `type`).")] = None,
    outputs: Annotated[Path | None, typer.Option(
        help="JSON file {step_id: output} replacing the catalogue's placeholder outputs.")] = None,
    fail: Annotated[list[str] | None, typer.Option(
        help="STEP=CODE: make a step fail with an error code (repeatable), e.g. payment=upstream_rejected.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    version: VersionOpt = None,
    folder: DirOpt = None,
    no_config: NoConfigOpt = False,
) -> None:
    """Show the steps a workflow would run for an event and the calls they would make, without making them.

    The event is a JSON file (--event) or a stored event (--event-id). The run gets the vars it
    would be pinned with (status names from CB_STATUS_MAP, CB_WORKFLOW_VARS); a workflow turned off
    by CB_WORKFLOWS_DISABLED, or using a step type whose connector is not configured, does not start.
    """
    if (event is None) == (event_id is None):
        print_error("give the event: --event FILE (a JSON file) or --event-id ID (a stored event), one of them",
                    fix="`commerce-bridge events list` shows the stored events' ids")
        raise typer.Exit(2)
    view = _view(folder, no_config=no_config)
    spec = _entry(view.registry, name, version).spec
    failures: dict[str, Any] = {}
    for item in fail or []:
        step_id, sep, code = item.partition("=")
        if not sep or not step_id or not code:
            print_error(f"--fail expects STEP=CODE, got {item!r}")
            raise typer.Exit(2)
        failures[step_id] = code
    views: RedactedViews | None = None
    stored_id: str | None = None
    if event_id is not None:
        stored, settings = _stored_event(event_id, view.settings)
        data: Any = _event_data(stored)
        source = source or stored.delivery.source
        event_type = event_type or stored.delivery.event_type
        stored_id = stored.delivery.event_id
        views = None if raw else RedactedViews(settings.log_pii_keys)
        typer.echo(f"event {stored.ref} (inbox id {stored.delivery.id}, {stored.delivery.event_type or 'no type'}, "
                   f"{stored.delivery.status})" + ("" if raw else "; parameters redacted (--raw: as they are)"),
                   err=as_json)
    else:
        assert event is not None
        data = _read_json(event)
    result = dry_run(spec, data, source=source, event_type=event_type, event_id=stored_id,
                     outputs=_read_json(outputs) if outputs else None, failures=failures,
                     pinned_vars=view.run_vars.get(spec.name),
                     disabled=", and ".join(view.reasons(spec.name)) or None)
    if as_json:
        shown = result.as_dict()
        typer.echo(json.dumps(shown if views is None else views.data(shown), indent=2, default=str))
        return
    _print_dry_run(result, views)


def _print_dry_run(result: DryRun, views: RedactedViews | None) -> None:
    def show(value: Any) -> Any:
        return value if views is None else views.data(value)

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
            typer.echo(f"    params {json.dumps(show(s.params), sort_keys=True, default=str)}")
        if s.error:
            typer.echo(f"    error {s.error.get('code')}: {show(s.error.get('message'))}")
    typer.echo(f"outcome: {result.outcome}" + (f" at step {result.parked_at}" if result.parked_at else ""))


@workflows_app.command()
def schema() -> None:
    """Print the JSON Schema of workflow files (generated from the step catalogue)."""
    typer.echo(json.dumps(workflow_schema(step_catalogue()), indent=2))


@workflows_app.command()
def catalogue(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Print the step catalogue (Markdown, as in docs/reference/steps.md)."""
    if not as_json:
        typer.echo(catalogue_markdown(step_catalogue()).rstrip())
        return
    typer.echo(json.dumps([{"type": t.type, "summary": t.summary, "destination": t.destination,
                            "params": [{"name": p.name, "type": p.type, "required": p.required,
                                        "default": p.default, "choices": list(p.choices),
                                        "description": p.description} for p in t.params],
                            "output": t.output, "idempotency": t.idempotency,
                            "errors": [list(e) for e in t.errors]} for t in step_catalogue().all()], indent=2))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print_error(f"cannot read {path}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    except ValueError as exc:  # the line and column of the mistake are in the message
        print_error(f"{path} is not valid JSON: {exc}")
        raise typer.Exit(2) from exc


def _stored_event(ref: str, settings: Settings | None) -> tuple[StoredEvent, Settings]:
    """The stored event ``ref`` names, from the settings' database (loaded here under --no-config)."""
    if settings is None:
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            raise config_error_exit(exc, hint="(--event-id reads the event from CB_DATABASE_URL)") from exc
    # the command prints its result on stdout: logs (warnings only) go to stderr
    configure_logging("WARNING", json=settings.log_json, pii_keys=settings.log_pii_keys, stream=sys.stderr)
    try:
        c = bootstrap(settings, "cli")
    except ConfigurationError as exc:
        raise config_error_exit(exc) from exc
    try:
        return find_event(c.inbox, ref, database=f"{mask_urls_in(settings.database_url)} (CB_DATABASE_URL)"), settings
    except BridgeError as exc:
        message, fix = bridge_error_text(exc)  # stored data quoted in it is redacted
        print_error(message, title=f"error ({exc.code})", fix=fix)
        raise typer.Exit(1) from exc
    finally:
        c.close()


def _event_data(stored: StoredEvent) -> Any:
    try:
        return stored.event()
    except BridgeError as exc:
        print_error(exc.message, title=f"error ({exc.code})")
        raise typer.Exit(1) from exc
