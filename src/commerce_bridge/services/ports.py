"""Ports: the interfaces the services and the engine need, implemented by store/ and connectors/."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from commerce_bridge.domain.delivery import Delivery, HandOver, RunStatus, StoredDelivery


@dataclass(frozen=True, slots=True)
class DispatchPriority:
    """Deliveries matching ``sources`` and ``event_types`` (trigger patterns: ``*``, exact, ``prefix*``) are
    dispatched before lower ones when several wait (``CB_WORKFLOW_PRIORITIES``)."""

    sources: tuple[str, ...]
    event_types: tuple[str, ...]
    priority: int


class Inbox(Protocol):
    """Durable storage of verified deliveries."""

    def record_batch(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Store all in one durable commit; True per delivery that was new."""
        ...

    async def record_batch_async(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """:meth:`record_batch` from the event loop (without a thread where the driver allows it)."""
        ...

    def dispatch_batch(self, limit: int,
                       handler: Callable[[list[StoredDelivery]], HandOver | Iterable[int] | None],
                       priorities: Sequence[DispatchPriority] = ()) -> int:
        """Hand undispatched deliveries to ``handler`` (highest ``priorities`` first, then oldest) and mark
        them dispatched (idle: processed; failed: failed)."""
        ...

    def redispatch(self, inbox_id: int) -> bool:
        """Put a delivery isolated at dispatch back in line; False if it was not failed."""
        ...

    def discard_dispatch(self, inbox_id: int) -> None:
        """Discard the never-started runs of a delivery isolated at dispatch."""
        ...

    def oldest_waiting_s(self) -> float | None:
        """Age of the oldest undispatched delivery (None: none waits)."""
        ...

    def backlog(self) -> int:
        """Deliveries not dispatched yet."""
        ...


class Runs(Protocol):
    """Our view of workflow runs."""

    def create(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def set_status(self, run_id: str, status: RunStatus, *, engine_workflow_id: str | None = None,
                   failed_step: str | None = None, error_code: str | None = None,
                   workflow_version: str | None = None) -> None: ...

    def park_unstarted(self, run_ids: Sequence[str], step_id: str, error_code: str) -> None:
        """Park queued runs that could not be started (without locking their delivery)."""
        ...

    def reroute(self, inbox_id: int, rows: Sequence[dict[str, Any]], step_id: str) -> None:
        """Settle the never-started runs of a re-dispatched delivery against its new routing."""
        ...

    def get(self, run_id: str) -> dict[str, Any] | None: ...


class DeadLetters(Protocol):
    """Parked runs waiting for a person."""

    def add(self, entry: dict[str, Any]) -> int: ...

    def get(self, entry_id: int) -> dict[str, Any]: ...

    def resolve(self, entry_id: int, status: str, resolution: str) -> dict[str, Any]: ...

    def count_open(self) -> int: ...


class AuditLog(Protocol):
    """What the built-in core.audit workflow writes."""

    def record(self, run_id: str, source: str, event_id: str, event_type: str | None) -> bool: ...


class WorkerLeases(Protocol):
    """Heartbeat leases of the workers."""

    def register(self, executor_id: str, hostname: str, pid: int, lease_s: float) -> int: ...

    def heartbeat(self, executor_id: str, epoch: int, lease_s: float) -> bool: ...

    def stop(self, executor_id: str, epoch: int) -> None: ...

    def expired(self, grace_s: float) -> list[str]: ...

    def begin_takeover(self, dead: str, by: str, *, grace_s: float, force: bool = False) -> bool: ...

    def finish_takeover(self, dead: str, recovered_runs: int) -> None: ...


class RateLimiter(Protocol):
    """This process's call slots per destination (``engine.limits``: in memory, or batches of shared slots)."""

    def take(self, destination: str, interval_s: float, tolerance_s: float) -> tuple[float, float]:
        """Reserve the next call slot: ``(start, end)`` on ``time.monotonic()``, call within it or not at all."""
        ...


class SharedSlots(Protocol):
    """Call slots per destination shared by every worker (a row per destination in the bridge's database)."""

    def reserve_batch(self, destination: str, interval_s: float, count: int, lead_s: float) -> tuple[float, float]:
        """Reserve ``count`` consecutive slots ``interval_s`` apart, none sooner than ``lead_s`` from now.

        Returns the first slot on this process's ``time.monotonic()`` clock as ``(earliest, latest)``:
        the bounds of a time read from the database's clock, known to within a round trip.
        """
        ...


@dataclass(frozen=True, slots=True)
class StepContext:
    """What an action receives besides its parameters."""

    run_id: str
    step_id: str
    attempt: int
    source: str
    event_id: str
    event_type: str | None
    event: Mapping[str, Any]

    @property
    def idempotency_key(self) -> str:
        """``run_id:step_id``: the same across retries, restarts and replays."""
        return f"{self.run_id}:{self.step_id}"


Action = Callable[[StepContext, Mapping[str, Any]], Any]
"""A step type's implementation: ``action(ctx, params) -> output`` (JSON-able); raises BridgeError."""




class KeyLocks(Protocol):
    """Critical sections by key, shared by every process on the database (store/locks.py).

    Find-then-create steps hold the lock of their key around the find and the create, so that two runs
    for the same new customer or document cannot both find nothing and both create it.
    """

    def hold(self, scope: str, key: str) -> AbstractContextManager[None]:
        """A context manager holding the lock of ``key`` in ``scope``; raises ``Conflict`` (transient) on timeout."""
        ...

    def try_acquire(self, name: str, holder: str, *, lease_s: float | None = None) -> bool:
        """One attempt, no waiting: ``holder`` gets ``name`` if it is free, expired or already its own
        (then the lease is renewed for ``lease_s``)."""
        ...

    def release(self, name: str, holder: str) -> bool:
        """Free ``name`` if ``holder`` has it; False (nothing changed) otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class MergedIdentity:
    """What ``merge`` moved (or, in a dry run, would move): per system the external id."""

    kind: str
    loser: str | None
    survivor: str
    moved: dict[str, str]
    """Links of the loser in systems where the survivor had none: now the survivor's."""
    retired: dict[str, str]
    """The loser's ids in systems where the survivor is linked too: retired into the survivor."""
    kept: dict[str, str]
    """The survivor's own links (unchanged)."""
    keys: int
    """De-duplication keys moved."""
    rehomed: int
    """Ids retired into the loser by an earlier merge, now pointing at the survivor."""
    dropped: tuple[str, ...]
    """Cursor rows dropped (the loser's snapshot)."""
    dry_run: bool = False


class IdentityMap(Protocol):
    """One link per (entity, system); entities found by a de-duplication key."""

    def entity_for_key(self, kind: str, dedupe_key: str) -> str: ...

    def link(self, kind: str, entity_id: str, system: str, external_id: str) -> None: ...

    def lookup(self, kind: str, system: str, external_id: str) -> str | None: ...

    def external(self, kind: str, entity_id: str, system: str) -> str | None: ...

    def externals(self, kind: str, entity_id: str) -> dict[str, str]:
        """Every system's id for our entity (system -> id)."""
        ...

    def unlink(self, kind: str, entity_id: str, system: str) -> bool:
        """Remove the entity's link in ``system``; False when there was none."""
        ...

    def retired(self, kind: str, system: str, external_id: str) -> str | None:
        """The surviving entity when ``external_id`` was retired by a merge, else None."""
        ...

    def merge(self, kind: str, loser: str | None, survivor: str, *, unlinked: Mapping[str, str] | None = None,
              drop_cursors: Sequence[str] = (), dry_run: bool = False) -> MergedIdentity:
        """Move every link and key of ``loser`` to ``survivor`` in one transaction; where both are linked in a
        system, retire the loser's id (``lookup`` then resolves it to ``survivor``)."""
        ...


class WriteFingerprints(Protocol):
    """Our own writes, so that the change coming back is not synced again (no echo loops)."""

    def record(self, system: str, kind: str, object_id: str, fingerprint: str) -> None: ...

    def consume(self, system: str, kind: str, object_id: str, fingerprint: str) -> bool: ...


class Mailer(Protocol):
    """Sends one e-mail."""

    def send(self, *, to: str, subject: str, body: str, message_id: str) -> None: ...


class Timers(Protocol):
    """Wake-up times of waiting runs."""

    def add(self, run_id: str, engine_workflow_id: str, step_name: str, wake_at: float) -> None: ...

    def claim_due(self, now: float, limit: int = 50) -> list[dict[str, Any]]: ...


@runtime_checkable
class Reconciliations(Protocol):
    """Where payout reconciliations are kept (``store/reconciliations.py``)."""

    def save(self, payout: Mapping[str, Any], exceptions: Sequence[Mapping[str, Any]]) -> None:
        """Record a payout's reconciliation and its exceptions, replacing an earlier one of the same payout."""
        ...

    def set_journal_entry(self, payout_id: str, name: str | None, *, status: str | None = None) -> None: ...

    def get(self, payout_id: str) -> dict[str, Any] | None: ...

    def done(self, payout_ids: Iterable[str]) -> set[str]: ...

    def payouts(self, *, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    def exceptions(self, *, payout_id: str | None = None, kind: str | None = None,
                   limit: int = 10000) -> list[dict[str, Any]]: ...
