"""The ``commerce-bridge`` command line (Typer): serve, ingress, worker, db, config, doctor, events, dlq, workers."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from commerce_bridge.bootstrap import POLLER_LOCKS, Container, Role, bootstrap
from commerce_bridge.config import Settings, load_settings, mask_urls_in
from commerce_bridge.entrypoints.startup_errors import config_error_exit
from commerce_bridge.entrypoints.views import MAX_ID, RedactedViews
from commerce_bridge.errors import BridgeError, ConfigurationError
from commerce_bridge.logsetup import configure_logging

app = typer.Typer(name="commerce-bridge", help="Stripe <-> Clarity eCommerce <-> ERP integration service.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
events_app = typer.Typer(help="Received deliveries.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue.", no_args_is_help=True)
workers_app = typer.Typer(help="Workers and their leases.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(workers_app, name="workers")

console = Console()
err_console = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        raise config_error_exit(exc) from exc


def _container(role: Role, settings: Settings, *, migrate: bool = False) -> Container:
    if role == "cli":  # commands print results on stdout; their logs (warnings only) go to stderr
        configure_logging("WARNING", json=settings.log_json, pii_keys=settings.log_pii_keys, stream=sys.stderr)
    try:
        return bootstrap(settings, role, migrate=migrate)
    except ConfigurationError as exc:
        raise config_error_exit(exc) from exc


def _fail(exc: BridgeError) -> typer.Exit:
    # a message can quote stored data (run ids carry event ids): cards, e-mails and secrets are redacted
    err_console.print(f"[bold red]error[/] ({exc.code}): {RedactedViews(()).text(exc.message)}")
    return typer.Exit(1)


def _views(c: Container) -> RedactedViews:
    """What a command shows of the store goes through the log's redactor (CB_LOG_PII_KEYS)."""
    return RedactedViews(c.settings.log_pii_keys)


EntryIdArg = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The dead-letter entry's id.")]


def _configure_logs(s: Settings) -> None:
    configure_logging(s.log_level, json=s.log_json, pii_keys=s.log_pii_keys)


def _run_http(c: Container, host: str, port: int) -> None:
    from commerce_bridge.entrypoints.http.app import build_app
    from commerce_bridge.entrypoints.http.server import run_server, server_config

    ok, detail = c.check_migrations()
    if not ok:
        err_console.print(f"[bold red]database not ready[/]: {detail}")
        raise typer.Exit(2)
    if not run_server(server_config(build_app(c), c.settings, host=host, port=port)):
        raise typer.Exit(3)  # uvicorn's STARTUP_FAILURE (address in use, lifespan failed)


HostOpt = Annotated[str | None, typer.Option(help="Address to listen on [default: CB_HOST or 127.0.0.1].")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on [default: CB_PORT or 8000].")]
WorkerIdOpt = Annotated[str | None, typer.Option("--worker-id", help="Stable executor id of this worker.")]


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, worker_id: WorkerIdOpt = None) -> None:
    """Run ingress, dispatcher, worker and admin API in one process."""
    s = _settings(host=host, port=port, worker_id=worker_id)
    _configure_logs(s)
    c = _container("serve", s, migrate=s.is_sqlite)
    _run_http(c, s.host, s.port)


