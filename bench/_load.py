"""Load for the ingest benchmark: signed Stripe events, a wrk driver, and an asyncio open-loop client.

Every request carries a unique event id and a valid ``Stripe-Signature`` computed when the run's
requests are generated (so they stay inside Stripe's 300 s tolerance as long as a run is short).
Bodies are a real-sized ``payment_intent.succeeded`` event (~1.7 KB) built from Stripe's own example
PaymentIntent in ``shared/data/stripe/fixtures3.json`` (beside the repository) (a built-in copy of its shape otherwise).

* Saturation (closed loop): ``wrk`` with a Lua script that streams pre-generated requests from a
  file, counts answers by status and by ``"duplicate":false``, and stops sending at a deadline so
  that every request sent is answered before wrk exits (stored rows can then be checked exactly).
  Without wrk, an asyncio client with keep-alive connections does the same (slower, and it says so).
* Fixed rate (open loop): an asyncio client that schedules request ``i`` at ``t0 + i / rate`` and
  measures latency from that scheduled time, so a slow server cannot hide its queueing delay
  (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(os.environ.get("CB_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared") / "data" / "stripe" / "fixtures3.json"
PATH = "/webhooks/stripe"
KEEPALIVE_S = 4.0  # reuse an idle connection only this long (uvicorn closes them after 5 s)
_ID = b"evt_@@ID@@"

# Used only if the fixtures file is not on this machine (the same keys as Stripe's example object).
_FALLBACK_PI: dict[str, Any] = {
    "id": "pi_3PgafyB7WZ01zgkW0example", "object": "payment_intent", "amount": 1099, "amount_capturable": 0,
    "amount_details": {"tip": {}}, "amount_received": 1099, "application": None,
    "application_fee_amount": None, "automatic_payment_methods": {"enabled": True}, "canceled_at": None,
    "cancellation_reason": None, "capture_method": "automatic",
    "client_secret": "pi_3PgafyB7WZ01zgkW0example_secret_Dm43xiq1k0ywrRRjDoi8y1gkM",
    "confirmation_method": "automatic", "created": 1721948530, "currency": "usd", "customer": "cus_QXg1example",
    "description": "Order #1042", "last_payment_error": None, "latest_charge": "ch_3PgafyB7WZ01zgkW0example",
    "livemode": False, "metadata": {"order_id": "1042"}, "next_action": None, "on_behalf_of": None,
    "payment_method": "pm_1PgafyB7WZ01zgkWexample", "payment_method_configuration_details": None,
    "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
    "payment_method_types": ["card"], "processing": None, "receipt_email": "buyer@example.com",
    "review": None, "setup_future_usage": None, "shipping": None, "statement_descriptor": None,
    "statement_descriptor_suffix": None, "status": "succeeded", "transfer_data": None, "transfer_group": None,
}


def event_template() -> bytes:
    """A ``payment_intent.succeeded`` event body with ``evt_@@ID@@`` where the event id goes."""
    try:
        pi = copy.deepcopy(json.loads(FIXTURES.read_text())["resources"]["payment_intent"])
    except (OSError, KeyError, ValueError):
        pi = copy.deepcopy(_FALLBACK_PI)
    pi.update(status="succeeded", amount_received=pi.get("amount", 1099), last_payment_error=None,
              next_action=None, metadata={"order_id": "1042", "clarity_order_id": "CL-000000001042"},
              customer="cus_QXg1hqf4jFNsqG", latest_charge="ch_3PgafyB7WZ01zgkW1hS0n2Ka",
              payment_method="pm_1PgafyB7WZ01zgkWAbCdEfGh", receipt_email="buyer@example.com")
    event = {
        "id": "evt_@@ID@@", "object": "event", "api_version": "2024-06-20", "created": int(time.time()),
        "data": {"object": pi}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": "req_9c1bB7WZ01zgkW", "idempotency_key": "5f3c1f0e-0a4b-4e43-9a59-6b1d5d0d0c1e"},
        "type": "payment_intent.succeeded",
    }
    return json.dumps(event, separators=(",", ":")).encode()


class RequestFactory:
    """Signed, unique webhook requests for one server; ids are ``evt_<tag>_<n>``, never reused."""

    def __init__(self, secret: str, host: str, port: int, tag: str) -> None:
        self._key = secret.encode()
        self._host = f"{host}:{port}"
        self._tag = tag
        self._next = 0
        self._head, _, self._tail = event_template().partition(_ID)

    def _one(self, ts: int) -> tuple[bytes, str]:
        n = self._next
        self._next += 1
        body = b"%sevt_%s_%09d%s" % (self._head, self._tag.encode(), n, self._tail)
        mac = hmac.new(self._key, b"%d." % ts + body, hashlib.sha256).hexdigest()
        return body, f"t={ts},v1={mac}"

    def bodies(self, count: int) -> list[tuple[bytes, str]]:
        """``count`` (body, signature header) pairs signed now."""
        ts = int(time.time())
        return [self._one(ts) for _ in range(count)]

    def raw(self, body: bytes, signature: str) -> bytes:
        """The whole HTTP/1.1 request (keep-alive)."""
        return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Stripe-Signature: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (PATH.encode(), self._host.encode(), signature.encode(), len(body), body))

    def write_wrk_file(self, path: Path, count: int) -> None:
        """``count`` raw requests, each preceded by its length as 8 ASCII digits (read by the Lua script)."""
        ts = int(time.time())
        with path.open("wb") as f:
            for _ in range(count):
                req = self.raw(*self._one(ts))
                f.write(b"%08d" % len(req))
                f.write(req)


# ---- wrk (closed loop) ---------------------------------------------------------------------------
WRK_LUA = r"""
-- commerce-bridge ingest bench: stream pre-signed requests from a file; stop at a deadline; count answers.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } cb_timespec;
int clock_gettime(int clk_id, cb_timespec *tp);
]]
local ts = ffi.new("cb_timespec")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9 end

