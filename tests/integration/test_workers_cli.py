"""``commerce-bridge workers list`` shows which worker polls each polled source (the live lease holder)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli import app
from commerce_bridge.store.coordination import SqlWorkerLeases
from commerce_bridge.store.locks import SqlKeyLocks

runner = CliRunner()


def test_workers_list_names_the_worker_that_polls_clarity(engine: Engine, database_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    leases, locks = SqlWorkerLeases(engine), SqlKeyLocks(engine)
    for worker in ("w-1", "w-2"):
        leases.register(worker, "host", 1, lease_s=30)
    monkeypatch.setenv("CB_DATABASE_URL", database_url)

    def polls() -> dict[str, list[str]]:
        result = runner.invoke(app, ["workers", "list", "--json"])
        assert result.exit_code == 0, result.output
        return {r["executor_id"]: r["polls"] for r in json.loads(result.stdout)}

    assert polls() == {"w-1": [], "w-2": []}  # nobody holds the lease yet
    assert locks.try_acquire("poller:clarity", "w-2", lease_s=30)
    assert polls() == {"w-1": [], "w-2": ["clarity"]}
    table = runner.invoke(app, ["workers", "list"])
    assert table.exit_code == 0 and "polls" in table.stdout and "clarity" in table.stdout
    assert locks.try_acquire("poller:clarity", "w-2", lease_s=-1)  # renewed into the past: the lease ran out
    assert polls() == {"w-1": [], "w-2": []}
