"""``commerce-bridge demo``: order to cash on the embedded default against the sandbox peers.

Starts the Stripe emulator, the Clarity and ERPNext simulators and a mail catcher, then the bridge
(SQLite in a temporary folder) wired to them, places storefront checkouts of every kind (paid in USD,
JPY, KWD and EUR, declined, 3-D Secure, manual capture, charged by the storefront itself), plays the
shopper and the warehouse where they must act, gives money back on four paid orders (a return refunded
in Clarity, a partial refund in the Stripe Dashboard, a dispute won and one lost), shows progress live,
and ends with a table of what each system holds. Exit code 0 only if every order reached its expected
end state, checked in every system once the bridge has no run queued or running.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.entrypoints.demo_money_back import money_back_table
from commerce_bridge.entrypoints.money_text import decimal_money_text, money_text
from commerce_bridge.logsetup import configure_logging

CLARITY_USER, CLARITY_PASSWORD = "ClarityConnect", "sandbox-clarity"
ERP_KEY, ERP_SECRET = "sandbox-erp-key", "sandbox-erp-secret"
STRIPE_KEY = "sk_test_sandbox_demo"


@dataclass
class Stack:
    """Everything the order-to-cash demo (and its end-to-end tests) run: peers, bridge, traffic."""

    container: Container
    traffic: Any
    urls: dict[str, str]
    workdir: Path


@dataclass
class Peers:
    """The sandbox peers, running, and the bridge settings wired to them (the bridge is not started)."""

    traffic: Any
    urls: dict[str, str]
    workdir: Path
    bridge_port: int
    settings: dict[str, Any]


@contextlib.contextmanager
def sandbox_peers(database_url: str | None = None, workdir: Path | None = None, *, customer_sync: bool = False,
                  **overrides: Any) -> Iterator[Peers]:
    """Start the Stripe emulator, the Clarity and ERPNext simulators and the mail catcher.

    The Stripe emulator's webhook endpoint already points at ``bridge_port``; ``settings`` are the
    bridge's settings for these peers (``overrides`` applied), to run it in this process
    (:func:`sandbox_stack`) or in others (the order-to-cash benchmark). ``customer_sync``: ``CB_CUSTOMER_SYNC``
    (off by default, as in production).
    """
    from commerce_bridge.sandbox.clarity_sim.app import build_app as clarity_app
    from commerce_bridge.sandbox.erp_sim.app import build_app as erp_app
    from commerce_bridge.sandbox.mailbox.server import Mailbox
    from commerce_bridge.sandbox.runner import PeerServer, free_port
    from commerce_bridge.sandbox.stripe_emulator.app import build_app as stripe_app
    from commerce_bridge.sandbox.traffic import Traffic

    workdir = workdir or Path(tempfile.mkdtemp(prefix="commerce-bridge-demo-"))
    with contextlib.ExitStack() as stack:
        stripe_srv = stack.enter_context(PeerServer(stripe_app()))
        clarity_srv = stack.enter_context(PeerServer(clarity_app(
            user=CLARITY_USER, password=CLARITY_PASSWORD, stripe_url=stripe_srv.url, stripe_api_key=STRIPE_KEY)))
        erp_srv = stack.enter_context(PeerServer(erp_app(api_key=ERP_KEY, api_secret=ERP_SECRET)))
        mailbox = Mailbox(smtp_port=0, http_port=0)
        mailbox.start()
        stack.callback(mailbox.stop)
        bridge_port = free_port()
        endpoint = httpx.post(f"{stripe_srv.url}/v1/webhook_endpoints",
                              headers={"Authorization": f"Bearer {STRIPE_KEY}"},
                              data={"url": f"http://127.0.0.1:{bridge_port}/webhooks/stripe", "enabled_events[]": "*"})
        endpoint.raise_for_status()
        settings = {
            "database_url": database_url or f"sqlite:///{workdir / 'bridge.sqlite'}", "worker_id": "demo",
            "stripe_webhook_secrets": endpoint.json()["secret"], "admin_tokens": secrets.token_hex(16),
            "stripe_api_key": STRIPE_KEY, "stripe_api_base": stripe_srv.url,
            "clarity_base_url": f"{clarity_srv.url}/DesktopModules/ClarityEcommerce/API-Admin",
            "clarity_user": CLARITY_USER, "clarity_password": CLARITY_PASSWORD, "clarity_poll_interval_s": 0.5,
            "clarity_returns_poll_interval_s": 0.5,
            "erp_base_url": erp_srv.url, "erp_api_key": ERP_KEY, "erp_api_secret": ERP_SECRET,
            "smtp_host": "127.0.0.1", "smtp_port": mailbox.smtp_port,
            "rate_limits": {"stripe": 80, "clarity": 50, "erp": 50}, **overrides,
        }
        settings["customer_sync"] = customer_sync  # off: the order flow's customers would get Clarity accounts
        traffic = Traffic(clarity_url=clarity_srv.url, clarity_user=CLARITY_USER, clarity_password=CLARITY_PASSWORD,
                          stripe_url=stripe_srv.url, stripe_key=STRIPE_KEY, erp_url=erp_srv.url,
                          erp_token=f"{ERP_KEY}:{ERP_SECRET}", mail_url=mailbox.url)
        stack.callback(traffic.close)
        # on exit, the servers are all asked to stop first, so they shut down together (about 0.6 s each)
        for srv in (stripe_srv, clarity_srv, erp_srv):
            stack.callback(srv.request_stop)
        traffic.seed_erp_items()
        traffic.seed_store_statuses()
        urls = {"Stripe emulator": stripe_srv.url, "Clarity simulator": clarity_srv.url,
                "ERPNext simulator": erp_srv.url, "mail catcher": mailbox.url,
                "bridge": f"http://127.0.0.1:{bridge_port}", "data and logs": str(workdir)}
        yield Peers(traffic=traffic, urls=urls, workdir=workdir, bridge_port=bridge_port, settings=settings)


@contextlib.contextmanager
def sandbox_stack(database_url: str | None = None, workdir: Path | None = None, *, customer_sync: bool = False,
                  **overrides: Any) -> Iterator[Stack]:
    """Start the sandbox peers and the bridge (``serve``, in this process) wired to them; stop all on exit."""
    from commerce_bridge.entrypoints.http.app import build_app
    from commerce_bridge.sandbox.runner import PeerServer

    with contextlib.ExitStack() as stack:
        peers = stack.enter_context(sandbox_peers(database_url, workdir, customer_sync=customer_sync, **overrides))
        c = bootstrap(load_settings(**peers.settings), "serve", migrate=True)
        stack.callback(c.close)
        bridge = stack.enter_context(PeerServer(build_app(c), port=peers.bridge_port))
        stack.callback(bridge.request_stop)  # stops together with the peers (sandbox_peers asks them first)
        yield Stack(container=c, traffic=peers.traffic, urls=peers.urls, workdir=peers.workdir)


def demo(
    orders: Annotated[int, typer.Option(min=1, max=5000, help="Storefront checkouts to place.")] = 16,
    money_back: Annotated[bool, typer.Option(
        help="Also place four orders whose money goes back once paid: a return refunded in Clarity, a partial "
             "refund in the Stripe Dashboard, a dispute won and one lost.")] = True,
    exit_when_done: Annotated[bool, typer.Option(
        help="Skip the last second of live view: the demo ends by itself either way, once every order is "
             "settled and the bridge is idle.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every order to settle.")] = 180.0,
    idle_timeout: Annotated[float, typer.Option(
        min=0, help="Seconds to wait, after the orders settled, until the bridge has no run queued or running "
                    "(it judges only then).")] = 60.0,
    wide: Annotated[bool, typer.Option(
        help="Show every column of the final table (ERP documents, e-mails); the default fits 80 columns.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data folder (database, logs).")] = False,
    payouts: Annotated[bool, typer.Option(
        help="End with Stripe's payouts: the emulator's clock moves past the payout delay and the bridge "
             "reconciles each payout to the cent (its journal and proof in the last table).")] = True,
) -> None:
    """Order to cash against the sandbox peers: checkouts of every kind, money going back, live progress, tables.

    It ends by itself, once every order is settled (or --timeout passed) and the bridge is idle:
    no run queued or running (or --idle-timeout passed).
    Exit 0 only if every order reached its expected end state in every system (a "wrong:" line names
    each difference) and the bridge went idle.
    """
    from commerce_bridge.entrypoints.demo_payouts import payouts_table, run_payouts
    from commerce_bridge.sandbox.money_back import StoreStatuses
    from commerce_bridge.sandbox.traffic import plan

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="commerce-bridge-demo-"))
    log_file = (workdir / "bridge.log").open("w")
    configure_logging("INFO", json=True, stream=log_file)
    started = time.monotonic()
    with sandbox_stack(workdir=workdir) as st:
        c = st.container
        table = Table(title="sandbox", show_header=False)
        for name, url in st.urls.items():
            table.add_row(name, url)
        console.print(table)
        if c.disabled_workflows:
            console.print(f"[yellow]workflows disabled (connector missing): {c.disabled_workflows}[/]")
        st.traffic.statuses = StoreStatuses(**_store_statuses(c))
        _, placed = _run(console, st.traffic, list(plan(orders, money_back=money_back)), timeout, exit_when_done)
        idle, busy = _wait_until_idle(console, c, idle_timeout, st.traffic)
        st.traffic.refresh(placed)  # what each system holds now that the bridge is idle
        ok = all(o.done for o in placed)
        console.print(_final_table(placed, wide=wide))
        if any(o.back is not None for o in placed):
            console.print(money_back_table(placed, wide=wide))
        for o in placed:
            for problem in o.problems(money=_money_or_none):
                console.print(f"[bold red]wrong[/]: {o.key or f'order {o.n}'}, {o.scenario.name}: {problem}")
        if payouts and idle:
            paid_out, records, problem = run_payouts(console, st, idle_timeout)
            if records:
                console.print()
                console.print(payouts_table(records, wide=wide))
            for r in records:
                for e in r.get("exception_rows") or ():
                    console.print(f"[bold red]wrong[/]: payout {r['payout_id']}: {e['kind']} {e['ref']}: "
                                  f"{e['reason']} (fix: {e['suggested_fix']})")
            if problem:
                console.print(("[bold red]wrong[/]: " if not paid_out else "") + f"payouts: {problem}")
            ok = ok and paid_out
        runs = c.runs.counts_by_status()
        if idle:
            console.print(f"bridge idle, so judged now: no run queued or running (runs: {_counts(runs)})")
            if runs.get("waiting"):
                console.print(f"  {runs['waiting']} run(s) wait on a timer (a declined order's payment reminder)")
        else:
            console.print(f"[bold red]bridge still busy after {idle_timeout:g} s[/]: {busy}")
        dlq = c.dead_letters.list(status="open", limit=20)
        console.print(f"bridge inbox: {_counts(c.inbox.counts_by_status())}; open DLQ entries: {len(dlq)}")
        for entry in dlq[:5]:
            console.print(f"  DLQ {entry['id']}: {entry['run_id']} at {entry['step_id']}: "
                          f"{entry['error_code']}: {entry['error_message'][:100]}")
    log_file.close()
    elapsed = time.monotonic() - started
    ok = ok and idle
    console.print(("[bold green]every order reached its expected end state[/]" if ok
                   else "[bold red]some orders did not reach their expected end state[/]") + f" ({elapsed:.1f} s)")
    if not wide:
        console.print("[dim]--wide (DEMO_ARGS=--wide) adds the ERP documents, e-mails and record ids[/]")
    if not keep and ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        console.print(f"database and log kept in {workdir}")
    raise typer.Exit(0 if ok else 1)


def _store_statuses(c: Container) -> dict[str, str]:
    """The store's status names the bridge uses (its status map), for the traffic's actions and checks."""
    vars_ = c.settings.statuses().workflow_vars()
    names = {"paid": "paid_status", "partially_refunded": "partially_refunded_status",
             "refunded": "refunded_status", "disputed": "disputed_status", "chargeback": "chargeback_status",
             "return_refund": "return_refund_status", "return_refunded": "return_refunded_status"}
    return {field: str(vars_[var]) for field, var in names.items() if vars_.get(var)}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


IN_FLIGHT = ("queued", "running")


def _wait_until_idle(console: Console, c: Container, idle_timeout: float, traffic: Any) -> tuple[bool, str]:
    """Wait (at most ``idle_timeout`` s) until no delivery waits to be dispatched and no run is queued or running.

    Idle means it stayed so for one Clarity poll interval (and a margin) after the Stripe emulator delivered
    every event it had queued: the echoes of the bridge's own writes (its refunds, the returns it recorded)
    come back that way, and must be judged too. Returns whether the bridge went idle, and what was still in
    flight if not.
    """
    quiet_for = c.settings.clarity_poll_interval_s + 0.5
    quiet_since: float | None = None
    progress = Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
    task = progress.add_task("bridge: waiting until no run is queued or running", total=None)
    deadline = time.monotonic() + idle_timeout
    busy = ""
    with Live(progress, console=console, refresh_per_second=4, transient=True):
        while True:
            runs = c.runs.counts_by_status()
            backlog = c.inbox.backlog()
            in_flight = {s: runs.get(s, 0) for s in IN_FLIGHT if runs.get(s, 0)}
            if not in_flight and not backlog:
                if quiet_since is None:
                    traffic.drain_webhooks(timeout=min(10.0, max(1.0, deadline - time.monotonic())))
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= quiet_for:
                    return True, ""
                time.sleep(0.25)
                continue
            quiet_since = None
            busy = ", ".join([f"{n} run(s) {s}" for s, n in in_flight.items()]
                             + ([f"{backlog} deliveries not yet dispatched"] if backlog else []))
            progress.update(task, description=f"bridge: waiting until no run is queued or running ({busy})")
            if time.monotonic() >= deadline:
                return False, busy
            time.sleep(0.5)


def _run(console: Console, traffic: Any, todo: list[Any], timeout: float,
         exit_when_done: bool) -> tuple[bool, list[Any]]:
    by_scenario = Counter(s.name for _, s in todo)
    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    placed_task = progress.add_task("checkouts placed", total=len(todo))
    tasks = {name: progress.add_task(name, total=n) for name, n in by_scenario.items()}
    placed: list[Any] = []
    deadline = time.monotonic() + timeout
    with Live(Group(progress), console=console, refresh_per_second=4):
        for n, scenario in todo:
            placed.append(traffic.place(n, scenario))
            progress.advance(placed_task)
        while time.monotonic() < deadline:
            traffic.refresh(placed)
            done = Counter(o.scenario.name for o in placed if o.done)
            for name, task in tasks.items():
                progress.update(task, completed=done.get(name, 0))
            if all(o.done for o in placed):
                break
            time.sleep(1.0)
        if not exit_when_done:
            time.sleep(1.0)
    console.print()
    return all(o.done for o in placed), placed


def _money_or_none(minor: int | None, currency: str) -> str:
    return money_text(minor, currency) if minor is not None else "no amount"


def _money(o: Any, value: str) -> str:
    return decimal_money_text(value, o.scenario.currency) if value else "-"


def _final_table(placed: list[Any], *, wide: bool = False) -> Table:
    """One row per order. The default columns fit 80 columns; ``wide`` adds the ERP documents and e-mails.

    Cells wrap at spaces (an e-mail subject is never cut): the table grows taller, not wider.
    """
    t = Table(title="What happened in each system", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column("order", no_wrap=True)
    t.add_column("scenario", no_wrap=True)
    t.add_column("total", justify="right", no_wrap=True)
    t.add_column("Clarity status" if wide else "Clarity")
    if wide:
        t.add_column("balance", justify="right", no_wrap=True)
    t.add_column("Stripe")
    if wide:
        t.add_column("ERP sales order", no_wrap=True)
        t.add_column("ERP payment", no_wrap=True)
        t.add_column("e-mails")
    t.add_column("ok", no_wrap=True)
    for o in placed:
        # Stripe's status in words ("requires payment method"), so that a narrow column wraps it between words
        stripe = (o.intent_status or "-").replace("_", " ")
        row = [o.key or "-", o.scenario.name, _money(o, o.total), o.clarity_status or o.error or "-"]
        if wide:
            row.append(_money(o, o.balance_due))
        row.append(stripe)
        if wide:
            row += [o.erp_order or "-", o.erp_payment or "-", "\n".join(o.emails) or "-"]
        row.append("[green]yes[/]" if o.done else "[red]no[/]")
        t.add_row(*row)
    return t
