"""Several first orders of the same new customer at once, end to end against the sandbox peers.

A B2B buyer places a handful of orders within a second. The bridge's worker runs them in parallel, so
the order-to-cash runs all miss the identity map and Stripe's customer search together, and the
payment runs all miss the ERP customer together. Every order must still be paid, with one Stripe
customer, one ERP Customer and one identity link (no duplicate, nothing in the DLQ). On SQLite and
PostgreSQL with the bridge in this process; on PostgreSQL also with an ingress and two worker
processes, so the serialisation holds across processes, not only threads.

A mailbox has several spellings (case, Gmail dots and ``+tags``, googlemail.com): orders under any of
them, at once or one after the other, are still one customer in Stripe, in ERPNext and in the identity
map (``email_dedupe_key``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import create_engine, text

from commerce_bridge.entrypoints.demo_order_to_cash import STRIPE_KEY, sandbox_peers, sandbox_stack
from commerce_bridge.mapping.customer import GMAIL_DOMAINS, email_dedupe_key
from commerce_bridge.sandbox.traffic import SCENARIOS, Placed, Traffic
from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database
from tests.support.processes import BridgeProcess, bridge_env, free_port, migrate

pytestmark = pytest.mark.slow
PAID_USD = next(s for s in SCENARIOS if s.name == "paid (USD)")
ORDERS = 5


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.sqlite'}"
        return
    if not pg_admin_url():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        yield url


def gmail_spellings(n: int) -> list[str]:
    """Five spellings Gmail delivers to one mailbox: case, dots, ``+tags`` and (if a Gmail domain) googlemail."""
    other = "googlemail.com" if "googlemail.com" in GMAIL_DOMAINS else "gmail.com"
    spellings = [f"Ann.Lee{n}@gmail.com", f"annlee{n}+b2b@gmail.com", f"ANNLEE{n}@Gmail.com",
                 f"ann.lee{n}@{other}", f"a.n.n.l.e.e{n}+orders@gmail.com"]
    assert len({email_dedupe_key(e) for e in spellings}) == 1 and len(set(spellings)) == len(spellings)
    return spellings


def place_at_once(traffic: Traffic, n: int, count: int, emails: list[str] | None = None) -> list[Placed]:
    """``count`` checkouts by the same shopper, released by one barrier.

    The shopper is ``shopper{n}@example.com``, or, with ``emails``, order ``i`` uses ``emails[i]``.
    """
    barrier = threading.Barrier(count)
    placed: list[Placed | None] = [None] * count

    def one(i: int) -> None:
        barrier.wait()
        placed[i] = traffic.place(n, PAID_USD, email=emails[i] if emails else None)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    orders = [p for p in placed if p is not None]
    assert len(orders) == count and not [o.error for o in orders if o.error], orders
    assert len({email_dedupe_key(o.email) for o in orders}) == 1 and len({o.key for o in orders}) == count
    return orders


def settle_or_fail(traffic: Traffic, orders: list[Placed], open_dlq: Callable[[], list[Any]],
                   timeout: float = 120.0) -> None:
    """Wait until every order is paid everywhere; fail at once when a run lands in the DLQ."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parked = open_dlq()
        assert not parked, f"runs parked in the DLQ: {parked}"
        traffic.refresh(orders)
        if all(o.done for o in orders):
            return
        time.sleep(0.5)
    raise AssertionError("not settled: " + "; ".join(
        f"{o.key}: clarity={o.clarity_status} stripe={o.intent_status} erp={o.erp_order}/{o.erp_payment}"
        for o in orders if not o.done))


def stripe_customers(stripe_url: str, email: str) -> list[Any]:
    """Every customer the Stripe emulator holds for ``email``'s mailbox (any spelling), asked through the SDK."""
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url}, max_network_retries=0)
    key = email_dedupe_key(email)
    return [c for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()
            if c.email and email_dedupe_key(c.email) == key]


def erp_customers(traffic: Traffic, email: str) -> list[dict[str, Any]]:
    """Every ERPNext Customer the simulator holds for ``email``'s mailbox (any spelling)."""
    r = traffic.erp.get("/api/resource/Customer", params={
        "fields": '["name", "email_id"]', "limit_page_length": 100000})
    assert r.status_code == 200, r.text
    key = email_dedupe_key(email)
    return [c for c in r.json()["data"] if c.get("email_id") and email_dedupe_key(c["email_id"]) == key]


def customer_links(database_url: str) -> list[tuple[str, str, str]]:
    eng = create_engine(database_url)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT entity_id, system, external_id FROM identity_links WHERE entity_kind = 'customer'")).all()]
    finally:
        eng.dispose()


