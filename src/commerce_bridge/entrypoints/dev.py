"""``commerce-bridge dev``: the sandbox peers and the bridge together, wired both ways, with a live view.

Rules it keeps:

* the peers run in this process (:func:`commerce_bridge.sandbox.up.start_peers`); the bridge is a
  ``commerce-bridge serve`` subprocess whose environment is exactly the ``export`` lines printed (and
  written to ``DATA_DIR/env.sh``) plus this shell's non-``CB_`` variables: the ``CB_*`` variables of the
  shell that runs ``dev`` are not passed on (it says which), so pasting the lines reproduces the bridge;
* state: the bridge's SQLite file, its log, its admin token and the peers' state live in ``--data-dir``
  (default ``./data/dev``) and are **reused** by the next run, so orders placed before are still there on
  both sides; ``--fresh`` deletes what an earlier run left there first (only the files ``dev`` writes);
* ports: each has an option with the sandbox's documented default (the bridge's is ``serve``'s 8000); a
  port in use stops ``dev`` before anything starts, naming the option to change (exit 3, as ``serve``);
* one ``dev`` per data folder: ``DATA_DIR/dev.lock`` is locked while it runs, and the bridge inherits the
  lock, so a bridge left running by a ``dev`` that was killed outright (``kill -9``) still holds it; a
  second ``dev`` there is refused with both pids (two bridges with the same worker id on one database
  would take each other's lease);
* it is ready when the bridge's ``/readyz`` answers 200; then it prints the URLs, the admin token, the
  export lines and what to try next, and shows events and runs until Ctrl-C, SIGTERM or SIGHUP (the
  terminal closed), which stop the bridge, then the peers; exit 0. A bridge that exits by itself is
  reported with the last lines of its log, and ``dev`` exits 1.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live

from commerce_bridge.entrypoints.dev_view import AdminFeed, PlainLines, render
from commerce_bridge.entrypoints.startup_errors import print_error
from commerce_bridge.sandbox.runner import free_port
from commerce_bridge.sandbox.up import (
    DEFAULT_PORTS,
    RunningPeers,
    busy_ports,
    next_steps_lines,
    ports_in_use_text,
    serve_args,
    start_peers,
    wiring_lines,
)

BRIDGE_PORT = 8000
OPTION_OF = {"bridge": "--port", "stripe": "--stripe-port", "clarity": "--clarity-port", "erp": "--erp-port",
             "mail_http": "--mail-port", "smtp": "--smtp-port"}
OWN_FILES = ("bridge.sqlite", "bridge.sqlite-wal", "bridge.sqlite-shm", "engine.sqlite", "engine.sqlite-wal",
             "engine.sqlite-shm", "bridge.log", "env.sh", "admin-token")  # engine.sqlite: the engine's own
PEERS_DIR = "peers"
STOP_TIMEOUT_S = 20.0


@dataclass
class Bridge:
    """The ``serve`` subprocess, its URL and its log file."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT (as Ctrl-C would), then SIGKILL if it has not stopped within ``STOP_TIMEOUT_S``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C (SIGINT), SIGTERM or SIGHUP: the loops below end and everything is stopped."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _serve_executable() -> list[str]:
    """``commerce-bridge`` next to this Python (the virtualenv's), else on PATH, else ``python -m``."""
    beside = Path(sys.executable).parent / "commerce-bridge"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("commerce-bridge")
    return [found] if found else [sys.executable, "-m", "commerce_bridge.entrypoints.cli"]


