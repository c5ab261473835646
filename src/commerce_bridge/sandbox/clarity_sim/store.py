"""Document state for the sandbox simulators: dicts in memory, optionally written through to SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from commerce_bridge.sandbox.clarity_sim.jsonutil import store_dumps, store_loads

Doc = dict[str, Any]


class DocStore:
    """Documents grouped by kind and keyed by a string, plus named counters.

    With ``path`` every write goes straight to a SQLite file, so state survives a restart; without
    it, state lives only in memory. All methods are thread-safe.
    """

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Doc]] = {}
        self._counters: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._batch = 0
        if path:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,"
                " body TEXT NOT NULL, PRIMARY KEY (kind, key))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            for kind, key, body in self._db.execute("SELECT kind, key, body FROM docs ORDER BY seq"):
                self._docs.setdefault(kind, {})[key] = store_loads(body)
            for name, value in self._db.execute("SELECT name, value FROM counters"):
                self._counters[name] = int(value)
        self._seq = sum(len(v) for v in self._docs.values())

    @property
    def persistent(self) -> bool:
        return self._db is not None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several writes into one SQLite transaction (and hold the lock meanwhile)."""
        with self._lock:
            if self._db is not None and self._batch == 0:
                self._db.execute("BEGIN")
            self._batch += 1
            try:
                yield
            except BaseException:
                self._batch -= 1
                if self._db is not None and self._batch == 0:
                    self._db.execute("COMMIT")
                raise
            self._batch -= 1
            if self._db is not None and self._batch == 0:
                self._db.execute("COMMIT")

    def get(self, kind: str, key: str | int) -> Doc | None:
        with self._lock:
            return self._docs.get(kind, {}).get(str(key))

    def all(self, kind: str) -> list[Doc]:
        """Every document of ``kind`` in insertion order (a snapshot list)."""
        with self._lock:
            return list(self._docs.get(kind, {}).values())

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._docs.get(kind, {}))

    def put(self, kind: str, key: str | int, doc: Doc) -> None:
        with self._lock:
            bucket = self._docs.setdefault(kind, {})
            bucket[str(key)] = doc
            if self._db is not None:
                self._seq += 1
                self._db.execute(
                    "INSERT INTO docs (kind, key, seq, body) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
                    (kind, str(key), self._seq, store_dumps(doc)),
                )

    def delete(self, kind: str, key: str | int) -> bool:
        with self._lock:
            found = self._docs.get(kind, {}).pop(str(key), None) is not None
            if found and self._db is not None:
                self._db.execute("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, str(key)))
            return found

    def clear(self, kind: str) -> None:
        with self._lock:
            self._docs.pop(kind, None)
            if self._db is not None:
                self._db.execute("DELETE FROM docs WHERE kind = ?", (kind,))

    def next_value(self, name: str, start: int = 1) -> int:
        """Increment and return the counter ``name`` (the first value is ``start``)."""
        with self._lock:
            value = self._counters.get(name, start - 1) + 1
            self._counters[name] = value
            if self._db is not None:
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )
            return value

    def peek_value(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
