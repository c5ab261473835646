"""Reconciliation benchmark: 1,000,000 balance transactions matched and journalled, polars against DuckDB and a loop.

Issue 13, point 7. The parent generates ``--rows`` balance transactions with the bridge's side (orders,
returns, disputes) and injected discrepancies of every kind (``bench/_reconcile_data.py``: the mix and
the list), writes them as Parquet to a temporary directory, then runs each arm in a subprocess of its own
so that its peak memory is its own (``VmHWM`` of that process, read right after the job, before the
results are turned into Python objects for comparison):

* **polars**: ``commerce_bridge.reconcile.job.reconcile`` (the product code); timed from reading the
  Parquet files to every output frame materialised (lines, exceptions, journal lines, proof);
* **duckdb**: the same rules in SQL (``bench/_reconcile_duckdb.py``), reading the same files, every
  output materialised as a table;
* **loop**: ``commerce_bridge.reconcile.reference.reconcile_rows``, a plain row-by-row Python loop over
  dicts; timed over the loop only (building the dicts from Parquet is not counted; its process also holds
  polars, used to read the files).

Then the parent checks that the three arms agree exactly (every transaction's status, every exception,
every journal total per payout and account, every proof row), that every injected discrepancy was
found and no other one, and reports wall time, peak RSS, matched and unmatched counts and the loop's time
over each arm's. The target (issue 13): at most 20 s and 1.5 GB for 1 M on this machine (2 shared cores).

    .venv/bin/python bench/reconcile.py --rows 1000000 --markdown
    .venv/bin/python bench/reconcile.py --rows 50000 --arms polars,loop

``--small N`` measures the other end instead: the CPU of one call for a payout of N charges (and its payout
line), warm, the way the workflow runs it once per payout (``reconcile``, ``journal_by_account``, the
exceptions and proof as dicts); it prints the median of 30 calls after 3 warm-up calls.

    .venv/bin/python bench/reconcile.py --small 30
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = ("polars", "duckdb", "loop")
TABLES = ("transactions", "payouts", "orders", "returns", "disputes")


def _vm(field: str) -> float:
    """``VmHWM`` / ``VmRSS`` of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _records(data: Path) -> dict[str, list[dict[str, Any]]]:
    import polars as pl
    return {name: pl.read_parquet(data / f"{name}.parquet").to_dicts() for name in TABLES}


