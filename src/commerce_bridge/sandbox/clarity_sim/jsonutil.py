"""Exact JSON for the sandbox simulators: Decimals in and out as JSON numbers, empty-field omission."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

_encode_str = json.encoder.encode_basestring


def loads(raw: bytes | str) -> Any:
    """Parse JSON keeping every non-integer number as an exact ``Decimal``."""
    return json.loads(raw, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Serialise ``value`` to compact JSON; a ``Decimal`` becomes a JSON number with its exact digits."""
    parts: list[str] = []
    _emit(value, parts)
    return "".join(parts)


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode {value} as JSON")
        out.append(format(value, "f"))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(str(key)))
            out.append(":")
            _emit(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def store_dumps(value: Any) -> str:
    """Serialise for storage: Decimals are tagged so they come back as Decimals with their scale."""
    return json.dumps(_tag(value), separators=(",", ":"))


def store_loads(raw: str) -> Any:
    """Inverse of :func:`store_dumps`."""
    return json.loads(raw, object_hook=_untag)


def _tag(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$d": format(value, "f")}
    if isinstance(value, dict):
        return {k: _tag(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$d" in obj:
        return Decimal(obj["$d"])
    return obj


def omit_empty(value: Any, *, defaults: bool = True) -> Any:
    """Drop ``None``, ``""``, empty lists/dicts and (with ``defaults``) ``0`` and ``False``, recursively.

    This is how CEF serialises models (``EmitDefaultValue=false`` and ``IgnoreEmptyData``).
    """
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            cleaned = omit_empty(item, defaults=defaults)
            if _is_empty(cleaned, defaults):
                continue
            result[key] = cleaned
        return result
    if isinstance(value, list):
        return [omit_empty(v, defaults=defaults) for v in value]
    return value


def _is_empty(value: Any, defaults: bool) -> bool:
    if value is None or value == "" or value == [] or value == {}:
        return True
    if defaults and value is False:
        return True
    return bool(defaults and isinstance(value, int | Decimal) and not isinstance(value, bool) and value == 0)
