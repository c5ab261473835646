"""CPU cost of one durable inbox commit on SQLite: our ``SqlInbox.record_batch`` vs the raw driver.

Explains the ingest benchmark's CPU per event at a low rate, where every event gets its own commit.
One process, no HTTP, a fresh SQLite file (WAL, ``synchronous=FULL``) in a temporary directory:

* ``SqlInbox.record_batch`` with 1 and with 64 deliveries per commit (what the group committer runs);
* the same INSERT through the raw ``sqlite3`` driver (``BEGIN IMMEDIATE`` ... ``COMMIT``);
* one ``asyncio.to_thread`` round trip (how the group committer reaches its worker thread).

    python bench/ingest_commit_cost.py [--commits 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.store.db import make_engine, upgrade
from commerce_bridge.store.inbox import SqlInbox

BODY = b'{"id":"evt_x","object":"event","type":"payment_intent.succeeded"}'.ljust(1581, b" ")
RAW_INSERT = ("INSERT INTO inbox (source, event_id, event_type, status, received_at, body) "
              "VALUES (?, ?, ?, 'received', ?, ?) ON CONFLICT DO NOTHING RETURNING source, event_id")


def cpu() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.system


def measure(label: str, commits: int, per_commit: int, fn: Callable[[], object]) -> None:
    (c0, s0), w0 = cpu(), time.perf_counter()
    for _ in range(commits):
        fn()
    (c1, s1), w1 = cpu(), time.perf_counter()
    print(f"{label:44} {1000 * (c1 - c0) / commits:6.3f} ms CPU per commit ({1000 * (s1 - s0) / commits:.3f} "
          f"system), {1000 * (c1 - c0) / (commits * per_commit):.3f} ms per event, "
          f"{1000 * (w1 - w0) / commits:.2f} ms wall per commit")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=2000)
    a = p.parse_args()
    ids = count()
    with tempfile.TemporaryDirectory(prefix="cbcommit-") as tmp:
        path = Path(tmp) / "bridge.sqlite"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        inbox = SqlInbox(engine)

        def deliveries(n: int) -> list[Delivery]:
            return [Delivery(source="stripe", event_id=f"evt_{next(ids)}", event_type="payment_intent.succeeded",
                             body=BODY, received_at=datetime.now(UTC)) for _ in range(n)]

        measure("SqlInbox.record_batch, 1 event per commit", a.commits, 1, lambda: inbox.record_batch(deliveries(1)))
        measure("SqlInbox.record_batch, 64 events per commit", a.commits // 32, 64,
                lambda: inbox.record_batch(deliveries(64)))
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")

        def raw() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(RAW_INSERT, ("stripe", f"raw_{next(ids)}", "payment_intent.succeeded",
                                      datetime.now(UTC).isoformat(sep=" "), BODY)).fetchall()
            conn.execute("COMMIT")

        measure("raw sqlite3, 1 event per commit", a.commits, 1, raw)
        conn.close()
        engine.dispose()

    async def hops() -> None:
        c0, _ = cpu()
        for _ in range(a.commits):
            await asyncio.to_thread(int)
        print(f"{'asyncio.to_thread round trip':44} {1000 * (cpu()[0] - c0) / a.commits:6.3f} ms CPU")

    try:
        import uvloop

        uvloop.run(hops())
    except ImportError:
        asyncio.run(hops())


if __name__ == "__main__":
    main()
