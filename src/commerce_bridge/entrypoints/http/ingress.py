"""``POST /webhooks/{source}`` as a lean ASGI app: size limit, allowlist, verify, store, answer."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from commerce_bridge.entrypoints.http.errors import JSON_HEADERS, dumps, from_exception
from commerce_bridge.errors import (
    BridgeError,
    Forbidden,
    PayloadTooLarge,
    SignatureInvalid,
    UnknownSource,
    ValidationError,
)
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.ingest import IngestService

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PREFIX = "/webhooks/"


class SourceAllowlist:
    """Allowed source networks per webhook source, believing X-Forwarded-For only from trusted proxies."""

    def __init__(self, allowed: Mapping[str, Sequence[str]], trusted_proxies: Sequence[str]) -> None:
        self._allowed = {s: [ipaddress.ip_network(c, strict=False) for c in cidrs]
                         for s, cidrs in allowed.items() if cidrs}
        self._proxies = [ipaddress.ip_network(c, strict=False) for c in trusted_proxies]

    def check(self, source: str, peer: str | None, forwarded_for: str | None) -> None:
        nets = self._allowed.get(source)
        if not nets:
            return
        addr = self.client_address(peer, forwarded_for)
        if addr is None or not any(addr in n for n in nets):
            raise Forbidden(f"Source address {addr} is not allowed to post to /webhooks/{source}")

    def client_address(self, peer: str | None, forwarded_for: str | None) -> Any:
        try:
            addr = ipaddress.ip_address(peer) if peer else None
        except ValueError:
            return None
        if addr is None or not forwarded_for or not self._is_proxy(addr):
            return addr
        # Walk X-Forwarded-For right to left; the first address that is not a trusted proxy is the client.
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            try:
                hop_addr = ipaddress.ip_address(hop)
            except ValueError:
                return None
            if not self._is_proxy(hop_addr):
                return hop_addr
        return addr

    def _is_proxy(self, addr: Any) -> bool:
        return any(addr in n for n in self._proxies)


class WebhookIngress:
    """The ASGI handler for ``/webhooks/{source}``."""

    def __init__(self, ingest: IngestService, allowlist: SourceAllowlist, metrics: Metrics,
                 max_body_bytes: int) -> None:
        self._ingest = ingest
        self._allowlist = allowlist
        self._metrics = metrics
        self._max_body = max_body_bytes
        # The metric children, looked up once (``labels()`` takes a lock and builds a key per call).
        self._latency: dict[str, Any] = {}
        self._counted: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request_id = _request_id()
        source = scope["path"][len(PREFIX):].strip("/")
        outcome = "error"
        try:
            if scope["method"] != "POST":
                await _send(send, 405, {"ok": False, "error": "Use POST", "errors": ["Use POST"], "status": 405,
                                        "code": "method_not_allowed", "request_id": request_id}, request_id)
                outcome = "rejected"
                return
            if not self._ingest.knows(source):
                raise UnknownSource(f"No webhook source named {source!r}")
            signature_header = self._ingest.scheme(source).header
            length, forwarded_for, signature = _headers(scope, signature_header)
            client = scope.get("client")
            self._allowlist.check(source, client[0] if client else None, forwarded_for)
            body = await self._read_body(receive, length)
            result = await self._ingest.receive(source, body, signature)
            outcome = "duplicate" if not result.is_new else "accepted"
            await _send(send, 200, {"ok": True, "duplicate": not result.is_new, "event_id": result.event_id},
                        request_id)
            latency = self._latency.get(source)
            if latency is None:
                latency = self._latency[source] = self._metrics.ingest_latency.labels(source)
            latency.observe(time.perf_counter() - started)
        except (SignatureInvalid, ValidationError, PayloadTooLarge, UnknownSource, Forbidden) as exc:
            outcome = "rejected"
            status, body_, extra = from_exception(exc, request_id)
            if isinstance(exc, ValidationError):  # a verified but unusable body is the sender's mistake
                status = body_["status"] = 400
            await _send(send, status, body_, request_id, extra)
        except BridgeError as exc:
            outcome = "unavailable" if exc.transient else "error"
            status, body_, extra = from_exception(exc, request_id)
            await _send(send, status, body_, request_id, extra)
        finally:
            key = (source if self._ingest.knows(source) else "unknown", outcome)
            counter = self._counted.get(key)
            if counter is None:
                counter = self._counted[key] = self._metrics.deliveries.labels(*key)
            counter.inc()

    async def _read_body(self, receive: Any, declared: str | None) -> bytes:
        if declared and declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            raise PayloadTooLarge(f"Body of {declared} bytes is over the {self._max_body}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ValidationError("Client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise PayloadTooLarge(f"Body is over the {self._max_body}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _headers(scope: dict[str, Any], signature_header: str) -> tuple[str | None, str | None, str | None]:
    """(Content-Length, X-Forwarded-For, the signature header) of the request; the last of each wins."""
    wanted = signature_header.encode("latin-1")
    length = forwarded = signature = None
    for name, value in scope["headers"]:  # names come lower-cased from the server (ASGI)
        if name == b"content-length":
            length = value.decode("latin-1")
        elif name == wanted:
            signature = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    return length, forwarded, signature


def _request_id() -> str:
    """``req_`` and 20 hex digits, as :func:`~commerce_bridge.entrypoints.http.errors.new_request_id`
    gives, without a system call per request: a log correlation id needs no secrecy."""
    return f"req_{random.getrandbits(80):020x}"


async def _send(send: Any, status: int, body: dict[str, Any], request_id: str,
                extra: dict[str, str] | None = None) -> None:
    payload = dumps(body)
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode()),
               (b"x-request-id", request_id.encode())]
    for k, v in (extra or {}).items():
        headers.append((k.encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
