"""Drift: what Stripe, Clarity and ERPNext disagree about, for the records created or changed in a window.

Rules:

- **The links are the bridge's own keys**, nothing guessed. A Stripe charge belongs to the Clarity order of its
  ``metadata.clarity_order_key`` (copied from its PaymentIntent; read from the PaymentIntent when the charge lacks
  it). ERPNext: the Sales Order's ``po_no`` is the order key, the received Payment Entry's ``reference_no`` the
  charge id. A Stripe Refund has a Clarity SalesReturn (``CustomKey`` = the refund id; a refund the bridge made for
  a Clarity return: that return, ``metadata.clarity_return_id``, recording the refund in ``RefundTransactionID``),
  an ERPNext credit note (Sales Invoice, ``is_return`` 1, ``remarks`` ``Stripe refund re_...``) and, once
  succeeded, a paid Payment Entry (``reference_no`` = the refund id). A dispute's money movements each have a
  Journal Entry (``cheque_no`` = the balance transaction id) and a lost one its chargeback entry
  (``<dispute id>:chargeback``). Cancelled ERPNext documents (``docstatus`` 2) count as missing.
- **What is compared**: Stripe's charges, refunds and disputes *created* in the window, Clarity's orders and
  returns *created or changed* in it (``ModifiedSince``); each side's partner is looked up by key, whenever it
  was made. Every page of every listing is read (100 a page); refunds, returns and disputes are compared page by
  page as they arrive, charges once their orders are known; lookups go 100 keys a request (one ERPNext list
  request per 100 records and document kind, never one per record), and only small summaries are kept across
  pages (the charges by order key, the orders by key, the refunds' statuses by id).
- **One cause, one difference**: a charge without an order is not also reported without its Payment Entry or
  Sales Order (the order flow books nothing without the order).
- **Nothing the bridge leaves alone by design is drift**: failed charges, refunds that failed or were canceled
  (their books are reversed), refunds the bridge made when an order was voided (no return, no credit note: the
  void flow books none), inquiries (no money moved), authorisations not captured yet (nothing to book).
- **Amounts** are exact integer minor units with their ISO currency (``mapping.money``, ``mapping.erp``,
  ``mapping.clarity``), never floats. A record whose amount cannot be read is listed in ``skipped`` with the
  reason, and the rest is compared.
- A system that cannot be read stops the search (its ``BridgeError``): a partial answer would report
  differences that are not there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError, NotFound
from commerce_bridge.mapping.clarity import money_from_clarity
from commerce_bridge.mapping.dispute import DisputeAccounts, dispute_from_stripe, planned_journals
from commerce_bridge.mapping.erp import money_from_erp
from commerce_bridge.mapping.metadata import ORDER_KEY
from commerce_bridge.mapping.money import format_money, from_stripe_amount
from commerce_bridge.mapping.refund import ACTIVE, refund_from_stripe
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway

__all__ = ["KINDS", "Difference", "DriftFinder", "DriftReport"]

KINDS: tuple[str, ...] = (
    "charge_without_order", "order_paid_without_charge", "order_without_erp_sales_order",
    "charge_without_payment_entry", "amount_mismatch", "refund_without_return", "refund_without_credit_note",
    "refund_without_payment_entry", "return_refunded_without_stripe_refund", "dispute_without_journal",
)
"""Every kind of difference, in the order reports list them."""

_CHUNK = 100
_AUTHORISED = ("succeeded", "requires_capture", "processing")  # a PaymentIntent that holds or took the money
_REPLAY = ("find its run with `commerce-bridge events list` / `dlq list` and replay it (`dlq replay RUN_ID`), "
           "or resend the Stripe event")


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing two systems disagree about: which records (``ids``, by system and kind), how much, why, the fix."""

    kind: str
    ref: str
    """The record the difference is about (a charge, refund or dispute id, an order or return key)."""
    reason: str
    suggested_fix: str
    ids: Mapping[str, str] = field(default_factory=dict)
    """The records on each side, e.g. ``{"stripe.charge": "ch_...", "clarity.order": "WEB-100042"}``."""
    amount: Money | None = None
    expected: Money | None = None
    """For ``amount_mismatch``: what the other side says."""
    against: str = ""
    """For ``amount_mismatch``: which other side (``clarity.order``, ``erp.payment_entry``)."""

    @property
    def key(self) -> str:
        """Stable identity of the difference (what the scheduled check remembers as reported)."""
        return ":".join(p for p in (self.kind, self.ref, self.against) if p)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "against": self.against or None, "ids": dict(self.ids),
                "amount_minor": self.amount.minor if self.amount else None,
                "currency": self.amount.currency if self.amount else None,
                "expected_minor": self.expected.minor if self.expected else None,
                "expected_currency": self.expected.currency if self.expected else None,
                "reason": self.reason, "suggested_fix": self.suggested_fix}


