"""Actions of the payout path (``stripe.payout_reconciled``): a paid Stripe payout is matched against what the
bridge booked and closed with one ERPNext Journal Entry; a failed one is reversed.

Rules (the matching itself is the pure columnar core, ``commerce_bridge.reconcile``):

- **Stripe's set, every page.** ``GET /v1/balance_transactions?payout=`` with ``source`` expanded, page by page
  (100 a page); only automatic payouts can be listed so (Stripe cannot attribute a manual payout's
  transactions): a manual payout is ``not_reconcilable``, said in the result and alerted, never guessed.
- **The bridge's side is what it booked in the ERP**, found by the Stripe ids it keyed them with, one list
  request per page and kind: the order flow's received Payment Entry (``reference_no`` = charge id), the
  refund flows' paid Payment Entry (``reference_no`` = refund id), the dispute flow's Journal Entries
  (``cheque_no`` = balance transaction id). Those amounts are already on the clearing account, so the
  payout's journal posts only the rest (fees, FX, lines nobody booked, the payout itself): the core's
  *booked* input. A charge's order is its ``metadata.clarity_order_key`` (the PaymentIntent's, which
  Stripe copies onto the charge; read from the PaymentIntent when the charge lacks it).
- **Recorded, then posted.** ``stripe.payout.reconcile`` stores the result (proof, journal lines summed per
  account, exceptions with their fixes) in the bridge's store, replacing an earlier one of the same payout;
  ``erp.payout_journal.post`` posts that journal as one Journal Entry, ``cheque_no`` = the payout id, found
  before it is made. A payout whose journal changed since it was posted (a re-run after a fix) has the old
  entry cancelled and the new one posted, and says so (``replaced``), for an alert.
- **A failed payout** (``payout.failed``) gets a reversing entry (``cheque_no`` = ``<payout id>:failed``, bank
  back to clearing) when its journal had been posted, and the reconciliation is marked ``failed``. Stripe
  credits the amount back with a ``payout_failure`` transaction that a later payout carries: that reversal is
  what booked it, so the later payout's journal posts nothing more for it.
- polars is imported when a payout is first reconciled, not when the process starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import NotFound, ValidationError
from commerce_bridge.mapping.erp import money_from_erp, money_to_erp
from commerce_bridge.mapping.metadata import ORDER_KEY
from commerce_bridge.mapping.money import format_money, from_stripe_amount
from commerce_bridge.services.gateways import ErpGateway, StripeGateway
from commerce_bridge.services.ports import Action, KeyLocks, Reconciliations, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, RATE, UNAVAILABLE, ex

ERP_DECIMALS = 2
LEDGER_ROLES = ("clearing", "bank", "receivable", "fees", "dispute_fees", "refunds", "disputes", "fx",
                "adjustments", "suspense")
"""The account roles of a payout journal (``CB_ERP_PAYOUT_ACCOUNTS`` maps them to ERPNext accounts)."""
_LIST_CHUNK = 100
_CHARGE_TYPES = ("charge", "payment")
_REFUND_TYPES = ("refund", "payment_refund")
_FAILURE_TYPES = ("payout_failure", "payout_cancel")


@dataclass
class _Side:
    """What the bridge booked for the transactions seen so far (rows of the core's input frames)."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    returns: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)
    booked: list[dict[str, Any]] = field(default_factory=list)


def _payout_id(params: Mapping[str, Any]) -> str:
    value = str(params.get("payout_id") or "")
    if not value.startswith("po_"):
        raise ValidationError(f"payout_id must be a Stripe payout id (po_...), got {value!r}",
                              suggested_fix="pass event.data.object.id of a payout.* event")
    return value


def _source(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    src = txn.get("source")
    return src if isinstance(src, Mapping) else {"id": src}


def _minor(amount: int, currency: str) -> int:
    return from_stripe_amount(amount, currency).minor


def _erp_amount(value: Any, currency: str, name: str) -> int:
    return money_from_erp(value, currency.upper(), field=f"{name}.paid_amount").minor


def _settled(booked_minor: int, booked_currency: str, txn: Mapping[str, Any]) -> int | None:
    """What an ERP document booked in ``booked_currency`` is worth in the transaction's (settlement) currency.

    The same currency: itself. The charge's own currency, settled in another at Stripe's ``exchange_rate``:
    converted at that rate (half to even, as the core converts), so that the payout's entry posts only
    Stripe's rounding difference on the FX account. Anything else: None (not counted as booked; the payout's
    entry then posts the transaction in full).
    """
    from commerce_bridge.reconcile.rules import convert_half_even, rate_units  # (the package loads polars)

    settlement = str(txn["currency"]).upper()
    if booked_currency == settlement:
        return booked_minor
    source = _source(txn)
    rate = txn.get("exchange_rate")
    if rate is None or str(source.get("currency") or "").upper() != booked_currency:
        return None
    return convert_half_even(booked_minor, minor_digits(booked_currency), rate_units(str(rate)),
                             minor_digits(settlement))


class PayoutReconciler:
    """Reconciles one payout: lists it, finds what the bridge booked, runs the core, records the result.

    Used by the workflow's step and by ``commerce-bridge reconcile payout`` alike.
    """

    def __init__(self, stripe: StripeGateway, erp: ErpGateway, store: Reconciliations,
                 accounts: Mapping[str, str]) -> None:
        self._stripe, self._erp, self._store = stripe, erp, store
        self.accounts = dict(accounts)

    def stripe_payouts(self, *, created_gte: int) -> Iterator[list[dict[str, Any]]]:
        """Stripe's paid payouts created at or after ``created_gte``, page by page."""
        return self._stripe.list_payouts(created_gte=created_gte, status="paid")

    # -- the bridge's side ------------------------------------------------------------------------------
    def _entries(self, doctype: str, key_field: str, keys: list[str],
                 extra: list[list[Any]], fields: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), _LIST_CHUNK):
            chunk = keys[i:i + _LIST_CHUNK]
            for row in self._erp.list_docs(doctype, filters=[[key_field, "in", chunk], ["docstatus", "=", 1],
                                                             *extra],
                                           fields=[key_field, *fields], limit=len(chunk) * 4):
                found.setdefault(str(row[key_field]), row)
        return found

    def _order_key(self, source: Mapping[str, Any], cache: dict[str, str]) -> str | None:
        key = (source.get("metadata") or {}).get(ORDER_KEY)
        if key:
            return str(key)
        pi = source.get("payment_intent")
        pi_id = pi.get("id") if isinstance(pi, Mapping) else pi
        if not pi_id:
            return None
        if pi_id not in cache:
            cache[pi_id] = str((self._stripe.retrieve_payment_intent(str(pi_id)).get("metadata") or {})
                               .get(ORDER_KEY) or "")
        return cache[pi_id] or None

    def _book_page(self, page: Sequence[Mapping[str, Any]], keys: dict[str, str | None], side: _Side) -> None:
        charges = {str(_source(t).get("id")): t for t in page if t.get("type") in _CHARGE_TYPES}
        refunds = {str(_source(t).get("id")): t for t in page if t.get("type") in _REFUND_TYPES}
        movements = {str(t["id"]): t for t in page if t.get("reporting_category") in ("dispute", "dispute_reversal")}
        received = self._entries("Payment Entry", "reference_no", sorted(charges), [["payment_type", "=", "Receive"]],
                                 ["name", "paid_amount", "paid_to_account_currency"])
        for charge_id, entry in received.items():
            txn = charges[charge_id]
            currency = str(entry.get("paid_to_account_currency") or txn["currency"]).upper()
            paid = _erp_amount(entry.get("paid_amount"), currency, str(entry.get("name")))
            key = keys.get(charge_id)
            if key:
                side.orders.setdefault(key, {"order_key": key, "amount_minor": 0, "currency": currency,
                                             "fee_minor": None})["amount_minor"] += paid
            gross = _settled(paid, currency, txn)
            if gross is not None:
                side.booked.append({"ref": txn["id"], "gross_minor": gross, "fee_minor": 0})
        paid_back = self._entries("Payment Entry", "reference_no", sorted(refunds), [["payment_type", "=", "Pay"]],
                                  ["name", "paid_amount", "paid_from_account_currency"])
        for refund_id, entry in paid_back.items():
            txn = refunds[refund_id]
            currency = str(entry.get("paid_from_account_currency") or txn["currency"]).upper()
            paid = _erp_amount(entry.get("paid_amount"), currency, str(entry.get("name")))
            side.returns.append({"refund_id": refund_id, "order_key": keys.get(refund_id),
                                 "amount_minor": paid, "currency": currency})
            gross = _settled(paid, currency, txn)
            if gross is not None:
                side.booked.append({"ref": txn["id"], "gross_minor": -gross, "fee_minor": 0})
        failures = {f"{_source(t).get('id')}:failed": t for t in page if t.get("type") in _FAILURE_TYPES}
        for key in self._entries("Journal Entry", "cheque_no", sorted(failures), [], ["name"]):
            back = failures[key]  # the failed payout's reversal moved it back onto clearing already
            side.booked.append({"ref": back["id"], "gross_minor": _minor(int(back["amount"]), str(back["currency"])),
                                "fee_minor": _minor(int(back["fee"]), str(back["currency"]))})
        journals = self._entries("Journal Entry", "cheque_no", sorted(movements), [], ["name"])
        for txn_id in journals:
            txn = movements[txn_id]
            dispute_id = str(_source(txn).get("id"))
            side.disputes.append({"dispute_id": dispute_id, "order_key": keys.get(dispute_id)})
            side.booked.append({"ref": txn_id, "gross_minor": _minor(int(txn["amount"]), str(txn["currency"])),
                                "fee_minor": _minor(int(txn["fee"]), str(txn["currency"]))})

    # -- the whole job ------------------------------------------------------------------------------------
    def reconcile(self, payout_id: str, *, record: bool = True) -> dict[str, Any]:
        """Reconcile the payout; with ``record``, store the result (the dry run does not)."""
        from commerce_bridge import reconcile as core  # polars: loaded on first use

        payout = self._stripe.retrieve_payout(payout_id)
        currency = str(payout["currency"]).upper()
        base = {"payout_id": payout_id, "currency": currency,
                "amount_minor": _minor(int(payout["amount"]), str(payout["currency"])),
                "arrival_date": payout.get("arrival_date"), "payout_status": payout.get("status")}
        if not payout.get("automatic"):
            manual: dict[str, Any] = {**base, "status": "not_reconcilable", "transactions": 0, "matched": 0, "exceptions": 0,
                      "proof": {}, "journal": [], "exception_rows": [],
                      "reason": "a manual payout: Stripe cannot list which transactions it paid out",
                      "suggested_fix": "reconcile it by hand against the bank statement, or use automatic payouts"}
            if record:
                self._store.save(manual, [])
            return manual
        if payout.get("status") not in ("paid", "in_transit"):
            raise ValidationError(f"payout {payout_id} is {payout.get('status')}; only a paid (or in-transit) "
                                  "payout can be reconciled",
                                  suggested_fix="reconcile it once Stripe sends payout.paid")
        side, count = _Side(), 0
        keys: dict[str, str | None] = {}
        pi_cache: dict[str, str] = {}

        def order_key_of(src: Mapping[str, Any]) -> str | None:
            sid = str(src.get("id"))
            if sid not in keys:
                keys[sid] = (self._order_key(src, pi_cache)
                             if src.get("object") in ("charge", "refund", "dispute") else None)
            return keys[sid]

        columns = core.TransactionColumns(payout_id, order_key_of)
        for page in self._stripe.payout_transactions(payout_id):
            columns.add_page(page)
            self._book_page(page, keys, side)
            count += len(page)
        records = core.frames_from_records([], [{"payout_id": payout_id, "amount": int(payout["amount"]),
                                                 "currency": str(payout["currency"])}],
                                           list(side.orders.values()), side.returns, side.disputes)
        inputs = replace(records, transactions=columns.frame())
        result = core.reconcile(inputs, core.LedgerAccounts(**self.accounts), booked=side.booked)
        proof_rows = [r for r in result.proof.to_dicts() if r["payout_id"] == payout_id]
        proof = proof_rows[0] if proof_rows else {}
        exceptions = [e for e in result.exceptions.to_dicts() if e.get("payout_id") in (payout_id, None)]
        journal = [{"account": line.account, "amount_minor": line.amount_minor, "currency": line.currency,
                    "refs": list(line.refs)} for line in core.journal_by_account(result, payout_id)]
        matched = result.lines.height - result.lines["kind"].count()
        summary = {**base, "status": "closed" if proof.get("closed") else "exceptions", "transactions": count,
                   "matched": matched, "exceptions": len(exceptions), "proof": proof, "journal": journal,
                   "exception_rows": exceptions}
        if record:
            self._store.save(summary, exceptions)
        return summary

    # -- the ERP journal ----------------------------------------------------------------------------------
    def journal_doc(self, payout_id: str, recorded: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Journal Entry of a recorded reconciliation (None: nothing to post)."""
        lines = list(recorded.get("journal") or ())
        if not lines:
            return None
        when = recorded.get("arrival_date")
        day = (datetime.fromtimestamp(int(when), UTC).date() if when else date.today()).isoformat()
        rows = []
        for line in lines:
            money = Money(abs(int(line["amount_minor"])), str(line["currency"]))
            zero = money_to_erp(Money(0, money.currency), precision=ERP_DECIMALS, field="amount")
            text = money_to_erp(money, precision=ERP_DECIMALS, field="amount")
            refs = list(line.get("refs") or ())
            remark = f"{len(refs)} Stripe transaction(s): " + ", ".join(refs[:5]) + (" ..." if len(refs) > 5 else "")
            rows.append({"account": line["account"],
                         "debit_in_account_currency": text if line["amount_minor"] > 0 else zero,
                         "credit_in_account_currency": zero if line["amount_minor"] > 0 else text,
                         "user_remark": remark})
        total = Money(int(recorded["amount_minor"]), str(recorded["currency"]))
        return {"voucher_type": "Journal Entry", "posting_date": day, "cheque_no": payout_id, "cheque_date": day,
                "user_remark": f"Stripe payout {payout_id} of {format_money(total)} {total.currency}: "
                               f"{recorded.get('transactions')} transactions, {recorded.get('exceptions')} "
                               f"exception(s) ({recorded.get('status')})",
                "accounts": rows}

    def post(self, payout_id: str) -> dict[str, Any]:
        """Post (or keep, or replace) the payout's Journal Entry from its recorded reconciliation."""
        recorded = self._store.get(payout_id)
        if recorded is None:
            raise NotFound(f"payout {payout_id} has no reconciliation recorded",
                           suggested_fix="run stripe.payout.reconcile (or `commerce-bridge reconcile payout`) first")
        doc = self.journal_doc(payout_id, recorded)
        existing = self._erp.find_by("Journal Entry", "cheque_no", payout_id)
        if existing is not None and doc is not None and _same_rows(existing, doc):
            self._store.set_journal_entry(payout_id, str(existing["name"]))
            return {"payout_id": payout_id, "journal_entry": existing["name"], "posted": False, "replaced": False}
        cancelled = None
        if existing is not None:
            cancelled = str(self._erp.cancel("Journal Entry", str(existing["name"]))["name"])
        if doc is None:
            self._store.set_journal_entry(payout_id, None)
            return {"payout_id": payout_id, "journal_entry": None, "posted": False, "replaced": cancelled is not None,
                    "cancelled": cancelled}
        made = self._erp.ensure_doc("Journal Entry", doc, "cheque_no")
        self._store.set_journal_entry(payout_id, str(made["name"]))
        return {"payout_id": payout_id, "journal_entry": made["name"], "posted": True,
                "replaced": cancelled is not None, "cancelled": cancelled}

    def reverse(self, payout_id: str) -> dict[str, Any]:
        """A failed payout: reverse its bank line (when its journal was posted) and mark it failed."""
        payout = self._stripe.retrieve_payout(payout_id)
        posted = self._erp.find_by("Journal Entry", "cheque_no", payout_id)
        recorded = self._store.get(payout_id)
        reversal = None
        if posted is not None:
            amount = Money(_minor(int(payout["amount"]), str(payout["currency"])), str(payout["currency"]).upper())
            text = money_to_erp(amount, precision=ERP_DECIMALS, field="amount")
            zero = money_to_erp(Money(0, amount.currency), precision=ERP_DECIMALS, field="amount")
            day = date.today().isoformat()
            doc = {"voucher_type": "Journal Entry", "posting_date": day, "cheque_no": f"{payout_id}:failed",
                   "cheque_date": day,
                   "user_remark": f"Stripe payout {payout_id} failed ({payout.get('failure_code') or 'no code'}): "
                                  "the amount is back on the Stripe balance",
                   "accounts": [{"account": self.accounts["clearing"], "debit_in_account_currency": text,
                                 "credit_in_account_currency": zero},
                                {"account": self.accounts["bank"], "debit_in_account_currency": zero,
                                 "credit_in_account_currency": text}]}
            reversal = str(self._erp.ensure_doc("Journal Entry", doc, "cheque_no")["name"])
        if recorded is not None:
            self._store.set_journal_entry(payout_id, recorded.get("journal_entry"), status="failed")
        return {"payout_id": payout_id, "reversal": reversal, "failure_code": payout.get("failure_code"),
                "summary": f"Stripe payout {payout_id} failed ({payout.get('failure_code') or 'no code'})"
                           + (f"; reversed by {reversal}" if reversal else "; nothing had been posted")}


def _same_rows(existing: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    def rows(d: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        return sorted((str(r["account"]), _norm(r.get("debit_in_account_currency")),
                       _norm(r.get("credit_in_account_currency"))) for r in d.get("accounts") or ())
    return rows(existing) == rows(doc)


def _norm(value: Any) -> str:
    from decimal import Decimal
    return str(Decimal(str(value or 0)).normalize())


def summary_text(result: Mapping[str, Any]) -> str:
    """One line for an alert or the CLI, without personal data."""
    total = Money(int(result.get("amount_minor") or 0), str(result.get("currency") or "USD"))
    kinds: dict[str, int] = {}
    for e in result.get("exception_rows") or ():
        kinds[str(e["kind"])] = kinds.get(str(e["kind"]), 0) + 1
    listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return (f"Stripe payout {result['payout_id']} of {format_money(total)} {total.currency}: "
            f"{result.get('status')}, {result.get('transactions', 0)} transactions"
            + (f", exceptions: {listed}" if listed else ""))


def actions(stripe: StripeGateway, erp: ErpGateway, store: Reconciliations, accounts: Mapping[str, str],
            locks: KeyLocks) -> dict[str, Action]:
    reconciler = PayoutReconciler(stripe, erp, store, accounts)

    def reconcile_payout(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        payout_id = _payout_id(params)
        with locks.hold("payout.reconcile", payout_id):
            recorded = store.get(payout_id) if params.get("skip_recorded") else None
            if recorded is not None and recorded["status"] != "failed":
                result = recorded  # payout.paid reconciled it already: the same set, not matched twice
            else:
                result = reconciler.reconcile(payout_id)
            result["exception_rows"] = result.get("exception_rows") or []
        kinds = sorted({str(e["kind"]) for e in result.get("exception_rows") or ()})
        return {"payout_id": payout_id, "status": result["status"], "currency": result["currency"],
                "amount_minor": result["amount_minor"], "transactions": result["transactions"],
                "matched": result["matched"], "exceptions": result["exceptions"], "exception_kinds": kinds,
                "closed": result["status"] == "closed", "summary": summary_text(result),
                "details": {"payout": payout_id, "status": result["status"], "exceptions": result["exceptions"],
                            "exception_kinds": kinds, "reason": result.get("reason")}}

    def post_journal(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        payout_id = _payout_id(params)
        with locks.hold("payout.reconcile", payout_id):
            return reconciler.post(payout_id)

    def reverse(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        payout_id = _payout_id(params)
        with locks.hold("payout.reconcile", payout_id):
            return reconciler.reverse(payout_id)

    return {"stripe.payout.reconcile": reconcile_payout, "erp.payout_journal.post": post_journal,
            "erp.payout_journal.reverse": reverse}


def accounts_from(mapping: Mapping[str, str], *, clearing: str, disputes: str, dispute_fees: str) -> dict[str, str]:
    """The payout journal's accounts: the sandbox chart's defaults, the settings' clearing, dispute and dispute fee
    accounts, then ``CB_ERP_PAYOUT_ACCOUNTS`` (role -> account) over them."""
    unknown = sorted(set(mapping) - set(LEDGER_ROLES))
    if unknown:
        raise ValidationError(f"unknown payout journal roles {unknown}; the roles are {', '.join(LEDGER_ROLES)}",
                              suggested_fix="fix the keys of CB_ERP_PAYOUT_ACCOUNTS")
    return {**DEFAULT_ACCOUNTS, "clearing": clearing, "disputes": disputes, "dispute_fees": dispute_fees,
            **dict(mapping)}


DEFAULT_ACCOUNTS: dict[str, str] = {
    "clearing": "Stripe Clearing - SB", "bank": "Stripe Payouts Bank - SB", "receivable": "Debtors - SB",
    "fees": "Stripe Fees - SB", "dispute_fees": "Stripe Fees - SB", "refunds": "Sales Returns and Refunds - SB",
    "disputes": "Disputed Funds - SB", "fx": "Exchange Gain/Loss - SB", "adjustments": "Stripe Adjustments - SB",
    "suspense": "Stripe Reconciliation Suspense - SB",
}
"""The defaults, named as in the sandbox ERP's chart (``CB_ERP_PAYOUT_ACCOUNTS`` overrides any of them)."""


_PAYOUT_ID = Param("payout_id", "string", "The Stripe payout id (`po_...`).", required=True)
_RESULT_EXAMPLE = {"payout_id": "po_1Example", "status": "closed", "currency": "USD", "amount_minor": 96530,
                   "transactions": 12, "matched": 12, "exceptions": 0, "exception_kinds": [], "closed": True,
                   "summary": "Stripe payout po_1Example of 965.30 USD: closed, 12 transactions",
                   "details": {"payout": "po_1Example", "status": "closed", "exceptions": 0, "exception_kinds": [],
                               "reason": None}}

STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="stripe.payout.reconcile", summary="Match a payout's balance transactions with what the bridge booked.",
        description="Lists the payout's balance transactions (`?payout=`, every page, `source` expanded), finds what "
                    "the bridge booked for each in the ERP (Payment Entries by `reference_no`, dispute Journal "
                    "Entries by `cheque_no`), and runs the reconciliation core: every transaction matched or an "
                    "exception with its reason and a suggested fix, the journal lines the payout still needs "
                    "(summed per account), and the proof (the transactions net to the payout amount, clearing is "
                    "zero over every document, the journal balances). The result replaces any earlier one of the "
                    "payout in the bridge's store (`commerce-bridge reconcile report`, "
                    "`/api/v1/reconciliation/`). A manual payout is `not_reconcilable` (Stripe cannot attribute "
                    "its transactions). See docs/reference/reconciliation.md.",
        params=(_PAYOUT_ID,
                Param("skip_recorded", "boolean", "Take the payout's recorded reconciliation when there is one "
                                                  "(not failed) instead of matching again: for "
                                                  "`payout.reconciliation_completed` after `payout.paid`.",
                      default=False)),
        output="`{\"payout_id\", \"status\"` (`closed`, `exceptions` or `not_reconcilable`), `\"currency\", "
               "\"amount_minor\", \"transactions\", \"matched\", \"exceptions\"` (counts), `\"exception_kinds\", "
               "\"closed\"` (bool), `\"summary\"` (one line), `\"details\"` (object, no personal data)`}`.",
        example_output=_RESULT_EXAMPLE,
        idempotency="Reads Stripe and the ERP; writes only the bridge's own record of the payout, replaced on a "
                    "repeat (with `skip_recorded`, a recorded payout is not matched again). Serialised per payout "
                    "(key lock).",
        errors=(("ValidationError", "not a payout id, or the payout is not paid yet."),
                ("MappingError", "an amount with no exact minor-unit value, an unknown currency or exchange rate."),
                ("NotFound", "no such payout."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("erp",),
        examples=(ex("reconcile", "stripe.payout.reconcile", payout_id="${ event.data.object.id }"),),
    ),
    StepType(
        type="erp.payout_journal.post", summary="Post a reconciled payout's Journal Entry.",
        description="Posts the journal `stripe.payout.reconcile` recorded for the payout as one submitted Journal "
                    "Entry (`cheque_no` = the payout id, posted on the payout's arrival date): the payout's bank "
                    "line and whatever the other flows have not booked yet (Stripe fees, FX differences, lines "
                    "nobody booked, exceptions on the suspense account). An entry already posted with the same "
                    "rows is kept; one with other rows (the payout was reconciled again after a fix) is cancelled "
                    "and replaced (`replaced`: true, for an alert).",
        params=(_PAYOUT_ID,),
        output="`{\"payout_id\", \"journal_entry\"` (name or null), `\"posted\", \"replaced\"` (bool), "
               "`\"cancelled\"` (name or null)`}`.",
        example_output={"payout_id": "po_1Example", "journal_entry": "ACC-JV-2026-00042", "posted": True,
                        "replaced": False, "cancelled": None},
        idempotency="Find-then-create by `cheque_no` (not cancelled) under the payout's key lock: a repeat finds "
                    "the entry and posts nothing.",
        errors=(("NotFound", "the payout has no recorded reconciliation: run `stripe.payout.reconcile` first."),
                ("UpstreamRejected", "the ERP refused the entry (an account that does not exist: set "
                                     "CB_ERP_PAYOUT_ACCOUNTS)."),
                ("MappingError", "an amount needing more than the ERP's two decimals."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("journal", "erp.payout_journal.post", payout_id="${ steps.reconcile.payout_id }"),),
    ),
    StepType(
        type="erp.payout_journal.reverse", summary="Reverse a failed payout's bank line.",
        description="For `payout.failed`: when the payout's Journal Entry was posted, posts a reversing entry "
                    "(`cheque_no` = `<payout id>:failed`): the amount leaves the bank account and is back on "
                    "Stripe clearing, as Stripe puts it back on the balance. The reconciliation is marked `failed`.",
        params=(_PAYOUT_ID,),
        output="`{\"payout_id\", \"reversal\"` (name or null when nothing had been posted), `\"failure_code\", "
               "\"summary\"}`.",
        example_output={"payout_id": "po_1Example", "reversal": "ACC-JV-2026-00043", "failure_code": "account_closed",
                        "summary": "Stripe payout po_1Example failed (account_closed); reversed by ACC-JV-2026-00043"},
        idempotency="Find-then-create by `cheque_no` under the payout's key lock.",
        errors=(("NotFound", "no such payout."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        also_needs=("stripe",),
        examples=(ex("reverse", "erp.payout_journal.reverse", payout_id="${ event.data.object.id }"),),
    ),
)


__all__ = ["DEFAULT_ACCOUNTS", "LEDGER_ROLES", "STEP_TYPES", "PayoutReconciler", "accounts_from", "actions",
           "summary_text"]
