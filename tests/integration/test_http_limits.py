"""The HTTP server's limits, over raw sockets against the server the CLI runs (``server_config``).

One ``ingress`` process's app on SQLite, served by the uvicorn configuration ``serve``/``ingress``
build, with short limits so that each timeout test takes a couple of seconds.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.domain.signature import sign
from commerce_bridge.entrypoints.http.app import build_app
from commerce_bridge.entrypoints.http.server import server_config
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.sandbox.runner import free_port

HEADER_LIMIT = 4096
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
KEEPALIVE_TIMEOUT_S = 2.0
MAX_BODY = 2048
SECRET = "whsec_http_limits"
ERROR_KEYS = {"ok", "error", "errors", "status", "code", "request_id"}
GIVE_UP_S = 15.0  # a connection still open this long after its timeout was not closed by it


@dataclass
class Bridge:
    port: int
    container: Container

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=20)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    tmp: Path = tmp_path_factory.mktemp("http_limits")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("CB_") and key != "CB_TEST_DATABASE_URL":
                mp.delenv(key)
        mp.chdir(tmp)
        settings = load_settings(
            database_url=f"sqlite:///{tmp / 'bridge.sqlite'}", stripe_webhook_secrets=SECRET,
            max_body_bytes=MAX_BODY, http_max_header_bytes=HEADER_LIMIT, http_header_timeout_s=HEADER_TIMEOUT_S,
            http_body_timeout_s=BODY_TIMEOUT_S, http_keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
        )
        c = bootstrap(settings, "ingress", migrate=True)
        port = free_port()
        server = uvicorn.Server(server_config(build_app(c), settings, host="127.0.0.1", port=port))
        thread = threading.Thread(target=server.run, name="http-limits", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            yield Bridge(port, c)
        finally:
            server.should_exit = True
            thread.join(30)
            c.close()


# ---- helpers -------------------------------------------------------------------------------------
def read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: (status line, headers, body).

    Reads no byte past the response, so that the next call finds the next (pipelined) response.
    """
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed before a full response head: {head!r}"
        head += byte
    status, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    body = b""
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(int(headers["content-length"]) - len(body))
        assert chunk, "connection closed in the middle of a response body"
        body += chunk
    return status, headers, body


def wait_until_closed(sock: socket.socket, *, trickle: bytes = b"", every_s: float = 0.2) -> tuple[float | None, bytes]:
    """Seconds until the server closes ``sock`` (None: still open after GIVE_UP_S), and what it sent.

    ``trickle`` is sent every ``every_s`` meanwhile (a slow client, or blank lines on an idle one).
    """
    started = time.monotonic()
    received = b""
    while time.monotonic() - started < GIVE_UP_S:
        readable, _, _ = select.select([sock], [], [], every_s)
        try:
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return time.monotonic() - started, received
                received += chunk
            if trickle:
                sock.sendall(trickle)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started, received
    return None, received


