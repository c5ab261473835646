"""``commerce-bridge dev`` as a person runs it: one command, the peers and the bridge wired both ways.

``dev --no-live`` runs as a subprocess on free ports with a temporary data folder; the test reads only
what it prints (the export lines, the bridge's URL and pid), places an order with those settings
(``sandbox order``, through the Clarity simulator's storefront), sees the order's runs succeed in
``dev``'s output and through the admin API, then presses Ctrl-C: ``dev`` exits 0 within seconds and
leaves no ``serve`` behind. A port in use is refused before anything starts, naming the option.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import CLI, bridge_env, cli

pytestmark = pytest.mark.slow
FREE_PORTS = ["--port", "0", "--stripe-port", "0", "--clarity-port", "0", "--erp-port", "0", "--mail-port", "0",
              "--smtp-port", "0"]


class Dev:
    """A running ``commerce-bridge dev`` and every line it printed so far (stdout and stderr)."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen([*CLI, "dev", "--no-live", *FREE_PORTS, "--data-dir", str(data_dir)],
                                     env=bridge_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)  # the test's Ctrl-C is the one sent below
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line (printed so far or later) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                found = re.search(pattern, line)
                if found:
                    return found
            seen = len(self.lines)
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-60:])) from None
            if line is None:
                raise AssertionError(f"dev exited ({self.proc.wait()}) before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)

    def exports(self) -> dict[str, str]:
        pairs = [shlex.split(line.strip().removeprefix("export "))[0] for line in self.lines
                 if line.startswith("  export CB_")]
        return dict(pair.split("=", 1) for pair in pairs)

    def output(self) -> str:
        try:
            while (line := self._queue.get(timeout=5)) is not None:
                self.lines.append(line)
        except queue.Empty:
            pass
        return "\n".join(self.lines)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[Dev, int]]:
    """``dev`` started and ready, with its serve's pid; on teardown nothing of it is left running."""
    d = Dev(tmp_path / "dev")
    serve_pid = 0
    try:
        d.wait_for(r"^Ready\. Ctrl-C stops the bridge and the peers\.$", timeout=60)
        serve_pid = int(d.wait_for(r"\(commerce-bridge serve, pid (\d+)\)", timeout=1).group(1))
        yield d, serve_pid
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        if serve_pid and _alive(serve_pid):
            os.kill(serve_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_dev_wires_peers_and_bridge_and_stops_cleanly_on_ctrl_c(dev: tuple[Dev, int], tmp_path: Path) -> None:
    d, serve_pid = dev
    exports = d.exports()
    bridge_url = "http://127.0.0.1:" + d.wait_for(r"^  commerce-bridge serve --port (\d+)$", timeout=1).group(1)
    assert httpx.get(f"{bridge_url}/readyz").status_code == 200
    # the printed exports are the env file's, and they are the bridge's whole configuration
    env_file = (tmp_path / "dev" / "env.sh").read_text()
    assert all(f"export {k}={shlex.quote(v)}" in env_file for k, v in exports.items())
    assert {"CB_DATABASE_URL", "CB_ADMIN_TOKENS", "CB_STRIPE_WEBHOOK_SECRETS", "CB_CLARITY_BASE_URL",
            "CB_ERP_BASE_URL"} <= exports.keys()
    d.wait_for(r"^Not passed to the bridge \(set in this shell\): CB_LOG_LEVEL$", timeout=1)  # bridge_env() sets it
    assert "CB_LOG_LEVEL" not in exports

    # a person's second shell: the exports, then one order at the storefront, followed to the ERP
    order = cli({**bridge_env(), **exports}, "sandbox", "order", "--currency", "EUR", "--amount", "42.00",
                timeout=90)
    assert order.returncode == 0, order.stdout + order.stderr
    assert "paid: order WEB-" in order.stdout, order.stdout
    assert "Stripe    PaymentIntent pi_" in order.stdout and "ERPNext   Sales Order" in order.stdout

    # dev printed the order's runs as they happened
    d.wait_for(r"^run    clarity\.order_to_cash  clarity-so-\w+  succeeded  \d+\.\d s$", timeout=30)
    d.wait_for(r"^run    stripe\.payment_succeeded  evt_\w+  succeeded  \d+\.\d s$", timeout=30)
    d.wait_for(r"^event  #\d+  \d\d:\d\d:\d\d  stripe  payment_intent\.succeeded  ", timeout=30)

    # and the admin API, with the printed token, agrees
    auth = {"Authorization": f"Bearer {exports['CB_ADMIN_TOKENS']}"}
    events = httpx.get(f"{bridge_url}/api/v1/events", headers=auth).json()["events"]
    runs = {r["workflow"]: r for e in events for r in e["runs"]}
    assert {"clarity.order_to_cash", "stripe.payment_succeeded"} <= runs.keys(), events
    for run in runs.values():
        shown = httpx.get(f"{bridge_url}/api/v1/runs/{run['run_id']}", headers=auth).json()["run"]
        assert shown["status"] == "succeeded", shown

    # one dev per data folder: a second one is refused, naming both processes
    again = cli(bridge_env(), "dev", "--no-live", *FREE_PORTS, "--data-dir", str(tmp_path / "dev"), timeout=60)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"its bridge (commerce-bridge serve) pid {serve_pid}" in again.stderr, again.stderr

    # Ctrl-C: the bridge and the peers stop, exit 0, no traceback, no serve left
    started = time.monotonic()
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(15) == 0, d.output()
    assert time.monotonic() - started < 10
    text = d.output()
    assert text.endswith("Stopped the bridge and the sandbox peers."), text[-2000:]
    assert "Traceback" not in text
    assert not _alive(serve_pid)
    assert "Traceback" not in (tmp_path / "dev" / "bridge.log").read_text()


def test_dev_reports_a_bridge_that_dies_with_its_log_and_exits_1(dev: tuple[Dev, int]) -> None:
    d, serve_pid = dev
    os.kill(serve_pid, signal.SIGKILL)
    assert d.proc.wait(15) == 1
    text = d.output()
    assert f"bridge stopped: the bridge (commerce-bridge serve, pid {serve_pid}) exited with code -9" in text, text
    assert "the last lines of its log" in text and '"logger": "uvicorn.error"' in text  # serve's own log lines
    assert "Traceback" not in text


def test_dev_refuses_a_port_in_use_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [*FREE_PORTS, "--clarity-port", str(port), "--data-dir", str(tmp_path / "dev")]
        out = cli(bridge_env(), "dev", "--no-live", *args, timeout=60)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"port {port} (Clarity simulator) on 127.0.0.1 already in use" in out.stderr
    assert "choose other ports with --clarity-port (0 picks a free one)" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "dev").exists()  # nothing started
