"""Schemathesis against the admin API's own OpenAPI schema, in-process, over a real migrated SQLite store.

The app is the one ``ingress`` runs (``build_app``, lifespan included) over a store seeded with
deliveries, runs, dead-letter entries and dead workers, and an engine database a worker has
initialised, so replay, discard and recover really run with the ids the fuzzer picks. Every phase
of schemathesis runs (explicit examples, boundary coverage, random fuzzing), valid and invalid
data, every built-in check: never a 5xx, every answer (errors included) matches its declared
schema, undeclared methods get 405, calls without a token are refused. Bounded (a few dozen
examples per operation, derandomised), so it takes seconds and runs the same way every time.

The worker is not running during the fuzz: a forced ``recover`` of a live worker in this process
would fence it (its engine stops its runs and restarts, ``engine.fenced``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python.asgi import shutdown_lifespans

from commerce_bridge.bootstrap import bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.entrypoints.http.app import build_app
from tests.support.admin_data import LEAKS, init_engine_database, seed_sensitive

SEED = 1  # fixed: the same requests on every run (other seeds explore further: fuzz(..., seed=n))
TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATIONS = {  # the whole API: a new route must be added here, so it cannot escape the fuzzer
    "GET /events", "GET /runs/{run_id}", "GET /dlq", "GET /dlq/{entry_id}", "POST /dlq/{entry_id}/replay",
    "POST /dlq/{entry_id}/discard", "GET /workers", "POST /workers/{executor_id}/recover",
    "GET /reconciliation/payouts", "GET /reconciliation/payouts/{payout_id}",
    "POST /reconciliation/payouts/{payout_id}/reconcile", "GET /reconciliation/exceptions",
    "GET /reconciliation/report", "GET /reconciliation/drift",
}

# schemathesis draws regexes through a strategy Hypothesis flags for its own use of `random`
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("admin-fuzz")
    s = load_settings(database_url=f"sqlite:///{tmp / 'bridge.sqlite'}",
                      engine_database_url=f"sqlite:///{tmp / 'engine.sqlite'}",
                      stripe_webhook_secrets="whsec_fuzz", admin_tokens=TOKEN, worker_id="fuzz-worker",
                      clarity_poll_interval_s=0)
    init_engine_database(s)  # a worker has run once: the engine database exists
    c = bootstrap(s, "ingress")
    for tag in range(1, 13):  # a dozen of each: small ids hit real rows, in every state the fuzzer leaves them
        seed_sensitive(c, tag=str(tag))
    try:
        yield build_app(c)
    finally:
        shutdown_lifespans()  # the app's lifespan has run since the first request
        c.close()


@dataclass
class Outcome:
    cases: int
    statuses: set[int]
    failures: list[str]
    errors: list[str]
    operations: set[str]
    leaks: list[str]


def fuzz(app: Any, *, headers: dict[str, str], max_examples: int, excluded_checks: tuple[str, ...] = (),
         seed: int = SEED) -> Outcome:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=AUTH)
    schema.config.seed = seed
    schema.config.update(headers=headers, continue_on_failure=True)
    schema.config.generation.update(max_examples=max_examples, deterministic=True, database="none")
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    # refusals that depend on the store's state (entry already resolved, worker still alive) are a 422
    # in the project's error table; everything else a valid request may get is schemathesis' default
    default = schema.config.checks.positive_data_acceptance.expected_statuses
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=[*default, "422"])
    if excluded_checks:
        schema.config.checks.update(excluded_check_names=list(excluded_checks))
    out = Outcome(0, set(), [], [], {op.ok().label for op in schema.get_all_operations()}, [])
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            rec = event.recorder
            out.cases += len(rec.cases)
            answers = [i.response for i in rec.interactions.values() if i.response is not None]
            out.statuses |= {a.status_code for a in answers}
            out.leaks += [f"{rec.label}: {secret}" for a in answers for secret in LEAKS
                          if secret.encode() in a.content]
            for case_id, checks in rec.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE:
                        out.failures.append(_describe(event.phase, rec, case_id, check))
        elif isinstance(event, events.NonFatalError):
            out.errors.append(event.info.format())
        elif isinstance(event, events.FatalError):
            out.errors.append(repr(event.exception))
        elif isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason
    return out


def _describe(phase: Any, rec: Any, case_id: str, check: Any) -> str:
    case = rec.cases[case_id].value
    answer = rec.interactions.get(case_id)
    got = (f"{answer.response.status_code} {answer.response.content[:300]!r}"
           if answer is not None and answer.response is not None else "no answer")
    title = check.failure_info.failure.title if check.failure_info else ""
    body = case.body if isinstance(case.body, dict | list | str | bytes) else None
    return (f"[{phase}] {check.name}: {title}: {case.method} {case.formatted_path} "
            f"query={case.query} body={body!r} -> {got}")


def test_with_a_token_every_operation_answers_within_its_schema_and_never_5xx(admin_app: Any) -> None:
    out = fuzz(admin_app, headers=AUTH, max_examples=25)
    assert out.operations == OPERATIONS
    assert out.errors == []
    assert out.failures == [], "\n".join(out.failures[:20])
    assert out.leaks == []  # the seeded cards, e-mails and URL tokens never show, whatever was asked
    assert out.cases > 300  # it really ran: every phase, every operation
    assert {200, 401, 404, 405, 422} <= out.statuses  # found rows, missed ones, and refused bad input
    assert not any(s >= 500 for s in out.statuses)


def test_without_a_token_every_operation_answers_401_within_its_schema(admin_app: Any) -> None:
    # without a token nothing is revealed, not even which methods a path has (unsupported_method wants 405)
    out = fuzz(admin_app, headers={}, max_examples=5, excluded_checks=("unsupported_method",))
    assert out.operations == OPERATIONS
    assert out.errors == []
    assert out.failures == [], "\n".join(out.failures[:20])
    assert out.cases > 60
    assert out.statuses == {401}
