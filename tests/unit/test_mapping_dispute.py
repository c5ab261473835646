"""Dispute mapping: journals per balance transaction, the chargeback, Clarity statuses, notes (mapping/dispute.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.dispute import (
    DisputeAccounts,
    JournalRow,
    PlannedJournal,
    WarningView,
    chargeback_key,
    clarity_state,
    dispute_from_stripe,
    dispute_note,
    dispute_summary,
    early_fraud_refund,
    held,
    journal_doc,
    movement_rows,
    planned_journals,
    status_target,
    warning_from_stripe,
)
from commerce_bridge.mapping.money import money_to_decimal
from commerce_bridge.mapping.status import DEFAULT_PRECEDENCE

ACCOUNTS = DisputeAccounts()
DAY = date(2026, 12, 7)
RANKS = DEFAULT_PRECEDENCE["clarity_order"].ranks


def txn(txn_id: str, amount: int, fee: int = 0, currency: str = "usd", created: int = 1_796_000_000) -> dict[str, Any]:
    return {"id": txn_id, "object": "balance_transaction", "amount": amount, "fee": fee, "net": amount - fee,
            "currency": currency, "created": created, "reporting_category": "dispute" if amount < 0 else
            "dispute_reversal"}


def dispute(status: str = "needs_response", amount: int = 3300, currency: str = "usd",
            txns: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "dp_1", "object": "dispute", "amount": amount, "currency": currency, "charge": "ch_1",
            "payment_intent": "pi_1", "reason": "fraudulent", "status": status,
            "evidence_details": {"due_by": 1_796_083_200, "has_evidence": False},
            "payment_method_details": {"card": {"case_type": "chargeback"}, "type": "card"},
            "balance_transactions": txns if txns is not None else [], **extra}


def balance_of(rows: tuple[JournalRow, ...]) -> int:
    return sum(r.debit.minor - r.credit.minor for r in rows)


def by_account(rows: tuple[JournalRow, ...]) -> dict[str, int]:
    return {r.account: r.debit.minor - r.credit.minor for r in rows}


@pytest.mark.parametrize(("currency", "amount", "fee"), [("usd", 3300, 1500), ("jpy", 1500, 1500),
                                                         ("kwd", 12750, 1500)])
def test_a_withdrawal_moves_the_amount_to_disputed_funds_and_the_fee_to_fees_out_of_clearing(
        currency: str, amount: int, fee: int) -> None:
    view = dispute_from_stripe(dispute(amount=amount, currency=currency,
                                       txns=[txn("txn_w", -amount, fee, currency)]))
    [planned] = planned_journals(view, ACCOUNTS, order_key="WEB-1")
    code = currency.upper()
    assert planned.key == "txn_w" and planned.kind == "withdrawal"
    assert by_account(planned.rows) == {ACCOUNTS.disputes: amount, ACCOUNTS.fees: fee,
                                        ACCOUNTS.clearing: -(amount + fee)}
    assert {r.debit.currency for r in planned.rows} == {code}
    doc = journal_doc(planned, posting_date=DAY)
    assert doc["cheque_no"] == "txn_w" and doc["cheque_date"] == doc["posting_date"] == "2026-12-07"
    debits = sum(Decimal(r["debit_in_account_currency"]) for r in doc["accounts"])
    credits = sum(Decimal(r["credit_in_account_currency"]) for r in doc["accounts"])
    assert debits == credits == money_to_decimal(Money(amount + fee, code))
    assert "WEB-1" in planned.remark and "fraudulent" in planned.remark


def test_a_reinstatement_gives_the_amount_back_to_clearing_and_keeps_the_fee() -> None:
    view = dispute_from_stripe(dispute("won", txns=[txn("txn_w", -3300, 1500), txn("txn_r", 3300)]))
    journals = planned_journals(view, ACCOUNTS)
    assert [j.key for j in journals] == ["txn_w", "txn_r"]
    assert by_account(journals[1].rows) == {ACCOUNTS.disputes: -3300, ACCOUNTS.clearing: 3300}
    assert held(view) == Money(0, "USD")
    assert "reinstated" in journals[1].remark and "returned" not in journals[1].remark


def test_a_reinstatement_that_returns_the_fee_credits_the_fees_account() -> None:
    view = dispute_from_stripe(dispute("won", txns=[txn("txn_w", -3300, 1500), txn("txn_r", 3300, -1500)]))
    rows = planned_journals(view, ACCOUNTS)[1].rows
    assert by_account(rows) == {ACCOUNTS.disputes: -3300, ACCOUNTS.fees: -1500, ACCOUNTS.clearing: 4800}
    assert "fee 15.00 USD returned" in planned_journals(view, ACCOUNTS)[1].remark


def test_a_lost_dispute_turns_what_is_held_into_a_chargeback_expense() -> None:
    view = dispute_from_stripe(dispute("lost", amount=12750, currency="kwd", txns=[txn("txn_w", -12750, 1500, "kwd")]))
    journals = planned_journals(view, ACCOUNTS)
    assert [j.key for j in journals] == ["txn_w", chargeback_key("dp_1")] == ["txn_w", "dp_1:chargeback"]
    lost = journals[1]
    assert lost.kind == "chargeback" and lost.created is None
    assert by_account(lost.rows) == {ACCOUNTS.chargebacks: 12750, ACCOUNTS.disputes: -12750}
    doc = journal_doc(lost, posting_date=DAY)
    assert [r["debit_in_account_currency"] for r in doc["accounts"]] == ["12.750", "0.000"]


@pytest.mark.parametrize("status", ["needs_response", "under_review", "won", "warning_closed"])
def test_only_a_lost_dispute_has_a_chargeback_journal(status: str) -> None:
    view = dispute_from_stripe(dispute(status, txns=[txn("txn_w", -3300, 1500)]))
    assert [j.kind for j in planned_journals(view, ACCOUNTS)] == ["withdrawal"]


def test_an_inquiry_moves_no_money_and_books_nothing() -> None:
    view = dispute_from_stripe(dispute("warning_closed", payment_method_details={"card": {"case_type": "inquiry"}}))
    assert view.inquiry and held(view) is None and planned_journals(view, ACCOUNTS) == []
    lost = dispute_from_stripe(dispute("lost"))  # no balance transaction embedded: nothing to write off
    assert planned_journals(lost, ACCOUNTS) == []


@given(st.sampled_from(["USD", "JPY", "KWD"]), st.integers(1, 10**9), st.integers(-5000, 5000),
       st.booleans())
def test_every_journal_row_set_balances_to_the_minor_unit(currency: str, amount: int, fee: int,
                                                          withdrawal: bool) -> None:
    step = 10 if currency == "KWD" else 1  # Stripe's KWD amounts end in 0
    amount, fee = amount * step, fee * step
    signed = -amount if withdrawal else amount
    view = dispute_from_stripe(dispute("lost", amount=amount, currency=currency.lower(),
                                       txns=[txn("txn_x", signed, fee, currency.lower())]))
    for planned in planned_journals(view, ACCOUNTS):
        assert balance_of(planned.rows) == 0
        assert all((r.debit.minor > 0) != (r.credit.minor > 0) for r in planned.rows)  # one side, never zero
        doc = journal_doc(planned, posting_date=DAY)
        debits = sum(Decimal(r["debit_in_account_currency"]) for r in doc["accounts"])
        credits = sum(Decimal(r["credit_in_account_currency"]) for r in doc["accounts"])
        assert debits == credits


def test_a_journal_that_does_not_balance_or_needs_more_decimals_is_refused() -> None:
    usd, kwd = Money(100, "USD"), Money(5125, "KWD")
    bad = PlannedJournal("txn_bad", "withdrawal", (JournalRow("A", usd, Money(0, "USD")),), 0, "")
    with pytest.raises(MappingError, match="does not balance"):
        journal_doc(bad, posting_date=DAY)
    fine = PlannedJournal("txn_k", "withdrawal", (JournalRow("A", kwd, Money(0, "KWD")),
                                                   JournalRow("B", Money(0, "KWD"), kwd)), 0, "")
    with pytest.raises(MappingError, match="decimals"):
        journal_doc(fine, posting_date=DAY)
    assert movement_rows(dispute_from_stripe(dispute(txns=[txn("txn_0", 0, 0)])).movements[0], ACCOUNTS) == ()


def test_a_dispute_is_read_only_from_stripe_s_own_shape() -> None:
    view = dispute_from_stripe(dispute(charge={"id": "ch_9"}, payment_intent={"id": "pi_9"}))
    assert (view.charge_id, view.payment_intent_id, view.evidence_due_by) == ("ch_9", "pi_9", 1_796_083_200)
    bare = dispute_from_stripe(dispute("warning_needs_response", payment_intent=None, evidence_details=None,
                                       payment_method_details=None))
    assert bare.inquiry and bare.payment_intent_id is None and bare.evidence_due_by is None
    for broken in (dispute(charge=None), dispute(amount="33.00"), dispute(txns=["txn_1"]),
                   dispute(txns=[{**txn("txn_1", -1), "fee": None}])):
        with pytest.raises(MappingError):
            dispute_from_stripe(broken)
    mixed = dispute_from_stripe(dispute(txns=[txn("txn_1", -100), txn("txn_2", 100, 0, "eur")]))
    with pytest.raises(MappingError):
        held(mixed)


@pytest.mark.parametrize(("status", "current", "before", "target"), [
    ("needs_response", "Full Payment Received", None, "Disputed"),
    ("warning_needs_response", "Full Payment Received", None, "Disputed"),
    ("under_review", "Disputed", "Full Payment Received", None),
    ("lost", "Disputed", "Full Payment Received", "Chargeback"),
    ("won", "Disputed", "Full Payment Received", "Full Payment Received"),
    ("warning_closed", "Disputed", "Shipped", "Shipped"),
    ("won", "Chargeback", "Shipped", "Shipped"),  # lost, appealed, then won
    ("won", "Full Payment Received", None, None),  # closed before the bridge saw it open
    ("won", "Completed", "Shipped", None),  # a person moved the order on since
    ("prevented", "Disputed", None, None),  # nothing remembered: leave it
])
def test_the_order_status_follows_the_dispute(status: str, current: str, before: str | None,
                                              target: str | None) -> None:
    view = dispute_from_stripe(dispute(status))
    assert status_target(view, current, before, disputed_status="Disputed", chargeback_status="Chargeback") == target


def test_clarity_states() -> None:
    assert [clarity_state(dispute_from_stripe(dispute(s))) for s in
            ("needs_response", "appeal_under_review", "lost", "won", "prevented")] == [
        "disputed", "disputed", "chargeback", "restored", "restored"]


def test_notes_and_summaries_name_the_dispute_reason_amount_and_due_date_only() -> None:
    key, text = dispute_note(dispute_from_stripe(dispute(amount=1500, currency="jpy")))
    assert key == "dp_1:opened"
    assert text == ("Stripe dispute dp_1 opened (chargeback): reason fraudulent, amount 1500 JPY, "
                    "evidence due 2026-12-01 00:00 UTC.")
    for status, words in (("won", "won"), ("lost", "lost"), ("warning_closed", "without a chargeback"),
                          ("prevented", "prevented")):
        key, text = dispute_note(dispute_from_stripe(dispute(status)))
        assert key == f"dp_1:{status}" and words in text and "33.00 USD" in text
    inquiry = dispute_from_stripe(dispute("warning_needs_response", reason="", evidence_details={},
                                          payment_method_details={"card": {"case_type": "inquiry"}}))
    assert "(inquiry): reason none" in dispute_note(inquiry)[1] and "no evidence due date" in dispute_note(inquiry)[1]
    line = dispute_summary(dispute_from_stripe(dispute()), "WEB-7")
    assert line.startswith("Dispute dp_1 on ch_1 (order WEB-7): fraudulent, 33.00 USD, evidence due")
    assert dispute_summary(inquiry).startswith("Inquiry dp_1 on ch_1: no reason")


def test_an_early_fraud_warning_is_read_from_stripe_s_shape() -> None:
    w = warning_from_stripe({"id": "issfr_1", "charge": {"id": "ch_1"}, "payment_intent": {"id": "pi_1"},
                             "fraud_type": "made_with_stolen_card", "actionable": True})
    assert w == WarningView("issfr_1", "ch_1", "pi_1", "made_with_stolen_card", True)
    assert warning_from_stripe({"id": "issfr_2", "charge": "ch_2", "actionable": "yes"}).actionable is False
    with pytest.raises(MappingError):
        warning_from_stripe({"id": "issfr_3"})


@pytest.mark.parametrize(("actionable", "left", "status", "shipped", "refund", "why"), [
    (True, 3300, "Full Payment Received", "Shipped", True, "not shipped"),
    (True, 3300, "Pending", "Shipped", True, "not shipped"),
    (False, 3300, "Full Payment Received", "Shipped", False, "not actionable"),
    (True, 0, "Full Payment Received", "Shipped", False, "nothing is left"),
    (True, 3300, "Shipped", "Shipped", False, "has shipped"),
    (True, 3300, "Completed", "Shipped", False, "has shipped"),
    (True, 3300, "Partially Refunded", "Shipped", False, "not known"),
    (True, 3300, None, "Shipped", False, "not known"),
    (True, 3300, "Pending", "Dispatched", False, "not in the order status precedence"),
])
def test_an_early_fraud_warning_refunds_only_an_unshipped_order(actionable: bool, left: int, status: str | None,
                                                                shipped: str, refund: bool, why: str) -> None:
    w = WarningView("issfr_1", "ch_1", "pi_1", "misc", actionable)
    decided, reason = early_fraud_refund(w, Money(left, "USD"), status, shipped_status=shipped, ranks=RANKS)
    assert decided is refund and why in reason


def test_the_status_map_s_dispute_section_gives_the_two_dispute_statuses() -> None:
    from commerce_bridge.errors import ValidationError
    from commerce_bridge.mapping.status import StatusMap

    assert StatusMap.default().workflow_vars()["disputed_status"] == "Disputed"
    renamed = StatusMap.from_config({"clarity_dispute_statuses": {"disputed": "In Dispute", "chargeback": "Lost"}})
    assert (renamed.workflow_vars()["disputed_status"], renamed.workflow_vars()["chargeback_status"]) == (
        "In Dispute", "Lost")
    assert renamed.to_config()["clarity_dispute_statuses"] == {"disputed": "In Dispute", "chargeback": "Lost"}
    with pytest.raises(ValidationError, match="is not a dispute state"):
        StatusMap.from_config({"clarity_dispute_statuses": {"open": "Disputed"}})
    with pytest.raises(ValidationError, match="must be different"):
        StatusMap.from_config({"clarity_dispute_statuses": {"disputed": "X", "chargeback": "X"}})
    with pytest.raises(ValidationError, match="chargeback_status"):
        StatusMap.from_config({"clarity_dispute_statuses": {"disputed": "Disputed"}}).workflow_vars()
