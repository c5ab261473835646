"""The durable engine in-process for integration tests: a test action, a test workflow, deliveries, waits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.workflows.spec import StepContext, StepSpec, Trigger, WorkflowSpec


class Flaky:
    """A test action (a fake at the port): fails as told, records every call with its idempotency key."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.plan: dict[str, list[BaseException]] = {}
        self.lock = threading.Lock()

    def __call__(self, ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append((ctx.idempotency_key, ctx.attempt))
            todo = self.plan.get(ctx.event_id)
            if todo:
                raise todo.pop(0)
        return {"seen": params.get("amount")}


def spec(name: str = "test.flow") -> WorkflowSpec:
    return WorkflowSpec(
        name=name, version="1", trigger=Trigger(sources=("stripe",), event_types=("test.*",)),
        steps=(
            StepSpec(id="first", uses="testsys.thing.do", with_={"amount": "$/event/data/amount_minor"}),
            StepSpec(id="second", uses="testsys.other.do", with_={"prev": "$/steps/first/seen"}),
        ),
    )


def engine_factory_for(database_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Container, Flaky]]]:
    """Make in-process workers (``make(actions, **settings)``) on ``database_url``; stop them all at the end."""
    made: list[Container] = []

    def make(actions: Mapping[str, Any] | None = None, *, workflows: list[WorkflowSpec] | None = None,
             launch: bool = True, **overrides: Any) -> tuple[Container, Flaky]:
        flaky = Flaky()
        settings = load_settings(
            database_url=database_url,
            engine_database_url=(f"sqlite:///{tmp_path / 'engine.sqlite'}" if database_url.startswith("sqlite")
                                 else None),
            retry_base_delay_s=0.01, retry_max_delay_s=0.05, worker_id="test-worker",
            # the engine's own tests watch core.audit runs too
            **{"audit_runs": True, "dispatch_interval_s": 0.05, "engine_idle_poll_s": 1.0, **overrides},
        )
        c = bootstrap(settings, "worker", extra_workflows=[spec(), *(workflows or [])],
                      extra_actions={"testsys.thing.do": flaky, "testsys.other.do": flaky, **(actions or {})},
                      migrate=True)
        made.append(c)
        assert c.engine is not None
        if launch:
            c.engine.launch()
        return c, flaky

    yield make
    for c in reversed(made):  # a test that restarts has stopped the earlier ones already
        if c.engine is not None:
            c.engine.shutdown()
        c.close()


def deliver(c: Container, event_id: str, event_type: str = "test.happened", amount: int = 1250) -> None:
    body = json.dumps({"id": event_id, "type": event_type, "data": {"amount_minor": amount}}).encode()
    deliver_raw(c, [(event_id, event_type, body)])


def deliver_raw(c: Container, deliveries: list[tuple[str, str, bytes]]) -> None:
    """Store Stripe deliveries ``(event id, type, body)`` as they are, in one inbox batch, and wake the dispatcher."""
    c.inbox.record_batch([Delivery("stripe", i, t, body, datetime.now(UTC)) for i, t, body in deliveries])
    if c.engine is not None:
        c.engine.wake_dispatcher()


def wait_for(pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def run_status(c: Container, run_id: str) -> str | None:
    run = c.runs.get(run_id)
    return run["status"] if run else None
