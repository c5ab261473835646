"""Generators for the reference pages (run by cog from docs/reference/*.md)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from typer.testing import CliRunner

from commerce_bridge.config import SECRET_FIELDS, Settings
from commerce_bridge.errors import all_error_classes


def _help(args: list[str]) -> str:
    from commerce_bridge.entrypoints.cli import _mount_optional, app

    _mount_optional()
    env = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, [*args, "--help"], prog_name="commerce-bridge")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return re.sub(r"[ \t]+\n", "\n", result.output).strip()


def command_paths() -> list[list[str]]:
    """Every command and sub-command of the CLI."""
    from commerce_bridge.entrypoints.cli import _mount_optional, app

    _mount_optional()
    import typer.main

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name in sorted(subs):
                walk(subs[name], [*prefix, name])
        elif prefix:
            paths.append(prefix)

    walk(root, [])
    return paths


def cli_reference() -> str:
    out = ["\n## commerce-bridge\n", "```text", _help([]), "```\n"]
    for path in command_paths():
        out += [f"## commerce-bridge {' '.join(path)}\n", "```text", _help(path), "```\n"]
    return "\n".join(out) + "\n"


def settings_reference() -> str:
    rows = ["", "| setting | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default: Any = field.default
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        shown = "(secret)" if name in SECRET_FIELDS else json.dumps(default, default=str)
        desc = (field.description or "").replace("|", "\\|")
        env = f"`CB_{name.upper()}`" + (f" / `CB_{name.upper()}_FILE`" if name in SECRET_FIELDS else "")
        rows.append(f"| {env} | `{shown}` | {desc} |")
    return "\n".join(rows) + "\n\n"


def errors_reference() -> str:
    rows = ["", "| code | class | retried | HTTP | meaning |", "|---|---|---|---|---|"]
    for cls in all_error_classes():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append(f"| `{cls.code}` | `{cls.__name__}` | {'yes' if cls.transient else 'no'} | "
                    f"{cls.http_status} | {doc} |")
    return "\n".join(rows) + "\n\n"
