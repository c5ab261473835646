"""The start-up message for invalid settings, shared by every command that loads them."""

from __future__ import annotations

import typer
from rich.console import Console

from commerce_bridge.errors import ConfigurationError

__all__ = ["config_error_exit"]

_err = Console(stderr=True)


def config_error_exit(exc: ConfigurationError, *, hint: str | None = None) -> typer.Exit:
    """Print the message naming every bad setting (as ``serve`` does); the caller raises the returned exit 2."""
    _err.print("[bold red]commerce-bridge cannot start: invalid configuration[/]")
    for line in exc.errors or [exc.message]:
        _err.print(f"  - {line}")
    if hint:
        _err.print(hint)
    return typer.Exit(2)
