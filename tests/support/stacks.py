"""The sandbox stack the money-back e2e modules share: one per database for a module, and ``wait_for``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack, sandbox_stack
from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database


@contextmanager
def stack_on(database: str, workdir: Path, **settings: Any) -> Iterator[Stack]:
    """A sandbox stack (peers + the bridge in this process) on a new SQLite file or a fresh PostgreSQL
    database (dropped afterwards; the test is skipped, with the reason, when no PostgreSQL is configured)."""
    if database == "postgres":
        if not pg_admin_url():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database() as url, sandbox_stack(database_url=url, workdir=workdir, **settings) as stack:
            yield stack
    else:
        with sandbox_stack(database_url=f"sqlite:///{workdir / 'bridge.sqlite'}", workdir=workdir,
                           **settings) as stack:
            yield stack


def wait_for(what: str, check: Callable[[], Any], st: Stack, timeout: float = 60.0) -> Any:
    """``check()``'s first truthy value; on timeout an AssertionError naming ``what`` and the open DLQ entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; DLQ: " + str(
        [(e["run_id"], e["error_code"], e["error_message"][:160]) for e in st.container.dead_letters.list()]))
