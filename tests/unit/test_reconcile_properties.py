"""Property tests: for any generated set of payouts, the job agrees with the loop, journals balance, proof holds.

The sets mix every category (charges in the settlement currency and in another one, refunds, dispute
withdrawals and reinstatements, Stripe fees, other and unknown types, payout lines) in USD, JPY, KWD,
ISK and EUR settlements, with a bridge side that sometimes agrees and sometimes does not (missing or
changed orders, returns and disputes, reused order keys, a net that is not amount - fee, a payout
amount off by one step, a missing payout line).
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.reconcile import EXCEPTION_KINDS
from tests.support.reconcile import Case

_STEP = {"usd": 1, "eur": 1, "jpy": 1, "kwd": 10, "isk": 100}
_KINDS = ("charge", "fx_charge", "refund", "dispute", "reinstatement", "fee", "other", "unknown")


@st.composite
def cases(draw: st.DrawFn) -> Case:
    case = Case()
    keys = [f"ord_{i}" for i in range(6)]
    for p in range(draw(st.integers(1, 3))):
        pid, cur = f"po_{p}", draw(st.sampled_from(sorted(_STEP)))
        step = _STEP[cur]
        for _ in range(draw(st.integers(0, 7))):
            kind = draw(st.sampled_from(_KINDS))
            amount = draw(st.integers(1, 10**7)) * step
            fee = draw(st.integers(0, 10**4)) * step
            net = amount - fee - draw(st.sampled_from((0, 0, 0, 0, step)))
            agree = draw(st.booleans()) or draw(st.booleans())
            if kind in ("charge", "fx_charge"):
                key = draw(st.sampled_from(keys))
                extra: dict[str, object] = {}
                src_cur, src_amount = cur, amount
                if kind == "fx_charge":
                    src_cur = draw(st.sampled_from(sorted(set(_STEP) - {cur})))
                    src_amount = draw(st.integers(1, 10**7)) * _STEP[src_cur]
                    rate = f"{draw(st.integers(0, 300))}.{draw(st.integers(0, 999999)):06d}"
                    extra = {"exchange_rate": rate, "source_amount": src_amount, "source_currency": src_cur}
                case.txn(pid, "charge", amount, fee, net=net, currency=cur, order_key=key, **extra)
                if agree and all(o["order_key"] != key for o in case.orders):
                    digits_cut = 100 if src_cur == "isk" else 1
                    case.orders.append({"order_key": key, "amount_minor": src_amount // digits_cut,
                                        "currency": src_cur.upper(),
                                        "fee_minor": draw(st.sampled_from((None, fee, fee + step)))})
            elif kind == "refund":
                rid = f"re_{len(case.transactions)}"
                case.txn(pid, "refund", -amount, 0, net=-amount, currency=cur, source_id=rid, source_amount=amount)
                if agree:
                    case.returns.append({"refund_id": rid, "order_key": "ord_0", "currency": cur.upper(),
                                         "amount_minor": amount // (100 if cur == "isk" else 1)
                                         + draw(st.sampled_from((0, 0, 1)))})
            elif kind in ("dispute", "reinstatement"):
                did = f"dp_{draw(st.integers(0, 3))}"
                sign, category = (-1, "dispute") if kind == "dispute" else (1, "dispute_reversal")
                case.txn(pid, "adjustment", sign * amount, fee, net=sign * amount - fee, currency=cur,
                         reporting_category=category, source_id=did)
                if agree and all(d["dispute_id"] != did for d in case.disputes):
                    case.disputes.append({"dispute_id": did, "order_key": "ord_0"})
            else:
                typ = {"fee": "stripe_fee", "other": "reserve_release", "unknown": "not_a_stripe_type"}[kind]
                case.txn(pid, typ, -amount, 0, net=-amount - (0 if agree else step), currency=cur,
                         reporting_category="other_adjustment")
        off = draw(st.sampled_from((0, 0, 0, step, -step)))
        net_sum = sum(t["net"] for t in case.transactions if t["payout_id"] == pid)
        case.payout(pid, cur, amount=net_sum + off, line=draw(st.booleans()))
    for key in keys[:draw(st.integers(0, 2))]:
        if all(o["order_key"] != key for o in case.orders):
            case.orders.append({"order_key": key, "amount_minor": 100, "currency": "USD", "fee_minor": None})
    return case


@settings(max_examples=40, deadline=None)
@given(cases())
def test_the_job_agrees_with_the_loop_and_every_journal_balances_for_any_set(case: Case) -> None:
    result, _summary = case.run()  # asserts the job and the row-by-row reference agree exactly
    assert result.proof["journal_balance"].to_list() == [0] * result.proof.height
    assert result.journal.group_by("payout_id").agg(pl.col("amount_minor").sum())["amount_minor"].to_list() \
        == [0] * result.journal["payout_id"].n_unique()


@settings(max_examples=40, deadline=None)
@given(cases())
def test_matched_plus_exceptions_is_every_transaction_for_any_set(case: Case) -> None:
    result, summary = case.run()
    ids = [t["id"] for t in case.transactions]
    assert sorted(result.lines["id"]) == sorted(ids)
    assert summary.matched + summary.unmatched == len(ids)
    flagged = {ref for kind, ref, _ in summary.exceptions if kind not in ("order_without_charge",)}
    assert {i for i, (_, kind) in summary.status.items() if kind} == flagged - {p["payout_id"] for p in case.payouts}
    assert set(result.exceptions["kind"]) <= set(EXCEPTION_KINDS)
    assert result.exceptions.filter((pl.col("reason") == "") | (pl.col("suggested_fix") == "")).height == 0


@settings(max_examples=40, deadline=None)
@given(cases())
def test_the_proof_holds_for_any_set(case: Case) -> None:
    result, _ = case.run()
    for row in result.proof.iter_rows(named=True):
        assert row["clearing_balance"] == row["net_sum"] - row["payout_amount"]
        assert row["sum_ok"] == row["clearing_zero"]
        assert row["matched_net"] + row["exception_net"] == row["net_sum"]
        if row["closed"]:
            assert row["matched_net"] == row["payout_amount"] and row["exceptions"] == 0
        if row["exceptions"] == 0:
            assert row["closed"]
