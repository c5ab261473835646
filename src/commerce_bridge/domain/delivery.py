"""Inbound deliveries (webhooks and polled changes) and the states they go through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where a stored delivery is: received -> dispatched -> processed | failed."""

    RECEIVED = "received"
    DISPATCHED = "dispatched"
    PROCESSED = "processed"
    FAILED = "failed"


class RunStatus(StrEnum):
    """Where a workflow run is."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # a durable wait longer than a worker should sleep; a timer wakes it
    SUCCEEDED = "succeeded"
    PARKED = "parked"  # a step failed for good; the run waits in the dead-letter queue
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified delivery, exactly as received (raw body), with the fields we route on."""

    source: str
    event_id: str
    event_type: str | None
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery row of the inbox."""

    id: int
    source: str
    event_id: str
    event_type: str | None
    status: str
    received_at: datetime
    body: bytes = field(repr=False)
    dispatched_at: datetime | None = None
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HandOver:
    """What the dispatcher did with a batch of deliveries, beyond starting their runs.

    ``idle``: deliveries no workflow wanted (marked processed at once). ``failed``: deliveries that
    could not be routed, started or serialised (poison), isolated into the dead-letter queue and
    marked failed so that every other delivery goes on.
    """

    idle: frozenset[int] = frozenset()
    failed: frozenset[int] = frozenset()


DISPATCH_STEP = "(dispatch)"
"""The step id of a dead-letter entry for a delivery that could not be routed or started."""


def dispatch_entry_run_id(source: str, event_id: str) -> str:
    """The run id a dispatch failure of one delivery is filed under in the dead-letter queue."""
    return f"{source}:{event_id}:{DISPATCH_STEP}"


def run_id_for(source: str, event_id: str, workflow: str) -> str:
    """The durable run id of ``workflow`` for one event: ``source:event_id:workflow``."""
    return f"{source}:{event_id}:{workflow}"
