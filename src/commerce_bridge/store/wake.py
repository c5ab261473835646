"""Wake the workers' dispatchers when deliveries are stored (PostgreSQL ``LISTEN`` / ``NOTIFY``).

Rules
-----
* A process that stores deliveries (``ingress``, or ``serve`` beside other workers) pokes an
  :class:`InboxNotifier` after each commit; it sends ``NOTIFY cb_inbox`` at most once per
  ``min_interval_s`` (pokes in between are folded into the next one, never dropped), so a busy
  ingress pays one tiny statement per interval, not one per commit. It sends it on a connection of
  its own in autocommit: one round trip, no pool checkout, ``BEGIN`` or ``COMMIT`` (about half of an
  idle-ish ingress's Python time went to the SQLAlchemy transaction around it).
* A process with a dispatcher (``worker``, ``serve``) runs an :class:`InboxListener`: a thread holding
  one connection that ``LISTEN``\\s and wakes the dispatcher on each notification. Its dispatcher can
  then poll the inbox rarely (``CB_ENGINE_IDLE_POLL_S``) instead of every ``CB_DISPATCH_INTERVAL_S``.
* A notification is only a hint. A lost one (the listener reconnecting, the notifier's connection
  failing) costs latency, never a delivery: the dispatcher still polls. Notifications carry no payload.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from commerce_bridge.store.raw import OwnConnection

log = structlog.get_logger("commerce_bridge.store.wake")

CHANNEL = "cb_inbox"
_NOTIFY = f"NOTIFY {CHANNEL}"


class InboxNotifier:
    """Sends ``NOTIFY cb_inbox`` after commits, at most once per ``min_interval_s`` (see the module docstring)."""

    def __init__(self, engine: Engine, *, min_interval_s: float = 0.02) -> None:
        self._engine = engine
        self._own = OwnConnection(engine)  # autocommit: one round trip per NOTIFY, no pool checkout
        self._min_interval_s = min_interval_s
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cb-inbox-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(5)
        self._own.close()

    def poke(self) -> None:
        """Deliveries were committed: a NOTIFY goes out within ``min_interval_s``."""
        self._poked.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poked.wait()
            if self._stop.is_set():
                return
            self._poked.clear()
            try:
                with self._own.cursor() as cur:
                    cur.execute(_NOTIFY)
            except Exception as exc:  # a hint only: the dispatchers poll anyway
                log.warning("inbox.notify_failed", error=type(exc).__name__)
                self._stop.wait(1.0)
            self._stop.wait(self._min_interval_s)


def notify_once(engine: Engine) -> None:
    """One ``NOTIFY cb_inbox`` now (a process without a notifier thread that stored deliveries, e.g. the CLI);
    a hint only, so a failure is logged and ignored: the dispatchers poll anyway."""
    try:
        with engine.begin() as conn:
            conn.execute(text(f"NOTIFY {CHANNEL}"))
    except Exception as exc:
        log.warning("inbox.notify_failed", error=type(exc).__name__)


class InboxListener:
    """A thread that ``LISTEN``\\s on ``cb_inbox`` and calls ``on_wake`` for each notification."""

    def __init__(self, database_url: str, on_wake: Callable[[], None]) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._on_wake = on_wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while a connection listens (tests, health)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cb-inbox-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    self._on_wake()  # anything stored while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._on_wake()
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("inbox.listen_failed", error=type(exc).__name__, retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self.listening.clear()


__all__ = ["CHANNEL", "InboxListener", "InboxNotifier", "notify_once"]
