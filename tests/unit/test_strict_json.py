"""The strict JSON reading of what arrives from outside (ingress's parsing path), checked by properties."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.strict_json import DEFAULT_MAX_DEPTH, loads_strict, nesting_depth
from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ingest import parse_event

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False)
documents = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=8), kids, max_size=4), max_leaves=30)


def depth(doc: Any) -> int:
    """The reference: recursion, obviously right for small documents."""
    if isinstance(doc, dict):
        return 1 + max((depth(v) for v in doc.values()), default=0)
    if isinstance(doc, list):
        return 1 + max((depth(v) for v in doc), default=0)
    return 0


@given(documents)
@settings(max_examples=300)
def test_every_json_document_within_the_limit_reads_back_as_written(doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    assert nesting_depth(doc) == depth(doc)
    assert loads_strict(text.encode(), max_depth=64) == json.loads(text)


@given(st.binary(max_size=300))
@example(b'{"a":' * 2000)
@example(b"\xed\xa0\x80")  # an encoded surrogate: not UTF-8
@example(b'{"a": 1e999}')
@example(b"1" * 5000)  # beyond Python's int-string limit
@settings(max_examples=500)
def test_any_bytes_either_read_or_are_refused_with_a_validation_error(body: bytes) -> None:
    with contextlib.suppress(ValidationError):
        loads_strict(body)


@given(st.dictionaries(st.text(min_size=1, max_size=8), scalars, min_size=1, max_size=5), st.data())
def test_a_key_written_twice_anywhere_is_refused_naming_it(doc: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(doc)))
    inner = json.dumps(doc)[1:-1]
    twice = f'{{{inner}, {json.dumps(key)}: 0}}'
    for wrapped in (twice, f'{{"outer": [{twice}]}}'):
        with pytest.raises(ValidationError, match="twice"):
            loads_strict(wrapped.encode())


@given(st.integers(2, 200))
def test_nesting_is_refused_exactly_past_the_limit(levels: int) -> None:
    body = ('{"id": "e", "d": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}").encode()
    if levels <= DEFAULT_MAX_DEPTH:
        assert nesting_depth(loads_strict(body)) == levels
    else:
        with pytest.raises(ValidationError, match="nested deeper"):
            loads_strict(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = json.dumps({"id": "e", "note": "[" * 100 + "{" * 100}).encode()
    assert loads_strict(body)["note"].startswith("[[")


@given(st.text(min_size=1, max_size=40))
def test_an_event_id_is_accepted_only_as_printable_text(event_id: str) -> None:
    body = json.dumps({"id": event_id, "type": "charge.succeeded"}).encode()
    if event_id.isprintable() and len(event_id) <= 255:
        assert parse_event("stripe", body) == (event_id, "charge.succeeded")
    else:
        with pytest.raises(ValidationError):
            parse_event("stripe", body)