def _lock_data_dir(data_dir: Path) -> int:
    """Lock ``DATA_DIR/dev.lock`` for this run (the file says who holds it); exit 1 naming the holder if taken.

    Returns the locked descriptor, which the bridge inherits (see the module's rules).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "dev.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        print_error(f"{data_dir} is in use by {holder}", title="data folder in use",
                    fix="stop that `commerce-bridge dev` (or its bridge: kill the serve pid), or choose another "
                        "--data-dir")
        raise typer.Exit(1) from None
    _note_holder(fd, f"commerce-bridge dev pid {os.getpid()}")
    return fd


def _note_holder(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _prepare_data_dir(data_dir: Path, fresh: bool) -> bool:
    """Create ``data_dir``; with ``fresh`` delete what ``dev`` wrote there before. True if a database is reused."""
    if fresh:
        for name in OWN_FILES:
            (data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(data_dir / PEERS_DIR, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    return (data_dir / "bridge.sqlite").exists()


def _admin_token(data_dir: Path) -> str:
    """The admin token kept in ``DATA_DIR/admin-token`` (made once, readable by the owner only)."""
    import secrets

    path = data_dir / "admin-token"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    token = secrets.token_hex(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _write_env_file(path: Path, settings: dict[str, str]) -> None:
    path.write_text("# commerce-bridge dev: the bridge's settings (source this file)\n"
                    + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items()))
    path.chmod(0o600)


def _start_bridge(url: str, settings: dict[str, str], log: Path, lock_fd: int) -> Bridge:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")} | settings
    with log.open("ab") as out:
        out.write(f"--- commerce-bridge dev started serve at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        out.flush()
        # its own process group: the terminal's Ctrl-C reaches `dev` only, which stops the bridge, then the peers
        proc = subprocess.Popen([*_serve_executable(), *serve_args(url)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
                                pass_fds=(lock_fd,))
    _note_holder(lock_fd, f"commerce-bridge dev pid {os.getpid()} and its bridge (commerce-bridge serve) pid {proc.pid}")
    return Bridge(proc=proc, url=url, log=log)


def _wait_ready(bridge: Bridge, stop: threading.Event, timeout: float) -> bool:
    """True once ``/readyz`` answers 200; False if stopped; exit 1 if the bridge exits or is not ready in time."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if bridge.proc.poll() is not None:
            _bridge_died(bridge)
        try:
            if httpx.get(f"{bridge.url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print_error(f"the bridge at {bridge.url} was not ready within {timeout:.0f} s; the last lines of "
                        f"its log ({bridge.log}):\n{bridge.tail()}", title="bridge not ready",
                        fix="read the log; --ready-timeout waits longer")
            raise typer.Exit(1)
        stop.wait(0.3)
    return False


def _bridge_died(bridge: Bridge) -> None:
    print_error(f"the bridge (commerce-bridge serve, pid {bridge.proc.pid}) exited with code {bridge.proc.returncode}"
                f"; the last lines of its log ({bridge.log}):\n{bridge.tail()}", title="bridge stopped")
    raise typer.Exit(1)


def _banner(running: RunningPeers, bridge: Bridge, settings: dict[str, str], data_dir: Path, reused: bool,
            ignored: list[str], default_ports: bool) -> list[str]:
    state = "reused from an earlier run (--fresh starts clean)" if reused else "new"
    lines = [*running.lines,
             f"Bridge            {bridge.url}   (commerce-bridge serve, pid {bridge.proc.pid})",
             f"                  admin API {bridge.url}/api/v1",
             f"                  admin token {settings['CB_ADMIN_TOKENS']}",
             f"                  database {data_dir / 'bridge.sqlite'}",
             f"                  ({state})",
             f"                  log {bridge.log}"]
    if ignored:
        lines.append(f"Not passed to the bridge (set in this shell): {', '.join(ignored)}")
    peers = (f"`commerce-bridge sandbox up --state-dir {data_dir / PEERS_DIR}`" if default_ports
             else "`commerce-bridge sandbox up` on the ports above")
    lines += wiring_lines(running, bridge.url, settings=settings,
                          header=f"The bridge runs with exactly these settings, saved in\n  {data_dir / 'env.sh'}\n"
                                 f"By hand, the same is {peers},\nand in another shell:")
    lines += next_steps_lines(bridge.url, env_file=str(data_dir / "env.sh"))
    return lines


def _watch(bridge: Bridge, token: str, stop: threading.Event, live: bool) -> None:
    """Show events and runs until ``stop`` is set; exit 1 if the bridge exits by itself."""
    feed = AdminFeed(bridge.url, token)
    started = time.monotonic()
    try:
        if live:
            console = Console()
            with Live(console=console, auto_refresh=False, transient=False) as view:
                while not stop.is_set():
                    if bridge.proc.poll() is not None:
                        break
                    up = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - started))
                    header = f"dev: bridge {bridge.url}, up {up} (Ctrl-C stops all)"
                    view.update(render(feed.read(), feed, header), refresh=True)
                    stop.wait(1.0)
        else:
            lines = PlainLines(feed, typer.echo)
            while not stop.is_set() and bridge.proc.poll() is None:
                lines.update(feed.read())
                stop.wait(1.0)
    finally:
        feed.close()
    if not stop.is_set() and bridge.proc.poll() is not None:
        _bridge_died(bridge)


