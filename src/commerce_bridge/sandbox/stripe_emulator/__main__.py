"""``python -m commerce_bridge.sandbox.stripe_emulator``: run the emulator (same options as the CLI)."""

from __future__ import annotations

import typer

from .cli import command

if __name__ == "__main__":
    typer.run(command)
