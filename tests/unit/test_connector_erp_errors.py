"""Contract test of the ERP error table: every row through httpx.MockTransport and the real gateway code."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from commerce_bridge import errors as E
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.services.gateways import ErpGateway
from tests.support.ports import assert_implements


def frappe(status: int, exc_type: str, message: str = "boom") -> httpx.Response:
    inner = json.dumps({"message": message, "title": "Message", "indicator": "red", "raise_exception": 1})
    return httpx.Response(status, json={"exception": f"frappe.exceptions.{exc_type}: {message}",
                                        "exc_type": exc_type, "exc": "[]", "_server_messages": json.dumps([inner])})


def gateway(handler: Callable[[httpx.Request], httpx.Response]) -> HttpErpGateway:
    return HttpErpGateway("http://erp.test", "k", "s", transport=httpx.MockTransport(handler))


ROWS: list[tuple[str, httpx.Response, type[E.BridgeError]]] = [
    ("404 DoesNotExistError", frappe(404, "DoesNotExistError"), E.NotFound),
    ("409 DuplicateEntryError", frappe(409, "DuplicateEntryError"), E.UpstreamRejected),
    ("417 ValidationError", frappe(417, "ValidationError", "Total Debit must be equal to Total Credit"),
     E.UpstreamRejected),
    ("417 MandatoryError", frappe(417, "MandatoryError"), E.UpstreamRejected),
    ("417 LinkValidationError", frappe(417, "LinkValidationError"), E.UpstreamRejected),
    ("417 UpdateAfterSubmitError", frappe(417, "UpdateAfterSubmitError"), E.UpstreamRejected),
    ("417 TimestampMismatchError", frappe(417, "TimestampMismatchError"), E.Conflict),
    ("401 AuthenticationError", frappe(401, "AuthenticationError"), E.UpstreamAuthFailed),
    ("403 PermissionError", frappe(403, "PermissionError"), E.UpstreamAuthFailed),
    ("408", httpx.Response(408), E.UpstreamUnavailable),
    ("429", httpx.Response(429, headers={"Retry-After": "5"}), E.RateLimited),
    ("500", httpx.Response(500, text="Internal Server Error"), E.UpstreamUnavailable),
    ("502", httpx.Response(502), E.UpstreamUnavailable),
    ("503", httpx.Response(503, headers={"Retry-After": "1"}), E.UpstreamUnavailable),
    ("400 other", httpx.Response(400, text="bad"), E.UpstreamRejected),
]


@pytest.mark.parametrize("name, response, cls", ROWS, ids=[r[0] for r in ROWS])
def test_every_row_maps_to_its_class(name: str, response: httpx.Response, cls: type[E.BridgeError]) -> None:
    with pytest.raises(cls) as info:
        gateway(lambda req: response).get_doc("Customer", "Ann")
    assert type(info.value) is cls
    if name == "417 ValidationError":
        assert info.value.errors == ["Total Debit must be equal to Total Credit"]
        assert "Total Debit must be equal" in str(info.value)
    if cls is E.RateLimited:
        assert info.value.retry_after == 5.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(E.UpstreamUnavailable) as info:
        gateway(boom).get_doc("Customer", "Ann")
    assert info.value.__cause__ is exc


def test_duplicate_on_create_means_exists_and_returns_the_document() -> None:
    """A concurrent creator won the race: the list was empty, the insert is a 409, the second look finds it."""
    lists = iter([[], [{"name": "SKU-1"}]])
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        if request.method == "GET" and request.url.path == "/api/resource/Item":
            return httpx.Response(200, json={"data": next(lists)})
        if request.method == "POST":
            return frappe(409, "DuplicateEntryError", "Item SKU-1 already exists")
        return httpx.Response(200, json={"data": {"name": "SKU-1", "item_code": "SKU-1", "docstatus": 0}})

    assert gateway(handler).ensure_item({"item_code": "SKU-1"})["name"] == "SKU-1"
    assert methods == ["GET", "POST", "GET", "GET"]


def test_token_header_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"name": "Ann"}})

    gateway(handler).get_doc("Sales Order", "SAL/ORD 1")
    assert seen[0].headers["Authorization"] == "token k:s"
    assert seen[0].url.raw_path == b"/api/resource/Sales%20Order/SAL%2FORD%201"


def test_the_gateway_implements_the_port() -> None:
    assert_implements(gateway(lambda req: httpx.Response(204)), ErpGateway)


def test_the_port_check_refuses_a_gateway_callers_could_not_call() -> None:
    class RenamedKeyword(HttpErpGateway):
        def ensure_sales_order(self, doc: object, *, submitted: bool = True) -> dict[str, object]:  # type: ignore[override]
            return {}

    class NewRequiredParameter(HttpErpGateway):
        def find_by(self, doctype: str, field: str, value: object, company: str) -> None:  # type: ignore[override]
            return None

    class MissingMethod:
        def get_doc(self, doctype: str, name: str) -> dict[str, object]:
            return {}

    handler = lambda req: httpx.Response(204)  # noqa: E731
    with pytest.raises(AssertionError, match="no keyword 'submit'"):
        assert_implements(RenamedKeyword("http://erp.invalid", "k", "s", transport=httpx.MockTransport(handler)),
                          ErpGateway)
    with pytest.raises(AssertionError, match="'company' is required"):
        assert_implements(NewRequiredParameter("http://erp.invalid", "k", "s",
                                               transport=httpx.MockTransport(handler)), ErpGateway)
    with pytest.raises(AssertionError, match="lacks members"):
        assert_implements(MissingMethod(), ErpGateway)
