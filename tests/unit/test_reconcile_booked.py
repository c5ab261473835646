"""Booked elsewhere: the payout journal posts only what the order, refund and dispute flows have not posted,
and ``journal_by_account`` sums a payout's journal into the lines of one Journal Entry.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from commerce_bridge.reconcile import PostingLine, journal_by_account
from commerce_bridge.reconcile.job import Result, frames_from_records, reconcile
from commerce_bridge.reconcile.reference import Summary, reconcile_rows
from tests.support.reconcile import Case


def run(case: Case, booked: list[dict[str, Any]] | None) -> tuple[Result, Summary]:
    """The job's result with ``booked``, after checking that the loop agrees with it exactly."""
    result = reconcile(frames_from_records(case.transactions, case.payouts, case.orders, case.returns,
                                           case.disputes, booked))
    reference = reconcile_rows(case.transactions, case.payouts, case.orders, case.returns, case.disputes, booked)
    summary = result.summary()
    assert (summary.status, summary.exceptions, summary.journal, summary.proof, summary.booked_clearing) == (
        reference.status, reference.exceptions, reference.journal, reference.proof, reference.booked_clearing)
    return result, summary


def journal_of(result: Result, payout: str) -> dict[tuple[str, str], int]:
    rows = result.journal.filter(pl.col("payout_id") == payout).select("role", "ref", "amount_minor").iter_rows()
    return {(str(role), ref): amount for role, ref, amount in rows}


def proof_of(result: Result, payout: str) -> dict[str, Any]:
    return dict(result.proof.filter(pl.col("payout_id") == payout).row(0, named=True))


def test_a_charge_with_its_payment_entry_posts_only_its_fee_when_the_gross_is_booked() -> None:
    case = Case()
    ch = case.charge("po_1", 10000, 320, recorded_fee=320)
    case.payout("po_1")
    result, _ = run(case, [{"ref": ch, "gross_minor": 10000, "fee_minor": 0}])
    assert journal_of(result, "po_1") == {("clearing", ch): -320, ("fees", ch): 320,
                                          ("bank", "po_1"): 9680, ("clearing", "po_1"): -9680}
    proof = proof_of(result, "po_1")
    assert proof["booked_clearing"] == 10000 and proof["clearing_balance"] == -10000
    assert proof["clearing_zero"] and proof["closed"]


def test_a_refund_with_its_pay_entry_and_a_fully_booked_dispute_post_nothing_of_their_own() -> None:
    case = Case()
    ch = case.charge("po_1", 10000, 320)
    case.charge("po_1", 20000, 610)
    refund = case.txn("po_1", "refund", -2500, source_id="re_1", source_type="refund", source_amount=2500)
    case.returns.append({"refund_id": "re_1", "order_key": case.orders[0]["order_key"], "amount_minor": 2500,
                         "currency": "USD"})
    case.disputes.append({"dispute_id": "dp_1", "order_key": case.orders[0]["order_key"]})
    lost = case.txn("po_1", "adjustment", -8000, 1500, reporting_category="dispute", source_id="dp_1")
    case.payout("po_1")
    booked = [{"ref": ch, "gross_minor": 10000, "fee_minor": 0},
              {"ref": refund, "gross_minor": -2500, "fee_minor": None},
              {"ref": lost, "gross_minor": -8000, "fee_minor": 0},   # the dispute journal: amount ...
              {"ref": lost, "gross_minor": 0, "fee_minor": 1500}]    # ... and fee, summed per ref
    result, summary = run(case, booked)
    lines = journal_of(result, "po_1")
    assert not {ref for _, ref in lines} & {refund, lost}
    assert lines[("clearing", ch)] == -320
    assert summary.exceptions == set()
    proof = proof_of(result, "po_1")
    assert proof["booked_clearing"] == 10000 - 2500 - 9500
    assert proof["booked_clearing"] + proof["clearing_balance"] == 0 and proof["closed"]


def test_an_exception_that_nothing_booked_stays_on_suspense_beside_booked_lines() -> None:
    case = Case()
    ch = case.charge("po_1", 10000, 320)
    stray = case.charge("po_1", 4200, 150, order="")
    case.payout("po_1")
    result, summary = run(case, [{"ref": ch, "gross_minor": 10000, "fee_minor": 0}])
    assert {(k, r) for k, r, _ in summary.exceptions} == {("charge_without_order", stray)}
    lines = journal_of(result, "po_1")
    assert (lines[("clearing", stray)], lines[("suspense", stray)], lines[("fees", stray)]) == (4050, -4200, 150)
    proof = proof_of(result, "po_1")
    assert proof["clearing_zero"] and proof["balanced"] and not proof["closed"]


