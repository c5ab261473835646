"""kill -9 in the middle of a burst: every acknowledged event is processed exactly once, nothing is half-done.

Starts real ``commerce-bridge`` processes, sends 1,000 signed events with 10% duplicate deliveries,
kills a process with SIGKILL mid-burst while it runs workflows, restarts it (as a sender would,
unacknowledged deliveries are sent again), and checks the database: one inbox row and exactly one audit
record per event, every run succeeded, the runs the process held in flight when it died (DBOS
``PENDING`` under its executor id) finished after the restart, and the set of stored events equals the
set the senders were told was stored (plus any whose answer was lost in the crash, which must then be
fully processed too).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.processes import BridgeProcess, bridge_env, free_port, migrate
from tests.support.senders import SendLog, burst_plan, send_all

pytestmark = pytest.mark.slow
SECRET = "whsec_e2e_crash"


def db_state(url: str) -> dict[str, Any]:
    eng = create_engine(url)
    with eng.connect() as conn:
        inbox = {r[0]: r[1] for r in conn.execute(text("SELECT event_id, status FROM inbox"))}
        audit = {r[0]: r[1] for r in conn.execute(text("SELECT event_id, executions FROM audit_log"))}
        runs: dict[str, int] = {r[0]: r[1] for r in conn.execute(text("SELECT status, count(*) FROM runs GROUP BY status"))}
        dup_audit = conn.execute(text(
            "SELECT count(*) FROM (SELECT event_id FROM audit_log GROUP BY event_id HAVING count(*) > 1) x"
        )).scalar_one()
    eng.dispose()
    return {"inbox": inbox, "audit": audit, "runs": runs, "dup_audit": dup_audit}


def engine_database_url(url: str) -> str:
    """Where DBOS keeps its workflow table for our database ``url`` (SQLite: ``engine.sqlite`` beside it)."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).with_name('engine.sqlite')}"
    return url


def dbos_workflows(url: str, *, executor_id: str | None = None, status: str | None = None) -> dict[str, str]:
    """DBOS's workflows (id -> status) for our database ``url``, optionally of one executor and status."""
    engine_url = engine_database_url(url)
    table = "workflow_status" if engine_url.startswith("sqlite") else "dbos.workflow_status"
    where, params = [], {}
    if executor_id is not None:
        where.append("executor_id = :e")
        params["e"] = executor_id
    if status is not None:
        where.append("status = :s")
        params["s"] = status
    eng = create_engine(engine_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(f"SELECT workflow_uuid, status FROM {table}"
                                     + (" WHERE " + " AND ".join(where) if where else "")), params).all()
    finally:
        eng.dispose()
    return {r[0]: r[1] for r in rows}


def wait_for_runs_in_flight(url: str, executor_id: str, timeout: float = 30.0) -> None:
    """Return once the worker runs some workflows (DBOS status PENDING under its executor id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dbos_workflows(url, executor_id=executor_id, status="PENDING"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{executor_id} never had a run in flight")


def runs_in_flight(url: str, executor_id: str) -> set[str]:
    """The workflows a dead worker held in flight: PENDING under its executor id (read after the kill)."""
    return set(dbos_workflows(url, executor_id=executor_id, status="PENDING"))


def wait_processed(url: str, expected: int, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = db_state(url)
        if len(state["audit"]) >= expected and all(s == "processed" for s in state["inbox"].values()):
            return state
        time.sleep(0.5)
    raise AssertionError(f"not processed in time: {len(state.get('audit', {}))}/{expected}, runs {state.get('runs')}"
                         f"\n{_unfinished(url)}")


def _unfinished(url: str) -> str:
    """What the engine knows of the runs that did not finish: our runs table beside DBOS's own status."""
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            has_dbos = url.startswith("postgresql")
            rows = conn.execute(text(
                "SELECT r.run_id, r.status, r.failed_step, r.engine_workflow_id"
                + (", w.status, w.executor_id, w.queue_name, w.recovery_attempts FROM runs r "
                   "LEFT JOIN dbos.workflow_status w ON w.workflow_uuid = COALESCE(r.engine_workflow_id, r.run_id) " if has_dbos else " FROM runs r ")
                + "WHERE r.status NOT IN ('succeeded') ORDER BY r.run_id LIMIT 40")).all()
    except Exception as exc:  # a diagnostic must not hide the real failure
        return f"(could not read the unfinished runs: {exc})"
    finally:
        eng.dispose()
    return "unfinished runs (run, status, failed step, engine id[, dbos status, executor, queue, attempts]):\n" + "\n".join(
        "  " + " ".join(str(c) for c in r) for r in rows)


