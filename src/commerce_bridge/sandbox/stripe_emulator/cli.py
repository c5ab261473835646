"""The ``commerce-bridge sandbox stripe`` command: print URL, API key and webhook secret, then serve."""

from __future__ import annotations

import secrets

import typer
import uvicorn

from .app import build_app

DEFAULT_API_KEY = "sk_test_sandbox_4eC39HqLyjWDarjtT1zdp7dc"


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(12111, "--port", help="TCP port."),
    state: str | None = typer.Option(
        None, "--state", metavar="FILE", help="SQLite file to persist state to."
    ),
    api_key: str = typer.Option(
        DEFAULT_API_KEY, "--api-key", help="The key to print; any sk_test_ key is accepted."
    ),
    webhook_url: str | None = typer.Option(
        None, "--webhook-url", metavar="URL", help="Register an endpoint for all events."
    ),
    webhook_secret: str | None = typer.Option(
        None, "--webhook-secret", metavar="whsec_...", help="Its signing secret."
    ),
    rate_limit: int | None = typer.Option(
        None, "--rate-limit", metavar="N", help="Global requests/s (Stripe test: 25)."
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the Stripe emulator (use it with the official SDK: base_addresses={"api": URL})."""
    if not api_key.startswith("sk_test_"):
        raise typer.BadParameter("the API key must start with sk_test_", param_hint="--api-key")
    if webhook_url:
        webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
    app = build_app(
        state_file=state,
        rate_limit_per_s=rate_limit,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        gc_tuning=True,
    )
    url = f"http://{host}:{port}"
    typer.echo(f"Stripe emulator: {url}")
    typer.echo(f"API key:         {api_key}")
    if webhook_url:
        typer.echo(f"Webhook:         {webhook_url}")
        typer.echo(f"Webhook secret:  {webhook_secret}")
    typer.echo(f"Control API:     {url}/_sandbox/health")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")
