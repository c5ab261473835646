"""The bridge's HTTP server: uvicorn with limits on request heads, bodies and idle connections.

uvicorn's httptools protocol reads a request head of any size (it buffers a 64 MB header in full) and
has no timer for a slow head or a slow body; its keep-alive timer starts only after a first answer.
:class:`LimitedHttpToolsProtocol` adds the limits below, and :func:`server_config` builds the one
uvicorn configuration that ``serve``, ``ingress`` and ``worker --port`` run (and the tests start).

Rules, per connection (settings in brackets):

1. **Head size** (``CB_HTTP_MAX_HEADER_BYTES``). The request line and the header fields of one
   request may take at most this many bytes. Over it the answer is ``431 header_too_large`` in the
   JSON error shape, with ``Connection: close``; the bridge stops reading, and closes the connection a
   moment later (:data:`LINGER_S`, so that the client reads the 431 before the close resets it). It
   holds at most the limit plus two socket reads (up to 256 KiB each), never the whole header: a
   finished head is measured from what the parser gave (target and fields), and a read that falls
   wholly inside an unfinished head is counted as it comes (a header line that never ends reaches no
   parser callback).
2. **Head time** (``CB_HTTP_HEADER_TIMEOUT_S``). A request head must be complete this long after its
   first byte; a new connection must send a complete head this long after it was accepted. Otherwise
   the connection is closed without an answer (slowloris, connections opened and left silent).
3. **Body time** (``CB_HTTP_BODY_TIMEOUT_S``). A request body must be complete this long after the
   end of its head, otherwise the connection is closed without an answer (the application sees a
   disconnect). The size of a webhook body is the ingress's business (``CB_MAX_BODY_BYTES``, 413).
4. **Idle time** (``CB_HTTP_KEEPALIVE_TIMEOUT_S``). Between requests a kept-alive connection stays
   open this long; bytes that do not start a request (blank lines) do not extend it.

While the application works on a request (head and body received, answer not yet complete) no timer
runs: how long our handlers take is not the client's doing. One deadline per connection carries the
current rule (head, body or idle). WebSocket upgrades are off (``ws="none"``): the bridge has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httptools
import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from commerce_bridge.config import Settings
from commerce_bridge.entrypoints.http.errors import dumps, from_exception, new_request_id
from commerce_bridge.errors import HeaderTooLarge

log = structlog.get_logger("commerce_bridge.http")

LINGER_S = 1.0
"""After a 431: seconds the connection stays half-closed (not read) before it is closed."""

Phase = Literal["head", "body", "idle"]


@dataclass(frozen=True)
class HttpLimits:
    """The limits of :class:`LimitedHttpToolsProtocol` (see the module docstring)."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> HttpLimits:
        return cls(s.http_max_header_bytes, s.http_header_timeout_s, s.http_body_timeout_s,
                   s.http_keepalive_timeout_s)


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing at once (httptools re-raises it as the context)."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head size limit and the head, body and idle timers.

    Subclass it with ``limits`` set (:func:`limited_protocol`); uvicorn builds one per connection.
    """

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase | None = None
        self._deadline: float | None = None  # loop time by which the current phase must be over
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._read_len = 0  # length of the read being parsed
        self._head_upper = 0  # bytes of the reads the current head has touched: >= its size
        self._head_raw = 0  # bytes of reads that fell wholly inside the current head: <= its size
        self._head_events = 0  # message begins and head ends (odd: inside a head)
        self._rejected = False

    # ---- the one deadline ----------------------------------------------------------------------
    # A request passes through head, body and idle. Re-arming a loop timer at each change would cost
    # more than everything else here, so a change only moves ``_deadline``; the timer is moved only
    # when the new deadline comes before it, and when it fires early it sets itself again.
    def _enter(self, phase: Phase | None, seconds: float = 0.0) -> None:
        self._phase = phase
        if phase is None:  # the application works on a request: no deadline
            self._deadline = None
            return
        deadline = self._deadline = self.loop.time() + seconds
        if self._timer is None or self._timer_at > deadline:
            self._set_timer(deadline)

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self.loop.call_at(when, self._on_timer), when

    def _on_timer(self) -> None:
        self._timer = None
        if self._deadline is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:
            self._set_timer(self._deadline)
            return
        log.info("http.connection_timed_out", rule=f"{self._phase}_timeout")
        self.transport.close()

    def _stop_timer(self) -> None:
        self._enter(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- connection life -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("head", self.limits.header_timeout_s)  # a silent new connection is a slow head

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, except that any byte used to cancel the keep-alive timer (the
        # idle phase now ends when a request begins) and that a head over the limit gets a 431.
        if self._rejected:
            return
        in_head_before = self._head_events % 2 == 1
        events_before = self._head_events
        self._read_len = len(data)
        if in_head_before:
            self._head_upper += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._reject_head()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # ws="none": an upgrade is never honoured
        if in_head_before and self._head_events == events_before:
            # The whole read lies inside one unfinished head. A header line that never ends reaches
            # no callback until it does, so count the read here and stop before the head grows on.
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes:
                self._reject_head()

    # ---- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_events += 1
        self._head_upper, self._head_raw = self._read_len, 0
        if self._phase != "head":  # a new connection's head deadline still counts from the accept
            self._enter("head", self.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._head_events += 1
        limit = self.limits.max_header_bytes
        # Most heads come in one read shorter than the limit; only a longer one is measured.
        if self._head_upper > limit and self._head_size() > limit:
            raise _HeadTooLarge
        self._enter("body", self.limits.body_timeout_s)  # left at once by a request without a body
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Usually the application now works on the request: no deadline. If it has already answered
        # (for example a 413 before reading the body), the connection is idle from here on.
        if self.cycle.response_complete and not self.pipeline and not self.transport.is_closing():
            self._enter("idle", self.limits.keepalive_timeout_s)
        else:
            self._enter(None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        armed_keepalive = self.timeout_keep_alive_task is not None
        self._unset_keepalive_if_required()  # uvicorn's keep-alive timer; ours is the idle phase
        if armed_keepalive and self._phase is None:
            self._enter("idle", self.limits.keepalive_timeout_s)
        # else: a head or body is still arriving (its deadline holds), or a pipelined request started.

    # ---- head size -----------------------------------------------------------------------------
    def _head_size(self) -> int:
        """The request target and header fields as the parser gave them, plus ": " and CRLF each."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _reject_head(self) -> None:
        """Answer 431 (unless an earlier answer is still being written), stop reading, close soon."""
        self._rejected = True
        self._stop_timer()
        log.info("http.header_too_large", limit=self.limits.max_header_bytes)
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request's head: the answer in progress owns the socket
            return
        error = HeaderTooLarge(f"Request line and headers are over the {self.limits.max_header_bytes}-byte limit")
        status, body, _ = from_exception(error, new_request_id())
        payload = dumps(body)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(payload)).encode(),
                 b"\r\nconnection: close\r\n\r\n", payload]
        self.transport.write(b"".join(head))
        # Closing a socket with unread bytes resets it, and a reset can destroy the 431 before the
        # client reads it. So: stop reading, send FIN after the 431, and close a moment later.
        self.transport.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def limited_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A :class:`LimitedHttpToolsProtocol` class bound to ``limits`` (uvicorn takes a class)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration of the bridge's HTTP server, with the limits of ``settings``.

    Parameters
    ----------
    app:
        The ASGI application (:func:`~commerce_bridge.entrypoints.http.app.build_app`).
    settings:
        Where the ``CB_HTTP_*`` limits come from.
    host, port:
        Where to listen.

    Returns
    -------
    uvicorn.Config
        Run it with ``uvicorn.Server(config).run()``.
    """
    limits = HttpLimits.from_settings(settings)
    return uvicorn.Config(
        app, host=host, port=port, http=limited_protocol(limits), ws="none", lifespan="on",
        # proxy_headers=False: X-Forwarded-For is judged by our allowlist (CB_TRUSTED_PROXIES), not by uvicorn
        proxy_headers=False, log_config=None, access_log=False, timeout_graceful_shutdown=10,
        timeout_keep_alive=math.ceil(limits.keepalive_timeout_s),  # unused: the protocol's idle timer rules
    )


def run_server(config: uvicorn.Config) -> bool:
    """Serve until stopped (SIGINT/SIGTERM), as ``uvicorn.run`` does; False if it never started."""
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn handles the signals itself; just in case
        server.run()
    return server.started
