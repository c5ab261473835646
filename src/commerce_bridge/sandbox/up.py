"""``commerce-bridge sandbox up``: every sandbox peer in one process, with URLs and credentials printed.

Rules it keeps (``commerce-bridge dev`` starts its peers with the same :func:`start_peers`):

* ports: each peer has a documented default (:data:`DEFAULT_PORTS`); ``0`` picks a free one; a port in use
  is found before anything starts (:func:`busy_ports`), so the message can name the option to change;
* wiring: with ``bridge_url``, the Stripe emulator delivers its webhooks to ``BRIDGE_URL/webhooks/stripe``
  and ``bridge_env`` holds the bridge's ``CB_*`` settings for these peers, the endpoint's signing secret
  among them. With a state folder, the endpoint (and its secret) is kept there and reused by the next run
  for the same URL, so the emulator never holds two endpoints for one bridge;
* catalogue: the ERPNext simulator knows the sandbox's SKUs (an unknown SKU is a dead-letter case, not
  the happy path); seeding is idempotent;
* :func:`wiring_lines` and :func:`next_steps_lines` are the one place that says how to run the bridge
  against the peers and what to try next: ``sandbox up`` and ``dev`` print the same lines.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from commerce_bridge.sandbox.runner import PeerServer, free_port

DEFAULT_PORTS = {"stripe": 12111, "clarity": 8090, "erp": 8091, "mail_http": 8092, "smtp": 8025}
PEER_NAMES = {"stripe": "Stripe emulator", "clarity": "Clarity simulator", "erp": "ERPNext simulator",
              "mail_http": "mail catcher (HTTP)", "smtp": "mail catcher (SMTP)"}
STRIPE_TEST_KEY = "sk_test_sandbox"
ENDPOINT_FILE = "stripe-webhook-endpoint.json"  # in the state folder: the endpoint registered for the bridge


def busy_ports(host: str, ports: dict[str, int]) -> list[tuple[str, int]]:
    """The (name, port) pairs of ``ports`` that cannot be listened on at ``host`` now (0 is never busy).

    Each port is bound as uvicorn binds it (``SO_REUSEADDR``) and released at once.
    """
    busy = []
    for name, port in ports.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                busy.append((name, port))
    return busy


def block_until_interrupt() -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM."""
    done = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_gated(app: Any, host: str, port: int) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` behind an :class:`OutageGate` on ``port`` (so outages can refuse connections).

    Returns the public URL and a stop function.
    """
    from commerce_bridge.sandbox.clarity_sim.faults import OutageGate

    public_port = port or free_port(host)
    inner = PeerServer(app, host=host, port=0).start()
    try:
        gate = OutageGate(inner.port, public_port, host=host).start()
    except Exception:
        inner.stop()
        raise
    faults = getattr(getattr(app, "state", None), "faults", None)
    if faults is not None:
        faults.gate = gate

    def stop() -> None:
        gate.stop()
        inner.stop()

    return f"http://{host}:{public_port}", stop


@dataclass
class RunningPeers:
    """What ``start_peers`` started: printable lines, URLs by peer and how to stop everything."""

    lines: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    bridge_env: dict[str, str] = field(default_factory=dict)  # the bridge's CB_* settings for these peers
    host: str = "127.0.0.1"

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()
        self.stoppers.clear()


def _ports(port: int | None) -> dict[str, int]:
    if port is None:
        return dict(DEFAULT_PORTS)
    if port == 0:
        return dict.fromkeys(DEFAULT_PORTS, 0)
    return {name: port + i for i, name in enumerate(DEFAULT_PORTS)}


def register_webhook_endpoint(stripe_url: str, bridge_url: str, state: Path | None) -> str:
    """Have the Stripe emulator deliver every event to ``bridge_url``; returns the endpoint's signing secret.

    With a state folder, the endpoint is remembered there (``ENDPOINT_FILE``) and reused while it exists
    with the same URL; one for another URL is deleted first.
    """
    import httpx

    url = f"{bridge_url.rstrip('/')}/webhooks/stripe"
    auth = {"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
    saved = state / ENDPOINT_FILE if state is not None else None
    if saved is not None and saved.exists():
        known = json.loads(saved.read_text())
        existing = httpx.get(f"{stripe_url}/v1/webhook_endpoints/{known['id']}", headers=auth)
        if existing.status_code == 200 and existing.json().get("url") == url:
            return str(known["secret"])
        if existing.status_code == 200:
            httpx.delete(f"{stripe_url}/v1/webhook_endpoints/{known['id']}", headers=auth).raise_for_status()
    endpoint = httpx.post(f"{stripe_url}/v1/webhook_endpoints", headers=auth,
                          data={"url": url, "enabled_events[]": "*"})
    endpoint.raise_for_status()
    secret = str(endpoint.json()["secret"])
    if saved is not None:
        saved.write_text(json.dumps({"id": endpoint.json()["id"], "url": url, "secret": secret}))
        saved.chmod(0o600)
    return secret


def _bridge_env(running: RunningPeers, stripe_url: str | None, bridge_url: str | None, host: str,
                smtp_port: int, state: Path | None) -> dict[str, str]:
    """The bridge's settings for these peers; with ``bridge_url``, the Stripe emulator's webhook endpoint
    is registered to deliver to the bridge there, and its signing secret is one of them."""
    from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
    from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE
    from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET

    env: dict[str, str] = {}
    if stripe_url:
        env |= {"CB_STRIPE_API_KEY": STRIPE_TEST_KEY, "CB_STRIPE_API_BASE": stripe_url}
        if bridge_url:
            env["CB_STRIPE_WEBHOOK_SECRETS"] = register_webhook_endpoint(stripe_url, bridge_url, state)
    env |= {
        "CB_CLARITY_BASE_URL": running.urls["clarity"] + ADMIN_BASE, "CB_CLARITY_USER": DEFAULT_USER,
        "CB_CLARITY_PASSWORD": DEFAULT_PASSWORD, "CB_CLARITY_POLL_INTERVAL_S": "1",
        "CB_CLARITY_RETURNS_POLL_INTERVAL_S": "1",
        "CB_ERP_BASE_URL": running.urls["erp"], "CB_ERP_API_KEY": DEFAULT_API_KEY,
        "CB_ERP_API_SECRET": DEFAULT_API_SECRET, "CB_SMTP_HOST": host, "CB_SMTP_PORT": str(smtp_port),
        # the simulator's seeded inventory section: ERPNext's stock follows into it (erp.stock_changed)
        "CB_CLARITY_INVENTORY_SECTION": "DEFAULT-MAIN",
    }
    return env


def serve_args(bridge_url: str) -> list[str]:
    """The arguments of ``commerce-bridge serve`` that listen where ``bridge_url`` says."""
    host_port = bridge_url.rstrip("/").split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    args = ["serve", "--port", port]
    if host not in ("127.0.0.1", ""):
        args += ["--host", host]
    return args


def wiring_lines(running: RunningPeers, bridge_url: str | None, *, settings: dict[str, str] | None = None,
                 header: str = "Run the bridge against these peers (in another shell):") -> list[str]:
    """How to run the bridge against the peers, as shell lines to paste into another terminal.

    ``settings``: the ``CB_*`` values to export (default: the peers' ``bridge_env``); without
    ``CB_ADMIN_TOKENS`` among them, a line makes one up.
    """
    env = running.bridge_env if settings is None else settings
    if not env:
        return []
    lines = ["", header]
    lines += [f"  export {k}={shlex.quote(v)}" for k, v in env.items()]
    if bridge_url:
        if "CB_ADMIN_TOKENS" not in env:
            lines.append("  export CB_ADMIN_TOKENS=$(openssl rand -hex 24)")
        lines += [f"  commerce-bridge {shlex.join(serve_args(bridge_url))}",
                  f"Stripe's webhooks go to {bridge_url.rstrip('/')}/webhooks/stripe (signed with the secret above)."]
    return lines


def next_steps_lines(bridge_url: str, *, env_file: str | None = None) -> list[str]:
    """What to try once the bridge runs: place an order by hand and follow it (docs/howto/place-an-order-by-hand.md)."""
    first = [f"  source {shlex.quote(env_file)}"] if env_file else ["  (the export lines above, with the bridge's CB_ADMIN_TOKENS)"]
    return ["", "Then, in another shell (with those settings):", *first,
            "  commerce-bridge sandbox order    # a storefront checkout, followed to the ERP",
            "  commerce-bridge events list      # deliveries and the runs they started",
            f'  curl -s -H "Authorization: Bearer $CB_ADMIN_TOKENS" \\\n       {bridge_url.rstrip("/")}/api/v1/events',
            "Walk-through: docs/howto/place-an-order-by-hand.md"]


def start_peers(*, state_dir: str | None = None, port: int | None = None, host: str = "127.0.0.1",
                clarity_webhook_url: str | None = None, clarity_webhook_secret: str | None = None,
                bridge_url: str | None = None, ports: dict[str, int] | None = None) -> RunningPeers:
    """Start the Stripe emulator (if available), Clarity and ERPNext simulators and the mailbox.

    ``port``: the base port (see ``sandbox up --port``); ``ports``: each peer's port by
    :data:`DEFAULT_PORTS` name instead (missing names: their default). ``bridge_url``: where the bridge
    will listen; the Stripe emulator's webhook endpoint is registered to deliver there, and
    ``bridge_env`` holds its signing secret with the other settings.
    """
    from commerce_bridge.sandbox.clarity_sim.app import (
        DEFAULT_PASSWORD,
        DEFAULT_READONLY_PASSWORD,
        DEFAULT_READONLY_USER,
        DEFAULT_USER,
    )
    from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
    from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE
    from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
    from commerce_bridge.sandbox.mailbox.server import Mailbox

    ports = {**DEFAULT_PORTS, **ports} if ports is not None else _ports(port)
    state = Path(state_dir) if state_dir else None
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)

    def state_file(name: str) -> str | None:
        return str(state / f"{name}.sqlite") if state is not None else None

    running = RunningPeers(host=host)
    try:
        stripe_url: str | None = None
        try:
            from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe

            stripe_app = build_stripe(state_file=state_file("stripe"))
            stripe_server = PeerServer(stripe_app, host=host, port=ports["stripe"]).start()
            running.stoppers.append(stripe_server.stop)
            stripe_url = stripe_server.url
            running.urls["stripe"] = stripe_url
            running.lines.append(f"Stripe emulator   {stripe_url}   secret key {STRIPE_TEST_KEY}")
        except Exception as exc:  # the emulator is optional: report and carry on
            running.lines.append(f"Stripe emulator   unavailable ({type(exc).__name__}: {exc})")

        clarity_app = build_clarity(
            state_file=state_file("clarity"), stripe_url=stripe_url, stripe_api_key=STRIPE_TEST_KEY if stripe_url
            else None, webhook_url=clarity_webhook_url, webhook_secret=clarity_webhook_secret)
        clarity_url, stop_clarity = serve_gated(clarity_app, host, ports["clarity"])
        running.stoppers.append(stop_clarity)
        running.urls["clarity"] = clarity_url
        running.lines += [  # each line fits 80 columns with the default ports
            f"Clarity (CEF)     {clarity_url}{ADMIN_BASE}",
            f"                  user {DEFAULT_USER} password {DEFAULT_PASSWORD} (login POST .../auth/identity)",
            f"                  read-only user {DEFAULT_READONLY_USER} password {DEFAULT_READONLY_PASSWORD}",
            "                  storefront: POST /_sandbox/checkout; faults: /_sandbox/faults",
        ]
        if clarity_webhook_url:
            running.lines.append(f"                  change notices -> {clarity_webhook_url}")

        erp_app = build_erp(state_file=state_file("erp"))
        erp_url, stop_erp = serve_gated(erp_app, host, ports["erp"])
        running.stoppers.append(stop_erp)
        running.urls["erp"] = erp_url
        _seed_catalogue(erp_url, f"{DEFAULT_API_KEY}:{DEFAULT_API_SECRET}")
        _seed_store_statuses(clarity_url)
        running.lines += [f"ERPNext           {erp_url}/api/resource/...",
                          f"                  Authorization: token {DEFAULT_API_KEY}:{DEFAULT_API_SECRET}"]

        mailbox = Mailbox(host=host, smtp_port=ports["smtp"], http_port=ports["mail_http"],
                          state_file=state_file("mail")).start()
        running.stoppers.append(mailbox.stop)
        running.urls["mail"] = mailbox.url
        running.urls["smtp"] = f"smtp://{host}:{mailbox.smtp_port}"
        running.lines.append(f"Mail              SMTP {host}:{mailbox.smtp_port}, messages {mailbox.url}/messages")
        running.lines.append(f"State             {state if state is not None else 'in memory (lost on exit)'}")
        running.bridge_env = _bridge_env(running, stripe_url, bridge_url, host, mailbox.smtp_port, state)
    except Exception:
        running.stop()
        raise
    return running


def _seed_catalogue(erp_url: str, token: str) -> None:
    import httpx

    from commerce_bridge.sandbox.traffic import seed_erp_items

    with httpx.Client(base_url=erp_url, timeout=30, headers={"Authorization": f"token {token}"}) as erp:
        seed_erp_items(erp)


def _seed_store_statuses(clarity_url: str) -> None:
    """The store's refund statuses in the Clarity simulator (the bridge sets them when Stripe refunds)."""
    import httpx

    from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
    from commerce_bridge.sandbox.traffic import CLARITY_API, seed_store_statuses

    with httpx.Client(base_url=clarity_url, timeout=30) as clarity:
        login = clarity.post(f"{CLARITY_API}/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        login.raise_for_status()
        seed_store_statuses(clarity, {"X-ss-pid": login.cookies.get("ss-pid") or login.json().get("SessionId", "")})


def ports_in_use_text(busy: list[tuple[str, int]], host: str, option_of: dict[str, str]) -> tuple[str, str]:
    """(message, fix) for ports in use: which peer, which port, and the option that moves it."""
    what = ", ".join(f"{port} ({PEER_NAMES.get(name, name)})" for name, port in busy)
    options = ", ".join(dict.fromkeys(option_of[name] for name, _ in busy))
    return (f"port{'s' if len(busy) > 1 else ''} {what} on {host} already in use (another sandbox or "
            f"program listens there)", f"stop that process, or choose other ports with {options} (0 picks a free one)")


def command(
    state_dir: Annotated[str | None, typer.Option("--state-dir", help="Keep each peer's state in a SQLite file "
                                                                      "in DIR (default: in memory).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Base port: Stripe on PORT, then Clarity, ERPNext, "
                                                             "mail HTTP and SMTP on PORT+1..PORT+4. Default "
                                                             "12111, 8090, 8091, 8092, 8025; 0 picks free ports.")]
    = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default).")] = "127.0.0.1",
    clarity_webhook_url: Annotated[str | None, typer.Option("--clarity-webhook-url",
                                                            help="Turn on Clarity's signed change notices.")] = None,
    clarity_webhook_secret: Annotated[str | None, typer.Option("--clarity-webhook-secret")] = None,
    bridge_url: Annotated[str, typer.Option(
        "--bridge-url", help="Where the bridge will listen: the Stripe emulator sends its webhooks to "
                             "BRIDGE_URL/webhooks/stripe, and the settings printed for the bridge point back at "
                             "the peers.")] = "http://127.0.0.1:8000",
) -> None:
    """Start every sandbox peer together, print URLs, credentials and the bridge's settings; run until Ctrl-C."""
    busy = busy_ports(host, _ports(port))
    if busy:
        message, fix = ports_in_use_text(busy, host, dict.fromkeys(DEFAULT_PORTS, "--port"))
        typer.echo(f"cannot listen: {message}\n  fix: {fix}", err=True)
        raise typer.Exit(3)
    running = start_peers(state_dir=state_dir, port=port, host=host, clarity_webhook_url=clarity_webhook_url,
                          clarity_webhook_secret=clarity_webhook_secret or "whsec_clarity_sandbox",
                          bridge_url=bridge_url)
    try:
        for line in [*running.lines, *wiring_lines(running, bridge_url), *next_steps_lines(bridge_url)]:
            typer.echo(line)
        typer.echo(f"Sandbox up (pid {os.getpid()}). Press Ctrl-C to stop.")
        block_until_interrupt()
    finally:
        running.stop()
        typer.echo("Sandbox stopped.")
