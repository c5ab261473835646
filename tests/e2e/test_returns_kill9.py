"""kill -9 between the Stripe refund of a Clarity return and its ERP entry: one refund, one credit note (issue 12).

A real ``commerce-bridge serve`` process against the sandbox peers (SQLite). ERPNext refuses Sales Invoices
(503) so the run stops after the refund and the return's record, at the ERP; the process is killed with
SIGKILL there, ERPNext comes back, the process restarts with the same worker id and DBOS resumes the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import sandbox_peers
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS
from tests.support.processes import BridgeProcess, bridge_env, migrate

pytestmark = pytest.mark.slow


def wait_for(what: str, check: Callable[[], Any], logs: Callable[[], str], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{logs()[-3000:]}")


def test_kill_9_between_the_stripe_refund_and_the_erp_entry_books_one_refund_once(tmp_path: Path) -> None:
    with ExitStack() as stack:
        peers = stack.enter_context(sandbox_peers(f"sqlite:///{tmp_path / 'bridge.sqlite'}", tmp_path))
        settings = {k: v for k, v in peers.settings.items() if k != "rate_limits"}
        env = bridge_env(**settings, rate_limits='{"stripe": 80, "clarity": 50, "erp": 50}',
                         retry_max_attempts=60, retry_max_delay_s=1)  # the ERP step waits out the 503s
        migrate(env, tmp_path)
        serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=peers.bridge_port)
        stack.callback(serve.stop)
        serve.start()
        traffic = peers.traffic
        erp = traffic.erp  # the ERP's base URL and token
        order = traffic.place(1, next(s for s in SCENARIOS if s.name == "paid (USD)"))
        wait_for("the order paid", lambda: (traffic.refresh([order]), order.done)[1], serve.log)
        wait_for("its ERP payment", lambda: erp_docs(erp, "Payment Entry", "party_type", "Customer"), serve.log)
        pi = next(p for p in traffic.stripe.get("/v1/payment_intents", params={"limit": 10}).json()["data"]
                  if p["metadata"].get("clarity_order_key") == order.key)

        erp.put("/_sandbox/faults", json={"rules": [{"path": "*Sales Invoice*", "methods": ["POST"],
                                                     "status": 503}]}).raise_for_status()
        r = traffic.clarity.post("/_sandbox/returns", json={
            "SalesOrderID": order.order_id, "CustomKey": "RMA-K9", "RefundAmount": "12.50", "Status": "Refund Approved"})
        assert r.status_code == 200, r.text
        refunds = wait_for("the Stripe refund", lambda: stripe_refunds(traffic, pi["id"]), serve.log)
        wait_for("the run stuck at the ERP", lambda: erp.get("/_sandbox/faults").json()["rules"][0]["fired"] >= 2,
                 serve.log)
        serve.kill9()

        erp.delete("/_sandbox/faults").raise_for_status()
        serve.start()  # the same worker id: DBOS resumes its run where the checkpoints end
        notes = wait_for("the credit note", lambda: erp_docs(erp, "Sales Invoice", "remarks",
                                                             f"Stripe refund {refunds[0]['id']}"), serve.log)
        pays = wait_for("the Pay entry", lambda: erp_docs(erp, "Payment Entry", "reference_no", refunds[0]["id"]),
                        serve.log)
        time.sleep(2)  # anything still in flight would have made a second one by now
        assert [x["amount"] for x in stripe_refunds(traffic, pi["id"])] == [1250]
        assert len(erp_docs(erp, "Sales Invoice", "remarks", f"Stripe refund {refunds[0]['id']}")) == len(notes) == 1
        assert len(erp_docs(erp, "Payment Entry", "reference_no", refunds[0]["id"])) == len(pays) == 1
        assert Decimal(str(notes[0]["grand_total"])) == Decimal("-12.50")
        ret = traffic.clarity.get(f"{CLARITY_API}/Returning/SalesReturn/Key/RMA-K9", headers=traffic.session).json()
        assert ret["StatusKey"] == "Completed" and ret["RefundTransactionID"] == refunds[0]["id"]
        assert len(ret.get("SalesReturnPayments") or []) == 1


def stripe_refunds(traffic: Any, pi_id: str) -> list[dict[str, Any]]:
    return list(traffic.stripe.get("/v1/refunds", params={"payment_intent": pi_id}).json()["data"])


def erp_docs(erp: httpx.Client, doctype: str, field: str, value: str) -> list[dict[str, Any]]:
    r = erp.get(f"/api/resource/{doctype}", params={"filters": f'[["{field}", "=", "{value}"]]', "fields": '["*"]',
                                                    "limit_page_length": 0})
    return [d for d in r.json()["data"] if d["docstatus"] == 1]
