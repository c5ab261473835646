"""Input checks of the columnar job: what it refuses before matching anything (never guessed, never rounded).

* a currency code the bridge does not know;
* an ``exchange_rate`` that is not plain decimal text with at most ``RATE_DECIMALS`` decimals;
* a Stripe amount (``amount``, ``fee``, ``net``, ``source_amount``, a payout's ``amount``) that is not a
  whole number of ISO minor units (an ISK amount that is not a multiple of 100, see ``unit_factors``).

The row-by-row reference makes the same checks as it goes (``rules.to_minor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile.rules import RATE_DECIMALS, inexact_amount, unit_factors

if TYPE_CHECKING:
    from commerce_bridge.reconcile.job import Inputs

_TXN_FIELDS = ("amount", "fee", "net", "source_amount")


def check_inputs(inputs: Inputs, factors: pl.DataFrame) -> None:
    """Refuse the input (``MappingError``) on an unknown currency, a malformed rate or an inexact amount."""
    t = inputs.transactions
    used = pl.concat([frame.select(c=pl.col(name).drop_nulls().unique()) for frame, name in (
        (t, "currency"), (t, "source_currency"), (inputs.payouts, "currency"), (inputs.orders, "currency"),
        (inputs.returns, "currency"))]).unique()
    unknown = used.filter(~pl.col("c").str.to_lowercase().is_in(factors["code"].implode()))
    if unknown.height:
        raise MappingError(f"unknown currencies in the reconciliation input: {sorted(unknown['c'].to_list())}",
                           suggested_fix="use ISO 4217 codes as Stripe sends them")
    bad_rate = t.select(pl.col("exchange_rate").drop_nulls()).filter(
        ~pl.col("exchange_rate").str.contains(rf"^\d+(\.\d{{1,{RATE_DECIMALS}}})?$"))
    if bad_rate.height:
        raise MappingError(f"exchange_rate {bad_rate.item(0, 0)!r} is not a decimal with at most "
                           f"{RATE_DECIMALS} decimals",
                           suggested_fix="read exchange_rate from Stripe's JSON as text (parse_float=str)")
    _check_exact(inputs)


def _check_exact(inputs: Inputs) -> None:
    steps = {code: div for code, (_, div) in unit_factors().items() if div > 1}
    if not steps:
        return
    coarse = {**steps, **{c.upper(): d for c, d in steps.items()}}

    def offenders(frame: pl.DataFrame, ref: str, field: str, currency: pl.Expr, order: int) -> pl.DataFrame:
        step = currency.replace_strict(coarse, default=None, return_dtype=pl.Int64)
        return (frame.select(ref=pl.col(ref), field=pl.lit(field), order=pl.lit(order), value=pl.col(field),
                             currency=currency, step=step)
                .filter(pl.col("step").is_not_null() & pl.col("value").is_not_null()
                        & (pl.col("value") % pl.col("step") != 0)))

    t = inputs.transactions
    found = pl.concat([
        offenders(t, "id", field, pl.coalesce("source_currency", "currency") if field == "source_amount"
                  else pl.col("currency"), i)
        for i, field in enumerate(_TXN_FIELDS)])
    if not found.height:
        found = offenders(inputs.payouts, "payout_id", "amount", pl.col("currency"), 0)
    if found.height:
        ref, field, _, value, currency, step = found.sort("ref", "order").row(0)
        raise inexact_amount(ref, field, value, currency, step)
