"""CB_STATUS_MAP through the real entry points: a bad map stops start-up; a good one reaches the router and engine."""

from __future__ import annotations

import json
from pathlib import Path

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.mapping.status import DEFAULT_CONFIG
from tests.support.processes import bridge_env, cli

RENAMED = {
    "stripe_events_to_clarity": {"payment_intent.succeeded": "Paid by Card",
                                 "payment_intent.payment_failed": "Payment Declined"},
    "clarity_payment_actions": {"Dispatched": "capture"},
}


def test_a_bad_status_map_stops_start_up_naming_the_setting_and_the_entry(tmp_path: Path) -> None:
    env = bridge_env(database_url=f"sqlite:///{tmp_path / 'b.sqlite'}", stripe_webhook_secrets="whsec_x",
                     status_map=json.dumps({"stripe_to_clarity": {"payment_intent": {"paid": "Full Payment Received"}}}))
    out = cli(env, "serve")
    said = " ".join(out.stderr.split())  # the console wraps long lines
    assert out.returncode == 2, out.stdout + out.stderr
    assert "CB_STATUS_MAP: stripe_to_clarity.payment_intent: paid is not a Stripe payment_intent status" in said
    assert "Traceback" not in out.stderr
    env["CB_STATUS_MAP"] = json.dumps({"clarity_payment_actions": {}})
    out = cli(env, "worker")
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and "CB_STATUS_MAP: the status map gives no shipped_status" in said


def test_config_show_prints_the_effective_map(tmp_path: Path) -> None:
    out = cli(bridge_env(status_map=json.dumps(RENAMED)), "config", "show", "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)["status_map"]
    assert shown["stripe_events_to_clarity"] == RENAMED["stripe_events_to_clarity"]
    assert shown["clarity_to_stripe"] == DEFAULT_CONFIG["clarity_to_stripe"]


def test_bootstrap_pins_the_maps_status_names_and_filters_use_them(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'bridge.sqlite'}", worker_id="t", status_map=RENAMED,
        workflow_vars={"clarity.order_to_cash": {"hold_status": "Manual Review"}},
        stripe_api_key="sk_test_x", stripe_api_base="http://127.0.0.1:9", clarity_base_url="http://127.0.0.1:9/api", clarity_user="u",
        erp_base_url="http://127.0.0.1:9", erp_api_key="k", erp_api_secret="s", clarity_poll_interval_s=0)
    c = bootstrap(settings, "worker", migrate=True)
    try:
        assert c.engine is not None
        pinned = c.engine.workflow_vars
        assert pinned["stripe.payment_succeeded"] == {"paid_status": "Paid by Card", "invoice_on": "paid"}
        assert pinned["clarity.order_to_cash"]["hold_status"] == "Manual Review"  # CB_WORKFLOW_VARS win
        assert pinned["clarity.order_shipped"] == {"shipped_status": "Dispatched", "invoice_on": "paid"}
        assert c.router.workflow_vars == pinned
        notice = {"id": "n1", "type": "salesorder.updated",
                  "data": {"ID": 3, "CustomKey": "WEB-3", "StatusKey": "Dispatched"}}
        assert [w.name for w in c.router.route("clarity", "salesorder.updated", notice, "n1")] == [
            "clarity.order_shipped"]
        notice["data"]["StatusKey"] = "Shipped"
        assert [w.name for w in c.router.route("clarity", "salesorder.updated", notice, "n1")] == []
    finally:
        c.close()
