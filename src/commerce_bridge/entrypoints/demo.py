"""``commerce-bridge demo``: order to cash against the sandbox peers; ``demo-webhooks``: the spine alone.

``demo-webhooks`` starts ``serve`` in this process (SQLite in a temporary folder), posts signed Stripe-style events
(with duplicate deliveries and a few forged ones, as real senders produce), shows them being
received and processed live, and ends with a table of what happened. Exit code 0 only if every
genuine event was processed exactly once and every forged one was refused.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import httpx
import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.domain.signature import sign
from commerce_bridge.logsetup import configure_logging

EVENT_TYPES = ("payment_intent.succeeded", "charge.succeeded", "customer.created", "charge.refunded",
               "payment_intent.payment_failed", "invoice.paid", "payout.paid")


def sample_event(i: int, rng: random.Random) -> bytes:
    kind = EVENT_TYPES[i % len(EVENT_TYPES)]
    obj = kind.split(".")[0]
    return orjson.dumps({
        "id": f"evt_demo_{i:05d}_{rng.randrange(16**6):06x}", "object": "event", "type": kind,
        "api_version": "2026-10-28", "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
        "data": {"object": {"id": f"{obj[:2]}_demo_{i:05d}", "object": obj, "amount": rng.choice([1999, 4500, 120000]),
                            "currency": rng.choice(["usd", "eur", "jpy", "kwd"])}},
        "request": {"id": None, "idempotency_key": None},
    })


def demo_webhooks(
    events: Annotated[int, typer.Option(min=1, max=100_000, help="Genuine events to send.")] = 300,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share of extra duplicate deliveries.")] = 0.1,
    forged: Annotated[int, typer.Option(min=0, help="Deliveries with a wrong signature (must be refused).")] = 5,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 16,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data folder.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for processing.")] = 300.0,
) -> None:
    """The spine alone: a burst of signed sample events, received and processed exactly once."""
    from commerce_bridge.entrypoints.http.app import build_app
    from commerce_bridge.sandbox.runner import PeerServer

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="commerce-bridge-demo-"))
    secret = "whsec_" + secrets.token_hex(16)
    log_file = (workdir / "bridge.log").open("w")
    configure_logging("INFO", json=True, stream=log_file)
    settings = load_settings(
        database_url=f"sqlite:///{workdir / 'bridge.sqlite'}", stripe_webhook_secrets=secret,
        admin_tokens=secrets.token_hex(16), worker_id="demo", log_level="INFO",
        audit_runs=True,  # this demo shows the engine at work: every event gets its core.audit run
    )
    c = bootstrap(settings, "serve", migrate=True)
    console.print(f"[bold]commerce-bridge demo[/]: SQLite in {workdir}, logs in {workdir / 'bridge.log'}")
    rng = random.Random(42)
    bodies = [sample_event(i, rng) for i in range(events)]
    plan = list(range(events)) + [rng.randrange(events) for _ in range(int(events * duplicates))]
    rng.shuffle(plan)
    ok = False
    with PeerServer(build_app(c), port=0) as server:
        console.print(f"bridge listening on {server.url} (webhooks at {server.url}/webhooks/stripe)")
        ok = asyncio.run(_drive(console, c, server.url, secret, bodies, plan, forged, concurrency, timeout))
    c.close()
    log_file.close()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    raise typer.Exit(0 if ok else 1)


async def _drive(console: Console, c: Container, url: str, secret: str, bodies: list[bytes], plan: list[int],
                 forged: int, concurrency: int, timeout: float) -> bool:
    answers: Counter[str] = Counter()
    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    t_sent = progress.add_task("sent", total=len(plan) + forged)
    t_stored = progress.add_task("stored (new)", total=len(bodies))
    t_done = progress.add_task("processed", total=len(bodies))
    queue: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
    for i in plan:
        queue.put_nowait((bodies[i], True))
    for i in range(forged):
        queue.put_nowait((bodies[i % len(bodies)], False))

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body, genuine = queue.get_nowait()
            key = secret if genuine else "whsec_forged"
            try:
                r = await client.post(f"{url}/webhooks/stripe", content=body,
                                      headers={"Stripe-Signature": sign(body, key, int(time.time()))})
                if r.status_code == 200:
                    answers["duplicate" if r.json()["duplicate"] else "stored"] += 1
                else:
                    answers[f"refused {r.status_code} ({r.json()['code']})"] += 1
            except httpx.HTTPError as exc:
                answers[f"error {type(exc).__name__}"] += 1
            progress.advance(t_sent)
            progress.update(t_stored, completed=answers["stored"])

    async def watcher() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = await asyncio.to_thread(c.inbox.counts_by_status)
            progress.update(t_done, completed=counts.get("processed", 0))
            if counts.get("processed", 0) >= len(bodies):
                return
            await asyncio.sleep(0.2)

    with Live(progress, console=console, refresh_per_second=8):
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        await watcher()

    counts = await asyncio.to_thread(c.inbox.counts_by_status)
    runs = await asyncio.to_thread(c.runs.counts_by_status)
    audit = await asyncio.to_thread(c.audit.all)
    table = Table(title="What happened")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in sorted(answers.items()):
        table.add_row(f"answer: {k}", str(v))
    for k, v in sorted(counts.items()):
        table.add_row(f"inbox: {k}", str(v))
    for k, v in sorted(runs.items()):
        table.add_row(f"runs: {k}", str(v))
    repeated = sum(1 for a in audit if a["executions"] > 1)
    table.add_row("audit records (core.audit)", str(len(audit)))
    table.add_row("steps that ran twice", str(repeated))
    console.print(table)
    ok = (counts.get("processed", 0) == len(bodies) and len(audit) == len(bodies) and answers["stored"] == len(bodies)
          and sum(v for k, v in answers.items() if k.startswith("refused 400")) == forged)
    console.print("[bold green]every event processed exactly once[/]" if ok else "[bold red]demo did not complete[/]")
    return ok

