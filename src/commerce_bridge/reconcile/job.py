"""Payout reconciliation as one columnar job (polars): match, flag, journal and prove, for any number of rows.

Inputs (one frame each; ``frames_from_records`` builds them from dicts, as the bridge's pages and
tables give them):

* ``transactions``: Stripe balance transactions, Stripe's integer units: ``id``, ``payout_id``, ``type``,
  ``reporting_category``, ``amount``, ``fee``, ``net``, ``currency`` (the settlement currency),
  ``exchange_rate`` (decimal *text* or null), ``source_id``, ``source_type``, ``source_amount`` and
  ``source_currency`` (the expanded source's own amount and currency: a charge made in EUR and settled
  in USD has ``source_currency='eur'``), ``order_key`` (the charge's ``metadata.clarity_order_key``);
* ``payouts``: ``payout_id``, ``amount`` (Stripe units, positive), ``currency``;
* ``orders`` (the bridge's side, ISO minor units): ``order_key``, ``amount_minor``, ``currency``,
  ``fee_minor`` (the fee the bridge recorded for the order's charge, settlement minor units, or null);
* ``returns``: ``refund_id``, ``order_key``, ``amount_minor``, ``currency``;
* ``disputes``: ``dispute_id``, ``order_key``.

Rules (``rules.py`` holds them as data):

1. each transaction gets a category from its type and reporting category, then the first exception kind
   that applies in ``EXCEPTION_KINDS`` order, or none (matched): a charge needs a known order (the
   first charge of an order by id wins; a later one is a ``duplicate_charge``), the same currency, the
   same amount and, when the bridge recorded one, the same fee; a refund needs a known return with
   the same currency and amount; a dispute line needs a known dispute; the payout's own line must be
   minus the payout amount; an unknown type is an exception; every line needs ``net = amount - fee``;
2. journal lines per payout, signed minor units of the settlement currency (+ debit, - credit), each
   referencing its transaction: ``clearing +net``; the counter account (receivable, refunds, disputes,
   fees, adjustments; **suspense** for an exception, visible and tied to it, never a silent plug)
   ``-(net + fee - fx)`` (that is ``-(amount - fx)``; when ``net`` is not ``amount - fee``, the line is an
   exception and the difference stays on suspense with it); ``fx -fx`` (see the FX rule in ``rules.py``); ``fees`` (``dispute_fees`` for
   disputes) ``+fee``; and for the payout ``bank +P`` and ``clearing -P``. Every transaction's lines sum
   to zero, so every journal balances by construction, and the proof checks it anyway;
3. proof per payout: the transactions' net sums to the payout amount (else ``payout_mismatch``), the
   clearing account's balance over the payout's lines is zero, the journal balances; the payout is
   ``closed`` when all three hold and it has no exception;
4. an order the bridge knows that no charge in the set names is ``order_without_charge`` (the caller
   chooses which orders to pass: those paid in the period being reconciled).

Why polars and not DuckDB (measured with ``bench/reconcile.py`` on 1,001,520 transactions, 7 Dec 2026,
2 shared cores; docs/performance.md has the tables): both run the same rules and agree exactly.
Starting from Parquet files DuckDB was leaner (600-630 MB against 980-1,000 MB peak RSS) and about as
fast (2.0-2.9 s against 2.4-2.6 s). Starting from Python records, which is what the bridge has (Stripe's
pages, rows from its SQLite/PostgreSQL store), polars took 5.2 s and DuckDB 9.7 s: DuckDB takes Python
rows only through pyarrow (not a dependency) or one by one (about 750 s per million measured), so the
records have to go through a file first. Both are far inside the 20 s / 1.5 GB target from files; the
bridge has no Parquet files, so polars stays. If the store ever keeps balance transactions as columnar
files, DuckDB is the leaner engine and the comparison arm in ``bench/_reconcile_duckdb.py`` is the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile.reference import Summary
from commerce_bridge.reconcile.rules import (
    CATEGORIES,
    CHARGE_TYPES,
    COUNTER_ROLE,
    DISPUTE_CATEGORIES,
    EXCEPTION_KINDS,
    FEE_TYPES,
    PAYOUT_TYPE,
    RATE_DECIMALS,
    REFUND_TYPES,
    STRIPE_TYPES,
    LedgerAccounts,
    unit_factors,
)

TRANSACTION_SCHEMA: dict[str, Any] = {
    "id": pl.String, "payout_id": pl.String, "type": pl.String, "reporting_category": pl.String,
    "amount": pl.Int64, "fee": pl.Int64, "net": pl.Int64, "currency": pl.String, "exchange_rate": pl.String,
    "source_id": pl.String, "source_type": pl.String, "source_amount": pl.Int64, "source_currency": pl.String,
    "order_key": pl.String,
}
PAYOUT_SCHEMA: dict[str, Any] = {"payout_id": pl.String, "amount": pl.Int64, "currency": pl.String}
ORDER_SCHEMA: dict[str, Any] = {"order_key": pl.String, "amount_minor": pl.Int64, "currency": pl.String,
                                "fee_minor": pl.Int64}
RETURN_SCHEMA: dict[str, Any] = {"refund_id": pl.String, "order_key": pl.String, "amount_minor": pl.Int64,
                                 "currency": pl.String}
DISPUTE_SCHEMA: dict[str, Any] = {"dispute_id": pl.String, "order_key": pl.String}

_ENGINE: Any = "auto"
"""polars' choice of engine; the streaming engine was measured no leaner here (docs/performance.md)."""
KIND_ENUM = pl.Enum(list(EXCEPTION_KINDS))
ROLES = ("clearing", "bank", "receivable", "fees", "dispute_fees", "refunds", "disputes", "fx", "adjustments",
         "suspense")