def assert_one_customer_everywhere(traffic: Traffic, stripe_url: str, database_url: str,
                                   orders: list[Placed]) -> None:
    email = orders[0].email
    customers = stripe_customers(stripe_url, email)
    assert len(customers) == 1, f"one Stripe customer for {email}, found {[c.id for c in customers]}"
    intents = traffic.intents_by_order_key()
    assert {intents[o.key]["customer"] for o in orders} == {customers[0].id}, "every order charged to that customer"
    erp = erp_customers(traffic, email)
    assert len(erp) == 1, f"one ERP Customer for {email}, found {erp}"
    links = customer_links(database_url)
    assert sorted((system, external) for _, system, external in links) == [
        ("erp", erp[0]["name"]), ("stripe", customers[0].id)], links
    assert len({entity for entity, _, _ in links}) == 1, f"one customer entity: {links}"


def run_in_process(database_url: str, tmp_path: Path, *batches: list[str] | int) -> None:
    """Place each batch (a list of spellings at once, or a count of ``shopper{n}`` orders at once) after the
    previous one settled, with the bridge in this process; then one customer everywhere, empty DLQ."""
    n = random.randint(1000, 9999)
    with sandbox_stack(database_url=database_url, workdir=tmp_path, worker_concurrency=16) as st:

        def open_dlq() -> list[Any]:
            return [(e["run_id"], e["step_id"], e["error_code"], e["error_message"][:120])
                    for e in st.container.dead_letters.list(status="open")]

        orders: list[Placed] = []
        for batch in batches:
            emails = None if isinstance(batch, int) else batch
            placed = place_at_once(st.traffic, n, batch if isinstance(batch, int) else len(batch), emails)
            settle_or_fail(st.traffic, placed, open_dlq)
            orders += placed
        assert_one_customer_everywhere(st.traffic, st.urls["Stripe emulator"], database_url, orders)
        assert st.container.dead_letters.count_open() == 0


def test_first_orders_of_one_new_customer_at_once_make_one_customer_everywhere_and_all_are_paid(
        database_url: str, tmp_path: Path) -> None:
    run_in_process(database_url, tmp_path, ORDERS)


def test_orders_at_once_under_spellings_of_one_gmail_mailbox_make_one_customer_everywhere(
        database_url: str, tmp_path: Path) -> None:
    # five spellings, five orders at once: the runs miss the identity map together and Stripe's (exact,
    # case-sensitive) e-mail search finds none of the others' spellings; only the dedupe-key lock and the
    # link made under it keep them to one customer
    run_in_process(database_url, tmp_path, gmail_spellings(random.randint(1000, 9999)))


def test_orders_one_after_the_other_under_two_spellings_make_one_erp_customer(
        database_url: str, tmp_path: Path) -> None:
    # the second order finds the Stripe customer through the identity map; ERPNext's lookup is by the exact
    # email_id, so only the identity map can tell the ERP step that "annlee+b2b" is "Ann.Lee"'s Customer
    first, second = gmail_spellings(random.randint(1000, 9999))[:2]
    run_in_process(database_url, tmp_path, [first], [second])


@pytest.mark.postgres
def test_first_orders_of_one_new_customer_split_over_two_worker_processes_make_one_customer(
        pg_database_url: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        # 3 runs at a time per worker and no audit runs: the 5 order runs must be shared by both workers
        peers = stack.enter_context(sandbox_peers(pg_database_url, tmp_path, worker_concurrency=3,
                                                  workflows_disabled="core.audit"))
        env = bridge_env(**{k: v for k, v in peers.settings.items() if k not in ("rate_limits", "worker_id")},
                         rate_limits='{"stripe": 80, "clarity": 50, "erp": 50}')
        migrate(env, tmp_path)
        procs = [BridgeProcess(["ingress"], env, tmp_path, "ingress", port=peers.bridge_port)]
        procs += [BridgeProcess(["worker", "--worker-id", f"w-{i}"], env, tmp_path, f"w-{i}", port=free_port())
                  for i in (1, 2)]
        for p in procs:
            stack.callback(p.stop)
            p.start()
        orders = place_at_once(peers.traffic, random.randint(1000, 9999), ORDERS)
        eng = create_engine(pg_database_url)
        stack.callback(eng.dispose)

        def open_dlq() -> list[Any]:
            with eng.connect() as conn:
                return [tuple(r) for r in conn.execute(text(
                    "SELECT run_id, step_id, error_code, error_message FROM dead_letters WHERE status = 'open'"))]

        try:
            settle_or_fail(peers.traffic, orders, open_dlq)
        except AssertionError as exc:
            logs = "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in procs)
            raise AssertionError(f"{exc}\n{logs}") from None
        assert_one_customer_everywhere(peers.traffic, peers.urls["Stripe emulator"], pg_database_url, orders)
        with eng.connect() as conn:
            executors = {r[0] for r in conn.execute(text(
                "SELECT DISTINCT w.executor_id FROM runs r JOIN dbos.workflow_status w "
                "ON w.workflow_uuid = r.engine_workflow_id WHERE r.workflow = 'clarity.order_to_cash'"))}
        assert executors == {"w-1", "w-2"}, f"both worker processes ran some of the orders: {executors}"
