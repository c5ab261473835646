"""Contract test of the Clarity error table: every row through httpx.MockTransport and the real gateway code."""

from __future__ import annotations

import json
from collections.abc import Callable
from zoneinfo import ZoneInfo

import httpx
import pytest

from commerce_bridge import errors as E
from commerce_bridge.connectors.clarity.changes import (
    change_event,
    event_from_notice,
    format_local,
    parse_local,
)
from commerce_bridge.connectors.clarity.gateway import HttpClarityGateway
from commerce_bridge.services.gateways import ClarityGateway
from tests.support.ports import assert_implements

BASE = "http://clarity.test/API-Admin"


class Cursors:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value


def cef(code: str, message: str = "boom") -> httpx.Response:
    return httpx.Response(400, json={"ResponseStatus": {"ErrorCode": code,
                                                        "Message": f"Log ID: CEF: 1234-abcd | {message}",
                                                        "Errors": []}})


def gateway(answer: Callable[[httpx.Request], httpx.Response], calls: list[str] | None = None) -> HttpClarityGateway:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(request.url.path)
        if request.url.path.endswith("/auth/identity"):
            return httpx.Response(200, json={"SessionId": "sess-1", "UserName": "u"})
        return answer(request)

    return HttpClarityGateway(BASE, "u", "p", cursor_store=Cursors(), transport=httpx.MockTransport(handler))


ROWS: list[tuple[str, httpx.Response, type[E.BridgeError]]] = [
    ("400 CEF-10155", cef("CEF-10155"), E.ValidationError),
    ("400 CEF-10156", cef("CEF-10156", "bad date"), E.ValidationError),
    ("400 CEF-10156 unknown record", cef("CEF-10156", "Must supply an ID or CustomKey that matches an existing record"),
     E.NotFound),
    ("400 CEF-10114", cef("CEF-10114"), E.NotFound),
    ("400 CEF-10142", cef("CEF-10142", "Another record with a matching CustomKey was found."), E.UpstreamRejected),
    ("400 CEF-10115", cef("CEF-10115"), E.UpstreamAuthFailed),
    ("400 CEF-20000", cef("CEF-20000"), E.UpstreamUnavailable),
    ("400 CEF-10161", cef("CEF-10161"), E.UpstreamRejected),
    ("400 unknown code", cef("CEF-99999"), E.UpstreamRejected),
    ("400 no body", httpx.Response(400), E.UpstreamRejected),
    ("403", httpx.Response(403, json={"StatusCode": 403, "StatusDescription": "Forbidden",
                                      "Message": "Invalid Permission"}), E.UpstreamAuthFailed),
    ("404 route", httpx.Response(404, text="Handler for Request not found"), E.UpstreamRejected),
    ("408", httpx.Response(408), E.UpstreamUnavailable),
    ("409", httpx.Response(409), E.Conflict),
    ("422", httpx.Response(422), E.UpstreamRejected),
    ("429", httpx.Response(429, headers={"Retry-After": "4"}), E.RateLimited),
    ("500", httpx.Response(500), E.UpstreamUnavailable),
    ("502", httpx.Response(502), E.UpstreamUnavailable),
    ("503", httpx.Response(503, headers={"Retry-After": "2"}), E.UpstreamUnavailable),
    ("204", httpx.Response(204), E.NotFound),
]


@pytest.mark.parametrize("name, response, cls", ROWS, ids=[r[0] for r in ROWS])
def test_every_row_maps_to_its_class(name: str, response: httpx.Response, cls: type[E.BridgeError]) -> None:
    gw = gateway(lambda req: response)
    with pytest.raises(cls) as info:
        gw.get_order(1)
    assert type(info.value) is cls
    if name.startswith("400 CEF"):
        assert info.value.upstream_request_id == "CEF: 1234-abcd"
        assert info.value.details["error_code"] == name.split()[1]
    if cls is E.RateLimited:
        assert info.value.retry_after == 4.0  # type: ignore[attr-defined]
    if name == "503":
        assert info.value.details["retry_after"] == 2.0


def test_action_succeeded_false_is_rejected_with_the_messages() -> None:
    gw = gateway(lambda req: httpx.Response(200, json={"ActionSucceeded": False,
                                                        "Messages": ["ERROR! amount above balance"]}))
    with pytest.raises(E.UpstreamRejected) as info:
        gw.apply_action(5, "Ship")
    assert info.value.errors == ["ERROR! amount above balance"]


def test_401_logs_in_again_once_then_succeeds() -> None:
    calls: list[str] = []
    answers = iter([httpx.Response(401), httpx.Response(200, json={"ID": 1})])
    gw = gateway(lambda req: next(answers), calls)
    assert gw.get_order(1) == {"ID": 1}
    assert [c.rsplit("/", 2)[-2:] for c in calls] == [["auth", "identity"], ["ID", "1"], ["auth", "identity"],
                                                      ["ID", "1"]]
    assert gw.logins == 2


