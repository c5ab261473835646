"""The private names of DBOS 3.4 that ``engine.runtime._pace_dbos_housekeeping`` sets exist and take effect.

DBOS has no public setting for how often its background jobs and its internal queue poll (once a
second each, the largest part of an idle bridge's CPU). The engine sets two private names of the
pinned version; an upgrade that renames them must fail here, not silently bring the idle cost back.
"""

from __future__ import annotations

import inspect

import dbos._dbos as dbos_main
import dbos._queue as dbos_queue
import dbos._workflow_commands as workflow_commands

from commerce_bridge.engine.runtime import _pace_dbos_housekeeping


def test_the_background_jobs_interval_is_a_module_constant_read_when_its_thread_starts() -> None:
    before = workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC
    try:
        _pace_dbos_housekeeping(5.0)
        assert workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC == 5.0
        assert "_BACKGROUND_JOBS_INTERVAL_SEC" in inspect.getsource(workflow_commands.background_jobs_thread)
    finally:
        workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC = before


def test_the_internal_queue_poll_reads_its_interval_from_the_queue_object_each_time() -> None:
    internal = dbos_main._get_or_create_dbos_registry().get_internal_queue()
    before = internal._polling_interval_sec
    try:
        _pace_dbos_housekeeping(4.0)
        assert dbos_main._get_or_create_dbos_registry().get_internal_queue() is internal
        assert internal._polling_interval_sec == 4.0
        source = inspect.getsource(dbos_queue.queue_worker_thread)
        assert "queue._polling_interval_sec" in source  # re-read on every loop, so a change takes effect
    finally:
        internal._polling_interval_sec = before
