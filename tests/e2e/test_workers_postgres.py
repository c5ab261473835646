"""Scale-out on PostgreSQL: separate ingress and worker processes sharing one database.

(a) two workers split the runs and no step runs twice in normal operation;
(b) kill -9 of a worker holding runs in flight: a survivor resumes exactly those runs once the dead
    worker's lease has expired (never while it is alive: the takeover's own time is checked against
    the kill and the lease), and ``commerce-bridge workers recover`` does it on demand;
(c) a per-destination limit of R calls per second holds across two workers, measured at the receiver;
plus the crash test of 1,000 events with duplicates, with the ingress and a worker killed mid-burst.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commerce_bridge.sandbox.runner import PeerServer
from tests.e2e.test_crash_recovery import (
    check_exactly_once,
    db_state,
    dbos_workflows,
    run_burst,
    runs_in_flight,
    wait_for_runs_in_flight,
    wait_processed,
)
from tests.support.arrivals import ArrivalsReceiver
from tests.support.processes import BridgeProcess, bridge_env, cli, free_port, migrate
from tests.support.senders import SendLog, burst_plan, send_all

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "whsec_e2e_crash"


class Cluster:
    """An ingress and N workers on one PostgreSQL database."""

    def __init__(self, db_url: str, tmp: Path, **settings: Any) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.settings = {**dict(database_url=db_url, stripe_webhook_secrets=SECRET, admin_tokens="t", audit_runs="true",
                                lease_s=3, heartbeat_interval_s=0.5, takeover_grace_s=1, worker_concurrency=8),
                         **settings}
        self.env = bridge_env(**self.settings)
        migrate(self.env, tmp)
        self.procs: list[BridgeProcess] = []

    def ingress(self) -> BridgeProcess:
        p = BridgeProcess(["ingress"], self.env, self.tmp, "ingress", port=free_port()).start()
        self.procs.append(p)
        return p

    def worker(self, worker_id: str, **extra: Any) -> BridgeProcess:
        env = bridge_env(**{**self.settings, **extra})
        p = BridgeProcess(["worker", "--worker-id", worker_id], env, self.tmp, worker_id, port=free_port()).start()
        self.procs.append(p)
        return p

    def executors(self) -> dict[str, int]:
        eng = create_engine(self.db_url)
        with eng.connect() as conn:
            rows = conn.execute(text(
                "SELECT executor_id, count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' GROUP BY executor_id"
            )).all()
        eng.dispose()
        return {r[0]: r[1] for r in rows}

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture
def cluster_factory(pg_database_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**settings: Any) -> Cluster:
        c = Cluster(pg_database_url, tmp_path, **settings)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def send(url: str, ids: list[str], log: SendLog) -> None:
    asyncio.run(send_all(f"{url}/webhooks/stripe", SECRET, ids, log, concurrency=16))


def test_two_workers_split_the_runs_and_no_step_runs_twice(cluster_factory: Any) -> None:
    cluster = cluster_factory()
    ingress = cluster.ingress()
    cluster.worker("w-a")
    cluster.worker("w-b")
    ids = burst_plan(400, 0.0, seed=1, prefix="a")
    log = SendLog()
    send(ingress.url, ids, log)
    assert log.acked_ids == set(ids)
    state = wait_processed(cluster.db_url, len(ids))
    assert set(state["audit"]) == set(ids)
    assert set(state["audit"].values()) == {1}, "no step ran twice"
    split = cluster.executors()
    assert set(split) == {"w-a", "w-b"} and min(split.values()) > len(ids) * 0.2, split


LEASE_S, HEARTBEAT_S, GRACE_S = 4.0, 0.5, 1.0


def test_survivor_resumes_a_dead_workers_runs_only_after_its_lease_expires(cluster_factory: Any) -> None:
    # A slow destination keeps runs in flight, so the victim dies holding some. The survivor runs
    # beside it from the start: it must leave a live worker's runs alone, whatever its own timing.
    receiver = Receiver(delay_s=0.2)
    with receiver.server() as srv:
        url = srv.url
        cluster = cluster_factory(outbound_webhook_url=f"{url}/hook", lease_s=LEASE_S,
                                  heartbeat_interval_s=HEARTBEAT_S, takeover_grace_s=GRACE_S)
        ingress = cluster.ingress()
        survivor = cluster.worker("w-survivor")
        victim = cluster.worker("w-victim")
        ids = burst_plan(120, 0.0, seed=2, prefix="b")
        send(ingress.url, ids, SendLog())
        wait_for_runs_in_flight(cluster.db_url, "w-victim")  # a fixed sleep sometimes killed it holding none
        victim.kill9()
        killed_at = time.time()
        held = runs_in_flight(cluster.db_url, "w-victim")
        assert held, "the victim held runs in flight when it was killed"
        assert _worker_row(cluster.db_url, "w-victim")["status"] == "alive", "taken over while it was alive"
        state = wait_processed(cluster.db_url, len(ids), timeout=120)
        assert set(state["audit"]) == set(ids)
        row = _worker_row(cluster.db_url, "w-victim")
        assert row["status"] == "recovered" and row["recovered_by"] == "w-survivor"
        assert row["recovered_runs"] == len(held)  # exactly the runs it died holding...
        after = dbos_workflows(cluster.db_url)
        assert {w: after.get(w) for w in held} == dict.fromkeys(held, "SUCCESS")  # ...and they finished
        assert _first_log_time(survivor, "engine.took_over") is not None
        # The takeover itself (the survivor's claim of the dead worker, recovered_at), timed from the kill:
        # the victim's last heartbeat came at most HEARTBEAT_S before the kill, its lease ran LEASE_S from
        # there, and the survivor waits GRACE_S more. It came only after the lease the table recorded.
        took_over_at = _epoch(row["recovered_at"])
        assert took_over_at >= float(row["lease_expires_at"]) + GRACE_S
        assert took_over_at - killed_at >= LEASE_S - HEARTBEAT_S + GRACE_S, took_over_at - killed_at
        assert took_over_at - killed_at < LEASE_S + GRACE_S + 30  # and not long after (generous bound)
        # Every forwarded event reached the receiver; a step interrupted by the kill may repeat once,
        # and the receiver sees the same Idempotency-Key then.
        keys = receiver.keys()
        assert {k.split(":")[1] for k in keys} == set(ids)
        assert max(keys.values()) <= 2


def test_recover_command_refuses_a_live_lease_and_resumes_on_demand(cluster_factory: Any) -> None:
    receiver = Receiver(delay_s=0.3)
    with receiver.server() as srv:
        url = srv.url
        # A long lease: no automatic takeover during the test.
        cluster = cluster_factory(outbound_webhook_url=f"{url}/hook", lease_s=120)
        ingress = cluster.ingress()
        victim = cluster.worker("w-gone")
        ids = burst_plan(60, 0.0, seed=3, prefix="c")
        send(ingress.url, ids, SendLog())
        wait_for_runs_in_flight(cluster.db_url, "w-gone")
        victim.kill9()
        held = runs_in_flight(cluster.db_url, "w-gone")
        assert held, "the victim held runs in flight when it was killed"
        cluster.worker("w-alive")
        refused = cli(cluster.env, "workers", "recover", "w-gone")
        assert refused.returncode == 1 and "live lease" in refused.stderr
        done = cli(cluster.env, "workers", "recover", "w-gone", "--force")
        assert done.returncode == 0, done.stderr
        resumed = re.search(r"resumed (\d+) run", done.stdout)
        assert resumed is not None, done.stdout
        assert int(resumed.group(1)) == len(held) > 0  # the runs it died holding, no more, no fewer
        state = wait_processed(cluster.db_url, len(ids), timeout=120)
        assert set(state["audit"]) == set(ids)
        after = dbos_workflows(cluster.db_url)
        assert {w: after.get(w) for w in held} == dict.fromkeys(held, "SUCCESS")
        assert _worker_row(cluster.db_url, "w-gone")["recovered_runs"] == len(held)
        listing = cli(cluster.env, "workers", "list", "--json")
        assert '"w-gone"' in listing.stdout and '"recovered"' in listing.stdout


def test_rate_limit_holds_across_two_workers_at_the_receiver(cluster_factory: Any, tmp_path: Path) -> None:
    rate = 20
    # the receiver stamps arrivals in a process of its own: in the test's process, a stall of its event loop
    # (the test sending the burst, polling the database) stamped calls that came apart at one moment
    with ArrivalsReceiver(tmp_path) as receiver:
        cluster = cluster_factory(outbound_webhook_url=f"{receiver.url}/hook", rate_limits=f'{{"outbound": {rate}}}')
        ingress = cluster.ingress()
        cluster.worker("w-r1")
        cluster.worker("w-r2")
        ids = burst_plan(200, 0.0, seed=4, prefix="d")
        send(ingress.url, ids, SendLog())
        wait_processed(cluster.db_url, len(ids), timeout=120)
        stamps = receiver.arrivals()
        assert len(stamps) == len(ids)
        worst = max_in_window(stamps, 1.0)
        assert worst <= rate, f"{worst} calls in one second (limit {rate})"
        # and the limit is used, not just respected: the 200 calls took about 200/rate seconds
        assert stamps[-1] - stamps[0] >= (len(ids) - 1) / rate * 0.9
        assert set(cluster.executors()) >= {"w-r1", "w-r2"}


def test_two_workers_and_ingress_survive_kill_9_mid_burst(cluster_factory: Any) -> None:
    cluster = cluster_factory()
    ingress = cluster.ingress()
    w1 = cluster.worker("w-1")
    cluster.worker("w-2")
    ids = burst_plan(1000, 0.10, seed=5, prefix="e")
    log = SendLog()
    held: set[str] = set()

    def kill_both() -> None:
        # frozen (SIGSTOP), w-1 cannot finish what it holds while that is read: on a loaded machine its runs could
        # all end between a look and the kill, and the test would prove nothing. Read before w-2 may take over
        # (lease 3 s + grace); nothing held: let it go on and look again.
        assert w1.proc is not None
        for _ in range(50):
            wait_for_runs_in_flight(cluster.db_url, "w-1")
            os.kill(w1.proc.pid, signal.SIGSTOP)
            held.update(runs_in_flight(cluster.db_url, "w-1"))
            if held:
                break
            os.kill(w1.proc.pid, signal.SIGCONT)
        w1.kill9()
        ingress.kill9()

    run_burst(f"{ingress.url}/webhooks/stripe", ids, log, kill_after=450, victim=kill_both)
    assert log.failed
    assert held, "w-1 held runs in flight when it was killed"
    acked_before = set(log.acked_ids)
    ingress.start()
    stored = set(db_state(cluster.db_url)["inbox"])
    assert acked_before <= stored
    state = wait_processed(cluster.db_url, len(stored), timeout=240)
    assert set(state["audit"]) == stored
    run_burst(f"{ingress.url}/webhooks/stripe", sorted(set(ids) - acked_before), log, kill_after=None, victim=None)
    state = wait_processed(cluster.db_url, len(set(ids)), timeout=240)
    check_exactly_once(state, set(ids), log)
    row = _worker_row(cluster.db_url, "w-1")
    assert (row["status"], row["recovered_by"], row["recovered_runs"]) == ("recovered", "w-2", len(held))
    after = dbos_workflows(cluster.db_url)
    assert {w: after.get(w) for w in held} == dict.fromkeys(held, "SUCCESS")


# ---- helpers ------------------------------------------------------------------------------------
class Receiver:
    """An outbound-webhook receiver recording arrival times and idempotency keys."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.arrivals: list[float] = []
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()

    def keys(self) -> dict[str, int]:
        with self._lock:
            return dict(self._keys)

    def server(self) -> PeerServer:
        async def hook(request: Request) -> JSONResponse:
            now = time.time()
            key = request.headers.get("idempotency-key", "")
            with self._lock:
                self.arrivals.append(now)
                self._keys[key] = self._keys.get(key, 0) + 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return JSONResponse({"ok": True})

        return PeerServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))


def max_in_window(stamps: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _worker_row(db_url: str, executor_id: str) -> dict[str, Any]:
    eng = create_engine(db_url)
    with eng.connect() as conn:
        row = conn.execute(text("SELECT * FROM workers WHERE executor_id = :e"), {"e": executor_id}).mappings().one()
    eng.dispose()
    return dict(row)


def _epoch(value: Any) -> float:
    """A ``workers`` timestamp as epoch seconds (the column is UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _first_log_time(proc: BridgeProcess, event: str) -> str | None:
    for line in proc.log().splitlines():
        if event in line:
            return line
    return None
