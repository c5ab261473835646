"""What ``commerce-bridge dev`` shows while it runs: events and runs, read from the bridge's admin API.

Rules it keeps:

* it reads the running bridge through ``/api/v1`` with the admin token, as an operator's ``curl`` would,
  never the database (a second process reading SQLite would take its writer lock);
* counts cover the newest :data:`MAX_EVENTS` deliveries (a sandbox session has far fewer; the view says
  so when there are more); a run's duration comes from ``/api/v1/runs/{id}`` and is asked once it has
  ended;
* the live view fits 80 columns (long ids are shortened in the middle); without a terminal, one plain
  line is printed per new event and per run that appears or changes status, so logs and tests can
  read it;
* the admin API not answering is shown, not raised: the caller decides when the bridge is gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

MAX_EVENTS = 2000
PAGE = 500
SHOWN = 10
ENDED = frozenset({"succeeded", "parked", "discarded"})
STYLE = {"processed": "green", "succeeded": "green", "failed": "red", "parked": "red", "running": "yellow",
         "dispatched": "yellow", "waiting": "cyan"}


@dataclass
class Snapshot:
    """One read of the admin API: the newest deliveries (with their runs) and each run's timing, if known."""

    events: list[dict[str, Any]] = field(default_factory=list)
    capped: bool = False
    error: str = ""

    def runs(self) -> list[dict[str, Any]]:
        """Every run of these deliveries, newest delivery first."""
        return [{**r, "source": e["source"], "event_id": e["event_id"]} for e in self.events for r in e["runs"]]


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    at = datetime.fromisoformat(ts)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def short(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, shortened in the middle (both ends of an id stay readable)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


class AdminFeed:
    """Reads the bridge's deliveries and runs from its admin API (``/api/v1``) with a bearer token."""

    def __init__(self, bridge_url: str, token: str) -> None:
        self._client = httpx.Client(base_url=bridge_url, timeout=5,
                                    headers={"Authorization": f"Bearer {token}"})
        self._timing: dict[str, tuple[datetime | None, datetime | None]] = {}  # run id -> (created, updated)

    def close(self) -> None:
        self._client.close()

    def read(self) -> Snapshot:
        snap = Snapshot()
        before: int | None = None
        try:
            while len(snap.events) < MAX_EVENTS:
                params: dict[str, Any] = {"limit": PAGE}
                if before:
                    params["before_id"] = before
                r = self._client.get("/api/v1/events", params=params)
                r.raise_for_status()
                page = r.json()
                snap.events += page["events"]
                before = page.get("next_before_id")
                if not before:
                    break
            snap.capped = bool(before)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            snap.error = f"the admin API did not answer: {type(exc).__name__}"
        return snap

    def duration(self, run: dict[str, Any], now: datetime) -> float | None:
        """Seconds from the run's creation to its end (or to now while it runs); None if unknown."""
        run_id, ended = run["run_id"], run["status"] in ENDED
        known = self._timing.get(run_id)
        if known is None or (ended and known[1] is None):
            try:
                r = self._client.get(f"/api/v1/runs/{run_id}")
                r.raise_for_status()
                row = r.json()["run"]
                known = (_parse(row["created_at"]), _parse(row["updated_at"]) if row["status"] in ENDED else None)
            except (httpx.HTTPError, ValueError, KeyError):
                return None
            self._timing[run_id] = known
        created, finished = known
        if created is None:
            return None
        return max(0.0, ((finished or now) - created).total_seconds())


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 100 else f"{value / 60:.0f} min"


def _clock(ts: str | None) -> str:
    at = _parse(ts)
    return at.astimezone().strftime("%H:%M:%S") if at else "-"


def _run_key(run: dict[str, Any]) -> str:
    """The run's event id (its run id is ``source:event_id:workflow``; the workflow names the source)."""
    return str(run["event_id"])


def _counts(label: str, counter: Counter[str], capped: bool) -> Text:
    parts = ", ".join(f"{status} {n}" for status, n in counter.most_common()) or "none yet"
    total = sum(counter.values())
    return Text.assemble((f"{label:<7}", "bold"), f"{total}{'+' if capped else ''}: {parts}")


def render(snap: Snapshot, feed: AdminFeed, header: str) -> RenderableType:
    """The live view: counts by status, then the newest events and runs (fits 80 columns)."""
    now = datetime.now(UTC)
    runs = snap.runs()
    parts: list[RenderableType] = [Text(header, style="bold")]
    if snap.error:
        parts.append(Text(snap.error, style="red"))
    parts += [_counts("events", Counter(e["status"] for e in snap.events), snap.capped),
              _counts("runs", Counter(r["status"] for r in runs), snap.capped)]
    if snap.capped:
        parts.append(Text(f"(counts of the newest {len(snap.events)} events)", style="dim"))

    events = Table(title="newest events", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                   show_edge=False, expand=False)
    for name, width in (("time", 8), ("source", 7), ("type", 34), ("status", 10)):
        events.add_column(name, no_wrap=True, max_width=width)
    for e in snap.events[:SHOWN]:
        events.add_row(_clock(e["received_at"]), e["source"], short(e["event_type"] or "-", 34),
                       Text(e["status"], style=STYLE.get(e["status"], "")))
    runs_table = Table(title="newest runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                       show_edge=False, expand=False)
    for name, width, justify in (("workflow", 24, "left"), ("key", 28, "left"), ("status", 9, "left"),
                                 ("took", 7, "right")):
        runs_table.add_column(name, no_wrap=True, max_width=width, justify=justify)  # type: ignore[arg-type]
    for r in runs[:SHOWN]:
        runs_table.add_row(short(r["workflow"], 24), short(_run_key(r), 28), Text(r["status"], style=STYLE.get(r["status"], "")),
                           _seconds(feed.duration(r, now)))
    parts += [Text(""), events if snap.events else Text("no event yet: place an order (see above)", style="dim"),
              Text(""), runs_table if runs else Text("no run yet", style="dim")]
    return Group(*parts)


class PlainLines:
    """One line per new event and per run that appears or changes status (for logs, tests, pipes)."""

    def __init__(self, feed: AdminFeed, echo: Callable[[str], None]) -> None:
        self._feed, self._echo = feed, echo
        self._events: dict[int, str] = {}
        self._runs: dict[str, str] = {}
        self._error = ""

    def update(self, snap: Snapshot) -> None:
        if snap.error != self._error:
            self._error = snap.error
            if snap.error:
                self._echo(f"warning: {snap.error}")
        now = datetime.now(UTC)
        for e in reversed(snap.events):  # oldest first
            if e["id"] not in self._events:
                self._echo(f"event  #{e['id']}  {_clock(e['received_at'])}  {e['source']}  "
                           f"{e['event_type'] or '-'}  {e['status']}")
            self._events[e["id"]] = e["status"]
            for r in e["runs"]:
                if self._runs.get(r["run_id"]) != r["status"]:
                    self._runs[r["run_id"]] = r["status"]
                    run = {**r, "source": e["source"], "event_id": e["event_id"]}
                    took = f"  {_seconds(self._feed.duration(run, now))}" if r["status"] in ENDED else ""
                    error = f" ({r['error_code']})" if r.get("error_code") else ""
                    self._echo(f"run    {r['workflow']}  {_run_key(run)}  {r['status']}{error}{took}")
