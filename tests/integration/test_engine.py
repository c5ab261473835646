"""The durable engine in-process on SQLite and PostgreSQL: routing, retries, DLQ, replay, breaker, limiter."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from commerce_bridge import errors as E
from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.domain.delivery import Delivery
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.workflows.spec import StepContext, StepSpec, Trigger, WorkflowSpec
from tests.support.engine import deliver, run_status, wait_for


def test_event_runs_every_matching_workflow_with_parameters(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    deliver(c, "evt_1")
    wait_for(lambda: run_status(c, "stripe:evt_1:test.flow") == "succeeded")
    wait_for(lambda: run_status(c, "stripe:evt_1:core.audit") == "succeeded")
    assert flaky.calls == [("stripe:evt_1:test.flow:first", 1), ("stripe:evt_1:test.flow:second", 1)]
    assert c.inbox.get("stripe", "evt_1").status == "processed"  # type: ignore[union-attr]
    assert [r["executions"] for r in c.audit.all()] == [1]


def test_event_of_another_type_starts_only_the_audit(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    deliver(c, "evt_other", event_type="charge.succeeded")
    wait_for(lambda: run_status(c, "stripe:evt_other:core.audit") == "succeeded")
    assert c.runs.get("stripe:evt_other:test.flow") is None and flaky.calls == []


def test_disabled_workflow_never_starts_and_an_event_nobody_wants_is_processed(engine_factory: Any) -> None:
    c, flaky = engine_factory(workflows_disabled=["core.audit"])
    deliver(c, "evt_d")
    wait_for(lambda: run_status(c, "stripe:evt_d:test.flow") == "succeeded")
    deliver(c, "evt_none", event_type="charge.succeeded")  # matches no enabled workflow
    wait_for(lambda: c.inbox.get("stripe", "evt_none").status == "processed")  # type: ignore[union-attr]
    assert c.runs.get("stripe:evt_d:core.audit") is None and c.runs.get("stripe:evt_none:core.audit") is None
    assert c.audit.all() == []
    assert c.inbox.get("stripe", "evt_d").status == "processed"  # type: ignore[union-attr]
    assert len(flaky.calls) == 2


def test_disabling_an_unknown_workflow_stops_start_up_naming_the_setting(database_url: str) -> None:
    settings = load_settings(database_url=database_url, workflows_disabled=["core.audit", "no.such_flow"])
    with pytest.raises(E.ConfigurationError) as info:
        bootstrap(settings, "worker", migrate=True)
    assert "CB_WORKFLOWS_DISABLED" in str(info.value.errors) and "no.such_flow" in str(info.value.errors)


def test_sqlite_engine_database_is_in_wal_mode(tmp_path: Any) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'bridge.sqlite'}", worker_id="wal-test")
    c = bootstrap(settings, "worker", migrate=True)
    assert c.engine is not None
    c.engine.launch()
    try:
        path = settings.effective_engine_database_url().removeprefix("sqlite:///")
        with sqlite3.connect(path) as lite:  # DBOS alone would leave it in rollback-journal ("delete") mode
            assert lite.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        c.engine.shutdown()
        c.close()


def test_transient_failures_are_retried_with_the_same_idempotency_key(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    flaky.plan["evt_t"] = [E.UpstreamUnavailable("503"), E.RateLimited("429", retry_after=0.05)]
    deliver(c, "evt_t")
    wait_for(lambda: run_status(c, "stripe:evt_t:test.flow") == "succeeded")
    firsts = [call for call in flaky.calls if call[0].endswith(":first")]
    assert firsts == [("stripe:evt_t:test.flow:first", 1), ("stripe:evt_t:test.flow:first", 2),
                      ("stripe:evt_t:test.flow:first", 3)]


def test_exhausted_retries_park_the_run_in_the_dlq(engine_factory: Any) -> None:
    c, flaky = engine_factory(retry_max_attempts=3)
    flaky.plan["evt_x"] = [E.UpstreamUnavailable("down", upstream_request_id=f"req_{i}") for i in range(5)]
    deliver(c, "evt_x")
    wait_for(lambda: run_status(c, "stripe:evt_x:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["attempts"] == 3 and entry["error_code"] == "upstream_unavailable"
    assert entry["upstream_request_id"] == "req_2" and entry["step_id"] == "first"
    assert entry["step_input"] == {"amount": "$/event/data/amount_minor"}
    assert c.inbox.get("stripe", "evt_x").status == "failed"  # type: ignore[union-attr]


def test_permanent_error_parks_at_once_and_replay_resumes_from_the_failed_step(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    flaky.plan["evt_p"] = [E.ValidationError("email is invalid", suggested_fix="correct the e-mail")]
    deliver(c, "evt_p")
    # `first` succeeds, `second` fails for good: the DLQ entry is for `second`
    flaky.plan["evt_p"] = []
    wait_for(lambda: run_status(c, "stripe:evt_p:test.flow") == "succeeded")  # first run: no failure queued

    flaky.plan["evt_q"] = [E.ValidationError("email is invalid", suggested_fix="correct the e-mail")]
    deliver(c, "evt_q")
    wait_for(lambda: run_status(c, "stripe:evt_q:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["attempts"] == 1 and entry["suggested_fix"] == "correct the e-mail"
    calls_before = list(flaky.calls)
    replayed = c.admin.replay(entry["id"], "fixed the e-mail")
    assert replayed["status"] == "replayed"
    wait_for(lambda: run_status(c, "stripe:evt_q:test.flow") == "succeeded")
    new_calls = flaky.calls[len(calls_before):]
    # it resumed at `first` (the failed step) with the same key; nothing before it ran again
    assert new_calls[0] == ("stripe:evt_q:test.flow:first", 1)
    # processed once its audit run is done too (that one goes through the engine's queue, and may start
    # after the business run, which the dispatcher started directly, has parked, been replayed and finished)
    wait_for(lambda: c.inbox.get("stripe", "evt_q").status == "processed")  # type: ignore[union-attr]
    with pytest.raises(E.ValidationError, match="already replayed"):
        c.admin.replay(entry["id"])


def test_replay_skips_steps_that_already_succeeded(engine_factory: Any) -> None:
    c, flaky = engine_factory()

    class FailSecondOnce:
        armed = True

        def __call__(self, ctx: StepContext, params: Mapping[str, Any]) -> Any:
            flaky.calls.append((ctx.idempotency_key, ctx.attempt))
            if self.armed:
                raise E.MappingError("unknown SKU")
            return {"ok": True}

    second = FailSecondOnce()
    assert c.engine is not None
    c.engine.actions["testsys.other.do"] = second
    deliver(c, "evt_s")
    wait_for(lambda: run_status(c, "stripe:evt_s:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["step_id"] == "second"
    second.armed = False
    n_before = len(flaky.calls)
    c.admin.replay(entry["id"])
    wait_for(lambda: run_status(c, "stripe:evt_s:test.flow") == "succeeded")
    assert flaky.calls[n_before:] == [("stripe:evt_s:test.flow:second", 1)]


def test_replay_from_start_rereads_data_fixed_at_the_source(engine_factory: Any) -> None:
    c, _ = engine_factory()
    source = {"email": "bad-address"}
    keys: list[str] = []

    def read(ctx: StepContext, params: Mapping[str, Any]) -> Any:  # `first`: reads the source system
        keys.append(ctx.idempotency_key)
        return {"seen": source["email"]}

    def check(ctx: StepContext, params: Mapping[str, Any]) -> Any:  # `second`: validates what `first` read
        if "@" not in str(params["prev"]):
            raise E.ValidationError(f"invalid e-mail {params['prev']!r}", suggested_fix="correct it, then replay")
        return {"ok": True}

    assert c.engine is not None
    c.engine.actions.update({"testsys.thing.do": read, "testsys.other.do": check})
    deliver(c, "evt_fs")
    wait_for(lambda: run_status(c, "stripe:evt_fs:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    source["email"] = "shopper@example.com"  # fixed where the data lives
    # a plain replay resumes at `second` with what `first` read before: it fails the same way
    c.admin.replay(entry["id"], "fixed the e-mail")
    wait_for(lambda: c.dead_letters.count_open() == 1 and run_status(c, "stripe:evt_fs:test.flow") == "parked")
    [again] = c.dead_letters.list()
    assert again["id"] != entry["id"] and "bad-address" in again["error_message"] and len(keys) == 1
    # from the start: `first` reads the corrected data, with the same idempotency key
    c.admin.replay(again["id"], "fixed the e-mail", from_start=True)
    wait_for(lambda: run_status(c, "stripe:evt_fs:test.flow") == "succeeded")
    assert keys == ["stripe:evt_fs:test.flow:first"] * 2
    assert c.dead_letters.count_open() == 0


def test_a_bug_goes_to_the_dlq_without_retry(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    flaky.plan["evt_b"] = [ZeroDivisionError("oops")]
    deliver(c, "evt_b")
    wait_for(lambda: run_status(c, "stripe:evt_b:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["error_code"] == "internal_error" and entry["attempts"] == 1
    assert "ZeroDivisionError" in entry["traceback"] and "bug" in entry["suggested_fix"]


def test_discard_closes_the_entry_and_the_run(engine_factory: Any) -> None:
    c, flaky = engine_factory()
    flaky.plan["evt_d"] = [E.UpstreamRejected("card declined")]
    deliver(c, "evt_d")
    wait_for(lambda: run_status(c, "stripe:evt_d:test.flow") == "parked")
    [entry] = c.dead_letters.list()
    with pytest.raises(E.ValidationError, match="reason"):
        c.admin.discard(entry["id"], " ")
    c.admin.discard(entry["id"], "customer paid by bank transfer")
    assert run_status(c, "stripe:evt_d:test.flow") == "discarded"
    wait_for(lambda: c.inbox.get("stripe", "evt_d").status == "processed")  # type: ignore[union-attr]


def test_open_breaker_fails_fast_then_a_probe_lets_work_drain(engine_factory: Any) -> None:
    c, flaky = engine_factory(breaker_failure_threshold=2, breaker_reset_timeout_s=1.0, retry_max_attempts=2)
    flaky.plan["evt_br0"] = [E.UpstreamUnavailable("down")] * 2
    deliver(c, "evt_br0")
    wait_for(lambda: run_status(c, "stripe:evt_br0:test.flow") == "parked")
    assert c.breakers.get("testsys").state.value == "open"
    assert 'cb_circuit_breaker_state{destination="testsys"} 2.0' in c.metrics.render().decode()
    # While open, work is refused without calling the destination and waits for the probe.
    deliver(c, "evt_after")
    wait_for(lambda: run_status(c, "stripe:evt_after:test.flow") in ("succeeded", "parked"), timeout=20)
    after = [attempt for key, attempt in flaky.calls if key.startswith("stripe:evt_after:test.flow:first")]
    assert after and after[0] == 2, after  # attempt 1 failed fast (circuit_open), attempt 2 was the probe
    assert run_status(c, "stripe:evt_after:test.flow") == "succeeded"
    assert c.breakers.get("testsys").state.value == "closed"


def test_rate_limit_spaces_calls_to_a_destination(engine_factory: Any) -> None:
    c, _flaky = engine_factory(rate_limits={"testsys": 20}, rate_limit_margin=0.0)
    stamps: list[float] = []

    def timed(ctx: StepContext, params: Mapping[str, Any]) -> Any:
        stamps.append(time.monotonic())
        return {"seen": 1}

    assert c.engine is not None
    c.engine.actions["testsys.thing.do"] = timed
    c.engine.actions["testsys.other.do"] = timed
    for i in range(15):
        deliver(c, f"evt_rl{i}")
    wait_for(lambda: len(stamps) >= 30)
    stamps.sort()
    span = stamps[-1] - stamps[0]
    assert span >= 29 / 20 * 0.9  # 30 calls at 20/s take at least ~1.45 s


def test_long_wait_frees_the_worker_and_a_timer_resumes_after_the_wait(engine_factory: Any) -> None:
    from commerce_bridge.workflows.spec import StepSpec as S

    c, flaky = engine_factory(long_wait_s=0.5)
    assert c.engine is not None
    wait_flow = WorkflowSpec(
        name="test.wait", version="1", trigger=Trigger(sources=("stripe",), event_types=("wait.*",)),
        steps=(S(id="before", uses="testsys.thing.do"), S(id="pause", uses="core.wait.until", with_={"delay_s": 2}),
               S(id="after", uses="testsys.other.do")),
    )
    c.router.registry._add(wait_flow, "code", None, None, None)
    deliver(c, "evt_w", event_type="wait.please")
    wait_for(lambda: run_status(c, "stripe:evt_w:test.wait") == "waiting", timeout=15)
    keys = [k for k, _ in flaky.calls if k.startswith("stripe:evt_w:test.wait")]
    assert keys == ["stripe:evt_w:test.wait:before"]
    wait_for(lambda: run_status(c, "stripe:evt_w:test.wait") == "succeeded", timeout=30)
    keys = [k for k, _ in flaky.calls if k.startswith("stripe:evt_w:test.wait")]
    assert keys == ["stripe:evt_w:test.wait:before", "stripe:evt_w:test.wait:after"]  # `before` not repeated


# ---- a run is pinned to the exact text of its workflow file --------------------------------------
PINNED_A = """\
name: test.pinned
version: 1
trigger:
  sources: [stripe]
  event_types: [pin.*]
