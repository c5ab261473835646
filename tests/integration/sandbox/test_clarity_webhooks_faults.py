"""The Clarity simulator's optional webhook emitter and its fault-injection control API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import peer_fixtures
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER, build_app
from commerce_bridge.sandbox.clarity_sim.faults import OutageGate
from commerce_bridge.sandbox.runner import PeerServer, free_port

CLARITY_BASE = peer_fixtures.CLARITY_BASE
clarity_server = peer_fixtures.clarity_server
clarity_api = peer_fixtures.clarity_api
SECRET = "whsec_sandbox"


class Receiver:
    """A real HTTP endpoint that fails the first ``fail_first`` deliveries and records the rest."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.calls = 0
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.calls += 1
                if self.calls <= self.fail_first:
                    return Response("boom", status_code=500)
                self.received.append((request.headers["x-bridge-signature"], body))
            return Response("ok")

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return [json.loads(body) for _, body in self.received]
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.received)} of {n} notices arrived")


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, PeerServer]]:
    rec = Receiver(fail_first=2)
    with PeerServer(rec.app) as server:
        yield rec, server


def _login(client: httpx.Client) -> None:
    assert (
        client.post(
            CLARITY_BASE + "/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
        ).status_code
        == 200
    )


def test_change_notices_are_signed_and_retried_until_delivered(receiver: tuple[Receiver, PeerServer]) -> None:
    rec, hook_server = receiver
    app = build_app(webhook_url=hook_server.url + "/hook", webhook_secret=SECRET, webhook_backoff_s=0.05)
    with PeerServer(app) as server, httpx.Client(base_url=server.url) as client:
        _login(client)
        order_id = client.post(
            CLARITY_BASE + "/Ordering/SalesOrder/Create", json={"CustomKey": "W-1"}
        ).json()["Result"]
        client.patch(f"{CLARITY_BASE}/Ordering/SalesOrder/Confirm/{order_id}")
        notices = rec.wait_for(2)
        by_type = {n["type"]: n for n in notices}
        assert set(by_type) == {"salesorder.created", "salesorder.updated"}
        updated = by_type["salesorder.updated"]
        assert updated["data"]["ID"] == order_id and updated["data"]["CustomKey"] == "W-1"
        order = client.get(f"{CLARITY_BASE}/Ordering/SalesOrder/ID/{order_id}").json()
        assert updated["data"]["UpdatedDate"] == order["UpdatedDate"]
        assert updated["id"] != by_type["salesorder.created"]["id"] and isinstance(updated["created"], int)
        for header, body in rec.received:
            parts = dict(p.split("=", 1) for p in header.split(","))
            expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(parts["v1"], expected)
        log = client.get("/_sandbox/webhooks").json()
        assert log["enabled"] is True
        assert any(d["attempts"] >= 2 and d["status"] == "delivered" for d in log["deliveries"])


def test_emitter_is_off_by_default(clarity_server: PeerServer) -> None:
    assert httpx.get(clarity_server.url + "/_sandbox/webhooks").json() == {"enabled": False, "deliveries": []}


def test_error_rules_fail_a_route_a_given_number_of_times(
    clarity_server: PeerServer, clarity_api: httpx.Client
) -> None:
    control = clarity_server.url + "/_sandbox/faults"
    rule = {"path": "*/Ordering/SalesOrders", "status": 500, "times": 2}
    assert httpx.put(control, json={"rules": [rule]}).status_code == 200
    statuses = [clarity_api.get("/Ordering/SalesOrders").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    [used] = httpx.get(control).json()["rules"]
    assert (used["fired"], used["times"]) == (2, 0)  # the control API says what the rule did
    assert clarity_api.get("/Ordering/SalesOrderStatuses").status_code == 200  # other routes untouched
    httpx.put(
        control,
        json={"rules": [{"path": "*SalesOrder*", "methods": ["POST"], "status": 429, "retry_after": 3}]},
    )
    limited = clarity_api.post("/Ordering/SalesOrder/Create", json={"CustomKey": "R"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert clarity_api.get("/Ordering/SalesOrders").status_code == 200
    assert httpx.delete(control).json()["rules"] == []
    assert clarity_api.post("/Ordering/SalesOrder/Create", json={"CustomKey": "R"}).status_code == 200
    assert httpx.put(control, json={"rules": [{"error_rate": 2}]}).status_code == 400


def test_latency_is_added(clarity_server: PeerServer, clarity_api: httpx.Client) -> None:
    httpx.put(clarity_server.url + "/_sandbox/faults", json={"latency_ms": 300})
    started = time.monotonic()
    assert clarity_api.get("/Ordering/SalesOrders").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_outage_answers_503_then_recovers(clarity_server: PeerServer, clarity_api: httpx.Client) -> None:
    control = clarity_server.url + "/_sandbox/faults"
    reply = httpx.post(control + "/outage", json={"seconds": 1.0}).json()
    assert reply["effective_mode"] == "503" and reply["outage_answered"] == 0
    assert clarity_api.get("/Ordering/SalesOrders").status_code == 503
    assert httpx.get(clarity_server.url + "/_sandbox/health").status_code == 200  # not faulted, not counted
    assert clarity_api.get("/Ordering/SalesOrderStatuses").status_code == 503
    assert httpx.get(control).json()["outage_answered"] == 2
    time.sleep(1.1)
    assert clarity_api.get("/Ordering/SalesOrders").status_code == 200
    assert httpx.get(control).json()["outage_answered"] == 2  # still the latest outage's count
    assert httpx.delete(control).json()["outage_answered"] == 0


def test_refused_outage_closes_the_port_when_a_gate_is_in_front() -> None:
    app = build_app()
    with PeerServer(app) as inner:
        gate = OutageGate(inner.port, free_port()).start()
        app.state.faults.gate = gate
        url = f"http://127.0.0.1:{gate.listen_port}"
        try:
            with httpx.Client(base_url=url) as client:
                _login(client)
                assert client.get(CLARITY_BASE + "/Ordering/SalesOrders").status_code == 200
                reply = client.post(
                    "/_sandbox/faults/outage", json={"seconds": 1.5, "mode": "refused"}
                ).json()
                assert reply["effective_mode"] == "refused"
                time.sleep(0.5)  # the gate closes 0.1 s after answering
                with pytest.raises(httpx.TransportError):  # the kept-alive connection is dropped too
                    client.get("/_sandbox/health")
            with pytest.raises(httpx.ConnectError), httpx.Client(base_url=url) as fresh:
                fresh.get("/_sandbox/health")
            time.sleep(1.5)
            assert httpx.get(url + "/_sandbox/health").status_code == 200
        finally:
            gate.stop()
