"""Fault injection for sandbox peers: per-route errors, latency, 429s and timed outages (`/_sandbox/faults`)."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox/"


@dataclass
class FaultRule:
    """Answer matching requests with ``status`` at ``error_rate`` and/or delay them by ``latency_ms``."""

    path: str = "*"
    methods: list[str] = field(default_factory=list)
    error_rate: float = 1.0
    status: int = 500
    latency_ms: int = 0
    times: int | None = None
    retry_after: int | None = None
    fired: int = 0  # requests this rule answered with ``status``

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return fnmatch.fnmatch(path.lower(), self.path.lower())

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "methods": self.methods, "error_rate": self.error_rate, "status": self.status,
                "latency_ms": self.latency_ms, "times": self.times, "retry_after": self.retry_after,
                "fired": self.fired}


class FaultInjector:
    """Fault settings shared by the control API and the middleware (thread-safe).

    ``gate``, when set (by ``sandbox up`` and the peer CLIs), is an :class:`OutageGate` that can refuse
    TCP connections during an outage; without it an outage answers 503.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.latency_ms = 0
        self.outage_until = 0.0
        self.outage_mode = "503"
        self.outage_answered = 0  # requests the latest outage answered with 503
        self.gate: OutageGate | None = None
        self._random = random.Random(seed)

    def configure(self, body: dict[str, Any]) -> None:
        """Replace the settings with ``body`` (see docs/sandbox/clarity.md for the shape)."""
        rules = []
        for raw in body.get("rules") or []:
            if not isinstance(raw, dict):
                raise ValueError("rules must be objects")
            rule = FaultRule(
                path=str(raw.get("path", "*")), methods=[str(m) for m in raw.get("methods") or []],
                error_rate=float(raw.get("error_rate", 1.0)), status=int(raw.get("status", 500)),
                latency_ms=int(raw.get("latency_ms", 0)),
                times=None if raw.get("times") is None else int(raw["times"]),
                retry_after=None if raw.get("retry_after") is None else int(raw["retry_after"]),
            )
            if not 0.0 <= rule.error_rate <= 1.0 or not 100 <= rule.status <= 599:
                raise ValueError("error_rate must be within 0..1 and status a valid HTTP status")
            rules.append(rule)
        with self._lock:
            self.rules = rules
            self.latency_ms = int(body.get("latency_ms", 0))
        if body.get("outage_s"):
            self.start_outage(float(body["outage_s"]), str(body.get("outage_mode", "503")))

    def start_outage(self, seconds: float, mode: str = "503") -> str:
        """Begin an outage of ``seconds``; returns the mode in effect (``refused`` needs a gate)."""
        if mode not in ("503", "refused"):
            raise ValueError("outage_mode must be '503' or 'refused'")
        effective = mode if mode == "503" or self.gate is not None else "503"
        with self._lock:
            self.outage_until = time.monotonic() + seconds
            self.outage_mode = effective
            self.outage_answered = 0
        if effective == "refused" and self.gate is not None:
            self.gate.refuse_for(seconds, after=0.1)
        return effective

    def clear(self) -> None:
        with self._lock:
            self.rules = []
            self.latency_ms = 0
            self.outage_until = 0.0
            self.outage_answered = 0
        if self.gate is not None:
            self.gate.refuse_for(0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            remaining = max(0.0, self.outage_until - time.monotonic())
            return {"rules": [r.as_dict() for r in self.rules], "latency_ms": self.latency_ms,
                    "outage_remaining_s": round(remaining, 3), "outage_mode": self.outage_mode if remaining else None,
                    "outage_answered": self.outage_answered, "refused_supported": self.gate is not None}

    def decide(self, method: str, path: str) -> tuple[float, FaultRule | None, bool]:
        """For one request: the delay in seconds, the rule that fails it (if any), and outage-ness."""
        with self._lock:
            if time.monotonic() < self.outage_until:
                self.outage_answered += 1
                return 0.0, None, True
            delay = self.latency_ms / 1000
            failing: FaultRule | None = None
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                delay += rule.latency_ms / 1000
                if failing is None and rule.times != 0 and self._random.random() < rule.error_rate \
                        and rule.error_rate > 0:
                    failing = rule
                    rule.fired += 1
                    if rule.times is not None:
                        rule.times -= 1
            return delay, failing, False

    def middleware_class(self) -> type[FaultMiddleware]:
        return FaultMiddleware


class FaultMiddleware:
    """ASGI middleware applying a :class:`FaultInjector` to every route except ``/_sandbox/...``."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        delay, rule, outage = self.injector.decide(scope["method"], scope["path"])
        if outage:
            response = Response(json.dumps({"error": "service unavailable (injected outage)"}), status_code=503,
                                media_type="application/json", headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        if delay:
            await asyncio.sleep(delay)
        if rule is not None:
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else (
                {"Retry-After": "1"} if rule.status == 429 else None)
            body = {"ResponseStatus": {"ErrorCode": "InjectedFault",
                                       "Message": f"injected HTTP {rule.status} for {scope['path']}"}}
            response = Response(json.dumps(body), status_code=rule.status, media_type="application/json",
                                headers=headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def faults_endpoint(request: Request) -> Response:
    """``GET`` the settings, ``PUT``/``POST`` new ones, ``DELETE`` to clear (``/_sandbox/faults``)."""
    injector: FaultInjector = request.app.state.faults
    if request.method == "DELETE":
        injector.clear()
    elif request.method in ("PUT", "POST"):
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            injector.configure(body)
        except (ValueError, TypeError) as exc:
            return Response(json.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
    return Response(json.dumps(injector.snapshot()), media_type="application/json")


async def outage_endpoint(request: Request) -> Response:
    """``POST /_sandbox/faults/outage`` with ``{"seconds": N, "mode": "503"|"refused"}``."""
    injector: FaultInjector = request.app.state.faults
    try:
        body = json.loads(await request.body() or b"{}")
        effective = injector.start_outage(float(body.get("seconds", 10)), str(body.get("mode", "503")))
    except (ValueError, TypeError, AttributeError) as exc:
        return Response(json.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
    return Response(json.dumps({**injector.snapshot(), "effective_mode": effective}), media_type="application/json")


class OutageGate:
    """A TCP forwarder in front of a peer that can stop listening, so clients get *connection refused*.

    ``listen_port`` is the public port; traffic is relayed to ``target_port`` on the same host.
    Runs its own event loop in a daemon thread.
    """

    def __init__(self, target_port: int, listen_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.listen_port = listen_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._open_writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"gate-{listen_port}", daemon=True)

    def start(self) -> OutageGate:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def refuse_for(self, seconds: float, *, after: float = 0.0) -> None:
        """Close the listener (after ``after`` seconds) and reopen it ``seconds`` later; 0 reopens at once.

        ``after`` lets the response to the control request that asked for the outage go out first.
        """
        async def close_then_reopen() -> None:
            await self._close()
            self._reopen = self._loop.call_later(seconds, lambda: asyncio.ensure_future(self._open()))

        async def run() -> None:
            if self._reopen is not None:
                self._reopen.cancel()
                self._reopen = None
            if seconds <= 0:
                await self._open()
            elif after > 0:
                self._reopen = self._loop.call_later(after, lambda: asyncio.ensure_future(close_then_reopen()))
            else:
                await close_then_reopen()
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    async def _open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, self.host, self.listen_port, reuse_address=True)

    async def _close(self) -> None:
        """Stop listening and drop every relayed connection, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open_writers):
            writer.close()
        self._open_writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return

        self._open_writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open_writers.discard(writer)
        self._open_writers.discard(up_writer)