steps:
  - id: read
    uses: clarity.order.get
    with:
      order_id: ${ event.data.order_id }
  - id: pause
    uses: core.wait.until
    with:
      delay_s: 2
  - id: refund
    uses: stripe.refund.create
    with:
      payment_intent_id: ${ event.data.payment_intent_id }
      amount: ${ event.data.amount }
"""
# the same file edited in place, `version` not bumped: the same step ids, so DBOS alone would replay
# the recorded `read` and `pause` into it and refund with the new parameters
PINNED_B = PINNED_A.replace("delay_s: 2", "delay_s: 0").replace(
    "      amount: ${ event.data.amount }\n", "      amount: ${ event.data.amount }\n      reason: duplicate\n")


class Recorder:
    """A test action (a fake at the port): answers ``output``, records each call's key and parameters."""

    def __init__(self, output: dict[str, Any]) -> None:
        self.output = output
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append((ctx.idempotency_key, dict(params)))
        return self.output


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pinned_engine(engine_factory: Any, folder: Path) -> tuple[Container, Recorder, Recorder]:
    read, refund = Recorder({"ID": 42}), Recorder({"id": "re_1", "status": "succeeded"})
    c, _ = engine_factory(actions={"clarity.order.get": read, "stripe.refund.create": refund},
                          workflows_dir=str(folder), long_wait_s=0.5, heartbeat_interval_s=0.5)
    return c, read, refund


