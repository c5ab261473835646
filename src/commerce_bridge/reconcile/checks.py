"""Input checks of the columnar job: what it refuses before matching anything (never guessed, never rounded).

* a currency code the bridge does not know;
* an ``exchange_rate`` that is not plain decimal text with at most ``RATE_DECIMALS`` decimals;
* a Stripe amount (``amount``, ``fee``, ``net``, ``source_amount``, a payout's ``amount``) that is not a
  whole number of ISO minor units (an ISK amount that is not a multiple of 100, see ``unit_factors``).

The row-by-row reference makes the same checks as it goes (``rules.to_minor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile.rules import RATE_DECIMALS, inexact_amount

if TYPE_CHECKING:
    from commerce_bridge.reconcile.job import Inputs
    from commerce_bridge.reconcile.units import CurrencyTable

_TXN_FIELDS = ("amount", "fee", "net", "source_amount")


def check_inputs(inputs: Inputs, table: CurrencyTable, *, engine: Any = "in-memory") -> None:
    """Refuse the input (``MappingError``) on an unknown currency, a malformed rate or an inexact amount."""
    refuse(pl.collect_all(check_plans(inputs, table), engine=engine))


def check_plans(inputs: Inputs, table: CurrencyTable) -> list[pl.LazyFrame]:
    """The checks as plans, for ``refuse``: the job collects them together with its own plans."""
    t = inputs.transactions.lazy()
    used = pl.concat([frame.lazy().select(c=pl.col(name).drop_nulls().unique()) for frame, name in (
        (inputs.transactions, "currency"), (inputs.transactions, "source_currency"), (inputs.payouts, "currency"),
        (inputs.orders, "currency"), (inputs.returns, "currency"))]).unique()
    unknown = used.filter(~pl.col("c").str.to_lowercase().is_in(table.lower.implode()))
    bad_rate = t.select(pl.col("exchange_rate").drop_nulls()).filter(
        ~pl.col("exchange_rate").str.contains(rf"^\d+(\.\d{{1,{RATE_DECIMALS}}})?$")).head(1)
    return [unknown, bad_rate, *_inexact_plans(inputs, table)]


def refuse(found: list[pl.DataFrame]) -> None:
    """Raise ``MappingError`` for the first check (in the order of the module docstring) that found something.

    ``found`` are the collected ``check_plans``.
    """
    unknown, bad_rate, *inexact = found
    if unknown.height:
        raise MappingError(f"unknown currencies in the reconciliation input: {sorted(unknown['c'].to_list())}",
                           suggested_fix="use ISO 4217 codes as Stripe sends them")
    if bad_rate.height:
        raise MappingError(f"exchange_rate {bad_rate.item(0, 0)!r} is not a decimal with at most "
                           f"{RATE_DECIMALS} decimals",
                           suggested_fix="read exchange_rate from Stripe's JSON as text (parse_float=str)")
    for rows in inexact:  # the transactions' first, then the payouts'
        if rows.height:
            ref, field, _, value, currency, step = rows.row(0)
            raise inexact_amount(ref, field, value, currency, step)


def _inexact_plans(inputs: Inputs, table: CurrencyTable) -> list[pl.LazyFrame]:
    """The first amount with no exact ISO minor-unit value, of the transactions and of the payouts (plans)."""
    if not table.steps:
        return []

    def offenders(frame: pl.DataFrame, ref: str, field: str, currency: pl.Expr, order: int) -> pl.LazyFrame:
        step = table.step_of(currency)  # 1 for most currencies: never an offender
        return (frame.lazy().select(ref=pl.col(ref), field=pl.lit(field), order=pl.lit(order), value=pl.col(field),
                                    currency=currency, step=step)
                .filter(pl.col("step").is_not_null() & pl.col("value").is_not_null()
                        & (pl.col("value") % pl.col("step") != 0)))

    t = inputs.transactions
    in_transactions = pl.concat([
        offenders(t, "id", field, pl.coalesce("source_currency", "currency") if field == "source_amount"
                  else pl.col("currency"), i)
        for i, field in enumerate(_TXN_FIELDS)]).sort("ref", "order").head(1)
    return [in_transactions, offenders(inputs.payouts, "payout_id", "amount", pl.col("currency"), 0)
            .sort("ref", "order").head(1)]
