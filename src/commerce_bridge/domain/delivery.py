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


def run_id_for(source: str, event_id: str, workflow: str) -> str:
    """The durable run id of ``workflow`` for one event: ``source:event_id:workflow``."""
    return f"{source}:{event_id}:{workflow}"
