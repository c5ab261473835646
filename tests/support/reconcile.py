"""Builders for reconciliation tests: balance transactions and the bridge's side as plain records.

``Case`` collects records and runs both the columnar job and the row-by-row reference on them, so each
test checks one against the other on top of its own expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.reconcile.job import Result, frames_from_records, reconcile
from commerce_bridge.reconcile.reference import Summary, reconcile_rows
from commerce_bridge.reconcile.rules import LedgerAccounts

Record = dict[str, Any]


@dataclass
class Case:
    transactions: list[Record] = field(default_factory=list)
    payouts: list[Record] = field(default_factory=list)
    orders: list[Record] = field(default_factory=list)
    returns: list[Record] = field(default_factory=list)
    disputes: list[Record] = field(default_factory=list)
    _seq: int = 0

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:04d}"

    def txn(self, payout: str, type: str, amount: int, fee: int = 0, *, currency: str = "usd",
            reporting_category: str | None = None, net: int | None = None, **extra: Any) -> str:
        """Add a balance transaction; returns its id."""
        tid = extra.pop("id", None) or self._id("txn")
        self.transactions.append({
            "id": tid, "payout_id": payout, "type": type, "reporting_category": reporting_category or type,
            "amount": amount, "fee": fee, "net": amount - fee if net is None else net, "currency": currency,
            "exchange_rate": None, "source_id": None, "source_type": None, "source_amount": None,
            "source_currency": None, "order_key": None, **extra})
        return tid

    def charge(self, payout: str, amount: int, fee: int = 0, *, currency: str = "usd", order: str | None = None,
               order_amount: int | None = None, order_currency: str | None = None, recorded_fee: int | None = None,
               **extra: Any) -> str:
        """A charge and (unless ``order=""``) the order it pays."""
        key = self._id("ord") if order is None else order
        tid = self.txn(payout, "charge", amount, fee, currency=currency, source_id=self._id("ch"),
                       source_type="charge", order_key=key or None, **extra)
        if key and order is None:
            src_amount = extra.get("source_amount", amount)
            src_cur = extra.get("source_currency", currency)
            iso = from_stripe_amount(src_amount, src_cur).minor  # the bridge's side is in ISO minor units
            self.orders.append({"order_key": key, "amount_minor": iso if order_amount is None else order_amount,
                                "currency": (order_currency or src_cur).upper(), "fee_minor": recorded_fee})
        return tid

    def payout(self, payout: str, currency: str = "usd", *, amount: int | None = None, line: bool = True) -> None:
        """Close ``payout``: its amount is the net of its transactions unless given; add its own line."""
        net = sum(t["net"] for t in self.transactions if t["payout_id"] == payout and t["type"] != "payout")
        value = net if amount is None else amount
        self.payouts.append({"payout_id": payout, "amount": value, "currency": currency})
        if line:
            self.txn(payout, "payout", -net, currency=currency, source_id=payout, source_type="payout")

    def run(self, accounts: LedgerAccounts | None = None) -> tuple[Result, Summary]:
        """The job's result, after checking that the reference agrees with it exactly."""
        result = reconcile(frames_from_records(self.transactions, self.payouts, self.orders, self.returns,
                                               self.disputes), accounts)
        reference = reconcile_rows(self.transactions, self.payouts, self.orders, self.returns, self.disputes)
        summary = result.summary()
        assert summary.status == reference.status
        assert summary.exceptions == reference.exceptions
        assert summary.journal == reference.journal
        assert summary.proof == reference.proof
        return result, summary