def child(arm: str, data: Path, source: str) -> None:
    """Run one arm on the files in ``data``; print a JSON line; pickle its Summary beside the data.

    ``source`` "parquet": the columnar arms read the Parquet files inside the timed part. "records": every
    arm is handed Python dicts (as the bridge has Stripe's pages), read from Parquet before the clock
    starts; the timed part includes turning them into the engine's input (polars frames; for DuckDB,
    which takes Python rows only through pyarrow or one by one, NDJSON files it reads).
    """
    from commerce_bridge.reconcile.reference import Summary
    records = _records(data) if source == "records" or arm == "loop" else {}
    summary: Summary
    if arm == "polars":
        import polars as pl

        from commerce_bridge.reconcile.job import Inputs, frames_from_records, reconcile
        base = _vm("VmRSS")
        start = time.perf_counter()
        if records:
            inputs = frames_from_records(*(records[name] for name in TABLES))
        else:
            inputs = Inputs(*(pl.read_parquet(data / f"{name}.parquet") for name in TABLES))
        result = reconcile(inputs)
        wall = time.perf_counter() - start
        peak = _vm("VmHWM")
        counts = {"matched": int(result.lines["kind"].is_null().sum()),
                  "unmatched": int(result.lines["kind"].is_not_null().sum()),
                  "exceptions": result.exceptions.height, "journal_lines": result.journal.height,
                  "payouts_closed": int(result.proof["closed"].sum())}
        summary = result.summary()
    elif arm == "duckdb":
        import duckdb

        import _reconcile_duckdb
        con = duckdb.connect()
        base = _vm("VmRSS")
        start = time.perf_counter()
        if records:
            _reconcile_duckdb.write_records(records, data)
        _reconcile_duckdb.run(con, data, source)
        wall = time.perf_counter() - start
        peak = _vm("VmHWM")
        one = con.execute("SELECT count(*) FILTER (WHERE kind IS NULL), count(*) FILTER (WHERE kind IS NOT NULL) "
                          "FROM lines").fetchone()
        assert one is not None
        counts = {"matched": int(one[0]), "unmatched": int(one[1]),
                  "exceptions": int(con.execute("SELECT count(*) FROM exceptions").fetchone()[0]),  # type: ignore[index]
                  "journal_lines": int(con.execute("SELECT count(*) FROM journal").fetchone()[0])}  # type: ignore[index]
        summary = _reconcile_duckdb.summary(con)
        counts["payouts_closed"] = sum(1 for p in summary.proof.values() if p[5])
    else:
        from commerce_bridge.reconcile.reference import reconcile_rows
        base = _vm("VmRSS")
        start = time.perf_counter()
        summary = reconcile_rows(*(records[name] for name in TABLES))
        wall = time.perf_counter() - start
        peak = _vm("VmHWM")
        counts = {"matched": summary.matched, "unmatched": summary.unmatched,
                  "exceptions": len(summary.exceptions), "journal_lines": -1,
                  "payouts_closed": sum(1 for p in summary.proof.values() if p[5])}
    with (data / f"summary-{arm}.pickle").open("wb") as fh:
        pickle.dump(summary, fh, protocol=pickle.HIGHEST_PROTOCOL)
    print(json.dumps({"arm": arm, "wall_s": round(wall, 3), "peak_rss_mb": round(peak, 1),
                      "rss_before_mb": round(base, 1), **counts}))


