"""``commerce-bridge sandbox mail``: run the SMTP mail catcher and its HTTP listing."""

from __future__ import annotations

from typing import Annotated

import typer

from commerce_bridge.sandbox.mailbox.server import Mailbox


def command(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    smtp_port: Annotated[int, typer.Option("--smtp-port", help="SMTP port.")] = 8025,
    port: Annotated[int, typer.Option("--port", help="HTTP port of the message listing.")] = 8092,
    state: Annotated[str | None, typer.Option("--state", metavar="FILE",
                                              help="SQLite file that keeps messages across restarts.")] = None,
) -> None:
    """Run the mail catcher until Ctrl-C."""
    from commerce_bridge.sandbox.up import block_until_interrupt

    box = Mailbox(host=host, smtp_port=smtp_port, http_port=port, state_file=state).start()
    try:
        typer.echo(f"Mail catcher  SMTP {host}:{box.smtp_port}   messages {box.url}/messages")
        typer.echo(f"  state {state or 'in memory'}")
        block_until_interrupt()
    finally:
        box.stop()
