"""Poison among a burst: 1,000 signed events and a few that cannot be dispatched, through a real ``serve``.

The poison events are 500 levels deep: valid JSON that the engine cannot serialise. Ingress is told
to accept them (``CB_MAX_JSON_DEPTH=1000``; by default it refuses them with 400) so that they reach
the dispatcher, as rows stored before the limit, or by another path, would. Every normal event must
be processed, each poison one must be in the DLQ on its own, and ``/readyz`` must never report a
stuck dispatcher while this happens (it would, after ``CB_DISPATCH_STUCK_AFTER_S``, if one were).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database
from tests.support.processes import BridgeProcess, bridge_env, free_port, migrate
from tests.support.senders import SendLog, send_all, stripe_event

pytestmark = pytest.mark.slow
SECRET = "whsec_e2e_poison"
N_NORMAL = 1000
POISON = [f"evt_poison{i}" for i in range(5)]


def body_for(event_id: str) -> bytes:
    if event_id in POISON:
        nested = "[" * 500 + "]" * 500
        return (f'{{"id": "{event_id}", "object": "event", "type": "payment_intent.succeeded", '
                f'"data": {{"object": {{"id": "pi_x", "deep": {nested}}}}}}}').encode()
    return stripe_event(event_id)


class ReadyzWatch:
    """Polls /readyz in the background and keeps every answer that was not a plain 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bad: list[tuple[int, Any]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyzWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=5)
            except httpx.HTTPError as exc:
                self.bad.append((0, str(exc)))
                continue
            self.polls += 1
            if r.status_code != 200:
                self.bad.append((r.status_code, r.json()))


def state(url: str) -> dict[str, Any]:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            inbox = dict(conn.execute(text("SELECT event_id, status FROM inbox")).all())
            dlq = dict(conn.execute(text(
                "SELECT run_id, step_id FROM dead_letters WHERE status = 'open'")).all())
    finally:
        eng.dispose()
    return {"inbox": inbox, "dlq": dlq}


def run_poison_burst(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = bridge_env(database_url=db_url, stripe_webhook_secrets=SECRET, admin_tokens="t", port=port,
                     worker_id="e2e-poison", max_json_depth=1000, dispatch_stuck_after_s=10,
                     audit_runs="true")  # every normal event gets a run (the default has none for them)
    migrate(env, tmp_path)
    serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port).start()
    try:
        ids = [f"evt_n{i:05d}" for i in range(N_NORMAL)]
        # poison spread through the burst: early, middle and late batches of the dispatcher
        for k, p in enumerate(POISON):
            ids.insert((k + 1) * len(ids) // (len(POISON) + 1), p)
        log = SendLog()
        with ReadyzWatch(serve.url) as watch:
            asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, ids, log, body_for=body_for))
            for _ in range(5):  # like Stripe, send again what was not acknowledged (a 503 on a busy machine)
                missing = sorted(set(ids) - log.acked_ids)
                if not missing:
                    break
                asyncio.run(send_all(f"{serve.url}/webhooks/stripe", SECRET, missing, log, body_for=body_for))
            assert log.acked_ids == set(ids), f"not acknowledged: {sorted(set(ids) - log.acked_ids)[:5]}"
            deadline = time.monotonic() + 240
            s = state(db_url)
            while time.monotonic() < deadline:
                s = state(db_url)
                if all(s["inbox"].get(i) == "processed" for i in ids if i not in POISON):
                    break
                time.sleep(0.5)
        waiting = sorted(i for i in ids if i not in POISON and s["inbox"].get(i) != "processed")
        assert waiting == [], f"{len(waiting)} normal events not processed, e.g. {waiting[:5]}"
        assert {i: s["inbox"][i] for i in POISON} == {i: "failed" for i in POISON}
        assert {k: v for k, v in s["dlq"].items() if v == "(dispatch)"} == {
            f"stripe:{i}:(dispatch)": "(dispatch)" for i in POISON}
        assert watch.polls > 3 and watch.bad == [], watch.bad[:3]
        ready = httpx.get(f"{serve.url}/readyz", timeout=5).json()
        assert ready["checks"]["dispatcher"]["ok"] is True
    finally:
        serve.stop()


def test_poison_among_1000_events_on_sqlite_is_set_aside_and_everything_else_is_processed(tmp_path: Path) -> None:
    run_poison_burst(f"sqlite:///{tmp_path / 'bridge.sqlite'}", tmp_path)


@pytest.mark.postgres
def test_poison_among_1000_events_on_postgres_is_set_aside_and_everything_else_is_processed(tmp_path: Path) -> None:
    if not pg_admin_url():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        run_poison_burst(url, tmp_path)
