"""Matching charges to orders in the columnar job: split payments and partial captures (see ``match_charges``).

The row-by-row reference does the same in ``reference._match_charges``.
"""

from __future__ import annotations

import polars as pl


def match_charges(base: pl.LazyFrame, *, reversals: bool) -> pl.LazyFrame:
    """Add ``match_kind`` and ``charged_minor`` (charges), ``c_found`` and ``c_kind`` (partial capture reversals).

    A charge's amount counts with its partial capture reversals (same ``source_id``; only those settled in
    the charge's own currency). The charges of one order in its currency, by id, pay it while their running
    sum stays within the order amount: the first prefix that reaches the amount is matched when it reaches
    it exactly (else ``amount_mismatch``), the charges after it are ``duplicate_charge``; charges that stay
    below it are ``amount_mismatch``. The recorded fee is compared with the fees of the paying charges.
    Orders with one charge (nearly all) skip the sort and the running sums.

    ``base`` is the job's frame of transactions (``_row``, ``id``, ``category``, ``order_key``,
    ``source_id``, ``cur``, ``src_cur``, ``amount_minor``, ``fee_minor``, ``src_minor``, and the order's
    ``o_found``, ``o_cur``, ``o_amount``, ``o_fee``); the result is ``base`` with the four columns added, as
    a plan (nothing is collected here). ``reversals`` False says that ``base`` has no partial capture
    reversal (the caller knows it from the input's columns without a pass), so their joins are left out;
    True is always correct. ``c_found`` and ``c_kind`` are only meaningful on reversal rows.
    """
    cat = pl.col("category")
    charges = (base.filter((cat == "charge") & pl.col("o_found") & (pl.col("src_cur") == pl.col("o_cur")))
               .select("_row", "id", "order_key", "source_id", "o_amount", "o_fee", "fee_minor", "src_minor"))
    rev = base.filter(cat == "partial_capture").group_by("source_id").agg(
        rev_minor=pl.when(pl.col("cur") == pl.col("src_cur")).then(pl.col("amount_minor")).otherwise(0).sum())
    if reversals:
        charges = charges.join(rev, on="source_id", how="left").with_columns(
            eff=pl.col("src_minor") + pl.col("rev_minor").fill_null(0))
    else:
        charges = charges.with_columns(eff=pl.col("src_minor"))
    charges = charges.with_columns(shared=pl.col("order_key").is_duplicated()).cache()
    single = charges.filter(~pl.col("shared")).select("_row", charged_minor="eff", group_kind=(
        pl.when(pl.col("eff") != pl.col("o_amount")).then(pl.lit("amount_mismatch"))
        .when(pl.col("o_fee").is_not_null() & (pl.col("fee_minor") != pl.col("o_fee"))).then(pl.lit("fee_mismatch"))))
    idx, reached = pl.col("idx"), pl.col("reached")
    several = (charges.filter(pl.col("shared")).sort("id")
               .with_columns(cum=pl.col("eff").cum_sum().over("order_key"),
                             fee_cum=pl.col("fee_minor").cum_sum().over("order_key"),
                             idx=pl.int_range(pl.len()).over("order_key"),
                             charged_minor=pl.col("eff").sum().over("order_key"))
               .with_columns(reached=pl.col("cum") >= pl.col("o_amount"))
               .with_columns(k=idx.filter(reached).first().over("order_key"),
                             cum_k=pl.col("cum").filter(reached).first().over("order_key"),
                             fee_k=pl.col("fee_cum").filter(reached).first().over("order_key"))
               .select("_row", "charged_minor", group_kind=(
                   pl.when(pl.col("k").is_not_null() & (idx > pl.col("k"))).then(pl.lit("duplicate_charge"))
                   .when(pl.col("cum_k").is_null() | (pl.col("cum_k") != pl.col("o_amount")))
                   .then(pl.lit("amount_mismatch"))
                   .when(pl.col("o_fee").is_not_null() & (pl.col("fee_k") != pl.col("o_fee")))
                   .then(pl.lit("fee_mismatch")))))
    groups = pl.concat([single, several])
    narrow = (base.select("_row", "category", "o_found", "src_cur", "o_cur", "source_id", "id")
              .join(groups, on="_row", how="left", maintain_order="left")
              .with_columns(match_kind=pl.when(cat != "charge").then(None)
                            .when(~pl.col("o_found")).then(pl.lit("charge_without_order"))
                            .when(pl.col("src_cur") != pl.col("o_cur")).then(pl.lit("currency_mismatch"))
                            .otherwise(pl.col("group_kind"))))
    if reversals:
        narrow = narrow.cache()
        # only the charges a reversal names: without any, this is an empty frame, not a sort of every charge
        charge_of = (narrow.filter((cat == "charge") & pl.col("source_id").is_not_null())
                     .join(rev.select("source_id"), on="source_id", how="semi").sort("id")
                     .unique("source_id", keep="first", maintain_order=True)
                     .select("source_id", c_kind="match_kind", c_found=pl.lit(True)))
        narrow = (narrow.join(charge_of, on="source_id", how="left", maintain_order="left")
                  .with_columns(pl.col("c_found").fill_null(False)))
    else:
        narrow = narrow.with_columns(c_kind=pl.lit(None, pl.String), c_found=pl.lit(False))
    return pl.concat([base, narrow.select("match_kind", "charged_minor", "c_kind", "c_found")], how="horizontal")
