"""``commerce-bridge sandbox erp``: run the ERPNext REST simulator on a port."""

from __future__ import annotations

from typing import Annotated

import typer

from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET, build_app


def command(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8091,
    state: Annotated[str | None, typer.Option("--state", metavar="FILE",
                                              help="SQLite file that keeps state across restarts.")] = None,
    api_key: Annotated[str, typer.Option("--api-key")] = DEFAULT_API_KEY,
    api_secret: Annotated[str, typer.Option("--api-secret")] = DEFAULT_API_SECRET,
) -> None:
    """Run the ERPNext simulator until Ctrl-C."""
    from commerce_bridge.sandbox.up import block_until_interrupt, serve_gated

    url, stop = serve_gated(build_app(state_file=state, api_key=api_key, api_secret=api_secret), host, port)
    try:
        typer.echo(f"ERPNext simulator  {url}/api/resource/<DocType>")
        typer.echo(f"  Authorization: token {api_key}:{api_secret}")
        typer.echo(f"  state {state or 'in memory'}   faults {url}/_sandbox/faults")
        block_until_interrupt()
    finally:
        stop()
