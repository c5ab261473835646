"""Payout reconciliation, the rules added for the wiring: exact units, partial captures, split payments,
refunds of another order, payouts in another currency or not passed in, and every kind and category once.

Each case runs the columnar job and the row-by-row reference (``Case.run``) and checks they agree.
"""

from __future__ import annotations

import polars as pl
import pytest

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile import EXCEPTION_KINDS
from commerce_bridge.reconcile.job import frames_from_records, reconcile
from commerce_bridge.reconcile.reference import reconcile_rows
from commerce_bridge.reconcile.rules import CATEGORIES
from tests.support.reconcile import Case


def kinds(summary_exceptions: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return {(kind, ref) for kind, ref, _ in summary_exceptions}


def journal_of(result: pl.DataFrame, payout: str) -> dict[tuple[str, str], int]:
    rows = result.filter(pl.col("payout_id") == payout).select("role", "ref", "amount_minor").iter_rows()
    return {(str(role), ref): amount for role, ref, amount in rows}


def reason_of(result_exceptions: pl.DataFrame, ref: str) -> str:
    return str(result_exceptions.filter(pl.col("ref") == ref)["reason"].item())


def both_refuse(case: Case) -> list[MappingError]:
    """Run the job and the loop; both must refuse the input. Returns their errors."""
    errors = []
    with pytest.raises(MappingError) as job:
        reconcile(frames_from_records(case.transactions, case.payouts, case.orders, case.returns, case.disputes))
    errors.append(job.value)
    with pytest.raises(MappingError) as loop:
        reconcile_rows(case.transactions, case.payouts, case.orders, case.returns, case.disputes)
    errors.append(loop.value)
    return errors


# -- refuse, never round ----------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["amount", "fee", "net", "source_amount"])
def test_an_isk_amount_that_is_not_whole_kronur_is_refused_when_any_field_has_it(field: str) -> None:
    case = Case()
    values = {"amount": 50000, "fee": 1500, "net": 48500, "source_amount": 50000, field: 50050}
    case.txn("po_1", "charge", values["amount"], values["fee"], net=values["net"], currency="isk",
             order_key="ord_1", id="txn_odd", source_amount=values["source_amount"], source_currency="isk")
    case.payouts.append({"payout_id": "po_1", "amount": 48500, "currency": "isk"})
    for error in both_refuse(case):
        assert "txn_odd" in str(error) and field in str(error) and "50050 ISK" in str(error)
        assert error.suggested_fix and "txn_odd" in error.suggested_fix


def test_a_payout_amount_with_no_exact_minor_value_is_refused_by_the_job_and_the_loop() -> None:
    case = Case()
    case.charge("po_isk", 50000, 1500, currency="isk")
    case.payouts.append({"payout_id": "po_isk", "amount": 48501, "currency": "isk"})
    for error in both_refuse(case):
        assert "po_isk" in str(error) and "amount 48501 ISK" in str(error)


def test_whole_isk_amounts_are_accepted_and_divided_exactly() -> None:
    case = Case()
    ch = case.charge("po_isk", 50000, 1500, currency="isk")
    case.payout("po_isk", "isk")
    result, summary = case.run()
    assert summary.exceptions == set()
    assert journal_of(result.journal, "po_isk")[("clearing", ch)] == 485


# -- partial capture ------------------------------------------------------------------------------------

def _partial_capture(case: Case, payout: str, reversal_payout: str, *, authorised: int, captured: int,
                     order_amount: int, currency: str = "usd") -> tuple[str, str]:
    """A charge of ``authorised`` captured for ``captured`` as the emulator books it (charge_txn)."""
    key = f"ord_pc_{len(case.orders)}"
    charge_id = f"ch_pc_{len(case.orders)}"
    fee = captured * 29 // 1000 + 30
    ch = case.txn(payout, "charge", authorised, fee, currency=currency, source_id=charge_id,
                  source_type="charge", source_amount=authorised, source_currency=currency, order_key=key)
    rev = case.txn(reversal_payout, "adjustment", captured - authorised, currency=currency,
                   reporting_category="partial_capture_reversal", source_id=charge_id, source_type="charge",
                   source_amount=authorised, source_currency=currency, order_key=key)
    case.orders.append({"order_key": key, "amount_minor": order_amount, "currency": currency.upper(),
                        "fee_minor": fee})
    return ch, rev


def test_a_partial_capture_matches_its_order_when_charge_plus_reversal_is_the_order_amount() -> None:
    case = Case()
    ch, rev = _partial_capture(case, "po_1", "po_1", authorised=10000, captured=7000, order_amount=7000)
    case.payout("po_1")
    result, summary = case.run()
    assert summary.exceptions == set()
    assert summary.status[rev] == ("partial_capture", "")
    assert journal_of(result.journal, "po_1") == {
        ("clearing", ch): 10000 - 233, ("receivable", ch): -10000, ("fees", ch): 233,
        ("clearing", rev): -3000, ("receivable", rev): 3000,
        ("bank", "po_1"): 6767, ("clearing", "po_1"): -6767}
    assert result.proof["closed"].to_list() == [True]


def test_a_partial_capture_reversal_in_an_earlier_payout_still_belongs_to_its_charge() -> None:
    case = Case()
    case.charge("po_1", 20000, 610)
    _, rev = _partial_capture(case, "po_2", "po_1", authorised=5000, captured=4000, order_amount=4000)
    case.payout("po_1")
    case.payout("po_2")
    result, summary = case.run()
    assert summary.exceptions == set()
    assert journal_of(result.journal, "po_1")[("receivable", rev)] == 1000
    assert result.proof["closed"].to_list() == [True, True]


def test_a_partial_capture_follows_its_charge_when_the_charge_is_an_amount_mismatch() -> None:
    case = Case()
    ch, rev = _partial_capture(case, "po_1", "po_1", authorised=10000, captured=7000, order_amount=7500)
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("amount_mismatch", ch), ("amount_mismatch", rev)}
    assert "the order's charges total 70.00 USD" in reason_of(result.exceptions, ch)
    assert journal_of(result.journal, "po_1")[("suspense", rev)] == 3000


