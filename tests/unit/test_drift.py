"""The drift finder's comparisons over small in-memory records (``services.drift``), and the scheduled check's
once-per-difference alert (``services.drift_watch``).

The gateways here are tiny in-memory stand-ins holding vendor-shaped dicts: each listing pages its records
(two a page, so every comparison crosses a page boundary) and each lookup answers by key, as the real APIs do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import NotFound, UpstreamUnavailable
from commerce_bridge.services.alerts import Alert
from commerce_bridge.services.drift import KINDS, Difference, DriftFinder, DriftReport
from commerce_bridge.services.drift_watch import DriftWatch, drift_alert

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
T = int((NOW - timedelta(days=1)).timestamp())
PAGE = 2


def _pages(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), PAGE):
        yield [dict(r) for r in rows[i:i + PAGE]]


class Stripe:
    def __init__(self) -> None:
        self.charges: list[dict[str, Any]] = []
        self.refunds: list[dict[str, Any]] = []
        self.disputes: list[dict[str, Any]] = []
        self.intents: dict[str, dict[str, Any]] = {}
        self.down = False

    def charge(self, cid: str, amount: int, *, key: str | None = "WEB-1", currency: str = "usd",
               captured: int | None = None, status: str = "succeeded", created: int = T) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": cid, "object": "charge", "amount": amount, "currency": currency, "status": status,
               "amount_captured": amount if captured is None else captured, "payment_intent": f"pi_{cid[3:]}",
               "metadata": {"clarity_order_key": key} if key else {}, "created": created}
        self.charges.append(obj)
        self.intents[obj["payment_intent"]] = {"id": obj["payment_intent"], "status": "succeeded",
                                               "metadata": dict(obj["metadata"])}
        return obj

    def refund(self, rid: str, charge: dict[str, Any], amount: int, *, status: str = "succeeded",
               metadata: dict[str, str] | None = None) -> None:
        self.refunds.append({"id": rid, "object": "refund", "amount": amount, "currency": charge["currency"],
                             "status": status, "charge": charge, "metadata": metadata or {}, "created": T})

    def _window(self, rows: list[dict[str, Any]], created_gte: int, created_lte: int | None) -> list[dict[str, Any]]:
        if self.down:
            raise UpstreamUnavailable("Stripe is down")
        return [r for r in rows if r["created"] >= created_gte and (created_lte is None or r["created"] <= created_lte)]

    def list_charges(self, *, created_gte: int, created_lte: int | None = None,
                     page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return _pages(self._window(self.charges, created_gte, created_lte))

    def list_all_refunds(self, *, created_gte: int, created_lte: int | None = None,
                         page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return _pages(self._window(self.refunds, created_gte, created_lte))

    def list_disputes(self, *, created_gte: int, created_lte: int | None = None,
                      page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return _pages(self._window(self.disputes, created_gte, created_lte))

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        for c in self.charges:
            if c["id"] == charge_id:
                return c
        raise NotFound(charge_id)

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        for r in self.refunds:
            if r["id"] == refund_id:
                return r
        raise NotFound(refund_id)

    def retrieve_payment_intent(self, pi: str) -> dict[str, Any]:
        if pi not in self.intents:
            raise NotFound(pi)
        return self.intents[pi]

    def find_payment_intents_by_metadata(self, metadata: Mapping[str, str], *, limit: int = 100) -> list[Any]:
        return [p for p in self.intents.values() if all(p["metadata"].get(k) == v for k, v in metadata.items())]


class Clarity:
    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.returns: list[dict[str, Any]] = []

    def order(self, key: str, total: str, *, status: str = "Full Payment Received", txn: str = "",
              changed: datetime = NOW - timedelta(days=1), currency: str = "USD") -> None:
        self.orders.append({"ID": len(self.orders) + 1, "CustomKey": key, "StatusKey": status,
                            "Totals": {"Total": total}, "CurrencyKey": currency, "PaymentTransactionID": txn,
                            "_changed": changed})

    def sales_return(self, key: str, *, status: str = "Completed", txn: str = "", amount: str = "10.00",
                     rid: int | None = None) -> None:
        self.returns.append({"ID": rid or 100 + len(self.returns), "CustomKey": key, "StatusKey": status,
                             "RefundTransactionID": txn, "RefundAmount": amount, "CurrencyKey": "USD",
                             "_changed": NOW - timedelta(hours=2)})

    @staticmethod
    def _changed(rows: list[dict[str, Any]], since: datetime, until: datetime | None) -> Iterator[list[Any]]:
        return _pages([r for r in rows if since <= r["_changed"] and (until is None or r["_changed"] <= until)])

    def orders_changed(self, since: datetime, *, until: datetime | None = None,
                       page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return self._changed(self.orders, since, until)

    def returns_changed(self, since: datetime, *, until: datetime | None = None,
                        page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        return self._changed(self.returns, since, until)

    def find_orders(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["CustomKey"] in keys or o["ID"] in ids]

    def find_returns(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        return [r for r in self.returns if r["CustomKey"] in keys or r["ID"] in ids]


class Erp:
    def __init__(self) -> None:
        self.docs: dict[str, list[dict[str, Any]]] = {}
        self.requests = 0

    def add(self, doctype: str, **doc: Any) -> None:
        rows = self.docs.setdefault(doctype, [])
        rows.append({"name": f"{doctype[:3].upper()}-{len(rows) + 1}", "docstatus": 1, **doc})

    def list_docs(self, doctype: str, *, filters: Any = None, fields: Sequence[str] = ("name",), limit: int = 20,
                  order_by: str | None = None) -> list[dict[str, Any]]:
        self.requests += 1

        def match(doc: dict[str, Any], f: Sequence[Any]) -> bool:
            field, op, value = f
            return doc.get(field) in value if op == "in" else doc.get(field) == value

        return [{k: d.get(k) for k in fields} for d in self.docs.get(doctype, [])
                if all(match(d, f) for f in filters or [])]


def finder(stripe: Stripe, clarity: Clarity, erp: Erp) -> DriftFinder:
    return DriftFinder(stripe, clarity, erp, paid_statuses=["Full Payment Received", "Refunded"],  # type: ignore[arg-type]
                       refunded_return_statuses=["Completed"])


def booked_order(stripe: Stripe, clarity: Clarity, erp: Erp, key: str, cid: str, amount: int = 3300) -> dict[str, Any]:
    """An order paid and booked everywhere as the bridge does it."""
    charge = stripe.charge(cid, amount, key=key)
    clarity.order(key, f"{amount / 100:.2f}", txn=cid)
    erp.add("Sales Order", po_no=key)
    erp.add("Payment Entry", reference_no=cid, payment_type="Receive", paid_amount=f"{amount / 100:.2f}",
            paid_to_account_currency="USD")
    return charge


def kinds(found: list[Difference]) -> list[tuple[str, str]]:
    return sorted((d.kind, d.ref) for d in found)


@pytest.fixture
def sides() -> tuple[Stripe, Clarity, Erp]:
    return Stripe(), Clarity(), Erp()


def test_records_booked_everywhere_make_no_differences(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    for n in range(5):  # three pages of charges
        booked_order(stripe, clarity, erp, f"WEB-{n}", f"ch_{n}")
    report = finder(stripe, clarity, erp).find(SINCE, NOW)
    assert report.differences == [] and report.skipped == []
    assert report.scanned["stripe.charges"] == 5 and report.scanned["clarity.orders"] == 5
    assert erp.requests == 2  # one request per 100 keys and document kind: the Payment Entries, the Sales Orders


def test_a_charge_without_an_order_is_found_whether_it_names_none_or_a_missing_one(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_anon", 1234, key=None)
    stripe.charge("ch_ghost", 500, key="WEB-GHOST")
    erp.add("Payment Entry", reference_no="ch_anon", payment_type="Receive", paid_amount="12.34",
            paid_to_account_currency="USD")
    erp.add("Payment Entry", reference_no="ch_ghost", payment_type="Receive", paid_amount="5.00",
            paid_to_account_currency="USD")
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert kinds(found) == [("charge_without_order", "ch_anon"), ("charge_without_order", "ch_ghost")]
    anon = next(d for d in found if d.ref == "ch_anon")
    assert anon.amount == Money(1234, "USD") and anon.ids["stripe.payment_intent"] == "pi_anon"


def test_an_order_paid_in_clarity_without_a_stripe_payment_is_found(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    clarity.order("WEB-NOPAY", "19.99")  # paid status, no transaction, no PaymentIntent found by metadata
    clarity.order("WEB-LOST", "5.00", status="Shipped", txn="ch_gone")  # names a charge Stripe does not have
    clarity.order("WEB-PENDING", "5.00", status="Pending")  # not paid: nothing expected
    old = booked_order(stripe, clarity, erp, "WEB-OLD", "ch_old")
    old["created"] = T - 30 * 86400  # its charge is older than the window: looked up by the order's transaction
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert kinds(found) == [("order_paid_without_charge", "WEB-LOST"), ("order_paid_without_charge", "WEB-NOPAY")]
    assert next(d for d in found if d.ref == "WEB-NOPAY").amount == Money(1999, "USD")


def test_missing_erp_documents_of_a_paid_order_are_found(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_1", 3300, key="WEB-1")
    clarity.order("WEB-1", "33.00", txn="ch_1")
    erp.add("Payment Entry", reference_no="ch_1", payment_type="Receive", paid_amount="33.00",
            paid_to_account_currency="USD", docstatus=2)  # cancelled: counts as missing
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert kinds(found) == [("charge_without_payment_entry", "ch_1"), ("order_without_erp_sales_order", "WEB-1")]
    assert all(d.amount == Money(3300, "USD") for d in found)


def test_an_authorisation_not_captured_yet_expects_no_books(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_auth", 3300, key="WEB-AUTH", captured=0)
    clarity.order("WEB-AUTH", "33.00", txn="pi_auth")
    stripe.charge("ch_failed", 3300, key="WEB-X", status="failed")
    assert finder(stripe, clarity, erp).find(SINCE, NOW).differences == []


def test_amounts_are_compared_exactly_charge_against_order_and_payment_entry(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    booked_order(stripe, clarity, erp, "WEB-1", "ch_1", 3300)
    clarity.orders[-1]["Totals"]["Total"] = "33.01"
    stripe.charge("ch_kwd", 12750, key="WEB-KWD", currency="kwd")
    clarity.order("WEB-KWD", "12.750", txn="ch_kwd", currency="KWD")
    erp.add("Sales Order", po_no="WEB-KWD")
    erp.add("Payment Entry", reference_no="ch_kwd", payment_type="Receive", paid_amount="12.740",
            paid_to_account_currency="KWD")
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert sorted((d.kind, d.ref, d.against, d.amount, d.expected) for d in found) == [
        ("amount_mismatch", "ch_1", "clarity.order", Money(3300, "USD"), Money(3301, "USD")),
        ("amount_mismatch", "ch_kwd", "erp.payment_entry", Money(12750, "KWD"), Money(12740, "KWD"))]


def test_a_partial_capture_is_no_mismatch(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_part", 3300, key="WEB-P", captured=2000)
    clarity.order("WEB-P", "33.00", txn="ch_part")
    erp.add("Sales Order", po_no="WEB-P")
    erp.add("Payment Entry", reference_no="ch_part", payment_type="Receive", paid_amount="20.00",
            paid_to_account_currency="USD")
    assert finder(stripe, clarity, erp).find(SINCE, NOW).differences == []


def test_refunds_need_a_return_a_credit_note_and_once_succeeded_a_pay_entry(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    charge = booked_order(stripe, clarity, erp, "WEB-1", "ch_1")
    stripe.refund("re_ok", charge, 1000)
    clarity.sales_return("re_ok", txn="re_ok")
    erp.add("Sales Invoice", remarks="Stripe refund re_ok", is_return=1)
    erp.add("Payment Entry", reference_no="re_ok", payment_type="Pay")
    stripe.refund("re_bare", charge, 500)  # nothing booked anywhere
    stripe.refund("re_pending", charge, 300, status="pending")  # a return and a credit note, no Pay entry yet
    clarity.sales_return("re_pending", status="Pending")
    erp.add("Sales Invoice", remarks="Stripe refund re_pending", is_return=1)
    stripe.refund("re_failed", charge, 700, status="failed")  # reversed: nothing expected
    stripe.refund("re_void", charge, 800, metadata={"bridge": "commerce-bridge"})  # a voided order's: never booked
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert kinds(found) == [("refund_without_credit_note", "re_bare"), ("refund_without_payment_entry", "re_bare"),
                            ("refund_without_return", "re_bare")]
    assert {d.amount for d in found} == {Money(500, "USD")}
    assert found[0].ids["clarity.order"] == "WEB-1"


def test_a_bridge_refund_of_a_clarity_return_must_be_recorded_on_that_return(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    charge = booked_order(stripe, clarity, erp, "WEB-1", "ch_1")
    mine = {"bridge": "commerce-bridge", "clarity_return_id": "7", "clarity_return_key": "RET-7"}
    stripe.refund("re_b", charge, 1000, metadata=mine)
    clarity.sales_return("RET-7", status="Refund Approved", rid=7)  # the refund is not recorded on it
    erp.add("Sales Invoice", remarks="Stripe refund re_b", is_return=1)
    erp.add("Payment Entry", reference_no="re_b", payment_type="Pay")
    [d] = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert (d.kind, d.ref, d.ids["clarity.return_id"]) == ("refund_without_return", "re_b", "7")
    clarity.returns[-1]["RefundTransactionID"] = "re_b"
    assert finder(stripe, clarity, erp).find(SINCE, NOW).differences == []


def test_a_return_refunded_in_clarity_needs_a_stripe_refund_that_holds_money(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    clarity.sales_return("RET-1", txn="re_missing")
    clarity.sales_return("RET-2", txn="")  # completed with an amount but no refund named
    clarity.sales_return("RET-3", txn="pi_settled")  # settled by capturing less: no refund due
    clarity.sales_return("RET-4", txn="re_x", status="Refund Failed")  # not a refunded status
    clarity.sales_return("RET-5", txn="", amount="0")
    found = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert kinds(found) == [("return_refunded_without_stripe_refund", "RET-1"),
                            ("return_refunded_without_stripe_refund", "RET-2")]
    assert {d.amount for d in found} == {Money(1000, "USD")}


def dispute(did: str, status: str, *movements: tuple[str, int, int]) -> dict[str, Any]:
    return {"id": did, "object": "dispute", "amount": 3300, "currency": "usd", "charge": "ch_1", "status": status,
            "reason": "fraudulent", "created": T, "payment_method_details": {"card": {"case_type": "chargeback"}},
            "balance_transactions": [{"id": t, "amount": a, "fee": f, "currency": "usd", "created": T}
                                     for t, a, f in movements]}


def test_every_money_movement_of_a_dispute_needs_its_journal(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.disputes = [
        dispute("dp_ok", "needs_response", ("txn_1", -3300, 1500)),
        dispute("dp_lost", "lost", ("txn_2", -3300, 1500)),  # its withdrawal booked, not its chargeback
        {**dispute("du_inquiry", "warning_needs_response"),
         "payment_method_details": {"card": {"case_type": "inquiry"}}},  # no money moved
    ]
    erp.add("Journal Entry", cheque_no="txn_1")
    erp.add("Journal Entry", cheque_no="txn_2")
    [d] = finder(stripe, clarity, erp).find(SINCE, NOW).differences
    assert (d.kind, d.ref, d.ids["stripe.balance_transactions"]) == ("dispute_without_journal", "dp_lost",
                                                                     "dp_lost:chargeback")


def test_totals_count_and_sum_per_kind_and_currency(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_a", 1000, key=None)
    stripe.charge("ch_b", 250, key=None)
    stripe.charge("ch_c", 1500, key=None, currency="jpy")
    for c in stripe.charges:
        erp.add("Payment Entry", reference_no=c["id"], payment_type="Receive",
                paid_amount=str(c["amount"] if c["currency"] == "jpy" else c["amount"] / 100),
                paid_to_account_currency=c["currency"].upper())
    clarity.order("WEB-NOPAY", "1.00")
    report = finder(stripe, clarity, erp).find(SINCE, NOW)
    assert report.totals() == [
        {"kind": "charge_without_order", "currency": "JPY", "count": 1, "amount_minor": 1500},
        {"kind": "charge_without_order", "currency": "USD", "count": 2, "amount_minor": 1250},
        {"kind": "order_paid_without_charge", "currency": "USD", "count": 1, "amount_minor": 100},
    ]
    shown = report.to_dict(limit=1)
    assert shown["total"] == 4 and shown["shown"] == 1 and len(shown["differences"]) == 1
    assert {t["kind"] for t in shown["totals"]} <= set(KINDS)


def test_records_outside_the_window_are_not_compared(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_late", 1000, key=None, created=int(NOW.timestamp()) + 60)  # younger than `until`
    clarity.order("WEB-OLD", "1.00", changed=SINCE - timedelta(days=1))
    assert finder(stripe, clarity, erp).find(SINCE, NOW).differences == []


def test_an_amount_that_cannot_be_read_is_skipped_and_the_rest_compared(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    clarity.order("WEB-ODD", "19.995")  # finer than a cent
    stripe.charge("ch_anon", 1000, key=None)
    erp.add("Payment Entry", reference_no="ch_anon", payment_type="Receive", paid_amount="10.00",
            paid_to_account_currency="USD")
    report = finder(stripe, clarity, erp).find(SINCE, NOW)
    assert [s["ref"] for s in report.skipped] == ["WEB-ODD"]
    assert kinds(report.differences) == [("charge_without_order", "ch_anon"),
                                         ("order_paid_without_charge", "WEB-ODD")]


def test_a_system_that_cannot_be_read_stops_the_search(sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.down = True
    with pytest.raises(UpstreamUnavailable):
        finder(stripe, clarity, erp).find(SINCE, NOW)


class Seen:
    def __init__(self) -> None:
        self.rows: dict[str, datetime] = {}

    def first_seen(self, kinds: Mapping[str, str], *, now: datetime) -> set[str]:
        new = {k for k in kinds if k not in self.rows}
        self.rows.update(dict.fromkeys(kinds, now))
        return new

    def forget_before(self, cutoff: datetime) -> int:
        old = [k for k, at in self.rows.items() if at < cutoff]
        for k in old:
            del self.rows[k]
        return len(old)


def test_the_scheduled_check_alerts_once_per_new_difference_with_ids_and_amounts_only(
        sides: tuple[Stripe, Clarity, Erp]) -> None:
    stripe, clarity, erp = sides
    stripe.charge("ch_anon", 1234, key=None)
    erp.add("Payment Entry", reference_no="ch_anon", payment_type="Receive", paid_amount="12.34",
            paid_to_account_currency="USD")
    sent: list[Alert] = []
    now = [NOW]
    watch = DriftWatch(finder(stripe, clarity, erp), Seen(), window=timedelta(days=7), settle=timedelta(minutes=5),
                       alert=sent.append, clock=lambda: now[0])
    _, new = watch.check_once()
    assert [d.ref for d in new] == ["ch_anon"]
    [alert] = sent
    assert alert.kind == "drift.found" and alert.details["by_kind"] == {"charge_without_order": 1}
    assert alert.details["differences"] == [{"kind": "charge_without_order", "ref": "ch_anon",
                                             "ids": {"stripe.charge": "ch_anon", "stripe.payment_intent": "pi_anon"},
                                             "amount_minor": 1234, "currency": "USD"}]
    assert watch.check_once()[1] == [] and len(sent) == 1  # still there: not news
    clarity.order("WEB-NOPAY", "1.00")
    now[0] = NOW + timedelta(minutes=1)
    assert [d.ref for d in watch.check_once()[1]] == ["WEB-NOPAY"] and len(sent) == 2


def test_the_alert_lists_at_most_twenty_differences_and_counts_them_all() -> None:
    diffs = [Difference("charge_without_order", f"ch_{n}", "a reason", "a fix", amount=Money(n, "USD"))
             for n in range(25)]
    alert = drift_alert(DriftReport(SINCE, NOW, differences=diffs), diffs)
    assert alert.details["new"] == 25 and len(alert.details["differences"]) == 20
    assert set(alert.details["differences"][0]) == {"kind", "ref", "ids", "amount_minor", "currency"}
