"""Dispute evidence (issue 12, point 6): a dispute on a paid and shipped order gets what the bridge and Clarity
know, staged on the Stripe dispute (or submitted with CB_DISPUTE_EVIDENCE_SUBMIT), once, on SQLite and PostgreSQL.

Sandbox stacks (Stripe emulator, Clarity and ERPNext simulators, mail catcher, the bridge in this process)
shared by the module's tests, one at a time: per database, one with the default setting (staged) and one
with the submit setting on.
Every test places its own orders. A second Event object for the same change (Stripe sometimes makes two) is
posted to the bridge signed with the endpoint's secret, as Stripe would send it.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from commerce_bridge.domain.signature import sign
from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, SCENARIOS, Placed
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow
BY_NAME = {s.name: s for s in SCENARIOS}
_numbers = itertools.count(700)
WORKFLOW = "stripe.dispute_evidence"
FILE_FIELDS = ("receipt", "customer_communication", "shipping_documentation", "uncategorized_file")


STAGED = [pytest.param(("sqlite", False), id="sqlite"),
          pytest.param(("postgres", False), id="postgres", marks=pytest.mark.postgres)]
SUBMIT = [pytest.param(("sqlite", True), id="sqlite-submit"),
          pytest.param(("postgres", True), id="postgres-submit", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack at a time (one engine per process): the tests say which, by database and submit setting."""
    database, submit = request.param
    with stack_on(database, tmp_path_factory.mktemp(f"evidence-{database}"),
                  dispute_evidence_submit=submit) as stack:
        yield stack



def shipped_order(st: Stack, scenario: str = "paid (USD)") -> tuple[Placed, dict[str, Any]]:
    """An order paid through the bridge, then shipped by the warehouse with a carrier and a tracking number."""
    order = st.traffic.place(next(_numbers), BY_NAME[scenario])
    wait_for(f"{order.key} paid", lambda: (st.traffic.refresh([order]), order.done)[1], st, 90)
    page = st.traffic.stripe.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    pi = next(p for p in page if (p.get("metadata") or {}).get("clarity_order_key") == order.key)
    path = f"{CLARITY_API}/Ordering/SalesOrder/ID/{order.order_id}"
    attributes = dict(st.traffic.clarity.get(path, headers=st.traffic.session).json().get("SerializableAttributes")
                      or {})
    attributes.update({"ShippingCarrier": {"Key": "ShippingCarrier", "Value": "UPS"},
                       "CustomerIPAddress": {"Key": "CustomerIPAddress", "Value": "198.51.100.7"}})
    r = st.traffic.clarity.put(f"{CLARITY_API}/Ordering/SalesOrder/Update", headers=st.traffic.session, json={
        "ID": order.order_id, "TrackingNumber": f"1Z999AA1{order.n:010d}", "ActualShipDate": "2026-12-02T08:30:00",
        "SerializableAttributes": attributes})
    assert r.status_code == 200 and r.json().get("ActionSucceeded", True), r.text
    r = st.traffic.clarity.patch(f"{CLARITY_API}/Ordering/SalesOrder/Ship/{order.order_id}", headers=st.traffic.session)
    assert r.status_code == 200, r.text
    return order, pi


def open_dispute(st: Stack, pi: dict[str, Any], reason: str = "product_not_received") -> dict[str, Any]:
    r = st.traffic.stripe.post(f"/_sandbox/charges/{pi['latest_charge']}/dispute", json={"reason": reason})
    assert r.status_code == 200, r.text
    return dict(r.json())


def dispute(st: Stack, dispute_id: str) -> dict[str, Any]:
    return dict(st.traffic.stripe.get(f"/v1/disputes/{dispute_id}").json())


def dispute_events(st: Stack, dispute_id: str, type_: str) -> list[dict[str, Any]]:
    events = st.traffic.stripe.get("/v1/events", params={"limit": 100, "type": type_}).json()["data"]
    return [e for e in events if e["data"]["object"].get("id") == dispute_id]


