"""Frappe list queries for the ERPNext simulator: ``filters``, ``or_filters``, ``fields``, ``order_by``, paging."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

from starlette.datastructures import QueryParams

from commerce_bridge.sandbox.clarity_sim.jsonutil import loads
from commerce_bridge.sandbox.clarity_sim.store import UNINDEXABLE, DocStore
from commerce_bridge.sandbox.erp_sim.doctypes import DocType
from commerce_bridge.sandbox.erp_sim.errors import FrappeError

Doc = dict[str, Any]
Condition = tuple[str | None, str, str, Any]  # (child doctype or None, field, operator, value)
OPERATORS = {"=", "!=", ">", "<", ">=", "<=", "like", "not like", "in", "not in", "is", "between"}


def _json_param(query: QueryParams, name: str) -> Any:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return loads(raw)
    except ValueError as exc:
        raise FrappeError("ValidationError", f"{name} must be JSON: {exc}") from exc


def parse_conditions(raw: Any, doctype: DocType) -> list[Condition]:
    """Accept a list of ``[field, op, value]`` / ``[doctype, field, op, value]`` or a dict."""
    if raw is None:
        return []
    conditions: list[Condition] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]).lower() in OPERATORS:
                conditions.append((None, key, str(value[0]).lower(), value[1]))
            else:
                conditions.append((None, key, "=", value))
        return conditions
    if not isinstance(raw, list):
        raise FrappeError("ValidationError", "filters must be a list or an object")
    for item in raw:
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise FrappeError("ValidationError", f"invalid filter {item!r}")
        child = None
        if len(item) == 4:
            owner, field, op, value = item
            child = None if owner == doctype.name else str(owner)
        else:
            field, op, value = item
        op = str(op).lower()
        if op not in OPERATORS:
            raise FrappeError("ValidationError", f"Operator must be one of {', '.join(sorted(OPERATORS))}")
        conditions.append((child, str(field), op, value))
    return conditions


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, Decimal | int) and not isinstance(left, bool):
        try:
            return Decimal(left), Decimal(str(right))
        except ArithmeticError:
            return str(left), str(right)
    return ("" if left is None else str(left)), ("" if right is None else str(right))


def _test(value: Any, op: str, expected: Any) -> bool:
    if op == "is":
        is_set = value not in (None, "")
        return is_set if str(expected).lower() == "set" else not is_set
    if op in ("in", "not in"):
        options = expected if isinstance(expected, list) else [v.strip() for v in str(expected).split(",")]
        found = any(_comparable(value, o)[0] == _comparable(value, o)[1] for o in options)
        return found if op == "in" else not found
    if op in ("like", "not like"):
        pattern = str(expected).replace("%", "*").replace("_", "?").lower()
        found = fnmatch.fnmatch(str(value or "").lower(), pattern)
        return found if op == "like" else not found
    if op == "between":
        low, high = expected
        a, lo = _comparable(value, low)
        _, hi = _comparable(value, high)
        return bool(lo <= a <= hi)
    left, right = _comparable(value, expected)
    return bool({"=": left == right, "!=": left != right, ">": left > right, "<": left < right,
            ">=": left >= right, "<=": left <= right}[op])


def _matches(doc: Doc, condition: Condition, doctype: DocType) -> bool:
    child, field, op, expected = condition
    if child is not None:
        tables = [t for t, c in doctype.children.items() if c == child]
        rows = [r for t in tables for r in doc.get(t) or []]
        return any(_test(r.get(field), op, expected) for r in rows)
    return _test(doc.get(field), op, expected)


def _index_key(value: Any) -> Hashable:
    """How an indexed field's value is filed: strings as themselves, ``None`` as ``""``, others unindexed.

    ``_comparable`` compares a string (or ``None``) value as ``str(expected)``, so for those an ``=`` or
    ``in`` filter is a plain dictionary lookup; numbers compare as decimals and are left to the scan.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return UNINDEXABLE


def _wanted(op: str, expected: Any) -> list[Hashable] | None:
    """The index keys an ``=`` / ``in`` condition can match, or ``None`` when the index cannot serve it."""
    if op == "=":
        options = [expected]
    elif op == "in":
        options = expected if isinstance(expected, list) else [v.strip() for v in str(expected).split(",")]
    else:
        return None
    return ["" if o is None else str(o) for o in options]


