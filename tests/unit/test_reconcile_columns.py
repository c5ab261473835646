"""TransactionColumns: Stripe's balance transaction pages (dicts and SDK objects) into the job's typed columns.

The objects are shaped like Stripe's own examples (shared/data/stripe/fixtures3.json: balance_transaction,
charge, refund, dispute), with the source expanded or left as an id.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
import stripe

from commerce_bridge.errors import MappingError
from commerce_bridge.reconcile import TransactionColumns, frames_from_records, reconcile
from commerce_bridge.reconcile.columns import rate_text
from commerce_bridge.reconcile.job import TRANSACTION_SCHEMA, Inputs


def charge(cid: str, amount: int, currency: str = "usd", order: str | None = "ord_1") -> dict[str, Any]:
    return {"id": cid, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": 0,
            "balance_transaction": "txn_x", "captured": True, "currency": currency, "customer": None,
            "description": "My First Test Charge (created for API docs)", "disputed": False,
            "metadata": {"clarity_order_key": order} if order else {}, "paid": True,
            "payment_intent": None, "status": "succeeded"}


def txn(tid: str, amount: int, fee: int, source: Any, *, type_: str = "charge", category: str = "charge",
        currency: str = "usd", rate: float | None = None) -> dict[str, Any]:
    return {"id": tid, "object": "balance_transaction", "amount": amount, "available_on": 1234567890,
            "balance_type": "payments", "created": 1234567890, "currency": currency,
            "description": None, "exchange_rate": rate, "fee": fee,
            "fee_details": [{"amount": fee, "application": None, "currency": currency,
                             "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [],
            "net": amount - fee, "reporting_category": category, "source": source, "status": "available",
            "type": type_}


def order_key_of(source: Any) -> str | None:
    """What the caller does: the order key from the charge's metadata (a refund or dispute names its charge)."""
    assert not isinstance(source, str), "only an expanded source is passed"
    if source["object"] == "charge":
        metadata = source["metadata"]
        return metadata["clarity_order_key"] if "clarity_order_key" in metadata else None  # noqa: SIM401 (StripeObject has no get)
    return {"ch_1": "ord_1", "ch_2": "ord_2"}.get(source["charge"])


def test_a_page_of_dicts_becomes_the_transaction_columns_with_the_sources_own_amounts() -> None:
    refund = {"id": "re_1", "object": "refund", "amount": 1000, "charge": "ch_1", "currency": "eur",
              "metadata": {}, "payment_intent": None, "reason": None, "status": "succeeded"}
    dispute = {"id": "dp_1", "object": "dispute", "amount": 9000, "charge": "ch_2", "currency": "usd",
               "metadata": {}, "reason": "general", "status": "lost", "balance_transactions": []}
    page = [txn("txn_1", 10845, 345, charge("ch_1", 10000, "eur"), rate=1.08435),
            txn("txn_2", -1084, 0, refund, type_="refund", category="refund", rate=1.08435),
            txn("txn_3", -9000, 1500, dispute, type_="adjustment", category="dispute"),
            txn("txn_4", -250, 0, "fee_1", type_="stripe_fee", category="fee"),
            txn("txn_5", 500, 0, None, type_="adjustment", category="other_adjustment"),
            txn("txn_6", 700, 50, "ch_9")]  # not expanded: the id, and no order key
    columns = TransactionColumns("po_1", order_key_of)
    columns.add_page(page)
    frame = columns.frame()
    assert frame.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert frame.rows(named=True)[0] == {
        "id": "txn_1", "payout_id": "po_1", "type": "charge", "reporting_category": "charge", "amount": 10845,
        "fee": 345, "net": 10500, "currency": "usd", "exchange_rate": "1.08435", "source_id": "ch_1",
        "source_type": "charge", "source_amount": 10000, "source_currency": "eur", "order_key": "ord_1"}
    assert frame.select("source_id", "source_type", "source_amount", "source_currency", "order_key").rows()[1:] == [
        ("re_1", "refund", 1000, "eur", "ord_1"), ("dp_1", "dispute", 9000, "usd", "ord_2"),
        ("fee_1", None, None, None, None), (None, None, None, None, None), ("ch_9", None, None, None, None)]
    assert frame["exchange_rate"].to_list() == ["1.08435", "1.08435", None, None, None, None]


def test_sdk_list_objects_page_by_page_give_the_same_frame_as_dicts_and_reconcile() -> None:
    dicts = [txn(f"txn_{i:03d}", 1000 + i, 59, charge(f"ch_{i:03d}", 1000 + i, order=f"ord_{i:03d}"))
             for i in range(7)]
    as_dicts = TransactionColumns("po_1", order_key_of)
    as_dicts.add_page(dicts)
    as_sdk = TransactionColumns("po_1", order_key_of)
    for start in range(0, 7, 3):
        page: stripe.ListObject[stripe.BalanceTransaction] = stripe.ListObject.construct_from(
            {"object": "list", "data": dicts[start:start + 3], "has_more": start + 3 < 7,
             "url": "/v1/balance_transactions"}, "sk_test_x")
        assert isinstance(page.data[0], stripe.BalanceTransaction)
        as_sdk.add_page(page)
    assert len(as_sdk) == 7
    frame = as_sdk.frame()
    assert frame.equals(as_dicts.frame())
    orders = frames_from_records([], [], [{"order_key": f"ord_{i:03d}", "amount_minor": 1000 + i, "currency": "USD",
                                           "fee_minor": 59} for i in range(7)], [], [])
    net = sum(1000 + i - 59 for i in range(7))
    payouts = pl.DataFrame({"payout_id": ["po_1"], "amount": [net], "currency": ["usd"]}, schema=orders.payouts.schema)
    result = reconcile(Inputs(frame, payouts, orders.orders, orders.returns, orders.disputes))
    assert result.exceptions.height == 0 and result.proof["closed"].to_list() == [True]


def test_the_columns_are_chunked_so_that_no_page_is_kept() -> None:
    columns = TransactionColumns(None, lambda source: None, chunk_rows=4)
    for page in range(5):
        columns.add_page([txn(f"txn_{page}_{i}", 100, 0, f"ch_{page}_{i}") for i in range(3)])
    assert len(columns) == 15 and len(columns._chunks) == 3
    frame = columns.frame()
    assert frame.height == 15 and frame["payout_id"].null_count() == 15
    assert frame["id"].to_list()[:4] == ["txn_0_0", "txn_0_1", "txn_0_2", "txn_1_0"]
    assert TransactionColumns("po_1", order_key_of).frame().height == 0


@pytest.mark.parametrize(("rate", "text"), [
    (1.08435, "1.08435"), (149.7, "149.7"), (1e-05, "0.00001"), (0.006681, "0.006681"), (2, "2"),
    ("0.3075", "0.3075"), (None, None)])
def test_an_exchange_rate_becomes_decimal_text_from_its_repr_without_arithmetic(rate: Any, text: str | None) -> None:
    assert rate_text(rate) == text


def test_an_exchange_rate_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(MappingError, match="exchange_rate"):
        rate_text(True)