@dataclass
class DriftReport:
    """What one search found: the differences, how many records each listing read, what could not be read."""

    since: datetime
    until: datetime
    differences: list[Difference] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("stripe.charges", "stripe.refunds", "stripe.disputes", "clarity.orders", "clarity.returns"), 0))
    skipped: list[dict[str, str]] = field(default_factory=list)

    def totals(self) -> list[dict[str, Any]]:
        """Per kind and currency: how many differences and their amounts (minor units); ``currency`` None for the
        differences without an amount."""
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for d in self.differences:
            row = sums[(d.kind, d.amount.currency if d.amount else "")]
            row[0] += 1
            row[1] += d.amount.minor if d.amount else 0
        order = {k: i for i, k in enumerate(KINDS)}
        return [{"kind": kind, "currency": currency or None, "count": n, "amount_minor": total if currency else None}
                for (kind, currency), (n, total) in sorted(sums.items(), key=lambda kv: (order.get(kv[0][0], 99),
                                                                                        kv[0][1]))]

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        shown = self.differences if limit is None else self.differences[:limit]
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "total": len(self.differences),
                "totals": self.totals(), "scanned": dict(self.scanned), "skipped": list(self.skipped),
                "differences": [d.to_dict() for d in shown], "shown": len(shown)}


@dataclass(frozen=True, slots=True)
class _Charge:
    id: str
    payment_intent: str
    order_key: str
    amount: Money
    """Authorised (the charge's ``amount``): what the order asked for."""
    captured: Money


@dataclass(frozen=True, slots=True)
class _Order:
    key: str
    id: str
    status: str
    transaction: str
    total: Money | None


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value or "")


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start:start + _CHUNK])


class DriftFinder:
    """Finds the differences between Stripe, Clarity and ERPNext for a window (see the module's rules).

    Parameters
    ----------
    stripe, clarity, erp:
        The gateways (listings page by page; lookups by key).
    paid_statuses:
        Clarity order statuses that say the order was paid (with a recorded ``PaymentTransactionID`` an order is
        paid whatever its status).
    refunded_return_statuses:
        Clarity return statuses that say the return was paid back.
    default_currency:
        The currency of Clarity orders and returns without ``CurrencyKey`` (single-currency stores).
    page_size:
        Records per listing request (Stripe allows up to 100).
    """

    def __init__(self, stripe: StripeGateway, clarity: ClarityGateway, erp: ErpGateway, *,
                 paid_statuses: Iterable[str], refunded_return_statuses: Iterable[str],
                 default_currency: str | None = None, page_size: int = 100) -> None:
        self._stripe, self._clarity, self._erp = stripe, clarity, erp
        self.paid_statuses = frozenset(s for s in paid_statuses if s)
        self.refunded_return_statuses = frozenset(s for s in refunded_return_statuses if s)
        self._default_currency = default_currency.upper() if default_currency else None
        self._page_size = page_size

    def find(self, since: datetime, until: datetime | None = None) -> DriftReport:
        """Every difference about the records created or changed from ``since`` to ``until`` (default: now).

        Raises
        ------
        BridgeError
            A system could not be read (``UpstreamUnavailable``, ``UpstreamAuthFailed``, ...).
        """
        until = until or datetime.now(UTC)
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        return _Search(self, DriftReport(since=since, until=until)).run()


