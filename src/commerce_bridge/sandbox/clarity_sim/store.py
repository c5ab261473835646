"""Document state for the sandbox simulators: dicts in memory, optionally written through to SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from commerce_bridge.sandbox.clarity_sim.jsonutil import store_dumps, store_loads

Doc = dict[str, Any]
Extract = Callable[[Doc], Iterable[Hashable]]
UNINDEXABLE = object()
"""What an index extractor yields for a value it cannot key on: such documents are candidates for every lookup."""


class FieldIndex:
    """Keys of one kind's documents grouped by the values ``extract`` yields for them.

    The values each document was filed under are remembered, so a document changed in place and then put
    again is moved correctly. A lookup gives candidates only: callers re-test them with their full predicate.
    """

    __slots__ = ("by_value", "entries", "extract")

    def __init__(self, extract: Extract) -> None:
        self.extract = extract
        self.by_value: dict[Hashable, dict[str, None]] = {}
        self.entries: dict[str, tuple[Hashable, ...]] = {}

    def add(self, key: str, doc: Doc) -> None:
        values: list[Hashable] = []
        for value in self.extract(doc):
            try:
                hash(value)
            except TypeError:
                value = UNINDEXABLE
            if value not in values:
                values.append(value)
        self.entries[key] = tuple(values)
        for value in values:
            self.by_value.setdefault(value, {})[key] = None

    def remove(self, key: str) -> None:
        for value in self.entries.pop(key, ()):
            bucket = self.by_value.get(value)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self.by_value[value]


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
        self._indexes: dict[str, dict[str, FieldIndex]] = {}
        self._positions: dict[str, dict[str, int]] = {}
        self._versions: dict[str, int] = {}
        self._next_position = 0
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
        for kind, bucket in self._docs.items():
            positions = self._positions.setdefault(kind, {})
            for key in bucket:
                self._next_position += 1
                positions[key] = self._next_position

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

    def lookup(self, kind: str, index: str, extract: Extract, values: Iterable[Hashable]) -> list[Doc]:
        """Documents of ``kind`` that ``extract`` files under any of ``values``, in insertion order.

        The index named ``index`` is built on first use (one scan) and kept in step with every write after
        that; ``extract`` must always be the same function for one name. Documents with an unhashable value
        (:data:`UNINDEXABLE`) are always included, so the result is a superset: re-test it.
        """
        with self._lock:
            found = self._index(kind, index, extract)
            keys: dict[str, None] = {}
            for value in [*values, UNINDEXABLE]:
                try:
                    bucket = found.by_value.get(value)
                except TypeError:
                    bucket = found.by_value.get(UNINDEXABLE)
                if bucket:
                    keys.update(bucket)
            docs = self._docs.get(kind, {})
            positions = self._positions.get(kind, {})
            return [docs[k] for k in sorted(keys, key=positions.__getitem__)]

    def lookup_size(self, kind: str, index: str, extract: Extract, values: Iterable[Hashable]) -> int:
        """An upper bound of ``len(lookup(...))`` without building the list (to pick the narrowest index)."""
        with self._lock:
            found = self._index(kind, index, extract)
            total = 0
            for value in [*values, UNINDEXABLE]:
                try:
                    total += len(found.by_value.get(value) or ())
                except TypeError:
                    total += len(found.by_value.get(UNINDEXABLE) or ())
            return total

    def _index(self, kind: str, index: str, extract: Extract) -> FieldIndex:
        indexes = self._indexes.setdefault(kind, {})
        found = indexes.get(index)
        if found is None:
            found = indexes[index] = FieldIndex(extract)
            for key, doc in self._docs.get(kind, {}).items():
                found.add(key, doc)
        return found

    def version(self, kind: str) -> int:
        """A number that changes whenever a document of ``kind`` is written or deleted (for caches)."""
        with self._lock:
            return self._versions.get(kind, 0)

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._docs.get(kind, {}))

    def put(self, kind: str, key: str | int, doc: Doc) -> None:
        with self._lock:
            bucket = self._docs.setdefault(kind, {})
            key = str(key)
            if key not in bucket:
                self._next_position += 1
                self._positions.setdefault(kind, {})[key] = self._next_position
            bucket[key] = doc
            self._versions[kind] = self._versions.get(kind, 0) + 1
            for index in self._indexes.get(kind, {}).values():
                index.remove(key)
                index.add(key, doc)
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
            if found:
                self._positions[kind].pop(str(key), None)
                self._versions[kind] = self._versions.get(kind, 0) + 1
                for index in self._indexes.get(kind, {}).values():
                    index.remove(str(key))
            if found and self._db is not None:
                self._db.execute("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, str(key)))
            return found

    def clear(self, kind: str) -> None:
        with self._lock:
            self._docs.pop(kind, None)
            self._positions.pop(kind, None)
            self._indexes.pop(kind, None)
            self._versions[kind] = self._versions.get(kind, 0) + 1
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
