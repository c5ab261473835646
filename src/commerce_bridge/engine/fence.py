"""Fencing: a worker whose lease may be gone starts no side effect, and starts again in-process.

The rules
---------
* A worker holds a heartbeat lease in our database (``workers`` table). While the lease is valid
  (renewed less than ``lease_s`` ago, measured from *before* the renewal was sent), nobody else
  resumes its runs. Once it may have run out, a survivor may resume them at any moment, so this
  worker must not begin another side effect of any run it holds.
* The :class:`Fence` is the one place that knows. Every step attempt and every write of a run's own
  bookkeeping asks :meth:`Fence.check` first; a fenced worker raises :class:`Fenced` there.
* :class:`Fenced` is a ``BaseException``: DBOS records the outcome of steps and workflows only for
  ``Exception``, so a fenced run stops where it stands with nothing recorded, as if the process had
  died at that point. Its run stays PENDING in the engine and is resumed by whoever owns it next
  (a survivor that took over, or this worker after its restart).
* Tripping the fence does not end the process (ingress and the admin API keep answering, 503 where
  they need the store). The engine part restarts inside the process: DBOS is stopped, the lease is
  taken again once the store answers (a new epoch), DBOS is launched again and recovers the runs
  still under this executor id. Runs that began before the restart carry the old *generation* and
  stay fenced even after the fence is reset, so an old thread that wakes late never runs a step.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Fence", "Fenced"]


class Fenced(BaseException):
    """This worker's lease may have run out: the run stops here, unrecorded, and is resumed by its owner."""


class Fence:
    """Whether this process may still begin side effects for the runs it holds."""

    def __init__(self) -> None:
        self._now = time.monotonic
        self._valid_until = 0.0  # monotonic; past it no side effect may begin
        self._tripped: str | None = None
        self._generation = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    # ---- the lease --------------------------------------------------------------------------------
    def renewed(self, sent_at: float, lease_s: float) -> None:
        """The lease was renewed by a write sent at ``sent_at`` (monotonic): valid ``lease_s`` from then."""
        with self._lock:
            if self._tripped is None:
                self._valid_until = sent_at + lease_s

    def ok(self) -> bool:
        """True while side effects may begin (the lease is valid and this run's generation is current)."""
        if self._tripped is not None or self._now() >= self._valid_until:
            return False
        mine = getattr(self._local, "generation", None)
        return mine is None or mine == self._generation

    def check(self, doing: str) -> None:
        """Raise :class:`Fenced` unless :meth:`ok`; ``doing`` names what was about to happen."""
        if not self.ok():
            raise Fenced(f"worker fenced before {doing}: {self.reason()}")

    def stale_run(self) -> bool:
        """True in a run that began before the last restart (it must stop; the restart already happened)."""
        mine = getattr(self._local, "generation", None)
        return mine is not None and mine != self._generation

    def reason(self) -> str:
        if self._tripped is not None:
            return self._tripped
        if getattr(self._local, "generation", self._generation) != self._generation:
            return "this run began before the engine restarted"
        return "the lease was not renewed in time"

    # ---- trips and restarts ------------------------------------------------------------------------
    def trip(self, reason: str) -> bool:
        """Fence now; True if this call tripped it (the caller then restarts the engine)."""
        with self._lock:
            if self._tripped is not None:
                return False
            self._tripped = reason
            self._valid_until = 0.0
            return True

    @property
    def tripped(self) -> str | None:
        return self._tripped

    def reset(self, sent_at: float, lease_s: float) -> None:
        """A new lease was taken (after a restart): a new generation begins."""
        with self._lock:
            self._generation += 1
            self._tripped = None
            self._valid_until = sent_at + lease_s

    def enter_run(self) -> None:
        """Called at the start of a run's body (in its thread): the run belongs to this generation."""
        self._local.generation = self._generation

    def leave_run(self) -> None:
        self._local.generation = None

    @property
    def generation(self) -> int:
        return self._generation
