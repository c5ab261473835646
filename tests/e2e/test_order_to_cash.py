"""Order to cash end to end against the sandbox peers, on SQLite and PostgreSQL (issue 4, points 9-13).

Each test starts the Stripe emulator, the Clarity and ERPNext simulators, a mail catcher and the bridge
(in this process), drives shoppers and the warehouse through the sandbox, and checks what every
system ended up with.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commerce_bridge.entrypoints.demo_order_to_cash import Stack, sandbox_stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed, Scenario
from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    opened: list[Any] = []

    def make(**overrides: Any) -> Stack:
        if request.param == "postgres":
            if not pg_admin_url():
                pytest.skip(PG_SKIP_REASON)
            db = postgres_database()
            url = db.__enter__()
            opened.append(db)
        else:
            url = f"sqlite:///{tmp_path / 'bridge.sqlite'}"
        cm = sandbox_stack(database_url=url, workdir=tmp_path, **overrides)
        st = cm.__enter__()
        opened.append(cm)
        return st

    yield make
    for cm in reversed(opened):
        cm.__exit__(None, None, None)


def settle(st: Stack, orders: list[Placed], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st.traffic.refresh(orders)
        if all(o.done for o in orders):
            return
        time.sleep(0.5)
    raise AssertionError("not settled: " + "; ".join(
        f"{o.key} {o.scenario.name}: clarity={o.clarity_status} stripe={o.intent_status} erp={o.erp_order}/"
        f"{o.erp_payment} mails={o.emails} err={o.error}" for o in orders if not o.done)
        + f"; DLQ: {[(e['run_id'], e['error_code'], e['error_message'][:80]) for e in st.container.dead_letters.list()]}")


def intents_for(st: Stack, key: str) -> list[dict[str, Any]]:
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()
    return [pi for pi in page["data"] if (pi.get("metadata") or {}).get("clarity_order_key") == key]


def erp_count(st: Stack, doctype: str, field: str, value: str) -> int:
    r = st.traffic.erp.get(f"/api/resource/{doctype}", params={"filters": f'[["{field}", "=", "{value}"]]'})
    return len(r.json()["data"])


def assert_invoiced_and_paid(st: Stack, key: str, charge_id: str) -> None:
    """The order's one submitted Sales Invoice bills its Sales Order, and its Payment Entry pays it (outstanding 0)."""
    def docs(doctype: str, field: str, value: str) -> list[dict[str, Any]]:
        rows = st.traffic.erp.get(f"/api/resource/{doctype}", params={"filters": f'[["{field}", "=", "{value}"]]'})
        return [st.traffic.erp.get(f"/api/resource/{doctype}/{r['name']}").json()["data"] for r in rows.json()["data"]]

    # Clarity shows the order paid before the ERP steps of the same run end: wait for the invoice to be paid
    deadline = time.monotonic() + 30
    while True:
        [so] = docs("Sales Order", "po_no", key)
        invoices = docs("Sales Invoice", "po_no", key)
        if (invoices and invoices[0]["status"] == "Paid") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    [invoice] = invoices
    assert (invoice["docstatus"], invoice["status"], invoice["outstanding_amount"]) == (1, "Paid", 0), invoice
    assert invoice["grand_total"] == so["grand_total"] and invoice["customer"] == so["customer"]
    assert {row["sales_order"] for row in invoice["items"]} == {so["name"]}
    [payment] = docs("Payment Entry", "reference_no", charge_id)
    assert payment["docstatus"] == 1 and payment["party"] == so["customer"]
    assert [(r["reference_doctype"], r["reference_name"], r["allocated_amount"]) for r in payment["references"]] == [
        ("Sales Invoice", invoice["name"], invoice["grand_total"])]
    assert payment["unallocated_amount"] == 0


def step_attempts(st: Stack) -> Counter[tuple[str, str]]:
    """The bridge's ``cb_step_attempts_total`` from its ``/metrics``: (step type, outcome or error code) -> n."""
    text = httpx.get(f"{st.urls['bridge']}/metrics", timeout=10).text
    return Counter({(s.labels["step_type"], s.labels["outcome"]): int(s.value)
                    for family in text_string_to_metric_families(text) if family.name == "cb_step_attempts"
                    for s in family.samples if s.name == "cb_step_attempts_total"})


