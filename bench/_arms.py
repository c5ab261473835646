"""What the arm benchmarks (``money_back.py``, ``sync_flows.py``) share: an arm's processes and its stack, its idle
CPU, a phase's per-event figures, the tables and the interleaved run loop.

An arm is the bridge (``commerce-bridge serve`` or split, ``BridgeProcesses``) or the naive script
(``NaiveProcess``), started against a fresh stack of sandbox peers (``sandbox_peers``, in this process); the
benchmarks offer their business events, then charge each arm the CPU its processes (and, on PostgreSQL, the
backends serving its database) spent per event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from _servers import fresh_database
from commerce_bridge.config import Settings
from commerce_bridge.entrypoints.demo_order_to_cash import Peers, sandbox_peers
from commerce_bridge.store.tables import dead_letters, inbox, runs
from order_to_cash import (
    ROOT,
    BridgeProcesses,
    NaiveProcess,
    PgBackends,
    _median,
    _num,
    arm_ratios,
    machine,
    pct,
    ratio_rows,
)

ARMS = ("bridge", "naive")
Results = list[dict[str, Any]]


# ---- the arm, started and watched ------------------------------------------------------------------------
class Arm:
    """The arm's processes: their CPU, and whether they are idle."""

    def __init__(self, kind: str, bridge: BridgeProcesses | None, naive: NaiveProcess | None,
                 pg: PgBackends | None) -> None:
        self.kind, self.bridge, self.naive, self.pg = kind, bridge, naive, pg

    def cpu(self) -> tuple[float, dict[int, float]]:
        own = self.bridge.cpu_s() if self.bridge else self.naive.cpu_s() if self.naive else 0.0
        return own, (self.pg.cpu() if self.pg else {})

    def idle(self) -> bool:
        if self.bridge is not None:
            with self.bridge.db.connect() as conn:
                waiting = conn.execute(select(func.count()).where(inbox.c.status == "received")).scalar_one()
                busy = conn.execute(select(func.count()).where(runs.c.status.in_(("queued", "running")))).scalar_one()
            return waiting == 0 and busy == 0
        assert self.naive is not None
        started: set[str] = set()
        ended: set[str] = set()
        for line in self.naive.events.read_bytes().splitlines():
            doc = orjson.loads(line)
            started.update([doc["start"]] if "start" in doc else [])
            ended.update([doc["end"]] if "end" in doc else [])
        return started <= ended

    def naive_errors(self) -> list[str]:
        if self.naive is None:
            return []
        return [str(d["error"]) for d in map(orjson.loads, self.naive.events.read_bytes().splitlines())
                if "error" in d]

    def open_dead_letters(self) -> int | None:
        """The bridge's open dead-letter entries (None for the naive arm)."""
        if self.bridge is None:
            return None
        with self.bridge.db.connect() as conn:
            return int(conn.execute(select(func.count()).where(dead_letters.c.status == "open")).scalar_one())


