"""The messages for what stops a command, each naming what to fix: settings, the database, the port.

* invalid settings: every bad ``CB_*`` setting with what is wrong, and the suggested fix (exit 2);
* a database that cannot be used: the masked ``CB_DATABASE_URL``, the driver's reason in its own words,
  and what to do (start the server, fix the URL, run ``db upgrade``);
* an address that cannot be listened on: the host and port, and the option or setting that chooses them.

Messages are printed whole on one line each (no wrapping at the terminal's width, so that they can be
searched for), and the text is never read as console markup.
"""

from __future__ import annotations

import errno
import socket

import typer
from rich.console import Console
from rich.markup import escape

from commerce_bridge.config import load_settings
from commerce_bridge.config_sources import mask_urls_in
from commerce_bridge.entrypoints.views import RedactedViews
from commerce_bridge.errors import BridgeError, ConfigurationError

__all__ = ["bridge_error_text", "config_error_exit", "database_problem", "is_database_error", "port_problem",
           "print_error"]

_err = Console(stderr=True, soft_wrap=True)


def print_error(message: str, *, title: str = "error", fix: str | None = None) -> None:
    """``title: message`` on stderr (``fix: ...`` on the next line), whole and literal."""
    _err.print(f"[bold red]{escape(title)}[/]: {escape(message)}")
    if fix:
        _err.print(f"  fix: {escape(fix)}")


def config_error_exit(exc: ConfigurationError, *, hint: str | None = None) -> typer.Exit:
    """Print the message naming every bad setting (as ``serve`` does); the caller raises the returned exit 2."""
    _err.print("[bold red]commerce-bridge cannot start: invalid configuration[/]")
    for line in exc.errors or [exc.message]:
        _err.print(f"  - {escape(line)}")
    if exc.suggested_fix:
        _err.print(f"  fix: {escape(exc.suggested_fix)}")
    if hint:
        _err.print(escape(hint))
    return typer.Exit(2)


def _database_url() -> str:
    try:
        return f"{mask_urls_in(load_settings().database_url)} (CB_DATABASE_URL)"
    except ConfigurationError:
        return "CB_DATABASE_URL"


def _root_reason(exc: BaseException) -> str:
    """The innermost cause's message (the driver's own words), on one line."""
    seen: set[int] = set()
    inner: BaseException = exc
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    lines: list[str] = []
    for line in str(inner).splitlines():
        if line.startswith(("LINE ", "[SQL:", "(Background on this error at:")):  # the query, not the reason
            break
        if line.strip():
            lines.append(line.strip())
    text = " ".join(lines)
    return mask_urls_in(text[:400]) or type(inner).__name__


def database_problem(exc: BaseException, *, database: str | None = None) -> tuple[str, str]:
    """(message, fix) for a database that cannot be used: which one, why, and what to do.

    Parameters
    ----------
    exc:
        The failure (a :class:`~commerce_bridge.errors.StoreUnavailable`, or a driver error that carries
        the reason in its causes).
    database:
        How to name the database (default: the masked ``CB_DATABASE_URL`` of the settings).
    """
    where = database or _database_url()
    reason = _root_reason(exc)
    low = reason.lower()
    if "no such table" in low or ("relation" in low and "does not exist" in low):
        fix = "the database has no schema yet: run `commerce-bridge db upgrade` (with the same CB_DATABASE_URL)"
    elif "unable to open database file" in low:
        fix = ("CB_DATABASE_URL names a SQLite file in a folder that does not exist or cannot be written: "
               "create the folder or change CB_DATABASE_URL")
    elif "does not exist" in low and "database" in low:
        fix = "create that database (createdb), or set CB_DATABASE_URL to the bridge's database"
    elif "password" in low or "authentication" in low or "role" in low:
        fix = "CB_DATABASE_URL's user or password is refused: correct them (or the server's access rules)"
    else:
        fix = ("start the database server, or set CB_DATABASE_URL to the bridge's database "
               "(host, port, database name, user); `commerce-bridge doctor` checks it")
    return f"cannot use the database at {where}: {reason}", fix


def port_problem(host: str, port: int) -> tuple[str, str] | None:
    """(message, fix) if ``host:port`` cannot be listened on now (in use, not an address of this machine...).

    The port is tried as uvicorn binds it (``SO_REUSEADDR``), then released at once.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return (f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                "--host or CB_HOST must be an address or name of this machine")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another commerce-bridge, or another program, "
                        "listens there)", "stop that process, or choose another port with --port or CB_PORT")
            if exc.errno == errno.EACCES:
                return (f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)",
                        "choose a port above 1024 with --port or CB_PORT")
            return (f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                    "check --host / CB_HOST (an address of this machine) and --port / CB_PORT")
    return None


_DRIVER_PACKAGES = frozenset({"sqlalchemy", "psycopg", "sqlite3", "alembic"})


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) comes from the database layer.

    The store turns connection failures into :class:`~commerce_bridge.errors.StoreUnavailable`; other driver
    errors (a table that does not exist on PostgreSQL) pass through it, and the entry points do not import
    the drivers (the import rules), so their package names are checked.
    """
    seen: set[int] = set()
    inner: BaseException | None = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if getattr(inner, "code", None) == "store_unavailable" or \
                type(inner).__module__.split(".")[0] in _DRIVER_PACKAGES:
            return True
        inner = inner.__cause__ or inner.__context__
    return False


def bridge_error_text(exc: BridgeError) -> tuple[str, str | None]:
    """(message, fix) for a :class:`BridgeError` that ends a command; a database outage says which database.

    A message can quote stored data (run ids carry event ids): card numbers, e-mail addresses and secrets
    in it are redacted. The database's URL is shown with its password masked.
    """
    if exc.code == "store_unavailable":
        return database_problem(exc)
    redact = RedactedViews(()).text
    return redact(exc.message), redact(exc.suggested_fix) if exc.suggested_fix else None