def clarity_failures(st: Stack, code: str = "upstream_unavailable") -> int:
    return sum(n for (step, outcome), n in step_attempts(st).items() if step.startswith("clarity.") and outcome == code)


def runs_by_workflow(st: Stack) -> Counter[str]:
    from sqlalchemy import text

    with st.container.db.connect() as conn:
        return Counter(dict(conn.execute(text("SELECT workflow, count(*) FROM runs GROUP BY workflow")).all()))


def test_every_checkout_kind_reaches_its_end_state(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    orders = [st.traffic.place(i, s) for i, s in enumerate(SCENARIOS)]
    settle(st, orders)
    for o in orders:
        if o.scenario.expect_paid:
            assert len(intents_for(st, o.key)) == 1, f"{o.key} was charged once"
            assert erp_count(st, "Sales Order", "po_no", o.key) == 1
            # revenue is booked: the invoice billing the order, paid by the Payment Entry (CB_ERP_INVOICE_ON=paid)
            assert_invoiced_and_paid(st, o.key, intents_for(st, o.key)[0]["latest_charge"])
    assert st.container.dead_letters.count_open() == 0
    # money arrived in the right units: JPY is zero-decimal, KWD three-decimal
    jpy = next(o for o in orders if o.scenario.currency == "JPY")
    kwd = next(o for o in orders if o.scenario.currency == "KWD")
    assert intents_for(st, jpy.key)[0]["amount"] == 1500
    assert intents_for(st, kwd.key)[0]["amount"] == 12750


def test_duplicate_and_shuffled_stripe_events_cause_no_second_charge_or_payment(
        make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    st.traffic.stripe.post("/_sandbox/webhooks/options",
                           json={"shuffle": True, "shuffle_window_ms": 300, "duplicate_probability": 1.0, "seed": 7})
    orders = [st.traffic.place(i, BY_NAME[n]) for i, n in enumerate(["paid (USD)", "paid (EUR)", "storefront-charged",
                                                                     "3-D Secure"])]
    settle(st, orders)
    deliveries = st.traffic.stripe.get("/_sandbox/deliveries", params={"limit": 1000}).json()
    rows = deliveries.get("data", deliveries) if isinstance(deliveries, dict) else deliveries
    assert any(d.get("duplicate") for d in rows), "the emulator really sent duplicates"
    for o in orders:
        assert len(intents_for(st, o.key)) == 1
        assert erp_count(st, "Sales Order", "po_no", o.key) == 1
        assert erp_count(st, "Payment Entry", "reference_no", intents_for(st, o.key)[0]["latest_charge"]) == 1
        assert_invoiced_and_paid(st, o.key, intents_for(st, o.key)[0]["latest_charge"])  # one invoice, once paid
        order = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{o.order_id}",
                                       headers=st.traffic.session).json()
        assert order["StatusKey"] == "Full Payment Received"
    assert runs_by_workflow(st)["stripe.payment_succeeded"] == len(orders)


def test_payment_event_before_the_order_is_visible_waits_and_is_not_dropped(
        make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    key = "WEB-LATE-1"
    pi = st.traffic.stripe.post("/v1/payment_intents", data={
        "amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
        "payment_method_types[]": "card", "metadata[clarity_order_key]": key}).json()
    assert pi["status"] == "succeeded"
    time.sleep(4)  # the bridge has the event and keeps looking for the order
    run = st.container.runs.get(f"stripe:{_event_for(st, pi['id'])}:stripe.payment_succeeded")
    assert run is not None and run["status"] == "running"
    # the order shows up in Clarity only now (created through the admin API, as a slow storefront would)
    created = st.traffic.clarity.post(f"{CLARITY_API}/Ordering/SalesOrder/Create", headers=st.traffic.session, json={
        "CustomKey": key, "StatusKey": "Pending", "TypeKey": "Web", "CurrencyKey": "USD", "BalanceDue": "25.00",
        "UserContactEmail": "late@example.com", "PaymentTransactionID": pi["id"],
        "BillingContact": {"FirstName": "Late", "LastName": "Buyer", "Email1": "late@example.com"},
        "SalesItems": [{"Sku": "SKU-TEE", "Quantity": 1, "UnitCorePrice": "25.00"}],
        "Totals": {"SubTotal": "25.00", "Total": "25.00"}})
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and erp_count(st, "Payment Entry", "reference_no", pi["latest_charge"]) == 0:
        time.sleep(0.5)
    assert erp_count(st, "Payment Entry", "reference_no", pi["latest_charge"]) == 1
    late = st.traffic.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/Key/{key}", headers=st.traffic.session).json()
    assert late["StatusKey"] == "Full Payment Received" and float(late.get("BalanceDue", 0)) == 0
    assert len(intents_for(st, key)) == 1


def test_our_own_writes_coming_back_by_polling_start_nothing(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    orders = [st.traffic.place(i, BY_NAME[n]) for i, n in enumerate(["declined", "paid (USD)"])]
    settle(st, orders)
    time.sleep(3)  # several more polls see our status changes
    runs = runs_by_workflow(st)
    assert runs["clarity.order_to_cash"] == 2
    assert runs["clarity.order_voided"] == 0 and runs["clarity.order_shipped"] == 0
    assert runs["stripe.payment_succeeded"] == 1
    assert st.container.dead_letters.count_open() == 0


def test_voided_orders_cancel_the_authorisation_or_refund_the_payment(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    manual = st.traffic.place(1, Scenario("to void (authorised)", "USD", (("SKU-MUG", 1, "9.00"),), capture="manual",
                                          expect_paid=False))
    paid = st.traffic.place(2, BY_NAME["paid (USD)"])
    settle(st, [paid])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p["status"] == "requires_capture" for p in intents_for(st, manual.key)):
        time.sleep(0.5)
    for o in (manual, paid):
        r = st.traffic.clarity.patch(f"{CLARITY_API}/Ordering/SalesOrder/Void/{o.order_id}", headers=st.traffic.session)
        assert r.status_code == 200
    deadline = time.monotonic() + 60
    refunds: list[Any] = []
    while time.monotonic() < deadline:
        manual_pi = intents_for(st, manual.key)[0]
        refunds = st.traffic.stripe.get("/v1/refunds", params={"payment_intent": intents_for(st, paid.key)[0]["id"]}
                                        ).json()["data"]
        if manual_pi["status"] == "canceled" and refunds:
            break
        time.sleep(0.5)
    assert intents_for(st, manual.key)[0]["status"] == "canceled"
    assert len(refunds) == 1 and refunds[0]["amount"] == 3300


def test_clarity_outage_queues_the_work_and_drains_it(make_stack: Callable[..., Stack]) -> None:
    # the Clarity breaker opens during the outage; it probes again after 2 s (30 s by default)
    st = make_stack(retry_base_delay_s=0.5, retry_max_delay_s=2.0, retry_max_attempts=30, breaker_reset_timeout_s=2.0)
    # Stripe's events reach the bridge 4 s late, so the outage can begin after the bridge has read the
    # orders and made their PaymentIntents, and before the payment runs record the payments in Clarity.
    st.traffic.stripe.post("/_sandbox/webhooks/options", json={"delay_ms": 4000}).raise_for_status()
    orders = [st.traffic.place(i, BY_NAME[n]) for i, n in enumerate(["paid (USD)", "paid (EUR)"])]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            [pi["status"] for pi in intents_for(st, o.key)] == ["succeeded"] for o in orders):
        time.sleep(0.2)
    assert all(intents_for(st, o.key) for o in orders), "the orders were never charged"
    outage = st.traffic.clarity.post("/_sandbox/faults/outage", json={"seconds": 10, "mode": "503"}).json()
    assert outage["effective_mode"] == "503"
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline and clarity_failures(st) < len(orders):
        time.sleep(0.2)
    assert clarity_failures(st) >= len(orders), f"the payment runs never met the outage: {step_attempts(st)}"
    assert st.traffic.clarity.get("/_sandbox/faults").json()["outage_answered"] > 0  # all of them the bridge's

    # Mid-outage, read from the systems that are up (Clarity answers 503, also to us): each order is
    # charged, and its payment run waits at Clarity, so nothing reached the ERP yet.
    st.traffic.refresh(orders)
    for o in orders:
        assert o.intent_status == "succeeded", o
        assert not o.erp_order and not o.erp_payment and not o.done, f"{o.key} completed during the outage"
    assert st.traffic.clarity.get("/_sandbox/faults").json()["outage_remaining_s"] > 0, (
        "the reads above were not made during the outage")

    settle(st, orders, timeout=120)
    assert st.container.dead_letters.count_open() == 0
    assert runs_by_workflow(st)["stripe.payment_succeeded"] == len(orders)
    # the bridge saw the 503s on its Clarity steps and retried them until Clarity was back
    attempts = step_attempts(st)
    assert clarity_failures(st) >= len(orders) and attempts[("clarity.order.add_payment", "ok")] == len(orders)


def test_stripe_429_and_500_are_retried_without_a_second_charge(make_stack: Callable[..., Stack]) -> None:
    st = make_stack(retry_base_delay_s=0.2, retry_max_delay_s=1.0)
    st.traffic.stripe.post("/_sandbox/faults", json={"kind": "rate_limit", "count": 2, "path": "/v1/payment_intents",
                                                     "method": "POST"})
    armed = st.traffic.stripe.post("/_sandbox/faults", json={"kind": "server_error", "count": 1,
                                                             "path": "/v1/payment_intents", "method": "POST"})
    assert [(f["kind"], f["remaining"]) for f in armed.json()["faults"]] == [("rate_limit", 2), ("server_error", 1)]
    orders = [st.traffic.place(1, BY_NAME["paid (USD)"])]
    settle(st, orders)
    assert len(intents_for(st, orders[0].key)) == 1
    assert st.traffic.stripe.get("/_sandbox/faults").json()["faults"] == [], "every armed fault was used up"
    # the bridge met them in order on the create step (429, 429, 500) and retried until it went through
    attempts = step_attempts(st)
    create = {outcome: n for (step, outcome), n in attempts.items() if step == "stripe.payment_intent.create"}
    assert create == {"rate_limited": 2, "upstream_unavailable": 1, "ok": 1}, attempts


def test_bad_data_goes_to_the_dlq_with_a_fix_and_replays_once_fixed(make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    unknown_sku = st.traffic.place(1, Scenario("unknown SKU", "USD", (("SKU-NEW", 1, "10.00"),)))
    odd_amount = st.traffic.place(2, Scenario("KWD with a fils too many", "KWD", (("SKU-MUG", 1, "4.255"),),
                                              expect_paid=False))
    c = st.container
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and c.dead_letters.count_open() < 2:
        time.sleep(0.5)
    entries = {e["step_id"]: e for e in c.dead_letters.list()}
    # 4.255 KWD is a valid Clarity amount but Stripe takes KWD in steps of 10 fils: refused, never rounded
    assert set(entries) == {"erp_order", "payment"}, entries
    assert entries["payment"]["error_code"] == "mapping_error" and "KWD" in entries["payment"]["error_message"]
    assert entries["payment"]["suggested_fix"]
    # SKU-NEW is in neither ERPNext nor Clarity (else the Item would be made from the Clarity product)
    assert entries["erp_order"]["error_code"] == "not_found" and "SKU-NEW" in entries["erp_order"]["error_message"]
    assert entries["erp_order"]["suggested_fix"]
    assert not intents_for(st, odd_amount.key), "an unrepresentable amount is never charged"
    # fix the catalogue in the ERP, then replay: it resumes at the failed step
    st.traffic.erp.post("/api/resource/Item", json={"item_code": "SKU-NEW", "item_name": "New",
                                                    "item_group": "Products", "stock_uom": "Nos"})
    c.admin.replay(entries["erp_order"]["id"], "created the item in ERPNext")
    settle(st, [unknown_sku])
    assert len(intents_for(st, unknown_sku.key)) == 1
    # the ERP steps are replay-safe (catalogue): not checkpointed, so the replay ran erp_customer again,
    # and it found the Customer the first execution made; one Sales Order, one Payment Entry
    run = c.runs.get(entries["erp_order"]["run_id"])
    assert run is not None and run["status"] == "succeeded"
    recorded = {s["function_name"] for s in c.admin.client.list_workflow_steps(
        run["engine_workflow_id"] or run["run_id"], load_output=False)}
    assert "step:add_payment" in recorded and not recorded & {"step:erp_customer", "step:erp_order", "step:erp_payment"}
    assert erp_count(st, "Customer", "email_id", unknown_sku.email) == 1
    assert erp_count(st, "Sales Order", "po_no", unknown_sku.key) == 1
    assert erp_count(st, "Payment Entry", "reference_no", intents_for(st, unknown_sku.key)[0]["latest_charge"]) == 1
    c.admin.discard(entries["payment"]["id"], "customer asked for a corrected invoice")
    assert c.dead_letters.count_open() == 0


def _event_for(st: Stack, intent_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for row in st.container.inbox.list(source="stripe", limit=200):
            if row["event_type"] == "payment_intent.succeeded":
                stored = st.container.inbox.get("stripe", row["event_id"])
                if stored is not None and intent_id.encode() in stored.body:
                    return str(row["event_id"])
        time.sleep(0.3)
    raise AssertionError("payment_intent.succeeded never arrived")




def test_decline_starts_dunning_a_reminder_then_cancellation(make_stack: Callable[..., Stack]) -> None:
    st = make_stack(long_wait_s=0.5,
                    workflow_vars={"clarity.order_to_cash": {"reminder_after_s": 2, "cancel_after_s": 2}})
    declined = st.traffic.place(1, BY_NAME["declined"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st.traffic.refresh([declined])
        if declined.clarity_status == "Void" and len(declined.emails) >= 3:
            break
        time.sleep(0.5)
    subjects = " | ".join(declined.emails).lower()
    assert declined.clarity_status == "Void", (declined.clarity_status, subjects)
    assert "declined" in subjects and "reminder" in subjects and "cancelled" in subjects
    runs = runs_by_workflow(st)
    assert runs["clarity.order_voided"] == 0, "our own cancellation did not echo back into a sync"
    assert st.container.dead_letters.count_open() == 0


def test_invalid_customer_email_goes_to_the_dlq_with_a_fix_and_correcting_it_in_clarity_pays(
        make_stack: Callable[..., Stack]) -> None:
    st = make_stack()
    r = st.traffic.clarity.post("/_sandbox/checkout", json={
        "Email": "ann@example", "FirstName": "Ann", "LastName": "Typo",
        "Lines": [{"Sku": "SKU-TEE", "Quantity": 1, "UnitPrice": "12.00"}], "Currency": "USD",
        "PaymentMode": "integration", "PaymentMethod": "pm_card_visa"})
    assert r.status_code == 200, r.text  # the storefront took it; the bridge must not
    key = r.json()["OrderKey"]
    deadline = time.monotonic() + 60
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not entries:
        entries = [e for e in st.container.dead_letters.list() if e["step_id"] == "order"]
        time.sleep(0.5)
    assert entries, "the order with a bad e-mail was parked"
    assert entries[0]["error_code"] == "validation_error" and "email" in entries[0]["error_message"].lower()
    assert entries[0]["suggested_fix"]
    assert not intents_for(st, key), "nothing was charged"
    # the fix where the data lives: the shop corrects the address on the order in Clarity; the poller sees
    # the change (a new UpdatedDate) and it starts a new run for the order (docs/howto/dead-letter-queue.md)
    api, session = st.traffic.clarity, st.traffic.session
    order = api.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{r.json()['OrderID']}", headers=session).json()
    contact = {**order["BillingContact"], "Email1": "ann@example.com"}
    fixed = api.put(f"{CLARITY_API}/Ordering/SalesOrder/Update", headers=session,
                    json={"ID": order["ID"], "BillingContact": contact})
    assert fixed.status_code == 200 and fixed.json()["ActionSucceeded"], fixed.text
    deadline = time.monotonic() + 90
    status = None
    while time.monotonic() < deadline and status != "Full Payment Received":
        status = api.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{order['ID']}", headers=session).json()["StatusKey"]
        time.sleep(0.5)
    assert status == "Full Payment Received"
    assert len(intents_for(st, key)) == 1, "charged once"
    st.container.admin.discard(entries[0]["id"], "the corrected order was paid by a new run")
    assert st.container.dead_letters.count_open() == 0
