"""HttpClarityGateway against the sandbox Clarity simulator on a free port (real HTTP, real sessions)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge import errors as E
from commerce_bridge.connectors.clarity.changes import CursorState, event_from_notice
from commerce_bridge.connectors.clarity.gateway import HttpClarityGateway
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer, free_port

API = "/DesktopModules/ClarityEcommerce/API-Admin"
ZONE = "America/Chicago"


class MemoryCursors:
    """An in-memory CursorStore (the durable one lives in store/)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value
        self.writes += 1


class Receiver:
    """A tiny ASGI app that keeps the change notices posted to it."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.notices.append(json.loads(await request.body()))
        return Response(status_code=204)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, PeerServer]]:
    r = Receiver()
    with PeerServer(r.app) as server:
        yield r, server


@pytest.fixture
def clarity(receiver: tuple[Receiver, PeerServer]) -> Iterator[PeerServer]:
    app = build_clarity(timezone=ZONE, webhook_url=receiver[1].url + "/hook", webhook_secret="s3cret")
    with PeerServer(app) as server:
        yield server


def make_gateway(server: PeerServer, cursors: MemoryCursors | None = None, **kw: Any) -> HttpClarityGateway:
    return HttpClarityGateway(server.url + API, kw.pop("user", DEFAULT_USER), kw.pop("password", DEFAULT_PASSWORD),
                              cursor_store=cursors or MemoryCursors(), timezone=ZONE, **kw)


@pytest.fixture
def gateway(clarity: PeerServer) -> Iterator[HttpClarityGateway]:
    gw = make_gateway(clarity)
    yield gw
    gw.close()


def checkout(server: PeerServer, email: str = "ann@example.com", **extra: Any) -> dict[str, Any]:
    body = {"Email": email, "FirstName": "Ann", "LastName": "Lee",
            "BillingAddress": {"Street1": "1 Main St", "City": "Austin", "RegionCode": "TX",
                               "PostalCode": "78701", "CountryCode": "US"},
            "Lines": [{"Sku": "SKU-1", "Quantity": 2, "UnitPrice": "12.50"}], "Currency": "USD",
            "Shipping": "5.00", "Tax": "1.20", **extra}
    response = httpx.post(server.url + "/_sandbox/checkout", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def faults(server: PeerServer, rules: list[dict[str, Any]]) -> None:
    httpx.put(server.url + "/_sandbox/faults", json={"rules": rules}).raise_for_status()


def test_full_order_by_id_and_key_keeps_amounts_exact(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    placed = checkout(clarity)
    order = gateway.get_order(placed["OrderID"])
    assert order["CustomKey"] == placed["OrderKey"] and order["SalesItems"][0]["Sku"] == "SKU-1"
    assert order["Totals"]["Total"] == "31.2000"  # a string, never a float
    assert gateway.get_order_by_key(placed["OrderKey"])["ID"] == placed["OrderID"]


def test_missing_order_is_not_found(gateway: HttpClarityGateway) -> None:
    with pytest.raises(E.NotFound):
        gateway.get_order(999_999)
    with pytest.raises(E.NotFound):
        gateway.get_order_by_key("WEB-NOPE")


def test_a_product_is_found_by_its_exact_custom_key_in_full(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    login = httpx.post(clarity.url + API + "/auth/identity", json={"UserName": DEFAULT_USER,
                                                                     "Password": DEFAULT_PASSWORD})
    session = {"X-ss-pid": login.json()["SessionId"]}
    for key, name in (("SKU-LAMP-XL", "Big Lamp"), ("SKU-LAMP", "Desk Lamp")):
        httpx.post(clarity.url + API + "/Products/Product/Create", headers=session, json={
            "CustomKey": key, "Name": name, "UnitOfMeasure": "Box", "PriceBase": "24.50"}).raise_for_status()
    product = gateway.find_product_by_key("SKU-LAMP")
    assert product is not None and (product["CustomKey"], product["Name"], product["Active"]) == (
        "SKU-LAMP", "Desk Lamp", True)
    assert product["PriceBase"] == "24.5000" and product["UnitOfMeasure"] == "Box"  # a string, never a float
    assert gateway.find_product_by_key("SKU-LAM") is None  # strict: not a prefix or substring match


def test_status_tables_resolve_by_key_not_by_fixed_ids(gateway: HttpClarityGateway) -> None:
    gateway.load_lookups()
    ids = {key: gateway.status_id(key) for key in ("Pending", "On Hold", "Full Payment Received")}
    assert len(set(ids.values())) == 3 and ids["Pending"] != 1
    assert gateway.lookup_id("state", "WORK") != gateway.lookup_id("state", "HISTORY")
    with pytest.raises(E.NotFound) as info:
        gateway.status_id("Teleported")
    assert info.value.suggested_fix


def test_status_changes_through_action_routes_and_update(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    assert gateway.set_status(oid, "On Hold")["changed"] is True
    assert gateway.get_order(oid)["StatusKey"] == "On Hold"
    assert gateway.apply_action(oid, "Hold")["changed"] is False  # CEF's INFO! no-op
    assert gateway.set_status(oid, "Partial Payment Received")["action"] == "Update"
    assert gateway.get_order(oid)["StatusKey"] == "Partial Payment Received"
    gateway.apply_action(oid, "Void")
    assert gateway.get_order(oid)["StateKey"] == "HISTORY"


def test_action_on_unknown_order_is_rejected_with_messages(gateway: HttpClarityGateway) -> None:
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.apply_action(987_654, "Ship")
    assert info.value.errors and info.value.errors[0].startswith("ERROR!")


def test_add_payment_is_idempotent_by_transaction_number(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    first = gateway.add_payment(oid, amount="31.20", transaction_number="ch_123",
                                payment={"PaymentMethodKey": "Credit Card"})
    again = gateway.add_payment(oid, amount="31.20", transaction_number="ch_123")
    assert first["added"] is True and again["added"] is False
    order = gateway.get_order(oid)
    assert order["StatusKey"] == "Full Payment Received" and "BalanceDue" not in order
    assert order["PaymentTransactionID"] == "ch_123"
    assert len(order["SalesItems"]) == 1 and order["Totals"]["Total"] == "31.2000"


def test_add_payment_above_balance_is_rejected(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    with pytest.raises(E.UpstreamRejected) as info:
        gateway.add_payment(oid, amount="1000.00", transaction_number="ch_big")
    assert "balance due" in str(info.value)


def test_dropped_session_triggers_one_relogin_and_succeeds(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    gateway.get_order(oid)
    assert gateway.logins == 1
    httpx.post(clarity.url + API + "/auth/logout", headers={"X-ss-pid": gateway.session_id or ""}).raise_for_status()
    assert gateway.get_order(oid)["ID"] == oid
    assert gateway.logins == 2


def test_wrong_password_is_auth_failed(clarity: PeerServer) -> None:
    with pytest.raises(E.UpstreamAuthFailed) as info:
        make_gateway(clarity, password="wrong").get_order(1)
    assert "CB_CLARITY_PASSWORD" in (info.value.suggested_fix or "")


def test_missing_permission_is_auth_failed(clarity: PeerServer) -> None:
    oid = checkout(clarity)["OrderID"]
    viewer = make_gateway(clarity, user="viewer", password="sandbox-viewer")
    assert viewer.get_order(oid)["ID"] == oid
    with pytest.raises(E.UpstreamAuthFailed) as info:
        viewer.apply_action(oid, "Hold")
    assert info.value.details["http_status"] == 403


def test_injected_500_is_unavailable_and_429_is_rate_limited(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    gateway.get_order(oid)
    faults(clarity, [{"path": "*/Ordering/SalesOrder/ID/*", "status": 500, "times": 1}])
    with pytest.raises(E.UpstreamUnavailable):
        gateway.get_order(oid)
    faults(clarity, [{"path": "*/Ordering/SalesOrder/ID/*", "status": 429, "retry_after": 3, "times": 1}])
    with pytest.raises(E.RateLimited) as info:
        gateway.get_order(oid)
    assert info.value.retry_after == 3.0
    assert gateway.get_order(oid)["ID"] == oid


def test_refused_connection_is_unavailable() -> None:
    port = free_port("127.0.0.1")
    dead = HttpClarityGateway(f"http://127.0.0.1:{port}{API}", "u", "p", cursor_store=MemoryCursors(), timeout_s=2)
    with pytest.raises(E.UpstreamUnavailable):
        dead.get_order(1)


def test_bad_input_is_a_validation_error(clarity: PeerServer, gateway: HttpClarityGateway) -> None:
    with pytest.raises(E.ValidationError) as info:
        gateway._json("GET", "/Ordering/SalesOrders", params={"ModifiedSince": "not a date"})
    assert info.value.details["error_code"] == "CEF-10156"
    assert info.value.upstream_request_id and info.value.upstream_request_id.startswith("CEF:")


def test_polling_returns_each_change_once_across_overlapping_polls(clarity: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = make_gateway(clarity, cursors, poll_overlap_s=600, page_size=2)
    delivered: list[dict[str, Any]] = []
    placed = [checkout(clarity, email=f"p{i}@example.com")["OrderID"] for i in range(5)]
    first = gw.poll_changed_orders(delivered.extend)
    assert [e["data"]["ID"] for e in first.events] == placed
    assert {e["type"] for e in first.events} == {"salesorder.created"}
    second = gw.poll_changed_orders(delivered.extend)
    assert second.events == [] and second.rows >= 5  # the overlap re-read everything; nothing emitted
    gw.apply_action(placed[2], "Hold")
    third = gw.poll_changed_orders(delivered.extend)
    assert [(e["data"]["ID"], e["type"]) for e in third.events] == [(placed[2], "salesorder.updated")]
    assert len({e["id"] for e in delivered}) == len(delivered) == 6
    # a fresh gateway with the same (durable) cursor emits nothing again
    assert make_gateway(clarity, cursors, poll_overlap_s=600).poll_changed_orders(delivered.extend).events == []
    assert CursorState.load(cursors.values["clarity.salesorders"]).since is not None


def test_the_poll_takes_no_rate_limit_slot_and_every_other_request_takes_one(clarity: PeerServer) -> None:
    slots: list[str] = []
    gw = make_gateway(clarity, page_size=2, before_request=lambda: slots.append("slot"))
    placed = [checkout(clarity, email=f"s{i}@example.com") for i in range(5)]
    gw.get_order(placed[0]["OrderID"])
    assert len(slots) == 2  # the login and the read
    polled = gw.poll_changed_orders(lambda events: None)
    assert len(polled.events) == 5 and polled.pages >= 3
    assert len(slots) == 2  # the poll's pages took none
    gw.get_order_by_key(placed[1]["OrderKey"])
    assert len(slots) == 4  # a flow's search and read take one each, also after a poll


def test_a_poll_that_finds_nothing_new_writes_no_cursor(clarity: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = make_gateway(clarity, cursors)
    checkout(clarity)
    assert len(gw.poll_changed_orders(lambda events: None).events) == 1
    assert cursors.writes == 1
    for _ in range(3):  # idle polls: the overlap window returns the same change, already seen
        assert gw.poll_changed_orders(lambda events: None).events == []
    assert cursors.writes == 1
    checkout(clarity)
    assert len(gw.poll_changed_orders(lambda events: None).events) == 1
    assert cursors.writes == 2


def test_cursor_is_not_saved_when_delivery_fails(clarity: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = make_gateway(clarity, cursors)
    checkout(clarity)

    def broken(events: list[dict[str, Any]]) -> None:
        raise E.StoreUnavailable("inbox down")

    with pytest.raises(E.StoreUnavailable):
        gw.poll_changed_orders(broken)
    assert len(gw.poll_changed_orders(lambda events: None).events) == 1


def test_polled_changes_and_change_notices_share_event_ids(
        clarity: PeerServer, receiver: tuple[Receiver, PeerServer], gateway: HttpClarityGateway) -> None:
    oid = checkout(clarity)["OrderID"]
    gateway.apply_action(oid, "Confirm")
    polled = {e["id"] for e in gateway.poll_changed_orders(lambda events: None).events}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        notices = [n for n in receiver[0].notices if n["type"].startswith("salesorder.")]
        if len(notices) >= 2:
            break
        time.sleep(0.05)
    from zoneinfo import ZoneInfo

    from_notices = {event_from_notice(n, ZoneInfo(ZONE))["id"] for n in notices}
    latest = max(notices, key=lambda n: n["data"]["UpdatedDate"])
    assert event_from_notice(latest, ZoneInfo(ZONE))["id"] in polled
    assert polled <= from_notices
