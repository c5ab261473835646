"""Payout reconciliation as one columnar job (polars): match, flag, journal and prove, for any number of rows.

Inputs (one frame each; ``frames_from_records`` builds them from dicts, as the bridge's pages and
tables give them):

* ``transactions``: Stripe balance transactions, Stripe's integer units: ``id``, ``payout_id``, ``type``,
  ``reporting_category``, ``amount``, ``fee``, ``net``, ``currency`` (the settlement currency),
  ``exchange_rate`` (decimal *text* or null), ``source_id``, ``source_type``, ``source_amount`` and
  ``source_currency`` (the expanded source's own amount and currency: a charge made in EUR and settled
  in USD has ``source_currency='eur'``), ``order_key`` (the charge's ``metadata.clarity_order_key``; for
  a refund or a partial capture reversal, that of its charge); ``columns.TransactionColumns`` builds this
  frame page by page from Stripe's SDK objects;
* ``payouts``: ``payout_id``, ``amount`` (Stripe units, positive), ``currency``;
* ``orders`` (the bridge's side, ISO minor units): ``order_key``, ``amount_minor``, ``currency``,
  ``fee_minor`` (the fee the bridge recorded for the order's charge, settlement minor units, or null);
* ``returns``: ``refund_id``, ``order_key``, ``amount_minor``, ``currency``;
* ``disputes``: ``dispute_id``, ``order_key``;
* ``booked`` (optional): ``ref``, ``gross_minor``, ``fee_minor``: what other documents of the bridge (the
  order flow's Payment Entry, the refund flow's Pay entry, the dispute flow's journals) already posted for
  a transaction, settlement ISO minor units, ``gross_minor`` signed like ``amount``.

Rules (``rules.py`` holds them as data; docs/reference/reconciliation.md states them for people):

0. the input is refused (``MappingError``, ``checks.py``) on an unknown currency, a rate that is not plain
   decimal text, or a Stripe amount with no exact ISO minor-unit value: nothing is guessed or rounded;
1. each transaction gets a category from its type and reporting category, then the first exception kind
   that applies, or none (matched): its payout must have been passed in (``unknown_payout``) and be in
   its currency (``payout_currency_mismatch``); a charge needs a known order in the same currency, and
   the charges of one order (by id, each counted with its partial capture reversals) pay it while their
   running sum stays within the order amount, the last bringing it exactly to it (the charges after are
   ``duplicate_charge``; charges that overshoot or stay below it are ``amount_mismatch``) and, when the
   bridge recorded one, their fees are that fee; a partial capture reversal follows its charge (same
   ``source_id``); a refund needs a known return of its own order (when ``order_key`` is known) with the
   same currency and amount; a dispute line needs a known dispute; the payout's own line must be minus
   the payout amount; an unknown type is an exception; every line needs ``net = amount - fee``;
2. journal lines per payout, signed minor units of the settlement currency (+ debit, - credit), each
   referencing its transaction, less what ``booked`` says was posted elsewhere (G gross, F fee):
   ``clearing net - (G - F)``; the counter account (receivable, refunds, disputes, fees, adjustments;
   **suspense** for an exception, visible and tied to it, never a silent plug) ``-(net + fee - fx - G)``
   (that is ``-(amount - fx - G)``; when ``net`` is not ``amount - fee``, the line is an exception and the
   difference stays on suspense with it); ``fx -fx`` (see the FX rule in ``rules.py``); ``fees``
   (``dispute_fees`` for disputes) ``fee - F``; and for the payout ``bank +P`` and ``clearing -P``. Zero
   lines are dropped. Every transaction's lines sum to zero, so every journal balances by construction,
   and the proof checks it anyway;
3. proof per payout: the transactions' net sums to the payout amount (else ``payout_mismatch``), the
   clearing account over all documents is zero (``booked_clearing + clearing_balance == 0``), the journal
   balances; the payout is ``closed`` when all three hold and it has no exception. A payout named by
   transactions but not passed in gets a proof row too (``payout_amount`` null, never closed);
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

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES, minor_digits
from commerce_bridge.reconcile.checks import check_inputs
from commerce_bridge.reconcile.matching import match_charges
from commerce_bridge.reconcile.reference import Summary
from commerce_bridge.reconcile.rules import (
    CATEGORIES,
    CHARGE_TYPES,
    COUNTER_ROLE,
    DISPUTE_CATEGORIES,
    EXCEPTION_KINDS,
    FEE_TYPES,
    PARTIAL_CAPTURE,
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
BOOKED_SCHEMA: dict[str, Any] = {"ref": pl.String, "gross_minor": pl.Int64, "fee_minor": pl.Int64}

_ENGINE: Any = "auto"
"""polars' choice of engine; the streaming engine was measured no leaner here (docs/performance.md)."""
KIND_ENUM = pl.Enum(list(EXCEPTION_KINDS))
ROLES = ("clearing", "bank", "receivable", "fees", "dispute_fees", "refunds", "disputes", "fx", "adjustments",
         "suspense")