local threads = {}
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

function init(args)
  f = assert(io.open(args[1] .. tid .. ".req", "rb"))
  duration = tonumber(args[2])
  sent, ok_new, ok_dup, non200, exhausted, inflight = 0, 0, 0, 0, 0, 0
  first, last, stop_at, nxt = 0, 0, nil, nil
end

function delay()
  local t = now()
  if stop_at == nil then first = t; stop_at = t + duration end
  if t >= stop_at then return 100000000 end
  if nxt == nil then
    local n = f:read(8)
    if n == nil then exhausted = 1; return 100000000 end
    nxt = f:read(tonumber(n))
  end
  return 0
end

function request()
  -- wrk calls request() once after init() to check it; that one is never sent, so consume nothing
  if stop_at == nil then return wrk.format("GET", "/healthz") end
  local r = nxt
  nxt = nil
  if r == nil and f ~= nil then
    local n = f:read(8)
    if n ~= nil then r = f:read(tonumber(n)) end
  end
  if r == nil then
    exhausted = 1
    return wrk.format("GET", "/healthz")
  end
  sent = sent + 1
  return r
end

function response(status, headers, body)
  last = now()
  if status == 200 then
    if string.find(body, '"duplicate":false', 1, true) then ok_new = ok_new + 1 else ok_dup = ok_dup + 1 end
  else
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local s = {sent = 0, ok_new = 0, ok_dup = 0, non200 = 0, exhausted = 0, first = 1e18, last = 0}
  for _, t in ipairs(threads) do
    s.sent = s.sent + t:get("sent"); s.ok_new = s.ok_new + t:get("ok_new")
    s.ok_dup = s.ok_dup + t:get("ok_dup"); s.non200 = s.non200 + t:get("non200")
    s.exhausted = s.exhausted + t:get("exhausted")
    local fi, la = t:get("first"), t:get("last")
    if fi > 0 and fi < s.first then s.first = fi end
    if la > s.last then s.last = la end
  end
  local e = summary.errors
  io.write(string.format(
    'CBRESULT {"sent":%d,"ok_new":%d,"ok_dup":%d,"non200":%d,"exhausted":%d,"first":%.6f,"last":%.6f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"err_status":%d,' ..
    '"lat_p50_us":%d,"lat_p99_us":%d}\n',
    s.sent, s.ok_new, s.ok_dup, s.non200, s.exhausted, s.first, s.last,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class LoadResult:
    """What one load phase saw from the client side."""

    tool: str
    sent: int = 0
    ok_new: int = 0
    ok_dup: int = 0
    non200: int = 0
    socket_errors: int = 0
    seconds: float = 0.0
    exhausted: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    lag_ms: float = 0.0  # open loop: how late the scheduler itself was at worst
    stale_retries: int = 0  # open loop: requests resent because a kept-alive connection had been closed

    @property
    def errors(self) -> int:
        """Requests that did not get a 200: non-200 answers plus requests left unanswered (socket errors)."""
        return self.non200 + max(self.socket_errors, self.sent - self.ok_new - self.ok_dup - self.non200)

    @property
    def rate(self) -> float:
        return self.ok_new / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(factory: RequestFactory, workdir: Path, host: str, port: int, *, connections: int,
            duration: float, expected_rate: float, threads: int = 1,
            before: Callable[[], object] | None = None) -> LoadResult:
    """Closed loop with wrk for ``duration`` s; every request sent is answered before wrk exits.

    ``before`` runs right before wrk starts (after the request files are written).
    """
    per_thread = int(expected_rate * duration / threads) + 2000
    prefix = workdir / "wrk_"
    for t in range(1, threads + 1):
        factory.write_wrk_file(Path(f"{prefix}{t}.req"), per_thread)
    script = workdir / "ingest.lua"
    script.write_text(WRK_LUA)
    drain = 3.0
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration + drain + 0.999)}s",
           "--timeout", "10s", "-s", str(script), f"http://{host}:{port}{PATH}", "--", str(prefix),
           f"{duration:.3f}"]
    if before is not None:
        before()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for t in range(1, threads + 1):
        with contextlib.suppress(OSError):
            os.unlink(f"{prefix}{t}.req")
    m = re.search(r"^CBRESULT (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed (exit {out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    r = json.loads(m.group(1))
    sock = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    return LoadResult(tool="wrk", sent=r["sent"], ok_new=r["ok_new"], ok_dup=r["ok_dup"], non200=r["non200"],
                      socket_errors=sock, seconds=max(1e-9, r["last"] - r["first"]), exhausted=bool(r["exhausted"]))


# ---- asyncio client (open loop at a fixed rate; closed-loop fallback) ---------------------------
class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()
        self.used = False

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        body = await self.reader.readexactly(int(m.group(1))) if m else b""
        return status, body


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _tally(res: LoadResult, status: int, body: bytes) -> None:
    if status == 200:
        if b'"duplicate":false' in body:
            res.ok_new += 1
        else:
            res.ok_dup += 1
    else:
        res.non200 += 1


async def _open_loop(host: str, port: int, raws: list[bytes], rate: float, max_conns: int) -> LoadResult:
    res = LoadResult(tool="asyncio open loop")
    idle: list[_Conn] = []
    opened = 0
    freed = asyncio.Condition()

    async def acquire() -> _Conn:
        nonlocal opened
        async with freed:
            while not idle and opened >= max_conns:
                await freed.wait()
            while idle:
                c = idle.pop()
                if time.monotonic() - c.idle_since < KEEPALIVE_S:
                    return c
                c.writer.close()  # the server may be closing it right now (uvicorn keeps 5 s)
                opened -= 1
            opened += 1
        r, w = await asyncio.open_connection(host, port)
        return _Conn(r, w)

    async def release(c: _Conn | None) -> None:
        nonlocal opened
        async with freed:
            if c is None:
                opened -= 1
            else:
                c.idle_since = time.monotonic()
                c.used = True
                idle.append(c)
            freed.notify()

    async def one(raw: bytes, scheduled: float) -> None:
        for attempt in (1, 2):
            c: _Conn | None = None
            try:
                c = await acquire()
                status, body = await c.call(raw)
                res.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
                _tally(res, status, body)
                return
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                # A reused keep-alive connection the server closed before answering anything: retry once
                # on a new one, as HTTP clients do (the event id makes a repeat harmless; it would show
                # up as a duplicate answer and as a failed row check).
                stale = (attempt == 1 and c is not None and c.used and isinstance(exc, asyncio.IncompleteReadError)
                         and not exc.partial)
                if c is not None:
                    c.writer.close()
                    c = None
                if not stale:
                    res.socket_errors += 1
                    return
                res.stale_retries += 1
            finally:
                await release(c)

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.05
    for i, raw in enumerate(raws):
        at = t0 + i / rate
        wait = at - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            res.lag_ms = max(res.lag_ms, -wait * 1000)
        res.sent += 1
        tasks.append(asyncio.create_task(one(raw, at)))
    await asyncio.gather(*tasks)
    res.seconds = time.perf_counter() - t0
    for c in idle:
        c.writer.close()
    return res


def run_open_loop(factory: RequestFactory, host: str, port: int, *, rate: float, duration: float,
                  max_conns: int = 256) -> LoadResult:
    """``rate`` requests per second for ``duration`` s on a fixed timetable; latency from scheduled time."""
    raws = [factory.raw(b, s) for b, s in factory.bodies(int(rate * duration))]
    _use_uvloop()
    return asyncio.run(_open_loop(host, port, raws, rate, max_conns))


async def _closed_loop(host: str, port: int, raws: Iterator[bytes], connections: int,
                       duration: float) -> LoadResult:
    res = LoadResult(tool="asyncio closed loop (wrk not found)")
    stop_at = time.perf_counter() + duration
    last = 0.0

    async def worker() -> None:
        nonlocal last
        r, w = await asyncio.open_connection(host, port)
        c = _Conn(r, w)
        try:
            while time.perf_counter() < stop_at:
                raw = next(raws, None)
                if raw is None:
                    res.exhausted = True
                    return
                res.sent += 1
                try:
                    status, body = await c.call(raw)
                except (OSError, asyncio.IncompleteReadError):
                    res.socket_errors += 1
                    return
                last = time.perf_counter()
                _tally(res, status, body)
        finally:
            w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    res.seconds = last - t0
    return res


def run_python_closed_loop(factory: RequestFactory, host: str, port: int, *, connections: int,
                           duration: float, expected_rate: float) -> LoadResult:
    """The fallback saturation client (one process); it may saturate before the server does."""
    pairs = factory.bodies(int(expected_rate * duration) + 2000)
    raws = (factory.raw(b, s) for b, s in pairs)
    _use_uvloop()
    return asyncio.run(_closed_loop(host, port, raws, connections, duration))
