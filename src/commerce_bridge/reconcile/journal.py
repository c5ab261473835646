"""The journal lines and the proof per payout of the columnar job, as plans over its lines (``journal_plans``).

The rules are those of ``job.py``'s docstring (points 2 and 3); the row-by-row reference computes the
same in ``reference.py``.
"""

from __future__ import annotations

import polars as pl

from commerce_bridge.reconcile.rules import CATEGORIES, COUNTER_ROLE

ROLES = ("clearing", "bank", "receivable", "fees", "dispute_fees", "refunds", "disputes", "fx", "adjustments",
         "suspense")
ROLE_ENUM = pl.Enum(ROLES)
_COUNTER = pl.Series([COUNTER_ROLE.get(c, "adjustments") for c in CATEGORIES], dtype=ROLE_ENUM)
"""The counter role of a matched line, by category (``Enum(CATEGORIES)``'s physical value)."""
PROOF_COLUMNS = ("payout_id", "payout_amount", "net_sum", "matched_net", "exception_net", "booked_clearing",
                 "clearing_balance", "journal_balance", "exceptions", "sum_ok", "clearing_zero", "balanced",
                 "closed")


def journal_plans(lines: pl.LazyFrame, pay: pl.LazyFrame,
                  names: dict[str, str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The journal lines (what is left to post after ``booked``) and the proof per payout, as plans.

    ``lines`` is the job's ``Result.lines``; ``pay`` has one row per payout passed in: ``payout_id``,
    ``p_minor`` (its amount, ISO minor units) and ``currency``; ``names`` maps a role to its account.
    """
    body = lines.filter(pl.col("category") != "payout")
    counter = (pl.when(pl.col("kind").is_not_null()).then(pl.lit("suspense", ROLE_ENUM))
               .otherwise(pl.lit(_COUNTER).gather(pl.col("category").to_physical())))
    fee_role = (pl.when(pl.col("category") == "dispute").then(pl.lit("dispute_fees"))
                .otherwise(pl.lit("fees"))).cast(ROLE_ENUM)
    gross, bfee = pl.col("booked_gross_minor"), pl.col("booked_fee_minor")
    cols = ("payout_id", "role", "ref", "amount_minor", "currency")
    journal = pl.concat([
        body.select("payout_id", role=pl.lit("clearing", ROLE_ENUM), ref="id",
                    amount_minor=pl.col("net_minor") - (gross - bfee), currency="currency"),
        body.select("payout_id", role=counter, ref="id",
                    amount_minor=-(pl.col("net_minor") + pl.col("fee_minor") - pl.col("fx_minor") - gross),
                    currency="currency"),
        body.select("payout_id", role=pl.lit("fx", ROLE_ENUM), ref="id", amount_minor=-pl.col("fx_minor"),
                    currency="currency"),
        body.select("payout_id", role=fee_role, ref="id", amount_minor=pl.col("fee_minor") - bfee,
                    currency="currency"),
        pay.select("payout_id", role=pl.lit("bank", ROLE_ENUM), ref="payout_id", amount_minor="p_minor",
                   currency="currency"),
        pay.select("payout_id", role=pl.lit("clearing", ROLE_ENUM), ref="payout_id",
                   amount_minor=-pl.col("p_minor"), currency="currency"),
    ]).select(*cols).filter(pl.col("amount_minor") != 0)
    account_enum = pl.Enum(list(dict.fromkeys(names.values())))
    accounts = pl.Series([names[role] for role in ROLES], dtype=account_enum)
    journal = journal.with_columns(account=pl.lit(accounts).gather(pl.col("role").to_physical()))
    per_payout = body.group_by("payout_id").agg(
        net_sum=pl.col("net_minor").sum(),
        matched_net=pl.col("net_minor").filter(pl.col("kind").is_null()).sum(),
        exception_net=pl.col("net_minor").filter(pl.col("kind").is_not_null()).sum(),
        booked_clearing=(gross - bfee).sum(),
    )
    row_exc = lines.filter(pl.col("kind").is_not_null()).group_by("payout_id").agg(row_exceptions=pl.len())
    balances = journal.group_by("payout_id").agg(
        clearing_balance=pl.col("amount_minor").filter(pl.col("role") == "clearing").sum(),
        journal_balance=pl.col("amount_minor").sum())
    unknown = (lines.filter(pl.col("payout_id").is_not_null()).select("payout_id").unique()
               .join(pay, on="payout_id", how="anti").select("payout_id", p_minor=pl.lit(None, pl.Int64)))
    counts = ("net_sum", "matched_net", "exception_net", "booked_clearing", "clearing_balance", "journal_balance",
              "row_exceptions")
    proof = (pl.concat([pay.select("payout_id", "p_minor"), unknown])
             .join(per_payout, on="payout_id", how="left").join(balances, on="payout_id", how="left")
             .join(row_exc, on="payout_id", how="left").with_columns(pl.col(*counts).fill_null(0))
             .rename({"p_minor": "payout_amount"})
             .with_columns(sum_ok=(pl.col("net_sum") == pl.col("payout_amount")).fill_null(False),
                           clearing_zero=pl.col("booked_clearing") + pl.col("clearing_balance") == 0,
                           balanced=pl.col("journal_balance") == 0)
             .with_columns(exceptions=pl.col("row_exceptions")
                           + (~pl.col("sum_ok") & pl.col("payout_amount").is_not_null()).cast(pl.UInt32))
             .with_columns(closed=pl.col("sum_ok") & pl.col("clearing_zero") & pl.col("balanced")
                           & (pl.col("exceptions") == 0))
             .select(*PROOF_COLUMNS).sort("payout_id"))
    return journal.select("payout_id", "role", "account", "ref", "amount_minor", "currency"), proof
