"""Search models of the Clarity simulator: query-string parsing, base filters, sorting and 1-based paging."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from starlette.datastructures import QueryParams

from commerce_bridge.sandbox.clarity_sim.core import ARGUMENT, CefError, Record, Sim
from commerce_bridge.sandbox.clarity_sim.jsonutil import loads

Predicate = Callable[[Record], bool]


def _decode(value: str) -> Any:
    text = value.strip()
    if text[:1] in "{[":
        try:
            return loads(text)
        except ValueError:
            return value
    return value


class SearchModel:
    """A CEF search model, read case-insensitively from a query string or a JSON body.

    Complex values arrive as URL-encoded JSON (``Paging={"Size":50,"StartIndex":1}``); dotted keys
    (``Paging.Size=50``) and repeated or comma-separated list values are accepted too.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = {str(k).lower(): v for k, v in data.items()}

    @classmethod
    def from_query(cls, query: QueryParams) -> SearchModel:
        data: dict[str, Any] = {}
        for key, value in query.multi_items():
            if "." in key:
                head, _, sub = key.partition(".")
                nested = data.setdefault(head, {})
                if isinstance(nested, dict):
                    nested[sub] = value
            elif key in data:
                existing = data[key]
                data[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
            else:
                data[key] = _decode(value)
        return cls(data)

    def raw(self, name: str) -> Any:
        value = self._data.get(name.lower())
        return None if value == "" else value

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else str(value)

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            return int(str(value))
        except ValueError as exc:
            raise CefError(f"{name} must be an integer", ARGUMENT) from exc

    def flag(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        return str(value).lower() in ("true", "1", "yes")

    def values(self, name: str) -> list[Any] | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, list):
            return value
        return [v for v in str(value).split(",") if v]

    def integers(self, name: str) -> list[int] | None:
        values = self.values(name)
        if values is None:
            return None
        try:
            return [int(str(v)) for v in values]
        except ValueError as exc:
            raise CefError(f"{name} must be a list of integers", ARGUMENT) from exc

    def date_us(self, sim: Sim, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return sim.clock.parse(value)
        except ValueError as exc:
            raise CefError(f"{name} is not a valid date: {value}", ARGUMENT) from exc

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.raw(name)
        if not isinstance(value, dict):
            return {}
        return {str(k).lower(): v for k, v in value.items()}


def _ci(value: Any) -> str:
    return str(value if value is not None else "").lower()


def base_filters(sim: Sim, model: SearchModel, *, nameable: bool) -> list[Predicate]:
    """The BaseSearchModel filters every entity shares."""
    preds: list[Predicate] = []
    if (ident := model.integer("ID")) is not None:
        preds.append(lambda r: r.get("ID") == ident)
    if (ids := model.integers("IDs")) is not None:
        id_set = set(ids)
        preds.append(lambda r: r.get("ID") in id_set)
    if (key := model.text("CustomKey")) is not None:
        if model.flag("CustomKeyStrict"):
            preds.append(lambda r: r.get("CustomKey") == key)
        else:
            preds.append(lambda r: key.lower() in _ci(r.get("CustomKey")))
    if (keys := model.values("CustomKeys")) is not None:
        key_set = {str(k) for k in keys}
        preds.append(lambda r: r.get("CustomKey") in key_set)
    if (either := model.text("IDOrCustomKey")) is not None:
        preds.append(lambda r: str(r.get("ID")) == either or r.get("CustomKey") == either)
    if (active := model.flag("Active")) is not None:
        preds.append(lambda r: bool(r.get("Active", True)) == active)
    if nameable and (name := model.text("Name")) is not None:
        preds.append(lambda r: name.lower() in _ci(r.get("Name")))
    if (since := model.date_us(sim, "ModifiedSince")) is not None:
        preds.append(lambda r: r.get("_u", 0) >= since or r.get("_c", 0) >= since)
    if (low := model.date_us(sim, "MinUpdatedOrCreatedDate")) is not None:
        preds.append(lambda r: (r.get("_u") or r.get("_c", 0)) >= low)
    if (high := model.date_us(sim, "MaxUpdatedOrCreatedDate")) is not None:
        preds.append(lambda r: (r.get("_u") or r.get("_c", 0)) <= high)
    return preds


def _sort_value(record: Record, field: str) -> tuple[int, Any]:
    internal = {"createddate": "_c", "updateddate": "_u"}.get(field.lower())
    if internal:
        value = record.get(internal)
    else:
        value = next((v for k, v in record.items() if k.lower() == field.lower()), None)
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | Decimal):
        return (1, value)
    return (2, str(value).lower())


def _sort_key(field: str) -> Callable[[Record], tuple[int, Any]]:
    def key(record: Record) -> tuple[int, Any]:
        return _sort_value(record, field)
    return key


def sort_records(records: list[Record], model: SearchModel) -> list[Record]:
    """The records in ``Sorts`` order (default ID ascending), as a new list."""
    ordered = sorted(records, key=lambda r: int(r.get("ID", 0)))
    sorts = model.values("Sorts") or []
    for spec in reversed([s for s in sorts if isinstance(s, dict)]):
        lowered = {str(k).lower(): v for k, v in spec.items()}
        descending = str(lowered.get("dir") or "asc").lower().startswith("desc")
        ordered.sort(key=_sort_key(str(lowered.get("field") or "ID")), reverse=descending)
    return ordered


def sort_and_page(records: list[Record], model: SearchModel) -> tuple[list[Record], dict[str, Any]]:
    """Apply ``Sorts`` (default ID ascending) and ``Paging``; return the page and the envelope fields."""
    return page_sorted(sort_records(records, model), model)


def page_sorted(ordered: list[Record], model: SearchModel) -> tuple[list[Record], dict[str, Any]]:
    """Apply ``Paging`` to records already in ``Sorts`` order; return the page and the envelope fields."""
    sorts = model.values("Sorts") or []
    paging = model.mapping("Paging")
    size = _positive(paging.get("size"))
    start = _positive(paging.get("startindex"))
    total = len(ordered)
    page = ordered
    if size and start:
        skip = size * (start - 1)
        page = ordered[skip: skip + size]
    envelope: dict[str, Any] = {
        "TotalCount": total,
        "TotalPages": math.ceil(total / size) if size and start else (1 if total else 0),
        "CurrentPage": start or 1,
        "CurrentCount": size or total,
    }
    if sorts:
        envelope["Sorts"] = sorts
    return page, envelope


def _positive(value: Any) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