def test_401_twice_is_auth_failed_after_one_relogin() -> None:
    calls: list[str] = []
    gw = gateway(lambda req: httpx.Response(401, json={"StatusCode": 401, "Message": "Not Authenticated"}), calls)
    with pytest.raises(E.UpstreamAuthFailed):
        gw.get_order(1)
    assert sum(c.endswith("/auth/identity") for c in calls) == 2


def test_refused_login_is_auth_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"ResponseStatus": {"ErrorCode": "Unauthorized"}})

    gw = HttpClarityGateway(BASE, "u", "p", cursor_store=Cursors(), transport=httpx.MockTransport(handler))
    with pytest.raises(E.UpstreamAuthFailed):
        gw.get_order(1)


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                 httpx.RemoteProtocolError("eof")])
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(E.UpstreamUnavailable) as info:
        gateway(boom).get_order(1)
    assert info.value.__cause__ is exc


def test_decimals_come_back_as_strings() -> None:
    gw = gateway(lambda req: httpx.Response(200, content=b'{"ID": 1, "Totals": {"Total": 29.0900}}'))
    assert gw.get_order(1)["Totals"]["Total"] == "29.0900"


def test_session_rides_on_the_x_ss_pid_header() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ID": 1})

    gateway(answer).get_order(1)
    assert seen[0].headers["X-ss-pid"] == "sess-1"


def test_server_local_dates_round_trip_through_the_zone() -> None:
    zone = ZoneInfo("America/Chicago")
    moment = parse_local("2026-11-27T05:31:11.123456", zone)
    assert moment.isoformat() == "2026-11-27T11:31:11.123456+00:00"
    assert format_local(moment, zone) == "2026-11-27T05:31:11.123456"
    with pytest.raises(E.ValidationError):
        parse_local("yesterday", zone)


def test_event_ids_match_between_poll_rows_and_notices() -> None:
    zone = ZoneInfo("America/Chicago")
    row = {"ID": 7, "CustomKey": "WEB-7", "CreatedDate": "2026-11-27T05:00:00.000000",
           "UpdatedDate": "2026-11-27T05:31:11.123456", "StatusKey": "Confirmed"}
    notice = {"id": "evt_abc", "type": "salesorder.updated",
              "data": {"ID": 7, "CustomKey": "WEB-7", "UpdatedDate": "2026-11-27T05:31:11.123456"}}
    polled = change_event(row, zone)
    assert polled["type"] == "salesorder.updated"
    assert polled["id"] == event_from_notice(notice, zone)["id"]
    assert event_from_notice(notice, zone)["data"]["notice_id"] == "evt_abc"
    later = change_event({**row, "UpdatedDate": "2026-11-27T05:31:11.123457"}, zone)
    assert later["id"] != polled["id"]
    with pytest.raises(E.ValidationError):
        event_from_notice({"id": "evt_x", "data": {}}, zone)
    assert json.loads(json.dumps(polled)) == polled


def test_the_gateway_implements_the_port() -> None:
    assert_implements(gateway(lambda req: httpx.Response(204)), ClarityGateway)


def search_server(rows: list[dict[str, object]], seen: list[httpx.Request]) -> HttpClarityGateway:
    """A MockTransport answering searches like CEF: ModifiedSince >=, sorted by UpdatedDate, 1-based pages."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        since = request.url.params.get("ModifiedSince")
        paging = json.loads(request.url.params["Paging"])
        hits = sorted((r for r in rows if since is None or str(r["UpdatedDate"]) >= since),
                      key=lambda r: (str(r["UpdatedDate"]), int(str(r["ID"]))))
        skip = paging["Size"] * (paging["StartIndex"] - 1)
        return httpx.Response(200, json={"Results": hits[skip:skip + paging["Size"]], "TotalCount": len(hits)})

    gw = gateway(answer)
    gw.page_size = 2
    gw.zone = ZoneInfo("America/Chicago")
    return gw


def test_poll_steps_past_a_full_page_of_one_timestamp() -> None:
    stamp = "2026-11-27T05:31:11.000000"
    rows: list[dict[str, object]] = [{"ID": i, "CreatedDate": stamp, "UpdatedDate": stamp} for i in (1, 2, 3)]
    seen: list[httpx.Request] = []
    gw = search_server(rows, seen)
    events = gw.poll_changed_orders(lambda e: None).events
    assert [e["data"]["ID"] for e in events] == [1, 2, 3]
    assert [json.loads(r.url.params["Paging"])["StartIndex"] for r in seen] == [1, 1, 2]
    assert gw.poll_changed_orders(lambda e: None).events == []


def test_poll_asks_for_server_local_time_minus_the_overlap() -> None:
    rows: list[dict[str, object]] = [{"ID": 1, "CreatedDate": "2026-11-27T05:31:11.000000",
                                      "UpdatedDate": "2026-11-27T05:31:11.000000"}]
    seen: list[httpx.Request] = []
    gw = search_server(rows, seen)
    gw.poll_changed_orders(lambda e: None)
    seen.clear()
    gw.poll_changed_orders(lambda e: None)
    assert seen[0].url.params["ModifiedSince"] == "2026-11-27T05:31:06.000000"  # 5 s overlap, Chicago wall time
