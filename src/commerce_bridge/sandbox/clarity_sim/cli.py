"""``commerce-bridge sandbox clarity``: run the Clarity eCommerce simulator on a port."""

from __future__ import annotations

from typing import Annotated

import typer

from commerce_bridge.sandbox.clarity_sim.app import (
    DEFAULT_PASSWORD,
    DEFAULT_READONLY_PASSWORD,
    DEFAULT_READONLY_USER,
    DEFAULT_USER,
    build_app,
)
from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE


def command(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8090,
    state: Annotated[str | None, typer.Option("--state", metavar="FILE",
                                              help="SQLite file that keeps state across restarts.")] = None,
    user: Annotated[str, typer.Option("--user", help="Integration login (all permissions).")] = DEFAULT_USER,
    password: Annotated[str, typer.Option("--password")] = DEFAULT_PASSWORD,
    webhook_url: Annotated[str | None, typer.Option("--webhook-url", help="Post signed change notices here "
                                                                          "(off by default, as in stock CEF).")]
    = None,
    webhook_secret: Annotated[str | None, typer.Option("--webhook-secret")] = None,
    stripe_url: Annotated[str | None, typer.Option("--stripe-url", help="Stripe (emulator) base URL for "
                                                                        "checkout mode 'stripe'.")] = None,
    stripe_api_key: Annotated[str | None, typer.Option("--stripe-api-key")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="Server zone for dates (CEF uses local time).")]
    = "UTC",
    basic_auth: Annotated[bool, typer.Option("--basic-auth", help="Also accept HTTP Basic credentials.")] = False,
) -> None:
    """Run the Clarity eCommerce (CEF) simulator until Ctrl-C."""
    from commerce_bridge.sandbox.up import block_until_interrupt, serve_gated

    app = build_app(state_file=state, user=user, password=password, webhook_url=webhook_url,
                    webhook_secret=webhook_secret or ("whsec_clarity_sandbox" if webhook_url else None),
                    stripe_url=stripe_url, stripe_api_key=stripe_api_key, timezone=timezone, basic_auth=basic_auth)
    url, stop = serve_gated(app, host, port)
    try:
        typer.echo(f"Clarity simulator  {url}{ADMIN_BASE}")
        typer.echo(f"  login POST {ADMIN_BASE}/auth/identity  user {user}  password {password}")
        typer.echo(f"  read-only user {DEFAULT_READONLY_USER}  password {DEFAULT_READONLY_PASSWORD}")
        typer.echo(f"  checkout POST {url}/_sandbox/checkout   faults {url}/_sandbox/faults")
        typer.echo(f"  state {state or 'in memory'}   timezone {timezone}   webhooks {webhook_url or 'off'}")
        block_until_interrupt()
    finally:
        stop()
