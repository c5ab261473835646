"""A payout's journal summed per account: the lines of the one ERPNext Journal Entry posted per payout."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from commerce_bridge.reconcile.job import Result


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One Journal Entry line: ``amount_minor`` signed (+ debit, - credit) in ``currency``'s ISO minor units.

    ``refs`` are the ids of the transactions (and the payout, for the bank and payout clearing lines)
    whose journal lines the amount sums, sorted, so that the entry can name what it posts.
    """

    account: str
    amount_minor: int
    currency: str
    refs: tuple[str, ...]


def journal_by_account(result: Result, payout_id: str) -> list[PostingLine]:
    """The journal lines of ``payout_id`` summed per account (and currency), sorted by account.

    Accounts whose lines sum to zero are left out (a closed payout's clearing account nets to zero when
    nothing was booked elsewhere), so the lines still balance; a payout with nothing to post gives ``[]``.

    Parameters
    ----------
    result
        What ``reconcile`` returned.
    payout_id
        The payout whose Journal Entry is wanted (one that is not in ``result`` gives ``[]``).

    Returns
    -------
    list[PostingLine]
        One line per account with a non-zero sum.
    """
    rows = (result.journal.lazy().filter(pl.col("payout_id") == payout_id)
            .group_by(account=pl.col("account").cast(pl.String), currency=pl.col("currency").cast(pl.String))
            .agg(amount_minor=pl.col("amount_minor").sum(), refs=pl.col("ref").unique().sort())
            .filter(pl.col("amount_minor") != 0)
            .sort("account", "currency")
            .select("account", "currency", "amount_minor", "refs")
            .collect(engine="in-memory"))  # one plan: each eager step would be a collect of its own
    return [PostingLine(account=account, amount_minor=amount, currency=currency, refs=tuple(refs))
            for account, currency, amount, refs in rows.iter_rows()]
