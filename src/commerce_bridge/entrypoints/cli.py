"""The ``commerce-bridge`` command line (Typer): serve, ingress, worker, db, config, doctor, events, dlq, workers.

Exit codes: 0 done; 1 the command failed (an id that finds nothing, a database that cannot be used, a
check that failed); 2 the process cannot start (invalid settings, the database not ready, bad options);
3 the HTTP server cannot listen (the port is in use). Every message names what to fix: the setting
(``CB_...``), the file and line, or the id, and the database it looked in.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from commerce_bridge.bootstrap import Container, Role, bootstrap
from commerce_bridge.bootstrap_background import POLLER_LOCKS
from commerce_bridge.config import Settings, load_settings
from commerce_bridge.config_sources import mask_urls_in
from commerce_bridge.entrypoints.startup_errors import (
    bridge_error_text,
    config_error_exit,
    database_problem,
    is_database_error,
    port_problem,
    print_error,
)
from commerce_bridge.entrypoints.stored_events import StoredEvent, find_event
from commerce_bridge.entrypoints.views import MAX_ID, RedactedViews
from commerce_bridge.errors import BridgeError, ConfigurationError
from commerce_bridge.logsetup import configure_logging

app = typer.Typer(name="commerce-bridge", help="Stripe <-> Clarity eCommerce <-> ERP integration service.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
events_app = typer.Typer(help="Received deliveries: list, show, export.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue.", no_args_is_help=True)
workers_app = typer.Typer(help="Workers and their leases.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(workers_app, name="workers")

console = Console()


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
    except Exception as exc:
        if is_database_error(exc) and not _database_reachable(settings):  # cannot be used, not a migration bug
            message, fix = database_problem(exc, database=_database_name(settings))
            print_error(message, title="database not ready", fix=fix)
            raise typer.Exit(2) from exc
        raise


def _database_name(s: Settings) -> str:
    return f"{mask_urls_in(s.database_url)} (CB_DATABASE_URL)"


def _database_reachable(s: Settings) -> bool:
    try:
        c = bootstrap(s, "cli")
    except Exception:
        return False
    try:
        return c.check_database()[0]
    finally:
        c.close()


def _fail(exc: BridgeError) -> typer.Exit:
    """Print what failed and how to fix it (a database outage names the database); the caller raises exit 1."""
    message, fix = bridge_error_text(exc)  # stored data quoted in it is redacted
    print_error(message, title=f"error ({exc.code})", fix=fix)
    return typer.Exit(1)


def _views(c: Container) -> RedactedViews:
    """What a command shows of the store goes through the log's redactor (CB_LOG_PII_KEYS)."""
    return RedactedViews(c.settings.log_pii_keys)


EntryIdArg = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The dead-letter entry's id.")]


def _configure_logs(s: Settings) -> None:
    configure_logging(s.log_level, json=s.log_json, pii_keys=s.log_pii_keys)


def _check_port(host: str, port: int) -> None:
    """Stop before anything starts if ``host:port`` cannot be listened on (exit 3, as uvicorn's failure)."""
    problem = port_problem(host, port)
    if problem:
        print_error(problem[0], title="cannot listen", fix=problem[1])
        raise typer.Exit(3)


def _check_database_ready(c: Container) -> None:
    """Exit 2 naming the database (CB_DATABASE_URL) and what to do when it is unreachable or not migrated."""
    ok, detail = c.check_migrations()
    if ok:
        return
    if not c.check_database()[0]:
        try:
            c.inbox.backlog()  # fails again, with the driver's reason in its causes
        except Exception as exc:
            message, fix = database_problem(exc, database=_database_name(c.settings))
            print_error(message, title="database not ready", fix=fix)
            raise typer.Exit(2) from exc
    print_error(f"{detail} (database {_database_name(c.settings)})", title="database not ready")
    raise typer.Exit(2)


def _run_http(c: Container, host: str, port: int) -> None:
    from commerce_bridge.entrypoints.http.app import build_app
    from commerce_bridge.entrypoints.http.server import run_server, server_config

    _check_database_ready(c)
    if not run_server(server_config(build_app(c), c.settings, host=host, port=port)):
        # uvicorn's STARTUP_FAILURE: the port taken since the check, or the app's start-up failed
        print_error(f"the HTTP server did not start on {host}:{port} (its log above says why)",
                    title="cannot listen", fix="if the port is in use, choose another with --port or CB_PORT")
        raise typer.Exit(3)


HostOpt = Annotated[str | None, typer.Option(help="Address to listen on [default: CB_HOST or 127.0.0.1].")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on [default: CB_PORT or 8000].")]
WorkerIdOpt = Annotated[str | None, typer.Option("--worker-id", help="Stable executor id of this worker.")]


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, worker_id: WorkerIdOpt = None) -> None:
    """Run ingress, dispatcher, worker and admin API in one process."""
    s = _settings(host=host, port=port, worker_id=worker_id)
    _check_port(s.host, s.port)
    _configure_logs(s)
    c = _container("serve", s, migrate=s.is_sqlite)
    _run_http(c, s.host, s.port)


