"""The demo's judgement of money going back (``sandbox/money_back.py``) and its table: what each system holds,
checked to the minor unit; a duplicate, a missing record or a wrong amount is named, never passed."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from commerce_bridge.entrypoints.demo_money_back import money_back_table
from commerce_bridge.sandbox.money_back import (
    Dispute,
    ErpDoc,
    MoneyBack,
    Refund,
    Return,
    StoreStatuses,
    amount_text,
    expected_back,
    to_minor,
)
from commerce_bridge.sandbox.traffic import MONEY_BACK, SCENARIOS, Placed, plan

BY_NAME = {s.name: s for s in MONEY_BACK}
STATUSES = StoreStatuses()


def paid(name: str, clarity_status: str, **back: object) -> Placed:
    """An order of the scenario, paid everywhere, whose money went back; ``back``: what the systems hold."""
    scenario = BY_NAME[name]
    total = {"USD": "33.00", "KWD": "12.750", "EUR": "39.98"}[scenario.currency]
    if name == "dispute lost":
        total = "30.00"
    o = Placed(n=1, scenario=scenario, email="shopper@example.com", order_id=1, key="WEB-1", total=total,
               intent_id="pi_1", intent_status="succeeded", clarity_status=clarity_status, balance_due="0",
               erp_order="SAL-ORD-1", erp_payment="ACC-PAY-1")
    o.back = MoneyBack(scenario.then, STATUSES, stage="done", **back)  # type: ignore[arg-type]
    return o


def returned(**change: object) -> Placed:
    good: dict[str, object] = dict(
        return_key="RMA-WEB-1",
        refunds=[Refund("re_1", 1250, "succeeded", "RMA-WEB-1")],
        returns=[Return("RMA-WEB-1", "Completed", 1250, "re_1")],
        credit_notes=[ErpDoc("ACC-SINV-RET-1", "Stripe refund re_1", 1250)],
        pay_entries=[ErpDoc("ACC-PAY-2", "re_1", 1250)])
    return paid("return (Clarity)", str(change.pop("status", "Partially Refunded")), **(good | change))


def dashboard(**change: object) -> Placed:
    good: dict[str, object] = dict(
        refunds=[Refund("re_2", 4250, "succeeded", "")],
        returns=[Return("re_2", "Completed", 4250, "re_2")],
        credit_notes=[ErpDoc("ACC-SINV-RET-2", "Stripe refund re_2", 4250)],
        pay_entries=[ErpDoc("ACC-PAY-3", "re_2", 4250)])
    return paid("refund (Dashboard)", str(change.pop("status", "Partially Refunded")), **(good | change))


WITHDRAWN = ("txn_w", -3998, 1500)
REINSTATED = ("txn_r", 3998, 0)


def won(**change: object) -> Placed:
    good: dict[str, object] = dict(
        dispute_id="dp_1", was="Disputed",
        disputes=[Dispute("dp_1", 3998, "won", True, (WITHDRAWN, REINSTATED))],
        journals=[ErpDoc("JV-1", "txn_w", 5498), ErpDoc("JV-2", "txn_r", 3998)])
    return paid("dispute won", str(change.pop("status", "Full Payment Received")), **(good | change))


def lost(**change: object) -> Placed:
    good: dict[str, object] = dict(
        dispute_id="dp_2", was="Disputed",
        disputes=[Dispute("dp_2", 3000, "lost", True, (("txn_w2", -3000, 1500),))],
        journals=[ErpDoc("JV-3", "txn_w2", 4500), ErpDoc("JV-4", "dp_2:chargeback", 3000)])
    return paid("dispute lost", str(change.pop("status", "Chargeback")), **(good | change))


def test_every_outcome_as_expected_is_done() -> None:
    for o in (returned(), dashboard(), won(), lost()):
        assert o.problems() == [] and o.done, (o.scenario.name, o.problems())


def test_the_amounts_given_back_come_from_the_returned_lines_and_the_dashboard_refund() -> None:
    assert expected_back(returned()) == 1250  # one tee of 12.50 USD
    assert expected_back(dashboard()) == 4250  # one mug of 4.250 KWD


def test_a_second_refund_of_a_return_is_named() -> None:
    o = returned(refunds=[Refund("re_1", 1250, "succeeded", "RMA-WEB-1"), Refund("re_9", 1250, "succeeded", "")])
    assert "Stripe: expected one refund of 12.50 USD, found 2 (12.50 USD, 12.50 USD)" in o.problems()
    assert not o.done


def test_a_refund_one_cent_off_is_named() -> None:
    o = returned(refunds=[Refund("re_1", 1249, "succeeded", "RMA-WEB-1")])
    assert "Stripe: refund re_1 is 12.49 USD succeeded, expected 12.50 USD succeeded" in o.problems()


def test_a_refund_made_for_another_return_is_named() -> None:
    o = returned(refunds=[Refund("re_1", 1250, "succeeded", "RMA-OTHER")])
    assert "Stripe: refund re_1 names return RMA-OTHER, expected RMA-WEB-1" in o.problems()


def test_a_dashboard_refund_that_came_back_as_two_returns_is_named() -> None:
    o = dashboard(returns=[Return("re_2", "Completed", 4250, "re_2"), Return("re_2-b", "Completed", 4250, "re_2")])
    assert any(p.startswith("Clarity: expected one return on the order, found 2") for p in o.problems())


def test_a_dashboard_refund_without_its_return_or_status_is_named() -> None:
    o = dashboard(returns=[], status="Full Payment Received")
    assert "Clarity: expected one return on the order, found 0 (none)" in o.problems()
    assert "Clarity: order status Full Payment Received, expected Partially Refunded" in o.problems()


def test_a_missing_or_doubled_erp_document_is_named() -> None:
    o = returned(credit_notes=[], pay_entries=[ErpDoc("P1", "re_1", 1250), ErpDoc("P2", "re_1", 1250)])
    assert "ERPNext: expected one credit note of 12.50 USD per refund, found none" in o.problems()
    assert ("ERPNext: expected one Pay entry of 12.50 USD per refund, found P1 12.50 USD, P2 12.50 USD"
            in o.problems())


def test_a_three_decimal_credit_note_off_by_one_minor_unit_is_named() -> None:
    o = dashboard(credit_notes=[ErpDoc("N", "Stripe refund re_2", 4249)])
    assert "ERPNext: expected one credit note of 4.250 KWD per refund, found N 4.249 KWD" in o.problems()


def test_a_dispute_that_did_not_end_as_expected_is_named() -> None:
    o = won(disputes=[Dispute("dp_1", 3998, "lost", True, (WITHDRAWN,))], status="Chargeback",
            journals=[ErpDoc("JV-1", "txn_w", 5498)])
    assert o.problems() == [
        "Stripe: dispute dp_1 is lost, expected won",
        "Clarity: order status Chargeback, expected Full Payment Received (its status before the dispute)",
    ]


def test_a_won_dispute_without_its_reinstatement_journal_is_named() -> None:
    o = won(journals=[ErpDoc("JV-1", "txn_w", 5498)])
    assert o.problems() == ["ERPNext: journal entries txn_w 54.98 EUR; expected txn_r 39.98 EUR, txn_w 54.98 EUR"]


def test_a_journal_booked_twice_or_without_the_fee_is_named() -> None:
    assert lost(journals=[ErpDoc("JV-3", "txn_w2", 4500), ErpDoc("JV-4", "dp_2:chargeback", 3000),
                          ErpDoc("JV-5", "dp_2:chargeback", 3000)]).problems()
    assert lost(journals=[ErpDoc("JV-3", "txn_w2", 3000), ErpDoc("JV-4", "dp_2:chargeback", 3000)]).problems()


def test_a_lost_dispute_without_its_chargeback_journal_or_status_is_named() -> None:
    o = lost(journals=[ErpDoc("JV-3", "txn_w2", 4500)], status="Disputed")
    assert "Clarity: order status Disputed, expected Chargeback" in o.problems()
    assert any(p.startswith("ERPNext: journal entries") and "dp_2:chargeback 30.00 USD" in p for p in o.problems())


def test_a_refund_on_a_disputed_order_is_named() -> None:
    assert "Stripe: expected no refund, found 1" in lost(refunds=[Refund("re_3", 3000, "succeeded", "")]).problems()


def test_an_order_not_yet_given_back_or_waiting_for_the_bridge_is_not_done() -> None:
    o = won()
    assert o.back is not None
    o.back = dataclasses.replace(o.back, stage="opened")
    assert o.problems() == ["still waiting for the bridge (dispute not yet marked in Clarity, or its evidence "
                            "not staged)"]
    o.back = dataclasses.replace(o.back, stage="")
    o.clarity_status = "Pending"
    assert o.problems() == ["not paid everywhere yet: no the Clarity order paid"]


def test_amounts_are_exact_in_the_currencys_minor_unit() -> None:
    assert to_minor("12.5", "USD") == 1250 and to_minor(-4.25, "KWD") == -4250 and to_minor("1500.0", "JPY") == 1500
    assert to_minor("12.505", "USD") is None and to_minor("abc", "USD") is None
    assert amount_text(4250, "KWD") == "4.250 KWD" and amount_text(500, "JPY") == "500 JPY"


def test_the_plan_adds_one_order_of_each_money_back_scenario() -> None:
    orders = list(plan(3, money_back=True))
    assert [s.name for _, s in orders] == [*(s.name for s in SCENARIOS[:3]), *(s.name for s in MONEY_BACK)]
    assert [n for n, _ in orders] == list(range(7))
    assert len(list(plan(3))) == 3


def test_the_table_shows_each_systems_records_with_exact_money() -> None:
    console = Console(width=200, record=True)
    console.print(money_back_table([returned(), dashboard(), won(), lost()], wide=True))
    text = " ".join(console.export_text().split())
    for shown in ("refund $12.50 succeeded (re_1)", "return $12.50 Completed (RMA-WEB-1)", "credit note -$12.50",
                  "Pay entry KWD 4.250", "dispute €39.98 won (dp_1)", "Full Payment Received (was Disputed)",
                  "withdrawal (with fee) €54.98 (JV-1)", "reinstatement €39.98", "chargeback $30.00 (JV-4)"):
        assert shown in text, (shown, text)
    bad = Console(width=80, record=True)
    bad.print(money_back_table([returned(credit_notes=[])]))
    [row] = [line for line in bad.export_text().splitlines() if line.startswith("WEB-1")]
    assert row.rstrip().endswith(" no"), row


def test_the_demo_writes_the_amounts_of_what_is_wrong_its_own_way() -> None:
    o = returned(refunds=[Refund("re_1", 1249, "succeeded", "RMA-WEB-1")])
    assert "Stripe: refund re_1 is <1249 USD> succeeded, expected <1250 USD> succeeded" in o.problems(
        money=lambda minor, currency: f"<{minor} {currency}>")
