"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe_emulator
from commerce_bridge.store import db as store_db
from tests.support.engine import engine_factory_for


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """Our database, migrated to head, on a SQLite file and on a fresh PostgreSQL database."""
    eng = store_db.make_engine(database_url)
    store_db.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[PeerServer]:
    """The Stripe emulator over real HTTP, one per test module (a module may override it with options)."""
    with PeerServer(build_stripe_emulator()) as server:
        yield server


@pytest.fixture
def stripe_base(stripe_emulator: PeerServer) -> str:
    """The emulator's address, with its objects and faults cleared for this test."""
    httpx.delete(f"{stripe_emulator.url}/_sandbox/data").raise_for_status()
    httpx.delete(f"{stripe_emulator.url}/_sandbox/faults").raise_for_status()
    return stripe_emulator.url


@pytest.fixture
def engine_factory(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """In-process workers on SQLite and PostgreSQL (see tests.support.engine)."""
    yield from engine_factory_for(database_url, tmp_path)
