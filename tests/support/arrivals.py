"""A webhook receiver in a process of its own that stamps each request's arrival.

The receiver of a rate-limit test counts calls per second at the destination. Run in the test's own
process, its event loop shares the GIL with the test (sending the burst, polling the database), and a
stall there stamps several requests that arrived apart at one moment: the count then measures the test,
not the bridge. In its own process it has a core's worth of Python to itself.

Run as ``python arrivals.py PORT FILE``: each ``POST /hook`` appends ``time.time()`` to FILE.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import _die_with_parent, free_port


class ArrivalsReceiver:
    """``with ArrivalsReceiver(tmp) as r:`` posts to ``r.url + "/hook"`` are stamped; ``r.arrivals()`` reads them."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.path = folder / f"arrivals-{self.port}.txt"
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ArrivalsReceiver:
        self.path.touch()
        root = str(Path(__file__).resolve().parents[2])  # the child imports this module as a script
        self._proc = subprocess.Popen([sys.executable, __file__, str(self.port), str(self.path)],
                                      env={**os.environ, "PYTHONPATH": root}, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/ready", timeout=2).raise_for_status()
                return self
            except httpx.HTTPError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the arrivals receiver did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)

    def arrivals(self) -> list[float]:
        return sorted(float(line) for line in self.path.read_text().split())


def _serve(port: int, path: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    out = open(path, "a", buffering=1)  # noqa: SIM115  (open for the process's life, a line per arrival)

    async def hook(request: Request) -> JSONResponse:
        out.write(f"{time.time()!r}\n")
        return JSONResponse({"ok": True})

    async def ready(request: Request) -> Response:
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