def restart(c: Container) -> None:
    """Stop this process's engine as a process exit would (the next ``engine_factory()`` is the new process)."""
    assert c.engine is not None
    c.engine.shutdown()
    c.close()


def deliver_refund(c: Container, event_id: str) -> None:
    body = json.dumps({"id": event_id, "type": "pin.refund", "data": {
        "order_id": "42", "payment_intent_id": "pi_1", "amount": {"minor": 1250, "currency": "USD"}}}).encode()
    c.inbox.record_batch([Delivery("stripe", event_id, "pin.refund", body, datetime.now(UTC))])
    assert c.engine is not None
    c.engine.wake_dispatcher()


def start_on_text_a_and_restart_on_text_b(engine_factory: Any, folder: Path, event_id: str) -> tuple[
        Container, Recorder, Recorder, dict[str, Any]]:
    """A run waits mid-way on text A; the process restarts with the file edited in place to text B."""
    folder.mkdir()
    (folder / "pinned.yaml").write_text(PINNED_A)
    c, read, refund = pinned_engine(engine_factory, folder)
    run_id = f"stripe:{event_id}:test.pinned"
    deliver_refund(c, event_id)
    wait_for(lambda: run_status(c, run_id) == "waiting")
    [wf] = c.admin.client.list_workflows(workflow_ids=[run_id], load_input=True, load_output=False)
    assert wf.input is not None and wf.input["args"][0]["digest"] == sha(PINNED_A)  # planned on text A
    assert [key for key, _ in read.calls] == [f"{run_id}:read"] and refund.calls == []
    restart(c)
    (folder / "pinned.yaml").write_text(PINNED_B)
    c, read, refund = pinned_engine(engine_factory, folder)
    wait_for(lambda: run_status(c, run_id) == "parked")
    [entry] = c.dead_letters.list()
    return c, read, refund, entry


