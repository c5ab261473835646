"""The optional signed change-notice emitter of the Clarity simulator (stock CEF has none)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from commerce_bridge.sandbox.clarity_sim.jsonutil import dumps

SIGNATURE_HEADER = "X-Bridge-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Bridge-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class Delivery:
    """One notice and its delivery attempts."""

    notice: dict[str, Any]
    body: bytes
    attempts: int = 0
    status: str = "pending"
    last_error: str | None = None
    history: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.notice["id"], "type": self.notice["type"], "attempts": self.attempts,
                "status": self.status, "last_error": self.last_error, "history": self.history}


class WebhookEmitter:
    """Queues change notices and posts them, signed, to one URL, retrying with exponential backoff.

    ``notify`` only appends to a queue, so API responses never wait for delivery. Notices are kept in
    memory: pending deliveries are lost when the process stops.
    """

    def __init__(self, url: str, secret: str, *, base_backoff_s: float = 0.5, max_backoff_s: float = 60.0,
                 max_attempts: int = 8, workers: int = 4, timeout_s: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self._workers_n = workers
        self._pending: collections.deque[Delivery] = collections.deque()
        self.log: collections.deque[Delivery] = collections.deque(maxlen=1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def notify(self, kind: str, verb: str, record: dict[str, Any], updated: str | None) -> None:
        data = {k: v for k, v in (("ID", record.get("ID")), ("CustomKey", record.get("CustomKey")),
                                  ("UpdatedDate", updated)) if v is not None}
        notice = {"id": f"evt_{uuid.uuid4().hex}", "type": f"{kind}.{verb}", "created": int(time.time()),
                  "data": data}
        delivery = Delivery(notice, dumps(notice).encode())
        self.log.append(delivery)
        self._enqueue(delivery)

    def _enqueue(self, delivery: Delivery) -> None:
        self._pending.append(delivery)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers_n)]
        if self._pending:
            self._wake.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
        self._loop = None

    async def _worker(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            delivery = self._pending.popleft()
            await self._attempt(delivery)

    async def _attempt(self, delivery: Delivery) -> None:
        assert self._client is not None and self._loop is not None
        delivery.attempts += 1
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, timestamp, delivery.body)}
        try:
            response = await self._client.post(self.url, content=delivery.body, headers=headers)
            ok = 200 <= response.status_code < 300
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            ok, outcome = False, f"{type(exc).__name__}"
        delivery.history.append(outcome)
        if ok:
            delivery.status, delivery.last_error = "delivered", None
            return
        delivery.last_error = outcome
        if delivery.attempts >= self.max_attempts:
            delivery.status = "failed"
            return
        delay = min(self.max_backoff_s, self.base_backoff_s * 2 ** (delivery.attempts - 1))
        self._loop.call_later(delay, self._enqueue, delivery)

    def snapshot(self) -> list[dict[str, Any]]:
        return [d.as_dict() for d in self.log]
