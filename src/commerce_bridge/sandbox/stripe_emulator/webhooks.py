"""Webhook endpoints, Stripe-style signing and asynchronous delivery with retries, shuffle and duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from .errors import invalid_request
from .forms import Params, as_str, metadata_update
from .ids import new_id, secret
from .resources import Route
from .state import Emulator
from .store import Obj


def sign(payload: bytes, secrets: list[str], timestamp: int) -> str:
    """The ``Stripe-Signature`` header: ``t=…,v1=…`` (one v1 per secret) plus a fake ``v0`` like test mode."""
    signed = str(timestamp).encode() + b"." + payload
    parts = [f"t={timestamp}"]
    for s in secrets:
        parts.append("v1=" + hmac.new(s.encode(), signed, hashlib.sha256).hexdigest())
    parts.append("v0=" + hashlib.sha256(signed).hexdigest())
    return ",".join(parts)


@dataclass
class DeliveryOptions:
    """How webhooks are delivered (changed through ``POST /_sandbox/webhooks/options``)."""

    shuffle: bool = False
    shuffle_window_ms: int = 250
    duplicate_probability: float = 0.0
    delay_ms: int = 0
    retry_schedule_s: list[float] = field(default_factory=lambda: [1.0, 5.0, 30.0])
    timeout_s: float = 10.0
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "shuffle": self.shuffle,
            "shuffle_window_ms": self.shuffle_window_ms,
            "duplicate_probability": self.duplicate_probability,
            "delay_ms": self.delay_ms,
            "retry_schedule_s": self.retry_schedule_s,
            "timeout_s": self.timeout_s,
            "seed": self.seed,
        }


@dataclass
class Job:
    event_id: str
    endpoint_id: str
    attempt: int = 1
    duplicate: bool = False


class Dispatcher:
    """Queues one delivery per (event, endpoint) and sends them from a background task.

    API handlers only append to an in-memory queue; the sender task (started by the app's lifespan)
    does the HTTP. Failed deliveries (non-2xx, timeout, connection error) are retried after
    ``retry_schedule_s[n]`` seconds; each attempt gets a fresh timestamp and signature.
    """

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.options = DeliveryOptions()
        self.attempts: deque[dict[str, Any]] = deque(maxlen=20000)
        self._pending: deque[Job] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._endpoints_cache: list[Obj] | None = None
        emu.dispatcher = self

    # -- producer side (event loop thread, never blocks) ------------------------------------------
    def endpoints(self) -> list[Obj]:
        if self._endpoints_cache is None:
            idx = self.emu.store.index("webhook_endpoint")
            self._endpoints_cache = [self.emu.store.objects[i] for i in idx.ids]
        return self._endpoints_cache

    def endpoints_changed(self) -> None:
        self._endpoints_cache = None

    def event_created(self, evt: Obj) -> None:
        eps = self.endpoints()
        if not eps:
            return
        targets = self.emu.store.intern(evt["id"]).setdefault("targets", {})
        for ep in eps:
            if ep["status"] != "enabled":
                continue
            enabled = ep["enabled_events"]
            if "*" not in enabled and evt["type"] not in enabled:
                continue
            targets[ep["id"]] = "pending"
            evt["pending_webhooks"] += 1
            self._enqueue(Job(evt["id"], ep["id"]))
            if self.options.duplicate_probability and self._rng.random() < self.options.duplicate_probability:
                self._enqueue(Job(evt["id"], ep["id"], duplicate=True))

    def _enqueue(self, job: Job) -> None:
        self._pending.append(job)
        if self._wake is not None:
            self._wake.set()

    def set_options(self, body: dict[str, Any]) -> None:
        o = self.options
        for k, v in body.items():
            if not hasattr(o, k):
                raise invalid_request(f"Unknown delivery option: {k}", param=k)
            setattr(o, k, v)
        if o.seed is not None:
            self._rng.seed(o.seed)

    # -- sender side --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.options.timeout_s)
        self._task = asyncio.create_task(self._run(), name="stripe-emulator-webhooks")
        if self._pending:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._inflight):
            t.cancel()
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.options.shuffle:
                # hold deliveries for a window so that shuffling can reorder events of several requests
                await asyncio.sleep(self.options.shuffle_window_ms / 1000)
            batch = list(self._pending)
            self._pending.clear()
            if self.options.shuffle:
                self._rng.shuffle(batch)
            for job in batch:
                t = asyncio.create_task(self._deliver(job))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)

    async def _deliver(self, job: Job) -> None:
        if self.options.delay_ms:
            await asyncio.sleep(
                self.options.delay_ms / 1000 * (0.5 + self._rng.random() if self.options.shuffle else 1)
            )
        store = self.emu.store
        evt = store.objects.get(job.event_id)
        ep = store.objects.get(job.endpoint_id)
        if evt is None or ep is None or ep["status"] != "enabled":
            return
        payload = orjson.dumps(evt, option=orjson.OPT_INDENT_2)
        ts = int(time.time())
        header = sign(payload, [store.intern(ep["id"])["secret"]], ts)
        record: dict[str, Any] = {
            "id": new_id("whdel", 20),
            "event": evt["id"],
            "type": evt["type"],
            "endpoint": ep["id"],
            "url": ep["url"],
            "attempt": job.attempt,
            "duplicate": job.duplicate,
            "timestamp": ts,
            "status_code": None,
            "error": None,
            "ok": False,
            "duration_ms": None,
        }
        t0 = time.perf_counter()
        assert self._client is not None
        try:
            resp = await self._client.post(
                ep["url"],
                content=payload,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
                timeout=self.options.timeout_s,
            )
            record["status_code"] = resp.status_code
            record["ok"] = 200 <= resp.status_code < 300
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["duration_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        self.attempts.append(record)
        targets = store.intern(evt["id"]).setdefault("targets", {})
        if record["ok"]:
            if targets.get(ep["id"]) != "succeeded":
                targets[ep["id"]] = "succeeded"
                evt["pending_webhooks"] = max(0, evt["pending_webhooks"] - 1)
                store.touch(evt["id"])
            return
        if targets.get(ep["id"]) != "succeeded":
            targets[ep["id"]] = "failed"
            store.touch(evt["id"])
        if job.duplicate:
            return
        sched = self.options.retry_schedule_s
        if job.attempt <= len(sched):
            await asyncio.sleep(sched[job.attempt - 1])
            self._enqueue(Job(job.event_id, job.endpoint_id, job.attempt + 1))

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight (for tests and the control API)."""
        deadline = time.monotonic() + timeout
        while self._pending or self._inflight:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def resend(dispatcher: Dispatcher, event_id: str, endpoint_id: str | None = None) -> int:
    """Deliver an event again (Stripe's "Resend" / ``stripe events resend``), to one or every endpoint.

    The copy is signed afresh and is not retried; whatever the first delivery's fate, the receiver sees
    the same ``event.id`` twice, which it must dedupe. Returns the number of deliveries queued.
    """
    evt = dispatcher.emu.get("event", event_id)
    queued = 0
    for ep in dispatcher.endpoints():
        if endpoint_id and ep["id"] != endpoint_id:
            continue
        if ep["status"] != "enabled" or (
            "*" not in ep["enabled_events"] and evt["type"] not in ep["enabled_events"]
        ):
            continue
        dispatcher._enqueue(Job(evt["id"], ep["id"], duplicate=True))
        queued += 1
    return queued


# -- webhook endpoint resource -----------------------------------------------------------------------
def create_endpoint(emu: Emulator, p: Params) -> Obj:
    url = as_str(p, "url", required=True)
    events = p.get("enabled_events")
    if not isinstance(events, list) or not events:
        raise invalid_request(
            "Missing required param: enabled_events.", param="enabled_events", code="parameter_missing"
        )
    if len(emu.store.index("webhook_endpoint")) >= 16:
        raise invalid_request("You have reached the maximum of 16 test webhook endpoints.", param="url")
    whsec = as_str(p, "secret") or ("whsec_" + secret(32))
    ep: Obj = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": as_str(p, "api_version"),
        "application": None,
        "created": emu.now(),
        "description": as_str(p, "description"),
        "enabled_events": [str(e) for e in events],
        "livemode": False,
        "metadata": metadata_update({}, p.get("metadata")),
        "status": "enabled",
        "url": url,
    }
    emu.add("webhook_endpoint", ep, internal={"secret": whsec})
    if emu.dispatcher is not None:
        emu.dispatcher.endpoints_changed()
    return {**ep, "secret": whsec}


