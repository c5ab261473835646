"""Payout reconciliations: what each reconciled payout came to (proof, journal) and what did not match.

Rules:

- One row per payout, replaced whenever the payout is reconciled again (a re-run of the workflow, the CLI);
  its exceptions are replaced in the same transaction, so a payout never shows exceptions of two runs.
- The journal entry's name is set separately, once the ERP accepted it (the post is a step of its own).
- Not a hot path (once per payout): SQLAlchemy Core, no raw SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.tables import payout_reconciliations, reconciliation_exceptions

_JSON_COLUMNS = ("proof", "journal")


def _row(raw: Any) -> dict[str, Any]:
    row = dict(raw)
    for column in _JSON_COLUMNS:
        row[column] = json.loads(row[column])
    if row.get("reconciled_at") is not None:
        row["reconciled_at"] = row["reconciled_at"].isoformat()
    return row


class SqlReconciliations:
    """Implements ``services.ports.Reconciliations`` on our SQLite or PostgreSQL store."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, payout: Mapping[str, Any], exceptions: Sequence[Mapping[str, Any]]) -> None:
        """Record a payout's reconciliation and its exceptions, replacing an earlier one of the same payout."""
        now = datetime.now(UTC)
        row = {c.name: payout.get(c.name) for c in payout_reconciliations.columns}
        row.update(proof=json.dumps(payout.get("proof") or {}, sort_keys=True),
                   journal=json.dumps(list(payout.get("journal") or ()), sort_keys=True), reconciled_at=now)
        pid = row["payout_id"]
        with translate_db_errors(), self._engine.begin() as conn:
            previous = conn.execute(select(payout_reconciliations.c.journal_entry)
                                    .where(payout_reconciliations.c.payout_id == pid)).scalar_one_or_none()
            if row.get("journal_entry") is None:
                row["journal_entry"] = previous
            conn.execute(delete(payout_reconciliations).where(payout_reconciliations.c.payout_id == pid))
            conn.execute(insert(payout_reconciliations).values(**row))
            conn.execute(delete(reconciliation_exceptions).where(reconciliation_exceptions.c.payout_id == pid))
            rows = [{c.name: e.get(c.name) for c in reconciliation_exceptions.columns if c.name != "id"}
                    | {"payout_id": pid, "created_at": now} for e in exceptions]
            if rows:
                conn.execute(insert(reconciliation_exceptions), rows)

    def set_journal_entry(self, payout_id: str, name: str | None, *, status: str | None = None) -> None:
        """Name the ERP journal entry of the payout (None: there is none, e.g. it was cancelled)."""
        values: dict[str, Any] = {"journal_entry": name}
        if status is not None:
            values["status"] = status
        with translate_db_errors(), self._engine.begin() as conn:
            conn.execute(update(payout_reconciliations)
                         .where(payout_reconciliations.c.payout_id == payout_id).values(**values))

    def get(self, payout_id: str) -> dict[str, Any] | None:
        """The payout's reconciliation with its ``exception_rows``, or None if it was never reconciled."""
        with translate_db_errors(), self._engine.connect() as conn:
            found = conn.execute(select(payout_reconciliations)
                                 .where(payout_reconciliations.c.payout_id == payout_id)).mappings().first()
            if found is None:
                return None
            row = _row(found)
            row["exception_rows"] = [self._exception(e) for e in conn.execute(
                select(reconciliation_exceptions).where(reconciliation_exceptions.c.payout_id == payout_id)
                .order_by(reconciliation_exceptions.c.id)).mappings()]
        return row

    def done(self, payout_ids: Iterable[str]) -> set[str]:
        """Those of ``payout_ids`` that have a reconciliation recorded."""
        ids = list(payout_ids)
        if not ids:
            return set()
        with translate_db_errors(), self._engine.connect() as conn:
            return set(conn.execute(select(payout_reconciliations.c.payout_id)
                                    .where(payout_reconciliations.c.payout_id.in_(ids))).scalars())

    def payouts(self, *, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Reconciled payouts, newest first (``since``: reconciled at or after)."""
        query = select(payout_reconciliations).order_by(payout_reconciliations.c.reconciled_at.desc()).limit(limit)
        if since is not None:
            query = query.where(payout_reconciliations.c.reconciled_at >= since)
        with translate_db_errors(), self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def exceptions(self, *, payout_id: str | None = None, kind: str | None = None,
                   limit: int = 10000) -> list[dict[str, Any]]:
        """Open exceptions (of one payout, of one kind), oldest first."""
        query = select(reconciliation_exceptions).order_by(reconciliation_exceptions.c.id).limit(limit)
        if payout_id is not None:
            query = query.where(reconciliation_exceptions.c.payout_id == payout_id)
        if kind is not None:
            query = query.where(reconciliation_exceptions.c.kind == kind)
        with translate_db_errors(), self._engine.connect() as conn:
            return [self._exception(e) for e in conn.execute(query).mappings()]

    @staticmethod
    def _exception(raw: Any) -> dict[str, Any]:
        row = dict(raw)
        row.pop("id", None)
        row["created_at"] = row["created_at"].isoformat()
        return row
