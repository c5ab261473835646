"""Measure the engine's gap-fillers on PostgreSQL with real processes.

1. Shared rate limit: two workers forward events to a local receiver through a destination limited
   to R calls/s; the receiver records arrival times; we report the most calls seen in any 1-second
   window (DBOS's own queue limiter, measured on this kind of machine, let 67 through at 50/s).
2. Takeover: a worker holding runs is killed with SIGKILL; we report how long until a survivor has
   resumed its runs, against the configured lease + grace.

Usage: python bench/engine_limits.py [--rate 50] [--events 600]
Needs PostgreSQL at CB_TEST_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.test_crash_recovery import wait_processed
from tests.e2e.test_workers_postgres import Cluster, Receiver, max_in_window
from tests.support.databases import postgres_database
from tests.support.senders import SendLog, burst_plan, send_all


def rate_limit(rate: int, events: int) -> dict[str, float]:
    receiver = Receiver()
    with postgres_database() as db, tempfile.TemporaryDirectory() as tmp, receiver.server() as srv:
        cluster = Cluster(db, Path(tmp), outbound_webhook_url=f"{srv.url}/hook",
                          rate_limits=json.dumps({"outbound": rate}), worker_concurrency=16)
        try:
            ingress = cluster.ingress()
            cluster.worker("bench-w1")
            cluster.worker("bench-w2")
            ids = burst_plan(events, 0.0, seed=11, prefix="rl")
            asyncio.run(send_all(f"{ingress.url}/webhooks/stripe", "whsec_e2e_crash", ids, SendLog(), concurrency=32))
            wait_processed(db, events, timeout=600)
            stamps = sorted(receiver.arrivals)
            span = stamps[-1] - stamps[0]
            return {"limit_per_s": rate, "calls": len(stamps), "max_in_any_1s_window": max_in_window(stamps, 1.0),
                    "achieved_per_s": round((len(stamps) - 1) / span, 2), "executors": len(cluster.executors())}
        finally:
            cluster.stop()


def takeover(lease_s: float, grace_s: float) -> dict[str, float]:
    receiver = Receiver(delay_s=0.3)
    with postgres_database() as db, tempfile.TemporaryDirectory() as tmp, receiver.server() as srv:
        cluster = Cluster(db, Path(tmp), outbound_webhook_url=f"{srv.url}/hook", lease_s=lease_s,
                          takeover_grace_s=grace_s, heartbeat_interval_s=0.5)
        try:
            ingress = cluster.ingress()
            victim = cluster.worker("bench-victim")
            cluster.worker("bench-survivor")
            ids = burst_plan(200, 0.0, seed=12, prefix="to")
            asyncio.run(send_all(f"{ingress.url}/webhooks/stripe", "whsec_e2e_crash", ids, SendLog()))
            time.sleep(1.0)
            victim.kill9()
            killed = time.monotonic()
            from sqlalchemy import create_engine, text

            eng = create_engine(db)
            while True:
                with eng.connect() as conn:
                    row = conn.execute(text("SELECT status, recovered_runs FROM workers WHERE executor_id='bench-victim'")).one()
                if row[0] == "recovered":
                    break
                time.sleep(0.05)
            took = time.monotonic() - killed
            eng.dispose()
            wait_processed(db, len(ids), timeout=300)
            return {"lease_s": lease_s, "grace_s": grace_s, "kill_to_resumed_s": round(took, 2),
                    "runs_resumed": row[1]}
        finally:
            cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--lease", type=float, default=4.0)
    ap.add_argument("--grace", type=float, default=1.0)
    args = ap.parse_args()
    os.environ.setdefault("CB_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    results = {"rate_limit": rate_limit(args.rate, args.events), "takeover": takeover(args.lease, args.grace)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
