"""The currency tables of the columnar job as polars values, built once per process (``currency_table``).

A currency is carried through the job as the index of its code in ``CurrencyTable.codes`` (an integer,
so that comparisons are integer ones) and turned back into a code (``CurrencyTable.enum``) in the
results. The tables are constant: building them (and the polars Series the look-ups need) at every call
cost more CPU than a small payout's whole job.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import polars as pl

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES, minor_digits
from commerce_bridge.reconcile.rules import RATE_DECIMALS, unit_factors


@dataclass(frozen=True)
class CurrencyTable:
    """Every supported currency: its code, Stripe-to-ISO factor and ISO digits, by index.

    ``codes`` are upper case, in the order of their lower-case codes; ``lower`` are the lower-case codes
    (what the input checks accept, in any case); ``steps`` maps a code (upper or lower case) whose Stripe
    amounts are finer than ISO minor units to that step (``div`` of ``unit_factors``).

    Look-ups are a cast to an Enum of the codes (its physical value is the index) and a ``gather`` from
    a constant Series: ``replace_strict`` cost about 1 ms of CPU per use on a payout of 30 rows (it
    builds its mapping at every run) and more than both together on a million.
    """

    codes: tuple[str, ...]
    enum: pl.Enum
    lower: pl.Series
    steps: dict[str, int]
    _text: pl.Enum
    _mul: pl.Series
    _div: pl.Series
    _digits: pl.Series
    _code: pl.Series

    def index_of(self, column: str | pl.Expr) -> pl.Expr:
        """A currency code column (upper or lower case) as its index (Int32, null when unknown)."""
        expr = pl.col(column) if isinstance(column, str) else column
        return (expr.cast(self._text, strict=False).to_physical() % len(self.codes)).cast(pl.Int32)

    def code_of(self, index: str | pl.Expr) -> pl.Expr:
        """An index column as the currency's code (``enum``; null stays null)."""
        return pl.lit(self._code).gather(pl.col(index) if isinstance(index, str) else index)

    def digits_of(self, index: str | pl.Expr) -> pl.Expr:
        """An index column as the currency's ISO 4217 minor-unit digits (Int32)."""
        return pl.lit(self._digits).gather(pl.col(index) if isinstance(index, str) else index)

    def step_of(self, column: str | pl.Expr) -> pl.Expr:
        """A currency code column (upper or lower case) as its step (``div``; null when unknown)."""
        return pl.lit(self._div).gather(self.index_of(column))

    def factors_of(self, index: str) -> tuple[pl.Expr, pl.Expr]:
        """An index column as the ``(mul, div)`` turning a Stripe amount into ISO minor units."""
        return pl.lit(self._mul).gather(pl.col(index)), pl.lit(self._div).gather(pl.col(index))


@cache
def currency_table() -> CurrencyTable:
    """The table, built on first use (the currencies are constant for the process)."""
    factors = unit_factors()
    lower = sorted(factors)
    codes = tuple(c.upper() for c in lower)
    enum = pl.Enum(list(codes))
    steps = {c: factors[c][1] for c in lower if factors[c][1] > 1}
    return CurrencyTable(
        codes=codes, enum=enum, lower=pl.Series(lower, dtype=pl.String),
        steps=steps | {c.upper(): s for c, s in steps.items()},
        _text=pl.Enum([*codes, *lower]),
        _mul=pl.Series([factors[c][0] for c in lower], dtype=pl.Int64),
        _div=pl.Series([factors[c][1] for c in lower], dtype=pl.Int64),
        _digits=pl.Series([minor_digits(c) for c in lower], dtype=pl.Int32),
        _code=pl.Series(codes, dtype=enum))


@cache
def code_scales() -> tuple[pl.Enum, pl.Series]:
    """The supported codes (upper case) as an Enum, and ``10 ** digits`` of each in its order (Int64)."""
    codes = sorted(SUPPORTED_CURRENCIES)
    return pl.Enum(codes), pl.Series([10 ** minor_digits(c) for c in codes], dtype=pl.Int64)


_POW10 = pl.Series([10 ** max(d, 0) for d in range(-4, 5)], dtype=pl.Int128)
"""``10**max(d, 0)`` at index ``d + 4``: digit differences run from -4 to 4."""


def half_even_stages(src: str, rate: str, src_digits: str, dst_digits: str) -> list[dict[str, pl.Expr]]:
    """``src × rate`` in the destination's minor units, half to even, as successive ``with_columns`` stages.

    ``rate`` is in ``10**-RATE_DECIMALS`` units; the columns are named; the last stage adds
    ``_converted`` (Int64) and the stages add ``_num``, ``_down``, ``_q``, ``_r2`` on the way. Each stage
    names its intermediates as columns: written as one expression, the tree repeats its parts (the
    quotient three times, the numerator twice over) and polars spent about 90 ms of CPU per call
    optimising it, whatever the number of rows.
    """
    diff = pl.col(dst_digits) - pl.col(src_digits)
    up = pl.lit(_POW10).gather(diff + 4)
    down = pl.lit(_POW10).gather(4 - diff) * 10**RATE_DECIMALS
    num, den, q = pl.col("_num"), pl.col("_down"), pl.col("_q")
    r2 = pl.col("_r2")
    return [
        {"_num": pl.col(src).cast(pl.Int128) * pl.col(rate).cast(pl.Int128) * up, "_down": down},
        {"_q": num // den},
        {"_r2": (num - q * den) * 2},
        {"_converted": (q + ((r2 > den) | ((r2 == den) & (q % 2 == 1))).cast(pl.Int128)).cast(pl.Int64)},
    ]
