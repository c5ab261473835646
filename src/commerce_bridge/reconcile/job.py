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

from commerce_bridge.reconcile.checks import check_inputs
from commerce_bridge.reconcile.journal import journal_plans
from commerce_bridge.reconcile.matching import match_charges
from commerce_bridge.reconcile.reference import Summary
from commerce_bridge.reconcile.report import exception_rows, exception_sources
from commerce_bridge.reconcile.rules import (
    CATEGORIES,
    CHARGE_TYPES,
    DISPUTE_CATEGORIES,
    EXCEPTION_KINDS,
    FEE_TYPES,
    PARTIAL_CAPTURE,
    PAYOUT_TYPE,
    RATE_DECIMALS,
    REFUND_TYPES,
    STRIPE_TYPES,
    LedgerAccounts,
)
from commerce_bridge.reconcile.units import CurrencyTable, currency_table, half_even_stages

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

_ENGINE: Any = "in-memory"
"""polars' in-memory engine: "auto" chose the streaming engine for these plans (polars 2.1), which cost 2-3x
the CPU of a small payout's call and was slower on a million rows here (docs/performance.md)."""
KIND_ENUM = pl.Enum(list(EXCEPTION_KINDS))


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
    # Three collects whatever the size (plans, not eager frames: each eager operation is a collect of its
    # own, about 0.3-1 ms of CPU even on 30 rows): the checks, the lines, then the journal, proof and what the
    # exceptions are made of; a fourth only when there is an exception to word.
    table = currency_table()
    check_inputs(inputs, table, engine=_ENGINE)
    pay = inputs.payouts.lazy().select("payout_id", p_cur=table.index_of("currency"), amount="amount")
    pay = pay.with_columns(p_minor=_units("amount", "p_cur", table)).drop("amount")
    base = _base(inputs, pay, _booked_frame(inputs.booked, booked), table).cache()
    lines = _lines(base, table, reversals=_may_have_reversals(inputs.transactions),
                   fx=inputs.transactions.get_column("exchange_rate").null_count() < inputs.transactions.height,
                   ).collect(engine=_ENGINE)
    journal_plan, proof_plan = journal_plans(lines.lazy(), pay.select(
        "payout_id", "p_minor", currency=table.code_of("p_cur")), (accounts or LedgerAccounts()).by_role())
    journal, proof, flagged, unpaid = pl.collect_all(
        [journal_plan, proof_plan, *exception_sources(lines.lazy(), inputs.orders.lazy())], engine=_ENGINE)
    exceptions = exception_rows(flagged, unpaid, proof, engine=_ENGINE)
    return Result(lines=lines, exceptions=exceptions, journal=journal, proof=proof)


def _units(amount: str, currency: str, table: CurrencyTable) -> pl.Expr:
    """A Stripe amount column in ISO minor units of its currency (an index column)."""
    mul, div = table.factors_of(currency)
    return pl.col(amount) * mul // div


def _lookup(keys: pl.LazyFrame, table: pl.LazyFrame, on: str) -> pl.LazyFrame:
    """``table``'s other columns for each row of ``keys`` (left join on one narrow column, row order kept)."""
    return keys.join(table, on=on, how="left", maintain_order="left").drop(on)


