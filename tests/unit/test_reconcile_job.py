"""Payout reconciliation, example by example: every transaction type and discrepancy kind, FX, odd currencies.

Each case runs the columnar job and the row-by-row reference (``tests/support/reconcile.py``) and checks
they agree, then checks the expected journal lines, exceptions and proof.
"""

from __future__ import annotations

import polars as pl
import pytest

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile import EXCEPTION_KINDS, LedgerAccounts
from commerce_bridge.reconcile.rules import STRIPE_TYPES, category_of, convert_half_even, rate_units
from tests.support.reconcile import Case


def journal_of(result: pl.DataFrame, payout: str) -> dict[tuple[str, str], int]:
    """(role, ref) -> amount of a payout's journal lines."""
    rows = result.filter(pl.col("payout_id") == payout).select("role", "ref", "amount_minor").iter_rows()
    return {(str(role), ref): amount for role, ref, amount in rows}


def kinds(summary_exceptions: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return {(kind, ref) for kind, ref, _ in summary_exceptions}


def test_a_clean_payout_closes_with_one_balanced_journal_when_everything_matches() -> None:
    case = Case()
    ch = case.charge("po_1", 10000, 320, recorded_fee=320)
    fee = case.txn("po_1", "stripe_fee", -250, reporting_category="fee")
    adj = case.txn("po_1", "adjustment", 75, reporting_category="other_adjustment")
    case.payout("po_1")
    result, summary = case.run()
    assert summary.exceptions == set()
    assert journal_of(result.journal, "po_1") == {
        ("clearing", ch): 9680, ("receivable", ch): -10000, ("fees", ch): 320,
        ("clearing", fee): -250, ("fees", fee): 250,
        ("clearing", adj): 75, ("adjustments", adj): -75,
        ("bank", "po_1"): 9505, ("clearing", "po_1"): -9505,
    }
    proof = result.proof.row(0, named=True)
    assert proof["payout_amount"] == proof["net_sum"] == proof["matched_net"] == 9505
    assert proof["clearing_balance"] == 0 and proof["journal_balance"] == 0 and proof["closed"]


def test_the_journal_names_the_configured_accounts_when_accounts_are_given() -> None:
    case = Case()
    case.charge("po_1", 5000, 175)
    case.payout("po_1")
    accounts = LedgerAccounts(clearing="1210 Stripe", bank="1100 Chase", receivable="1300 AR", fees="6100 Fees")
    result, _ = case.run(accounts)
    assert set(result.journal["account"].cast(pl.String)) == {"1210 Stripe", "1100 Chase", "1300 AR", "6100 Fees"}


@pytest.mark.parametrize("kind", ["charge_without_order", "unknown_order_key"])
def test_a_charge_is_an_exception_on_suspense_when_no_order_is_known(kind: str) -> None:
    case = Case()
    order = "" if kind == "charge_without_order" else "ord_nowhere"
    ch = case.charge("po_1", 4200, 150, order=order)
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("charge_without_order", ch)}
    assert journal_of(result.journal, "po_1")[("suspense", ch)] == -4200
    row = result.exceptions.row(0, named=True)
    assert row["suggested_fix"] == EXCEPTION_KINDS["charge_without_order"].suggested_fix
    assert "42.00 USD" in row["reason"]
    proof = result.proof.row(0, named=True)
    assert proof["sum_ok"] and proof["clearing_zero"] and proof["balanced"] and not proof["closed"]
    assert proof["matched_net"] == 0 and proof["exception_net"] == 4050


def test_the_second_charge_of_an_order_is_a_duplicate_when_the_first_already_paid_it() -> None:
    case = Case()
    first = case.charge("po_1", 3000, 100, order="ord_a", id="txn_a")
    case.orders.append({"order_key": "ord_a", "amount_minor": 3000, "currency": "USD", "fee_minor": None})
    second = case.charge("po_2", 3000, 100, order="ord_a", id="txn_b")
    case.payout("po_1")
    case.payout("po_2")
    _, summary = case.run()
    assert summary.status[first] == ("charge", "")
    assert kinds(summary.exceptions) == {("duplicate_charge", second)}


def test_amount_currency_and_fee_disagreements_are_reported_by_kind_when_the_order_differs() -> None:
    case = Case()
    amount = case.charge("po_1", 2000, 88, order_amount=1999)
    currency = case.charge("po_1", 2000, 88, order_currency="CAD")
    fee = case.charge("po_1", 2000, 88, recorded_fee=87)
    net = case.txn("po_1", "adjustment", 500, 0, net=499, reporting_category="other_adjustment")
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("amount_mismatch", amount), ("currency_mismatch", currency),
                                         ("fee_mismatch", fee), ("fee_mismatch", net)}
    # Stripe moved 499; the line stays on suspense with its exception and the journal still balances
    assert journal_of(result.journal, "po_1")[("suspense", net)] == -499
    assert result.proof["journal_balance"].to_list() == [0]


