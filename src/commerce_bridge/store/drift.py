"""The differences the scheduled drift check already alerted (``services.drift_watch.ReportedDrift``).

Rules:

- One row per difference key (``kind:ref[:against]``): when it was first and last seen. A key is new when it
  has no row; inserting it and reading which were new is one transaction (``INSERT ... ON CONFLICT DO NOTHING``
  returning the keys inserted), so two checks at once (a leader stuck past its lease) never alert one twice.
- Not a hot path (once per check): SQLAlchemy Core, keys in chunks of 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Engine, delete, update

from commerce_bridge.store.db import translate_db_errors
from commerce_bridge.store.inbox import insert_ignore
from commerce_bridge.store.tables import drift_reported

_CHUNK = 500


class SqlReportedDrift:
    """Implements ``services.drift_watch.ReportedDrift`` on the ``drift_reported`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def first_seen(self, kinds: Mapping[str, str], *, now: datetime) -> set[str]:
        keys = sorted(kinds)
        new: set[str] = set()
        with translate_db_errors(), self._engine.begin() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                stmt = (insert_ignore(self._engine, drift_reported)
                        .values([{"key": k, "kind": kinds[k], "first_seen_at": now, "last_seen_at": now}
                                 for k in chunk])
                        .on_conflict_do_nothing(index_elements=["key"]).returning(drift_reported.c.key))
                new.update(str(k) for k in conn.execute(stmt).scalars())
                conn.execute(update(drift_reported).where(drift_reported.c.key.in_(chunk))
                             .values(last_seen_at=now))
        return new

    def forget_before(self, cutoff: datetime) -> int:
        with translate_db_errors(), self._engine.begin() as conn:
            return int(conn.execute(delete(drift_reported).where(drift_reported.c.last_seen_at < cutoff)).rowcount)
