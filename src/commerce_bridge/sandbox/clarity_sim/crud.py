"""The T4-style CRUD routes CEF generates for every entity, implemented once over an ``EntitySpec``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    INVALID_OPERATION,
    CefError,
    NoContent,
    Record,
    Req,
    Sim,
    action_response,
    as_int,
    json_response,
    public,
)
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.search import (
    Predicate,
    SearchModel,
    base_filters,
    page_sorted,
    sort_and_page,
    sort_records,
)

Prepare = Callable[[Sim, Record | None, dict[str, Any], Record], None]
Expand = Callable[[Sim, Record, str], Record]
Filters = Callable[[Sim, SearchModel], list[Predicate]]

READ_ONLY_FIELDS = {"ID", "CreatedDate", "UpdatedDate"}
DUPLICATE_KEY = "Another record with a matching CustomKey was found. Cannot perform this operation."


@dataclass
class EntitySpec:
    """How one CEF entity is stored, validated on write and projected on read."""

    area: str
    name: str
    plural: str
    prepare: Prepare | None = None
    expand: Expand | None = None
    filters: Filters | None = None
    event: str | None = None
    counter: str | None = None
    nameable: bool = True
    lookup: bool = False
    strip_fields: tuple[str, ...] = ()
    finalize: Callable[[Sim, Record], None] | None = None

    @property
    def kind(self) -> str:
        return self.name

    def permission(self, verb: str) -> str:
        return f"{self.area}.{self.name}.{verb}"


def render(sim: Sim, spec: EntitySpec, record: Record, projection: str = "full") -> Record:
    """A record as the API returns it in the ``full``, ``lite`` (search) or ``list`` projection."""
    out = spec.expand(sim, record, projection) if spec.expand else dict(record)
    rendered = public(out, sim)
    if projection == "list":
        rendered.pop("UpdatedDate", None)
    return rendered


def _custom_key(record: Record) -> tuple[Any]:
    return (record.get("CustomKey"),)


def rows_with_key(sim: Sim, kind: str, key: Any) -> list[Record]:
    """The ``kind`` records whose ``CustomKey`` equals ``key``, oldest first (through the store's index)."""
    return [r for r in sim.store.lookup(kind, "CustomKey", _custom_key, (key,)) if r.get("CustomKey") == key]


def find_by_key(sim: Sim, spec: EntitySpec, key: str, *, active_only: bool = False) -> Record | None:
    for row in rows_with_key(sim, spec.kind, key):
        if row.get("Active", True) or not active_only:
            return row
    return None


def get_record(sim: Sim, spec: EntitySpec, ident: Any) -> Record | None:
    return sim.store.get(spec.kind, str(ident))


def _check_duplicate_key(sim: Sim, spec: EntitySpec, key: Any, own_id: int | None) -> None:
    if not key:
        return
    for row in rows_with_key(sim, spec.kind, key):
        if row.get("ID") != own_id:
            raise CefError(DUPLICATE_KEY, INVALID_OPERATION)


def _copy_fields(body: dict[str, Any], record: Record, strip: tuple[str, ...]) -> None:
    for key, value in body.items():
        if key in READ_ONLY_FIELDS or key.startswith("_") or key in strip:
            continue
        record[key] = value


def create_record(sim: Sim, spec: EntitySpec, body: dict[str, Any]) -> Record:
    """Validate and insert a new record (``ID`` must be 0); queues a ``*.created`` notice."""
    if body.get("ID") not in (None, 0, "0"):
        raise CefError("Cannot create a record with an ID other than 0; use Update or Upsert", ARGUMENT)
    with sim.store.batch():
        _check_duplicate_key(sim, spec, body.get("CustomKey"), None)
        now = sim.clock.now_us()
        record: Record = {"ID": 0, "Active": True}
        _copy_fields(body, record, spec.strip_fields)
        if spec.prepare:
            spec.prepare(sim, None, body, record)
        record["ID"] = sim.store.next_value(spec.counter or spec.kind)
        record["_c"] = now
        record["_u"] = now
        if spec.finalize:
            spec.finalize(sim, record)
        sim.store.put(spec.kind, record["ID"], record)
    if spec.event:
        sim.notify(spec.event, "created", record)
    return record


def update_record(sim: Sim, spec: EntitySpec, existing: Record, body: dict[str, Any]) -> Record:
    """Merge ``body`` into ``existing`` and bump ``UpdatedDate``; queues a ``*.updated`` notice."""
    with sim.store.batch():
        if "CustomKey" in body:
            _check_duplicate_key(sim, spec, body.get("CustomKey"), existing["ID"])
        record = copy.deepcopy(existing)
        _copy_fields(body, record, spec.strip_fields)
        if spec.prepare:
            spec.prepare(sim, existing, body, record)
        if spec.finalize:
            spec.finalize(sim, record)
        record["_u"] = sim.clock.now_us()
        sim.store.put(spec.kind, record["ID"], record)
    if spec.event:
        sim.notify(spec.event, "updated", record)
    return record


def touch(sim: Sim, spec: EntitySpec, record: Record, changes: dict[str, Any]) -> Record:
    """Apply internal field changes (status actions etc.), bump ``UpdatedDate`` and notify."""
    updated = copy.deepcopy(record)
    updated.update(changes)
    updated["_u"] = sim.clock.now_us()
    sim.store.put(spec.kind, updated["ID"], updated)
    if spec.event:
        sim.notify(spec.event, "updated", updated)
    return updated


def _find_for_update(sim: Sim, spec: EntitySpec, body: dict[str, Any]) -> Record | None:
    ident = body.get("ID")
    if ident not in (None, 0, "0"):
        found = get_record(sim, spec, as_int(ident, "ID"))
        if found is not None:
            return found
    key = body.get("CustomKey")
    return find_by_key(sim, spec, str(key), active_only=True) if key else None


def search_records(sim: Sim, spec: EntitySpec, model: SearchModel) -> list[Record]:
    preds = base_filters(sim, model, nameable=spec.nameable)
    if spec.filters:
        preds += spec.filters(sim, model)
    if not preds:
        return sim.store.all(spec.kind)
    return [r for r in sim.store.all(spec.kind) if all(p(r) for p in preds)]


def _search_page(sim: Sim, spec: EntitySpec, model: SearchModel) -> tuple[list[Record], dict[str, Any]]:
    """``search_records`` then ``sort_and_page``; an unfiltered search is sorted once per store version.

    Paging through every record (a backfill) would otherwise sort all of them for each page.
    """
    preds = base_filters(sim, model, nameable=spec.nameable)
    if spec.filters:
        preds += spec.filters(sim, model)
    if preds:
        return sort_and_page([r for r in sim.store.all(spec.kind) if all(p(r) for p in preds)], model)
    cache: dict[str, Any] = sim.extra.setdefault("sorted_searches", {})
    sorts = json.dumps(model.values("Sorts") or [], sort_keys=True, default=str)
    version = sim.store.version(spec.kind)
    cached = cache.get(spec.kind)
    if cached is None or cached[0] is not sim.store or cached[1] != version or cached[2] != sorts:
        cached = cache[spec.kind] = (sim.store, version, sorts, sort_records(sim.store.all(spec.kind), model))
    return page_sorted(cached[3], model)


def register(router: Router, spec: EntitySpec) -> None:
    """Add the generated route family of ``spec`` to ``router``."""
    a, s, p = spec.area, spec.name, spec.plural
    view = spec.permission("View")

    async def search(sim: Sim, req: Req) -> Response:
        model = SearchModel.from_query(req.query)
        rows, envelope = _search_page(sim, spec, model)
        projection = "list" if model.flag("AsListing") else "lite"
        return json_response({"Results": [render(sim, spec, r, projection) for r in rows], **envelope})

    async def for_connect(sim: Sim, req: Req) -> Response:
        model = SearchModel(req.body_dict()) if req.method == "POST" else SearchModel.from_query(req.query)
        rows, _ = _search_page(sim, spec, model)
        return json_response([render(sim, spec, r, "list") for r in rows])

    async def digest(sim: Sim, req: Req) -> Response:
        rows = [r for r in sim.store.all(spec.kind) if r.get("Active", True) and r.get("CustomKey")]
        return json_response([{k: v for k, v in (("ID", r["ID"]), ("Key", r["CustomKey"]), ("Hash", r.get("Hash")))
                               if v is not None} for r in rows])

    def _by_id(sim: Sim, req: Req) -> Record | None:
        return get_record(sim, spec, as_int(req.params["ID"], "ID"))

    def _by_field(sim: Sim, field: str, value: str) -> Record | None:
        def folded(record: Record) -> tuple[str]:
            return (str(record.get(field, "")).lower(),)

        rows = sim.store.lookup(spec.kind, f"lower:{field}", folded, (value.lower(),))
        return next((r for r in rows if str(r.get(field, "")).lower() == value.lower()), None)

    async def get_by_id(sim: Sim, req: Req) -> Response:
        found = _by_id(sim, req)
        if found is None:
            raise NoContent
        return json_response(render(sim, spec, found))

    async def get_by_key(sim: Sim, req: Req) -> Response:
        found = find_by_key(sim, spec, req.params["Key"])
        if found is None:
            raise NoContent
        return json_response(render(sim, spec, found))

    async def exists_id(sim: Sim, req: Req) -> Response:
        found = _by_id(sim, req)
        if found is None:
            raise NoContent
        return json_response(found["ID"])

    async def exists_key(sim: Sim, req: Req) -> Response:
        found = find_by_key(sim, spec, req.params["Key"])
        if found is None:
            raise NoContent
        return json_response(found["ID"])

    async def create(sim: Sim, req: Req) -> Response:
        record = create_record(sim, spec, req.body_dict())
        return action_response(True, result=record["ID"])

    async def update(sim: Sim, req: Req) -> Response:
        body = req.body_dict()
        existing = _find_for_update(sim, spec, body)
        if existing is None:
            raise CefError("Must supply an ID or CustomKey that matches an existing record", ARGUMENT)
        record = update_record(sim, spec, existing, body)
        return action_response(True, result=record["ID"])

    async def upsert(sim: Sim, req: Req) -> Response:
        body = req.body_dict()
        existing = _find_for_update(sim, spec, body)
        if existing is None:
            body = {k: v for k, v in body.items() if k != "ID"}
            record = create_record(sim, spec, body)
        else:
            record = update_record(sim, spec, existing, body)
        return action_response(True, result=record["ID"])

    def _set_active(active: bool, by_key: bool) -> Callable[[Sim, Req], Any]:
        async def handler(sim: Sim, req: Req) -> Response:
            found = find_by_key(sim, spec, req.params["Key"]) if by_key else _by_id(sim, req)
            if found is None:
                return action_response(False, [f"ERROR! Could not find the {s} to update"])
            touch(sim, spec, found, {"Active": active})
            return action_response(True)
        return handler

    def _delete(by_key: bool) -> Callable[[Sim, Req], Any]:
        async def handler(sim: Sim, req: Req) -> Response:
            found = find_by_key(sim, spec, req.params["Key"]) if by_key else _by_id(sim, req)
            if found is None:
                return action_response(False, [f"ERROR! Could not find the {s} to delete"])
            sim.store.delete(spec.kind, found["ID"])
            if spec.event:
                sim.notify(spec.event, "deleted", found)
            return action_response(True)
        return handler

    async def clear_cache(sim: Sim, req: Req) -> Response:
        return json_response(True)

    router.add("GET", f"/{a}/{p}", search, view)
    router.add("GET,POST", f"/{a}/{p}ForConnect", for_connect, view)
    router.add("GET", f"/{a}/{p}Digest", digest, view)
    router.add("GET", f"/{a}/{s}/ID/{{ID}}", get_by_id, view)
    router.add("GET", f"/{a}/{s}/Key/{{Key*}}", get_by_key, view)
    router.add("GET", f"/{a}/{s}/Exists/ID/{{ID}}", exists_id, view)
    router.add("GET", f"/{a}/{s}/Exists/Key/{{Key*}}", exists_key, view)
    router.add("POST", f"/{a}/{s}/Create", create, spec.permission("Create"))
    router.add("PUT", f"/{a}/{s}/Update", update, spec.permission("Update"))
    router.add("POST", f"/{a}/{s}/Upsert", upsert, spec.permission("Update"))
    router.add("PATCH", f"/{a}/{s}/Deactivate/ID/{{ID}}", _set_active(False, False), spec.permission("Deactivate"))
    router.add("PATCH", f"/{a}/{s}/Deactivate/Key/{{Key*}}", _set_active(False, True), spec.permission("Deactivate"))
    router.add("PATCH", f"/{a}/{s}/Reactivate/ID/{{ID}}", _set_active(True, False), spec.permission("Reactivate"))
    router.add("PATCH", f"/{a}/{s}/Reactivate/Key/{{Key*}}", _set_active(True, True), spec.permission("Reactivate"))
    router.add("DELETE", f"/{a}/{s}/Delete/ID/{{ID}}", _delete(False), spec.permission("Delete"))
    router.add("DELETE", f"/{a}/{s}/Delete/Key/{{Key*}}", _delete(True), spec.permission("Delete"))
    router.add("DELETE", f"/{a}/{s}/ClearCache", clear_cache, spec.permission("Delete"))
    if spec.lookup:
        for field in ("Name", "DisplayName"):
            async def get_by_field(sim: Sim, req: Req, field: str = field) -> Response:
                found = _by_field(sim, field, req.params["Value"])
                if found is None:
                    raise NoContent
                return json_response(render(sim, spec, found))

            async def exists_field(sim: Sim, req: Req, field: str = field) -> Response:
                found = _by_field(sim, field, req.params["Value"])
                if found is None:
                    raise NoContent
                return json_response(found["ID"])

            router.add("GET", f"/{a}/{s}/{field}/{{Value*}}", get_by_field, view)
            router.add("GET", f"/{a}/{s}/Exists/{field}/{{Value*}}", exists_field, view)
