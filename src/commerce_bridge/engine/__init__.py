"""The durable-execution adapter (DBOS Transact behind a small interface).

The rooms, each opening with the rules it keeps: ``runtime`` (the engine's life cycle on DBOS, its
queue and pacing, leases and takeovers, the hand-over from the dispatcher), ``interpreter`` (one run
walked step by step: attempts, retries, waits, parking), ``outcome`` (what an attempt came to, typed, and
the record DBOS keeps of it), ``dispatch`` (inbox rows to runs, poison set
aside), ``fence`` (no side effect after the lease is gone), ``admin`` (replay, discard and recovery from
any process), ``retry``, ``limits`` (per-destination call slots) and ``breaker``.

Only this package imports ``dbos``. Import the names below from here.
"""

from commerce_bridge.engine.admin import EngineAdmin
from commerce_bridge.engine.dispatch import Dispatcher, WorkflowRouter
from commerce_bridge.engine.fence import Fence, Fenced
from commerce_bridge.engine.outcome import StepOutcome
from commerce_bridge.engine.runtime import ENGINE_VERSION, QUEUE, Engine, EngineConfig

__all__ = ["ENGINE_VERSION", "QUEUE", "Dispatcher", "Engine", "EngineAdmin", "EngineConfig", "Fence", "Fenced",
           "StepOutcome", "WorkflowRouter"]
