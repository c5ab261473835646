"""Real commerce-bridge processes for end-to-end tests: start, wait until ready, kill -9, read logs."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from commerce_bridge.sandbox.runner import free_port

CLI = [sys.executable, "-m", "commerce_bridge.entrypoints.cli"]


class BridgeProcess:
    """One ``commerce-bridge <command>`` subprocess with its own environment and log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_dir: Path, name: str,
                 port: int | None = None) -> None:
        self.command = command
        self.env = env
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> BridgeProcess:
        log = self.log_path.open("ab")
        args = [*CLI, *self.command]
        if self.port is not None:
            args += ["--port", str(self.port)]
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        if wait_ready and self.port is not None:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.log()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# prctl(2), looked up here: the child, forked from a process with threads, only makes the call
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process dies (Linux), so a killed or crashed
    pytest leaves no bridge running that holds ports and database connections (the children run in
    their own session, so a terminal's Ctrl-C does not reach them)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def bridge_env(**settings: Any) -> dict[str, str]:
    """The environment for a bridge process: the test's settings as CB_* variables, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
    env.update({f"CB_{k.upper()}": str(v) for k, v in settings.items()})
    env.setdefault("CB_LOG_LEVEL", "WARNING")
    return env


def migrate(env: dict[str, str], log_dir: Path) -> None:
    out = subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


__all__ = ["BridgeProcess", "bridge_env", "cli", "free_port", "migrate"]