def _port(what: str) -> Any:
    return typer.Option(min=0, max=65535, help=f"Port of the {what} (0 picks a free one).", show_default=True)


def dev(
    port: Annotated[int, typer.Option(min=0, max=65535, help="The bridge's port (0 picks a free one).")]
    = BRIDGE_PORT,
    host: Annotated[str, typer.Option(help="Interface for the bridge and the peers (loopback by default).")]
    = "127.0.0.1",
    stripe_port: Annotated[int, _port("Stripe emulator")] = DEFAULT_PORTS["stripe"],
    clarity_port: Annotated[int, _port("Clarity simulator")] = DEFAULT_PORTS["clarity"],
    erp_port: Annotated[int, _port("ERPNext simulator")] = DEFAULT_PORTS["erp"],
    mail_port: Annotated[int, _port("mail catcher's message list (HTTP)")]
    = DEFAULT_PORTS["mail_http"],
    smtp_port: Annotated[int, _port("mail catcher's SMTP server")] = DEFAULT_PORTS["smtp"],
    data_dir: Annotated[Path, typer.Option(help="The bridge's SQLite file, log and admin token, and the peers' "
                                                "state; reused by the next run.")] = Path("data/dev"),
    fresh: Annotated[bool, typer.Option(help="Delete what an earlier run left in --data-dir first.")] = False,
    live: Annotated[bool | None, typer.Option(
        help="A live view of events and runs (default: when stdout is a terminal; --no-live prints one line "
             "per new event or run instead).")] = None,
    ready_timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the bridge's /readyz.")] = 60.0,
) -> None:
    """Run the sandbox peers and the bridge together, wired both ways; show events and runs until Ctrl-C."""
    stop = _stop_on_signals()
    ports = {"stripe": stripe_port, "clarity": clarity_port, "erp": erp_port, "mail_http": mail_port,
             "smtp": smtp_port}
    busy = busy_ports(host, {**ports, "bridge": port})
    if busy:
        message, fix = ports_in_use_text(busy, host, OPTION_OF)
        print_error(message, title="cannot listen", fix=fix)
        raise typer.Exit(3)
    data_dir = data_dir.resolve()
    lock_fd = _lock_data_dir(data_dir)
    reused = _prepare_data_dir(data_dir, fresh)
    bridge_url = f"http://{host}:{port or free_port(host)}"
    try:
        running = start_peers(state_dir=str(data_dir / PEERS_DIR), ports=ports, host=host, bridge_url=bridge_url)
    except (OSError, RuntimeError, TimeoutError) as exc:  # a port taken since the check, a state file unreadable
        print_error(f"a sandbox peer did not start: {exc}", title="sandbox not started",
                    fix="if a port was taken meanwhile, start again or choose other ports (--clarity-port ...)")
        raise typer.Exit(3) from exc
    bridge: Bridge | None = None
    try:
        settings = {"CB_DATABASE_URL": f"sqlite:///{data_dir / 'bridge.sqlite'}",
                    "CB_ADMIN_TOKENS": _admin_token(data_dir), "CB_WORKER_ID": "dev", **running.bridge_env}
        _write_env_file(data_dir / "env.sh", settings)
        bridge = _start_bridge(bridge_url, settings, data_dir / "bridge.log", lock_fd)
        if _wait_ready(bridge, stop, ready_timeout):
            ignored = sorted(k for k in os.environ if k.startswith("CB_"))
            for line in _banner(running, bridge, settings, data_dir, reused, ignored, ports == DEFAULT_PORTS):
                typer.echo(line)
            typer.echo("Ready. Ctrl-C stops the bridge and the peers.")
            _watch(bridge, settings["CB_ADMIN_TOKENS"], stop, sys.stdout.isatty() if live is None else live)
    finally:
        if bridge is not None:
            bridge.stop()
        running.stop()
        os.close(lock_fd)
    typer.echo("Stopped the bridge and the sandbox peers.")