def _base(inputs: Inputs, pay: pl.LazyFrame, booked: pl.LazyFrame, table: CurrencyTable) -> pl.LazyFrame:
    """Every transaction with its category, ISO amounts and what the bridge's side has for it (a plan).

    Each look-up joins one narrow key column, and the results sit side by side (a horizontal concat), so
    that no join carries the wide frame. The caller marks the plan ``cache()``: matching refers to it
    several times, and polars' common subplan elimination alone computed it twice.
    """
    orders = inputs.orders.lazy().select("order_key", o_amount="amount_minor", o_cur=table.index_of("currency"),
                                         o_fee="fee_minor", o_found=pl.lit(True))
    returns = inputs.returns.lazy().select(source_id="refund_id", r_order="order_key", r_amount="amount_minor",
                                           r_cur=table.index_of("currency"), r_found=pl.lit(True))
    disputes = inputs.disputes.lazy().select(source_id="dispute_id", d_found=pl.lit(True)).unique("source_id")
    booked_rows = booked.group_by("ref").agg(b_gross=pl.col("gross_minor").fill_null(0).sum(),
                                             b_fee=pl.col("fee_minor").fill_null(0).sum())
    tx = inputs.transactions.lazy()
    t = pl.concat([
        tx.select("id", "payout_id", "type", "reporting_category", "amount", "fee", "net", "exchange_rate",
                  "order_key", "source_id", cur=table.index_of("currency"),
                  src_cur=table.index_of(pl.coalesce("source_currency", "currency")),
                  src_amount=pl.coalesce("source_amount", "amount").abs()),
        _lookup(tx.select("order_key"), orders, "order_key"),
        _lookup(tx.select("source_id"), returns, "source_id"),
        _lookup(tx.select("source_id"), disputes, "source_id"),
        _lookup(tx.select("payout_id"), pay.with_columns(p_found=pl.lit(True)), "payout_id"),
        _lookup(tx.select(ref=pl.col("id")), booked_rows, "ref"),
    ], how="horizontal")
    base = t.with_columns(
        category=_CATEGORY,
        amount_minor=_units("amount", "cur", table), fee_minor=_units("fee", "cur", table),
        net_minor=_units("net", "cur", table), src_minor=_units("src_amount", "src_cur", table),
        o_found=pl.col("o_found").fill_null(False), r_found=pl.col("r_found").fill_null(False),
        d_found=pl.col("d_found").fill_null(False), p_found=pl.col("p_found").fill_null(False),
        b_gross=pl.col("b_gross").fill_null(0), b_fee=pl.col("b_fee").fill_null(0),
    ).with_row_index("_row")
    return base


def _lines(base: pl.LazyFrame, table: CurrencyTable, *, reversals: bool, fx: bool) -> pl.LazyFrame:
    """The plan of ``Result.lines``: ``base`` with each transaction's kind and FX line.

    ``reversals`` and ``fx`` False say that no transaction is a partial capture reversal or has an
    exchange rate (the caller reads it from the input's columns), so that their parts of the plan are left
    out (``fx_minor`` is then 0 everywhere, as the FX rule gives); True is always correct.
    """
    t = match_charges(base, reversals=reversals).with_columns(kind=_KIND.cast(KIND_ENUM))
    t = _with_fx(t, table) if fx else t.with_columns(fx_minor=pl.lit(0, pl.Int64))
    return t.select(
        "id", "payout_id", "type", "category", "kind", "amount_minor", "fee_minor", "net_minor", "fx_minor",
        currency=table.code_of("cur"),
        expected_minor=pl.when(_PAYOUT_SIDE).then(None).when(_CHARGE).then("o_amount").when(_REFUND).then("r_amount"),
        expected_currency=table.code_of(
            pl.when(pl.col("kind") == "payout_currency_mismatch").then("p_cur").when(_PAYOUT_SIDE).then(None)
            .when(_CHARGE).then("o_cur").when(_REFUND).then("r_cur")),
        src_minor="src_minor", src_currency=table.code_of("src_cur"), order_key="order_key",
        charged_minor="charged_minor", booked_gross_minor="b_gross", booked_fee_minor="b_fee")


def _may_have_reversals(transactions: pl.DataFrame) -> bool:
    """False when no transaction can be a partial capture reversal (Series operations: no plan, no collect)."""
    if not transactions.height:
        return False
    rc, typ = transactions.get_column("reporting_category"), transactions.get_column("type")
    return bool(((rc == PARTIAL_CAPTURE) | (typ == PARTIAL_CAPTURE)).any())


def _with_fx(t: pl.LazyFrame, table: CurrencyTable) -> pl.LazyFrame:
    """``t`` with ``fx_minor``: a matched charge or refund in another currency, ``amount`` less the bridge's
    conversion of its source amount (``rules.py``, FX rule); 0 for every other line.

    Computed on those lines only (a tenth of the charges in the benchmark's mix; 128-bit arithmetic on
    every line cost a third of a second per million) and joined back by row.
    """
    is_fx = (pl.col("kind").is_null() & (_CHARGE | _REFUND) & pl.col("exchange_rate").is_not_null()
             & (pl.col("src_cur") != pl.col("cur")))
    parts = pl.col("exchange_rate").str.split_exact(".", 1)
    fx = t.filter(is_fx).select(
        "_row", "amount_minor", "src_minor", _src_digits=table.digits_of("src_cur"),
        _dst_digits=table.digits_of("cur"),
        _rate=(parts.struct.field("field_0") + parts.struct.field("field_1").fill_null("")
               .str.pad_end(RATE_DECIMALS, "0")).cast(pl.Int64))
    for stage in half_even_stages("src_minor", "_rate", "_src_digits", "_dst_digits"):
        fx = fx.with_columns(**stage)
    expected = pl.col("_converted")
    fx = fx.select("_row", fx_minor=pl.col("amount_minor") - pl.when(pl.col("amount_minor") >= 0).then(expected)
                   .otherwise(-expected))
    return (t.join(fx, on="_row", how="left", maintain_order="left")
            .with_columns(pl.col("fx_minor").fill_null(0)))


