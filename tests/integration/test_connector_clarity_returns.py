"""Polling Clarity's sales returns (HttpClarityGateway against the simulator): own cursor, overlap, de-duplication,
and the same event ids for a polled change and its change notice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from commerce_bridge.connectors.clarity.changes import CursorState, event_from_notice
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer
from tests.integration.test_connector_clarity import ZONE, MemoryCursors, Receiver, checkout, make_gateway


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


def operator_return(server: PeerServer, order_id: int, **body: Any) -> dict[str, Any]:
    r = httpx.post(server.url + "/_sandbox/returns", json={"SalesOrderID": order_id, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_returns_are_polled_with_their_own_cursor_each_change_once(clarity: PeerServer) -> None:
    cursors = MemoryCursors()
    gw = make_gateway(clarity, cursors, poll_overlap_s=600, page_size=2)
    orders = [checkout(clarity, email=f"r{i}@example.com")["OrderID"] for i in range(3)]
    made = [operator_return(clarity, oid)["ID"] for oid in orders]
    first = gw.poll_changed_returns(lambda events: None)
    assert [e["data"]["ID"] for e in first.events] == made
    assert {e["type"] for e in first.events} <= {"salesreturn.created", "salesreturn.updated"}
    assert all(e["id"].startswith("clarity-sr-") for e in first.events)
    assert gw.poll_changed_returns(lambda events: None).events == []  # the overlap re-read them: nothing new
    # the orders' poll is not moved by the returns' one, and sees only orders
    assert {e["data"]["ID"] for e in gw.poll_changed_orders(lambda events: None).events} == set(orders)
    r = httpx.post(f"{clarity.url}/_sandbox/returns/{made[1]}/status", json={"Status": "Refund Approved"})
    assert r.status_code == 200, r.text
    third = gw.poll_changed_returns(lambda events: None)
    assert [(e["data"]["ID"], e["type"], e["data"]["StatusKey"]) for e in third.events] == [
        (made[1], "salesreturn.updated", "Refund Approved")]
    assert set(cursors.values) == {"clarity.salesorders", "clarity.salesreturns"}
    assert CursorState.load(cursors.values["clarity.salesreturns"]).since is not None


def test_a_polled_return_change_and_its_notice_share_one_event_id_never_an_order_s(
        clarity: PeerServer, receiver: tuple[Receiver, PeerServer]) -> None:
    gw = make_gateway(clarity)
    oid = checkout(clarity)["OrderID"]
    made = operator_return(clarity, oid)
    polled = {e["id"] for e in gw.poll_changed_returns(lambda events: None).events}
    orders = {e["id"] for e in gw.poll_changed_orders(lambda events: None).events}
    deadline = time.monotonic() + 5
    keyed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # the notices of the create and the update arrive in their own time
        keyed = [event_from_notice(n, ZoneInfo(ZONE)) for n in list(receiver[0].notices)
                 if n["type"].startswith("salesreturn.") and n["data"]["ID"] == made["ID"]]
        if any(e["id"] in polled for e in keyed):
            break
        time.sleep(0.05)
    assert any(e["id"] in polled for e in keyed), (keyed, polled)  # the latest change: the same id by both ways
    assert all(e["id"].startswith("clarity-sr-") and e["type"].startswith("salesreturn.") for e in keyed)
    assert not {e["id"] for e in keyed} & orders


def test_a_return_is_read_and_its_status_set_by_action_route_or_update(clarity: PeerServer) -> None:
    gw = make_gateway(clarity)
    oid = checkout(clarity)["OrderID"]
    made = operator_return(clarity, oid, RefundAmount="1.25")
    got = gw.get_return(made["ID"])
    assert got["SalesOrderIDs"] == [oid] and got["RefundAmount"] == "1.2500"  # decimals stay text
    assert gw.set_return_status(made["ID"], "Refund Approved")["action"] == "Update"  # no action route
    assert gw.get_return(made["ID"])["StatusKey"] == "Refund Approved"
    assert gw.set_return_status(made["ID"], "Void") == {"return_id": made["ID"], "action": "Void", "changed": True}
    assert gw.set_return_status(made["ID"], "Void")["changed"] is False
    assert gw.get_return(made["ID"])["StatusKey"] == "Void"