@dataclass(frozen=True)
class Inputs:
    """The five input frames (schemas above), and optionally what other documents already booked.

    ``booked`` (``BOOKED_SCHEMA``): ``ref`` (transaction id), ``gross_minor`` (what other documents already
    posted on the counter account for it, signed like ``amount``, settlement ISO minor units) and
    ``fee_minor`` (the fee they already posted); several rows per ref are summed; refs that are not a
    transaction of the set (or are a payout's own line) are ignored.
    """

    transactions: pl.DataFrame
    payouts: pl.DataFrame
    orders: pl.DataFrame
    returns: pl.DataFrame
    disputes: pl.DataFrame
    booked: pl.DataFrame | None = None


def frames_from_records(transactions: Iterable[Mapping[str, Any]], payouts: Iterable[Mapping[str, Any]],
                        orders: Iterable[Mapping[str, Any]], returns: Iterable[Mapping[str, Any]],
                        disputes: Iterable[Mapping[str, Any]],
                        booked: Iterable[Mapping[str, Any]] | None = None) -> Inputs:
    """Build ``Inputs`` from dict records (missing keys are null); ``booked`` None means nothing booked."""
    def frame(rows: Iterable[Mapping[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
        listed = rows if isinstance(rows, list) else list(rows)
        return pl.DataFrame({k: [r.get(k) for r in listed] for k in schema}, schema=schema)
    return Inputs(frame(transactions, TRANSACTION_SCHEMA), frame(payouts, PAYOUT_SCHEMA),
                  frame(orders, ORDER_SCHEMA), frame(returns, RETURN_SCHEMA), frame(disputes, DISPUTE_SCHEMA),
                  None if booked is None else frame(booked, BOOKED_SCHEMA))


@dataclass(frozen=True)
class Result:
    """What the job produced.

    ``lines``: one row per transaction (category, ``kind`` null when matched, ISO amounts, ``fx_minor``,
    ``charged_minor`` (a charge: its order's charges together, reversals included), ``booked_gross_minor``
    and ``booked_fee_minor`` (from ``booked``, 0 when none)).
    ``exceptions``: kind, ref, payout_id, reason, suggested_fix, amount_minor, currency, expected_minor,
    expected_currency. ``journal``: payout_id, role, account, ref, amount_minor (+ debit), currency.
    ``proof``: per payout (passed in, or named by a transaction but not passed in: ``payout_amount`` null):
    payout_amount, net_sum, matched_net, exception_net, booked_clearing, clearing_balance, journal_balance,
    exceptions, sum_ok, clearing_zero (``booked_clearing + clearing_balance == 0``), balanced, closed.
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
        out.booked_clearing = {p: v for p, v in self.proof.select("payout_id", "booked_clearing").iter_rows() if v}
        return out


def _factor_frame() -> pl.DataFrame:
    table = unit_factors()
    codes = sorted(table)
    return pl.DataFrame({"code": codes, "mul": [table[c][0] for c in codes], "div": [table[c][1] for c in codes],
                         "digits": [minor_digits(c) for c in codes]},
                        schema={"code": pl.String, "mul": pl.Int64, "div": pl.Int64, "digits": pl.Int32})


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


def reconcile(inputs: Inputs, accounts: LedgerAccounts | None = None, *,
              booked: pl.DataFrame | Iterable[Mapping[str, Any]] | None = None) -> Result:
    """Match every transaction, compute the per-payout journals and their proof (see the module docstring).

    Parameters
    ----------
    inputs
        The input frames; ``inputs.booked`` (optional) says what other documents already posted.
    accounts
        The ERP accounts of the journal (defaults: ``LedgerAccounts()``).
    booked
        More booked rows (``BOOKED_SCHEMA``), as a frame or as dicts; added to ``inputs.booked``.

    Raises
    ------
    MappingError
        An unknown currency code, an exchange rate that is not a plain decimal, or a Stripe amount with no
        exact ISO minor-unit value (the message names the transaction or payout, field, amount, currency).
    """
    factors = _factor_frame()
    check_inputs(inputs, factors)
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
    returns = inputs.returns.select(source_id="refund_id", r_order="order_key", r_amount="amount_minor",
                                    r_cur=_codes("currency", ids), r_found=pl.lit(True))
    disputes = inputs.disputes.select(source_id="dispute_id", d_found=pl.lit(True)).unique("source_id")
    payouts = inputs.payouts.select("payout_id", p_cur=_codes("currency", ids), amount="amount").with_columns(
        p_minor=units("amount", "p_cur"), p_found=pl.lit(True)).drop("amount")
    booked_rows = _booked_frame(inputs.booked, booked).group_by("ref").agg(
        b_gross=pl.col("gross_minor").fill_null(0).sum(), b_fee=pl.col("fee_minor").fill_null(0).sum())
    tx = inputs.transactions
    t = pl.concat([
        tx.select("id", "payout_id", "type", "reporting_category", "amount", "fee", "net", "exchange_rate",
                  "order_key", "source_id", cur=_codes("currency", ids),
                  src_cur=_codes(pl.coalesce("source_currency", "currency"), ids),
                  src_amount=pl.coalesce("source_amount", "amount").abs()),
        _lookup(tx.select("order_key"), orders, "order_key"),
        _lookup(tx.select("source_id"), returns, "source_id"),
        _lookup(tx.select("source_id"), disputes, "source_id"),
        _lookup(tx.select("payout_id"), payouts, "payout_id"),
        _lookup(tx.select(ref=pl.col("id")), booked_rows, "ref"),
    ], how="horizontal").lazy()
    typ, rc = pl.col("type"), pl.col("reporting_category")
    category = (pl.when(rc.is_in(list(DISPUTE_CATEGORIES))).then(pl.lit("dispute"))
                .when((rc == PARTIAL_CAPTURE) | (typ == PARTIAL_CAPTURE)).then(pl.lit("partial_capture"))
                .when(typ.is_in(list(CHARGE_TYPES))).then(pl.lit("charge"))
                .when(typ.is_in(list(REFUND_TYPES))).then(pl.lit("refund"))
                .when(typ.is_in(list(FEE_TYPES))).then(pl.lit("fee"))
                .when(typ == PAYOUT_TYPE).then(pl.lit("payout"))
                .when(typ.is_in(list(STRIPE_TYPES))).then(pl.lit("other"))
                .otherwise(pl.lit("unknown"))).cast(pl.Enum(CATEGORIES))
    base = t.with_columns(
        category=category,
        amount_minor=units("amount", "cur"), fee_minor=units("fee", "cur"), net_minor=units("net", "cur"),
        src_minor=units("src_amount", "src_cur"),
        o_found=pl.col("o_found").fill_null(False), r_found=pl.col("r_found").fill_null(False),
        d_found=pl.col("d_found").fill_null(False), p_found=pl.col("p_found").fill_null(False),
        b_gross=pl.col("b_gross").fill_null(0), b_fee=pl.col("b_fee").fill_null(0),
    ).with_row_index("_row").collect(engine=_ENGINE)
    base = match_charges(base, engine=_ENGINE)
    cat = pl.col("category")
    charge, refund, reversal = cat == "charge", cat == "refund", cat == "partial_capture"
    mk, ck = pl.col("match_kind"), pl.col("c_kind")
    kind = (pl.when(~pl.col("p_found")).then(pl.lit("unknown_payout"))
            .when(pl.col("cur") != pl.col("p_cur")).then(pl.lit("payout_currency_mismatch"))
            .when(charge & mk.is_not_null()).then(mk)
            .when(reversal & ~pl.col("c_found")).then(pl.lit("reversal_without_charge"))
            .when(reversal & ck.is_not_null()).then(ck)
            .when(refund & ~pl.col("r_found")).then(pl.lit("refund_without_return"))
            .when(refund & (pl.col("order_key") != pl.col("r_order"))).then(pl.lit("refund_order_mismatch"))
            .when(refund & (pl.col("src_cur") != pl.col("r_cur"))).then(pl.lit("currency_mismatch"))
            .when(refund & (pl.col("src_minor") != pl.col("r_amount"))).then(pl.lit("amount_mismatch"))
            .when((cat == "dispute") & ~pl.col("d_found")).then(pl.lit("dispute_without_record"))
            .when((cat == "payout") & (-pl.col("p_minor") != pl.col("amount_minor"))).then(pl.lit("payout_mismatch"))
            .when(cat == "unknown").then(pl.lit("unknown_type"))
            .when(pl.col("net") != pl.col("amount") - pl.col("fee")).then(pl.lit("fee_mismatch")))
    t = base.lazy().with_columns(kind=kind.cast(KIND_ENUM))
    is_fx = (pl.col("kind").is_null() & (charge | refund) & pl.col("exchange_rate").is_not_null()
             & (pl.col("src_cur") != pl.col("cur")))
    parts = pl.col("exchange_rate").str.split_exact(".", 1)
    rate = (parts.struct.field("field_0") + parts.struct.field("field_1").fill_null("")
            .str.pad_end(RATE_DECIMALS, "0")).cast(pl.Int64)
    expected = _half_even_convert(pl.col("src_minor"), rate,
                                  pl.col("src_cur").replace_strict(digits, return_dtype=pl.Int32),
                                  pl.col("cur").replace_strict(digits, return_dtype=pl.Int32))
    signed_expected = pl.when(pl.col("amount_minor") >= 0).then(expected).otherwise(-expected)
    base = t.collect(engine=_ENGINE)
    fx = (base.lazy().filter(is_fx).select("_row", fx_minor=pl.col("amount_minor") - signed_expected)
          .collect(engine=_ENGINE))
    t = (base.lazy().join(fx.lazy(), on="_row", how="left", maintain_order="left")
         .with_columns(pl.col("fx_minor").fill_null(0)))
    as_code = {i: c for i, c in enumerate(codes)}
    payout_side = pl.col("kind").is_in(["unknown_payout", "payout_currency_mismatch"])
    lines = t.select("id", "payout_id", "type", "category", "kind", "amount_minor", "fee_minor", "net_minor",
                     "fx_minor", currency=pl.col("cur").replace_strict(as_code, return_dtype=currency_enum),
                     expected_minor=pl.when(payout_side).then(None).when(charge).then("o_amount")
                     .when(refund).then("r_amount"),
                     expected_currency=pl.when(pl.col("kind") == "payout_currency_mismatch").then("p_cur")
                     .when(payout_side).then(None).when(charge).then("o_cur").when(refund).then("r_cur")
                     .replace_strict(as_code, default=None, return_dtype=currency_enum),
                     src_minor="src_minor",
                     src_currency=pl.col("src_cur").replace_strict(as_code, return_dtype=currency_enum),
                     order_key="order_key", charged_minor="charged_minor", booked_gross_minor="b_gross",
                     booked_fee_minor="b_fee").collect(engine=_ENGINE)
    journal, proof = _journal_and_proof(lines, payouts, names, as_code, currency_enum)
    exceptions = _exceptions(lines, proof, inputs.orders)
    return Result(lines=lines, exceptions=exceptions, journal=journal, proof=proof)


def _booked_frame(*parts: pl.DataFrame | Iterable[Mapping[str, Any]] | None) -> pl.DataFrame:
    """The booked rows of all ``parts`` as one frame with ``BOOKED_SCHEMA`` (empty when there are none)."""
    frames = [pl.DataFrame(schema=BOOKED_SCHEMA)]
    for part in parts:
        if isinstance(part, pl.DataFrame):
            frames.append(part.select(*(pl.col(k).cast(v) for k, v in BOOKED_SCHEMA.items())))
        elif part is not None:
            rows = list(part)
            frames.append(pl.DataFrame({k: [r.get(k) for r in rows] for k in BOOKED_SCHEMA}, schema=BOOKED_SCHEMA))
    return pl.concat(frames)


def _journal_and_proof(lines: pl.DataFrame, payouts: pl.DataFrame, names: dict[str, str],
                       as_code: dict[int, str], currency_enum: pl.Enum) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The journal lines (what is left to post after ``booked``) and the proof per payout."""
    body = lines.lazy().filter(pl.col("category") != "payout")
    role_enum = pl.Enum(ROLES)
    counter = (pl.when(pl.col("kind").is_not_null()).then(pl.lit("suspense"))
               .otherwise(pl.col("category").cast(pl.String)
                          .replace_strict(dict(COUNTER_ROLE), default="adjustments"))).cast(role_enum)
    fee_role = (pl.when(pl.col("category") == "dispute").then(pl.lit("dispute_fees"))
                .otherwise(pl.lit("fees"))).cast(role_enum)
    pay = payouts.lazy().select("payout_id", "p_minor",
                                currency=pl.col("p_cur").replace_strict(as_code, return_dtype=currency_enum))
    gross, bfee = pl.col("booked_gross_minor"), pl.col("booked_fee_minor")
    cols = ("payout_id", "role", "ref", "amount_minor", "currency")
    journal_lf = pl.concat([
        body.select("payout_id", role=pl.lit("clearing", role_enum), ref="id",
                    amount_minor=pl.col("net_minor") - (gross - bfee), currency="currency"),
        body.select("payout_id", role=counter, ref="id",
                    amount_minor=-(pl.col("net_minor") + pl.col("fee_minor") - pl.col("fx_minor") - gross),
                    currency="currency"),
        body.select("payout_id", role=pl.lit("fx", role_enum), ref="id", amount_minor=-pl.col("fx_minor"),
                    currency="currency"),
        body.select("payout_id", role=fee_role, ref="id", amount_minor=pl.col("fee_minor") - bfee,
                    currency="currency"),
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
        booked_clearing=(gross - bfee).sum(),
    )
    row_exc = lines.lazy().filter(pl.col("kind").is_not_null()).group_by("payout_id").agg(row_exceptions=pl.len())
    balances = journal_lf.group_by("payout_id").agg(
        clearing_balance=pl.col("amount_minor").filter(pl.col("role") == "clearing").sum(),
        journal_balance=pl.col("amount_minor").sum())
    unknown = (lines.lazy().filter(pl.col("payout_id").is_not_null()).select("payout_id").unique()
               .join(pay, on="payout_id", how="anti").select("payout_id", p_minor=pl.lit(None, pl.Int64)))
    counts = ("net_sum", "matched_net", "exception_net", "booked_clearing", "clearing_balance", "journal_balance",
              "row_exceptions")
    journal, proof_raw = pl.collect_all(engine=_ENGINE, lazy_frames=[
        journal_lf.select("payout_id", "role", "account", "ref", "amount_minor", "currency"),
        pl.concat([pay.select("payout_id", "p_minor"), unknown])
        .join(per_payout, on="payout_id", how="left").join(balances, on="payout_id", how="left")
        .join(row_exc, on="payout_id", how="left").with_columns(pl.col(*counts).fill_null(0)),
    ])
    proof = proof_raw.rename({"p_minor": "payout_amount"}).with_columns(
        sum_ok=(pl.col("net_sum") == pl.col("payout_amount")).fill_null(False),
        clearing_zero=pl.col("booked_clearing") + pl.col("clearing_balance") == 0,
        balanced=pl.col("journal_balance") == 0,
    ).with_columns(
        exceptions=pl.col("row_exceptions")
        + (~pl.col("sum_ok") & pl.col("payout_amount").is_not_null()).cast(pl.UInt32),
    ).with_columns(
        closed=pl.col("sum_ok") & pl.col("clearing_zero") & pl.col("balanced") & (pl.col("exceptions") == 0),
    ).select("payout_id", "payout_amount", "net_sum", "matched_net", "exception_net", "booked_clearing",
             "clearing_balance", "journal_balance", "exceptions", "sum_ok", "clearing_zero", "balanced",
             "closed").sort("payout_id")
    return journal, proof


EXCEPTION_COLUMNS = ("kind", "ref", "payout_id", "reason", "suggested_fix", "amount_minor", "currency",
                     "expected_minor", "expected_currency")


def _exceptions(lines: pl.DataFrame, proof: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
    meaning = {k: v.meaning for k, v in EXCEPTION_KINDS.items()}
    fixes = {k: v.suggested_fix for k, v in EXCEPTION_KINDS.items()}
    rows = lines.filter(pl.col("kind").is_not_null()).with_columns(
        pl.col("kind", "currency", "expected_currency", "src_currency").cast(pl.String)).select(
        "kind", ref="id", payout_id="payout_id",
        reason=pl.concat_str(
            pl.format("{}: {} {} {}", pl.col("kind").replace_strict(meaning), "type",
                      _decimal_text("amount_minor", "currency"), "currency"),
            pl.when(pl.col("src_currency") != pl.col("currency"))
            .then(pl.format(" (charged {} {})", _decimal_text("src_minor", "src_currency"), "src_currency"))
            .otherwise(pl.lit("")),
            pl.when(pl.col("expected_minor").is_not_null())
            .then(pl.format("; expected {} {}", _decimal_text("expected_minor", "expected_currency"),
                            "expected_currency"))
            .otherwise(pl.lit("")),
            _reason_detail()),
        suggested_fix=pl.col("kind").replace_strict(fixes),
        amount_minor="amount_minor", currency="currency",
        expected_minor=pl.when(pl.col("kind") == "payout_mismatch").then(None).otherwise("expected_minor"),
        expected_currency="expected_currency")
    payout_rows = proof.filter(~pl.col("sum_ok") & pl.col("payout_amount").is_not_null()).select(
        kind=pl.lit("payout_mismatch"), ref="payout_id", payout_id="payout_id",
        reason=pl.format("the payout's transactions net {} but the payout is {} (minor units)", "net_sum",
                         "payout_amount"),
        suggested_fix=pl.lit(fixes["payout_mismatch"]), amount_minor="net_sum",
        currency=pl.lit(None, pl.String), expected_minor="payout_amount",
        expected_currency=pl.lit(None, pl.String))
    charged = lines.filter((pl.col("category") == "charge") & pl.col("order_key").is_not_null()).select("order_key")
    unpaid = orders.join(charged.unique(), on="order_key", how="anti").select(
        kind=pl.lit("order_without_charge"), ref="order_key", payout_id=pl.lit(None, pl.String),
        reason=pl.format("{}: order {} of {} {}", pl.lit(meaning["order_without_charge"]), "order_key",
                         _decimal_text("amount_minor", "currency"), "currency"),
        suggested_fix=pl.lit(fixes["order_without_charge"]), amount_minor=pl.lit(None, pl.Int64),
        currency=pl.lit(None, pl.String), expected_minor="amount_minor", expected_currency="currency")
    return pl.concat([rows, payout_rows, unpaid], how="vertical_relaxed").select(*EXCEPTION_COLUMNS)


def _decimal_text(minor: str, currency: str) -> pl.Expr:
    """ISO minor units as decimal text with the currency's own decimals (1000 USD -> 10.00, 1500 JPY -> 1500)."""
    digits = pl.col(currency).cast(pl.String).str.to_uppercase().replace_strict(
        _DIGITS, default=2, return_dtype=pl.Int64)
    scale = pl.lit(10, pl.Int64).pow(digits)
    value = pl.col(minor).cast(pl.Int64)
    whole = (value.abs() // scale).cast(pl.String)
    frac = (value.abs() % scale + scale).cast(pl.String).str.slice(1)  # 10**d + f: "1" then f in d digits
    sign = pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    text = pl.when(digits == 0).then(whole).otherwise(pl.concat_str(whole, pl.lit("."), frac))
    return pl.when(value.is_null()).then(pl.lit("-")).otherwise(pl.concat_str(sign, text))


_DIGITS = {code: minor_digits(code) for code in SUPPORTED_CURRENCIES}


def _reason_detail() -> pl.Expr:
    """The numbers a kind needs beyond amount and expected amount (split charges, the payout's side)."""
    kind = pl.col("kind")
    return (pl.when(kind == "unknown_payout")
            .then(pl.format("; payout {} was not passed in", pl.col("payout_id").fill_null("(none)")))
            .when(kind == "payout_currency_mismatch").then(pl.lit("; the payout's currency is expected"))
            .when(pl.col("charged_minor").is_not_null() & kind.is_not_null())
            .then(pl.format("; the order's charges total {} {}", _decimal_text("charged_minor", "src_currency"),
                            "src_currency"))
            .otherwise(pl.lit("")))
