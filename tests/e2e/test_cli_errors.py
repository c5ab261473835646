"""The ten most common mistakes, made with the real CLI: each message names what to fix, each exit code is the documented one.

Exit codes (the CLI's module docstring): 1 a command failed (an unknown id or name, a database that cannot be
used, an invalid workflow file), 2 the process cannot start (invalid settings, database not ready), 3 the HTTP
server cannot listen. Every case checks the setting, file and line, or id named in the message, that the
message is on one line (no wrapping at the terminal's width) and that no traceback is printed. Most mistakes
stop the command at start-up: the cases run a few at a time.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.processes import CLI, BridgeProcess, bridge_env, cli, free_port

pytestmark = pytest.mark.slow
SECRET = "whsec_cli_errors"
BAD_YAML = """\
name: acme.order_note
version: 1
trigger:
  sources: [clarity]
  event_types: [salesorder.created]
steps:
  - id: note
    uses: notify.email.send
     with: {to: ops@example.com}
"""  # line 9: one space too many


@dataclass(frozen=True)
class Mistake:
    """One mistake: the settings and command that make it, the exit code and what the message must name."""

    settings: dict[str, str]
    args: tuple[str, ...]
    code: int
    names: tuple[str, ...]  # each must appear in stderr, on one line
    absent: tuple[str, ...] = ()  # must not appear anywhere (secrets)
    setup: Callable[[Path], None] | None = field(default=None, compare=False)


def _bad_workflow(home: Path) -> None:
    (home / "workflows").mkdir()
    (home / "workflows" / "order_note.yaml").write_text(BAD_YAML)


DOWN = free_port()  # nothing listens there: a stopped database server
MISTAKES: dict[str, Mistake] = {
    "missing webhook secret": Mistake(
        {}, ("serve", "--port", str(free_port())), 2,
        ("CB_STRIPE_WEBHOOK_SECRETS, CB_CLARITY_WEBHOOK_SECRETS or CB_ERP_WEBHOOK_SECRETS: set at least one",)),
    "wrong database URL": Mistake(
        {"database_url": "mysql://bridge@db/bridge"}, ("events", "list"), 2,
        ("CB_DATABASE_URL: must start with sqlite:/// or postgresql+psycopg://",)),
    "unknown workflow name": Mistake(
        {}, ("workflows", "show", "clarity.order_to_csh"), 1,
        ("no workflow clarity.order_to_csh (did you mean clarity.order_to_cash?)", "CB_WORKFLOWS_DIR")),
    "bad YAML in a workflow file": Mistake(
        {"workflows_dir": "{home}/workflows"}, ("workflows", "validate"), 1,
        ("{home}/workflows/order_note.yaml:9:", "not valid YAML"), setup=_bad_workflow),
    "stopped database": Mistake(
        {"database_url": f"postgresql+psycopg://bridge:pw-s3cret@127.0.0.1:{DOWN}/bridge"}, ("events", "list"), 1,
        (f"cannot use the database at postgresql+psycopg://bridge:********@127.0.0.1:{DOWN}/bridge (CB_DATABASE_URL)",
         "Connection refused", "fix: start the database server, or set CB_DATABASE_URL"), absent=("pw-s3cret",)),
    "stopped database at start-up": Mistake(
        {"database_url": f"postgresql+psycopg://bridge:pw-s3cret@127.0.0.1:{DOWN}/bridge",
         "stripe_webhook_secrets": SECRET}, ("serve", "--port", str(free_port())), 2,
        ("database not ready: cannot use the database at postgresql+psycopg://bridge:********@127.0.0.1:", "CB_DATABASE_URL",
         "Connection refused"), absent=("pw-s3cret",)),
    "unknown event id": Mistake(
        {"database_url": "sqlite:///{home}/bridge.sqlite"}, ("events", "show", "stripe:evt_1NotThere"), 1,
        ("no stored event 'stripe:evt_1NotThere'", "{home}/bridge.sqlite (CB_DATABASE_URL)",
         "`commerce-bridge events list` shows the stored events"), setup=lambda home: _upgrade(home)),
    "bad JSON in a CB_ JSON setting": Mistake(
        {"status_map": '{"payment_intent.succeeded": "Paid"'}, ("config", "show"), 2,
        ("CB_STATUS_MAP: not valid JSON", "line 1 column")),
    "CB_WORKFLOW_PRIORITIES names no workflow": Mistake(
        {"workflow_priorities": '{"clarity.order_to_csh": 10}'}, ("events", "list"), 2,
        ("CB_WORKFLOW_PRIORITIES names workflows that are not loaded: clarity.order_to_csh",
         "fix: use the names `commerce-bridge workflows list` shows")),
}


def _upgrade(home: Path) -> None:
    out = cli(bridge_env(database_url=f"sqlite:///{home}/bridge.sqlite"), "db", "upgrade")
    assert out.returncode == 0, out.stderr


def _make(name: str, mistake: Mistake, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir()
    if mistake.setup:
        mistake.setup(home)
    settings = {"database_url": "sqlite:///{home}/bridge.sqlite", **mistake.settings}
    env = bridge_env(**{k: v.replace("{home}", str(home)) for k, v in settings.items()})
    return subprocess.run([*CLI, *mistake.args], env=env, cwd=home, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[subprocess.CompletedProcess[str], Path]]]:
    """Every mistake made once, four at a time; by name: (what the CLI did, its folder)."""
    root = tmp_path_factory.mktemp("mistakes")
    homes = {name: root / f"m{i}" for i, name in enumerate(MISTAKES)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = dict(zip(MISTAKES, pool.map(lambda n: _make(n, MISTAKES[n], homes[n]), MISTAKES), strict=True))
    yield {name: (outs[name], homes[name]) for name in MISTAKES}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_each_mistake_names_what_to_fix(name: str, made: dict[str, tuple[subprocess.CompletedProcess[str], Path]]
                                        ) -> None:
    mistake = MISTAKES[name]
    out, home = made[name]
    said = out.stdout + out.stderr
    assert out.returncode == mistake.code, f"{name}: exit {out.returncode}\n{said[-3000:]}"
    lines = out.stderr.splitlines()
    for text in mistake.names:
        expected = text.replace("{home}", str(home))
        assert any(expected in line for line in lines), f"{name}: no line names {expected!r}:\n{out.stderr}"
    for text in mistake.absent:
        assert text not in said, f"{name}: {text!r} shown"
    assert "Traceback" not in said, f"{name}:\n{said}"


def test_a_database_without_its_schema_says_to_run_db_upgrade(database_url: str) -> None:
    """SQLite's missing table is a connection-level error, PostgreSQL's a driver error that passes the store:
    both name the database and `db upgrade` (`dlq list` printed a traceback on both)."""
    out = cli(bridge_env(database_url=database_url), "dlq", "list")
    assert out.returncode == 1, out.stdout + out.stderr
    line = next((line for line in out.stderr.splitlines() if "cannot use the database at" in line), "")
    assert f"{database_url} (CB_DATABASE_URL)" in line and "dead_letters" in line, out.stderr
    assert "fix: the database has no schema yet: run `commerce-bridge db upgrade`" in out.stderr
    assert "Traceback" not in out.stderr and "LINE" not in out.stderr


def test_bad_yaml_is_named_with_its_line_where_the_workflows_are_listed(tmp_path: Path) -> None:
    _bad_workflow(tmp_path)
    out = cli(bridge_env(workflows_dir=str(tmp_path / "workflows"), database_url=f"sqlite:///{tmp_path}/b.sqlite"),
              "workflows", "list")
    assert out.returncode == 0, out.stderr  # the other workflows are listed; the broken file is named
    assert f"{tmp_path}/workflows/order_note.yaml:9:" in out.stderr and "skipped" in out.stderr, out.stderr


def test_a_port_in_use_is_named_with_the_setting_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = bridge_env(database_url=f"sqlite:///{tmp_path}/b.sqlite", stripe_webhook_secrets=SECRET, port=port)
        out = cli(env, "serve")
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"cannot listen: port {port} on 127.0.0.1 is already in use" in out.stderr, out.stderr
    assert "choose another port with --port or CB_PORT" in out.stderr
    assert not (tmp_path / "b.sqlite").exists()  # it stopped before touching anything


def test_a_wrong_admin_token_is_told_which_setting_holds_the_right_ones(tmp_path: Path) -> None:
    port = free_port()
    env = bridge_env(database_url=f"sqlite:///{tmp_path}/b.sqlite", stripe_webhook_secrets=SECRET,
                     admin_tokens="right-token", port=port, worker_id="errors-admin")
    serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()
    try:
        wrong = httpx.get(f"{serve.url}/api/v1/events", headers={"Authorization": "Bearer wrong-token"}, timeout=10)
        missing = httpx.get(f"{serve.url}/api/v1/events", timeout=10)
        right = httpx.get(f"{serve.url}/api/v1/events", headers={"Authorization": "Bearer right-token"}, timeout=10)
    finally:
        serve.stop()
    assert wrong.status_code == 401 and missing.status_code == 401 and right.status_code == 200
    assert wrong.json()["error"] == "The bearer token is not valid: it is none of this bridge's CB_ADMIN_TOKENS"
    assert "CB_ADMIN_TOKENS" in missing.json()["error"] and "right-token" not in wrong.text + missing.text
