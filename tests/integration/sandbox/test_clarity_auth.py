"""Clarity simulator auth and state: session cookies, X-ss-pid, Basic, 401/403, SQLite restart, timezone."""

from __future__ import annotations

from pathlib import Path

import httpx
import peer_fixtures

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER, build_app
from commerce_bridge.sandbox.runner import PeerServer

CLARITY_BASE = peer_fixtures.CLARITY_BASE
clarity_server = peer_fixtures.clarity_server


def test_requests_without_a_session_get_401_and_bad_logins_are_rejected(clarity_server: PeerServer) -> None:
    with httpx.Client(base_url=clarity_server.url + CLARITY_BASE) as client:
        response = client.get("/Ordering/SalesOrders")
        assert response.status_code == 401
        assert response.json()["StatusCode"] == 401
        bad = client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": "wrong"})
        assert bad.status_code == 401 and bad.json()["ResponseStatus"]["ErrorCode"] == "Unauthorized"


def test_login_sets_ss_cookies_and_the_x_ss_pid_header_works_alone(clarity_server: PeerServer) -> None:
    with httpx.Client(base_url=clarity_server.url + CLARITY_BASE) as client:
        login = client.post(
            "/auth/identity",
            json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD, "RememberMe": True},
        )
        assert login.status_code == 200
        body = login.json()
        assert body["UserName"] == DEFAULT_USER and body["SessionId"]
        assert {"ss-id", "ss-pid", "ss-opt"} <= set(client.cookies.keys())
        assert client.get("/Ordering/SalesOrders").status_code == 200
        pid = client.cookies["ss-pid"]
    with httpx.Client(base_url=clarity_server.url + CLARITY_BASE, headers={"X-ss-pid": pid}) as bare:
        assert bare.get("/Ordering/SalesOrders").status_code == 200
        assert bare.post("/auth/logout").status_code == 200
        assert bare.get("/Ordering/SalesOrders").status_code == 401


def test_read_only_user_gets_403_on_writes() -> None:
    with (
        PeerServer(build_app(readonly_user="auditor", readonly_password="pw")) as server,
        httpx.Client(base_url=server.url + CLARITY_BASE) as client,
    ):
        assert (
            client.post("/auth/identity", json={"UserName": "auditor", "Password": "pw"}).status_code == 200
        )
        assert client.get("/Ordering/SalesOrders").status_code == 200
        denied = client.post("/Ordering/SalesOrder/Create", json={"CustomKey": "X"})
        assert denied.status_code == 403 and denied.json()["Message"] == "Invalid Permission"


def test_basic_auth_only_when_enabled() -> None:
    for enabled, expected in ((False, 401), (True, 200)):
        with (
            PeerServer(build_app(basic_auth=enabled)) as server,
            httpx.Client(base_url=server.url + CLARITY_BASE, auth=(DEFAULT_USER, DEFAULT_PASSWORD)) as client,
        ):
            assert client.get("/Ordering/SalesOrders").status_code == expected


def test_state_file_survives_a_restart_and_sessions_too(tmp_path: Path) -> None:
    state = str(tmp_path / "clarity.sqlite")
    with (
        PeerServer(build_app(state_file=state)) as server,
        httpx.Client(base_url=server.url + CLARITY_BASE) as client,
    ):
        client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        created = client.post(
            "/Ordering/SalesOrder/Create", json={"CustomKey": "KEEP", "StatusKey": "Confirmed"}
        )
        order_id = created.json()["Result"]
        pid = client.cookies["ss-pid"]
        status_ids = {
            r["CustomKey"]: r["ID"] for r in client.get("/Ordering/SalesOrderStatuses").json()["Results"]
        }
    with (
        PeerServer(build_app(state_file=state)) as server,
        httpx.Client(base_url=server.url + CLARITY_BASE, headers={"X-ss-pid": pid}) as client,
    ):
        order = client.get(f"/Ordering/SalesOrder/ID/{order_id}").json()
        assert order["CustomKey"] == "KEEP" and order["StatusKey"] == "Confirmed"
        again = {
            r["CustomKey"]: r["ID"] for r in client.get("/Ordering/SalesOrderStatuses").json()["Results"]
        }
        assert again == status_ids
        assert (
            client.post("/Ordering/SalesOrder/Create", json={"CustomKey": "NEXT"}).json()["Result"]
            == order_id + 1
        )


def test_status_tables_are_seeded_and_resolved_by_key_not_position(clarity_server: PeerServer) -> None:
    with httpx.Client(base_url=clarity_server.url + CLARITY_BASE) as client:
        client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        statuses = client.get(
            "/Ordering/SalesOrderStatuses", params={"Sorts": '[{"field":"SortOrder"}]'}
        ).json()
        keys = [r["CustomKey"] for r in statuses["Results"]]
        assert keys[:3] == ["Pending", "On Hold", "Confirmed"] and keys[-1] == "Void" and len(keys) == 13
        pending = client.get("/Ordering/SalesOrderStatus/Key/Pending").json()
        assert pending["ID"] != 1  # IDs are identity values, never positions
        assert client.get("/Ordering/SalesOrderStatus/Name/Full Payment Received").json()["SortOrder"] == 21
        states = client.get("/Ordering/SalesOrderStates").json()["Results"]
        assert {s["CustomKey"]: s["Name"] for s in states} == {"WORK": "Work", "HISTORY": "History"}
        assert len(client.get("/Payments/PaymentMethods").json()["Results"]) == 11


def test_dates_are_rendered_in_the_configured_server_zone() -> None:
    with (
        PeerServer(build_app(timezone="Pacific/Kiritimati")) as server,
        httpx.Client(base_url=server.url + CLARITY_BASE, auth=None) as client,
    ):
        client.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        order_id = client.post("/Ordering/SalesOrder/Create", json={"CustomKey": "TZ"}).json()["Result"]
        updated = client.get(f"/Ordering/SalesOrder/ID/{order_id}").json()["UpdatedDate"]
        assert "+" not in updated and not updated.endswith("Z")  # local wall time, no offset
        from datetime import UTC, datetime, timedelta

        local = datetime.fromisoformat(updated)
        utc_now = datetime.now(UTC).replace(tzinfo=None)
        assert abs((local - utc_now) - timedelta(hours=14)) < timedelta(minutes=5)
        # A naive ModifiedSince is read in the same zone; one with an offset is converted.
        assert (
            client.get("/Ordering/SalesOrders", params={"ModifiedSince": updated}).json()["TotalCount"] == 1
        )
        as_utc = (local - timedelta(hours=14)).isoformat() + "Z"
        assert client.get("/Ordering/SalesOrders", params={"ModifiedSince": as_utc}).json()["TotalCount"] == 1
