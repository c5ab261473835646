"""Docs-as-tests: the tables of the money and mapping reference pages match the code."""

from __future__ import annotations

from pathlib import Path

from commerce_bridge.mapping.metadata import ACCOUNT_ID, BRIDGE, CUSTOMER_ID, ORDER_ID, ORDER_KEY
from commerce_bridge.mapping.money import (
    MINIMUM_CHARGE,
    STRIPE_THREE_DECIMAL,
    STRIPE_ZERO_DECIMAL,
    money_from_decimal,
)
from commerce_bridge.mapping.status import DEFAULT_CONFIG

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _table_after(text: str, marker: str) -> list[list[str]]:
    lines = text[text.index(marker):].splitlines()[1:]
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= {"-", " "}:
            continue
        rows.append(cells)
    return rows[1:]  # without the header


def test_minimum_table_matches_the_code() -> None:
    rows = _table_after((DOCS / "money-and-currencies.md").read_text(), "<!-- minimums")
    documented: dict[str, str] = {}
    for row in rows:
        for code, amount in zip(row[0::2], row[1::2], strict=True):
            if code:
                documented[code] = amount
    assert {code: money_from_decimal(amount, code) for code, amount in documented.items()} == dict(MINIMUM_CHARGE)


def test_special_currency_lists_are_documented() -> None:
    text = (DOCS / "money-and-currencies.md").read_text()
    assert ", ".join(sorted(STRIPE_ZERO_DECIMAL)) + " (zero-decimal)" in text
    assert ", ".join(sorted(STRIPE_THREE_DECIMAL)) + " (three-decimal)" in text


def test_metadata_keys_are_documented() -> None:
    rows = _table_after((DOCS / "mappings.md").read_text(), "<!-- metadata keys")
    assert [row[0] for row in rows] == [ORDER_ID, ORDER_KEY, CUSTOMER_ID, ACCOUNT_ID, BRIDGE]


def test_default_status_maps_are_documented() -> None:
    text = (DOCS / "mappings.md").read_text()
    to_clarity = {(r[0], r[1]): r[2] for r in _table_after(text, "<!-- status: stripe_to_clarity")}
    assert to_clarity == {(kind, status): target for kind, pairs in DEFAULT_CONFIG["stripe_to_clarity"].items()
                          for status, target in pairs.items()}
    events = {r[0]: r[1] for r in _table_after(text, "<!-- status: stripe_events_to_clarity")}
    assert events == dict(DEFAULT_CONFIG["stripe_events_to_clarity"])
    to_stripe = {r[0]: r[1] for r in _table_after(text, "<!-- status: clarity_to_stripe")}
    assert to_stripe == dict(DEFAULT_CONFIG["clarity_to_stripe"]["payment_intent"])
