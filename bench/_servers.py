"""Servers under test for the ingest benchmark: fresh databases, server processes, CPU and row counts.

Each server runs as its own process on a free loopback port against a fresh database that
``commerce-bridge db upgrade`` created (so ours and the naive baseline write the same ``inbox`` table):

* SQLite: a new file in a temporary directory (WAL, ``synchronous=FULL`` in both servers).
* PostgreSQL: a new database ``cbbench_<random>`` on 127.0.0.1:5432 (user postgres), created from the
  ``test`` database and dropped afterwards.

CPU time is the process's utime + stime from ``/proc/<pid>/stat`` (all its threads included).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
SECRET = "whsec_bench_" + "k" * 32
TICK = os.sysconf("SC_CLK_TCK")


def pid_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_http_ready(proc: subprocess.Popen[bytes], url: str, deadline: float, what: str) -> None:
    """Until ``url`` answers 200 (monotonic ``deadline``); RuntimeError naming ``what`` if ``proc`` exits first."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready at {url}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def postgres_problem() -> str | None:
    """None if the PostgreSQL server is usable, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL on 127.0.0.1:5432 is not usable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    return None


@dataclass
class Database:
    """One fresh database for one server run."""

    kind: str  # "sqlite" | "postgres"
    url: str  # SQLAlchemy URL
    workdir: Path
    pg_name: str | None = None

    def count_rows(self) -> int:
        return self._one("SELECT count(*) FROM inbox")

    def max_id(self) -> int:
        return self._one("SELECT coalesce(max(id), 0) FROM inbox")

    def commits_since(self, after_id: int) -> int | None:
        """PostgreSQL only: transactions that inserted the rows with id > ``after_id`` (distinct xmin)."""
        if self.kind != "postgres":
            return None
        return self._one(f"SELECT count(DISTINCT xmin::text) FROM inbox WHERE id > {int(after_id)}")

    def _one(self, sql: str) -> int:
        if self.kind == "sqlite":
            lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30)
            try:
                return int(lite.execute(sql).fetchone()[0])
            finally:
                lite.close()
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={self.pg_name}") as pg:
            row = pg.execute(sql).fetchone()
            return int(row[0]) if row else 0


@contextlib.contextmanager
def fresh_database(kind: str) -> Iterator[Database]:
    """A new, migrated database; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cbbench-") as tmp:
        work = Path(tmp)
        if kind == "sqlite":
            db = Database(kind, f"sqlite:///{work / 'bridge.sqlite'}", work)
            _upgrade(db)
            yield db
            return
        import psycopg

        name = "cbbench_" + secrets.token_hex(6)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            if os.environ.get("BENCH_PG_LOG_STATEMENTS"):  # every statement in the server's log (counting them)
                conn.execute(f'ALTER DATABASE "{name}" SET log_statement = \'all\'')
        db = Database(kind, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", work, name)
        try:
            _upgrade(db)
            yield db
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(db: Database, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
    # cwd is the temporary directory, so no stray ./commerce-bridge.toml is read.
    env.update(CB_DATABASE_URL=db.url, CB_STRIPE_WEBHOOK_SECRETS=SECRET, CB_LOG_LEVEL="WARNING", **extra)
    return env


def _upgrade(db: Database) -> None:
    out = subprocess.run([str(BIN / "commerce-bridge"), "db", "upgrade"], cwd=db.workdir, env=_env(db),
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"commerce-bridge db upgrade failed: {out.stdout}\n{out.stderr}")


class Server:
    """A server process on a free port; ``kind`` is ours, ours-nogc or naive."""

    def __init__(self, kind: str, db: Database) -> None:
        self.kind = kind
        self.db = db
        self.port = free_port()
        self._log = (db.workdir / f"{kind}.log").open("w+")
        if kind == "naive":
            cmd = [sys.executable, str(ROOT / "bench" / "naive_baseline.py"), "--host", HOST,
                   "--port", str(self.port), "--database-url", db.url, "--secret", SECRET]
            env = _env(db)
        else:
            cmd = [str(BIN / "commerce-bridge"), "ingress", "--host", HOST, "--port", str(self.port)]
            env = _env(db, CB_GROUP_COMMIT_MAX_BATCH="1" if kind == "ours-nogc" else "256")
        self.proc = subprocess.Popen(cmd, cwd=db.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        try:
            wait_http_ready(self.proc, f"http://{HOST}:{self.port}/healthz", time.monotonic() + timeout,
                            f"{self.kind} server")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.log_tail()}") from None
        self.stop()
        raise RuntimeError(f"{self.kind} server did not become ready in {timeout} s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process, every thread included."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15, in clock ticks.
        return int(fields[11]) / TICK, int(fields[12]) / TICK

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def log_tail(self, chars: int = 2000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