def test_a_fx_charge_with_its_payment_entry_keeps_its_fx_line() -> None:
    case = Case()
    ch = case.charge("po_1", 10845, 345, exchange_rate="1.084350", source_amount=10000, source_currency="eur")
    case.payout("po_1")
    result, _ = run(case, [{"ref": ch, "gross_minor": 10844, "fee_minor": 0}])
    assert journal_of(result, "po_1") == {("clearing", ch): 10500 - 10844, ("fx", ch): -1, ("fees", ch): 345,
                                          ("bank", "po_1"): 10500, ("clearing", "po_1"): -10500}
    assert proof_of(result, "po_1")["closed"]


def test_booked_refs_outside_the_set_are_ignored_and_no_booked_equals_none() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    case.txn("po_1", "stripe_fee", -250, reporting_category="fee")
    case.payout("po_1")
    plain, plain_summary = run(case, None)
    empty, empty_summary = run(case, [])
    elsewhere, _ = run(case, [{"ref": "txn_not_here", "gross_minor": 999, "fee_minor": 1}])
    assert plain.journal.equals(empty.journal) and plain.journal.equals(elsewhere.journal)
    assert plain.proof.equals(empty.proof) and plain.proof.equals(elsewhere.proof)
    assert plain_summary.booked_clearing == empty_summary.booked_clearing == {}
    assert plain.proof["booked_clearing"].to_list() == [0]


def test_the_journal_entry_of_a_payout_sums_its_lines_per_account() -> None:
    case = Case()
    a = case.charge("po_1", 10000, 320)
    b = case.charge("po_1", 5000, 175)
    fee = case.txn("po_1", "stripe_fee", -250, reporting_category="fee")
    case.payout("po_1")
    case.charge("po_2", 700, 50)
    case.payout("po_2")
    result, _ = run(case, [{"ref": a, "gross_minor": 10000, "fee_minor": 0}])
    lines = journal_by_account(result, "po_1")
    assert lines == [
        PostingLine("Bank", 14255, "USD", ("po_1",)),
        PostingLine("Debtors", -5000, "USD", (b,)),
        PostingLine("Stripe Clearing", -10000, "USD", tuple(sorted((a, b, fee, "po_1")))),
        PostingLine("Stripe Fees", 745, "USD", tuple(sorted((a, b, fee)))),
    ]
    assert sum(line.amount_minor for line in lines) == 0
    assert [line.account for line in lines] == sorted(line.account for line in lines)
    assert journal_by_account(result, "po_nowhere") == []


def test_a_fully_booked_dispute_leaves_only_the_payout_lines_and_an_empty_payout_gives_none() -> None:
    case = Case()
    case.disputes.append({"dispute_id": "dp_1", "order_key": "o"})
    lost = case.txn("po_1", "adjustment", -8000, 1500, reporting_category="dispute", source_id="dp_1")
    won = case.txn("po_1", "adjustment", 8000, reporting_category="dispute_reversal", source_id="dp_1")
    case.payouts.append({"payout_id": "po_1", "amount": -1500, "currency": "usd"})  # the fee, debited
    case.payouts.append({"payout_id": "po_2", "amount": 0, "currency": "usd"})  # nothing in it
    result, _ = run(case, [{"ref": lost, "gross_minor": -8000, "fee_minor": 1500},
                           {"ref": won, "gross_minor": 8000, "fee_minor": 0}])
    assert journal_by_account(result, "po_1") == [PostingLine("Bank", -1500, "USD", ("po_1",)),
                                                  PostingLine("Stripe Clearing", 1500, "USD", ("po_1",))]
    assert proof_of(result, "po_1")["closed"]
    assert journal_by_account(result, "po_2") == []


def test_booked_rows_may_be_given_to_reconcile_as_dicts_or_in_the_inputs() -> None:
    case = Case()
    ch = case.charge("po_1", 10000, 320)
    refund = case.txn("po_1", "refund", -2500, source_id="re_1", source_type="refund", source_amount=2500)
    case.returns.append({"refund_id": "re_1", "order_key": case.orders[0]["order_key"], "amount_minor": 2500,
                         "currency": "USD"})
    case.payout("po_1")
    rows = [{"ref": ch, "gross_minor": 10000, "fee_minor": 0}, {"ref": refund, "gross_minor": -2500, "fee_minor": 0}]
    in_inputs, _ = run(case, rows)
    plain = frames_from_records(case.transactions, case.payouts, case.orders, case.returns, case.disputes)
    as_dicts = reconcile(plain, booked=rows)
    split = reconcile(frames_from_records(case.transactions, case.payouts, case.orders, case.returns,
                                          case.disputes, rows[:1]), booked=pl.DataFrame(rows[1:]))
    for other in (as_dicts, split):
        assert other.journal.equals(in_inputs.journal) and other.proof.equals(in_inputs.proof)
