"""Another process holds the SQLite write lock for three leases: ``serve`` answers 503, then carries on.

A backup, a VACUUM or an operator's ``sqlite3`` shell can hold the database's write lock longer than a
worker's lease. The worker must then stop its runs (fencing: a survivor could own them), but the
process must not go down with it: ingress answers 503 while it cannot store (the sender redelivers),
200 again once it can; the engine restarts inside the process and finishes every run; nothing
acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from commerce_bridge.domain.signature import sign
from tests.support.processes import BridgeProcess, bridge_env, free_port, migrate
from tests.support.senders import SendLog, send_all, stripe_event

pytestmark = pytest.mark.slow
SECRET = "whsec_e2e_outage"
LEASE_S = 5.0


def inbox_state(url: str) -> dict[str, str]:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return dict(conn.execute(text("SELECT event_id, status FROM inbox")).all())
    finally:
        eng.dispose()


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def post_one(url: str, event_id: str) -> tuple[int, Any]:
    body = stripe_event(event_id)
    try:
        r = httpx.post(f"{url}/webhooks/stripe", content=body, timeout=60, headers={
            "Stripe-Signature": sign(body, SECRET, int(time.time())), "Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        return 0, str(exc)
    return r.status_code, r.json()


def test_serve_outlives_a_write_lock_held_for_three_leases(tmp_path: Path) -> None:
    db_path = tmp_path / "bridge.sqlite"
    db_url = f"sqlite:///{db_path}"
    port = free_port()
    env = bridge_env(database_url=db_url, stripe_webhook_secrets=SECRET, admin_tokens="t", port=port,
                     worker_id="e2e-outage", lease_s=LEASE_S, heartbeat_interval_s=0.5,
                     audit_runs="true")  # every event gets a run, so runs are in flight when the lock comes
    migrate(env, tmp_path)
    serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()
    try:
        assert serve.proc is not None
        pid = serve.proc.pid
        before = [f"evt_before{i:03d}" for i in range(50)]
        log = SendLog()
        asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, before, log))
        assert log.acked_ids == set(before)

        # An operator's sqlite3 shell takes the write lock for three leases (and longer than the busy timeout).
        held = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait()
            conn.execute("ROLLBACK")
            conn.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        assert held.wait(30)
        locked_at = time.monotonic()
        during: list[tuple[str, int, Any]] = []
        senders: list[threading.Thread] = []

        def send(event_id: str) -> None:
            during.append((event_id, *post_one(serve.url, event_id)))

        i = 0
        while time.monotonic() - locked_at < 3 * LEASE_S + 1:  # a delivery a second, as Stripe would send
            senders.append(threading.Thread(target=send, args=(f"evt_during{i:03d}",)))
            senders[-1].start()
            i += 1
            time.sleep(1.0)
        ready_while_locked = httpx.get(f"{serve.url}/readyz", timeout=30)
        release.set()
        holder.join()
        for t in senders:
            t.join(90)

        # While it could not store, ingress said so (503, the documented error shape) and stayed up.
        unavailable = [(e, b) for e, s, b in during if s == 503]
        assert unavailable, f"no 503 while the lock was held: {[(e, s) for e, s, _ in during]}"
        assert all(b["code"] == "store_unavailable" and b["ok"] is False for _, b in unavailable), unavailable[:2]
        assert ready_while_locked.status_code == 503
        assert serve.proc.poll() is None and serve.proc.pid == pid, "the process must not exit"

        # After the lock is released: 200 again, without a manual restart.
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            status, _ = post_one(serve.url, "evt_after000")
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200
        # The sender redelivers what got a 503 (as Stripe does); what got 200 was stored.
        acked_during = {e for e, s, _ in during if s == 200}
        resend = [e for e, s, _ in during if s != 200]
        log2 = SendLog()
        asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, resend, log2))
        assert log2.acked_ids == set(resend)

        every = set(before) | acked_during | set(resend) | {"evt_after000"}
        deadline = time.monotonic() + 120
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            state = inbox_state(db_url)
            if all(state.get(e) == "processed" for e in every):
                break
            time.sleep(0.5)
        assert {e for e in every if state.get(e) != "processed"} == set(), "every acknowledged event processed"
        # The engine was fenced and restarted in-process (not the whole process).
        assert metric(serve.url, "cb_engine_fenced_total") >= 1
        assert metric(serve.url, "cb_engine_restarts_total") >= 1
        assert httpx.get(f"{serve.url}/readyz", timeout=10).status_code == 200
        assert serve.proc.poll() is None and serve.proc.pid == pid
    finally:
        serve.stop()
