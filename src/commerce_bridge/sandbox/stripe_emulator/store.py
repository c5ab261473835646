"""The emulator's in-memory object store: objects by id, sorted list indexes, optional SQLite write-behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Any

import orjson

Obj = dict[str, Any]
Key = tuple[int, int]
_INF = 1 << 62


class SortedIndex:
    """Ids ordered by ``(created, seq)``; appends are O(1), lookups and page cuts O(log n)."""

    __slots__ = ("ids", "keys")

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.ids: list[str] = []

    def add(self, key: Key, obj_id: str) -> None:
        if not self.keys or key >= self.keys[-1]:
            self.keys.append(key)
            self.ids.append(obj_id)
        else:
            i = bisect_right(self.keys, key)
            self.keys.insert(i, key)
            self.ids.insert(i, obj_id)

    def remove(self, key: Key, obj_id: str) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.ids[i] == obj_id:
            del self.keys[i]
            del self.ids[i]

    def __len__(self) -> int:
        return len(self.ids)

    def page(
        self,
        *,
        limit: int,
        starting_after: Key | None = None,
        ending_before: Key | None = None,
        created: dict[str, int] | None = None,
        pred: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """Up to ``limit`` ids, newest first, and whether more exist in the paging direction."""
        keys = self.keys
        lo, hi = 0, len(keys)
        if created:
            if "gte" in created:
                lo = max(lo, bisect_left(keys, (created["gte"], -1)))
            if "gt" in created:
                lo = max(lo, bisect_right(keys, (created["gt"], _INF)))
            if "lte" in created:
                hi = min(hi, bisect_right(keys, (created["lte"], _INF)))
            if "lt" in created:
                hi = min(hi, bisect_left(keys, (created["lt"], -1)))
        out: list[str] = []
        ids = self.ids
        if ending_before is not None:
            lo = max(lo, bisect_right(keys, ending_before))
            i = lo
            while i < hi and len(out) <= limit:
                if pred is None or pred(ids[i]):
                    out.append(ids[i])
                i += 1
            more = len(out) > limit
            out = out[:limit]
            out.reverse()
            return out, more
        if starting_after is not None:
            hi = min(hi, bisect_left(keys, starting_after))
        i = hi - 1
        while i >= lo and len(out) <= limit:
            if pred is None or pred(ids[i]):
                out.append(ids[i])
            i -= 1
        return out[:limit], len(out) > limit


class ValueIndex:
    """Ids of one kind's objects by the values ``extract`` yields for them (for exact-match search clauses).

    The values each object was filed under are remembered, so an object changed in place is refiled by
    :meth:`Store.touch` (every write path calls it). A lookup gives candidates: callers re-test them.
    """

    __slots__ = ("by_value", "entries", "extract")

    def __init__(self, extract: Callable[[Obj], Iterable[str]]) -> None:
        self.extract = extract
        self.by_value: dict[str, set[str]] = {}
        self.entries: dict[str, tuple[str, ...]] = {}

    def file(self, obj_id: str, obj: Obj | None) -> None:
        old = self.entries.pop(obj_id, ())
        new = tuple(dict.fromkeys(self.extract(obj))) if obj is not None else ()
        if old == new:
            if new:
                self.entries[obj_id] = new
            return
        for value in old:
            bucket = self.by_value.get(value)
            if bucket is not None:
                bucket.discard(obj_id)
                if not bucket:
                    del self.by_value[value]
        if new:
            self.entries[obj_id] = new
            for value in new:
                self.by_value.setdefault(value, set()).add(obj_id)


class Store:
    """All objects of one emulated account.

    ``objects`` maps id to the Stripe-shaped dict; ``internal`` holds emulator-only state per id (card
    behaviour, secrets); ``indexes`` are named :class:`SortedIndex` lists (``"payment_intent"``,
    ``"payment_intent:customer:cus_…"``, …). With ``path`` set, changed objects are written to SQLite by a
    background thread every ``flush_interval`` seconds, so requests never wait for the disk.
    """

    def __init__(self, path: str | None = None, flush_interval: float = 0.2) -> None:
        self.objects: dict[str, Obj] = {}
        self.internal: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, Key] = {}
        self.kinds: dict[str, str] = {}
        self.index_names: dict[str, list[str]] = {}
        self.indexes: dict[str, SortedIndex] = {}
        self.value_indexes: dict[str, dict[str, ValueIndex]] = {}  # kind -> name -> index
        self.meta: dict[str, Any] = {}
        self._seq = 0
        self._path = path
        self._dirty: set[str] = set()
        self._deleted: set[int] = set()
        self._meta_dirty = False
        self._lock = threading.Lock()  # guards the dirty/deleted sets
        self._db_lock = threading.Lock()  # guards the SQLite connection
        self._stop = threading.Event()
        self._flush_interval = flush_interval
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        if path:
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # seq is the primary key: new rows append at the end of the B-tree, whatever the random ids
            self._db.execute("CREATE TABLE IF NOT EXISTS objects (seq INTEGER PRIMARY KEY, row BLOB)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB)")
            self._db.commit()
            self._load()
            self._thread = threading.Thread(
                target=self._flush_loop, name="stripe-emulator-store", daemon=True
            )
            self._thread.start()

    # -- objects -----------------------------------------------------------------------------------
    def add(
        self, kind: str, obj: Obj, index_names: Iterable[str] = (), internal: dict[str, Any] | None = None
    ) -> Obj:
        obj_id = obj["id"]
        self._seq += 1
        key = (int(obj.get("created") or 0), self._seq)
        self.objects[obj_id] = obj
        self.keys[obj_id] = key
        self.kinds[obj_id] = kind
        names = [kind, *index_names]
        self.index_names[obj_id] = names
        for name in names:
            idx = self.indexes.get(name)
            if idx is None:
                idx = self.indexes[name] = SortedIndex()
            idx.add(key, obj_id)
        if internal is not None:
            self.internal[obj_id] = internal
        self.touch(obj_id)
        return obj

    def value_index(self, kind: str, name: str, extract: Callable[[Obj], Iterable[str]]) -> ValueIndex:
        """The value index ``name`` over the ``kind`` objects, built on first use and kept in step after.

        ``extract`` must always be the same function for one name.
        """
        named = self.value_indexes.setdefault(kind, {})
        idx = named.get(name)
        if idx is None:
            idx = named[name] = ValueIndex(extract)
            for obj_id in self.indexes[kind].ids if kind in self.indexes else ():
                idx.file(obj_id, self.objects[obj_id])
        return idx

    def _refile(self, obj_id: str) -> None:
        named = self.value_indexes.get(self.kinds.get(obj_id, ""))
        if named:
            obj = self.objects.get(obj_id)
            for idx in named.values():
                idx.file(obj_id, obj)

    def add_to_index(self, obj_id: str, name: str) -> None:
        names = self.index_names[obj_id]
        if name in names:
            return
        names.append(name)
        idx = self.indexes.get(name)
        if idx is None:
            idx = self.indexes[name] = SortedIndex()
        idx.add(self.keys[obj_id], obj_id)
        self.touch(obj_id)

    def get(self, obj_id: str, kind: str | None = None) -> Obj | None:
        obj = self.objects.get(obj_id)
        if obj is None or (kind is not None and self.kinds.get(obj_id) != kind):
            return None
        return obj

    def intern(self, obj_id: str) -> dict[str, Any]:
        return self.internal.setdefault(obj_id, {})

    def delete(self, obj_id: str) -> None:
        if obj_id not in self.objects:
            return
        key = self.keys.pop(obj_id)
        for name in self.index_names.pop(obj_id, []):
            self.indexes[name].remove(key, obj_id)
        for idx in self.value_indexes.get(self.kinds.get(obj_id, ""), {}).values():
            idx.file(obj_id, None)
        del self.objects[obj_id]
        self.kinds.pop(obj_id, None)
        self.internal.pop(obj_id, None)
        if self._db is not None:
            with self._lock:
                self._dirty.discard(obj_id)
                self._deleted.add(key[1])

    def touch(self, obj_id: str) -> None:
        """Mark an object changed: refile it in the value indexes, and persist it."""
        self._refile(obj_id)
        if self._db is not None:
            with self._lock:
                self._dirty.add(obj_id)

    def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = value
        self._meta_dirty = True

    def index(self, name: str) -> SortedIndex:
        idx = self.indexes.get(name)
        if idx is None:
            idx = self.indexes[name] = SortedIndex()
        return idx

    def count(self) -> int:
        return len(self.objects)

    def clear(self) -> None:
        self.objects.clear()
        self.internal.clear()
        self.keys.clear()
        self.kinds.clear()
        self.index_names.clear()
        self.indexes.clear()
        self.value_indexes.clear()
        self.meta.clear()
        if self._db is not None:
            with self._lock:
                self._dirty.clear()
                self._deleted.clear()
            with self._db_lock:
                self._db.execute("DELETE FROM objects")
                self._db.execute("DELETE FROM meta")
                self._db.commit()

    # -- persistence -------------------------------------------------------------------------------
    def _load(self) -> None:
        assert self._db is not None
        for seq, blob in self._db.execute("SELECT seq, row FROM objects ORDER BY seq"):
            row = orjson.loads(blob)
            obj = row["o"]
            obj_id = obj["id"]
            self._seq = max(self._seq, seq)
            key = (row["c"], seq)
            self.objects[obj_id] = obj
            self.keys[obj_id] = key
            self.kinds[obj_id] = row["k"]
            self.index_names[obj_id] = row["i"]
            for name in row["i"]:
                self.index(name).add(key, obj_id)
            if row.get("x"):
                self.internal[obj_id] = row["x"]
        for k, v in self._db.execute("SELECT k, v FROM meta"):
            self.meta[k] = orjson.loads(v)

    def flush(self) -> None:
        """Write changed objects now (the background thread calls this periodically).

        The dirty set is swapped under a short lock; rows are serialised and written outside it, so a
        request that marks an object changed never waits for the disk.
        """
        if self._db is None:
            return
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            deleted, self._deleted = self._deleted, set()
        rows = []
        for obj_id in dirty:
            obj = self.objects.get(obj_id)
            key = self.keys.get(obj_id)
            if obj is None or key is None:
                continue
            row = {
                "k": self.kinds.get(obj_id),
                "c": key[0],
                "i": self.index_names.get(obj_id, []),
                "o": obj,
                "x": self.internal.get(obj_id),
            }
            rows.append((key[1], orjson.dumps(row)))
        meta = None
        if self._meta_dirty:
            self._meta_dirty = False
            meta = [(k, orjson.dumps(v)) for k, v in list(self.meta.items())]
        with self._db_lock:
            if self._db is None:
                return
            if rows:
                self._db.executemany("INSERT OR REPLACE INTO objects VALUES (?,?)", rows)
            if deleted:
                self._db.executemany("DELETE FROM objects WHERE seq = ?", [(d,) for d in deleted])
            if meta is not None:
                self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", meta)
            self._db.commit()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except RuntimeError:  # a dict changed size while being copied; retry next tick
                time.sleep(0)

    def close(self) -> None:
        if self._db is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        self._db.close()
        self._db = None