def post_copy(st: Stack, event: dict[str, Any], new_id: str) -> None:
    """The same change as a second Event object (a new id), signed and posted to the bridge as Stripe would."""
    body = json.dumps({**event, "id": new_id}).encode()
    secret = st.container.settings.stripe_webhook_secrets[0].get_secret_value()
    r = httpx.post(f"{st.urls['bridge']}/webhooks/stripe", content=body, headers={
        "Stripe-Signature": sign(body, secret, int(time.time())), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def updates(st: Stack, dispute_id: str) -> list[dict[str, Any]]:
    """The dispute updates Stripe carried out (its request log: answered 200, not an idempotent replay)."""
    log = st.traffic.stripe.get("/_sandbox/requests", params={"method": "POST", "path": f"/v1/disputes/{dispute_id}"})
    return [r for r in log.json()["data"] if r["status"] == 200 and not r["replayed"]]


def run_status(st: Stack, event_id: str) -> str | None:
    run = st.container.runs.get(f"stripe:{event_id}:{WORKFLOW}")
    return None if run is None else str(run["status"])


def my_dead_letters(st: Stack) -> list[dict[str, Any]]:
    return [e for e in st.container.dead_letters.list() if WORKFLOW in str(e["run_id"])]


def luhn_runs(text: str) -> list[str]:
    found = []
    for match in re.finditer(r"\d(?:[ -]?\d){12,18}", text):
        digits = re.sub(r"\D", "", match.group())
        total = sum(int(c) if i % 2 == 0 else (int(c) * 2 - 9 if int(c) > 4 else int(c) * 2)
                    for i, c in enumerate(reversed(digits)))
        if total % 10 == 0:
            found.append(digits)
    return found


@pytest.mark.parametrize("st", STAGED, indirect=True)
def test_a_dispute_on_a_paid_and_shipped_order_gets_its_evidence_staged_not_submitted(st: Stack) -> None:
    order, pi = shipped_order(st, "3-D Secure")  # the bridge e-mailed the shopper to confirm the payment
    opened = open_dispute(st, pi)
    d = wait_for("evidence staged", lambda: (x := dispute(st, opened["id"]))["evidence_details"]["has_evidence"] and x,
                 st)
    ev = d["evidence"]
    assert d["status"] == "needs_response" and d["evidence_details"]["submission_count"] == 0
    assert ev["customer_name"] == f"Shopper No{order.n}" and ev["customer_email_address"] == order.email
    assert ev["billing_address"] == f"Shopper No{order.n}, {order.n} Main St, Austin, TX 78701, US"
    assert ev["shipping_address"] == ev["billing_address"]
    assert (ev["shipping_carrier"], ev["shipping_tracking_number"], ev["shipping_date"]) == (
        "UPS", f"1Z999AA1{order.n:010d}", "2026-12-02")
    assert ev["customer_purchase_ip"] == "198.51.100.7"
    assert ev["product_description"] == "1 x SKU-CAP"
    text = ev["uncategorized_text"]
    assert text.startswith(f"Order {order.key} (Clarity order {order.order_id}), placed ")
    assert "Total: 45.00 EUR, paid with Stripe charge " + pi["latest_charge"] in text
    assert f"Please confirm your payment for order {order.key}" in text.split("E-mails the shop sent")[1]
    assert all(ev[f] is None for f in FILE_FIELDS), "file fields take File ids; the bridge sends text only"
    assert luhn_runs(json.dumps(ev)) == [] and "3220" not in json.dumps(ev)  # the test card's last digits
    assert run_status(st, dispute_events(st, opened["id"], "charge.dispute.created")[0]["id"]) == "succeeded"
    assert my_dead_letters(st) == []


@pytest.mark.parametrize("st", STAGED, indirect=True)
def test_duplicated_dispute_events_make_one_evidence_update(st: Stack) -> None:
    _, pi = shipped_order(st)
    opened = open_dispute(st, pi, "fraudulent")
    created = wait_for("the created event", lambda: dispute_events(st, opened["id"], "charge.dispute.created"), st)[0]
    copies = [f"evt_copy{opened['id'][3:]}{n}" for n in range(3)]
    with ThreadPoolExecutor(3) as pool:  # two more Event objects for the same change, and a redelivery
        list(pool.map(lambda i: post_copy(st, created, i), copies))
        st.traffic.stripe.post(f"/_sandbox/events/{created['id']}/resend").raise_for_status()
    wait_for("every run done", lambda: all(run_status(st, e) == "succeeded" for e in [created["id"], *copies]), st)
    d = dispute(st, opened["id"])
    assert d["evidence_details"]["has_evidence"] and d["evidence"]["product_description"] == "2 x SKU-TEE\n1 x SKU-MUG"
    assert len(updates(st, opened["id"])) == 1, "one evidence update"
    assert len(dispute_events(st, opened["id"], "charge.dispute.updated")) == 1
    assert d["status"] == "needs_response" and d["evidence_details"]["submission_count"] == 0
    assert my_dead_letters(st) == []


@pytest.mark.parametrize("st", STAGED, indirect=True)
def test_what_a_person_typed_is_kept_and_only_blank_fields_are_filled_again(st: Stack) -> None:
    _, pi = shipped_order(st)
    opened = open_dispute(st, pi)
    wait_for("evidence staged", lambda: dispute(st, opened["id"])["evidence_details"]["has_evidence"], st)
    st.traffic.stripe.post(f"/v1/disputes/{opened['id']}", data={  # in the Dashboard: one field corrected, one cleared
        "evidence[shipping_carrier]": "FedEx (corrected)", "evidence[product_description]": "",
        "submit": "false"}).raise_for_status()
    created = dispute_events(st, opened["id"], "charge.dispute.created")[0]
    post_copy(st, created, f"evt_more{opened['id'][3:]}")
    wait_for("the second run done", lambda: run_status(st, f"evt_more{opened['id'][3:]}") == "succeeded", st)
    ev = dispute(st, opened["id"])["evidence"]
    assert ev["shipping_carrier"] == "FedEx (corrected)" and ev["product_description"] == "2 x SKU-TEE\n1 x SKU-MUG"
    assert len(updates(st, opened["id"])) == 3  # the bridge's, the person's, the bridge's refill of the blank field
    assert my_dead_letters(st) == []


@pytest.mark.parametrize("st", STAGED, indirect=True)
def test_a_dispute_closed_before_its_evidence_run_is_left_as_it_is(st: Stack) -> None:
    _, pi = shipped_order(st)
    opened = open_dispute(st, pi)
    wait_for("evidence staged", lambda: dispute(st, opened["id"])["evidence_details"]["has_evidence"], st)
    st.traffic.stripe.post(f"/v1/disputes/{opened['id']}/close").raise_for_status()  # the merchant accepts it
    before = dispute(st, opened["id"])
    created = dispute_events(st, opened["id"], "charge.dispute.created")[0]
    post_copy(st, created, f"evt_late{opened['id'][3:]}")  # a late copy of the opening event
    wait_for("the late run done", lambda: run_status(st, f"evt_late{opened['id'][3:]}") == "succeeded", st)
    after = dispute(st, opened["id"])
    assert after["status"] == "lost" and after["evidence"] == before["evidence"]
    assert after["evidence_details"]["submission_count"] == 0 and len(updates(st, opened["id"])) == 1
    assert my_dead_letters(st) == []


@pytest.mark.parametrize("st", SUBMIT, indirect=True)
def test_with_the_submit_setting_the_evidence_is_submitted_once(st: Stack) -> None:
    order, pi = shipped_order(st)
    opened = open_dispute(st, pi)
    created = wait_for("the created event", lambda: dispute_events(st, opened["id"], "charge.dispute.created"), st)[0]
    post_copy(st, created, f"evt_again{opened['id'][3:]}")
    d = wait_for("submitted", lambda: (x := dispute(st, opened["id"]))["status"] == "under_review" and x, st)
    wait_for("both runs done", lambda: run_status(st, created["id"]) == run_status(
        st, f"evt_again{opened['id'][3:]}") == "succeeded", st)
    d = dispute(st, opened["id"])
    assert d["evidence_details"]["submission_count"] == 1 and d["evidence_details"]["has_evidence"]
    assert d["evidence"]["shipping_tracking_number"] == f"1Z999AA1{order.n:010d}"
    assert len(updates(st, opened["id"])) == 1, "submitted in one update, never again"
    assert my_dead_letters(st) == []
