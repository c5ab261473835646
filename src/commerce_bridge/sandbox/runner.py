"""Run a sandbox peer's ASGI app on a real port in a background thread (tests, `sandbox up`, demo)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PeerServer:
    """A uvicorn server for one ASGI app, started in a daemon thread.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level=log_level, lifespan="on", access_log=False,
            log_config=None,
        )
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name=f"peer-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> PeerServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"sandbox peer on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandbox peer on port {self.port} did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def request_stop(self) -> None:
        """Ask the server to shut down, without waiting (several servers then stop at the same time)."""
        self._server.should_exit = True

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        self._thread.join(timeout)

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
