"""Ingest: verify a webhook, extract its id and type, and store it durably with group commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.domain.signature import SignatureScheme, verify
from commerce_bridge.domain.strict_json import DEFAULT_MAX_DEPTH, loads_strict
from commerce_bridge.errors import StoreUnavailable, ValidationError
from commerce_bridge.services.ports import Inbox

MAX_EVENT_ID = 255


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str
    is_new: bool


Rekey = Callable[[dict[str, Any]], dict[str, Any]]


def parse_event(source: str, body: bytes, rekey: Rekey | None = None, *,
                max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, str | None]:
    """(event id, event type) of a verified body; ValidationError if it is not a JSON event.

    The body is read strictly (:mod:`commerce_bridge.domain.strict_json`: no duplicate keys, at most
    ``max_depth`` levels), and the id and type must be printable text, so that nothing stored here can
    stop the dispatcher or the engine later. ``rekey`` lets a source derive the event id from the
    content, so that the same change arriving by webhook and by polling de-duplicates (Clarity change
    notices carry a random id).
    """
    doc = loads_strict(body, max_depth=max_depth)
    if not isinstance(doc, dict):
        raise ValidationError("Body must be a JSON object")
    if rekey is not None:
        doc = rekey(doc)
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValidationError("Event has no 'id' (a non-empty string)")
    if len(event_id) > MAX_EVENT_ID:
        raise ValidationError(f"Event id is longer than {MAX_EVENT_ID} characters")
    if not event_id.isprintable():
        raise ValidationError("Event id has control or unprintable characters")
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        return event_id, None
    if len(event_type) > MAX_EVENT_ID or not event_type.isprintable():
        raise ValidationError(f"Event type is longer than {MAX_EVENT_ID} characters or has unprintable characters")
    return event_id, event_type


IDLE_GAP_S = 1.0
"""The arrival gap assumed before any delivery arrived, and the longest one counted (a quiet hour
counts as one second, so the estimate is back to a busy rate after a few dozen deliveries)."""
GAP_WEIGHT = 0.125
"""Weight of the newest gap in the moving average of the time between deliveries."""


class GroupCommitter:
    """Batches deliveries so that one durable commit serves many requests.

    Requests queue up; one writer task takes everything waiting (up to ``max_batch``), commits it
    in one transaction (``Inbox.record_batch_async``), and resolves each request. While a commit is
    in flight, new requests gather for the next one, so batches grow with load by themselves.

    At a steady low rate nothing overlaps: each commit would serve one delivery. ``linger_s`` lets
    the writer hold a batch back for company, **only when the recent arrival rate says company is
    coming**: it keeps a moving average of the time between deliveries, and waits while the next
    delivery is expected before ``linger_s`` has passed since the oldest one in the batch arrived. It
    stops as soon as the next one is not expected in time, when twice the usual gap passes without
    one (a burst has ended), or at the bound. A lone delivery after a quiet spell is committed at
    once; none waits more than ``linger_s`` for company. ``max_wait_s`` is a fixed wait before every
    commit (off by default).

    A commit that takes longer than ``commit_timeout_s`` answers its requests StoreUnavailable (503)
    at once; the write goes on, and if it commits later, the redelivery is a duplicate, never a loss.
    """

    def __init__(self, inbox: Inbox, *, max_batch: int = 256, max_wait_s: float = 0.0,
                 linger_s: float = 0.0, commit_timeout_s: float | None = None) -> None:
        self._inbox = inbox
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._linger_s = linger_s
        self._commit_timeout_s = commit_timeout_s
        self._writes: set[asyncio.Future[list[bool]]] = set()
        self._pending: deque[tuple[Delivery, asyncio.Future[bool], float]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._gap = IDLE_GAP_S  # moving average of the time between deliveries
        self._last_arrival: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self.lingers = 0  # batches held back for company at least once
        # Called after each durable commit with (deliveries in the batch, how many were new).
        self.on_commit: Callable[[int, int], None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, delivery: Delivery) -> bool:
        """Store ``delivery`` durably; True if new, False if a duplicate. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last_arrival is not None:
            self._gap += (min(now - self._last_arrival, IDLE_GAP_S) - self._gap) * GAP_WEIGHT
        self._last_arrival = now
        fut: asyncio.Future[bool] = loop.create_future()
        self._pending.append((delivery, fut, now))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        if self._task is None:
            self.start()
        return await fut

    async def _run(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                await self._arrival()
                continue
            if self._linger_s:
                await self._linger()
            if self._max_wait_s:
                await asyncio.sleep(self._max_wait_s)
            batch = [pending.popleft() for _ in range(min(len(pending), self._max_batch))]
            await self._commit(batch)

    async def _arrival(self, timeout: float | None = None) -> None:
        """Wait until the next delivery is submitted, or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(timeout, _resolve, wake) if timeout is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _linger(self) -> None:
        """Hold the batch back while the arrival rate says another delivery comes within the bound."""
        loop = asyncio.get_running_loop()
        deadline = self._pending[0][2] + self._linger_s
        waited = False
        while len(self._pending) < self._max_batch:
            last, gap = self._last_arrival or 0.0, self._gap
            if last + gap > deadline:  # the next one is not expected in time: commit now
                break
            wait = min(deadline, last + 2 * gap) - loop.time()  # twice the usual gap and none: a burst ended
            if wait <= 0:
                break
            waited = True
            await self._arrival(wait)
        self.lingers += waited

    def _written(self, write: asyncio.Future[list[bool]]) -> None:
        """Forget a finished write; collect its outcome (a write nobody waits for must not log as lost)."""
        self._writes.discard(write)
        if not write.cancelled():
            write.exception()

    async def _commit(self, batch: list[tuple[Delivery, asyncio.Future[bool], float]]) -> None:
        write = asyncio.ensure_future(  # noqa: RUF006 - kept in self._writes until done
            self._inbox.record_batch_async([d for d, _, _ in batch]))
        self._writes.add(write)  # a strong reference until it ends, also after its requests got 503
        write.add_done_callback(self._written)
        try:
            # Past the timeout the requests get 503 at once, so a locked or slow store never holds a sender
            # until its own timeout. The write itself goes on: if it commits later, the redelivery is a duplicate.
            results = await asyncio.wait_for(asyncio.shield(write), self._commit_timeout_s)
        except TimeoutError:
            _fail(batch, StoreUnavailable(f"could not store the delivery within {self._commit_timeout_s:g} s"))
            return
        except Exception as exc:  # StoreUnavailable, or a bug: fail the requests loudly, keep the writer alive
            _fail(batch, exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut, _), is_new in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(is_new)
        if self.on_commit is not None:
            self.on_commit(len(batch), sum(results))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail(batch: list[tuple[Delivery, asyncio.Future[bool], float]], exc: BaseException) -> None:
    for _, fut, _ in batch:
        if not fut.done():
            fut.set_exception(exc)


class IngestService:
    """Verify, parse and store one delivery (no business logic on this path)."""

    def __init__(self, schemes: Mapping[str, SignatureScheme], committer: GroupCommitter,
                 now: Callable[[], float], rekeyers: Mapping[str, Rekey] | None = None,
                 max_json_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self._schemes = schemes
        self._max_depth = max_json_depth
        self._committer = committer
        self._now = now
        self._rekeyers = dict(rekeyers or {})

    def knows(self, source: str) -> bool:
        return source in self._schemes

    def scheme(self, source: str) -> SignatureScheme:
        return self._schemes[source]

    async def receive(self, source: str, body: bytes, signature: str | None) -> IngestResult:
        """Raises SignatureInvalid, ValidationError or StoreUnavailable; nothing is stored on error."""
        verify(body, signature, self._schemes[source], self._now)
        event_id, event_type = parse_event(source, body, self._rekeyers.get(source), max_depth=self._max_depth)
        delivery = Delivery(source=source, event_id=event_id, event_type=event_type, body=body,
                            received_at=datetime.now(UTC))
        try:
            is_new = await self._committer.submit(delivery)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"could not store the delivery: {type(exc).__name__}") from exc
        return IngestResult(event_id=event_id, is_new=is_new)
