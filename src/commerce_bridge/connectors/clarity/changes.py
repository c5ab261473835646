"""Clarity change events: server-local dates, stable event ids, and the poll cursor with its de-duplication.

A change of a sales order is identified by ``(ID, UpdatedDate)``: CEF bumps ``UpdatedDate`` on every write
and status action. Its event id is a hash of the two, with ``UpdatedDate`` normalised to UTC, so the
same change polled twice, or polled and also received through the (optional, non-stock) signed change
notice, gets the same inbox id and is processed once. A row without ``UpdatedDate`` falls back to a hash
of its content. Sales returns are changes of their own kind (``salesreturn.*``, ids ``clarity-sr-...``,
their own poll cursor), keyed the same way, so a return and an order with the same ID never share an id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from commerce_bridge.errors import ValidationError

__all__ = [
    "CursorState",
    "account_change_event",
    "change_event",
    "change_fingerprint",
    "event_from_notice",
    "format_local",
    "parse_local",
    "product_change_event",
    "return_change_event",
]

JsonDict = dict[str, Any]


def parse_local(text: str, zone: tzinfo) -> datetime:
    """A CEF date (local wall time without an offset, or with one) as an aware UTC datetime.

    Parameters
    ----------
    text:
        ``2026-11-27T05:31:11.123456`` (read in ``zone``), or with ``Z``/an offset.
    zone:
        The Clarity server's time zone (``CB_CLARITY_TIMEZONE``). In the autumn DST fold the earlier
        of the two instants is taken; the poll overlap window covers the hour this can be off by.

    Raises
    ------
    ValidationError
        ``text`` is not an ISO-8601 date.
    """
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(f"Clarity sent a date that is not ISO-8601: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def format_local(moment: datetime, zone: tzinfo) -> str:
    """``moment`` as CEF expects a date in a query: local wall time in ``zone``, no offset."""
    return moment.astimezone(zone).replace(tzinfo=None).isoformat(timespec="microseconds")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def change_fingerprint(row: Mapping[str, Any], zone: tzinfo) -> str:
    """``"<ID>|<UpdatedDate in UTC>"``, or ``"<ID>|sha256:<content hash>"`` when the row has no date."""
    updated = row.get("UpdatedDate") or row.get("CreatedDate")
    if updated:
        return f"{row.get('ID')}|{_utc_text(parse_local(str(updated), zone))}"
    content = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return f"{row.get('ID')}|sha256:{hashlib.sha256(content.encode()).hexdigest()}"


ORDER_PREFIX, RETURN_PREFIX = "clarity-so-", "clarity-sr-"


def _event_id(fingerprint: str, prefix: str = ORDER_PREFIX) -> str:
    return prefix + hashlib.sha256(fingerprint.encode()).hexdigest()[:32]


def change_event(row: Mapping[str, Any], zone: tzinfo) -> JsonDict:
    """An inbox-shaped event for one polled sales-order row.

    Returns
    -------
    dict
        ``{"id": "clarity-so-<hash of ID+UpdatedDate>", "type": "salesorder.created" | "salesorder.updated",
        "data": row}``; ``created`` when ``UpdatedDate`` equals ``CreatedDate`` (or is missing).
    """
    created = row.get("CreatedDate")
    updated = row.get("UpdatedDate")
    is_new = not updated or (created is not None and str(created) == str(updated))
    return {
        "id": _event_id(change_fingerprint(row, zone)),
        "type": "salesorder.created" if is_new else "salesorder.updated",
        "data": dict(row),
    }


def return_change_event(row: Mapping[str, Any], zone: tzinfo) -> JsonDict:
    """An inbox-shaped event for one polled sales-return row (as ``change_event`` for orders).

    Returns
    -------
    dict
        ``{"id": "clarity-sr-<hash of ID+UpdatedDate>", "type": "salesreturn.created" | "salesreturn.updated",
        "data": row}``.
    """
    event = change_event(row, zone)
    return {"id": _event_id(change_fingerprint(row, zone), RETURN_PREFIX),
            "type": event["type"].replace("salesorder.", "salesreturn.", 1), "data": event["data"]}


ACCOUNT_PREFIX, CONTACT_PREFIX = "clarity-ac-", "clarity-ct-"
ACCOUNT_FIELDS = ("ID", "CustomKey", "CreatedDate", "UpdatedDate")  # no name, e-mail or phone in the inbox


def account_change_event(row: Mapping[str, Any], zone: tzinfo, *, account_id: int | None = None) -> JsonDict:
    """An inbox-shaped event for one polled account row, or (``account_id`` given) for a polled contact row of
    that account: CEF does not date an account when its contact changes.

    Returns
    -------
    dict
        ``{"id": "clarity-ac-<hash of ID+UpdatedDate>" (a contact's: "clarity-ct-<hash of contact ID+UpdatedDate+
        account ID>"), "type": "account.created" | "account.updated", "data": {"ID": <account ID>, "CustomKey",
        "CreatedDate", "UpdatedDate", ("ContactID")}}``: ids and dates only (the syncer reads the rest).
    """
    event = change_event(row, zone)
    data = {k: row[k] for k in ACCOUNT_FIELDS if row.get(k) is not None}
    if account_id is None:
        return {"id": _event_id(change_fingerprint(row, zone), ACCOUNT_PREFIX),
                "type": event["type"].replace("salesorder.", "account.", 1), "data": data}
    data.pop("CustomKey", None)
    return {"id": _event_id(f"{change_fingerprint(row, zone)}|{account_id}", CONTACT_PREFIX),
            "type": "account.updated", "data": {**data, "ID": account_id, "ContactID": row.get("ID")}}


PRODUCT_PREFIX = "clarity-prod-"
PRODUCT_FIELDS = ("CustomKey", "UpdatedDate")


def product_change_event(row: Mapping[str, Any], zone: tzinfo) -> JsonDict:
    """An inbox-shaped event for one polled product row (keyed as ``change_event`` keys an order).

    Returns
    -------
    dict
        ``{"id": "clarity-prod-<hash of ID+UpdatedDate>", "type": "product.created" | "product.updated",
        "data": {"ID": <int>, "CustomKey", "UpdatedDate"}}``: the product's ids and date only (the syncer reads
        the rest, so a change polled late is synced with the values of the moment).
    """
    event = change_event(row, zone)
    data: JsonDict = {"ID": int(row["ID"])}
    data.update({k: row[k] for k in PRODUCT_FIELDS if row.get(k) is not None})
    return {"id": _event_id(change_fingerprint(row, zone), PRODUCT_PREFIX),
            "type": event["type"].replace("salesorder.", "product.", 1), "data": data}


def event_from_notice(notice: Mapping[str, Any], zone: tzinfo) -> JsonDict:
    """Re-key a (verified) change notice ``{"id": "evt_...", "type", "data": {ID, CustomKey, UpdatedDate}}``.

    The emitter's own id is random per change notice; the returned event's id is the one
    ``change_event`` gives the same change, so the notice and the poll de-duplicate in the inbox.
    The emitter's id is kept as ``data["notice_id"]``.

    Raises
    ------
    ValidationError
        The notice has no ``data.ID``.
    """
    data = notice.get("data")
    if not isinstance(data, Mapping) or data.get("ID") in (None, ""):
        raise ValidationError("a Clarity change notice needs data.ID")
    row = dict(data)
    if notice.get("id"):
        row["notice_id"] = notice["id"]
    fingerprint = change_fingerprint({k: v for k, v in row.items() if k != "notice_id"}, zone)
    event_type = str(notice.get("type") or "salesorder.updated")
    prefix = RETURN_PREFIX if event_type.startswith("salesreturn.") else ORDER_PREFIX
    return {"id": _event_id(fingerprint, prefix), "type": event_type, "data": row}


@dataclass
class CursorState:
    """What the poll cursor stores: the newest change seen, and the changes seen inside the overlap window."""

    since: datetime | None = None
    seen: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def load(cls, text: str | None) -> CursorState:
        if not text:
            return cls()
        raw = json.loads(text)
        since = datetime.fromisoformat(raw["since"]) if raw.get("since") else None
        seen = {k: datetime.fromisoformat(v) for k, v in (raw.get("seen") or {}).items()}
        return cls(since, seen)

    def dump(self) -> str:
        return json.dumps({
            "since": _utc_text(self.since) if self.since else None,
            "seen": {k: _utc_text(v) for k, v in sorted(self.seen.items())},
        }, separators=(",", ":"))

    def query_from(self, overlap: timedelta) -> datetime | None:
        """Where the next poll starts: ``since`` minus the overlap window (None: from the beginning)."""
        return None if self.since is None else self.since - overlap

    def note(self, fingerprint: str, changed_at: datetime) -> bool:
        """Record a change; False when it was seen before (a duplicate from the overlap)."""
        if fingerprint in self.seen:
            return False
        self.seen[fingerprint] = changed_at
        if changed_at.year > 1 and (self.since is None or changed_at > self.since):
            self.since = changed_at
        return True

    def prune(self, overlap: timedelta) -> None:
        """Forget changes older than the overlap window: a poll can no longer return them."""
        if self.since is None:
            return
        horizon = self.since - overlap - timedelta(seconds=1)
        self.seen = {k: v for k, v in self.seen.items() if v >= horizon}