@app.command()
def ingress(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run only the webhook ingress and admin API (stateless; scale out behind a load balancer)."""
    s = _settings(host=host, port=port)
    _configure_logs(s)
    _run_http(_container("ingress", s), s.host, s.port)


@app.command()
def worker(
    worker_id: WorkerIdOpt = None,
    host: HostOpt = None,
    port: Annotated[int | None, typer.Option(help="Also serve /healthz, /readyz, /metrics and the admin API.")] = None,
) -> None:
    """Run the dispatcher and a workflow worker (one durable-execution executor)."""
    s = _settings(worker_id=worker_id)
    _configure_logs(s)
    c = _container("worker", s)
    if port is not None:
        _run_http(c, host or s.host, port)
        return
    ok, detail = c.check_migrations()
    if not ok:
        err_console.print(f"[bold red]database not ready[/]: {detail}")
        raise typer.Exit(2)
    assert c.engine is not None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    c.start_background()
    console.print(f"worker {c.engine.config.executor_id} running; Ctrl-C to stop")
    while not stop.wait(1.0):
        c.housekeeping()
    c.stop_background()


# ---- db / config / doctor -----------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the current version."""
    s = _settings()
    c = _container("cli", s, migrate=True)
    current, head = _migration(c)
    console.print(f"database at revision {current} (head {head})")


@db_app.command("status")
def db_status() -> None:
    """Show the database's migration revision."""
    c = _container("cli", _settings())
    ok, detail = c.check_migrations()
    console.print(detail)
    raise typer.Exit(0 if ok else 1)


def _migration(c: Container) -> tuple[str | None, str]:
    from commerce_bridge.bootstrap import migration_status

    return migration_status(c)


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """Print the effective settings, secrets and the credentials in URLs masked."""
    s = _settings()
    data = s.masked()
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    table = Table("setting", "value", title="commerce-bridge settings")
    for k, v in data.items():
        table.add_row(f"CB_{k.upper()}", json.dumps(v, default=str))
    console.print(table)


@app.command()
def doctor() -> None:
    """Check the database, the migrations and every configured connection; explain what is wrong."""
    s = _settings()
    c = _container("cli", s)
    from commerce_bridge.bootstrap import connection_checks

    results = [("database", *c.check_database()), ("migrations", *c.check_migrations()),
               *connection_checks(s)]
    table = Table("check", "result", "detail")
    for name, ok, detail in results:
        # a detail may quote a URL setting or an error that quotes one: credentials never reach the screen
        table.add_row(name, "[green]ok[/]" if ok else "[red]FAIL[/]", mask_urls_in(detail))
    console.print(table)
    raise typer.Exit(0 if all(ok for _, ok, _ in results) else 1)


# ---- events --------------------------------------------------------------------------------------
@events_app.command("list")
def events_list(
    source: Annotated[str | None, typer.Option(help="stripe, clarity or erp.")] = None,
    status: Annotated[str | None, typer.Option(help="received, dispatched, processed or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List deliveries (newest first) with their state and the runs they started."""
    c = _container("cli", _settings())
    try:
        rows = _views(c).rows(c.inbox.list(source=source, status=status, limit=limit))
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table("id", "source", "event id", "type", "status", "received", "runs")
    for r in rows:
        runs = ", ".join(f"{x['workflow']}={x['status']}" for x in r["runs"]) or "-"
        table.add_row(str(r["id"]), r["source"], r["event_id"], r["event_type"] or "-", r["status"],
                      str(r["received_at"])[:19], runs)
    console.print(table)


# ---- dlq -----------------------------------------------------------------------------------------
@dlq_app.command("list")
def dlq_list(
    status: Annotated[str, typer.Option(help="open, replayed, discarded or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List dead-letter entries."""
    c = _container("cli", _settings())
    rows = _views(c).rows(c.dead_letters.list(status=None if status == "all" else status, limit=limit))
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table("id", "run", "step", "attempts", "code", "message", "status")
    for r in rows:
        table.add_row(str(r["id"]), r["run_id"], r["step_id"], str(r["attempts"]), r["error_code"],
                      r["error_message"][:80], r["status"])
    console.print(table)


@dlq_app.command("show")
def dlq_show(entry_id: EntryIdArg) -> None:
    """Show one entry: error, upstream request id, step input and the suggested fix."""
    c = _container("cli", _settings())
    try:
        sys.stdout.write(json.dumps(_views(c).row(c.dead_letters.get(entry_id)), default=str, indent=2) + "\n")
    except BridgeError as exc:
        raise _fail(exc) from exc


@dlq_app.command("replay")
def dlq_replay(
    entry_id: EntryIdArg,
    reason: Annotated[str, typer.Option()] = "replayed by operator",
    from_start: Annotated[bool, typer.Option(
        "--from-start", help="Run every step again (they re-read data fixed at the source), not only the failed "
                             "one and those after it. Idempotency keys stay the same. The run is re-pinned to the "
                             "workflow text loaded now (its version, else the active one): give this command "
                             "the workers' CB_WORKFLOWS_DIR.")] = False,
) -> None:
    """Resume the run from its failed step (or from its first), with the same idempotency keys."""
    c = _container("cli", _settings())
    try:
        entry = c.admin.replay(entry_id, reason, from_start=from_start)
    except BridgeError as exc:
        raise _fail(exc) from exc
    where = "its first step" if from_start else f"step {entry['step_id']}"
    console.print(f"replaying run {entry['run_id']} from {where} (engine workflow {entry['engine_workflow_id']})")


@dlq_app.command("discard")
def dlq_discard(entry_id: EntryIdArg, reason: Annotated[str, typer.Option(help="Why (required).")]) -> None:
    """Close an entry without replaying it."""
    c = _container("cli", _settings())
    try:
        entry = c.admin.discard(entry_id, reason)
    except BridgeError as exc:
        raise _fail(exc) from exc
    console.print(f"discarded entry {entry_id} of run {entry['run_id']}")


# ---- workers -------------------------------------------------------------------------------------
@workers_app.command("list")
def workers_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List workers with their lease state and the polled sources each one polls now."""
    c = _container("cli", _settings())
    rows = _views(c).rows(c.leases.list())
    # which worker polls each polled source now (the live holder of its lease; see docs/howto/scale-out.md)
    pollers = {source: c.locks.holder_of(name, live=True) if c.locks else None for source, name in POLLER_LOCKS.items()}
    for r in rows:
        r["polls"] = sorted(source for source, holder in pollers.items() if holder == r["executor_id"])
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table("executor", "status", "host", "pid", "lease left (s)", "recovered by", "polls")
    for r in rows:
        table.add_row(r["executor_id"], r["status"], r["hostname"], str(r["pid"]), str(r["lease_remaining_s"]),
                      r["recovered_by"] or "-", ", ".join(r["polls"]) or "-")
    console.print(table)


@workers_app.command("recover")
def workers_recover(
    executor_id: str,
    force: Annotated[bool, typer.Option(help="Recover even if the lease has not expired.")] = False,
) -> None:
    """Resume a dead worker's unfinished runs on the surviving workers."""
    c = _container("cli", _settings())
    try:
        n = c.admin.recover(executor_id, by="cli", force=force)
    except BridgeError as exc:
        raise _fail(exc) from exc
    console.print(f"resumed {n} run(s) of worker {executor_id}")


_mounted = False


def _mount_optional() -> None:
    """Add the command groups that live in other modules (once)."""
    global _mounted
    if _mounted:
        return
    _mounted = True
    from commerce_bridge.entrypoints.cli_workflows import workflows_app
    from commerce_bridge.entrypoints.demo import demo_webhooks
    from commerce_bridge.entrypoints.demo_order_to_cash import demo
    from commerce_bridge.sandbox.cli import sandbox_app

    app.add_typer(workflows_app, name="workflows")
    app.add_typer(sandbox_app, name="sandbox")
    app.command()(demo)
    app.command("demo-webhooks")(demo_webhooks)


def main() -> None:
    _mount_optional()
    app()


if __name__ == "__main__":
    main()
