"""Benchmark: PaymentIntent create+confirm per second through the stripe SDK, fresh and at 100k objects.

The emulator runs in its own process (``python -m commerce_bridge.sandbox.stripe_emulator``); the load comes
from several client processes, each with a few threads, each thread with its own ``stripe.StripeClient``
(the SDK's default ``RequestsClient``, which keeps one keep-alive ``requests`` session per thread).
``create(confirm=True)`` counts as one create+confirm.

    python bench/stripe_emulator.py [--seconds 5] [--repeat 3] [--procs 2] [--threads 4] [--objects 100000]
                                    [--state FILE]

Each phase is measured ``--repeat`` times (median and best are printed) because the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time

import httpx


def _worker(url: str, seconds: float, threads: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import stripe

    counts = [0] * threads
    errors = [0] * threads
    stop_at = time.perf_counter() + seconds

    def run(i: int) -> None:
        client = stripe.StripeClient("sk_test_bench", base_addresses={"api": url})
        params = {
            "amount": 1999,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "bench"},
        }
        while time.perf_counter() < stop_at:
            try:
                pi = client.v1.payment_intents.create(params=params)
                if pi.status == "succeeded":
                    counts[i] += 1
            except Exception:
                errors[i] += 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((sum(counts), sum(errors)))


def measure(url: str, seconds: float, procs: int, threads: int) -> tuple[float, int]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ps = [mp.Process(target=_worker, args=(url, seconds, threads, q)) for _ in range(procs)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    elapsed = time.perf_counter() - t0
    ok = sum(r[0] for r in results)
    return ok / max(elapsed - 0.3, seconds), sum(r[1] for r in results)  # 0.3 s: process start-up


def phase(url: str, args: argparse.Namespace, label: str, reset: bool = False) -> float:
    """Measure ``args.repeat`` times; print every run, the median and the best; return the median.

    With ``reset`` the store is emptied before each run (``DELETE /_sandbox/data``), so every run starts fresh.
    """
    rates = []
    for _ in range(args.repeat):
        if reset:
            httpx.delete(url + "/_sandbox/data", timeout=60).raise_for_status()
        rate, errors = measure(url, args.seconds, args.procs, args.threads)
        n = httpx.get(url + "/_sandbox/health").json()["objects"]
        print(f"  {label}: {rate:8.1f} PaymentIntent create+confirm/s (errors {errors}, objects after: {n})")
        rates.append(rate)
    med = statistics.median(rates)
    print(f"{label}: median {med:.1f}/s, best {max(rates):.1f}/s")
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--port", type=int, default=12199)
    ap.add_argument("--state", default=None, help="run the emulator with --state FILE (SQLite write-behind)")
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "commerce_bridge.sandbox.stripe_emulator", "--port", str(args.port)]
    if args.state:
        cmd += ["--state", args.state]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/_sandbox/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        print(
            f"server pid {server.pid}; clients: {args.procs} processes x {args.threads} threads, "
            f"SDK default RequestsClient (keep-alive session per thread); state={args.state or 'memory'}"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        fresh = phase(url, args, "fresh store", reset=True)
        t0 = time.perf_counter()
        while True:
            n = httpx.get(url + "/_sandbox/health").json()["objects"]
            if n >= args.objects:
                break
            per_pi = 7  # pi, pm, charge, txn, 3 events
            batch = min(2000, (args.objects - n) // per_pi + 1)
            httpx.post(
                url + "/_sandbox/prefill", json={"payment_intents": batch}, timeout=120
            ).raise_for_status()
        # with --state, write the pre-fill burst to SQLite before measuring (steady state, not the backlog)
        httpx.post(url + "/_sandbox/flush", timeout=300).raise_for_status()
        print(
            f"pre-filled to {n} objects in {time.perf_counter() - t0:.1f} s (internal path /_sandbox/prefill)"
        )
        full = phase(url, args, f"at {n} objects")
        print(f"ratio full/fresh (medians): {full / fresh:.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