def get(path: str = "/healthz", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bridge\r\n{extra}\r\n".encode()


def signed_webhook(event_id: str) -> tuple[bytes, bytes]:
    body = json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded"}).encode()
    head = (f"POST /webhooks/stripe HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {sign(body, SECRET, int(time.time()))}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


# ---- head size -----------------------------------------------------------------------------------
def test_header_line_that_never_ends_gets_431_long_before_it_is_all_sent(bridge: Bridge) -> None:
    total = 64 * 1024 * 1024
    sent = 0
    sock = bridge.connect()

    def send_huge_header() -> None:
        nonlocal sent
        chunk = b"a" * 65536
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Big: ")
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection: what we want
            pass

    sender = threading.Thread(target=send_huge_header, daemon=True)
    sender.start()
    with sock:
        status, headers, body = read_response(sock)
        sender.join(60)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    error = json.loads(body)
    assert set(error) == ERROR_KEYS
    assert (error["ok"], error["status"], error["code"]) == (False, 431, "header_too_large")
    # The server stopped reading at the limit: what got out is the limit plus the sockets' buffers.
    assert not sender.is_alive() and sent < total // 4, f"{sent} of {total} bytes were sent"


def test_many_small_header_fields_over_the_limit_get_431(bridge: Bridge) -> None:
    fields = "".join(f"X-Field-{i:04d}: {'v' * 20}\r\n" for i in range(HEADER_LIMIT // 30 + 10))
    with bridge.connect() as sock:
        sock.sendall(get(extra=fields))
        status, _, body = read_response(sock)
        closed_after, _ = wait_until_closed(sock)
    assert status.startswith("HTTP/1.1 431 ") and json.loads(body)["code"] == "header_too_large"
    assert closed_after is not None


def test_header_over_the_limit_that_ends_in_a_later_read_gets_431(bridge: Bridge) -> None:
    with bridge.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Split: " + b"a" * (HEADER_LIMIT // 2))
        time.sleep(0.2)  # most likely two reads on the server; one read must give the same answer
        sock.sendall(b"a" * HEADER_LIMIT + b"\r\n\r\n")
        status, _, body = read_response(sock)
    assert status.startswith("HTTP/1.1 431 ") and json.loads(body)["code"] == "header_too_large"


def test_request_head_just_under_the_limit_is_answered(bridge: Bridge) -> None:
    padding = "x" * (HEADER_LIMIT - 300)
    with bridge.connect() as sock:
        sock.sendall(get(extra=f"X-Padding: {padding}\r\n"))
        status, _, body = read_response(sock)
    assert status == "HTTP/1.1 200 OK" and json.loads(body)["ok"] is True


# ---- timeouts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("first", [True, False], ids=["first request", "after an answered request"])
def test_connection_is_closed_when_the_request_head_is_too_slow(bridge: Bridge, first: bool) -> None:
    with bridge.connect() as sock:
        if not first:
            sock.sendall(get())
            assert read_response(sock)[0] == "HTTP/1.1 200 OK"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
        closed_after, received = wait_until_closed(sock, trickle=b"a")
    assert closed_after is not None, f"a slow head was still open after {GIVE_UP_S} s"
    assert closed_after >= HEADER_TIMEOUT_S * 0.9 and received == b""


def test_silent_new_connection_is_closed_after_the_header_timeout(bridge: Bridge) -> None:
    with bridge.connect() as sock:
        closed_after, received = wait_until_closed(sock)
    assert closed_after is not None, f"a silent connection was still open after {GIVE_UP_S} s"
    assert closed_after >= HEADER_TIMEOUT_S * 0.9 and received == b""


def test_connection_is_closed_when_the_request_body_is_too_slow(bridge: Bridge) -> None:
    head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: bridge\r\nContent-Length: 1000\r\n\r\n"
    with bridge.connect() as sock:
        sock.sendall(head + b'{"id": ')
        closed_after, received = wait_until_closed(sock, trickle=b" ")  # 1000 bytes would take 3 minutes
    assert closed_after is not None, f"a slow body was still open after {GIVE_UP_S} s"
    assert closed_after >= BODY_TIMEOUT_S * 0.9 and received == b""


def test_idle_kept_alive_connection_is_closed_even_when_fed_blank_lines(bridge: Bridge) -> None:
    with bridge.connect() as sock:
        sock.sendall(get())
        status, headers, _ = read_response(sock)
        assert status == "HTTP/1.1 200 OK" and "connection" not in headers  # kept alive
        closed_after, received = wait_until_closed(sock, trickle=b"\r\n")
    assert closed_after is not None, f"an idle connection was still open after {GIVE_UP_S} s"
    assert closed_after >= KEEPALIVE_TIMEOUT_S * 0.9 and received == b""


# ---- what must keep working ----------------------------------------------------------------------
def test_kept_alive_connection_answers_several_requests(bridge: Bridge) -> None:
    with bridge.connect() as sock:
        for _ in range(3):
            sock.sendall(get())
            status, headers, body = read_response(sock)
            assert status == "HTTP/1.1 200 OK" and json.loads(body) == {"ok": True, "status": "alive"}
            assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(bridge: Bridge) -> None:
    with bridge.connect() as sock:
        sock.sendall(get("/healthz") + get("/nowhere") + get("/healthz"))
        statuses = [read_response(sock)[0] for _ in range(3)]
    assert statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"]


def test_signed_webhook_sent_in_pieces_is_stored(bridge: Bridge) -> None:
    head, body = signed_webhook("evt_pieces")
    with bridge.connect() as sock:
        for piece in (head[:20], head[20:], body[:10], body[10:]):
            sock.sendall(piece)
        status, _, answer = read_response(sock)
    assert status == "HTTP/1.1 200 OK" and json.loads(answer)["event_id"] == "evt_pieces"
    assert bridge.container.inbox.get("stripe", "evt_pieces") is not None


def test_webhook_body_over_max_body_bytes_still_gets_413(bridge: Bridge) -> None:
    body = b"{" + b" " * MAX_BODY + b"}"
    head = (f"POST /webhooks/stripe HTTP/1.1\r\nHost: bridge\r\nStripe-Signature: t=1,v1=00\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with bridge.connect() as sock:
        sock.sendall(head + body)
        status, _, answer = read_response(sock)
    assert status.startswith("HTTP/1.1 413 ") and json.loads(answer)["code"] == "payload_too_large"


@pytest.mark.parametrize(("setting", "value"), [
    ("http_max_header_bytes", 100), ("http_header_timeout_s", 0), ("http_body_timeout_s", -1),
    ("http_keepalive_timeout_s", 0),
])
def test_http_limits_are_checked_at_start_up(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**{setting: value})
    assert f"CB_{setting.upper()}" in raised.value.message