def test_partial_refunds_match_their_returns_when_they_fall_in_later_payouts() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    order = case.orders[-1]["order_key"]
    first = case.txn("po_2", "refund", -2500, source_id="re_1", source_type="refund", source_amount=2500)
    second = case.txn("po_3", "refund", -4000, source_id="re_2", source_type="refund", source_amount=4000)
    case.returns += [{"refund_id": "re_1", "order_key": order, "amount_minor": 2500, "currency": "USD"},
                     {"refund_id": "re_2", "order_key": order, "amount_minor": 4000, "currency": "USD"}]
    case.txn("po_2", "charge", 9000, 290, order_key=None, id="txn_z")  # keeps po_2 positive; unlinked
    for payout in ("po_1", "po_2", "po_3"):
        case.payout(payout)
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("charge_without_order", "txn_z")}
    assert journal_of(result.journal, "po_3") == {
        ("clearing", second): -4000, ("refunds", second): 4000, ("bank", "po_3"): -4000, ("clearing", "po_3"): 4000}
    assert journal_of(result.journal, "po_2")[("refunds", first)] == 2500
    assert result.proof.filter(pl.col("payout_id") == "po_3")["closed"].item()


def test_a_refund_is_an_exception_when_no_return_is_known() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    refund = case.txn("po_1", "refund", -1000, source_id="re_9", source_type="refund", source_amount=1000)
    short = case.txn("po_1", "payment_refund", -500, source_id="re_10", source_type="refund", source_amount=500)
    case.returns.append({"refund_id": "re_10", "order_key": "x", "amount_minor": 400, "currency": "USD"})
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("refund_without_return", refund), ("amount_mismatch", short)}


def test_a_dispute_lost_after_its_payout_books_the_withdrawal_and_fee_in_a_later_payout() -> None:
    case = Case()
    case.charge("po_1", 8000, 262)
    case.charge("po_2", 20000, 610)
    case.disputes.append({"dispute_id": "dp_1", "order_key": case.orders[0]["order_key"]})
    lost = case.txn("po_2", "adjustment", -8000, 1500, reporting_category="dispute", source_id="dp_1",
                    source_type="dispute")
    case.payout("po_1")
    case.payout("po_2")
    result, summary = case.run()
    assert summary.exceptions == set()
    lines = journal_of(result.journal, "po_2")
    assert (lines[("clearing", lost)], lines[("disputes", lost)], lines[("dispute_fees", lost)]) == (-9500, 8000, 1500)
    assert result.proof["closed"].to_list() == [True, True]


def test_a_won_dispute_reinstates_and_an_unknown_dispute_is_an_exception() -> None:
    case = Case()
    case.charge("po_1", 8000, 262)
    case.disputes.append({"dispute_id": "dp_1", "order_key": "o"})
    won = case.txn("po_1", "adjustment", 8000, reporting_category="dispute_reversal", source_id="dp_1")
    stray = case.txn("po_1", "adjustment", -100, 1500, reporting_category="dispute", source_id="dp_404")
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("dispute_without_record", stray)}
    assert journal_of(result.journal, "po_1")[("disputes", won)] == -8000


def test_an_unknown_type_is_an_exception_and_every_known_type_is_a_line_of_its_own() -> None:
    case = Case()
    case.charge("po_1", 50000, 1480)
    odd = case.txn("po_1", "brand_new_type", -300, reporting_category="other_adjustment")
    known = [case.txn("po_1", t, -1, reporting_category="other_adjustment") for t in sorted(STRIPE_TYPES)
             if category_of(t, "other_adjustment") == "other"]
    case.payout("po_1")
    _result, summary = case.run()
    assert kinds(summary.exceptions) == {("unknown_type", odd)}
    assert all(summary.status[t] == ("other", "") for t in known)
    assert len(known) == len(STRIPE_TYPES) - 8  # charge, payment, refund, payment_refund, 3 fee types, payout


def test_a_payout_whose_lines_do_not_add_up_is_a_payout_mismatch() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    case.payout("po_1", amount=9681)
    result, summary = case.run()
    line = next(t["id"] for t in case.transactions if t["type"] == "payout")
    assert kinds(summary.exceptions) == {("payout_mismatch", "po_1"), ("payout_mismatch", line)}
    proof = result.proof.row(0, named=True)
    assert not proof["sum_ok"] and proof["clearing_balance"] == -1 and proof["balanced"] and not proof["closed"]


def test_an_order_paid_in_clarity_without_a_charge_is_an_exception() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    case.orders.append({"order_key": "ord_lonely", "amount_minor": 1234, "currency": "EUR", "fee_minor": None})
    case.payout("po_1")
    result, summary = case.run()
    assert kinds(summary.exceptions) == {("order_without_charge", "ord_lonely")}
    assert result.exceptions["expected_minor"].to_list() == [1234]


