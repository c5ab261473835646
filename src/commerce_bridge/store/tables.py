"""SQLAlchemy Core table definitions: the one source of truth for the schema (migrations must match it)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no zone, so we restore it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(255), nullable=True),
    Column("status", String(16), nullable=False, server_default="received"),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("dispatched_at", UtcDateTime(), nullable=True),
    Column("processed_at", UtcDateTime(), nullable=True),
    Column("body", LargeBinary(), nullable=False),
    UniqueConstraint("source", "event_id"),
    Index(None, "status", "id"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(600), primary_key=True),
    Column("inbox_id", Id, nullable=False),
    Column("source", String(32), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("workflow", String(200), nullable=False),
    Column("workflow_version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("engine_workflow_id", String(700), nullable=True),
    Column("failed_step", String(200), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index(None, "inbox_id"),
    Index(None, "status"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(600), nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("step_type", String(200), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error_code", String(64), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("upstream_request_id", String(255), nullable=True),
    Column("suggested_fix", Text, nullable=True),
    Column("step_input", Text, nullable=False),
    Column("traceback", Text, nullable=True),
    Column("engine_workflow_id", String(700), nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolution", Text, nullable=True),
    Index(None, "status", "id"),
    Index(None, "run_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("run_id", String(600), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(255), nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("executions", Integer, nullable=False, server_default="1"),
)

workers = Table(
    "workers",
    metadata,
    Column("executor_id", String(200), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("lease_expires_at", Float, nullable=False),
    Column("recovered_by", String(200), nullable=True),
    Column("recovered_at", UtcDateTime(), nullable=True),
    Column("recovered_runs", Integer, nullable=True),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("destination", String(100), primary_key=True),
    Column("tat", Float, nullable=False),
)

poll_cursors = Table(
    "poll_cursors",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("entity_kind", String(40), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("system", String(40), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("entity_kind", "system", "external_id"),
    UniqueConstraint("entity_kind", "entity_id", "system"),
)

identity_keys = Table(
    "identity_keys",
    metadata,
    Column("entity_kind", String(40), nullable=False),
    Column("dedupe_key", String(320), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("entity_kind", "dedupe_key"),
)

# Customer merges (issue 14, point 2): an external id whose record was merged into another entity's. It has no
# link any more; ``lookup`` resolves it to the survivor, and the sync writes nothing for it.
identity_retired = Table(
    "identity_retired",
    metadata,
    Column("entity_kind", String(40), nullable=False),
    Column("system", String(40), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("entity_id", String(64), nullable=False),  # the surviving entity
    Column("merged_entity_id", String(64), nullable=False),  # the entity the id was linked to before the merge
    Column("retired_at", UtcDateTime(), nullable=False),
    UniqueConstraint("entity_kind", "system", "external_id"),
    Index(None, "entity_kind", "entity_id"),
)

write_fingerprints = Table(
    "write_fingerprints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("system", String(40), nullable=False),
    Column("object_kind", String(40), nullable=False),
    Column("object_id", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("written_at", UtcDateTime(), nullable=False),
    Index(None, "system", "object_kind", "object_id", "fingerprint"),
)

timers = Table(
    "timers",
    metadata,
    Column("run_id", String(600), primary_key=True),
    Column("engine_workflow_id", String(700), nullable=False),
    Column("step_name", String(220), nullable=False),
    Column("wake_at", Float, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(None, "wake_at"),
)

# Short-lived named locks ("critical section by key", store/locks.py): a row while a holder is inside.
key_locks = Table(
    "key_locks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Payout reconciliation (issue 13): one row per Stripe payout the bridge reconciled, its proof and journal.
payout_reconciliations = Table(
    "payout_reconciliations",
    metadata,
    Column("payout_id", String(100), primary_key=True),
    Column("status", String(20), nullable=False),  # closed | exceptions | failed | not_reconcilable
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("arrival_date", BigInteger, nullable=True),
    Column("transactions", Integer, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("exceptions", Integer, nullable=False),
    Column("proof", Text, nullable=False),  # JSON
    Column("journal", Text, nullable=False),  # JSON: the posting lines (account, amount_minor, refs)
    Column("journal_entry", String(140), nullable=True),
    Column("reconciled_at", UtcDateTime, nullable=False),
    Index(None, "reconciled_at"),
)

# What did not match: each a reason and a suggested fix, replaced whenever its payout is reconciled again.
reconciliation_exceptions = Table(
    "reconciliation_exceptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("payout_id", String(100), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("ref", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("suggested_fix", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("expected_minor", BigInteger, nullable=True),
    Column("expected_currency", String(3), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("payout_id", "kind", "ref"),
)

# Drift (issue 13): the differences the scheduled check already alerted, and when each was last seen.
drift_reported = Table(
    "drift_reported",
    metadata,
    Column("key", String(300), primary_key=True),  # Difference.key: kind:ref[:against]
    Column("kind", String(40), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Index(None, "last_seen_at"),
)
