"""Several first orders of the same new customer at once, end to end against the sandbox peers.

A B2B buyer places a handful of orders within a second. The bridge's worker runs them in parallel, so
the order-to-cash runs all miss the identity map and Stripe's customer search together, and the
payment runs all miss the ERP customer together. Every order must still be paid, with one Stripe
customer, one ERP Customer and one identity link (no duplicate, nothing in the DLQ). On SQLite and
PostgreSQL with the bridge in this process; on PostgreSQL also with an ingress and two worker
processes, so the serialisation holds across processes, not only threads.
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


def place_at_once(traffic: Traffic, n: int, count: int) -> list[Placed]:
    """``count`` checkouts by the same shopper (``shopper{n}@example.com``), released by one barrier."""
    barrier = threading.Barrier(count)
    placed: list[Placed | None] = [None] * count

    def one(i: int) -> None:
        barrier.wait()
        placed[i] = traffic.place(n, PAID_USD)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    orders = [p for p in placed if p is not None]
    assert len(orders) == count and not [o.error for o in orders if o.error], orders
    assert len({o.email for o in orders}) == 1 and len({o.key for o in orders}) == count
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
    """What the Stripe emulator holds for ``email``, asked through the official SDK."""
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url}, max_network_retries=0)
    return list(client.v1.customers.list(params={"email": email, "limit": 100}).data)


def erp_customers(traffic: Traffic, email: str) -> list[dict[str, Any]]:
    r = traffic.erp.get("/api/resource/Customer", params={
        "filters": f'[["email_id", "=", "{email}"]]', "fields": '["name", "email_id"]', "limit_page_length": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


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
    assert len(erp_customers(traffic, email)) == 1, f"one ERP Customer for {email}"
    links = customer_links(database_url)
    assert [(system, external) for _, system, external in links] == [("stripe", customers[0].id)], links


def test_first_orders_of_one_new_customer_at_once_make_one_customer_everywhere_and_all_are_paid(
        database_url: str, tmp_path: Path) -> None:
    with sandbox_stack(database_url=database_url, workdir=tmp_path, worker_concurrency=16) as st:
        orders = place_at_once(st.traffic, random.randint(1000, 9999), ORDERS)

        def open_dlq() -> list[Any]:
            return [(e["run_id"], e["step_id"], e["error_code"], e["error_message"][:120])
                    for e in st.container.dead_letters.list(status="open")]

        settle_or_fail(st.traffic, orders, open_dlq)
        assert_one_customer_everywhere(st.traffic, st.urls["Stripe emulator"], database_url, orders)
        assert st.container.dead_letters.count_open() == 0


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