@app.command()
def ingress(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run only the webhook ingress and admin API (stateless; scale out behind a load balancer)."""
    s = _settings(host=host, port=port)
    _check_port(s.host, s.port)
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
    if port is not None:
        _check_port(host or s.host, port)
    _configure_logs(s)
    c = _container("worker", s)
    if port is not None:
        _run_http(c, host or s.host, port)
        return
    _check_database_ready(c)
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


# doctor's verdicts: ``ok``, ``FAIL`` (serve would stop at start-up, or could not do its job) and
# ``note`` (serve starts and works, and this is what it will do or what stays off); only FAIL exits 1.
Check = tuple[str, str, str]


def _verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def migration_check(c: Container) -> Check:
    """What the schema is and what will happen to it: the same rule ``serve``, ``ingress`` and ``worker`` follow.

    ``serve`` on SQLite migrates the schema at start-up (``bootstrap(..., migrate=True)``); on PostgreSQL
    no process migrates by itself, and ``serve``, ``ingress`` and ``worker`` exit 2 ("database not ready")
    until ``db upgrade`` has run; ``ingress`` and ``worker`` do not migrate SQLite either.
    """
    ok, detail = c.check_migrations()
    if ok:
        return "migrations", "ok", detail
    try:
        current, head = _migration(c)
    except Exception:  # the schema cannot be read: the detail says why
        return "migrations", "FAIL", detail
    at = f"schema at {current}" if current else "no schema yet (new database)"
    if c.settings.is_sqlite:
        return ("migrations", "note",
                f"{at}: `serve` will migrate it to {head} at start-up (`ingress` and `worker` do not: "
                f"run `commerce-bridge db upgrade` before starting them)")
    return ("migrations", "FAIL",
            f"{at}, code expects {head}: on PostgreSQL nothing migrates by itself; `serve`, `ingress` and "
            f"`worker` exit 2 (database not ready) until you run `commerce-bridge db upgrade`")


def _doctor_checks(c: Container, s: Settings) -> list[Check]:
    from commerce_bridge.bootstrap_checks import connection_checks

    database_ok, database_detail = c.check_database()
    if not database_ok:  # which database, why (the driver's words) and what to do
        try:
            c.inbox.backlog()
        except Exception as exc:
            database_detail = "; ".join(database_problem(exc, database=_database_name(s)))
    checks: list[Check] = [("database", _verdict(database_ok), database_detail)]
    checks.append(migration_check(c) if database_ok else ("migrations", "FAIL", "the database is unreachable"))
    for name, ok, detail in connection_checks(s):
        if name == "webhook sources" and not ok:
            detail = ("no webhook secret set: `serve` and `ingress` stop at start-up (exit 2) until "
                      "CB_STRIPE_WEBHOOK_SECRETS, CB_CLARITY_WEBHOOK_SECRETS or CB_ERP_WEBHOOK_SECRETS is set")
        if name == "admin API" and not ok:  # serve runs without it: the admin API answers 401 to everyone
            checks.append((name, "note", f"{detail} (every request gets 401) until CB_ADMIN_TOKENS is set"))
            continue
        checks.append((name, _verdict(ok), detail))
    return checks


@app.command()
def doctor() -> None:
    """Check the database, the migrations and every configured connection; say what `serve` will do.

    Exit 1 only when something is FAIL (serve would stop at start-up, or a connection is refused);
    a note (e.g. a SQLite schema that serve migrates at start-up) does not fail.
    """
    s = _settings()
    c = _container("cli", s)
    results = _doctor_checks(c, s)
    table = Table("check", "result", "detail")
    style = {"ok": "[green]ok[/]", "FAIL": "[red]FAIL[/]", "note": "[yellow]note[/]"}
    for name, verdict, detail in results:
        # a detail may quote a URL setting or an error that quotes one: credentials never reach the screen
        table.add_row(name, style[verdict], mask_urls_in(detail))
    console.print(table)
    raise typer.Exit(1 if any(verdict == "FAIL" for _, verdict, _ in results) else 0)


# ---- events --------------------------------------------------------------------------------------
@events_app.command("list")
def events_list(
    source: Annotated[str | None, typer.Option(help="stripe, clarity or erp.")] = None,
    status: Annotated[str | None, typer.Option(help="received, dispatched, processed or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List deliveries (newest first) with their state and the runs they started; `events show ID` shows one."""
    c = _container("cli", _settings())
    try:
        rows = _views(c).rows(c.inbox.list(source=source, status=status, limit=limit))
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table("id", "source", "event id", "type", "status", "received", "runs")
    for column in table.columns[2:4]:  # whole, so that an id can be copied into `events show`
        column.overflow = "fold"
    for r in rows:
        runs = ", ".join(f"{x['workflow']}={x['status']}" for x in r["runs"]) or "-"
        table.add_row(str(r["id"]), r["source"], r["event_id"], r["event_type"] or "-", r["status"],
                      str(r["received_at"])[:19], runs)
    console.print(table)


EventIdArg = Annotated[str, typer.Argument(
    metavar="ID", help="The event: its inbox id (as `events list` shows it), source:event_id (stripe:evt_..., "
                       "clarity:clarity-so-...), a run id, or the sender's event id alone.")]
RawOpt = Annotated[bool, typer.Option(
    "--raw", help="As stored, nothing redacted (for operators: it shows the customer's data and any secret in it).")]


def stored_event(c: Container, ref: str) -> StoredEvent:
    """The event ``ref`` names in the container's database; a clear error and exit 1 if there is none."""
    try:
        return find_event(c.inbox, ref, database=_database_name(c.settings))
    except BridgeError as exc:
        raise _fail(exc) from exc


@events_app.command("show")
def events_show(event_ref: EventIdArg, raw: RawOpt = False,
                as_json: Annotated[bool, typer.Option("--json", help="One JSON object: the row and its body.")] = False,
                ) -> None:
    """Show one delivery: its state, the runs it started and its body (redacted as the logs are, unless --raw)."""
    c = _container("cli", _settings())
    ev = stored_event(c, event_ref)
    views = None if raw else _views(c)
    row = ev.summary(views)
    try:
        body: Any = ev.shown_event(views)
    except BridgeError:  # not JSON: the text as received (redacted like a log line unless --raw)
        body = ev.body_text() if views is None else views.text(ev.body_text())
    if as_json:
        sys.stdout.write(json.dumps({**row, "body": body}, default=str, indent=2) + "\n")
        return
    if raw:
        body = ev.body_text()  # as stored, byte for byte (decoded as UTF-8)
    d = ev.delivery
    lines = [("inbox id", str(d.id)), ("event", f"{row['source']}:{row['event_id']}"),
             ("type", row["event_type"] or "-"), ("status", row["status"]),
             ("received", str(d.received_at)), ("dispatched", str(d.dispatched_at or "-")),
             ("processed", str(d.processed_at or "-"))]
    lines += [("run", f"{r['run_id']}  {r['status']}" + (f" ({r['error_code']})" if r.get("error_code") else ""))
              for r in row["runs"]] or [("runs", "none")]
    for label, value in lines:
        typer.echo(f"{label:<11} {value}")
    typer.echo(f"{'body':<11} " + ("as stored (--raw)" if raw else
               "redacted: card numbers, e-mails, phones, secrets and the CB_LOG_PII_KEYS fields (--raw shows it as "
               "stored)"))
    typer.echo(body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False, default=str))


