"""``commerce-bridge sandbox up``: every sandbox peer in one process, with URLs and credentials printed."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from commerce_bridge.sandbox.runner import PeerServer, free_port

DEFAULT_PORTS = {"stripe": 12111, "clarity": 8090, "erp": 8091, "mail_http": 8092, "smtp": 8025}
STRIPE_TEST_KEY = "sk_test_sandbox"


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


def _bridge_env(running: RunningPeers, stripe_url: str | None, bridge_url: str | None, host: str,
                smtp_port: int) -> dict[str, str]:
    """The bridge's settings for these peers; with ``bridge_url``, the Stripe emulator's webhook endpoint
    is registered to deliver to the bridge there, and its signing secret is one of them."""
    from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
    from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE
    from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET

    env: dict[str, str] = {}
    if stripe_url:
        env |= {"CB_STRIPE_API_KEY": STRIPE_TEST_KEY, "CB_STRIPE_API_BASE": stripe_url}
        if bridge_url:
            import httpx

            endpoint = httpx.post(f"{stripe_url}/v1/webhook_endpoints",
                                  headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"},
                                  data={"url": f"{bridge_url.rstrip('/')}/webhooks/stripe", "enabled_events[]": "*"})
            endpoint.raise_for_status()
            env["CB_STRIPE_WEBHOOK_SECRETS"] = str(endpoint.json()["secret"])
    env |= {
        "CB_CLARITY_BASE_URL": running.urls["clarity"] + ADMIN_BASE, "CB_CLARITY_USER": DEFAULT_USER,
        "CB_CLARITY_PASSWORD": DEFAULT_PASSWORD, "CB_CLARITY_POLL_INTERVAL_S": "1",
        "CB_ERP_BASE_URL": running.urls["erp"], "CB_ERP_API_KEY": DEFAULT_API_KEY,
        "CB_ERP_API_SECRET": DEFAULT_API_SECRET, "CB_SMTP_HOST": host, "CB_SMTP_PORT": str(smtp_port),
    }
    return env


def wiring_lines(running: RunningPeers, bridge_url: str | None) -> list[str]:
    """How to run the bridge against the peers, as shell lines to paste into another terminal."""
    if not running.bridge_env:
        return []
    lines = ["", "Run the bridge against these peers (in another shell):"]
    lines += [f"  export {k}={_shell_quote(v)}" for k, v in running.bridge_env.items()]
    if bridge_url:
        port = bridge_url.rstrip("/").rsplit(":", 1)[-1]
        lines += ["  export CB_ADMIN_TOKENS=$(openssl rand -hex 24)",
                  f"  commerce-bridge serve --port {port}",
                  f"Stripe's webhooks go to {bridge_url.rstrip('/')}/webhooks/stripe (signed with the secret above)."]
    return lines


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def start_peers(*, state_dir: str | None = None, port: int | None = None, host: str = "127.0.0.1",
                clarity_webhook_url: str | None = None, clarity_webhook_secret: str | None = None,
                bridge_url: str | None = None) -> RunningPeers:
    """Start the Stripe emulator (if available), Clarity and ERPNext simulators and the mailbox.

    ``bridge_url``: where the bridge will listen; the Stripe emulator's webhook endpoint is registered
    to deliver there, and ``bridge_env`` holds its signing secret with the other settings.
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

    ports = _ports(port)
    state = Path(state_dir) if state_dir else None
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)

    def state_file(name: str) -> str | None:
        return str(state / f"{name}.sqlite") if state is not None else None

    running = RunningPeers()
    try:
        stripe_url: str | None = None
        try:
            from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe

            stripe_app = build_stripe(state_file=state_file("stripe"))
            stripe_server = PeerServer(stripe_app, host=host, port=ports["stripe"]).start()
            running.stoppers.append(stripe_server.stop)
            stripe_url = stripe_server.url
            running.urls["stripe"] = stripe_url
            running.lines.append(f"Stripe emulator   {stripe_url}   secret key {STRIPE_TEST_KEY} "
                                 "(stripe SDK: api_base / base_addresses)")
        except Exception as exc:  # the emulator is optional: report and carry on
            running.lines.append(f"Stripe emulator   unavailable ({type(exc).__name__}: {exc})")

        clarity_app = build_clarity(
            state_file=state_file("clarity"), stripe_url=stripe_url, stripe_api_key=STRIPE_TEST_KEY if stripe_url
            else None, webhook_url=clarity_webhook_url, webhook_secret=clarity_webhook_secret)
        clarity_url, stop_clarity = serve_gated(clarity_app, host, ports["clarity"])
        running.stoppers.append(stop_clarity)
        running.urls["clarity"] = clarity_url
        running.lines += [
            f"Clarity (CEF)     {clarity_url}{ADMIN_BASE}",
            f"                  login POST {ADMIN_BASE}/auth/identity  user {DEFAULT_USER} "
            f"password {DEFAULT_PASSWORD}  (read-only: {DEFAULT_READONLY_USER} / {DEFAULT_READONLY_PASSWORD})",
            f"                  storefront checkout POST {clarity_url}/_sandbox/checkout; "
            f"faults {clarity_url}/_sandbox/faults",
        ]
        if clarity_webhook_url:
            running.lines.append(f"                  change notices -> {clarity_webhook_url}")

        erp_app = build_erp(state_file=state_file("erp"))
        erp_url, stop_erp = serve_gated(erp_app, host, ports["erp"])
        running.stoppers.append(stop_erp)
        running.urls["erp"] = erp_url
        running.lines.append(f"ERPNext           {erp_url}/api/resource/...   "
                             f"Authorization: token {DEFAULT_API_KEY}:{DEFAULT_API_SECRET}")

        mailbox = Mailbox(host=host, smtp_port=ports["smtp"], http_port=ports["mail_http"],
                          state_file=state_file("mail")).start()
        running.stoppers.append(mailbox.stop)
        running.urls["mail"] = mailbox.url
        running.urls["smtp"] = f"smtp://{host}:{mailbox.smtp_port}"
        running.lines.append(f"Mail              SMTP {host}:{mailbox.smtp_port}   messages {mailbox.url}/messages")
        running.lines.append(f"State             {state if state is not None else 'in memory (lost on exit)'}")
        running.bridge_env = _bridge_env(running, stripe_url, bridge_url, host, mailbox.smtp_port)
    except Exception:
        running.stop()
        raise
    return running


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
    running = start_peers(state_dir=state_dir, port=port, host=host, clarity_webhook_url=clarity_webhook_url,
                          clarity_webhook_secret=clarity_webhook_secret or "whsec_clarity_sandbox",
                          bridge_url=bridge_url)
    try:
        for line in [*running.lines, *wiring_lines(running, bridge_url)]:
            typer.echo(line)
        typer.echo(f"Sandbox up (pid {os.getpid()}). Press Ctrl-C to stop.")
        block_until_interrupt()
    finally:
        running.stop()
        typer.echo("Sandbox stopped.")
