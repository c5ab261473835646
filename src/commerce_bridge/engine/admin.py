"""Replay, discard and recovery from any process (the CLI, the admin API), through a DBOS client.

Rules
-----
* A plain replay forks the parked run from its failed step (same run id, same idempotency keys); the
  steps before it keep their recorded outputs. ``from_start`` runs the same event again from the first
  step, re-pinned to the workflow text loaded now.
* A delivery set aside at dispatch (step ``(dispatch)``) is replayed by putting it back in line: the
  dispatcher routes and starts it afresh. Discarding it discards its runs that never started.
* The entry is resolved and the run marked queued *before* the new run can start, so a run that parks
  again at once gets a new open entry.
* ``recover`` resumes a dead worker's pending runs on the shared queue; it refuses a live lease unless
  forced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from dbos import DBOSClient, SetWorkflowID

from commerce_bridge import errors as E
from commerce_bridge.domain.delivery import DISPATCH_STEP, RunStatus
from commerce_bridge.engine.dispatch import WorkflowRouter
from commerce_bridge.engine.interpreter import BEFORE_STEPS
from commerce_bridge.engine.runtime import (
    APP_NAME,
    ENGINE_VERSION,
    QUEUE,
    WORKFLOW_NAME,
)
from commerce_bridge.services.ports import DeadLetters, Inbox, Runs, WorkerLeases

log = structlog.get_logger("commerce_bridge.engine")


class EngineAdmin:
    """Replay and recovery through a DBOS client: works from processes that run no workflows."""

    def __init__(self, system_database_url: str, *, runs: Runs, dead_letters: DeadLetters,
                 leases: WorkerLeases, router: WorkflowRouter, inbox: Inbox | None = None) -> None:
        self._url = system_database_url
        self._inbox = inbox
        self._runs = runs
        self._dlq = dead_letters
        self._leases = leases
        self._router = router
        self._client: DBOSClient | None = None

    @property
    def client(self) -> DBOSClient:
        if self._client is None:
            self._client = DBOSClient(system_database_url=self._url, application_name=APP_NAME)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None

    def replay(self, entry_id: int, reason: str = "replayed by operator", *,
               from_start: bool = False) -> dict[str, Any]:
        """Resume a parked run from its failed step (same run id, same idempotency keys).

        The steps before the failed one are not run again: their recorded outputs are reused, and the
        run stays pinned to its workflow text. A run parked before walking any step (its workflow
        version or text is not loaded) resumes after its recorded steps, on the same text again.

        When the fix was made to data an earlier step read (an order corrected in Clarity),
        ``from_start`` runs every step again, so they read the corrected data; the idempotency keys
        stay the same, so calls that already took effect are not repeated. It starts the same event
        afresh, re-pinned to the workflow text loaded now: the run's version if it is loaded, else
        the active version of the workflow (see :meth:`_repinned`).

        Raises
        ------
        ValidationError
            The entry is not open, or ``from_start`` finds no version of the workflow to run.
        NotFound
            The failed step is not in the run's recorded steps.
        """
        entry = self._dlq.get(entry_id)
        if entry["status"] != "open":
            raise E.ValidationError(f"dead-letter entry {entry_id} is already {entry['status']}")
        if entry["step_id"] == DISPATCH_STEP:
            return self._redispatch(entry_id, entry, reason)
        wf_id = entry["engine_workflow_id"]
        new_id = f"{entry['run_id']}#replay-{entry_id}"
        run: dict[str, Any] | None = None
        start: int | None = None
        if from_start:
            # the run may be gone from the engine's database (pruned, or another database): NotFound below
            found = self.client.list_workflows(workflow_ids=[wf_id], load_input=True, load_output=False)
            args = dict(found[0].input["args"][0]) if found and found[0].input else {}
            run = self._repinned({"run_id": entry["run_id"], **args})
        else:
            steps = self.client.list_workflow_steps(wf_id, load_output=False)
            if entry["step_id"] == BEFORE_STEPS:  # parked before walking: resume where it stood
                start = 1 + max((s["function_id"] for s in steps if s["function_name"] != "cb.park"), default=0)
            else:
                name = f"step:{entry['step_id']}"
                start = min((s["function_id"] for s in steps if s["function_name"] == name), default=None)
                if start is None:  # an inline step leaves no record: resume at its park, which runs it again
                    start = max((s["function_id"] for s in steps if s["function_name"] == "cb.park"), default=None)
            if start is None:
                raise E.NotFound(f"step {entry['step_id']} not found in run {entry['run_id']}")
        # Resolve the entry and mark the run queued BEFORE the new run can start: a run that parks again
        # at once must get a new open entry (not find this one still open) and its own status must win.
        resolved = self._dlq.resolve(entry_id, "replayed", reason)
        self._runs.set_status(entry["run_id"], RunStatus.QUEUED, engine_workflow_id=new_id,
                              workflow_version=run["version"] if run else None)
        try:
            if run is not None:
                handle: Any = self.client.enqueue({"workflow_name": WORKFLOW_NAME, "queue_name": QUEUE,
                                                   "workflow_id": new_id, "app_version": ENGINE_VERSION}, run)
            else:
                assert start is not None  # found above, or NotFound was raised
                with SetWorkflowID(new_id):
                    handle = self.client.fork_workflow(wf_id, start, queue_name=QUEUE,
                                                       application_version=ENGINE_VERSION)
        except Exception as exc:
            # nothing started: the run stays parked, with a new open entry saying why the replay failed
            self._dlq.add({
                **{k: entry.get(k) for k in ("run_id", "step_id", "step_type", "attempts", "error_code",
                                             "upstream_request_id", "suggested_fix", "step_input", "traceback")},
                "error_message": f"{entry.get('error_message', '')} (replay of entry {entry_id} failed: "
                                 f"{type(exc).__name__}: {exc})",
                "engine_workflow_id": wf_id,
            })
            self._runs.set_status(entry["run_id"], RunStatus.PARKED, engine_workflow_id=wf_id,
                                  failed_step=entry["step_id"], error_code=entry["error_code"])
            raise
        new_id = handle.get_workflow_id()
        return {**resolved, "engine_workflow_id": new_id}

    def _repinned(self, run: dict[str, Any]) -> dict[str, Any]:
        """The arguments of a from-start replay: the same event, pinned to the workflow text loaded now.

        The run's version if it is loaded (with the digest of its current text), else the active
        version (the old file is gone). The run's ``vars`` stay as they were pinned.
        """
        name, version = run.get("workflow"), run.get("version")
        if not name:
            raise E.NotFound(f"the arguments of run {run.get('run_id')} are not in the engine database")
        spec = self._router.get(name, version) if version else None
        if spec is None:
            spec = next((s for s in self._router.all() if s.name == name), None)
        if spec is None:
            raise E.ValidationError(
                f"workflow {name} has no version {version} and no active version to run again on",
                suggested_fix=f"install a workflow file named {name} (or enable it), then replay")
        return {**run, "version": spec.version, "digest": self._router.digest(name, spec.version)}

    def _redispatch(self, entry_id: int, entry: Mapping[str, Any], reason: str) -> dict[str, Any]:
        """Replay of a delivery isolated at dispatch: it goes back in line, routed and started afresh."""
        inbox_id = _dispatch_inbox_id(entry)
        if self._inbox is None:
            raise E.ValidationError("this process cannot re-dispatch deliveries (no inbox)")
        resolved = self._dlq.resolve(entry_id, "replayed", reason)
        if not self._inbox.redispatch(inbox_id):
            log.warning("dlq.redispatch_not_failed", dlq_id=entry_id, inbox_id=inbox_id)
        return {**resolved, "engine_workflow_id": None}

    def discard(self, entry_id: int, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise E.ValidationError("a reason is required to discard a dead-letter entry")
        entry = self._dlq.resolve(entry_id, "discarded", reason)
        if entry["step_id"] == DISPATCH_STEP:
            if self._inbox is not None:
                self._inbox.discard_dispatch(_dispatch_inbox_id(entry))
            return entry
        self._runs.set_status(entry["run_id"], RunStatus.DISCARDED)
        return entry

    def recover(self, executor_id: str, *, by: str, force: bool = False) -> int:
        """Resume a dead worker's unfinished runs on the shared queue (refuses a live worker unless forced)."""
        row = self._leases_get(executor_id)
        if row is None:
            raise E.NotFound(f"no worker {executor_id!r} has ever registered")
        if not self._leases.begin_takeover(executor_id, by, grace_s=0.0, force=force):
            raise E.ValidationError(
                f"worker {executor_id!r} still holds a live lease (status {row['status']}); it may be running. "
                "Wait for the lease to expire or pass --force if you are sure the process is gone."
            )
        pending = self.client.list_workflows(status="PENDING", executor_id=executor_id, load_input=False,
                                             load_output=False)
        for wf in pending:
            self.client.resume_workflow(wf.workflow_id, queue_name=QUEUE)
        self._leases.finish_takeover(executor_id, len(pending))
        return len(pending)

    def _leases_get(self, executor_id: str) -> dict[str, Any] | None:
        getter = getattr(self._leases, "get", None)
        return getter(executor_id) if getter else None

    def workflow_states(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        return {w.workflow_id: w.status for w in self.client.list_workflows(workflow_ids=list(ids),
                                                                             load_input=False, load_output=False)}


def _dispatch_inbox_id(entry: Mapping[str, Any]) -> int:
    step_input = entry.get("step_input")
    if not isinstance(step_input, Mapping) or not isinstance(step_input.get("inbox_id"), int):
        raise E.ValidationError(f"dead-letter entry {entry.get('id')} names no delivery to dispatch again")
    return int(step_input["inbox_id"])
