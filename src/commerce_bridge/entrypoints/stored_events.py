"""Stored events for the CLI: an inbox row found by the id an operator has, and its body, redacted or as stored.

``events show``, ``events export`` and ``workflows dry-run --event-id`` accept any id an operator has:

* the inbox id that ``events list`` (and the admin API's ``/api/v1/events``) shows: ``42``;
* ``source:event_id``: ``stripe:evt_1Q2w3e4r``, ``clarity:clarity-so-4f1c…``; a run id
  (``source:event_id:workflow``, as the dead-letter queue and ``events list`` show it) finds its event too;
* the sender's event id alone (``evt_1Q2w3e4r``, as the Stripe dashboard shows it) when one source has it.

An id that finds nothing is a :class:`~commerce_bridge.errors.NotFound` whose message names the id,
the database it looked in (``CB_DATABASE_URL``) and the command that lists what is there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from commerce_bridge.domain.delivery import StoredDelivery
from commerce_bridge.entrypoints.views import MAX_ID, RedactedViews
from commerce_bridge.errors import NotFound, ValidationError

__all__ = ["SOURCES", "EventLookup", "StoredEvent", "find_event"]

SOURCES = ("stripe", "clarity", "erp")
"""The sources a delivery can come from (``POST /webhooks/{source}`` and the Clarity poller)."""

_DIGITS = re.compile(r"[0-9]+")


class EventLookup(Protocol):
    """What finding an event needs of the inbox (the container's ``inbox``)."""

    def get(self, source: str, event_id: str) -> StoredDelivery | None: ...

    def list(self, *, source: str | None = None, status: str | None = None, limit: int = 50,
             before_id: int | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class StoredEvent:
    """One inbox row: the delivery as stored and the runs it started."""

    delivery: StoredDelivery
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``source:event_id``, the id that names this event in every database."""
        return f"{self.delivery.source}:{self.delivery.event_id}"

    def body_text(self) -> str:
        return self.delivery.body.decode("utf-8", errors="replace")

    def event(self) -> Any:
        """The stored body as JSON data.

        Raises
        ------
        ValidationError
            The body is not JSON (a delivery isolated at dispatch can be anything).
        """
        try:
            return json.loads(self.delivery.body)
        except ValueError as exc:
            raise ValidationError(
                f"the stored body of event {self.ref} (inbox id {self.delivery.id}) is not JSON ({exc}), so it "
                f"cannot be exported or dry-run; `commerce-bridge events show {self.delivery.id} --raw` shows it "
                "as received") from exc

    def shown_event(self, views: RedactedViews | None) -> Any:
        """:meth:`event`, redacted by ``views`` (``None``: as stored)."""
        data = self.event()
        return data if views is None else views.data(data)

    def summary(self, views: RedactedViews | None) -> dict[str, Any]:
        """The row's fields and its runs (redacted by ``views`` unless ``None``), without the body."""
        d = self.delivery
        row: dict[str, Any] = {"id": d.id, "source": d.source, "event_id": d.event_id, "event_type": d.event_type,
                               "status": d.status, "received_at": d.received_at, "dispatched_at": d.dispatched_at,
                               "processed_at": d.processed_at, "runs": self.runs}
        return row if views is None else views.row(row)


def find_event(inbox: EventLookup, ref: str, *, database: str = "CB_DATABASE_URL") -> StoredEvent:
    """The stored event ``ref`` names (an inbox id, ``source:event_id``, a run id or a bare event id).

    Parameters
    ----------
    inbox:
        The inbox to look in.
    ref:
        What the operator has (see the module's docstring).
    database:
        How to name the database in a message (the masked ``CB_DATABASE_URL``).

    Raises
    ------
    NotFound
        Nothing stored under ``ref``; the message says what to check.
    ValidationError
        A bare event id that several sources have (give ``source:event_id``).
    """
    ref = ref.strip()
    if _DIGITS.fullmatch(ref):
        inbox_id = int(ref)
        row = _row(inbox, inbox_id)
        delivery = inbox.get(row["source"], row["event_id"]) if row else None
        if delivery is None:
            raise _not_found(f"with inbox id {inbox_id}", database)
        return StoredEvent(delivery, list(row["runs"]) if row else [])
    source, sep, rest = ref.partition(":")
    if sep and source in SOURCES:
        delivery = inbox.get(source, rest)
        if delivery is None and ":" in rest:  # a run id: source:event_id:workflow
            delivery = inbox.get(source, rest.rpartition(":")[0])
        if delivery is None:
            raise _not_found(f"{ref!r} (source {source}, event id {rest!r})", database)
    else:
        found = [d for s in SOURCES if (d := inbox.get(s, ref)) is not None]
        if len(found) > 1:
            raise ValidationError(f"event id {ref!r} is stored for several sources "
                                  f"({', '.join(f'{d.source}:{d.event_id}' for d in found)}): give source:event_id")
        if not found:
            raise _not_found(f"{ref!r} (an inbox id, or source:event_id such as stripe:evt_..., is expected; "
                             f"sources: {', '.join(SOURCES)})", database)
        delivery = found[0]
    row = _row(inbox, delivery.id)
    return StoredEvent(delivery, list(row["runs"]) if row else [])


def _row(inbox: EventLookup, inbox_id: int) -> dict[str, Any] | None:
    """The listed row (with its runs) of one inbox id, through the same query as ``events list``."""
    if not 1 <= inbox_id < MAX_ID:
        return None
    rows = inbox.list(before_id=inbox_id + 1, limit=1)
    return rows[0] if rows and rows[0]["id"] == inbox_id else None


def _not_found(what: str, database: str) -> NotFound:
    return NotFound(f"no stored event {what} in the database at {database}",
                    suggested_fix="`commerce-bridge events list` shows the stored events with their ids; check that "
                                  "CB_DATABASE_URL names the bridge's database")