def small_payout(n: int, calls: int = 30) -> dict[str, Any]:
    """CPU (``process_time``, every thread) and wall ms of one warm call for a payout of ``n`` charges."""
    from commerce_bridge import reconcile as core
    txns: list[dict[str, Any]] = [
        {"id": f"txn_{i}", "payout_id": "po_1", "type": "charge", "reporting_category": "charge", "amount": 3300,
         "fee": 126, "net": 3174, "currency": "usd", "exchange_rate": None, "source_id": f"ch_{i}",
         "source_type": "charge", "source_amount": 3300, "source_currency": "usd", "order_key": f"K{i}"}
        for i in range(n)]
    txns.append({"id": "txn_po", "payout_id": "po_1", "type": "payout", "reporting_category": "payout",
                 "amount": -3174 * n, "fee": 0, "net": -3174 * n, "currency": "usd", "source_id": "po_1",
                 "source_type": "payout"})
    orders = [{"order_key": f"K{i}", "amount_minor": 3300, "currency": "USD", "fee_minor": None} for i in range(n)]
    booked = [{"ref": f"txn_{i}", "gross_minor": 3300, "fee_minor": 0} for i in range(n)]
    payouts = [{"payout_id": "po_1", "amount": 3174 * n, "currency": "usd"}]
    cpu: list[float] = []
    wall: list[float] = []
    for i in range(calls + 3):
        c, w = time.process_time(), time.perf_counter()
        result = core.reconcile(core.frames_from_records(txns, payouts, orders, [], []), core.LedgerAccounts(),
                                booked=booked)
        core.journal_by_account(result, "po_1")
        result.exceptions.to_dicts()
        result.proof.to_dicts()
        if i >= 3:
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
    assert result.proof["closed"].item(), "the small payout should close"
    return {"charges": n, "calls": calls, "cpu_ms_median": round(sorted(cpu)[calls // 2], 1),
            "cpu_ms_min": round(min(cpu), 1), "wall_ms_median": round(sorted(wall)[calls // 2], 1),
            "polars_max_threads": os.environ.get("POLARS_MAX_THREADS"), "load_1min": os.getloadavg()[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="balance transactions to generate")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated: polars,duckdb,loop")
    p.add_argument("--source", choices=("parquet", "records"), default="parquet",
                   help="what the columnar arms start from (see child())")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table for docs/performance.md")
    p.add_argument("--small", type=int, metavar="N", help="only measure one call for a payout of N charges")
    p.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child, a.data, a.source)
        return 0
    if a.small:
        print(json.dumps(small_payout(a.small)))
        return 0
    import polars as pl

    from _reconcile_data import generate
    from commerce_bridge.reconcile.job import (
        DISPUTE_SCHEMA,
        ORDER_SCHEMA,
        PAYOUT_SCHEMA,
        RETURN_SCHEMA,
        TRANSACTION_SCHEMA,
    )
    arms = [arm.strip() for arm in a.arms.split(",") if arm.strip()]
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    data = generate(a.rows, a.seed)
    gen_s = time.perf_counter() - t0
    schemas = dict(zip(TABLES, (TRANSACTION_SCHEMA, PAYOUT_SCHEMA, ORDER_SCHEMA, RETURN_SCHEMA, DISPUTE_SCHEMA),
                       strict=True))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cb-reconcile-") as tmp:
        root = Path(tmp)
        for name in TABLES:
            pl.DataFrame(getattr(data, name), schema=schemas[name]).write_parquet(root / f"{name}.parquet")
        n_txn = len(data.transactions["id"])
        injected = data.injected
        del data
        print(f"# {n_txn} balance transactions, {len(injected)} injected discrepancies, generated in "
              f"{gen_s:.1f} s; load {os.getloadavg()[0]:.2f}", file=sys.stderr)
        for arm in arms:
            out = subprocess.run([sys.executable, __file__, "--child", arm, "--data", str(root),
                                  "--source", a.source],
                                 check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"# {results[-1]}", file=sys.stderr)
        summaries = {arm: pickle.loads((root / f"summary-{arm}.pickle").read_bytes()) for arm in arms}
    first = summaries[arms[0]]
    agree = all(s.status == first.status and s.exceptions == first.exceptions and s.journal == first.journal
                and s.proof == first.proof for s in summaries.values())
    found = {(kind, ref) for kind, ref, _ in first.exceptions}
    missed, false = injected - found, found - injected
    balanced = all(p[4] == 0 for p in first.proof.values())
    loop_wall = next((r["wall_s"] for r in results if r["arm"] == "loop"), None)
    for r in results:
        r["loop_over_arm"] = round(loop_wall / r["wall_s"], 1) if loop_wall else None
    report = {"started_at": started.isoformat(timespec="seconds"), "rows": n_txn, "seed": a.seed,
              "source": a.source,
              "injected": len(injected), "missed": sorted(missed)[:10], "false": sorted(false)[:10],
              "arms_agree": agree, "every_journal_balances": balanced, "load_1min": os.getloadavg()[0],
              "arms": results}
    if a.markdown:
        print(f"{n_txn:,} balance transactions from {a.source}, seed {a.seed}, {started:%d %b %Y %H:%M} UTC, "
              f"load {os.getloadavg()[0]:.2f} (2 shared cores)\n")
        print("| arm | wall s | peak RSS MB | matched | unmatched | exceptions | loop / arm |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['arm']} | {r['wall_s']} | {r['peak_rss_mb']:.0f} | {r['matched']:,} | {r['unmatched']:,} "
                  f"| {r['exceptions']:,} | {r['loop_over_arm']} |")
        print(f"\narms agree: {agree}; injected {len(injected)}, missed {len(missed)}, false {len(false)}; "
              f"every journal balances: {balanced}")
    else:
        print(json.dumps(report, indent=2))
    return 0 if agree and not missed and not false and balanced else 1


if __name__ == "__main__":
    sys.exit(main())
