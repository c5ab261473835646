"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from commerce_bridge.store import db as store_db


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """Our database, migrated to head, on a SQLite file and on a fresh PostgreSQL database."""
    eng = store_db.make_engine(database_url)
    store_db.upgrade(eng)
    yield eng
    eng.dispose()