class _Search:
    """One run of :meth:`DriftFinder.find`: the summaries kept across pages and the comparisons."""

    def __init__(self, finder: DriftFinder, report: DriftReport) -> None:
        self.f, self.report = finder, report
        self.stripe, self.clarity, self.erp = finder._stripe, finder._clarity, finder._erp
        self.window = {"created_gte": _epoch(report.since), "created_lte": _epoch(report.until),
                       "page_size": finder._page_size}
        self.charges_by_key: dict[str, list[_Charge]] = defaultdict(list)
        self.orders: dict[str, _Order] = {}
        self.changed_orders: list[str] = []
        self.refunds: dict[str, str] = {}  # refund id -> status, those listed
        self.order_keys_of_pi: dict[str, str] = {}

    def add(self, d: Difference) -> None:
        self.report.differences.append(d)

    def skip(self, system: str, ref: str, exc: MappingError) -> None:
        self.report.skipped.append({"system": system, "ref": ref, "reason": exc.message})

    def run(self) -> DriftReport:
        self.charges()
        self.orders_changed()
        self.match_orders()
        self.refund_pages()
        self.returns_changed()
        self.disputes()
        order = {k: i for i, k in enumerate(KINDS)}
        self.report.differences.sort(key=lambda d: (order.get(d.kind, len(order)), d.ref, d.against))
        return self.report

    # -- ERPNext lookups ----------------------------------------------------------------------------
    def erp_rows(self, doctype: str, key_field: str, keys: Sequence[str], fields: Sequence[str],
                 extra: Sequence[Sequence[Any]] = ()) -> dict[str, dict[str, Any]]:
        """The submitted documents whose ``key_field`` is one of ``keys`` (one request per 100 keys)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(set(keys))):
            for row in self.erp.list_docs(doctype, filters=[[key_field, "in", chunk], ["docstatus", "=", 1], *extra],
                                          fields=[key_field, "name", *fields], limit=0):
                found.setdefault(str(row[key_field]), row)
        return found

    def erp_money(self, row: Mapping[str, Any], value: str, currency_field: str, fallback: str) -> Money:
        currency = str(row.get(currency_field) or fallback).upper()
        return money_from_erp(row.get(value), currency, field=f"{row.get('name')}.{value}")

    # -- Stripe charges -----------------------------------------------------------------------------
    def order_key_of(self, obj: Mapping[str, Any]) -> str:
        key = str((obj.get("metadata") or {}).get(ORDER_KEY) or "")
        pi = _text(obj, "payment_intent")
        if key or not pi:
            return key
        if pi not in self.order_keys_of_pi:
            try:
                intent = self.stripe.retrieve_payment_intent(pi)
            except NotFound:
                intent = {}
            self.order_keys_of_pi[pi] = str((intent.get("metadata") or {}).get(ORDER_KEY) or "")
        return self.order_keys_of_pi[pi]

    def charges(self) -> None:
        for page in self.stripe.list_charges(**self.window):
            self.report.scanned["stripe.charges"] += len(page)
            for obj in page:
                if obj.get("status") != "succeeded":
                    continue
                try:
                    currency = str(obj.get("currency") or "")
                    ch = _Charge(id=str(obj["id"]), payment_intent=_text(obj, "payment_intent"),
                                 order_key=self.order_key_of(obj),
                                 amount=from_stripe_amount(int(obj.get("amount") or 0), currency),
                                 captured=from_stripe_amount(int(obj.get("amount_captured") or 0), currency))
                except MappingError as exc:
                    self.skip("stripe", str(obj.get("id")), exc)
                    continue
                if ch.order_key:
                    self.charges_by_key[ch.order_key].append(ch)
                else:
                    self.add(Difference(
                        "charge_without_order", ch.id, "the charge succeeded but names no Clarity order "
                        f"(no metadata.{ORDER_KEY} on it or its PaymentIntent)",
                        "find the order it paid for: set metadata.clarity_order_key on the PaymentIntent to its key "
                        "(then resend payment_intent.succeeded), or refund the charge if nothing was sold",
                        ids=self._charge_ids(ch), amount=ch.captured if ch.captured.minor else ch.amount))

    @staticmethod
    def _charge_ids(ch: _Charge) -> dict[str, str]:
        ids = {"stripe.charge": ch.id}
        if ch.payment_intent:
            ids["stripe.payment_intent"] = ch.payment_intent
        if ch.order_key:
            ids["clarity.order"] = ch.order_key
        return ids

    def payment_entries(self, captured: Mapping[str, _Charge]) -> None:
        rows = self.erp_rows("Payment Entry", "reference_no", list(captured),
                             ["paid_amount", "paid_to_account_currency"], [["payment_type", "=", "Receive"]])
        for charge_id, ch in captured.items():
            row = rows.get(charge_id)
            if row is None:
                self.add(Difference(
                    "charge_without_payment_entry", ch.id, "ERPNext has no submitted received Payment Entry with "
                    "this charge as reference_no", f"book the payment: {_REPLAY} (payment_intent.succeeded)",
                    ids=self._charge_ids(ch), amount=ch.captured))
                continue
            try:
                paid = self.erp_money(row, "paid_amount", "paid_to_account_currency", ch.captured.currency)
            except MappingError as exc:
                self.skip("erp", str(row.get("name")), exc)
                continue
            if paid != ch.captured:
                self.add(Difference(
                    "amount_mismatch", ch.id, f"Stripe captured {_label(ch.captured)}, the Payment Entry says "
                    f"{_label(paid)}", "cancel the Payment Entry and book the captured amount (amend it), or find "
                    "why the charge was captured differently", ids={**self._charge_ids(ch),
                                                                     "erp.payment_entry": str(row["name"])},
                    amount=ch.captured, expected=paid, against="erp.payment_entry"))

    # -- Clarity orders -----------------------------------------------------------------------------
    def order_summary(self, row: Mapping[str, Any], currency_hint: str | None = None) -> _Order:
        key = str(row.get("CustomKey") or "")
        currency = str(row.get("CurrencyKey") or currency_hint or self.f._default_currency or "").upper()
        total: Money | None = None
        if currency:
            try:
                total = money_from_clarity((row.get("Totals") or {}).get("Total", 0), currency, field="Totals.Total")
            except MappingError as exc:
                self.skip("clarity", key or str(row.get("ID")), exc)
        return _Order(key=key, id=str(row.get("ID") or ""), status=str(row.get("StatusKey") or ""),
                      transaction=str(row.get("PaymentTransactionID") or ""), total=total)

    def orders_changed(self) -> None:
        for page in self.clarity.orders_changed(self.report.since, until=self.report.until,
                                                page_size=self.f._page_size):
            self.report.scanned["clarity.orders"] += len(page)
            for row in page:
                key = str(row.get("CustomKey") or "")
                if not key:
                    continue
                charges = self.charges_by_key.get(key)
                self.orders[key] = self.order_summary(row, charges[0].amount.currency if charges else None)
                self.changed_orders.append(key)

    def is_paid(self, order: _Order) -> bool:
        return bool(order.transaction) or order.status in self.f.paid_statuses

    def match_orders(self) -> None:
        missing = [k for k in self.charges_by_key if k not in self.orders]
        for chunk in _chunks(missing):
            for row in self.clarity.find_orders(keys=chunk):
                key = str(row.get("CustomKey") or "")
                if key in self.charges_by_key:
                    self.orders[key] = self.order_summary(row, self.charges_by_key[key][0].amount.currency)
        captured: dict[str, _Charge] = {}  # of existing orders: a charge without one is booked nowhere, by design
        for key, charges in self.charges_by_key.items():
            order = self.orders.get(key)
            for ch in charges:
                if order is not None and ch.captured.minor > 0:
                    captured[ch.id] = ch
                if order is None:
                    self.add(Difference(
                        "charge_without_order", ch.id, f"the charge names Clarity order {key}, which does not exist",
                        "find the order (a typo in the key, a deleted order): recreate it in Clarity with this key "
                        "or refund the charge", ids=self._charge_ids(ch), amount=ch.captured if ch.captured.minor else ch.amount))
                elif order.total is not None and order.total != ch.amount:
                    self.add(Difference(
                        "amount_mismatch", ch.id, f"Stripe charged {_label(ch.amount)}, Clarity order {key} totals "
                        f"{_label(order.total)}", "correct the order's total in Clarity, or refund the difference "
                        "(charged too much) or collect it (charged too little)",
                        ids={**self._charge_ids(ch), "clarity.order_id": order.id}, amount=ch.amount,
                        expected=order.total, against="clarity.order"))
        ids = sorted(captured)
        for chunk in _chunks(ids):
            self.payment_entries({i: captured[i] for i in chunk})
        expected_in_erp = {k for k, charges in self.charges_by_key.items()
                           if k in self.orders and any(c.captured.minor for c in charges)}
        for key in self.changed_orders:
            order = self.orders[key]
            if not self.is_paid(order):
                continue
            if key in self.charges_by_key:
                continue
            payment = self.payment_of(order)
            if payment == "captured":
                expected_in_erp.add(key)
            if payment:
                continue
            self.add(Difference(
                "order_paid_without_charge", key, f"Clarity says the order is paid ({order.status or 'no status'}"
                + (f", transaction {order.transaction}" if order.transaction else "") + ") but Stripe has no "
                "succeeded charge or authorised PaymentIntent for it",
                "check how it was paid: if not through Stripe, record the real payment in Clarity; otherwise set the "
                "order back to its pending status and ask the customer to pay (the payment link)",
                ids={"clarity.order": key, "clarity.order_id": order.id,
                     **({"stripe.transaction": order.transaction} if order.transaction else {})},
                amount=order.total))
        sales_orders = self.erp_rows("Sales Order", "po_no", sorted(expected_in_erp), [])
        for key in sorted(expected_in_erp - set(sales_orders)):
            order = self.orders[key]
            charge = next(iter(self.charges_by_key.get(key) or ()), None)
            self.add(Difference(
                "order_without_erp_sales_order", key, "the order is paid but ERPNext has no submitted Sales Order "
                "with it as po_no", f"create it: {_REPLAY} (payment_intent.succeeded of the order's PaymentIntent)",
                ids={"clarity.order": key, "clarity.order_id": order.id,
                     **({"stripe.charge": charge.id} if charge else {})}, amount=order.total))

    def payment_of(self, order: _Order) -> str:
        """What Stripe holds for an order whose charge was not listed (made before the window): ``captured``,
        ``authorised`` or nothing (by the order's transaction id, else by the PaymentIntents' metadata)."""
        txn = order.transaction
        try:
            if txn.startswith("ch_"):
                charge = self.stripe.retrieve_charge(txn)
                if charge.get("status") != "succeeded":
                    return ""
                return "captured" if int(charge.get("amount_captured") or 0) else "authorised"
            intents = ([self.stripe.retrieve_payment_intent(txn)] if txn.startswith("pi_") else
                       self.stripe.find_payment_intents_by_metadata({ORDER_KEY: order.key}, limit=10))
        except NotFound:
            return ""
        statuses = {str(pi.get("status")) for pi in intents}
        return "captured" if "succeeded" in statuses else "authorised" if statuses & set(_AUTHORISED) else ""

    # -- Stripe refunds -----------------------------------------------------------------------------
    def refund_pages(self) -> None:
        for page in self.stripe.list_all_refunds(**self.window):
            self.report.scanned["stripe.refunds"] += len(page)
            booked: dict[str, dict[str, Any]] = {}
            for obj in page:
                refund_id = str(obj.get("id") or "")
                self.refunds[refund_id] = str(obj.get("status") or "")
                try:
                    r = refund_from_stripe(obj)
                except MappingError as exc:
                    self.skip("stripe", refund_id, exc)
                    continue
                if r.status not in ACTIVE or (r.echo and not r.return_id):
                    continue  # reversed (books undone), or the bridge's refund of a voided order (never booked)
                charge = obj.get("charge")
                charge_obj = charge if isinstance(charge, Mapping) else {}
                ids = {"stripe.refund": r.id, "stripe.charge": _text(obj, "charge")}
                order_key = self.order_key_of(charge_obj) if charge_obj else ""
                if order_key:
                    ids["clarity.order"] = order_key
                booked[r.id] = {"view": r, "ids": ids}
            self.refund_returns(booked)
            self.refund_books(booked)

    def refund_returns(self, booked: Mapping[str, dict[str, Any]]) -> None:
        by_key = [i for i, b in booked.items() if not b["view"].return_id]
        by_id = {b["view"].return_id: i for i, b in booked.items() if b["view"].return_id}
        found_keys = {str(r.get("CustomKey")) for r in self.clarity.find_returns(keys=by_key)} if by_key else set()
        found_ids = ({str(r.get("ID")): r for r in self.clarity.find_returns(
            ids=[int(i) for i in by_id if i.isdigit()])} if by_id else {})
        for refund_id, b in booked.items():
            r = b["view"]
            if r.return_id:
                ret = found_ids.get(r.return_id)
                if ret is not None and str(ret.get("RefundTransactionID") or "") == r.id:
                    continue
                reason = (f"the bridge refunded Clarity return {r.return_key or r.return_id} but "
                          + ("that return does not exist" if ret is None else
                             f"the return does not record it (RefundTransactionID {ret.get('RefundTransactionID')!r})"))
            elif refund_id in found_keys:
                continue
            else:
                reason = "Clarity has no sales return for this refund (CustomKey = the refund id)"
            self.add(Difference("refund_without_return", refund_id, reason,
                                f"make the return: {_REPLAY} (refund.created, or the return's clarity.return_refunded "
                                "run)", ids={**b["ids"], **({"clarity.return_id": r.return_id} if r.return_id else {})},
                                amount=r.amount))

    def refund_books(self, booked: Mapping[str, dict[str, Any]]) -> None:
        notes = self.erp_rows("Sales Invoice", "remarks", [f"Stripe refund {i}" for i in booked], [],
                              [["is_return", "=", 1]])
        succeeded = [i for i, b in booked.items() if b["view"].status == "succeeded"]
        pays = self.erp_rows("Payment Entry", "reference_no", succeeded, [], [["payment_type", "=", "Pay"]])
        for refund_id, b in booked.items():
            r = b["view"]
            if f"Stripe refund {refund_id}" not in notes:
                self.add(Difference(
                    "refund_without_credit_note", refund_id, "ERPNext has no submitted credit note (Sales Invoice "
                    f"is_return 1) with remarks 'Stripe refund {refund_id}'",
                    f"book it: {_REPLAY} (refund.created or charge.refunded)", ids=dict(b["ids"]), amount=r.amount))
            if r.status == "succeeded" and refund_id not in pays:
                self.add(Difference(
                    "refund_without_payment_entry", refund_id, "the refund succeeded but ERPNext has no submitted Pay "
                    "Payment Entry with it as reference_no", f"book it: {_REPLAY} (refund.updated or charge.refunded)",
                    ids=dict(b["ids"]), amount=r.amount))

    # -- Clarity returns ----------------------------------------------------------------------------
    def returns_changed(self) -> None:
        for page in self.clarity.returns_changed(self.report.since, until=self.report.until,
                                                 page_size=self.f._page_size):
            self.report.scanned["clarity.returns"] += len(page)
            for row in page:
                if str(row.get("StatusKey") or "") not in self.f.refunded_return_statuses:
                    continue
                self.check_refunded_return(row)

    def check_refunded_return(self, row: Mapping[str, Any]) -> None:
        key, txn = str(row.get("CustomKey") or row.get("ID") or ""), str(row.get("RefundTransactionID") or "")
        currency = str(row.get("CurrencyKey") or self.f._default_currency or "").upper()
        amount: Money | None = None
        if currency and row.get("RefundAmount") is not None:
            try:
                amount = money_from_clarity(row.get("RefundAmount"), currency, field="RefundAmount")
            except MappingError as exc:
                self.skip("clarity", key, exc)
        if txn.startswith("pi_"):
            return  # settled by capturing less or cancelling: no refund was due
        if txn.startswith("re_"):
            status = self.refunds.get(txn)
            if status is None:
                try:
                    status = str(self.stripe.retrieve_refund(txn).get("status") or "")
                except NotFound:
                    status = "missing"
            if status in ACTIVE:
                return
            reason = (f"the return says it was refunded by {txn}, which Stripe "
                      + ("does not have" if status == "missing" else f"says is {status}"))
        elif amount is None or amount.minor <= 0:
            return  # nothing to pay back
        else:
            reason = "the return says it was refunded but names no Stripe refund (RefundTransactionID is empty)"
        self.add(Difference(
            "return_refunded_without_stripe_refund", key, reason,
            "pay the customer back: move the return back to the refund status so the bridge refunds it in Stripe, "
            "or correct RefundTransactionID if it was refunded otherwise",
            ids={"clarity.return": key, "clarity.return_id": str(row.get("ID") or ""),
                 **({"stripe.refund": txn} if txn else {})}, amount=amount))

    # -- Stripe disputes ----------------------------------------------------------------------------
    def disputes(self) -> None:
        accounts = DisputeAccounts()  # the accounts do not matter here: only the entries' keys do
        for page in self.stripe.list_disputes(**self.window):
            self.report.scanned["stripe.disputes"] += len(page)
            planned: dict[str, tuple[Any, list[str]]] = {}
            for obj in page:
                try:
                    view = dispute_from_stripe(obj)
                    keys = [j.key for j in planned_journals(view, accounts)]
                except MappingError as exc:
                    self.skip("stripe", str(obj.get("id")), exc)
                    continue
                if keys:
                    planned[view.id] = (view, keys)
            entries = self.erp_rows("Journal Entry", "cheque_no", [k for _, ks in planned.values() for k in ks], [])
            for dispute_id, (view, keys) in planned.items():
                missing = [k for k in keys if k not in entries]
                if missing:
                    self.add(Difference(
                        "dispute_without_journal", dispute_id, "ERPNext has no submitted Journal Entry with cheque_no "
                        + ", ".join(missing), f"book it: {_REPLAY} (charge.dispute.funds_withdrawn / closed)",
                        ids={"stripe.dispute": dispute_id, "stripe.charge": view.charge_id,
                             "stripe.balance_transactions": ",".join(missing)}, amount=view.amount))


def _label(money: Money) -> str:
    return f"{format_money(money)} {money.currency}"
