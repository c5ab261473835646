"""Ingest benchmark: verified, durably stored webhook events per second, latency and server CPU per event.

Three servers, each a separate process on its own fresh database, on SQLite and on PostgreSQL:

* ``ours``       ``commerce-bridge ingress`` (lean ASGI handler, group commit up to 256 per commit);
* ``ours-nogc``  the same with ``CB_GROUP_COMMIT_MAX_BATCH=1`` (one commit per event: no grouping);
* ``naive``      ``bench/naive_baseline.py``: Starlette + ``stripe.Webhook.construct_event`` + one
  INSERT per request in its own transaction (same durability, same table).

Per server run: a short warm-up, then saturation (closed loop, ``--connections`` keep-alive
connections, ``--duration`` s, with wrk) for events/s and server CPU ms per event, then a fixed rate
(open loop, ``--rate`` req/s, ``--duration`` s) for p50/p99 latency measured from each request's
scheduled send time. Every answer is checked: non-200s and socket errors are counted, and after
each phase the rows in the inbox must equal the 200 answers that said ``"duplicate":false``.
Each configuration runs ``--reps`` times, interleaved (ours, naive, ours-nogc, ours, ...); the
tables give the median and the spread (min-max).

    python bench/ingest.py [--quick] [--db sqlite|postgres|both] [--duration 12] [--warmup 2]
                           [--rate 500] [--connections 64] [--reps 2] [--servers ours,naive,ours-nogc]
                           [--json out.json] [--markdown] [--from-json results.json] [--profile]

Results go to ``bench/results/ingest-<UTC time>.json`` (gitignored); the exit status is 1 if any run
had an error or a failed check. Needs ``wrk`` (Debian package ``wrk``) for the saturation phase;
without it an asyncio client is used and the output says so. PostgreSQL (127.0.0.1:5432, user
postgres) is skipped with the reason printed if it cannot be reached. ``--profile`` instead runs
py-spy (in the venv) on ``ours``, under saturation and at the fixed rate, and prints where the
server's Python CPU goes. See docs/performance.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import (
    LoadResult,
    RequestFactory,
    have_wrk,
    run_open_loop,
    run_python_closed_loop,
    run_wrk,
)
from _servers import HOST, ROOT, SECRET, Database, Server, fresh_database, postgres_problem

KINDS = ("ours", "naive", "ours-nogc")
TARGET_CPU_MS = 0.25
TARGET_RATIO = 3.0
RESULTS = ROOT / "bench" / "results"
# First guesses of events/s, only to size the pre-signed request files (later runs use measured rates).
GUESS = {"ours": 12000.0, "ours-nogc": 3000.0, "naive": 2500.0}


def saturate(fac: RequestFactory, server: Server, a: argparse.Namespace, duration: float,
             expected: float) -> tuple[LoadResult, tuple[float, float]]:
    """Closed-loop load; returns the client's result and the server's (user, system) CPU s meanwhile."""
    box: dict[str, tuple[float, float]] = {}
    if have_wrk():
        res = run_wrk(fac, server.db.workdir, HOST, server.port, connections=a.connections, duration=duration,
                      expected_rate=expected, before=lambda: box.__setitem__("cpu0", server.cpu_times()))
    else:
        box["cpu0"] = server.cpu_times()
        res = run_python_closed_loop(fac, HOST, server.port, connections=a.connections, duration=duration,
                                     expected_rate=expected)
    return res, _delta(box["cpu0"], server.cpu_times())


def _delta(t0: tuple[float, float], t1: tuple[float, float]) -> tuple[float, float]:
    return t1[0] - t0[0], t1[1] - t0[1]


def run_server(kind: str, dbkind: str, a: argparse.Namespace, expected: float) -> dict[str, Any]:
    """One server on a fresh database: warm-up, saturation, fixed rate, with the stored-rows checks."""
    with fresh_database(dbkind) as db:
        server = Server(kind, db)
        try:
            return _phases(kind, dbkind, db, server, a, expected)
        finally:
            server.stop()


def _phases(kind: str, dbkind: str, db: Database, server: Server, a: argparse.Namespace,
            expected: float) -> dict[str, Any]:
    fac = RequestFactory(SECRET, HOST, server.port, secrets.token_hex(4))
    warm, _ = saturate(fac, server, a, a.warmup, expected)
    rows0, id0 = db.count_rows(), db.max_id()
    sat, (sat_user, sat_sys) = saturate(fac, server, a, a.duration, expected)
    sat_cpu = sat_user + sat_sys
    rows1, id1 = db.count_rows(), db.max_id()
    sat_commits = db.commits_since(id0)
    time.sleep(0.3)
    cpu2 = server.cpu_times()
    fixed = run_open_loop(fac, HOST, server.port, rate=a.rate, duration=a.duration)
    fixed_user, fixed_sys = _delta(cpu2, server.cpu_times())
    fixed_cpu = fixed_user + fixed_sys
    rows2 = db.count_rows()
    fixed_commits = db.commits_since(id1)
    problems = []
    for name, res, stored in (("warm-up", warm, rows0), ("saturation", sat, rows1 - rows0),
                              ("fixed rate", fixed, rows2 - rows1)):
        if stored != res.ok_new:
            problems.append(f"{name}: {stored} rows stored but {res.ok_new} answers said duplicate=false")
        if res.errors or res.ok_dup:
            problems.append(f"{name}: {res.non200} non-200, {res.socket_errors} socket errors, "
                            f"{res.ok_dup} unexpected duplicates, {res.sent} sent")
        if res.exhausted:
            problems.append(f"{name}: ran out of pre-signed requests (the rate is a lower bound)")
    stored_sat = rows1 - rows0
    return {
        "server": kind, "db": dbkind, "client": sat.tool,
        "events_per_s": sat.rate, "cpu_ms_per_event": 1000 * sat_cpu / stored_sat if stored_sat else None,
        "cpu_util": sat_cpu / sat.seconds if sat.seconds else None,
        "cpu_sys_share": sat_sys / sat_cpu if sat_cpu else None,
        "fixed_cpu_sys_share": fixed_sys / fixed_cpu if fixed_cpu else None,
        "sat": _phase_json(sat), "fixed": _phase_json(fixed),
        "events_per_commit": (stored_sat / sat_commits) if sat_commits else None,
        "fixed_events_per_commit": (fixed.ok_new / fixed_commits) if fixed_commits else None,
        "fixed_rate": a.rate, "p50_ms": fixed.percentile(50), "p99_ms": fixed.percentile(99),
        "max_ms": max(fixed.latencies_ms, default=float("nan")), "scheduler_lag_ms": fixed.lag_ms,
        "fixed_cpu_ms_per_event": 1000 * fixed_cpu / fixed.ok_new if fixed.ok_new else None,
        "errors": warm.errors + sat.errors + fixed.errors, "rows_stored": rows2,
        "rows_check": "ok" if not problems else "; ".join(problems),
    }


def _phase_json(r: LoadResult) -> dict[str, Any]:
    return {"tool": r.tool, "sent": r.sent, "ok_new": r.ok_new, "ok_dup": r.ok_dup, "non200": r.non200,
            "socket_errors": r.socket_errors, "seconds": round(r.seconds, 4), "exhausted": r.exhausted,
            "stale_connection_retries": r.stale_retries}


# ---- summary -------------------------------------------------------------------------------------
def _med(xs: list[float | None]) -> tuple[float, float, float] | None:
    vals = [x for x in xs if x is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def summarise(runs: list[dict[str, Any]], dbkind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        rs = [r for r in runs if r["db"] == dbkind and r["server"] == kind]
        if not rs:
            continue
        out[kind] = {k: _med([r[k] for r in rs]) for k in
                     ("events_per_s", "cpu_ms_per_event", "p50_ms", "p99_ms", "fixed_cpu_ms_per_event",
                      "cpu_sys_share", "events_per_commit", "fixed_events_per_commit")}
        out[kind]["errors"] = sum(r["errors"] for r in rs)
        out[kind]["rows_check"] = "ok" if all(r["rows_check"] == "ok" for r in rs) else "FAILED"
        out[kind]["runs"] = len(rs)
    if "ours" in out and "naive" in out:
        ours, naive = out["ours"], out["naive"]
        ratio = ours["events_per_s"][0] / naive["events_per_s"][0]
        cpu = ours["cpu_ms_per_event"][0]
        out["throughput_vs_naive"] = ratio
        out["throughput_target"] = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        out["cpu_target"] = "PASS" if cpu <= TARGET_CPU_MS else "FAIL"
        out["cpu_vs_naive"] = naive["cpu_ms_per_event"][0] / cpu
    if "ours" in out and "ours-nogc" in out:
        out["group_commit_throughput_ratio"] = out["ours"]["events_per_s"][0] / out["ours-nogc"]["events_per_s"][0]
        out["group_commit_cpu_ratio"] = (out["ours-nogc"]["cpu_ms_per_event"][0]
                                         / out["ours"]["cpu_ms_per_event"][0])
    return out


def _fmt(v: tuple[float, float, float] | None, digits: int) -> str:
    if v is None:
        return "-"
    med, lo, hi = v
    if lo == hi:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def table(summary: dict[str, Any], dbkind: str, a: argparse.Namespace) -> str:
    head = ("server", "events/s", "CPU ms/event", f"p50 ms @{a.rate:g}/s", f"p99 ms @{a.rate:g}/s",
            f"CPU ms/event @{a.rate:g}/s", "errors", "rows check")
    rows = [head]
    for kind in KINDS:
        s = summary.get(kind)
        if s:
            rows.append((kind, _fmt(s["events_per_s"], 0), _fmt(s["cpu_ms_per_event"], 3), _fmt(s["p50_ms"], 2),
                         _fmt(s["p99_ms"], 2), _fmt(s["fixed_cpu_ms_per_event"], 3), str(s["errors"]),
                         s["rows_check"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    runs = max((v["runs"] for v in summary.values() if isinstance(v, dict) and "runs" in v), default=0)
    lines = [f"{dbkind}: median (min-max) of {runs} run(s) each"]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if "throughput_vs_naive" in summary:
        lines.append(f"  throughput ours/naive: {summary['throughput_vs_naive']:.2f}x "
                     f"(target >= {TARGET_RATIO:g}x): {summary['throughput_target']}")
        lines.append(f"  CPU per event, ours: {summary['ours']['cpu_ms_per_event'][0]:.3f} ms "
                     f"(target <= {TARGET_CPU_MS} ms): {summary['cpu_target']}; "
                     f"naive uses {summary['cpu_vs_naive']:.1f}x as much")
    if "group_commit_throughput_ratio" in summary:
        lines.append(f"  group commit: {summary['group_commit_throughput_ratio']:.2f}x the throughput of "
                     f"one commit per event, {summary['group_commit_cpu_ratio']:.2f}x less CPU per event")
    return "\n".join(lines)


def markdown(summary: dict[str, Any], dbkind: str, a: argparse.Namespace) -> str:
    """The summary as a Markdown table (for docs/performance.md)."""
    lines = [f"| server | events/s | CPU ms/event | p50 ms @ {a.rate:g}/s | p99 ms @ {a.rate:g}/s "
             f"| CPU ms/event @ {a.rate:g}/s | events per commit | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        s = summary.get(kind)
        if s:
            epc = s["events_per_commit"]
            lines.append(f"| {kind} | {_fmt(s['events_per_s'], 0)} | {_fmt(s['cpu_ms_per_event'], 3)} "
                         f"| {_fmt(s['p50_ms'], 1)} | {_fmt(s['p99_ms'], 1)} | {_fmt(s['fixed_cpu_ms_per_event'], 3)} "
                         f"| {_fmt(epc, 1) if epc else 'n/a'} | {s['errors']} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=False)
        info["git_head"] = head.stdout.strip()
        info["src_files_changed_since_head"] = len(dirty.stdout.splitlines())
    except OSError:
        info["git_head"] = None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


# ---- profiling -----------------------------------------------------------------------------------
_GENERIC = ("main.py", "core.py", "cli.py", "threading.py", "runners.py", "_compat.py", "server.py",
            "commerce-bridge", "thread (", "base_events.py", "events.py")


def profile(dbkind: str, a: argparse.Namespace) -> None:
    """Run ``ours`` with py-spy attached (GIL holder only: where the Python CPU goes), under saturation and
    at the fixed rate; print the top functions by own and by total time."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("py-spy is not installed in the venv (pip install py-spy)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with fresh_database(dbkind) as db:
        server = Server("ours", db)
        try:
            fac = RequestFactory(SECRET, HOST, server.port, secrets.token_hex(4))
            saturate(fac, server, a, a.warmup, 2 * GUESS["ours"])
            for phase in ("saturation", "fixed"):
                raw = RESULTS / f"profile-{dbkind}-{phase}-{stamp}.txt"
                spy_proc = subprocess.Popen(
                    [str(spy), "record", "-p", str(server.pid), "--nonblocking", "--gil", "-r", "200",
                     "-d", str(int(a.duration)), "-f", "raw", "-o", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                time.sleep(1.0)
                t0 = server.cpu_times()
                if phase == "saturation":
                    res, _ = saturate(fac, server, a, a.duration - 2, 2 * GUESS["ours"])
                else:
                    res = run_open_loop(fac, HOST, server.port, rate=a.rate, duration=a.duration - 2)
                user, sys_ = _delta(t0, server.cpu_times())
                _, err = spy_proc.communicate(timeout=60)
                if spy_proc.returncode != 0 or not raw.exists():
                    print(f"py-spy failed: {err[-1000:]}")
                    return
                print(f"\nprofile of ours on {dbkind}, {phase}: {res.rate:.0f} events/s, "
                      f"{1000 * (user + sys_) / max(1, res.ok_new):.3f} CPU ms/event "
                      f"(user {user:.2f} s, system {sys_:.2f} s); py-spy samples of the GIL holder: {raw}")
                print(_top_functions(raw))
        finally:
            server.stop()


def _frame(f: str) -> str:
    if " (" not in f:
        return f
    name, loc = f.split(" (", 1)
    return f"{name} ({loc.split(':')[0].rsplit('/', 1)[-1]}"


def _top_functions(path: Path, n: int = 20) -> str:
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        samples += c
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            if not any(g in f for g in _GENERIC):
                total[f] = total.get(f, 0) + c
    if not samples:
        return "  (no samples)"
    out = [f"  {samples} samples; own time (the function itself):"]
    out += [f"    {100 * c / samples:5.1f}%  {f}" for f, c in sorted(own.items(), key=lambda x: -x[1])[:n]]
    out.append("  total time (the function and what it calls):")
    out += [f"    {100 * c / samples:5.1f}%  {f}" for f, c in sorted(total.items(), key=lambda x: -x[1])[:n]]
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs, one repetition (a smoke check)")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--duration", type=float, default=12.0, help="seconds per measured phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load per server")
    p.add_argument("--rate", type=float, default=500.0, help="fixed request rate for the latency phase")
    p.add_argument("--connections", type=int, default=64, help="connections of the saturation phase")
    p.add_argument("--reps", type=int, default=2, help="runs per configuration (interleaved)")
    p.add_argument("--servers", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--markdown", action="store_true", help="also print the summary as Markdown tables")
    p.add_argument("--from-json", type=Path, help="print the summary of an earlier results file and exit")
    p.add_argument("--profile", action="store_true", help="profile ours with py-spy instead of benchmarking")
    a = p.parse_args()
    if a.quick:
        a.duration, a.warmup, a.reps = min(a.duration, 3.0), min(a.warmup, 1.0), 1
    if a.from_json:
        doc = json.loads(a.from_json.read_text())
        for k in ("rate",):
            setattr(a, k, doc["settings"][k])
        for dbkind, summary in doc["summary"].items():
            print(table(summary, dbkind, a) + "\n")
            print(markdown(summary, dbkind, a) + "\n")
        return 0
    kinds = [k for k in KINDS if k in a.servers.split(",")]
    dbs = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    skipped: dict[str, str] = {}
    if "postgres" in dbs and (why := postgres_problem()):
        print(f"skipping PostgreSQL: {why}")
        skipped["postgres"] = why
        dbs.remove("postgres")
    if a.profile:
        for dbkind in dbs:
            profile(dbkind, a)
        return 0
    print(f"saturation client: {'wrk' if have_wrk() else 'asyncio closed loop (wrk not found; install wrk)'}; "
          f"fixed-rate client: asyncio open loop; {a.connections} connections, {a.duration:g} s phases, "
          f"{a.rate:g} req/s, {a.reps} rep(s)")
    started = datetime.now(UTC)
    runs: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    expected = dict(GUESS)
    for dbkind in dbs:
        for rep in range(a.reps):
            for kind in kinds:
                try:
                    r = run_server(kind, dbkind, a, expected[kind])
                except Exception as exc:  # one broken server run must not hide the others
                    print(f"  {dbkind:8} {kind:9} rep {rep + 1}: FAILED: {exc}", flush=True)
                    failed.append({"server": kind, "db": dbkind, "rep": rep + 1, "error": str(exc)})
                    continue
                if r["sat"]["exhausted"]:  # the request file was too short for this server: run it again
                    print(f"  {dbkind:8} {kind:9} rep {rep + 1}: ran out of requests at "
                          f"{r['events_per_s']:.0f} events/s; running it again with more", flush=True)
                    r = run_server(kind, dbkind, a, 3 * max(expected[kind], r["events_per_s"]))
                r["rep"] = rep + 1
                # Size later request files for twice the rate seen so far (never below the first guess).
                expected[kind] = max(expected[kind], 2 * r["events_per_s"])
                runs.append(r)
                print(f"  {dbkind:8} {kind:9} rep {rep + 1}: {r['events_per_s']:7.0f} events/s, "
                      f"{r['cpu_ms_per_event'] or float('nan'):.3f} CPU ms/event "
                      f"({100 * (r['cpu_util'] or 0):.0f}% of a core), p50 {r['p50_ms']:.2f} ms, "
                      f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, rows {r['rows_check']}", flush=True)
    summaries = {dbkind: summarise(runs, dbkind) for dbkind in dbs}
    print()
    for dbkind in dbs:
        print(table(summaries[dbkind], dbkind, a))
        print()
    if a.markdown:
        for dbkind in dbs:
            print(f"{dbkind}:\n\n{markdown(summaries[dbkind], dbkind, a)}\n")
    for dbkind, why in skipped.items():
        print(f"{dbkind}: skipped ({why})")
    doc = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "started_at": started.isoformat(),
           "finished_at": datetime.now(UTC).isoformat(), "machine": machine(),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "targets": {"cpu_ms_per_event_max": TARGET_CPU_MS, "throughput_vs_naive_min": TARGET_RATIO},
           "skipped": skipped, "summary": summaries, "runs": runs, "failed_runs": failed}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(doc, indent=2, default=str)
    out.write_text(text)
    print(f"results: {out}")
    if a.json:
        a.json.write_text(text)
    for f in failed:
        print(f"FAILED run: {f['db']} {f['server']} rep {f['rep']}: {f['error'][:300]}")
    bad = [r for r in runs if r["rows_check"] != "ok" or r["errors"]]
    return 1 if bad or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