def scheduled_checks_off(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with the scheduled checks (gaps: first after 60 s, every 15 min; drift: after 5 min) off: they
    are not per-event work, and a check landing in a short run would be charged to its events (code before 7 Dec:
    absent)."""
    for name in ("gap_interval_s", "drift_interval_s"):
        if name in Settings.model_fields:
            overrides[name] = 0
    return overrides


@contextlib.contextmanager
def arm_stack(a: argparse.Namespace, dbkind: str, kind: str, rep: int, *, prefix: str, naive_script: str,
              workers: int = 1, **peer_settings: Any) -> Iterator[tuple[Peers, Arm, httpx.Client]]:
    """A fresh stack of sandbox peers (``peer_settings``: ``sandbox_peers``'s) and the arm started against it (the
    bridge as ``a.bridge`` with ``workers`` workers, on PostgreSQL a fresh database; or ``naive_script``), in
    ``a.keep``/<db>-<arm>-<rep> or a temporary folder: (the peers, the arm, a client of the Stripe emulator)."""
    with contextlib.ExitStack() as es:
        fresh = es.enter_context(fresh_database("postgres")) if dbkind == "postgres" and kind == "bridge" else None
        workdir = Path(a.keep) / f"{dbkind}-{kind}-{rep}" if a.keep else Path(
            es.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        workdir.mkdir(parents=True, exist_ok=True)
        st = es.enter_context(sandbox_peers(database_url=fresh.url if fresh else None, workdir=workdir,
                                            **peer_settings))
        bridge = naive = pg = None
        if kind == "bridge":
            bridge = BridgeProcesses(st.settings, st.bridge_port, workdir, a.bridge, workers)
            es.callback(bridge.stop)
            bridge.start()
            if fresh is not None and fresh.pg_name:
                pg = PgBackends(fresh.pg_name)
                es.callback(pg.close)
        else:
            naive = NaiveProcess(st.settings, st.bridge_port, workdir, script=naive_script)
            es.callback(naive.stop)
            naive.start()
        stripe = es.enter_context(httpx.Client(base_url=st.urls["Stripe emulator"], timeout=30))
        yield st, Arm(kind, bridge, naive, pg), stripe


def idle_cpu(arm: Arm, seconds: float, calls: Callable[[float, float], dict[str, Any]]) -> dict[str, Any]:
    """``seconds`` of the arm's idle CPU (and on PostgreSQL its backends'), in cores, and ``calls(t0, t1)``."""
    i0, pg0 = arm.cpu()
    t_idle = time.monotonic()
    time.sleep(seconds)
    i1, pg1 = arm.cpu()
    t_idle1 = time.monotonic()
    idle: dict[str, Any] = {"s": t_idle1 - t_idle,
                            "cpu_s": i1 - i0 + (PgBackends.delta(pg0, pg1) if arm.pg else 0.0)}
    idle["cores"] = idle["cpu_s"] / idle["s"]
    idle["calls"] = calls(t_idle, t_idle1)
    return idle


# ---- a phase -------------------------------------------------------------------------------------------
def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def wait_events(events: Sequence[Any], drain: float, halt: threading.Event,
                watcher: threading.Thread) -> tuple[float, float]:
    """After the offer: wait (at most ``drain`` s) until every event without an error is done (``done`` set by
    ``watcher``), then stop the watcher: (the offer's end, the deadline), monotonic."""
    t_offered = time.monotonic()
    deadline = t_offered + drain
    while time.monotonic() < deadline and any(math.isnan(ev.done) for ev in events if not ev.error):
        time.sleep(0.1)
    halt.set()
    watcher.join(30)
    return t_offered, deadline


def per_event(cpu: float, idle: dict[str, Any], seconds: float, n: int, calls: dict[str, Any],
              latency: list[float]) -> dict[str, Any]:
    """A phase's figures per business event (``n`` done, at least 1) over its ``seconds``: CPU with and without
    the idle cost, HTTP calls (per peer, in all; the pollers' lists per second) and the latency percentiles."""
    idle_rate = idle["cpu_s"] / idle["s"]
    return {
        "cpu_ms_per_event": 1000 * cpu / n,
        "cpu_ms_per_event_minus_idle": 1000 * (cpu - idle_rate * seconds) / n,
        "http_calls": calls, "http_calls_per_event": {k: v / n for k, v in calls["by_peer"].items()},
        "http_calls_per_event_total": sum(calls["by_peer"].values()) / n,
        "polls_per_s": calls["polls"] / seconds,
        "latency_p50_s": pct(latency, 50), "latency_p99_s": pct(latency, 99),
    }


# ---- output ---------------------------------------------------------------------------------------------
def arms_table(results: Results, arm_label: Callable[[dict[str, Any]], str] = lambda r: str(r["arm"]),
               flow_label: Callable[[dict[str, Any]], str] = lambda p: str(p["flow"])) -> str:
    """One line per arm, repetition and flow (``arm_label(result)``, ``flow_label(phase)``)."""
    head = ("| db | arm | rep | flow | done / offered | p50 / p99 s | idle CPU (cores) | CPU ms/event | minus idle "
            "| HTTP calls/event: Stripe + Clarity + ERP (+ polls/s) | machine busy (cores) | all checked |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        arm = arm_label(r)
        for p in r["phases"]:
            per = p["http_calls_per_event"]
            lines.append(
                f"| {r['db']} | {arm} | {r['rep']} | {flow_label(p)} | {p['done']}/{p['events']} "
                f"| {_num(p['latency_p50_s'], '.2f')} / {_num(p['latency_p99_s'], '.2f')} "
                f"| {r['idle']['cores']:.3f} | {p['cpu_ms_per_event']:.0f} | {p['cpu_ms_per_event_minus_idle']:.0f} "
                f"| {per['stripe']:.1f} + {per['clarity']:.1f} + {per['erp']:.1f} = "
                f"{p['http_calls_per_event_total']:.1f} (+ {p['polls_per_s']:.1f}/s) "
                f"| {p['machine_busy_cores']:.2f} | {'yes' if p['complete'] else 'NO'} |")
    return "\n".join(lines)


def flow_summary(results: Results, flows: Sequence[str],
                 more: Callable[[dict[str, Any], str, list[tuple[str, dict[str, Any]]]], None] | None = None
                 ) -> Results:
    """Per database and flow: each arm's CPU per event (every rep, the median) and the ratio of the medians,
    with and without the idle cost; calls per event; then ``more(summary, flow, [(arm, phase)])``."""
    out = []
    for db in dict.fromkeys(r["db"] for r in results):
        for flow in flows:
            rows = [(r["arm"], p) for r in results if r["db"] == db for p in r["phases"] if p["flow"] == flow]
            if not rows:
                continue
            s: dict[str, Any] = {"db": db, "flow": flow, "complete": all(p["complete"] for _, p in rows)}
            for key, name in (("cpu_ms_per_event", "gross"), ("cpu_ms_per_event_minus_idle", "net")):
                s.update(arm_ratios({arm: [p[key] for k, p in rows if k == arm and p["done"]] for arm in ARMS}, name))
            s["calls_per_event"] = {arm: _median([p["http_calls_per_event_total"] for k, p in rows if k == arm])
                                    for arm in ARMS}
            if more is not None:
                more(s, flow, rows)
            out.append(s)
    return out


def ratio_table(rows: Results) -> str:
    head = ("| db | flow | bridge CPU ms/event | naive | ratio | bridge minus idle | naive minus idle "
            "| ratio minus idle | HTTP calls/event bridge / naive |")
    return ratio_rows(head, rows, lambda s: f"{s['db']} | {s['flow']}" + (
        "" if s["complete"] else " (incomplete: see JSON)"), "calls_per_event")


def run_all(a: argparse.Namespace, dbs: list[str], arms: list[str], *, name: str,
            announce: Callable[[str, str, int], str], run_arm: Callable[[str, str, int], dict[str, Any]],
            table: Callable[[Results], str], summary: Callable[[Results], Results],
            ratio_tables: Callable[[Results], list[str]]) -> int:
    """Each arm ``a.reps`` times per database, interleaved (bridge, naive, bridge, naive, ...): ``announce`` and
    ``run_arm`` take (db, arm, rep); after each run its table line (without ``--markdown``) and everything so far in
    ``bench/results/<name>-<UTC time>.json``; at the end the tables (with both arms, ``ratio_tables(summary)``).
    0 when every phase is complete, else 1."""
    started = datetime.now(UTC)
    info = machine()
    out = ROOT / "bench" / "results" / f"{name}-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    results: Results = []
    for db in dbs:
        for rep in range(1, a.reps + 1):
            for kind in arms:
                print(announce(db, kind, rep), flush=True)
                results.append(run_arm(db, kind, rep))
                if not a.markdown:
                    print("\n".join(table(results[-1:]).splitlines()[2:]), flush=True)
                out.write_text(json.dumps({"started": started.isoformat(), "finished": datetime.now(UTC).isoformat(),
                                           "args": vars(a), "machine": info, "results": results,
                                           "summary": summary(results)}, indent=1, default=str))
    print()
    print(table(results))
    if len(arms) == 2:
        for text in ratio_tables(summary(results)):
            print()
            print(text)
    print(f"\n{started:%Y-%m-%d %H:%M}-{datetime.now(UTC):%H:%M} UTC; written: {out.relative_to(ROOT)}")
    return 0 if all(p["complete"] for r in results for p in r["phases"]) else 1
