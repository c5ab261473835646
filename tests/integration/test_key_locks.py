"""Key locks (critical section by key) on SQLite and PostgreSQL, and the find-then-create steps that use them.

The lock store, in each of its modes (``shared``: lease rows on SQLite, advisory locks on PostgreSQL;
``process``: in memory): mutual exclusion between threads and between instances (as separate
processes would have), a timeout raising the transient ``Conflict``; for the lease rows (which the
poller's leader also uses) expiry takeover of a crashed holder's lock and release by the wrong holder
doing nothing. Then the users against the real sandbox peers:
``HttpErpGateway.ensure_customer`` and the ``stripe.customer.ensure`` step called at once for one new
customer create one record; ``core.identity.link`` accepts the same link twice and refuses a second id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, build_stripe_client
from commerce_bridge.errors import Conflict, ValidationError
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe
from commerce_bridge.services.ports import StepContext
from commerce_bridge.store import db as store_db
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.locks import SqlKeyLocks, lock_name
from commerce_bridge.store.tables import key_locks
from commerce_bridge.workflows.steps import core as core_steps
from commerce_bridge.workflows.steps import stripe as stripe_steps

THREADS = 6


def at_once(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def ctx(run: str, step: str = "customer") -> StepContext:
    return StepContext(run_id=run, step_id=step, attempt=1, source="clarity", event_id=run, event_type=None, event={})


# ---- the lock store ---------------------------------------------------------------------------------

@pytest.fixture(params=["shared", "process"])
def scope(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def key_lock_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(key_locks)).scalar_one())


@pytest.mark.parametrize("shared", [True, False], ids=["one instance", "one instance per thread"])
def test_only_one_holder_at_a_time_when_threads_want_the_same_key(engine: Engine, shared: bool, scope: str) -> None:
    # one instance per thread, shared scope: the in-process queue cannot help, only the database serialises them
    instances = ([SqlKeyLocks(engine, scope=scope)] * THREADS if shared
                 else [SqlKeyLocks(engine, scope=scope) for _ in range(THREADS)])
    inside, most, entered = [0], [0], []
    guard = threading.Lock()

    def work(i: int) -> None:
        for _ in range(3):
            with instances[i].hold("test.scope", "ann@example.com"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.01)
                with guard:
                    inside[0] -= 1
                    entered.append(i)

    assert at_once(THREADS, work) == [None] * THREADS
    assert most[0] == 1 and len(entered) == 3 * THREADS
    assert SqlKeyLocks(engine).holder_of(lock_name("test.scope", "ann@example.com")) is None, "released"


@pytest.mark.parametrize("shared", [True, False], ids=["one instance", "two instances"])
def test_different_keys_do_not_wait_for_each_other(engine: Engine, shared: bool, scope: str) -> None:
    # The other keys are taken and given back while ann's lock is still held: were they to wait for it,
    # "others released" could only come after "ann released" (or their 30 s timeout would raise Conflict).
    locks = SqlKeyLocks(engine, scope=scope)
    other = locks if shared else SqlKeyLocks(engine, scope=scope)
    order: list[str] = []
    others_done = threading.Event()

    def take_other_keys() -> None:
        with other.hold("test.scope", "bob@example.com"), other.hold("other.scope", "ann@example.com"):
            order.append("others held")
        order.append("others released")
        others_done.set()

    with locks.hold("test.scope", "ann@example.com"):
        t = threading.Thread(target=take_other_keys)
        t.start()
        others_done.wait(10)
        order.append("ann released")
    t.join(40)
    assert order == ["others held", "others released", "ann released"]


def test_a_waiter_gets_the_lock_as_soon_as_the_holder_releases_it(engine: Engine, scope: str) -> None:
    holder, waiter = SqlKeyLocks(engine, scope=scope), SqlKeyLocks(engine, timeout_s=10, scope=scope)
    order: list[str] = []
    entered = threading.Event()

    def hold_a_while() -> None:
        with holder.hold("test.scope", "k"):
            entered.set()
            time.sleep(0.3)
            order.append("holder out")

    t = threading.Thread(target=hold_a_while)
    t.start()
    assert entered.wait(10)
    with waiter.hold("test.scope", "k"):
        order.append("waiter in")
    t.join(10)
    assert order == ["holder out", "waiter in"]


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_release_it(engine: Engine) -> None:
    locks = SqlKeyLocks(engine)
    name = lock_name("test.scope", "k")
    assert locks.try_acquire(name, "crashed", lease_s=0.3)
    assert not locks.try_acquire(name, "next"), "held while the lease runs"
    time.sleep(0.5)
    assert locks.try_acquire(name, "next"), "a crashed holder blocks its key only until its lease ends"
    assert not locks.try_acquire(name, "third")
    assert not locks.release(name, "crashed"), "the old holder cannot free the new holder's lock"
    assert locks.holder_of(name) == "next"
    assert locks.release(name, "next") and locks.holder_of(name) is None


def test_release_by_the_wrong_holder_changes_nothing(engine: Engine) -> None:
    locks = SqlKeyLocks(engine)
    name = lock_name("test.scope", "k")
    assert not locks.release(name, "nobody"), "nothing to release"
    assert locks.try_acquire(name, "a")
    assert not locks.release(name, "b")
    assert locks.holder_of(name) == "a" and not locks.try_acquire(name, "b")
    assert locks.release(name, "a")


def test_a_lock_held_past_the_timeout_raises_conflict_without_the_key_in_the_message(engine: Engine,
                                                                                     scope: str) -> None:
    holder, locks = SqlKeyLocks(engine, scope=scope), SqlKeyLocks(engine, timeout_s=0.3, scope=scope)
    held, done = threading.Event(), threading.Event()

    def hold_it() -> None:
        with holder.hold("stripe.customer", "ann@example.com"):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold_it)
    t.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(Conflict) as caught, locks.hold("stripe.customer", "ann@example.com"):
            pytest.fail("entered a held lock")
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        done.set()
        t.join(10)
    assert caught.value.transient and caught.value.suggested_fix
    assert "stripe.customer" in caught.value.message and "ann" not in caught.value.message
    with locks.hold("stripe.customer", "ann@example.com"):  # free again once the holder is out
        pass


def test_a_row_held_by_a_crashed_holder_blocks_hold_until_the_timeout(tmp_path: Path) -> None:
    # lease rows (shared scope on SQLite): a row whose holder crashed keeps its key for its lease
    engine = store_db.make_engine(f"sqlite:///{tmp_path / 'rows.sqlite'}")
    store_db.upgrade(engine)
    locks = SqlKeyLocks(engine, timeout_s=0.3)
    assert locks.mode == "rows"
    assert locks.try_acquire(lock_name("stripe.customer", "ann@example.com"), "someone else")
    with pytest.raises(Conflict), locks.hold("stripe.customer", "ann@example.com"):
        pytest.fail("entered a held lock")


def test_the_lock_is_released_when_the_critical_section_fails(engine: Engine, scope: str) -> None:
    locks = SqlKeyLocks(engine, timeout_s=0.5, scope=scope)
    with pytest.raises(RuntimeError), locks.hold("test.scope", "k"):
        raise RuntimeError("the create failed")
    assert locks.holder_of(lock_name("test.scope", "k")) is None
    other = SqlKeyLocks(engine, timeout_s=0.5, scope=scope)
    with other.hold("test.scope", "k"):
        pass


def test_only_the_shared_scope_on_sqlite_writes_lock_rows(engine: Engine, scope: str) -> None:
    locks = SqlKeyLocks(engine, scope=scope)
    expected = "rows" if (scope == "shared" and engine.dialect.name == "sqlite") else (
        "process" if scope == "process" else "advisory")
    assert locks.mode == expected
    seen: list[int] = []
    with locks.hold("test.scope", "rows?"):
        seen.append(key_lock_rows(engine))
    assert seen == [1 if expected == "rows" else 0] and key_lock_rows(engine) == 0


def test_an_advisory_lock_is_freed_when_its_holders_connection_dies(pg_database_url: str) -> None:
    # PostgreSQL: no lease to wait out; the server ends the lock with the holder's session
    engine = store_db.make_engine(pg_database_url)
    store_db.upgrade(engine)
    locks, waiter = SqlKeyLocks(engine), SqlKeyLocks(engine, timeout_s=10)
    pid: list[int] = []
    held = threading.Event()

    def hold_then_vanish() -> None:
        try:
            with locks.hold("test.scope", "crash"):
                with engine.connect() as conn:
                    pid.extend(conn.execute(text(
                        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()")).scalars())
                held.set()
                time.sleep(30)
        except Exception:
            pass

    t = threading.Thread(target=hold_then_vanish, daemon=True)
    t.start()
    assert held.wait(10) and len(pid) == 1
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid[0]})
    started = time.monotonic()
    with waiter.hold("test.scope", "crash"):
        assert time.monotonic() - started < 5
    engine.dispose()


# ---- the find-then-create steps that use it --------------------------------------------------------------

@pytest.fixture(scope="module")
def erp() -> Iterator[PeerServer]:
    with PeerServer(build_erp(api_key="k", api_secret="s")) as server:
        yield server


@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[PeerServer]:
    with PeerServer(build_stripe()) as server:
        yield server


def test_erp_customers_ensured_at_once_for_one_email_make_one_customer(engine: Engine, erp: PeerServer) -> None:
    email = f"b2b-{time.time_ns()}@example.com"
    gateways = [HttpErpGateway(erp.url, "k", "s", locks=SqlKeyLocks(engine)) for _ in range(THREADS)]
    doc = {"customer_name": "Buyer Ltd", "customer_type": "Company", "email_id": email}
    names = at_once(THREADS, lambda i: gateways[i].ensure_customer(doc)["name"])
    assert len(set(names)) == 1 and all(isinstance(n, str) for n in names), names
    assert len(gateways[0].list_docs("Customer", filters=[["email_id", "=", email]], limit=100)) == 1
    for gw in gateways:
        gw.close()


def test_stripe_customers_ensured_at_once_for_one_email_make_one_customer(
        engine: Engine, stripe_emulator: PeerServer) -> None:
    email = f"b2b-{time.time_ns()}@example.com"
    gateway = StripeSdkGateway(build_stripe_client("sk_test_locks", api_base=stripe_emulator.url, timeout_s=10))
    ensure = [stripe_steps.actions(gateway, SqlKeyLocks(engine), SqlIdentityMap(engine))["stripe.customer.ensure"]
              for _ in range(THREADS)]
    customer = {"email": email, "name": "Buyer Ltd"}
    out = at_once(THREADS, lambda i: ensure[i](ctx(f"{email}:run-{i}"), {"customer": customer, "existing_id": None}))
    assert len({o["id"] for o in out}) == 1, out
    assert sum(o["created"] for o in out) == 1
    listed = httpx.get(f"{stripe_emulator.url}/v1/customers", params={"email": email, "limit": 100},
                       headers={"Authorization": "Bearer sk_test_locks"}).json()["data"]
    assert [c["id"] for c in listed] == [out[0]["id"]]


def test_identity_link_accepts_the_same_link_again_and_refuses_a_second_id(engine: Engine) -> None:
    link = core_steps.actions(SqlIdentityMap(engine))["core.identity.link"]
    params = {"entity": "customer", "key": "Ann@Example.com", "system": "stripe", "external_id": "cus_1"}
    first = link(ctx("run-1", "link_customer"), params)
    again = link(ctx("run-2", "link_customer"), {**params, "key": "ann@example.com"})
    assert first["created"] and not again["created"] and again["entity_id"] == first["entity_id"]
    with pytest.raises(ValidationError, match="already linked to stripe cus_1, not cus_2") as caught:
        link(ctx("run-3", "link_customer"), {**params, "external_id": "cus_2"})
    assert caught.value.suggested_fix and "cus_2" in caught.value.suggested_fix