def update_endpoint(emu: Emulator, p: Params, wid: str) -> Obj:
    ep = emu.get("webhook_endpoint", wid)
    up: dict[str, Any] = {}
    if "url" in p:
        up["url"] = as_str(p, "url")
    if "description" in p:
        up["description"] = as_str(p, "description")
    if isinstance(p.get("enabled_events"), list):
        up["enabled_events"] = [str(e) for e in p["enabled_events"]]
    if "disabled" in p:
        up["status"] = "disabled" if p["disabled"] in ("true", True) else "enabled"
    if "metadata" in p:
        up["metadata"] = metadata_update(ep["metadata"], p["metadata"])
    emu.update(None, ep, up)
    return ep


def delete_endpoint(emu: Emulator, p: Params, wid: str) -> Obj:
    emu.get("webhook_endpoint", wid)
    emu.store.delete(wid)
    if emu.dispatcher is not None:
        emu.dispatcher.endpoints_changed()
    return {"id": wid, "object": "webhook_endpoint", "deleted": True}


# -- events list ---------------------------------------------------------------------------------------
def list_events(emu: Emulator, p: Params) -> Obj:
    type_ = as_str(p, "type")
    types = p.get("types")
    if types is not None and (not isinstance(types, list) or len(types) > 20):
        raise invalid_request("types must be a list of at most 20 event types", param="types")
    if types and type_:
        raise invalid_request("You may pass either type or types, but not both.", param="types")
    ds = p.get("delivery_success")
    internal = emu.store.internal
    preds: list[Callable[[Obj], bool]] = []
    index = "event"
    if type_ and "*" not in type_:
        index = f"event:type:{type_}"
    elif type_:
        prefix = type_.split("*", 1)[0]
        preds.append(lambda e: e["type"].startswith(prefix))
    if types:
        wanted = set(types)
        preds.append(lambda e: e["type"] in wanted)
    if ds not in (None, ""):
        want_ok = ds in ("true", True)

        def delivered(e: Obj) -> bool:
            t = internal.get(e["id"], {}).get("targets") or {}
            if not t:
                return False
            if want_ok:
                return all(v == "succeeded" for v in t.values())
            return any(v == "failed" for v in t.values())

        preds.append(delivered)
    pred = (lambda e: all(f(e) for f in preds)) if preds else None
    return emu.list_page(index, p, "/v1/events", pred)


ROUTES: list[Route] = [
    ("POST", "/v1/webhook_endpoints", create_endpoint),
    (
        "GET",
        "/v1/webhook_endpoints",
        lambda emu, p: emu.list_page("webhook_endpoint", p, "/v1/webhook_endpoints"),
    ),
    ("GET", "/v1/webhook_endpoints/{id}", lambda emu, p, i: emu.get("webhook_endpoint", i)),
    ("POST", "/v1/webhook_endpoints/{id}", update_endpoint),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete_endpoint),
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", lambda emu, p, i: emu.get("event", i)),
]
