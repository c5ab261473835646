"""Contract test of the outbound connector's error table: every HTTP outcome maps to the right class."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from commerce_bridge import errors as E
from commerce_bridge.connectors.outbound.webhook import OutboundWebhookSender
from commerce_bridge.domain.signature import SignatureScheme, verify
from commerce_bridge.services.ports import StepContext

CTX = StepContext(run_id="stripe:evt_1:core.forward", step_id="post", attempt=1, source="stripe",
                  event_id="evt_1", event_type="charge.succeeded", event={"id": "evt_1"})


def sender(handler: Any) -> OutboundWebhookSender:
    return OutboundWebhookSender("http://receiver.test/hook", secret="s3cret",
                                 client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("status, headers, cls", [
    (400, {}, E.UpstreamRejected), (401, {}, E.UpstreamAuthFailed), (403, {}, E.UpstreamAuthFailed),
    (404, {}, E.NotFound), (408, {}, E.UpstreamUnavailable), (409, {}, E.Conflict),
    (422, {}, E.UpstreamRejected), (425, {}, E.UpstreamUnavailable), (429, {"Retry-After": "7"}, E.RateLimited),
    (500, {}, E.UpstreamUnavailable), (502, {}, E.UpstreamUnavailable), (503, {"Retry-After": "3"}, E.UpstreamUnavailable),
])
def test_status_maps_to_error_class(status: int, headers: dict[str, str], cls: type[E.BridgeError]) -> None:
    s = sender(lambda req: httpx.Response(status, headers={**headers, "X-Request-Id": "req_9"}, text="nope"))
    with pytest.raises(cls) as info:
        s.post(CTX, {})
    assert type(info.value) is cls
    assert info.value.upstream_request_id == "req_9"
    if cls is E.RateLimited:
        assert info.value.retry_after == 7.0  # type: ignore[attr-defined]
    if status == 503:
        assert info.value.details["retry_after"] == 3.0


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                 httpx.RemoteProtocolError("eof")])
def test_transport_failures_are_transient(exc: Exception) -> None:
    def boom(req: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(E.UpstreamUnavailable) as info:
        sender(boom).post(CTX, {})
    assert info.value.__cause__ is exc


def test_success_sends_a_signed_body_with_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def ok(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(202)

    assert sender(ok).post(CTX, {}) == {"status": 202}
    req = seen[0]
    assert req.headers["Idempotency-Key"] == "stripe:evt_1:core.forward:post"
    scheme = SignatureScheme("x-bridge-signature", (b"s3cret",))
    import time

    verify(req.content, req.headers["X-Bridge-Signature"], scheme, time.time)