@dataclass(frozen=True)
class Inputs:
    """The five input frames (schemas above)."""

    transactions: pl.DataFrame
    payouts: pl.DataFrame
    orders: pl.DataFrame
    returns: pl.DataFrame
    disputes: pl.DataFrame


def frames_from_records(transactions: Iterable[Mapping[str, Any]], payouts: Iterable[Mapping[str, Any]],
                        orders: Iterable[Mapping[str, Any]], returns: Iterable[Mapping[str, Any]],
                        disputes: Iterable[Mapping[str, Any]]) -> Inputs:
    """Build ``Inputs`` from dict records (missing keys are null)."""
    def frame(rows: Iterable[Mapping[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
        listed = rows if isinstance(rows, list) else list(rows)
        return pl.DataFrame({k: [r.get(k) for r in listed] for k in schema}, schema=schema)
    return Inputs(frame(transactions, TRANSACTION_SCHEMA), frame(payouts, PAYOUT_SCHEMA),
                  frame(orders, ORDER_SCHEMA), frame(returns, RETURN_SCHEMA), frame(disputes, DISPUTE_SCHEMA))


@dataclass(frozen=True)
class Result:
    """What the job produced.

    ``lines``: one row per transaction (category, ``kind`` null when matched, ISO amounts, ``fx_minor``).
    ``exceptions``: kind, ref, payout_id, reason, suggested_fix, amount_minor, currency, expected_minor,
    expected_currency. ``journal``: payout_id, role, account, ref, amount_minor (+ debit), currency.
    ``proof``: per payout: payout_amount, net_sum, matched_net, exception_net, clearing_balance,
    journal_balance, exceptions, sum_ok, clearing_zero, balanced, closed.
    """

    lines: pl.DataFrame
    exceptions: pl.DataFrame
    journal: pl.DataFrame
    proof: pl.DataFrame

    def summary(self) -> Summary:
        """The result as the reference's ``Summary`` (for comparison; costs a pass in Python)."""
        out = Summary()
        out.status = {i: (c, k or "") for i, c, k in self.lines.select("id", "category", "kind").iter_rows()}
        out.exceptions = {(k, r, p or "") for k, r, p in
                          self.exceptions.select("kind", "ref", "payout_id").iter_rows()}
        totals = self.journal.group_by("payout_id", "role").agg(pl.col("amount_minor").sum())
        out.journal = {(p, r): v for p, r, v in totals.iter_rows() if v}
        out.proof = {row[0]: tuple(row[1:]) for row in self.proof.select(
            "payout_id", "payout_amount", "net_sum", "matched_net", "clearing_balance", "journal_balance",
            "closed").iter_rows()}
        return out


def _factor_frame() -> pl.DataFrame:
    table = unit_factors()
    codes = sorted(table)
    return pl.DataFrame({"code": codes, "mul": [table[c][0] for c in codes], "div": [table[c][1] for c in codes],
                         "digits": [minor_digits(c) for c in codes]},
                        schema={"code": pl.String, "mul": pl.Int64, "div": pl.Int64, "digits": pl.Int32})


def _check_inputs(inputs: Inputs, factors: pl.DataFrame) -> None:
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


_POW10 = {d: 10 ** max(d, 0) for d in range(-4, 5)}


def _half_even_convert(src: pl.Expr, rate: pl.Expr, src_digits: pl.Expr, dst_digits: pl.Expr) -> pl.Expr:
    """``src × rate`` (rate in ``10**-RATE_DECIMALS`` units) in the destination's minor units, half to even."""
    up = (dst_digits - src_digits).replace_strict(_POW10, return_dtype=pl.Int128)
    down = (src_digits - dst_digits).replace_strict(_POW10, return_dtype=pl.Int128) * 10**RATE_DECIMALS
    num = src.cast(pl.Int128) * rate.cast(pl.Int128) * up
    q = num // down
    r2 = (num - q * down) * 2
    bump = (r2 > down) | ((r2 == down) & (q % 2 == 1))
    converted: pl.Expr = (q + bump.cast(pl.Int128)).cast(pl.Int64)
    return converted


def _lookup(keys: pl.DataFrame, table: pl.DataFrame, on: str) -> pl.DataFrame:
    """``table``'s other columns for each row of ``keys`` (left join on one narrow column, row order kept)."""
    return keys.join(table, on=on, how="left", maintain_order="left").drop(on)


def _codes(column: str | pl.Expr, ids: dict[str, int]) -> pl.Expr:
    """A currency column (any case) as the index of its code, so that comparisons are integer ones."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.replace_strict(ids, default=None, return_dtype=pl.Int32)


def reconcile(inputs: Inputs, accounts: LedgerAccounts | None = None) -> Result:
    """Match every transaction, compute the per-payout journals and their proof (see the module docstring).

    Raises
    ------
    MappingError
        An unknown currency code or an exchange rate that is not a plain decimal.
    """
    factors = _factor_frame()
    _check_inputs(inputs, factors)
    names = (accounts or LedgerAccounts()).by_role()
    codes = [c.upper() for c in factors["code"]]
    ids = {c: i for i, c in enumerate(codes)} | {c.lower(): i for i, c in enumerate(codes)}
    currency_enum = pl.Enum(codes)
    mul = dict(enumerate(factors["mul"]))
    div = dict(enumerate(factors["div"]))
    digits = dict(enumerate(factors["digits"]))

    def units(column: str, cur: str) -> pl.Expr:
        return (pl.col(column) * pl.col(cur).replace_strict(mul, return_dtype=pl.Int64)
                // pl.col(cur).replace_strict(div, return_dtype=pl.Int64))

    orders = inputs.orders.select("order_key", o_amount="amount_minor", o_cur=_codes("currency", ids),
                                  o_fee="fee_minor", o_found=pl.lit(True))
    returns = inputs.returns.select(source_id="refund_id", r_amount="amount_minor", r_cur=_codes("currency", ids),
                                    r_found=pl.lit(True))
    disputes = inputs.disputes.select(source_id="dispute_id", d_found=pl.lit(True)).unique("source_id")
    payouts = inputs.payouts.select("payout_id", p_cur=_codes("currency", ids), amount="amount").with_columns(
        p_minor=units("amount", "p_cur")).drop("amount")
    tx = inputs.transactions
    t = pl.concat([
        tx.select("id", "payout_id", "type", "reporting_category", "amount", "fee", "net", "exchange_rate",
                  "order_key", cur=_codes("currency", ids),
                  src_cur=_codes(pl.coalesce("source_currency", "currency"), ids),
                  src_amount=pl.coalesce("source_amount", "amount").abs()),
        _lookup(tx.select("order_key"), orders, "order_key"),
        _lookup(tx.select("source_id"), returns, "source_id"),
        _lookup(tx.select("source_id"), disputes, "source_id"),
        _lookup(tx.select("payout_id"), payouts.select("payout_id", "p_minor"), "payout_id"),
    ], how="horizontal").lazy()
    typ, rc = pl.col("type"), pl.col("reporting_category")
    category = (pl.when(rc.is_in(list(DISPUTE_CATEGORIES))).then(pl.lit("dispute"))
                .when(typ.is_in(list(CHARGE_TYPES))).then(pl.lit("charge"))
                .when(typ.is_in(list(REFUND_TYPES))).then(pl.lit("refund"))
                .when(typ.is_in(list(FEE_TYPES))).then(pl.lit("fee"))
                .when(typ == PAYOUT_TYPE).then(pl.lit("payout"))
                .when(typ.is_in(list(STRIPE_TYPES))).then(pl.lit("other"))
                .otherwise(pl.lit("unknown"))).cast(pl.Enum(CATEGORIES))
    t = t.with_columns(
        category=category,
        amount_minor=units("amount", "cur"), fee_minor=units("fee", "cur"), net_minor=units("net", "cur"),
        src_minor=units("src_amount", "src_cur"),
        o_found=pl.col("o_found").fill_null(False), r_found=pl.col("r_found").fill_null(False),
        d_found=pl.col("d_found").fill_null(False),
    )
    charges = pl.concat([tx.select("id", "order_key", "type", "reporting_category"),
                         _lookup(tx.select("order_key"), orders.select("order_key", "o_found"), "order_key")],
                        how="horizontal")
    duplicates = (charges.lazy().filter(pl.col("type").is_in(list(CHARGE_TYPES)) & pl.col("o_found")
                                        & ~pl.col("reporting_category").is_in(list(DISPUTE_CATEGORIES)))
                  .filter(pl.col("id") != pl.col("id").min().over("order_key")).select("id").collect())
    cat = pl.col("category")
    charge, refund = cat == "charge", cat == "refund"
    kind = (pl.when(charge & ~pl.col("o_found")).then(pl.lit("charge_without_order"))
            .when(charge & pl.col("id").is_in(duplicates["id"].implode())).then(pl.lit("duplicate_charge"))
            .when(charge & (pl.col("src_cur") != pl.col("o_cur"))).then(pl.lit("currency_mismatch"))
            .when(charge & (pl.col("src_minor") != pl.col("o_amount"))).then(pl.lit("amount_mismatch"))
            .when(charge & pl.col("o_fee").is_not_null() & (pl.col("o_fee") != pl.col("fee_minor")))
            .then(pl.lit("fee_mismatch"))
            .when(refund & ~pl.col("r_found")).then(pl.lit("refund_without_return"))
            .when(refund & (pl.col("src_cur") != pl.col("r_cur"))).then(pl.lit("currency_mismatch"))
            .when(refund & (pl.col("src_minor") != pl.col("r_amount"))).then(pl.lit("amount_mismatch"))
            .when((cat == "dispute") & ~pl.col("d_found")).then(pl.lit("dispute_without_record"))
            .when((cat == "payout") & (pl.col("p_minor").is_null() | (-pl.col("p_minor") != pl.col("amount_minor"))))
            .then(pl.lit("payout_mismatch"))
            .when(cat == "unknown").then(pl.lit("unknown_type"))
            .when(pl.col("net") != pl.col("amount") - pl.col("fee")).then(pl.lit("fee_mismatch")))
    t = t.with_columns(kind=kind.cast(KIND_ENUM))
    is_fx = (pl.col("kind").is_null() & (charge | refund) & pl.col("exchange_rate").is_not_null()
             & (pl.col("src_cur") != pl.col("cur")))
    parts = pl.col("exchange_rate").str.split_exact(".", 1)
    rate = (parts.struct.field("field_0") + parts.struct.field("field_1").fill_null("")
            .str.pad_end(RATE_DECIMALS, "0")).cast(pl.Int64)
    expected = _half_even_convert(pl.col("src_minor"), rate,
                                  pl.col("src_cur").replace_strict(digits, return_dtype=pl.Int32),
                                  pl.col("cur").replace_strict(digits, return_dtype=pl.Int32))
    signed_expected = pl.when(pl.col("amount_minor") >= 0).then(expected).otherwise(-expected)
    base = t.with_row_index("_row").collect(engine=_ENGINE)
    fx = (base.lazy().filter(is_fx).select("_row", fx_minor=pl.col("amount_minor") - signed_expected)
          .collect(engine=_ENGINE))
    t = (base.lazy().join(fx.lazy(), on="_row", how="left", maintain_order="left")
         .with_columns(pl.col("fx_minor").fill_null(0)))
    as_code = {i: c for i, c in enumerate(codes)}
    lines = t.select("id", "payout_id", "type", "category", "kind", "amount_minor", "fee_minor", "net_minor",
                     "fx_minor", currency=pl.col("cur").replace_strict(as_code, return_dtype=currency_enum),
                     expected_minor=pl.when(charge).then("o_amount").when(refund).then("r_amount"),
                     expected_currency=pl.when(charge).then("o_cur").when(refund).then("r_cur")
                     .replace_strict(as_code, default=None, return_dtype=currency_enum),
                     src_minor="src_minor",
                     src_currency=pl.col("src_cur").replace_strict(as_code, return_dtype=currency_enum),
                     order_key="order_key").collect(engine=_ENGINE)

    body = lines.lazy().filter(pl.col("category") != "payout")
    role_enum = pl.Enum(ROLES)
    counter = (pl.when(pl.col("kind").is_not_null()).then(pl.lit("suspense"))
               .otherwise(pl.col("category").cast(pl.String)
                          .replace_strict(dict(COUNTER_ROLE), default="adjustments"))).cast(role_enum)
    fee_role = (pl.when(pl.col("category") == "dispute").then(pl.lit("dispute_fees"))
                .otherwise(pl.lit("fees"))).cast(role_enum)
    pay = payouts.lazy().select("payout_id", "p_minor",
                                currency=pl.col("p_cur").replace_strict(as_code, return_dtype=currency_enum))
    cols = ("payout_id", "role", "ref", "amount_minor", "currency")
    journal_lf = pl.concat([
        body.select("payout_id", role=pl.lit("clearing", role_enum), ref="id", amount_minor="net_minor",
                    currency="currency"),
        body.select("payout_id", role=counter, ref="id",
                    amount_minor=-(pl.col("net_minor") + pl.col("fee_minor") - pl.col("fx_minor")),
                    currency="currency"),
        body.select("payout_id", role=pl.lit("fx", role_enum), ref="id", amount_minor=-pl.col("fx_minor"),
                    currency="currency"),
        body.select("payout_id", role=fee_role, ref="id", amount_minor="fee_minor", currency="currency"),
        pay.select("payout_id", role=pl.lit("bank", role_enum), ref="payout_id", amount_minor="p_minor",
                   currency="currency"),
        pay.select("payout_id", role=pl.lit("clearing", role_enum), ref="payout_id",
                   amount_minor=-pl.col("p_minor"), currency="currency"),
    ]).select(*cols).filter(pl.col("amount_minor") != 0)
    account_enum = pl.Enum(list(dict.fromkeys(names.values())))
    journal_lf = journal_lf.with_columns(
        account=pl.col("role").cast(pl.String).replace_strict(names, return_dtype=account_enum))
    per_payout = body.group_by("payout_id").agg(
        net_sum=pl.col("net_minor").sum(),
        matched_net=pl.col("net_minor").filter(pl.col("kind").is_null()).sum(),
        exception_net=pl.col("net_minor").filter(pl.col("kind").is_not_null()).sum(),
    )
    row_exc = lines.lazy().filter(pl.col("kind").is_not_null()).group_by("payout_id").agg(row_exceptions=pl.len())
    balances = journal_lf.group_by("payout_id").agg(
        clearing_balance=pl.col("amount_minor").filter(pl.col("role") == "clearing").sum(),
        journal_balance=pl.col("amount_minor").sum())
    journal, proof_raw = pl.collect_all(engine=_ENGINE, lazy_frames=[
        journal_lf.select("payout_id", "role", "account", "ref", "amount_minor", "currency"),
        pay.select("payout_id", "p_minor").join(per_payout, on="payout_id", how="left")
        .join(balances, on="payout_id", how="left")
        .join(row_exc, on="payout_id", how="left").fill_null(0),
    ])
    proof = proof_raw.rename({"p_minor": "payout_amount"}).with_columns(
        sum_ok=pl.col("net_sum") == pl.col("payout_amount"),
        clearing_zero=pl.col("clearing_balance") == 0,
        balanced=pl.col("journal_balance") == 0,
    ).with_columns(
        exceptions=pl.col("row_exceptions") + (~pl.col("sum_ok")).cast(pl.UInt32),
    ).with_columns(
        closed=pl.col("sum_ok") & pl.col("clearing_zero") & pl.col("balanced") & (pl.col("exceptions") == 0),
    ).select("payout_id", "payout_amount", "net_sum", "matched_net", "exception_net", "clearing_balance",
             "journal_balance", "exceptions", "sum_ok", "clearing_zero", "balanced", "closed").sort("payout_id")
    exceptions = _exceptions(lines, proof, inputs.orders)
    return Result(lines=lines, exceptions=exceptions, journal=journal, proof=proof)


EXCEPTION_COLUMNS = ("kind", "ref", "payout_id", "reason", "suggested_fix", "amount_minor", "currency",
                     "expected_minor", "expected_currency")


def _exceptions(lines: pl.DataFrame, proof: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
    meaning = {k: v.meaning for k, v in EXCEPTION_KINDS.items()}
    fixes = {k: v.suggested_fix for k, v in EXCEPTION_KINDS.items()}
    rows = lines.filter(pl.col("kind").is_not_null()).with_columns(
        pl.col("kind", "currency", "expected_currency", "src_currency").cast(pl.String)).select(
        "kind", ref="id", payout_id="payout_id",
        reason=pl.format("{}: {} {} {} (source {} {}; expected {} {})", pl.col("kind").replace_strict(meaning),
                         "type", "amount_minor", "currency", "src_minor", "src_currency",
                         pl.col("expected_minor").cast(pl.String).fill_null("-"),
                         pl.col("expected_currency").fill_null("-")),
        suggested_fix=pl.col("kind").replace_strict(fixes),
        amount_minor="amount_minor", currency="currency",
        expected_minor=pl.when(pl.col("kind") == "payout_mismatch").then(None).otherwise("expected_minor"),
        expected_currency="expected_currency")
    payout_rows = proof.filter(~pl.col("sum_ok")).select(
        kind=pl.lit("payout_mismatch"), ref="payout_id", payout_id="payout_id",
        reason=pl.format("the payout's transactions net {} but the payout is {}", "net_sum", "payout_amount"),
        suggested_fix=pl.lit(fixes["payout_mismatch"]), amount_minor="net_sum",
        currency=pl.lit(None, pl.String), expected_minor="payout_amount",
        expected_currency=pl.lit(None, pl.String))
    charged = lines.filter((pl.col("category") == "charge") & pl.col("order_key").is_not_null()).select("order_key")
    unpaid = orders.join(charged.unique(), on="order_key", how="anti").select(
        kind=pl.lit("order_without_charge"), ref="order_key", payout_id=pl.lit(None, pl.String),
        reason=pl.format("{}: order {} of {} {}", pl.lit(meaning["order_without_charge"]), "order_key",
                         "amount_minor", "currency"),
        suggested_fix=pl.lit(fixes["order_without_charge"]), amount_minor=pl.lit(None, pl.Int64),
        currency=pl.lit(None, pl.String), expected_minor="amount_minor", expected_currency="currency")
    return pl.concat([rows, payout_rows, unpaid], how="vertical_relaxed").select(*EXCEPTION_COLUMNS)
