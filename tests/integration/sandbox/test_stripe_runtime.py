"""Stripe emulator runtime: the CLI process, SQLite persistence across restarts, reset, expansion on lists."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import stripe
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)
from stripe_fixtures import assert_shape

from commerce_bridge.sandbox.runner import PeerServer, free_port
from commerce_bridge.sandbox.stripe_emulator.app import build_app


def test_state_file_keeps_objects_across_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "stripe.db")
    with PeerServer(build_app(state_file=db)) as srv:
        c = stripe.StripeClient("sk_test_x", base_addresses={"api": srv.url})
        cus = c.v1.customers.create(params={"email": "keep@example.com"})
        pi = c.v1.payment_intents.create(
            params={
                "amount": 1234,
                "currency": "usd",
                "customer": cus.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        ep = c.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]})
    with PeerServer(build_app(state_file=db)) as srv:
        c = stripe.StripeClient("sk_test_x", base_addresses={"api": srv.url})
        assert c.v1.payment_intents.retrieve(pi.id).status == "succeeded"
        assert [p.id for p in c.v1.payment_intents.list(params={"customer": cus.id}).data] == [pi.id]
        assert c.v1.customers.search(params={"query": "email:'keep@example.com'"}).data[0].id == cus.id
        assert c.v1.webhook_endpoints.retrieve(ep.id).url == "http://127.0.0.1:9/h"
        assert c.v1.balance.retrieve().pending[0].amount == 1234 - (1234 * 290 + 5000) // 10000 - 30
        httpx.delete(srv.url + "/_sandbox/data").raise_for_status()
        assert c.v1.payment_intents.list().data == []


def test_cli_prints_url_key_and_secret_then_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commerce_bridge.sandbox.stripe_emulator",
            "--port",
            str(port),
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            "whsec_cli_test",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text and "sk_test_" in text and "whsec_cli_test" in text
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/_sandbox/health").raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        c = stripe.StripeClient("sk_test_anything", base_addresses={"api": url})
        eps = c.v1.webhook_endpoints.list().data
        assert [e.url for e in eps] == ["http://127.0.0.1:9/hook"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_expand_on_lists_and_nested_paths(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    cus = c.v1.customers.create(params={"email": "x@example.com"})
    c.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "customer": cus.id,
        }
    )
    txns = c.v1.balance_transactions.list(params={"expand": ["data.source"]}).data
    assert txns[0].source.object == "charge" and txns[0].source.amount == 5000
    pis = c.v1.payment_intents.list(params={"expand": ["data.customer", "data.latest_charge"]}).data
    assert pis[0].customer.email == "x@example.com" and pis[0].latest_charge.paid is True


def test_deleted_objects_match_stripe_shapes(
    stripe_client: stripe.StripeClient, stripe_fixtures: dict[str, Any]
) -> None:
    c = stripe_client
    prod = c.v1.products.create(params={"name": "gone"})
    ep = c.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]})
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_900_000_000})
    assert_shape(c.v1.products.delete(prod.id), "deleted_product", stripe_fixtures)
    assert_shape(c.v1.webhook_endpoints.delete(ep.id), "deleted_webhook_endpoint", stripe_fixtures)
    assert_shape(
        c.v1.test_helpers.test_clocks.delete(clock.id), "deleted_test_helpers.test_clock", stripe_fixtures
    )