def test_a_eur_charge_settled_in_usd_credits_the_converted_amount_and_books_fx_on_its_own_line() -> None:
    case = Case()
    # 100.00 EUR at 1.084350 = 10843.5 US cents -> 10844 (half to even); Stripe moved 10845: 1 cent of FX gain
    ch = case.charge("po_1", 10845, 345, exchange_rate="1.084350", source_amount=10000, source_currency="eur")
    case.payout("po_1")
    result, summary = case.run()
    assert summary.exceptions == set()
    assert journal_of(result.journal, "po_1") == {
        ("clearing", ch): 10500, ("receivable", ch): -10844, ("fx", ch): -1, ("fees", ch): 345,
        ("bank", "po_1"): 10500, ("clearing", "po_1"): -10500}
    assert result.lines.filter(pl.col("id") == ch)["fx_minor"].item() == 1


def test_a_eur_charge_is_a_currency_mismatch_when_the_order_is_in_usd() -> None:
    case = Case()
    ch = case.charge("po_1", 10845, 345, exchange_rate="1.08435", source_amount=10000, source_currency="eur",
                     order_currency="USD")
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("currency_mismatch", ch)}


@pytest.mark.parametrize(("source", "rate", "src_digits", "dst_digits", "expected"), [
    (10, "1.05", 2, 2, 10),        # 10.5 -> 10 (even)
    (30, "1.05", 2, 2, 32),        # 31.5 -> 32 (even)
    (1000, "149.7", 2, 0, 1497),   # 10.00 USD -> 1497 JPY
    (1000, "0.3075", 2, 3, 3075),  # 10.00 USD -> 3.075 KWD
    (5000, "0.006681", 0, 2, 3340),  # 5000 JPY -> 33.405 USD -> 33.40 (even)
])
def test_conversion_rounds_half_to_even_in_the_target_minor_unit(source: int, rate: str, src_digits: int,
                                                                 dst_digits: int, expected: int) -> None:
    assert convert_half_even(source, src_digits, rate_units(rate), dst_digits) == expected


def test_zero_and_three_decimal_settlement_journal_in_iso_minor_units() -> None:
    case = Case()
    jpy = case.charge("po_jpy", 5000, 180, currency="jpy")
    kwd = case.charge("po_kwd", 5120, 160, currency="kwd")
    isk = case.charge("po_isk", 50000, 1500, currency="isk")  # Stripe sends 500 ISK as 50000
    for payout, cur in (("po_jpy", "jpy"), ("po_kwd", "kwd"), ("po_isk", "isk")):
        case.payout(payout, cur)
    result, summary = case.run()
    assert summary.exceptions == set()
    assert journal_of(result.journal, "po_jpy")[("receivable", jpy)] == -5000
    assert journal_of(result.journal, "po_kwd")[("receivable", kwd)] == -5120
    assert journal_of(result.journal, "po_isk")[("receivable", isk)] == -500
    assert journal_of(result.journal, "po_isk")[("bank", "po_isk")] == 485
    assert set(result.journal.filter(pl.col("payout_id") == "po_kwd")["currency"].cast(pl.String)) == {"KWD"}


def test_the_input_is_refused_when_a_currency_is_unknown_or_a_rate_is_not_plain_decimal() -> None:
    case = Case()
    case.txn("po_1", "charge", 100, currency="zzz", order_key="ord_1")
    case.payout("po_1")
    with pytest.raises(MappingError, match="unknown currencies"):
        case.run()
    case = Case()
    case.charge("po_1", 100, exchange_rate="1.0e-3", source_amount=100, source_currency="eur")
    case.payout("po_1")
    with pytest.raises(MappingError, match="exchange_rate"):
        case.run()


def test_a_refund_in_another_currency_than_its_return_is_a_currency_mismatch() -> None:
    case = Case()
    case.charge("po_1", 10000, 320)
    refund = case.txn("po_1", "refund", -1000, source_id="re_1", source_type="refund", source_amount=1000)
    case.returns.append({"refund_id": "re_1", "order_key": "x", "amount_minor": 1000, "currency": "EUR"})
    case.payout("po_1")
    _, summary = case.run()
    assert kinds(summary.exceptions) == {("currency_mismatch", refund)}


def test_the_loop_also_refuses_an_unknown_currency_and_a_rate_with_too_many_decimals() -> None:
    from commerce_bridge.reconcile.reference import reconcile_rows
    case = Case()
    case.txn("po_1", "charge", 100, currency="zzz", order_key="ord_1")
    with pytest.raises(MappingError, match="unknown currency"):
        reconcile_rows(case.transactions, [], [], [], [])
    with pytest.raises(MappingError, match="exchange_rate"):
        rate_units("1.0000000000001")
