"""Ingest: verify a webhook, extract its id and type, and store it durably with group commit."""

from __future__ import annotations

import asyncio
import contextlib
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


class GroupCommitter:
    """Batches concurrent deliveries so that one durable commit serves many requests.

    Requests queue up; one writer task takes everything waiting (up to ``max_batch``), commits it
    in one transaction in a worker thread, and resolves each request. While a commit is in flight,
    new requests gather for the next one, so batches grow with load and latency stays one commit.
    """

    def __init__(self, inbox: Inbox, *, max_batch: int = 256, max_wait_s: float = 0.0,
                 commit_timeout_s: float | None = None) -> None:
        self._inbox = inbox
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._commit_timeout_s = commit_timeout_s
        self._writes: set[asyncio.Task[list[bool]]] = set()
        self._queue: asyncio.Queue[tuple[Delivery, asyncio.Future[bool]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
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
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((delivery, fut))
        if self._task is None:
            self.start()
        return await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            if self._max_wait_s:
                await asyncio.sleep(self._max_wait_s)
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._commit(batch)

    def _written(self, write: asyncio.Task[list[bool]]) -> None:
        """Forget a finished write; collect its outcome (a write nobody waits for must not log as lost)."""
        self._writes.discard(write)
        if not write.cancelled():
            write.exception()

    async def _commit(self, batch: list[tuple[Delivery, asyncio.Future[bool]]]) -> None:
        write = asyncio.create_task(  # noqa: RUF006 - kept in self._writes until done
            asyncio.to_thread(self._inbox.record_batch, [d for d, _ in batch]))
        self._writes.add(write)  # a strong reference until it ends, also after its requests got 503
        write.add_done_callback(self._written)
        try:
            # Past the timeout the requests get 503 at once, so a locked or slow store never holds a sender
            # until its own timeout. The write itself goes on: if it commits later, the redelivery is a duplicate.
            results = await asyncio.wait_for(asyncio.shield(write), self._commit_timeout_s)
        except TimeoutError:
            exc = StoreUnavailable(f"could not store the delivery within {self._commit_timeout_s:g} s")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except StoreUnavailable as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except Exception as exc:  # a bug: fail the requests loudly, keep the writer alive
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut), is_new in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(is_new)
        if self.on_commit is not None:
            self.on_commit(len(batch), sum(results))


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