def test_run_parks_when_its_workflow_file_changed_in_place_and_from_start_runs_the_new_text(
        engine_factory: Any, tmp_path: Path) -> None:
    c, read, refund, entry = start_on_text_a_and_restart_on_text_b(engine_factory, tmp_path / "wf", "evt_pin")
    changed = (f"workflow test.pinned version 1 changed since this run started "
               f"(file {sha(PINNED_A)[:8]}, now {sha(PINNED_B)[:8]})")
    assert entry["error_code"] == "validation_error" and entry["error_message"] == changed
    assert entry["step_id"] == "(start)" and "--from-start" in entry["suggested_fix"]
    assert "Bump `version`" in entry["suggested_fix"]
    assert read.calls == [] and refund.calls == []  # no step of text B ran
    # a plain replay resumes on the text the run started with: still not loaded, it parks again
    c.admin.replay(entry["id"], "tried again")
    wait_for(lambda: c.dead_letters.count_open() == 1 and run_status(c, "stripe:evt_pin:test.pinned") == "parked")
    [again] = c.dead_letters.list()
    assert again["id"] != entry["id"] and again["error_message"] == changed
    assert read.calls == [] and refund.calls == []
    # from the start: the same event again, pinned to text B (its digest matches, so it runs normally)
    c.admin.replay(again["id"], "run it on the new file", from_start=True)
    wait_for(lambda: run_status(c, "stripe:evt_pin:test.pinned") == "succeeded")
    assert [key for key, _ in read.calls] == ["stripe:evt_pin:test.pinned:read"]
    assert refund.calls == [("stripe:evt_pin:test.pinned:refund", {
        "payment_intent_id": "pi_1", "amount": {"minor": 1250, "currency": "USD"}, "reason": "duplicate"})]
    assert c.dead_letters.count_open() == 0


