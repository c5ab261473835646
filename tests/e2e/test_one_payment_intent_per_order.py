"""One PaymentIntent per order, also when a second run comes after Stripe forgot the idempotency key
(issue 4, point 11), end to end against the sandbox peers on SQLite and PostgreSQL.

Stripe keeps idempotency keys for 24 hours only. A 3-D Secure order waits for its customer, still
Pending; a day later the shop edits it in Clarity, so the poller starts ``clarity.order_to_cash``
again. The per-order key no longer protects the create, so the run must find the PaymentIntent the
identity map links to the order and reuse it instead of making (and confirming) a second one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from commerce_bridge.entrypoints.demo_order_to_cash import Stack, sandbox_stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed

pytestmark = pytest.mark.slow
THREE_DS = next(s for s in SCENARIOS if s.name == "3-D Secure")
A_DAY_AND_A_MINUTE_S = 86400 + 60


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with sandbox_stack(database_url=database_url, workdir=tmp_path) as st:
        yield st


def wait_for(what: str, check: Callable[[], Any], st: Stack, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    dlq = [(e["step_id"], e["error_code"], e["error_message"][:120]) for e in st.container.dead_letters.list()]
    raise AssertionError(f"timed out waiting for {what}; runs: {order_runs(st)}; DLQ: {dlq}")


def intents_for(st: Stack, key: str) -> list[dict[str, Any]]:
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()
    return [pi for pi in page["data"] if (pi.get("metadata") or {}).get("clarity_order_key") == key]


def order_runs(st: Stack) -> list[tuple[str, str]]:
    with st.container.db.connect() as conn:
        rows = conn.execute(text("SELECT event_id, status FROM runs WHERE workflow = 'clarity.order_to_cash' "
                                 "ORDER BY created_at"))
        return [(str(e), str(s)) for e, s in rows]


def authentication_emails(st: Stack, order: Placed) -> int:
    """E-mails asking the customer to authenticate (read directly: ``Traffic.refresh`` would authenticate)."""
    messages = st.traffic.mail.get("/messages").json()
    messages = messages if isinstance(messages, list) else messages.get("messages", [])
    return sum(1 for m in messages if order.email in [str(to).lower() for to in m.get("rcpt_tos") or []]
               and "confirm your payment" in str(m.get("subject", "")).lower())


def test_a_second_run_a_day_later_reuses_the_linked_payment_intent(stack: Stack) -> None:
    st = stack
    order = st.traffic.place(1, THREE_DS)
    assert not order.error, order.error
    # first run: a PaymentIntent waiting for 3-D Secure, linked to the order, and the customer's e-mail
    wait_for("the 3-D Secure PaymentIntent and its e-mail", lambda: authentication_emails(st, order) == 1
             and [pi["status"] for pi in intents_for(st, order.key)] == ["requires_action"]
             and order_runs(st) and all(s == "succeeded" for _, s in order_runs(st)), st)
    first = intents_for(st, order.key)[0]
    assert len(order_runs(st)) == 1

    # a day later Stripe no longer knows the key `clarity-order:<key>:payment`
    st.traffic.stripe.post("/_sandbox/clock/advance", json={"seconds": A_DAY_AND_A_MINUTE_S}).raise_for_status()
    # the shop edits the order, which stays Pending: the poller sees salesorder.updated and starts a new run
    api, session = st.traffic.clarity, st.traffic.session
    current = api.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=session).json()
    assert current["StatusKey"] == "Pending"
    contact = {**current["BillingContact"], "Phone1": "+15125550199"}
    edited = api.put(f"{CLARITY_API}/Ordering/SalesOrder/Update", headers=session,
                     json={"ID": current["ID"], "BillingContact": contact})
    assert edited.status_code == 200 and edited.json()["ActionSucceeded"], edited.text
    wait_for("the second run to finish", lambda: len(order_runs(st)) == 2
             and all(s == "succeeded" for _, s in order_runs(st)), st)

    intents = intents_for(st, order.key)
    assert [pi["id"] for pi in intents] == [first["id"]], "no second PaymentIntent for the order"
    assert intents[0]["status"] == "requires_action"
    assert st.container.dead_letters.count_open() == 0
    assert authentication_emails(st, order) == 1, "the customer already has the link: not sent again"

    # the customer authenticates the one PaymentIntent: the order is paid once
    st.traffic.stripe.post(f"/_sandbox/payment_intents/{first['id']}/3ds", json={"outcome": "succeed"})
    wait_for("the payment to reach Clarity", lambda: api.get(
        f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}", headers=session).json()["StatusKey"]
        == "Full Payment Received", st)
    assert [(pi["id"], pi["status"]) for pi in intents_for(st, order.key)] == [(first["id"], "succeeded")]
    assert st.container.dead_letters.count_open() == 0