def _field_extract(field: str) -> Callable[[Doc], list[Hashable]]:
    def extract(doc: Doc) -> list[Hashable]:
        return [_index_key(doc.get(field))]
    return extract


def _child_extract(doctype: DocType, child: str, field: str) -> Callable[[Doc], list[Hashable]]:
    tables = [t for t, c in doctype.children.items() if c == child]

    def extract(doc: Doc) -> list[Hashable]:
        return [_index_key(r.get(field)) for t in tables for r in doc.get(t) or []]
    return extract


def candidates(store: DocStore, doctype: DocType, conditions: list[Condition]) -> list[Doc]:
    """The documents that may pass ``conditions`` (all of them), in insertion order.

    The narrowest ``=`` or ``in`` condition is served by the store's index of that field (or child-table
    field); without one, every document of the DocType. Callers still test every condition.
    """
    best: tuple[int, str, Callable[[Doc], list[Hashable]], list[Hashable]] | None = None
    for child, field, op, expected in conditions:
        wanted = _wanted(op, expected)
        if wanted is None:
            continue
        if child is None:
            name, extract = f"field:{field}", _field_extract(field)
        else:
            name, extract = f"child:{child}:{field}", _child_extract(doctype, child, field)
        size = store.lookup_size(doctype.name, name, extract, wanted)
        if best is None or size < best[0]:
            best = (size, name, extract, wanted)
    if best is None:
        return store.all(doctype.name)
    return store.lookup(doctype.name, best[1], best[2], best[3])


def run_list(source: list[Doc] | DocStore, doctype: DocType, query: QueryParams) -> list[Doc]:
    """Filter, order, page and project the documents the way ``GET /api/resource/{doctype}`` does.

    ``source`` is the documents, or the store to take the DocType's documents from (through its indexes).
    """
    conditions = parse_conditions(_json_param(query, "filters"), doctype)
    or_conditions = parse_conditions(_json_param(query, "or_filters"), doctype)
    docs = candidates(source, doctype, conditions) if isinstance(source, DocStore) else source
    selected = [d for d in docs if all(_matches(d, c, doctype) for c in conditions)
                and (not or_conditions or any(_matches(d, c, doctype) for c in or_conditions))]
    order_by = query.get("order_by") or "modified desc"
    for clause in reversed([c.strip() for c in order_by.split(",") if c.strip()]):
        parts = clause.replace("`", "").split()
        field = parts[0].split(".")[-1]
        descending = len(parts) > 1 and parts[1].lower() == "desc"
        selected.sort(key=_order_key(field), reverse=descending)
    start = _int_param(query, "limit_start", 0)
    length = _int_param(query, "limit_page_length", _int_param(query, "limit", 20))
    page = selected[start:start + length] if length else selected[start:]
    fields = _json_param(query, "fields") or ["name"]
    if not isinstance(fields, list):
        raise FrappeError("ValidationError", "fields must be a JSON list")
    return [_project(d, fields, doctype) for d in page]


def _order_key(field: str) -> Callable[[Doc], tuple[bool, Any]]:
    def key(doc: Doc) -> tuple[bool, Any]:
        return (doc.get(field) is not None, _sort_key(doc.get(field)))
    return key


def _sort_key(value: Any) -> Any:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return (0, Decimal(value), "")
    return (1, Decimal(0), "" if value is None else str(value))


def _int_param(query: QueryParams, name: str, default: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(0, int(str(raw)))
    except ValueError as exc:
        raise FrappeError("ValidationError", f"{name} must be an integer") from exc


def _project(doc: Doc, fields: list[Any], doctype: DocType) -> Doc:
    out: Doc = {}
    for field in fields:
        name = str(field).replace("`", "").split(" as ")[0].strip()
        if name == "*":
            out.update({k: v for k, v in doc.items() if k not in doctype.children})
        elif "." in name:
            table, _, column = name.partition(".")
            rows = [r for t, c in doctype.children.items() if t == table or c == table for r in doc.get(t) or []]
            out[column] = rows[0].get(column) if rows else None
        else:
            out[name] = doc.get(name)
    return out


def dump_filters(conditions: list[Condition]) -> str:
    return json.dumps([list(c) for c in conditions])
