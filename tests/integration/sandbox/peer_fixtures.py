"""Pytest fixtures that run the Clarity, ERPNext and mail sandbox peers on free ports (import them from tests)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer

CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"
ERP_KEY = "test-key"
ERP_SECRET = "test-secret"


@pytest.fixture
def clarity_server() -> Iterator[PeerServer]:
    """A fresh in-memory Clarity simulator."""
    with PeerServer(build_clarity()) as server:
        yield server


@pytest.fixture
def clarity_api(clarity_server: PeerServer) -> Iterator[httpx.Client]:
    """An httpx client logged in to ``clarity_server`` via ``POST /auth/identity`` (session cookies)."""
    with httpx.Client(base_url=clarity_server.url + CLARITY_BASE, timeout=10) as client:
        response = client.post(
            "/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture
def erp_server() -> Iterator[PeerServer]:
    """A fresh in-memory ERPNext simulator with key ``test-key`` / secret ``test-secret``."""
    from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp

    with PeerServer(build_erp(api_key=ERP_KEY, api_secret=ERP_SECRET)) as server:
        yield server


@pytest.fixture
def erp_api(erp_server: PeerServer) -> Iterator[httpx.Client]:
    """An httpx client for ``erp_server`` sending ``Authorization: token KEY:SECRET``."""
    headers = {"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"}
    with httpx.Client(base_url=erp_server.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def mailbox() -> Iterator[object]:
    """A running mail catcher (SMTP + HTTP) on free ports."""
    from commerce_bridge.sandbox.mailbox.server import Mailbox

    box = Mailbox(smtp_port=0, http_port=0)
    box.start()
    try:
        yield box
    finally:
        box.stop()