def test_a_partial_capture_reversal_is_an_exception_when_its_charge_is_not_in_the_set() -> None:
    case = Case()
    case.charge("po_1", 20000, 610)
    rev = case.txn("po_1", "adjustment", -500, reporting_category="partial_capture_reversal",
                   source_id="ch_elsewhere", source_amount=3000, source_currency="usd")
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("reversal_without_charge", rev)}


# -- split payments -----------------------------------------------------------------------------------------

def test_several_charges_pay_one_order_when_they_add_up_to_its_amount_and_one_more_is_a_duplicate() -> None:
    case = Case()
    case.orders.append({"order_key": "ord_s", "amount_minor": 5000, "currency": "USD", "fee_minor": 180})
    first = case.charge("po_1", 3000, 100, order="ord_s", id="txn_s1")
    second = case.charge("po_2", 2000, 80, order="ord_s", id="txn_s2")
    extra = case.charge("po_2", 2000, 80, order="ord_s", id="txn_s3")
    case.payout("po_1")
    case.payout("po_2")
    result, summary = case.run()
    assert summary.status[first] == summary.status[second] == ("charge", "")
    assert kinds(summary.exceptions) == {("duplicate_charge", extra)}
    assert "the order's charges total 70.00 USD" in reason_of(result.exceptions, extra)


def test_the_charges_of_an_order_are_amount_mismatches_when_together_they_stay_below_it() -> None:
    case = Case()
    case.orders.append({"order_key": "ord_s", "amount_minor": 5000, "currency": "USD", "fee_minor": None})
    a = case.charge("po_1", 3000, 100, order="ord_s", id="txn_s1")
    b = case.charge("po_1", 1500, 80, order="ord_s", id="txn_s2")
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("amount_mismatch", a), ("amount_mismatch", b)}
    reason = reason_of(result.exceptions, b)
    assert "charge 15.00 USD" in reason and "expected 50.00 USD" in reason and "charges total 45.00 USD" in reason


def test_a_charge_that_overshoots_the_order_is_an_amount_mismatch_not_a_match() -> None:
    case = Case()
    case.orders.append({"order_key": "ord_s", "amount_minor": 5000, "currency": "USD", "fee_minor": None})
    a = case.charge("po_1", 3000, 100, order="ord_s", id="txn_s1")
    b = case.charge("po_1", 2500, 80, order="ord_s", id="txn_s2")
    c = case.charge("po_1", 100, 30, order="ord_s", id="txn_s3")
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("amount_mismatch", a), ("amount_mismatch", b), ("duplicate_charge", c)}


def test_split_charges_are_a_fee_mismatch_when_their_fees_differ_from_the_recorded_fee() -> None:
    case = Case()
    case.orders.append({"order_key": "ord_s", "amount_minor": 5000, "currency": "USD", "fee_minor": 181})
    a = case.charge("po_1", 3000, 100, order="ord_s", id="txn_s1")
    b = case.charge("po_1", 2000, 80, order="ord_s", id="txn_s2")
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("fee_mismatch", a), ("fee_mismatch", b)}


# -- refunds of another order, payouts ---------------------------------------------------------------------

def test_a_refund_is_a_refund_order_mismatch_when_its_order_is_not_its_returns_order() -> None:
    case = Case()
    case.charge("po_1", 10000, 320, order="ord_a")
    case.orders.append({"order_key": "ord_a", "amount_minor": 10000, "currency": "USD", "fee_minor": None})
    wrong = case.txn("po_1", "refund", -1000, source_id="re_1", source_type="refund", source_amount=1000,
                     order_key="ord_a")
    right = case.txn("po_1", "refund", -500, source_id="re_2", source_type="refund", source_amount=500,
                     order_key="ord_a")
    case.returns += [{"refund_id": "re_1", "order_key": "ord_b", "amount_minor": 1000, "currency": "USD"},
                     {"refund_id": "re_2", "order_key": "ord_a", "amount_minor": 500, "currency": "USD"}]
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("refund_order_mismatch", wrong)}
    assert summary.status[right] == ("refund", "")


