"""The exception report of the columnar job: one row per exception, with its reason and suggested fix.

Rows come from the flagged transactions, the payouts whose transactions do not sum to them and the orders
no charge names (``exception_plan``); ``reason`` gives the amounts as decimal text in each currency's own
decimals.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from commerce_bridge.reconcile.rules import EXCEPTION_KINDS
from commerce_bridge.reconcile.units import code_scales

EXCEPTION_SCHEMA: dict[str, Any] = {
    "kind": pl.String, "ref": pl.String, "payout_id": pl.String, "reason": pl.String, "suggested_fix": pl.String,
    "amount_minor": pl.Int64, "currency": pl.String, "expected_minor": pl.Int64, "expected_currency": pl.String}
_MEANINGS = pl.Series([k.meaning for k in EXCEPTION_KINDS.values()], dtype=pl.String)
_FIXES = pl.Series([k.suggested_fix for k in EXCEPTION_KINDS.values()], dtype=pl.String)


def exception_sources(lines: pl.LazyFrame, orders: pl.LazyFrame) -> list[pl.LazyFrame]:
    """What the exceptions are made of, as plans: the flagged lines and the orders that no charge names."""
    charged = lines.filter((pl.col("category") == "charge") & pl.col("order_key").is_not_null()).select("order_key")
    return [lines.filter(pl.col("kind").is_not_null()),
            orders.join(charged.unique(), on="order_key", how="anti").select("order_key", "amount_minor", "currency")]


def exception_rows(flagged: pl.DataFrame, unpaid: pl.DataFrame, proof: pl.DataFrame, *,
                   engine: Any = "in-memory") -> pl.DataFrame:
    """The exceptions (``EXCEPTION_SCHEMA``): the flagged lines, the payouts whose transactions do not sum to
    them (``proof``), the orders no charge names (``unpaid``), each with its reason and suggested fix.

    ``flagged`` and ``unpaid`` are the collected ``exception_sources``. The reasons are only planned when
    there is an exception (their text is most of the cost of a plan of a clean payout).
    """
    off = proof.get_column("payout_amount").is_not_null() & ~proof.get_column("sum_ok")
    if not (flagged.height or unpaid.height or off.any()):
        return pl.DataFrame(schema=EXCEPTION_SCHEMA)
    kind = pl.col("kind").to_physical()  # the index in EXCEPTION_KINDS
    lines = flagged.lazy().with_columns(
        _meaning=pl.lit(_MEANINGS).gather(kind), _fix=pl.lit(_FIXES).gather(kind),
    ).with_columns(pl.col("kind", "currency", "expected_currency", "src_currency").cast(pl.String))
    rows = _with_decimal_texts(lines, {"_amount": ("amount_minor", "currency"), "_src": ("src_minor", "src_currency"),
                                       "_expected": ("expected_minor", "expected_currency"),
                                       "_charged": ("charged_minor", "src_currency")}).select(
        "kind", ref="id", payout_id="payout_id",
        reason=pl.concat_str(
            pl.format("{}: {} {} {}", "_meaning", "type", "_amount", "currency"),
            pl.when(pl.col("src_currency") != pl.col("currency"))
            .then(pl.format(" (charged {} {})", "_src", "src_currency"))
            .otherwise(pl.lit("")),
            pl.when(pl.col("expected_minor").is_not_null())
            .then(pl.format("; expected {} {}", "_expected", "expected_currency"))
            .otherwise(pl.lit("")),
            _reason_detail()),
        suggested_fix="_fix",
        amount_minor="amount_minor", currency="currency",
        expected_minor=pl.when(pl.col("kind") == "payout_mismatch").then(None).otherwise("expected_minor"),
        expected_currency="expected_currency")
    payout_rows = proof.lazy().filter(~pl.col("sum_ok") & pl.col("payout_amount").is_not_null()).select(
        kind=pl.lit("payout_mismatch"), ref="payout_id", payout_id="payout_id",
        reason=pl.format("the payout's transactions net {} but the payout is {} (minor units)", "net_sum",
                         "payout_amount"),
        suggested_fix=pl.lit(EXCEPTION_KINDS["payout_mismatch"].suggested_fix), amount_minor="net_sum",
        currency=pl.lit(None, pl.String), expected_minor="payout_amount",
        expected_currency=pl.lit(None, pl.String))
    orders = _with_decimal_texts(unpaid.lazy(), {"_amount": ("amount_minor", "currency")}).select(
        kind=pl.lit("order_without_charge"), ref="order_key", payout_id=pl.lit(None, pl.String),
        reason=pl.format("{}: order {} of {} {}", pl.lit(EXCEPTION_KINDS["order_without_charge"].meaning),
                         "order_key", "_amount", "currency"),
        suggested_fix=pl.lit(EXCEPTION_KINDS["order_without_charge"].suggested_fix),
        amount_minor=pl.lit(None, pl.Int64), currency=pl.lit(None, pl.String), expected_minor="amount_minor",
        expected_currency="currency")
    return (pl.concat([rows, payout_rows, orders], how="vertical_relaxed")
            .select(pl.col(name).cast(dtype) for name, dtype in EXCEPTION_SCHEMA.items()).collect(engine=engine))


def _with_decimal_texts(frame: pl.LazyFrame, texts: dict[str, tuple[str, str]]) -> pl.LazyFrame:
    """``frame`` with a text column per entry of ``texts`` (name: ``(minor, currency)``): the ISO minor units
    as decimal text with the currency's own decimals (1000 USD -> 10.00, 1500 JPY -> 1500, -5 USD -> -0.05,
    null -> ``-``; a currency that is null or unknown counts two decimals).

    Built in stages of plain columns (each currency's scale, each amount's absolute value, then the text):
    as one expression per amount the tree repeats its parts and cost about 3 ms of CPU per call to plan.
    """
    codes, scales = code_scales()
    currencies = sorted({currency for _, currency in texts.values()})
    frame = frame.with_columns(**{f"_scale_{c}": pl.lit(scales).gather(
        pl.col(c).cast(pl.String).str.to_uppercase().cast(codes, strict=False).to_physical()).fill_null(100)
        for c in currencies})
    frame = frame.with_columns(**{f"_abs{name}": pl.col(minor).cast(pl.Int64).abs()
                                  for name, (minor, _) in texts.items()})

    def text(name: str, minor: str, currency: str) -> pl.Expr:
        value, size, scale = pl.col(minor), pl.col(f"_abs{name}"), pl.col(f"_scale_{currency}")
        whole = (size // scale).cast(pl.String)
        frac = (size % scale + scale).cast(pl.String).str.slice(1)  # 10**d + f: "1" then f in d digits
        return pl.when(value.is_null()).then(pl.lit("-")).otherwise(pl.concat_str(
            pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit("")),
            pl.when(scale == 1).then(whole).otherwise(pl.concat_str(whole, pl.lit("."), frac))))

    return frame.with_columns(**{name: text(name, minor, currency) for name, (minor, currency) in texts.items()})


def _reason_detail() -> pl.Expr:
    """The numbers a kind needs beyond amount and expected amount (split charges, the payout's side)."""
    kind = pl.col("kind")
    return (pl.when(kind == "unknown_payout")
            .then(pl.format("; payout {} was not passed in", pl.col("payout_id").fill_null("(none)")))
            .when(kind == "payout_currency_mismatch").then(pl.lit("; the payout's currency is expected"))
            .when(pl.col("charged_minor").is_not_null() & kind.is_not_null())
            .then(pl.format("; the order's charges total {} {}", "_charged", "src_currency"))
            .otherwise(pl.lit("")))