def run_burst(url: str, ids: list[str], log: SendLog, kill_after: int | None, victim: Any) -> None:
    """Send ``ids``; after ``kill_after`` answers, SIGKILL ``victim()`` (in another thread, mid-flight)."""
    killed = threading.Event()

    def on_sent(n: int) -> None:
        if kill_after is not None and n >= kill_after and not killed.is_set():
            killed.set()
            threading.Thread(target=victim).start()

    asyncio.run(send_all(url, SECRET, ids, log, concurrency=16, on_sent=on_sent))
    if kill_after is not None:
        assert killed.is_set()


def check_exactly_once(state: dict[str, Any], all_ids: set[str], log: SendLog) -> None:
    assert set(state["inbox"]) == all_ids
    assert set(state["audit"]) == all_ids, "every stored event is processed, and nothing else"
    assert state["dup_audit"] == 0
    assert state["runs"] == {"succeeded": len(all_ids)}
    assert log.acked_ids == all_ids
    # A duplicate=false answer is given at most once per event.
    firsts = [i for i, flags in log.acked.items() if flags.count(False) > 1]
    assert firsts == []


def test_serve_on_sqlite_survives_kill_9_mid_burst(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'bridge.sqlite'}"
    port = free_port()
    env = bridge_env(database_url=db_url, stripe_webhook_secrets=SECRET, admin_tokens="t", port=port, audit_runs="true",
                     worker_id="e2e-serve", lease_s=5, heartbeat_interval_s=0.5)
    migrate(env, tmp_path)
    serve = BridgeProcess(["serve"], env, tmp_path, "serve").start(wait_ready=False)
    serve.port = port
    serve.wait_ready()
    ids = burst_plan(1000, 0.10, seed=7, prefix="s")
    log = SendLog()
    held: set[str] = set()

    def kill_while_running() -> None:
        wait_for_runs_in_flight(db_url, "e2e-serve")
        serve.kill9()
        held.update(runs_in_flight(db_url, "e2e-serve"))

    run_burst(f"{serve.url}/webhooks/stripe", ids, log, kill_after=450, victim=kill_while_running)
    assert log.failed, "the kill happened mid-burst, so some deliveries failed"
    assert held, "the process held runs in flight when it was killed"
    acked_before = set(log.acked_ids)

    # Restart with the same worker id: it recovers its own unfinished runs.
    serve.start(wait_ready=False)
    serve.wait_ready()
    stored_now = set(db_state(db_url)["inbox"])
    assert acked_before <= stored_now, "every acknowledged event was stored"
    # Nothing stored is left half-done: wait until what is stored is processed, before any resend.
    state = wait_processed(db_url, len(stored_now))
    assert set(state["audit"]) == stored_now
    # the runs in flight at the kill were recovered by the restarted process and finished
    after = dbos_workflows(db_url)
    assert {w: after.get(w) for w in held} == dict.fromkeys(held, "SUCCESS")

    # The sender re-delivers what was not acknowledged (Stripe retries with a new signature).
    retry = sorted(set(ids) - acked_before)
    run_burst(f"{serve.url}/webhooks/stripe", retry, log, kill_after=None, victim=None)
    all_ids = set(ids)
    state = wait_processed(db_url, len(all_ids))
    serve.stop()
    check_exactly_once(state, all_ids, log)
    assert "Traceback" not in serve.log(), serve.log()[-3000:]