def test_a_transaction_in_another_currency_than_its_payout_is_a_payout_currency_mismatch() -> None:
    case = Case()
    usd = case.charge("po_1", 10000, 320)
    eur = case.charge("po_1", 5000, 175, currency="eur")
    case.payout("po_1", "usd")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("payout_currency_mismatch", eur)}
    assert summary.status[usd] == ("charge", "")
    row = result.exceptions.filter(pl.col("ref") == eur).row(0, named=True)
    assert row["expected_currency"] == "USD" and row["currency"] == "EUR"
    assert not result.proof["closed"].item()


def test_transactions_of_a_payout_not_passed_in_are_exceptions_with_a_proof_row_of_their_own() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    stray = case.charge("po_later", 3000, 100)
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("unknown_payout", stray)}
    assert "payout po_later was not passed in" in reason_of(result.exceptions, stray)
    proof = {row["payout_id"]: row for row in result.proof.iter_rows(named=True)}
    assert proof["po_1"]["closed"]
    assert proof["po_later"]["payout_amount"] is None and proof["po_later"]["net_sum"] == 2900
    assert proof["po_later"]["exceptions"] == 1 and not proof["po_later"]["closed"]
    assert journal_of(result.journal, "po_later")[("suspense", stray)] == -3000


def test_a_transaction_without_a_payout_is_an_unknown_payout_without_a_proof_row() -> None:
    case = Case()
    pending = case.charge("", 3000, 100)
    case.transactions[-1]["payout_id"] = None
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("unknown_payout", pending)}
    assert summary.proof == {}


# -- every kind, every category ------------------------------------------------------------------------------

def test_every_exception_kind_and_every_category_is_reported_in_one_set() -> None:
    case = Case()
    case.charge("po_1", 100000, 2930)
    case.charge("po_1", 4200, 150, order="")                                   # charge_without_order
    case.orders.append({"order_key": "ord_d", "amount_minor": 3000, "currency": "USD", "fee_minor": None})
    case.charge("po_1", 3000, 100, order="ord_d", id="txn_d1")
    case.charge("po_1", 3000, 100, order="ord_d", id="txn_d2")                 # duplicate_charge
    case.charge("po_1", 2000, 88, order_currency="CAD")                        # currency_mismatch
    case.charge("po_1", 2000, 88, order_amount=1999)                           # amount_mismatch
    case.charge("po_1", 2000, 88, recorded_fee=87)                             # fee_mismatch
    _partial_capture(case, "po_1", "po_1", authorised=9000, captured=8000, order_amount=8000)
    case.txn("po_1", "adjustment", -100, reporting_category="partial_capture_reversal", source_id="ch_gone")
    case.txn("po_1", "refund", -1000, source_id="re_9", source_amount=1000)   # refund_without_return
    case.txn("po_1", "refund", -700, source_id="re_7", source_amount=700, order_key="ord_x")
    case.returns += [{"refund_id": "re_7", "order_key": "ord_y", "amount_minor": 700, "currency": "USD"},
                     {"refund_id": "re_8", "order_key": "ord_y", "amount_minor": 300, "currency": "USD"}]
    case.txn("po_1", "refund", -300, source_id="re_8", source_amount=300)     # matched refund
    case.disputes.append({"dispute_id": "dp_1", "order_key": "o"})
    case.txn("po_1", "adjustment", -800, 1500, reporting_category="dispute", source_id="dp_1")
    case.txn("po_1", "adjustment", -100, 1500, reporting_category="dispute", source_id="dp_404")
    case.txn("po_1", "stripe_fee", -250, reporting_category="fee")
    case.txn("po_1", "reserve_release", 75, reporting_category="other_adjustment")
    case.txn("po_1", "brand_new_type", -300, reporting_category="other_adjustment")
    case.charge("po_1", 500, 10, currency="eur")                              # payout_currency_mismatch
    case.charge("po_gone", 500, 10)                                           # unknown_payout
    case.orders.append({"order_key": "ord_lonely", "amount_minor": 1234, "currency": "EUR", "fee_minor": None})
    case.payout("po_1", amount=1)                                             # payout_mismatch
    result, summary = case.run()
    assert {kind for kind, _, _ in summary.exceptions} == set(EXCEPTION_KINDS)
    assert {category for category, _ in summary.status.values()} == set(CATEGORIES)
    assert set(result.exceptions["kind"]) == set(EXCEPTION_KINDS)
    for row in result.exceptions.iter_rows(named=True):
        assert row["suggested_fix"] == EXCEPTION_KINDS[row["kind"]].suggested_fix
        if row["ref"] != "po_1":  # the payout's own sum says its numbers without the meaning
            assert row["reason"].startswith(EXCEPTION_KINDS[row["kind"]].meaning)
    assert result.journal.group_by("payout_id").agg(pl.col("amount_minor").sum())["amount_minor"].to_list() \
        == [0, 0]
