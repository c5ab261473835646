"""The sandbox peers of the sync integration modules (customers, products, merges): the Clarity and ERPNext
simulators beside the session's Stripe emulator, the fixtures that start them and give a client of each, the
customer gateways, and the reads and writes those modules share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from commerce_bridge.connectors.clarity.gateway import HttpClarityGateway
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.store.cursors import SqlCursorStore

CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"
ERP_KEY, ERP_SECRET = "test-key", "test-secret"
Urls = dict[str, str]


def sync_peer_fixtures(stripe_key: str) -> tuple[Callable[..., Any], ...]:
    """The fixtures ``peers`` (module scope: the Clarity and ERPNext simulators started, with the session's
    ``stripe_emulator``: their URLs, Clarity's with its API base), ``clarity_api`` (logged in), ``erp_api`` and
    ``stripe_api`` (``stripe_key``): assign them to those names in the test module."""

    @pytest.fixture(scope="module")
    def peers(stripe_emulator: PeerServer) -> Iterator[Urls]:
        with (PeerServer(build_clarity()) as clarity,
              PeerServer(build_erp(api_key=ERP_KEY, api_secret=ERP_SECRET)) as erp):
            yield {"clarity": clarity.url + CLARITY_BASE, "erp": erp.url, "stripe": stripe_emulator.url}

    @pytest.fixture
    def clarity_api(peers: Urls) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=peers["clarity"], timeout=10) as client:
            r = client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
            assert r.status_code == 200, r.text
            yield client

    @pytest.fixture
    def erp_api(peers: Urls) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=peers["erp"], headers={"Authorization": f"token {ERP_KEY}:{ERP_SECRET}"},
                          timeout=10) as client:
            yield client

    @pytest.fixture
    def stripe_api(peers: Urls) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=peers["stripe"], headers={"Authorization": f"Bearer {stripe_key}"},
                          timeout=10) as client:
            yield client

    return peers, clarity_api, erp_api, stripe_api


@contextmanager
def customer_gateways(peers: Urls, engine: Engine,
                      stripe_key: str) -> Iterator[tuple[HttpClarityGateway, StripeSdkGateway, HttpErpGateway]]:
    """The customer sync's gateways to ``peers`` (Clarity's cursors in ``engine``): (clarity, stripe, erp)."""
    clarity = HttpClarityGateway(peers["clarity"], DEFAULT_USER, DEFAULT_PASSWORD, cursor_store=SqlCursorStore(engine))
    erp = HttpErpGateway(peers["erp"], ERP_KEY, ERP_SECRET)
    stripe = StripeSdkGateway(build_stripe_client(stripe_key, api_base=peers["stripe"], timeout_s=10))
    yield clarity, stripe, erp
    clarity.close()
    erp.close()


def clarity_account(api: httpx.Client, *, email: str, phone: str = "+14155550101", tax_id: str | None = None) -> int:
    """A Clarity account named Ada Lovelace with one billing contact (``email``, ``phone``, an address in
    San Francisco) and, unless None, ``tax_id`` as its ``EIN``: its ID."""
    contact = {"FirstName": "Ada", "LastName": "Lovelace", "Email1": email, "Phone1": phone,
               "Address": {"Street1": "1 Main St", "City": "San Francisco", "RegionCode": "CA",
                           "PostalCode": "94105", "CountryCode": "US"}}
    r = api.post("/Accounts/Account/Create", json={
        "ID": 0, "CustomKey": f"ACCT-{uuid.uuid4().hex[:8]}", "Name": "Ada Lovelace",
        **({"EIN": tax_id} if tax_id is not None else {}),
        "AccountContacts": [{"Slave": contact, "IsBilling": True, "IsPrimary": False}]})
    assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text
    return int(r.json()["Result"])


def erp_doc(api: httpx.Client, doctype: str, name: str) -> dict[str, Any]:
    r = api.get(f"/api/resource/{doctype}/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])
