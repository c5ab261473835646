"""CPU per rate-limited call: the call limiter of this tree against an older one, interleaved.

Each measured run is a fresh process (``--driver``) on a fresh database (a SQLite file, or a PostgreSQL
database ``cbbench_<random>`` on 127.0.0.1:5432, dropped afterwards) that waits for slots through
``CallLimiter.wait`` from several threads and counts its CPU: ``time.process_time()`` (every thread)
plus, on PostgreSQL, the CPU of the run's server backends (``/proc/<pid>/stat``). The older limiter
runs from a copy of its ``src`` (``--old-src``; make one with
``git archive <rev> src | tar -x -C DIR``), put first on ``PYTHONPATH``; this tree's runs with the scope
the settings give by default (``auto``: in memory on SQLite, shared batches on PostgreSQL), or the one
``--new-scope`` names.

Scenarios (``--scenarios``):

* ``queued``: 8 threads call back to back through a limit of 200/s (every caller queues for its slot).
* ``paced``: 4 threads each call every 0.25 s (16 calls/s, Stripe's share of 4 orders/s) under 90/s.
* ``queued-2p``: ``queued`` in two processes at once (4 threads each), as two workers on one database
  (their CPU is added up; PostgreSQL only, or with ``--new-scope shared``).

Reported per run: calls, CPU ms per call, the most calls in any 1-s window (the check, taken when
``wait`` returns: a bound, not a receiver's count), and for this tree the database transactions per call.
The summary gives, per database and scenario, the ratio new/old of CPU per call for each interleaved pair.
Writes ``bench/results/limiter-<UTC time>.json``.

    git archive HEAD src | tar -x -C /tmp/old   # the limiter to compare with
    .venv/bin/python bench/limiter.py --old-src /tmp/old/src --db both --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _servers import pid_cpu_s

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("CB_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCENARIOS: dict[str, dict[str, Any]] = {
    "queued": {"rate": 200.0, "threads": 8, "calls": 50, "period": 0.0, "procs": 1},
    "paced": {"rate": 90.0, "threads": 4, "calls": 20, "period": 0.25, "procs": 1},
    "queued-2p": {"rate": 200.0, "threads": 4, "calls": 50, "period": 0.0, "procs": 2},
}
MARGIN = 0.10


# ---- the measured process -------------------------------------------------------------------------
def _backends(conn: Any, dbname: str) -> dict[int, float]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    return {pid: cpu for (pid,) in rows if (cpu := pid_cpu_s(pid)) is not None}


def drive(url: str, scenario: str, start_at: float, scope: str | None) -> dict[str, Any]:
    """One measured run in this process; what it prints is the run's JSON line."""
    import psycopg

    from commerce_bridge.engine import limits
    from commerce_bridge.metrics import Metrics
    from commerce_bridge.store import db as store_db
    from commerce_bridge.store.coordination import SqlRateLimiter, SqlWorkerLeases

    sc = SCENARIOS[scenario]
    engine = store_db.make_engine(url, pool_size=sc["threads"] + 2)
    shared = SqlRateLimiter(engine, SqlWorkerLeases(engine))
    new = hasattr(limits, "process_limiter")
    limiter: Any = limits.process_limiter(scope or "auto", engine.dialect.name, shared) if new else shared  # type: ignore[attr-defined]
    calls = limits.CallLimiter(limiter, {"bench": sc["rate"]}, MARGIN, Metrics())
    for _ in range(5):  # warm-up: the destination's row, the pool's first connections
        calls.wait("bench")
    pg = None
    dbname = url.rsplit("/", 1)[1]
    if engine.dialect.name == "postgresql":
        pg = psycopg.connect(ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    stamps: list[float] = []
    lock = threading.Lock()

    def caller(k: int) -> None:
        for i in range(sc["calls"]):
            if sc["period"]:
                delay = start_at + (k / sc["threads"] + i) * sc["period"] - time.time()
                if delay > 0:
                    time.sleep(delay)
            calls.wait("bench")
            at = time.time()
            with lock:
                stamps.append(at)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(sc["threads"])]
    time.sleep(max(0.0, start_at - time.time()))
    reservations0 = getattr(limiter, "reservations", None)
    pg0 = _backends(pg, dbname) if pg else {}
    cpu0, wall0 = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    pg1 = _backends(pg, dbname) if pg else {}
    server = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()) if pg else None
    if pg:
        pg.close()
    engine.dispose()
    n = len(stamps)
    reservations = None if reservations0 is None else limiter.reservations - reservations0
    return {"limiter": type(limiter).__name__, "calls": n, "process_cpu_s": cpu, "pg_backends_cpu_s": server,
            "wall_s": wall, "stamps": stamps, "transactions": n if not new else reservations,
            "missed": getattr(calls, "missed", None)}


# ---- the comparison ------------------------------------------------------------------------------
@contextmanager
def fresh_database(db: str) -> Iterator[str]:
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bridge.sqlite"
        return
    import psycopg

    libpq = ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"cbbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
    if src:
        env["PYTHONPATH"] = src
    return env


