"""Backfill benchmark: N Clarity accounts synced into Stripe and ERPNext by ``backfill customers --from clarity``.

Issue 14, point 5. The Clarity simulator, the Stripe emulator and the ERPNext simulator run in this process
(threads, real HTTP on loopback); ``--accounts`` accounts, each with a billing contact (e-mail, phone, US
address), are seeded through ``POST /_sandbox/accounts``; then ``commerce-bridge backfill customers --from
clarity --json`` runs as a subprocess on a fresh SQLite file (or ``--database postgres``: a new database on
127.0.0.1:5432). While it runs, the backfill process's resident memory (``VmRSS`` in ``/proc``) is sampled
every 0.1 s, and its progress read from its durable cursor; the report gives the RSS when 10 %, 50 % and
100 % of the pages were done, the peak (``VmHWM``), the wall time, customers per second (overall, and over the
first 10 % of the pages, 10-50 % and the second half: the first includes the process's start-up) and the backfill
process's own CPU per customer (its rusage; the simulators' CPU is not in it). Flat memory and flat throughput are
the claim: the backfill holds one page of ids and ``--concurrency`` (4) customers at a time, whatever the count.

The simulators index the look-ups a backfill makes (the Stripe emulator's customer search, the ERPNext
simulator's ``=`` and ``in`` filters, the Clarity simulator's CustomKey and account contacts; an unfiltered Clarity
page is sorted once per change of the store), so their time per customer does not grow with the count
(``tests/integration/sandbox/test_sim_indexes.py`` checks the indexes against the scans).

Every account is new to Stripe and ERPNext, so each one is created in both (the first-sync path, the
slowest); ``--again`` runs the backfill a second time and reports that run as well (every customer
unchanged: reads only).

The simulators are local, so the bridge's rate limits (default Stripe 25/s, Clarity and ERPNext 20/s) are
raised by ``--rate-limits`` (default 1000/s each) to measure the bridge and not the limiter; with the
defaults, ERPNext's 20 calls/s bound a first sync to under 2 customers/s (about 12 ERPNext calls each).

    .venv/bin/python bench/backfill.py --accounts 5000 [--concurrency 1]
    .venv/bin/python bench/backfill.py --accounts 100000 --again
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER  # noqa: E402
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity  # noqa: E402
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp  # noqa: E402
from commerce_bridge.sandbox.runner import PeerServer  # noqa: E402
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe  # noqa: E402

CLI = [sys.executable, "-m", "commerce_bridge.entrypoints.cli"]
CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PAGE = 100


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"cbbench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cursor_page(url: str) -> int:
    """The backfill's cursor (pages done), read from its database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT cursor FROM poll_cursors WHERE name = 'backfill.customers.clarity'")).first()
    except Exception:
        return 0
    finally:
        engine.dispose()
    return int(json.loads(row[0]).get("position") or 0) if row else 0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_backfill(env: dict[str, str], url: str, pages: int, concurrency: int) -> dict[str, Any]:
    started, cpu_before = time.monotonic(), _children_cpu_s()
    proc = subprocess.Popen([*CLI, "backfill", "customers", "--from", "clarity", "--json", "--restart",
                             "--page-size", str(PAGE), "--concurrency", str(concurrency)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marks: dict[str, int | None] = {"10%": None, "50%": None}
    reached: dict[str, float] = {}  # when the cursor passed 10 % and 50 % of the pages (seconds from the start)
    samples: list[int] = []
    last_rss = peak = 0
    next_cursor_read = 0.0
    while proc.poll() is None:
        rss = status_kb(proc.pid, "VmRSS")
        hwm = status_kb(proc.pid, "VmHWM")
        if rss:
            last_rss, peak = rss, max(peak, hwm or rss)
            samples.append(rss)
        if time.monotonic() >= next_cursor_read:
            done = cursor_page(url)
            for label, share in (("10%", 0.1), ("50%", 0.5)):
                if marks[label] is None and done >= max(1, int(pages * share)):
                    marks[label] = last_rss
                    reached[label] = time.monotonic() - started
            next_cursor_read = time.monotonic() + 0.5
        time.sleep(0.1)
    out, err = proc.communicate()
    wall, cpu = time.monotonic() - started, _children_cpu_s() - cpu_before
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"backfill exited {proc.returncode}: {err.decode()[-2000:]}")
    summary = json.loads(out)
    # customers per second in the first 10 %, from 10 to 50 % and in the second half: flat when no look-up (ours
    # or the simulators') grows with the count
    n, bounds = summary["seen"], [0.0, reached.get("10%"), reached.get("50%"), wall]
    shares = [0.0, 0.1, 0.5, 1.0]
    rates = {}
    for label, i in (("0-10%", 0), ("10-50%", 1), ("50-100%", 2)):
        t0, t1 = bounds[i], bounds[i + 1]
        if t0 is not None and t1 is not None and t1 > t0:
            rates[label] = round(n * (shares[i + 1] - shares[i]) / (t1 - t0), 1)
    return {"summary": {k: v for k, v in summary.items() if k != "failures"}, "customers_per_s_by_share": rates,
            "failures": summary.get("failures", [])[:5], "wall_s": round(wall, 1),
            "customers_per_s": round(summary["seen"] / summary["elapsed_s"], 1) if summary["elapsed_s"] else None,
            "bridge_cpu_ms_per_customer": round(1000 * cpu / summary["seen"], 2) if summary["seen"] else None,
            "rss_mb": {"10%": _mb(marks["10%"]), "50%": _mb(marks["50%"]), "100%": _mb(last_rss),
                       "peak": _mb(peak), "samples": len(samples)}}


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--rate-limits", default='{"stripe": 1000, "clarity": 1000, "erp": 1000}')
    ap.add_argument("--again", action="store_true", help="run a second backfill (every customer unchanged)")
    ap.add_argument("--concurrency", type=int, default=4, help="the backfill's --concurrency (customers at once)")
    args = ap.parse_args()
    pages = -(-args.accounts // PAGE)
    erp_key, erp_secret = "bench-key", "bench-secret"
    with (tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp)) as url,
          PeerServer(build_clarity()) as clarity, PeerServer(build_stripe()) as stripe,
          PeerServer(build_erp(api_key=erp_key, api_secret=erp_secret)) as erp):
        t = time.monotonic()
        seeded = httpx.post(f"{clarity.url}/_sandbox/accounts", json={"count": args.accounts, "prefix": "BENCH"},
                            timeout=600).json()
        print(f"seeded {seeded['created']} accounts in {time.monotonic() - t:.1f} s", file=sys.stderr)
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CB_")}
        env.update({"CB_DATABASE_URL": url, "CB_STRIPE_API_KEY": "sk_test_bench", "CB_STRIPE_API_BASE": stripe.url,
                    "CB_CLARITY_BASE_URL": clarity.url + CLARITY_BASE, "CB_CLARITY_USER": DEFAULT_USER,
                    "CB_CLARITY_PASSWORD": DEFAULT_PASSWORD, "CB_ERP_BASE_URL": erp.url, "CB_ERP_API_KEY": erp_key,
                    "CB_ERP_API_SECRET": erp_secret, "CB_RATE_LIMITS": args.rate_limits, "CB_LOG_LEVEL": "WARNING"})
        up = subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, text=True)
        if up.returncode != 0:
            raise RuntimeError(up.stderr)
        report: dict[str, Any] = {"accounts": args.accounts, "database": args.database, "pages": pages,
                                  "concurrency": args.concurrency,
                                  "first": run_backfill(env, url, pages, args.concurrency)}
        if args.again:
            report["again"] = run_backfill(env, url, pages, args.concurrency)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
