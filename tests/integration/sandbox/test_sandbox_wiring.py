"""``sandbox up`` prints the bridge's settings for its peers, and they are the whole wiring (issue 11, point 2).

The bridge is started with nothing but the printed ``CB_*`` values (plus a database and an admin token),
on the port ``--bridge-url`` named: the Stripe emulator's webhooks reach it, and it reaches every peer,
so a storefront checkout ends paid in Clarity with its ERPNext sales order and payment.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.entrypoints.http.app import build_app
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET
from commerce_bridge.sandbox.runner import PeerServer, free_port
from commerce_bridge.sandbox.traffic import SCENARIOS, Traffic
from commerce_bridge.sandbox.up import STRIPE_TEST_KEY, start_peers, wiring_lines

pytestmark = pytest.mark.slow


def test_the_printed_settings_wire_the_bridge_and_the_peers_both_ways(tmp_path: Path) -> None:
    bridge_port = free_port()
    running = start_peers(port=0, bridge_url=f"http://127.0.0.1:{bridge_port}")
    try:
        lines = wiring_lines(running, f"http://127.0.0.1:{bridge_port}")
        exported = dict(line.removeprefix("  export ").split("=", 1) for line in lines
                        if line.startswith("  export CB_") and "$(" not in line)
        assert exported == running.bridge_env
        assert f"  commerce-bridge serve --port {bridge_port}" in lines
        settings = load_settings(**{k.removeprefix("CB_").lower(): v for k, v in exported.items()},
                                 database_url=f"sqlite:///{tmp_path / 'bridge.sqlite'}", admin_tokens="tok",
                                 worker_id="wiring")
        c = bootstrap(settings, "serve", migrate=True)
        # every connector is configured; the live customer and product syncs are opt-in (CB_CUSTOMER_SYNC,
        # CB_PRODUCT_SYNC), even here
        assert c.disabled_workflows == {
            **{name: ["customer.sync"] for name in (
                "stripe.customer_changed", "clarity.account_changed", "erp.customer_changed")},
            **{name: ["product.sync"] for name in (
                "stripe.product_changed", "clarity.product_changed", "erp.item_changed")}}, c.disabled_workflows
        traffic = Traffic(clarity_url=running.urls["clarity"], clarity_user=DEFAULT_USER,
                          clarity_password=DEFAULT_PASSWORD, stripe_url=running.urls["stripe"],
                          stripe_key=STRIPE_TEST_KEY, erp_url=running.urls["erp"],
                          erp_token=f"{DEFAULT_API_KEY}:{DEFAULT_API_SECRET}", mail_url=running.urls["mail"])
        try:
            traffic.seed_erp_items()
            with PeerServer(build_app(c), port=bridge_port):
                order = traffic.place(1, SCENARIOS[0])  # paid (USD)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not order.done:
                    traffic.refresh([order])
                    time.sleep(0.5)
            assert order.done, order
            # Stripe's payment_intent.succeeded came in through the webhook endpoint `sandbox up` registered
            stripe_events = {r["event_type"] for r in c.inbox.list(source="stripe", limit=100)}
            assert "payment_intent.succeeded" in stripe_events
        finally:
            traffic.close()
            c.close()
    finally:
        running.stop()
