"""Order notes (the dispute path's): HttpClarityGateway against the Clarity simulator's ``/Structure/Note`` routes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from commerce_bridge import errors as E
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.runner import PeerServer
from tests.integration.test_connector_clarity import ZONE, checkout, make_gateway


@pytest.fixture
def clarity() -> Iterator[PeerServer]:
    with PeerServer(build_clarity(timezone=ZONE)) as server:
        yield server


def test_a_note_is_found_by_its_key_and_listed_on_its_order_without_touching_it(clarity: PeerServer) -> None:
    gw = make_gateway(clarity)
    order_id = checkout(clarity)["OrderID"]
    before = gw.get_order(order_id)
    assert gw.find_note_by_key("dp_1:opened") is None
    made = gw.add_order_note(order_id, key="dp_1:opened", text="Stripe dispute dp_1 opened")
    found = gw.find_note_by_key("dp_1:opened")
    assert found is not None and found["ID"] == made["note_id"] and found["SalesOrderID"] == order_id
    assert found["TypeKey"] == "Order Note"
    gw.add_order_note(order_id, key="dp_1:won", text="Stripe dispute dp_1 won")
    after = gw.get_order(order_id)
    assert [n["Note1"] for n in after["Notes"]] == ["Stripe dispute dp_1 opened", "Stripe dispute dp_1 won"]
    assert after["UpdatedDate"] == before["UpdatedDate"]  # a note is not a change of the order
    with pytest.raises(E.UpstreamRejected):  # CEF refuses a second record with the same CustomKey
        gw.add_order_note(order_id, key="dp_1:opened", text="again")
    with pytest.raises(E.BridgeError):
        gw.add_order_note(999_999, key="dp_2:opened", text="no such order")
    with pytest.raises(E.BridgeError):
        gw.add_order_note(order_id, key="dp_3:opened", text=" ")
    gw.close()
