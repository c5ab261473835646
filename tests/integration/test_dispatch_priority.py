"""Under overload, later stages of orders already started are dispatched before new orders (issue 10, point 11).

The inbox hands waiting deliveries to the dispatcher highest ``CB_WORKFLOW_PRIORITIES`` first (trigger
patterns matched in SQL, ``_`` and ``%`` taken literally), then in arrival order; the shipped defaults
put Stripe's payment confirmation ahead of Clarity's new orders; a priority for a workflow that is not
loaded stops start-up naming the setting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import DEFAULT_WORKFLOW_PRIORITIES, load_settings
from commerce_bridge.domain.delivery import Delivery, HandOver, StoredDelivery
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.services.ports import DispatchPriority
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.router import Router


def store(inbox: SqlInbox, *items: tuple[str, str, str]) -> None:
    inbox.record_batch([Delivery(src, eid, etype, b"{}", datetime.now(UTC)) for src, eid, etype in items])


def take(inbox: SqlInbox, limit: int, priorities: list[DispatchPriority]) -> list[str]:
    got: list[str] = []

    def handler(rows: list[StoredDelivery]) -> HandOver:
        got.extend(r.event_id for r in rows)
        return HandOver(idle=frozenset(), failed=frozenset())

    inbox.dispatch_batch(limit, handler, priorities)
    return got


def test_higher_priority_deliveries_are_taken_first_then_the_oldest(engine: Engine) -> None:
    inbox = SqlInbox(engine)
    store(inbox, ("clarity", "o1", "salesorder.created"), ("clarity", "o2", "salesorder.created"),
          ("stripe", "x1", "paymentXintent.succeeded"),  # `_` is no wildcard: this matches nothing
          ("stripe", "p1", "payment_intent.succeeded"), ("clarity", "u1", "salesorder.updated"),
          ("stripe", "p2", "payment_intent.succeeded"), ("clarity", "o3", "salesorder.created"))
    priorities = [DispatchPriority(("stripe",), ("payment_intent.*",), 10),
                  DispatchPriority(("clarity",), ("salesorder.updated",), 5)]
    assert take(inbox, 3, priorities) == ["p1", "p2", "u1"]
    assert take(inbox, 2, priorities) == ["o1", "o2"]
    assert take(inbox, 10, []) == ["x1", "o3"]  # no priorities: arrival order


def test_the_shipped_defaults_put_payments_ahead_of_new_orders(engine: Engine) -> None:
    router = Router(WorkflowRegistry.load(), disabled=set(), priorities=DEFAULT_WORKFLOW_PRIORITIES)
    assert load_settings().workflow_priorities == DEFAULT_WORKFLOW_PRIORITIES
    inbox = SqlInbox(engine)
    store(inbox, ("clarity", "o1", "salesorder.created"), ("stripe", "p1", "payment_intent.succeeded"),
          ("clarity", "o2", "salesorder.created"))
    assert take(inbox, 1, router.dispatch_priorities()) == ["p1"]
    assert take(inbox, 5, router.dispatch_priorities()) == ["o1", "o2"]


def test_a_priority_for_a_workflow_that_is_not_loaded_stops_start_up(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite'}",
                             workflow_priorities={"stripe.payment_suceeded": 10})
    with pytest.raises(ConfigurationError, match=r"CB_WORKFLOW_PRIORITIES.*stripe\.payment_suceeded"):
        bootstrap(settings, "cli", migrate=True)


def test_a_pass_that_takes_fewer_deliveries_than_it_could_says_the_inbox_is_drained(engine: Engine) -> None:
    """The backlog gauge reads 0 without a count while the dispatcher keeps up (idle cost, issue 10)."""
    from commerce_bridge.engine.dispatch import Dispatcher
    from commerce_bridge.metrics import Metrics
    from commerce_bridge.store.runs import SqlDeadLetters, SqlRuns

    inbox = SqlInbox(engine)
    router = Router(WorkflowRegistry.load(), disabled=set(), priorities=())
    started: list[str] = []
    dispatcher = Dispatcher(inbox=inbox, runs=SqlRuns(engine), dead_letters=SqlDeadLetters(engine), router=router,
                            metrics=Metrics(), alert=lambda alert: None,
                            enqueue=lambda row, d, **kw: started.append(row["run_id"]), batch=2)
    store(inbox, ("stripe", "a", "nobody.wants"), ("stripe", "b", "nobody.wants"), ("stripe", "c", "nobody.wants"))
    assert dispatcher.dispatch_once() == 2 and not dispatcher.drained  # a full pass: more may wait
    assert inbox.backlog() == 1
    assert dispatcher.dispatch_once() == 1 and dispatcher.drained
    assert inbox.backlog() == 0 and started == []
    assert dispatcher.dispatch_once() == 0 and dispatcher.drained
