"""The store on SQLite and PostgreSQL: schema, inbox de-duplication, runs, DLQ, leases, rate limits."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from commerce_bridge.domain.delivery import DISPATCH_STEP, Delivery, HandOver, RunStatus, StoredDelivery
from commerce_bridge.errors import ValidationError
from commerce_bridge.store import db as store_db
from commerce_bridge.store.coordination import SqlRateLimiter, SqlWorkerLeases
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.runs import SqlAuditLog, SqlDeadLetters, SqlRuns
from commerce_bridge.store.tables import metadata


def delivery(event_id: str, source: str = "stripe") -> Delivery:
    return Delivery(source=source, event_id=event_id, event_type="charge.succeeded",
                    body=b'{"id":"%s"}' % event_id.encode(), received_at=datetime.now(UTC))


def test_migrated_schema_matches_the_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    current, head = store_db.migration_status(engine)
    assert current == head


def test_sqlite_runs_wal_with_full_sync(tmp_path: Path) -> None:
    engine = store_db.make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_record_batch_marks_duplicates_within_and_across_batches(engine: Engine) -> None:
    inbox = SqlInbox(engine)
    assert inbox.record_batch([delivery("a"), delivery("b"), delivery("a"), delivery("a", source="erp")]) == [
        True, True, False, True]
    assert inbox.record_batch([delivery("b"), delivery("c")]) == [False, True]
    assert inbox.backlog() == 4


def test_dispatch_batch_hands_each_delivery_over_once(engine: Engine) -> None:
    inbox = SqlInbox(engine)
    inbox.record_batch([delivery(f"e{i}") for i in range(5)])
    seen: list[str] = []
    assert inbox.dispatch_batch(3, lambda rows: seen.extend(r.event_id for r in rows)) == 3
    assert inbox.dispatch_batch(10, lambda rows: seen.extend(r.event_id for r in rows)) == 2
    assert inbox.dispatch_batch(10, lambda rows: seen.extend(r.event_id for r in rows)) == 0
    assert seen == [f"e{i}" for i in range(5)]
    assert inbox.backlog() == 0


def test_a_failing_dispatch_handler_leaves_rows_undispatched(engine: Engine) -> None:
    inbox = SqlInbox(engine)
    inbox.record_batch([delivery("x")])

    def boom(rows: object) -> None:
        raise RuntimeError("enqueue failed")

    with pytest.raises(RuntimeError):
        inbox.dispatch_batch(10, boom)
    assert inbox.backlog() == 1


def test_run_status_drives_the_delivery_status(engine: Engine) -> None:
    inbox, runs = SqlInbox(engine), SqlRuns(engine)
    inbox.record_batch([delivery("r1")])
    rows: list[int] = []
    inbox.dispatch_batch(10, lambda ds: rows.extend(d.id for d in ds))
    runs.create([{"run_id": f"stripe:r1:{w}", "inbox_id": rows[0], "source": "stripe", "event_id": "r1",
                  "workflow": w, "workflow_version": "1"} for w in ("a", "b")])
    runs.create([{"run_id": "stripe:r1:a", "inbox_id": rows[0], "source": "stripe", "event_id": "r1",
                  "workflow": "a", "workflow_version": "1"}])  # same id twice is harmless
    runs.set_status("stripe:r1:a", RunStatus.SUCCEEDED)
    assert inbox.get("stripe", "r1").status == "dispatched"  # type: ignore[union-attr]
    runs.set_status("stripe:r1:b", RunStatus.PARKED, failed_step="s", error_code="validation_error")
    assert inbox.get("stripe", "r1").status == "failed"  # type: ignore[union-attr]
    runs.set_status("stripe:r1:b", RunStatus.SUCCEEDED)
    got = inbox.get("stripe", "r1")
    assert got is not None and got.status == "processed" and got.processed_at is not None
    listed = inbox.list(source="stripe")
    assert {r["run_id"] for r in listed[0]["runs"]} == {"stripe:r1:a", "stripe:r1:b"}


def test_a_run_finishing_after_a_redispatch_leaves_the_delivery_to_the_dispatcher(engine: Engine) -> None:
    """Replay of a delivery isolated at dispatch, while another of its runs still runs (the race it had).

    ``b`` started; ``a`` and ``c`` were parked at dispatch (their filters failed). After the fix and
    the replay, ``b`` finishes before the dispatcher's next pass: the delivery must stay waiting for
    that pass, not be marked processed with ``a`` never run. The pass then keeps ``a`` (re-pinned to
    the new version) and drops ``c`` (its workflow no longer takes the event).
    """
    inbox, runs = SqlInbox(engine), SqlRuns(engine)
    inbox.record_batch([delivery("r2")])
    ids: list[int] = []

    def isolate(ds: list[StoredDelivery]) -> HandOver:
        ids.extend(d.id for d in ds)
        return HandOver(idle=frozenset(), failed=frozenset(ids))

    inbox.dispatch_batch(10, isolate)
    row = {"inbox_id": ids[0], "source": "stripe", "event_id": "r2", "workflow_version": "1"}
    runs.create([{**row, "run_id": f"stripe:r2:{w}", "workflow": w} for w in ("a", "b", "c")])
    runs.set_status("stripe:r2:b", RunStatus.RUNNING)
    runs.park_unstarted(["stripe:r2:a", "stripe:r2:c"], DISPATCH_STEP, "validation_error")
    assert inbox.get("stripe", "r2").status == "failed"  # type: ignore[union-attr]

    assert inbox.redispatch(ids[0]) and not inbox.redispatch(ids[0])
    runs.set_status("stripe:r2:b", RunStatus.SUCCEEDED)
    assert inbox.get("stripe", "r2").status == "received"  # type: ignore[union-attr]

    def pass_(ds: list[StoredDelivery]) -> HandOver:
        assert [d.dispatched_at is not None for d in ds] == [True]  # it tells the dispatcher: a re-dispatch
        runs.reroute(ds[0].id, [{**row, "run_id": "stripe:r2:a", "workflow": "a", "workflow_version": "2"}],
                     DISPATCH_STEP)
        return HandOver(idle=frozenset(), failed=frozenset())

    assert inbox.dispatch_batch(10, pass_) == 1
    assert runs.get("stripe:r2:c") is None
    assert runs.get("stripe:r2:a")["workflow_version"] == "2"  # type: ignore[index]
    assert inbox.get("stripe", "r2").status == "dispatched"  # type: ignore[union-attr]
    runs.set_status("stripe:r2:a", RunStatus.RUNNING)
    runs.set_status("stripe:r2:a", RunStatus.SUCCEEDED)
    assert inbox.get("stripe", "r2").status == "processed"  # type: ignore[union-attr]


def test_dead_letter_entries_resolve_once(engine: Engine) -> None:
    dlq = SqlDeadLetters(engine)
    entry = {"run_id": "r", "step_id": "s", "step_type": "x.y.z", "attempts": 3, "error_code": "mapping_error",
             "error_message": "bad", "step_input": {"amount_minor": 5}, "engine_workflow_id": "r"}
    first = dlq.add(entry)
    assert dlq.add(entry) == first  # one open entry per run
    assert dlq.count_open() == 1
    assert dlq.get(first)["step_input"] == {"amount_minor": 5}
    assert dlq.resolve(first, "discarded", "test")["status"] == "discarded"
    with pytest.raises(ValidationError, match="already discarded"):
        dlq.resolve(first, "replayed", "again")
    assert dlq.count_open() == 0


def test_audit_counts_repeated_executions(engine: Engine) -> None:
    audit = SqlAuditLog(engine)
    assert audit.record("r1", "stripe", "e1", "t") is True
    assert audit.record("r1", "stripe", "e1", "t") is False
    assert audit.all()[0]["executions"] == 2


def test_only_one_survivor_wins_a_takeover(engine: Engine) -> None:
    leases = SqlWorkerLeases(engine)
    epoch = leases.register("w1", "host", 1, lease_s=0.2)
    assert leases.heartbeat("w1", epoch, 0.2)
    assert not leases.begin_takeover("w1", "w2", grace_s=0.0)  # still alive
    time.sleep(0.4)
    assert leases.expired(0.0) == ["w1"]
    wins = [leases.begin_takeover("w1", by, grace_s=0.0) for by in ("w2", "w3")]
    assert wins == [True, False]
    assert not leases.heartbeat("w1", epoch, 0.2)  # the old holder is fenced out
    with pytest.raises(RuntimeError, match="being recovered"):
        leases.register("w1", "host", 1, lease_s=1)
    leases.finish_takeover("w1", 7)
    assert leases.get("w1")["recovered_runs"] == 7  # type: ignore[index]
    assert leases.register("w1", "host", 2, lease_s=1) == epoch + 1


def test_rate_limiter_reserves_disjoint_batches_of_slots_across_threads(engine: Engine) -> None:
    leases = SqlWorkerLeases(engine)
    limiter = SqlRateLimiter(engine, leases)
    interval = 0.02
    slots: list[tuple[float, float]] = []  # (estimated slot time, uncertainty of the estimate)
    lock = threading.Lock()

    def take(counts: list[int]) -> None:
        for count in counts:
            earliest, latest = limiter.reserve_batch("dest", interval, count)
            # the first slot lies between the two bounds, the others follow it an interval apart
            with lock:
                slots.extend(((earliest + latest) / 2 + k * interval, (latest - earliest) / 2) for k in range(count))

    threads = [threading.Thread(target=take, args=([1, 3, 2, 1, 3],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 40
    slots.sort()
    # Every two slots are at least the interval apart; only the estimates' uncertainty (a thread
    # descheduled during the statement on a busy machine) can make them look closer.
    for (a, err_a), (b, err_b) in itertools.pairwise(slots):
        assert b - a >= interval - err_a - err_b - 0.001, (a, b, err_a, err_b)
    times = [t for t, _ in slots]
    assert times[-1] - times[0] >= interval * 39 - slots[0][1] - slots[-1][1] - 0.001


@pytest.mark.postgres
def test_a_run_finishing_while_its_delivery_is_dispatched_again_does_not_deadlock(pg_database_url: str) -> None:
    # After a dispatcher dies mid-batch, its deliveries are dispatched again while some of their runs
    # (already enqueued) are running elsewhere. The survivor's dispatcher holds the delivery's row and
    # creates the run (a no-op insert) on another connection; the run finishing at that moment must
    # not hold the run's row while it waits for the delivery (that cycle hung both for good).
    engine = store_db.make_engine(pg_database_url)
    store_db.upgrade(engine)
    # the dispatcher's connection gives up after 5 s instead of hanging (the old lock order's symptom)
    impatient = create_engine(pg_database_url, connect_args={"options": "-c lock_timeout=5000"})
    inbox, runs = SqlInbox(engine), SqlRuns(engine)
    inbox.record_batch([delivery("k9")])
    row = {"run_id": "stripe:k9:wf", "inbox_id": inbox.get("stripe", "k9").id,  # type: ignore[union-attr]
           "source": "stripe", "event_id": "k9", "workflow": "wf", "workflow_version": "1"}
    runs.create([row])  # the dead dispatcher created and enqueued the run, then died before marking
    runs.set_status(row["run_id"], RunStatus.RUNNING)
    finisher_errors: list[BaseException] = []

    def finish() -> None:
        try:
            runs.set_status(row["run_id"], RunStatus.SUCCEEDED)
        except BaseException as exc:  # reported by the asserts below
            finisher_errors.append(exc)

    finisher = threading.Thread(target=finish)

    def redispatch(rows: object) -> None:
        finisher.start()
        _wait_for_a_lock_wait(engine)
        SqlRuns(impatient).create([row])  # raised "lock timeout" with the old order

    try:
        assert inbox.dispatch_batch(10, redispatch) == 1
        finisher.join(10)
        assert not finisher.is_alive() and finisher_errors == []
        got = inbox.get("stripe", "k9")
        assert got is not None and got.status == "processed"
        assert runs.get(row["run_id"])["status"] == "succeeded"  # type: ignore[index]
    finally:
        impatient.dispose()
        engine.dispose()


def _wait_for_a_lock_wait(engine: Engine, timeout: float = 5.0) -> None:
    """Return once some backend of this database is waiting for a row lock."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").scalar()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the finishing run never waited for the delivery's lock")