_TYPE, _RC = pl.col("type"), pl.col("reporting_category")
_CATEGORY = (pl.when(_RC.is_in(list(DISPUTE_CATEGORIES))).then(pl.lit("dispute"))
             .when((_RC == PARTIAL_CAPTURE) | (_TYPE == PARTIAL_CAPTURE)).then(pl.lit("partial_capture"))
             .when(_TYPE.is_in(list(CHARGE_TYPES))).then(pl.lit("charge"))
             .when(_TYPE.is_in(list(REFUND_TYPES))).then(pl.lit("refund"))
             .when(_TYPE.is_in(list(FEE_TYPES))).then(pl.lit("fee"))
             .when(_TYPE == PAYOUT_TYPE).then(pl.lit("payout"))
             .when(_TYPE.is_in(list(STRIPE_TYPES))).then(pl.lit("other"))
             .otherwise(pl.lit("unknown"))).cast(pl.Enum(CATEGORIES))
_CAT = pl.col("category")
_CHARGE, _REFUND, _REVERSAL = _CAT == "charge", _CAT == "refund", _CAT == "partial_capture"
_PAYOUT_SIDE = pl.col("kind").is_in(["unknown_payout", "payout_currency_mismatch"])
_MK, _CK = pl.col("match_kind"), pl.col("c_kind")
_KIND = (pl.when(~pl.col("p_found")).then(pl.lit("unknown_payout"))
         .when(pl.col("cur") != pl.col("p_cur")).then(pl.lit("payout_currency_mismatch"))
         .when(_CHARGE & _MK.is_not_null()).then(_MK)
         .when(_REVERSAL & ~pl.col("c_found")).then(pl.lit("reversal_without_charge"))
         .when(_REVERSAL & _CK.is_not_null()).then(_CK)
         .when(_REFUND & ~pl.col("r_found")).then(pl.lit("refund_without_return"))
         .when(_REFUND & (pl.col("order_key") != pl.col("r_order"))).then(pl.lit("refund_order_mismatch"))
         .when(_REFUND & (pl.col("src_cur") != pl.col("r_cur"))).then(pl.lit("currency_mismatch"))
         .when(_REFUND & (pl.col("src_minor") != pl.col("r_amount"))).then(pl.lit("amount_mismatch"))
         .when((_CAT == "dispute") & ~pl.col("d_found")).then(pl.lit("dispute_without_record"))
         .when((_CAT == "payout") & (-pl.col("p_minor") != pl.col("amount_minor"))).then(pl.lit("payout_mismatch"))
         .when(_CAT == "unknown").then(pl.lit("unknown_type"))
         .when(pl.col("net") != pl.col("amount") - pl.col("fee")).then(pl.lit("fee_mismatch")))
"""The first exception kind that applies to a transaction (rules 1, in the order of ``EXCEPTION_KINDS``)."""


def _booked_frame(*parts: pl.DataFrame | Iterable[Mapping[str, Any]] | None) -> pl.LazyFrame:
    """The booked rows of all ``parts`` as one plan with ``BOOKED_SCHEMA`` (empty when there are none)."""
    frames = [pl.LazyFrame(schema=BOOKED_SCHEMA)]
    for part in parts:
        if isinstance(part, pl.DataFrame):
            frames.append(part.lazy().select(*(pl.col(k).cast(v) for k, v in BOOKED_SCHEMA.items())))
        elif part is not None:
            rows = list(part)
            frames.append(pl.LazyFrame({k: [r.get(k) for r in rows] for k in BOOKED_SCHEMA}, schema=BOOKED_SCHEMA))
    return pl.concat(frames)
