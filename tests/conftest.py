"""Shared fixtures: isolated settings, and databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database, sqlite_database

# pytest-xdist's workers inherit COLUMNS=80, and Rich fixes a console's width from it when the console is made (the
# CLI's is made at import): the tests that ask for a wide console (COLUMNS in the CliRunner's env) would get 80
os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CB_* setting of the developer's shell, and no commerce-bridge.toml, leaks into a test."""
    for key in list(os.environ):
        if key.startswith("CB_") and key != "CB_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        with sqlite_database(tmp_path) as url:
            yield url
    else:
        if not pg_admin_url():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database() as url:
            yield url


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    if not pg_admin_url():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        yield url