@events_app.command("export")
def events_export(event_ref: EventIdArg, raw: Annotated[bool, typer.Option(
        "--raw", help="The body exactly as received (bytes), nothing redacted (for operators).")] = False) -> None:
    """Print the event's JSON (redacted unless --raw), the file `workflows dry-run --event FILE` reads.

    `commerce-bridge events export ID > event.json`. A redacted export dry-runs the same steps
    unless a `when` or a trigger filter reads a redacted field; `workflows dry-run NAME
    --event-id ID` reads the stored event itself.
    """
    c = _container("cli", _settings())
    ev = stored_event(c, event_ref)
    try:
        data = ev.shown_event(None if raw else _views(c))
    except BridgeError as exc:
        raise _fail(exc) from exc
    if raw:
        sys.stdout.buffer.write(ev.delivery.body)
        sys.stdout.flush()
        return
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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
    from commerce_bridge.entrypoints.cli_backfill import backfill_app
    from commerce_bridge.entrypoints.cli_customers import customers_app
    from commerce_bridge.entrypoints.cli_gaps import gaps
    from commerce_bridge.entrypoints.cli_reconcile import reconcile_app
    from commerce_bridge.entrypoints.cli_stock import stock_app
    from commerce_bridge.entrypoints.cli_workflows import workflows_app
    from commerce_bridge.entrypoints.demo import demo_webhooks
    from commerce_bridge.entrypoints.demo_order_to_cash import demo
    from commerce_bridge.entrypoints.demo_sync import demo_sync
    from commerce_bridge.entrypoints.dev import dev
    from commerce_bridge.sandbox.cli import sandbox_app

    app.add_typer(workflows_app, name="workflows")
    app.add_typer(reconcile_app, name="reconcile")
    app.add_typer(stock_app, name="stock")
    app.add_typer(backfill_app, name="backfill")
    app.add_typer(customers_app, name="customers")
    app.add_typer(sandbox_app, name="sandbox")
    app.command()(gaps)
    app.command()(demo)
    app.command("demo-webhooks")(demo_webhooks)
    app.command("demo-sync")(demo_sync)
    app.command()(dev)


def main() -> None:
    _mount_optional()
    try:
        app()
    except BridgeError as exc:  # a command that did not catch it: the message, never a traceback
        raise SystemExit(_fail(exc).exit_code) from exc
    except Exception as exc:
        if not is_database_error(exc):
            raise  # a bug: the traceback is what a report needs
        message, fix = database_problem(exc)  # e.g. PostgreSQL without the schema: which database, what to run
        print_error(message, title="error (database)", fix=fix)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
