"""Send bursts of signed webhooks like Stripe does (re-signed on every attempt), recording what was acknowledged."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from commerce_bridge.domain.signature import sign


def stripe_event(event_id: str) -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded", "api_version": "2026-10-28",
        "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
        "data": {"object": {"id": "pi_" + event_id[4:], "object": "payment_intent", "amount": 1999,
                            "currency": "usd", "status": "succeeded"}},
        "request": {"id": None, "idempotency_key": None},
    }).encode()


def burst_plan(n_unique: int, duplicate_ratio: float, seed: int, prefix: str) -> list[str]:
    """Event ids to send: every id once, plus ``duplicate_ratio`` extra deliveries of earlier ids, shuffled."""
    rng = random.Random(seed)
    ids = [f"evt_{prefix}{i:05d}" for i in range(n_unique)]
    plan = ids + [rng.choice(ids) for _ in range(int(n_unique * duplicate_ratio))]
    rng.shuffle(plan)
    return plan


@dataclass
class SendLog:
    acked: dict[str, list[bool]] = field(default_factory=dict)  # event id -> duplicate flags of 200 answers
    failed: list[str] = field(default_factory=list)  # no answer or non-200
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def acked_ids(self) -> set[str]:
        return set(self.acked)


async def send_all(url: str, secret: str, ids: list[str], log: SendLog, *, concurrency: int = 16,
                   on_sent: Callable[[int], None] | None = None,
                   body_for: Callable[[str], bytes] = stripe_event) -> None:
    """POST each id (a fresh signature per attempt); a failed attempt is recorded, not retried here."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in ids:
        queue.put_nowait(i)
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while True:
            try:
                event_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = body_for(event_id)
            try:
                r = await client.post(url, content=body, headers={
                    "Stripe-Signature": sign(body, secret, int(time.time())), "Content-Type": "application/json"})
                log.statuses[r.status_code] = log.statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    log.acked.setdefault(event_id, []).append(bool(r.json()["duplicate"]))
                else:
                    log.failed.append(event_id)
            except httpx.HTTPError:
                log.failed.append(event_id)
            sent += 1
            if on_sent:
                on_sent(sent)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