def test_run_parked_for_a_changed_file_resumes_on_its_own_text_once_the_file_is_put_back(
        engine_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    c, _, _, entry = start_on_text_a_and_restart_on_text_b(engine_factory, folder, "evt_back")
    restart(c)
    # text A next to text B: loaded after it, A is registered as version "1+<its digest>"
    (folder / "pinned_restored.yaml").write_text(PINNED_A)
    c, read, refund = pinned_engine(engine_factory, folder)
    assert c.router.registry.entry("test.pinned", "1").digest == sha(PINNED_B)  # type: ignore[union-attr]
    c.admin.replay(entry["id"], "put the old file back")
    wait_for(lambda: run_status(c, "stripe:evt_back:test.pinned") == "succeeded")
    assert read.calls == []  # resumed after the wait: `read` was recorded before the restart
    assert refund.calls == [("stripe:evt_back:test.pinned:refund", {
        "payment_intent_id": "pi_1", "amount": {"minor": 1250, "currency": "USD"}})]  # text A's refund


def test_replay_from_start_runs_on_the_active_version_when_the_run_s_version_is_gone(
        engine_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "pinned.yaml").write_text(PINNED_A)
    c, _, _ = pinned_engine(engine_factory, folder)
    deliver_refund(c, "evt_gone")
    wait_for(lambda: run_status(c, "stripe:evt_gone:test.pinned") == "waiting")
    restart(c)
    (folder / "pinned.yaml").write_text(PINNED_B.replace("version: 1", "version: 2"))  # replaced, not kept
    c, read, refund = pinned_engine(engine_factory, folder)
    wait_for(lambda: run_status(c, "stripe:evt_gone:test.pinned") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["error_message"] == "workflow test.pinned version 1 is not installed"
    assert read.calls == [] and refund.calls == []
    assert c.runs.get("stripe:evt_gone:test.pinned")["workflow_version"] == "1"  # type: ignore[index]
    c.admin.replay(entry["id"], "run it on version 2", from_start=True)
    wait_for(lambda: run_status(c, "stripe:evt_gone:test.pinned") == "succeeded")
    assert [p.get("reason") for _, p in refund.calls] == ["duplicate"]  # version 2's refund
    assert c.runs.get("stripe:evt_gone:test.pinned")["workflow_version"] == "2"  # type: ignore[index]  # re-pinned


class Unavailable:
    """A store (a fake at the port) whose database refuses the first ``times`` calls of ``methods``."""

    def __init__(self, real: Any, methods: set[str], times: int) -> None:
        self._real, self._methods, self._left = real, methods, times
        self.refused = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self._methods:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._left > 0:
                    self._left -= 1
                    self.refused += 1
                    raise E.StoreUnavailable("database unavailable: OperationalError")
            return attr(*args, **kwargs)

        return call


def test_a_run_waits_out_a_database_outage_instead_of_failing_for_good(engine_factory: Any) -> None:
    # Before, the run's own status write raised in the workflow body: DBOS recorded the run as failed
    # for good, our table said running, and nothing retried or parked it.
    c, flaky = engine_factory(workflows_disabled=["core.audit"])
    assert c.engine is not None
    outage = Unavailable(c.engine.runs, {"set_status"}, times=4)
    c.engine.runs = outage
    deliver(c, "evt_outage")
    wait_for(lambda: run_status(c, "stripe:evt_outage:test.flow") == "succeeded")
    assert outage.refused == 4
    assert flaky.calls == [("stripe:evt_outage:test.flow:first", 1), ("stripe:evt_outage:test.flow:second", 1)]
    assert c.inbox.get("stripe", "evt_outage").status == "processed"  # type: ignore[union-attr]


def test_a_run_parks_in_the_dlq_through_a_database_outage(engine_factory: Any) -> None:
    c, flaky = engine_factory(workflows_disabled=["core.audit"])
    assert c.engine is not None
    flaky.plan["evt_outage_park"] = [E.ValidationError("bad amount", suggested_fix="fix it")]
    outage = Unavailable(c.engine.dead_letters, {"add"}, times=3)
    c.engine.dead_letters = outage
    deliver(c, "evt_outage_park")
    wait_for(lambda: run_status(c, "stripe:evt_outage_park:test.flow") == "parked")
    assert outage.refused == 3
    [entry] = c.dead_letters.list()
    assert (entry["run_id"], entry["step_id"], entry["error_code"]) == (
        "stripe:evt_outage_park:test.flow", "first", "validation_error")


def test_business_runs_start_while_audit_runs_hold_the_queue(engine_factory: Any) -> None:
    # One run at a time (worker_concurrency=1). Audit runs (background bookkeeping) go to the engine's
    # queue; business runs are started directly by the dispatcher. An audit run that hangs never holds
    # a business run back: all three events' business runs finish while the first audit run is stuck.
    started: list[tuple[str, str]] = []
    gate = threading.Event()

    def business(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        started.append(("flow", ctx.event_id))
        return {"seen": 1}

    def audit(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        started.append(("audit", ctx.event_id))
        assert gate.wait(30)
        return {"recorded": True}

    c, _ = engine_factory(actions={"testsys.thing.do": business, "core.audit.record": audit},
                          worker_concurrency=1)
    try:
        deliver(c, "evt_p1")
        wait_for(lambda: ("audit", "evt_p1") in started)
        deliver(c, "evt_p2")
        deliver(c, "evt_p3")
        wait_for(lambda: all(run_status(c, f"stripe:evt_p{i}:test.flow") == "succeeded" for i in (1, 2, 3)))
        assert [s for s in started if s[0] == "audit"] == [("audit", "evt_p1")]  # still the one stuck
    finally:
        gate.set()
    wait_for(lambda: len(started) == 6)
    assert sorted(started) == sorted([(kind, f"evt_p{i}") for kind in ("flow", "audit") for i in (1, 2, 3)])


def test_direct_start_takes_no_more_deliveries_than_free_run_slots(engine_factory: Any) -> None:
    # worker_concurrency=2 and every run blocks: a burst of 5 events starts 2 runs; the other deliveries
    # wait in the inbox (not on the engine's queue) and start as slots free up.
    started: list[str] = []
    gate = threading.Event()

    def business(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        started.append(ctx.event_id)
        assert gate.wait(30)
        return {"seen": 1}

    c, _ = engine_factory(actions={"testsys.thing.do": business}, worker_concurrency=2, audit_runs=False)
    try:
        for i in range(1, 6):
            deliver(c, f"evt_s{i}")
        wait_for(lambda: len(started) == 2)
        time.sleep(0.6)  # several dispatcher passes
        assert sorted(started) == ["evt_s1", "evt_s2"]  # the two oldest, started at once
        assert c.inbox.backlog() == 3
    finally:
        gate.set()
    wait_for(lambda: len(started) == 5)
    assert sorted(started[2:]) == ["evt_s3", "evt_s4", "evt_s5"]
    wait_for(lambda: all(run_status(c, f"stripe:evt_s{i}:test.flow") == "succeeded" for i in range(1, 6)))


def inline_flow() -> WorkflowSpec:
    """A pure, local step (``core.identity.lookup`` is declared ``inline``) before a step with side effects."""
    return WorkflowSpec(
        name="test.inline", version="1", trigger=Trigger(sources=("stripe",), event_types=("inline.*",)),
        steps=(
            StepSpec(id="lookup", uses="core.identity.lookup",
                     with_={"entity": "customer", "key": "${ event.data.email }", "system": "stripe"}),
            StepSpec(id="act", uses="testsys.thing.do", with_={"amount": "${ steps.lookup.found }"}),
        ),
    )


def deliver_inline(c: Container, event_id: str, email: str) -> None:
    body = json.dumps({"id": event_id, "type": "inline.happened", "data": {"email": email}}).encode()
    c.inbox.record_batch([Delivery("stripe", event_id, "inline.happened", body, datetime.now(UTC))])
    assert c.engine is not None
    c.engine.wake_dispatcher()


def recorded_steps(c: Container, run_id: str) -> list[str]:
    run = c.runs.get(run_id)
    assert run is not None
    return [s["function_name"] for s in c.admin.client.list_workflow_steps(run["engine_workflow_id"] or run_id,
                                                                           load_output=False)]


def test_an_inline_step_is_not_checkpointed_and_is_computed_again_on_replay(engine_factory: Any) -> None:
    c, flaky = engine_factory(workflows=[inline_flow()])
    flaky.plan["evt_in"] = [E.ValidationError("not yet", suggested_fix="retry later")]
    deliver_inline(c, "evt_in", "ann@example.com")
    wait_for(lambda: run_status(c, "stripe:evt_in:test.inline") == "parked")
    assert "step:lookup" not in recorded_steps(c, "stripe:evt_in:test.inline")
    assert "step:act" in recorded_steps(c, "stripe:evt_in:test.inline")

    # the customer gets linked meanwhile: the replayed run computes the lookup again and sees it
    identity = SqlIdentityMap(c.db)
    identity.link("customer", identity.entity_for_key("customer", "ann@example.com"), "stripe", "cus_ann")
    [entry] = c.dead_letters.list()
    assert entry["step_id"] == "act"
    c.admin.replay(entry["id"], "linked")
    wait_for(lambda: run_status(c, "stripe:evt_in:test.inline") == "succeeded")
    assert flaky.calls[-1] == ("stripe:evt_in:test.inline:act", 1)


def test_a_run_parked_at_an_inline_step_replays_from_that_step(engine_factory: Any) -> None:
    c, _ = engine_factory(workflows=[inline_flow()])
    deliver_inline(c, "evt_blank", "")  # an empty key is a ValidationError of the lookup itself
    wait_for(lambda: run_status(c, "stripe:evt_blank:test.inline") == "parked")
    [entry] = c.dead_letters.list()
    assert entry["step_id"] == "lookup"
    c.admin.replay(entry["id"], "try again")  # no recorded step:lookup: resumes at its park
    wait_for(lambda: any(e["id"] != entry["id"] for e in c.dead_letters.list()))
    [again] = c.dead_letters.list()
    assert again["step_id"] == "lookup" and c.dead_letters.get(entry["id"])["status"] == "replayed"


def test_by_default_an_event_starts_no_audit_run_and_its_inbox_row_is_the_record(engine_factory: Any) -> None:
    c, _ = engine_factory(audit_runs=False)  # the shipped default (the engine tests turn it on)
    deliver(c, "evt_plain")
    deliver(c, "evt_nobody", event_type="charge.succeeded")  # no workflow wants it
    wait_for(lambda: run_status(c, "stripe:evt_plain:test.flow") == "succeeded")
    wait_for(lambda: c.inbox.get("stripe", "evt_nobody").status == "processed")  # type: ignore[union-attr]
    assert c.runs.get("stripe:evt_plain:core.audit") is None and c.audit.all() == []
    listed = {row["event_id"]: row for row in c.inbox.list()}
    assert [r["workflow"] for r in listed["evt_plain"]["runs"]] == ["test.flow"]
    assert listed["evt_nobody"]["runs"] == [] and listed["evt_nobody"]["status"] == "processed"
