"""The admin API's request and response bodies: its OpenAPI schema is built from these classes.

Every answer is declared, errors included (:class:`ErrorBody`, the one shape of
``entrypoints/http/errors.py``), so a client, and the schema fuzzer in ``make test``, can check an
answer against the schema. Ids are bounded to what a database row can hold (:data:`MAX_ID`) and text
parameters refuse NUL (PostgreSQL cannot store it): both are a 422, never a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from commerce_bridge.entrypoints.views import MAX_ID

NO_NUL = r"^[^\x00]*$"

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


def text(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """A text field that fits a column of ``max_length`` characters and holds no NUL."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)


# ---- requests -------------------------------------------------------------------------------------
class ReplayRequest(BaseModel):
    reason: Annotated[str, text(1000)] = "replayed through the admin API"
    from_start: bool = Field(default=False, description="Run every step again, not only the failed one and later ones.")


class DiscardRequest(BaseModel):
    reason: Annotated[str, text(1000, min_length=1)]


class RecoverRequest(BaseModel):
    force: bool = False


# ---- answers --------------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error answer of the API."""

    ok: Literal[False]
    error: str
    errors: list[str]
    status: int
    code: str = Field(description="Stable snake_case error code (docs/reference/errors.md).")
    request_id: str


class EventRun(BaseModel):
    run_id: str
    workflow: str
    status: str
    error_code: str | None = None


class Event(BaseModel):
    id: int
    source: str
    event_id: str
    event_type: str | None = None
    status: str
    received_at: datetime
    dispatched_at: datetime | None = None
    processed_at: datetime | None = None
    runs: list[EventRun]


class EventsPage(BaseModel):
    ok: Literal[True] = True
    events: list[Event]
    next_before_id: int | None = Field(description="Pass as before_id for the next (older) page; null on the last.")


class Run(BaseModel):
    run_id: str
    inbox_id: int
    source: str
    event_id: str
    workflow: str
    workflow_version: str
    status: str
    engine_workflow_id: str | None = None
    failed_step: str | None = None
    error_code: str | None = None
    created_at: datetime
    updated_at: datetime


class RunAnswer(BaseModel):
    ok: Literal[True] = True
    run: Run


class DeadLetter(BaseModel):
    id: int
    run_id: str
    step_id: str
    step_type: str
    attempts: int
    error_code: str
    error_message: str
    upstream_request_id: str | None = None
    suggested_fix: str | None = None
    step_input: Any = Field(description="The step's parameters when it failed (redacted like the logs).")
    traceback: str | None = None
    engine_workflow_id: str | None = None
    status: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None


class DeadLetterList(BaseModel):
    ok: Literal[True] = True
    entries: list[DeadLetter]


class DeadLetterAnswer(BaseModel):
    ok: Literal[True] = True
    entry: DeadLetter


class Worker(BaseModel):
    executor_id: str
    status: str
    hostname: str
    pid: int
    epoch: int
    started_at: datetime
    heartbeat_at: datetime
    lease_expires_at: float
    lease_remaining_s: float
    recovered_by: str | None = None
    recovered_at: datetime | None = None
    recovered_runs: int | None = None


class WorkerList(BaseModel):
    ok: Literal[True] = True
    workers: list[Worker]


class RecoverAnswer(BaseModel):
    ok: Literal[True] = True
    executor_id: str
    resumed_runs: int


class ReconciliationException(BaseModel):
    """A payout line (or payout) that did not match, with what to do about it."""

    payout_id: str
    kind: str
    ref: str = Field(description="The balance transaction id (the payout id for a payout's sum).")
    reason: str
    suggested_fix: str
    amount_minor: int | None = None
    currency: str | None = None
    expected_minor: int | None = None
    expected_currency: str | None = None
    created_at: datetime


class JournalLine(BaseModel):
    account: str
    amount_minor: int = Field(description="Signed minor units of the payout's currency: + debit, - credit.")
    currency: str
    refs: list[str] = Field(description="The balance transactions the line sums.")


class ReconciledPayout(BaseModel):
    payout_id: str
    status: str = Field(description="closed, exceptions, failed or not_reconcilable.")
    currency: str
    amount_minor: int
    arrival_date: int | None = None
    transactions: int
    matched: int
    exceptions: int
    proof: dict[str, Any] = Field(description="payout_amount, net_sum, clearing_balance, journal_balance and the "
                                              "checks sum_ok, clearing_zero, balanced, closed.")
    journal: list[JournalLine]
    journal_entry: str | None = None
    reconciled_at: datetime | None = None
    exception_rows: list[ReconciliationException] | None = None


class ReconciledPayoutList(BaseModel):
    ok: Literal[True] = True
    payouts: list[ReconciledPayout]


class ReconciledPayoutAnswer(BaseModel):
    ok: Literal[True] = True
    payout: ReconciledPayout


class ReconciliationExceptionList(BaseModel):
    ok: Literal[True] = True
    exceptions: list[ReconciliationException]


class DriftDifference(BaseModel):
    """One thing two systems disagree about, with the records on each side and the fix."""

    kind: str
    ref: str = Field(description="The record it is about: a charge, refund or dispute id, an order or return key.")
    against: str | None = Field(None, description="For amount_mismatch: the other side (clarity.order, ...).")
    ids: dict[str, str] = Field(description="The records on each side, e.g. {\"stripe.charge\": \"ch_...\"}.")
    amount_minor: int | None = None
    currency: str | None = None
    expected_minor: int | None = None
    expected_currency: str | None = None
    reason: str
    suggested_fix: str


class DriftTotal(BaseModel):
    kind: str
    currency: str | None = Field(description="None for the differences without an amount.")
    count: int
    amount_minor: int | None


class DriftAnswer(BaseModel):
    ok: Literal[True] = True
    since: datetime
    until: datetime = Field(description="Now less CB_DRIFT_SETTLE_S: younger records are left out.")
    total: int = Field(description="Every difference found; `differences` lists the first `shown`.")
    shown: int
    totals: list[DriftTotal]
    scanned: dict[str, int] = Field(description="How many records each listing read.")
    skipped: list[dict[str, str]] = Field(description="Records that could not be compared, with the reason.")
    differences: list[DriftDifference]
