"""The transactions frame built page by page from Stripe's balance transactions, without keeping the objects.

A million balance transactions as Python dicts take about 1.6 GB; their columns take a few tens of MB.
``TransactionColumns`` takes each page as the official ``stripe`` SDK returns it (a ``ListObject`` or any
iterable of ``BalanceTransaction``/``StripeObject``/dict; ``StripeObject`` is not a dict in stripe-python
16 and has no ``get``, so fields are read by key), appends the fields to typed columns and lets the page
go; every ``chunk_rows`` rows (``CHUNK_ROWS`` unless given) the columns become a polars chunk.

    columns = TransactionColumns("po_123", order_key_of=lambda source: ...)
    for page in pages:                  # list(payout="po_123", expand=["data.source"]) and its next pages
        columns.add_page(page)
    inputs = Inputs(columns.frame(), payouts, orders, returns, disputes)

Per transaction: ``source_id`` is ``source.id`` (or ``source`` when it is a plain id), ``source_type`` is
``source.object``, ``source_amount``/``source_currency`` are the expanded charge's, refund's or
dispute's own amount and currency (null for other sources and for an unexpanded source), ``order_key`` is
what ``order_key_of(source)`` returns for an expanded source (the caller reads the charge's or
PaymentIntent's metadata); an unexpanded source (a plain id) has no order key: list with
``expand=["data.source"]``. ``exchange_rate`` arrives as a float (or None) from the SDK: it is
turned into decimal text with ``repr()`` (the shortest text that reads back as the same float), never by
arithmetic; a rate that is already text is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import polars as pl

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile.job import TRANSACTION_SCHEMA

CHUNK_ROWS = 50_000
"""Rows kept as Python values before they become a polars chunk."""

_SOURCE_OBJECTS = frozenset({"charge", "refund", "dispute"})


def _field(obj: Any, key: str) -> Any:
    """``obj[key]``, or None when the key is absent (works for dicts and StripeObjects)."""
    try:
        return obj[key]
    except (KeyError, TypeError):
        return None


def rate_text(rate: float | int | str | None) -> str | None:
    """``exchange_rate`` as plain decimal text, from the float's ``repr()`` (``1e-05`` becomes ``0.00001``)."""
    if rate is None:
        return None
    if isinstance(rate, str):
        return rate
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise MappingError(f"exchange_rate {rate!r} is not a number",
                           suggested_fix="pass the balance transaction as the Stripe SDK returns it")
    return format(Decimal(repr(rate)), "f")


class TransactionColumns:
    """Typed columns of one payout's balance transactions (``TRANSACTION_SCHEMA``), filled page by page."""

    def __init__(self, payout_id: str | None, order_key_of: Callable[[Any], str | None], *,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        self._payout_id = payout_id
        self._chunk_rows = chunk_rows
        self._order_key_of = order_key_of
        self._chunks: list[pl.DataFrame] = []
        self._buffer: dict[str, list[Any]] = {name: [] for name in TRANSACTION_SCHEMA}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows + len(self._buffer["id"])

    def add_page(self, page: Iterable[Any]) -> None:
        """Append a page: a ``ListObject`` (its ``data``) or an iterable of balance transactions."""
        data = _field(page, "data")
        for txn in data if isinstance(data, list) else page:
            self.add(txn)

    def add(self, txn: Any) -> None:
        """Append one balance transaction."""
        source = _field(txn, "source")
        expanded = source is not None and not isinstance(source, str)
        kind = _field(source, "object") if expanded else None
        own = expanded and kind in _SOURCE_OBJECTS
        row = self._buffer
        row["id"].append(_field(txn, "id"))
        row["payout_id"].append(self._payout_id)
        row["type"].append(_field(txn, "type"))
        row["reporting_category"].append(_field(txn, "reporting_category"))
        row["amount"].append(_field(txn, "amount"))
        row["fee"].append(_field(txn, "fee"))
        row["net"].append(_field(txn, "net"))
        row["currency"].append(_field(txn, "currency"))
        row["exchange_rate"].append(rate_text(_field(txn, "exchange_rate")))
        row["source_id"].append(_field(source, "id") if expanded else source)
        row["source_type"].append(kind)
        row["source_amount"].append(_field(source, "amount") if own else None)
        row["source_currency"].append(_field(source, "currency") if own else None)
        row["order_key"].append(self._order_key_of(source) if expanded else None)
        if len(row["id"]) >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer["id"]:
            self._chunks.append(pl.DataFrame(self._buffer, schema=TRANSACTION_SCHEMA))
            self._rows += len(self._buffer["id"])
            self._buffer = {name: [] for name in TRANSACTION_SCHEMA}

    def frame(self) -> pl.DataFrame:
        """Everything added so far as one frame with ``TRANSACTION_SCHEMA`` (the builder can go on after)."""
        self._flush()
        if not self._chunks:
            return pl.DataFrame(schema=TRANSACTION_SCHEMA)
        if len(self._chunks) > 1:
            self._chunks = [pl.concat(self._chunks, rechunk=True)]
        return self._chunks[0]