def run(arm: str, db: str, scenario: str, a: argparse.Namespace) -> dict[str, Any]:
    src = a.old_src if arm == "old" else None
    with fresh_database(db) as url:
        subprocess.run([sys.executable, __file__, "--upgrade", url], env=_env(src), check=True, cwd=ROOT)
        start_at = time.time() + 3.0  # every process of the run starts its callers at the same moment
        cmd = [sys.executable, __file__, "--driver", url, scenario, repr(start_at)]
        if arm == "new" and a.new_scope:
            cmd.append(a.new_scope)
        procs = [subprocess.Popen(cmd, env=_env(src), cwd=ROOT, stdout=subprocess.PIPE, text=True)
                 for _ in range(SCENARIOS[scenario]["procs"])]
        outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    stamps = sorted(s for o in outs for s in o.pop("stamps"))
    calls = sum(o["calls"] for o in outs)
    cpu = sum(o["process_cpu_s"] + (o["pg_backends_cpu_s"] or 0.0) for o in outs)
    tx = [o["transactions"] for o in outs]
    return {"arm": arm, "db": db, "scenario": scenario, "limiter": outs[0]["limiter"], "calls": calls,
            "cpu_ms_per_call": 1000 * cpu / calls,
            "process_cpu_ms_per_call": 1000 * sum(o["process_cpu_s"] for o in outs) / calls,
            "pg_backends_cpu_ms_per_call": None if outs[0]["pg_backends_cpu_s"] is None
            else 1000 * sum(o["pg_backends_cpu_s"] for o in outs) / calls,
            "transactions_per_call": None if None in tx else sum(tx) / calls,
            "missed": None if outs[0]["missed"] is None else sum(o["missed"] for o in outs),
            "max_calls_in_1s": _max_in_window(stamps), "limit": SCENARIOS[scenario]["rate"],
            "calls_per_s": (calls - 1) / (stamps[-1] - stamps[0]), "loadavg": os.getloadavg()[0]}


def _max_in_window(stamps: list[float], window: float = 1.0) -> int:
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-src", required=False, help="a copy of the older limiter's src folder")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--scenarios", default="queued,paced,queued-2p")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--new-scope", choices=["process", "shared"], default=None,
                   help="this tree's CB_RATE_LIMIT_SCOPE (default: auto)")
    p.add_argument("--driver", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--upgrade", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.upgrade:
        from commerce_bridge.store import db as store_db

        store_db.upgrade(store_db.make_engine(a.upgrade))
        return
    if a.driver:
        url, scenario, start_at, *scope = a.driver
        print(json.dumps(drive(url, scenario, float(start_at), scope[0] if scope else None)))
        return
    if not a.old_src or not (Path(a.old_src) / "commerce_bridge").is_dir():
        sys.exit("--old-src DIR: DIR/commerce_bridge must exist (git archive <rev> src | tar -x -C /tmp/old)")
    dbs = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    scenarios = a.scenarios.split(",")
    results: list[dict[str, Any]] = []
    for rep in range(a.reps):
        for db in dbs:
            for scenario in scenarios:
                if scenario == "queued-2p" and db == "sqlite" and a.new_scope != "shared":
                    continue  # two processes on one SQLite file need the shared scope
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                for arm in order:
                    r = run(arm, db, scenario, a)
                    r["rep"] = rep
                    results.append(r)
                    print(f"rep {rep} {db:8} {scenario:9} {arm}: {r['limiter']:15} {r['calls']} calls, "
                          f"{r['cpu_ms_per_call']:.3f} ms CPU/call (server {_fmt(r['pg_backends_cpu_ms_per_call'])}), "
                          f"tx/call {_fmt(r['transactions_per_call'], 2)}, max {r['max_calls_in_1s']} in 1 s "
                          f"(limit {r['limit']:.0f}), missed {r['missed']}, load {r['loadavg']:.1f}", flush=True)
    print("\n| database | scenario | old CPU ms/call | new CPU ms/call | new/old per pair | median |")
    print("|---|---|---|---|---|---|")
    summary = []
    for db in dbs:
        for scenario in scenarios:
            old = {r["rep"]: r for r in results if (r["db"], r["scenario"], r["arm"]) == (db, scenario, "old")}
            new = {r["rep"]: r for r in results if (r["db"], r["scenario"], r["arm"]) == (db, scenario, "new")}
            ratios = [new[k]["cpu_ms_per_call"] / old[k]["cpu_ms_per_call"] for k in sorted(old) if k in new]
            if not ratios:
                continue
            med = statistics.median(ratios)
            summary.append({"db": db, "scenario": scenario, "ratios": ratios, "median_ratio": med})
            print(f"| {db} | {scenario} | {', '.join(_fmt(old[k]['cpu_ms_per_call']) for k in sorted(old))} "
                  f"| {', '.join(_fmt(new[k]['cpu_ms_per_call']) for k in sorted(new))} "
                  f"| {', '.join(f'{x:.2f}' for x in ratios)} | **{med:.2f}** |")
    out = ROOT / "bench" / "results" / f"limiter-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps({"git_head": head, "old_src": a.old_src, "new_scope": a.new_scope or "auto",
                               "margin": MARGIN, "scenarios": SCENARIOS, "runs": results, "summary": summary},
                              indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
