"""Parse Stripe's form encoding (``a[b][c]=1``, ``a[]=x``, ``a[0][k]=v``) into nested dicts and lists."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid_request

Params = dict[str, Any]


def _split(key: str) -> list[str]:
    head, sep, rest = key.partition("[")
    parts = [head]
    if not sep:
        return parts
    rest = "[" + rest
    while rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise invalid_request(f"Invalid parameter name: {key}", param=key)
        parts.append(rest[1:end])
        rest = rest[end + 1 :]
    return parts


def _listify(node: Any) -> Any:
    """Turn dicts whose keys are all digits (``a[0]``, ``a[1]``) into lists."""
    if isinstance(node, dict):
        if "" in node and len(node) == 1:
            return [_listify(v) for v in node[""]]
        for k, v in node.items():
            node[k] = v if k == "metadata" else _listify(v)
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    elif isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def parse_form(body: bytes | str) -> Params:
    """Nested parameters from an urlencoded body or query string.

    ``a[0]=x&a[1]=y`` and ``a[]=x&a[]=y`` give lists; ``a[0][k]=v`` gives a list of dicts; ``a=`` gives
    ``""`` (Stripe's way to unset a value).
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    out: Params = {}
    if not text:
        return out
    nested = False
    for key, value in parse_qsl(text, keep_blank_values=True):
        if "[" not in key:
            out[key] = value
            continue
        nested = True
        parts = _split(key)
        node: Any = out
        for part in parts[:-1]:
            if part == "":
                raise invalid_request(f"Invalid parameter name: {key}", param=key)
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if last == "":
            node.setdefault("", []).append(value)
        else:
            node[last] = value
    if not nested:
        return out
    return {k: (v if k == "metadata" else _listify(v)) for k, v in out.items()}


def as_int(params: Params, key: str, default: int | None = None, *, required: bool = False) -> int | None:
    if key not in params or params[key] == "":
        if required:
            raise invalid_request(f"Missing required param: {key}.", param=key, code="parameter_missing")
        return default
    try:
        return int(params[key])
    except (TypeError, ValueError):
        raise invalid_request(f"Invalid integer: {params[key]}", param=key) from None


def as_bool(params: Params, key: str, default: bool = False) -> bool:
    v = params.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, bool):
        return v
    if v in ("true", "1", "True"):
        return True
    if v in ("false", "0", "False"):
        return False
    raise invalid_request(f"Invalid boolean: {v}", param=key)


def as_str(params: Params, key: str, default: str | None = None, *, required: bool = False) -> str | None:
    v = params.get(key)
    if v is None or v == "":
        if required:
            raise invalid_request(f"Missing required param: {key}.", param=key, code="parameter_missing")
        return default
    if not isinstance(v, str):
        raise invalid_request(f"Invalid string: {key}", param=key)
    return v


def metadata_update(current: dict[str, str], new: Any) -> dict[str, str]:
    """Stripe's metadata merge: keys merge, an empty value unsets a key, an empty ``metadata`` unsets all."""
    if new is None:
        return current
    if new == "":
        return {}
    if not isinstance(new, dict):
        raise invalid_request("Invalid metadata: must be an object", param="metadata")
    out = dict(current)
    for k, v in new.items():
        if len(k) > 40 or "[" in k or "]" in k:
            raise invalid_request(f"Invalid metadata key: {k}", param=f"metadata[{k}]")
        if v == "":
            out.pop(k, None)
        else:
            if len(str(v)) > 500:
                raise invalid_request("Metadata values can have up to 500 characters", param=f"metadata[{k}]")
            out[k] = str(v)
    if len(out) > 50:
        raise invalid_request("Metadata can have up to 50 keys", param="metadata")
    return out
