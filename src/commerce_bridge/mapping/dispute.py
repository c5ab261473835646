"""Disputes and early fraud warnings as the bridge books them: one Stripe Dispute -> journals, a status, notes.

Rules (issue 12, points 5 and 7; facts/stripe.md "Dispute" and section 8):

- **The Dispute object read from Stripe is the truth**, never the event's copy: what is booked follows
  from its ``status`` and its ``balance_transactions``, so duplicated or reordered events converge.
- **One journal per money movement, keyed by Stripe's id.** Each balance transaction of the dispute
  (a chargeback's *withdrawal*: ``amount`` < 0 with the dispute ``fee``; a won dispute's *reinstatement*,
  ``dispute_reversal``: ``amount`` > 0, fee 0, or negative where Stripe returns the fee) is one Journal
  Entry, ``cheque_no`` = the balance transaction id, in its currency (Stripe's settlement currency):

  ============================  ==========================  ==========================
  account (setting)             withdrawal (-A, fee F)      reinstatement (+A, fee f)
  ============================  ==========================  ==========================
  Disputed Funds (disputes)     debit A                     credit A
  Stripe Fees (dispute fees)    debit F                     debit f (credit -f if < 0)
  Stripe Clearing (clearing)    credit A + F                debit A - f
  ============================  ==========================  ==========================

- **Lost**: no money moves in Stripe (it left at the withdrawal); what the withdrawals left in Disputed
  Funds (withdrawn - reinstated) becomes an expense: debit Chargebacks, credit Disputed Funds, one entry
  keyed ``<dispute id>:chargeback``. It exists only while the dispute is ``lost`` (an appeal that is won
  later cancels it, and its reinstatement clears Disputed Funds). An inquiry (``warning_*``) moves no money
  and gets no journal; ``warning_closed`` books nothing.
- Every entry balances to the minor unit; amounts are ERPNext decimal text with the currency's digits,
  refused (``MappingError``), never rounded, when they need more than the ERP's two decimals.
- **Clarity**: an open dispute (needs response, under review, inquiry, appeal) puts the order in the
  *disputed* status; ``lost`` in the *chargeback* status; ``won``, ``warning_closed`` and ``prevented``
  put it back in the status it had before the dispute, but only while it is still in one of the two
  dispute statuses (a status a person set since is left alone). Notes and alerts name the dispute, its
  reason, amount and evidence due date, never the cardholder.
- **Early fraud warning**: the charge is refunded in full only when the warning is ``actionable`` (no
  dispute, not fully refunded), something is left to refund, and the order's status is known to come
  before the shipped status in the Clarity order precedence (a status the table does not know is not
  assumed to be unshipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.erp import money_to_erp
from commerce_bridge.mapping.money import format_money, from_stripe_amount

__all__ = [
    "CLOSED",
    "ERP_DECIMALS",
    "DisputeAccounts",
    "DisputeView",
    "JournalRow",
    "Movement",
    "PlannedJournal",
    "WarningView",
    "chargeback_key",
    "clarity_state",
    "dispute_from_stripe",
    "dispute_note",
    "dispute_summary",
    "early_fraud_refund",
    "held",
    "journal_doc",
    "movement_rows",
    "planned_journals",
    "status_target",
    "warning_from_stripe",
]

CLOSED = ("won", "lost", "warning_closed", "prevented")
"""Dispute statuses after which Stripe moves no more money (an appeal of a lost one reopens it)."""
RESTORED = ("won", "warning_closed", "prevented")
"""Closed statuses that give the order back the status it had before the dispute."""
ERP_DECIMALS = 2
"""ERPNext's currency precision (frappe's default): a journal amount needing more decimals is refused."""


@dataclass(frozen=True, slots=True)
class DisputeAccounts:
    """The ERPNext accounts of the dispute journals (settings ``CB_ERP_*_ACCOUNT``; the sandbox chart's names)."""

    disputes: str = "Disputed Funds - SB"
    fees: str = "Stripe Fees - SB"
    clearing: str = "Stripe Clearing - SB"
    chargebacks: str = "Chargebacks - SB"


@dataclass(frozen=True, slots=True)
class Movement:
    """One balance transaction of a dispute: Stripe's signed ``amount`` and ``fee`` (``net`` = amount - fee)."""

    id: str
    amount: Money
    fee: Money
    created: int

    @property
    def kind(self) -> str:
        """``withdrawal`` (money left the balance) or ``reinstatement``."""
        return "withdrawal" if self.amount.minor < 0 else "reinstatement"


@dataclass(frozen=True, slots=True)
class DisputeView:
    """What the bridge needs of one Stripe Dispute."""

    id: str
    status: str
    reason: str
    amount: Money
    charge_id: str
    payment_intent_id: str | None = None
    evidence_due_by: int | None = None
    inquiry: bool = False
    movements: tuple[Movement, ...] = ()

    @property
    def closed(self) -> bool:
        return self.status in CLOSED


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One row of a Journal Entry: a debit or a credit (the other is zero) on an account."""

    account: str
    debit: Money
    credit: Money


@dataclass(frozen=True, slots=True)
class PlannedJournal:
    """A journal the dispute calls for: its key (``cheque_no``), rows, posting time (None: when booked), remark."""

    key: str
    kind: str
    rows: tuple[JournalRow, ...]
    created: int | None
    remark: str


@dataclass(frozen=True, slots=True)
class WarningView:
    """What the bridge needs of one Radar early fraud warning."""

    id: str
    charge_id: str
    payment_intent_id: str | None
    fraud_type: str
    actionable: bool


def _text(obj: Mapping[str, Any], key: str) -> str:
    return str(obj.get(key) or "")


def _integer(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError(f"{what} has no integer {key}",
                           suggested_fix="read the dispute from Stripe's API (GET /v1/disputes/{id})")
    return value


def _movement(obj: Any, dispute_id: str) -> Movement:
    if not isinstance(obj, Mapping) or not obj.get("id") or not obj.get("currency"):
        raise MappingError(f"dispute {dispute_id} lists a balance transaction that is not an object",
                           suggested_fix="read the dispute from Stripe's API: it embeds its balance transactions")
    txn_id, currency = str(obj["id"]), str(obj["currency"])
    what = f"balance transaction {txn_id}"
    return Movement(id=txn_id, amount=from_stripe_amount(_integer(obj, "amount", what), currency),
                    fee=from_stripe_amount(_integer(obj, "fee", what), currency),
                    created=_integer(obj, "created", what))


def dispute_from_stripe(obj: Mapping[str, Any]) -> DisputeView:
    """A Stripe Dispute (as the API returns it) as a ``DisputeView``; every amount in exact minor units.

    Raises
    ------
    MappingError
        No id, charge or currency, an amount that is not an integer, or balance transactions not embedded.
    """
    dispute_id, charge = _text(obj, "id"), obj.get("charge")
    if isinstance(charge, Mapping):  # expanded
        charge = charge.get("id")
    if not dispute_id or not charge or not obj.get("currency"):
        raise MappingError(f"dispute {dispute_id or '?'} has no id, charge or currency",
                           suggested_fix="read the dispute from Stripe's API (GET /v1/disputes/{id})")
    amount = from_stripe_amount(_integer(obj, "amount", f"dispute {dispute_id}"), str(obj["currency"]))
    details = obj.get("evidence_details") or {}
    due = details.get("due_by") if isinstance(details, Mapping) else None
    card = ((obj.get("payment_method_details") or {}).get("card") or {})
    status = _text(obj, "status")
    inquiry = card.get("case_type") == "inquiry" if card.get("case_type") else status.startswith("warning_")
    pi = obj.get("payment_intent")
    if isinstance(pi, Mapping):
        pi = pi.get("id")
    return DisputeView(
        id=dispute_id, status=status, reason=_text(obj, "reason"), amount=amount, charge_id=str(charge),
        payment_intent_id=str(pi) if pi else None,
        evidence_due_by=due if isinstance(due, int) and not isinstance(due, bool) else None, inquiry=inquiry,
        movements=tuple(_movement(t, dispute_id) for t in obj.get("balance_transactions") or []))


def _row(account: str, signed: Money) -> JournalRow:
    """A debit for a positive amount, a credit for a negative one."""
    zero = Money.zero(signed.currency)
    return JournalRow(account, signed, zero) if signed.minor > 0 else JournalRow(account, zero, -signed)


def movement_rows(m: Movement, accounts: DisputeAccounts) -> tuple[JournalRow, ...]:
    """The rows of one balance transaction's journal (see the module's table); rows of zero are left out."""
    signed = ((accounts.disputes, -m.amount), (accounts.fees, m.fee), (accounts.clearing, m.amount - m.fee))
    return tuple(_row(account, amount) for account, amount in signed if amount.minor)


def held(view: DisputeView) -> Money | None:
    """What the withdrawals left in Disputed Funds (withdrawn - reinstated); None when no money moved.

    Raises
    ------
    MappingError
        Balance transactions in more than one currency.
    """
    if not view.movements:
        return None
    total = Money.zero(view.movements[0].amount.currency)
    for m in view.movements:
        total = total - m.amount
    return total


def chargeback_key(dispute_id: str) -> str:
    """The ``cheque_no`` of a lost dispute's chargeback journal."""
    return f"{dispute_id}:chargeback"


def planned_journals(view: DisputeView, accounts: DisputeAccounts, *, order_key: str = "") -> list[PlannedJournal]:
    """Every journal the dispute calls for now: one per balance transaction, and the chargeback while ``lost``."""
    of = f" (order {order_key})" if order_key else ""
    out = []
    for m in view.movements:
        if m.kind == "withdrawal":
            remark = (f"Stripe dispute {view.id}{of}, {view.reason or 'no reason'}: {_label(-m.amount)} withdrawn "
                      f"to Disputed Funds, dispute fee {_label(m.fee)}")
        else:
            remark = f"Stripe dispute {view.id}{of}: {_label(m.amount)} reinstated" + (
                f", fee {_label(-m.fee)} returned" if m.fee.minor < 0 else "")
        rows = movement_rows(m, accounts)
        if rows:
            out.append(PlannedJournal(m.id, m.kind, rows, m.created, remark))
    left = held(view)
    if view.status == "lost" and left is not None and left.minor > 0:
        out.append(PlannedJournal(
            chargeback_key(view.id), "chargeback",
            (_row(accounts.chargebacks, left), _row(accounts.disputes, -left)), None,
            f"Stripe dispute {view.id}{of} lost: {_label(left)} from Disputed Funds to Chargebacks"))
    return out


def _label(money: Money) -> str:
    return f"{format_money(money)} {money.currency}"


def journal_doc(planned: PlannedJournal, *, posting_date: date) -> dict[str, Any]:
    """The ERPNext Journal Entry of ``planned`` (``cheque_no`` its key), checked to balance.

    Raises
    ------
    MappingError
        Rows that do not balance, or an amount needing more than the ERP's two decimals.
    """
    debit = sum((r.debit.minor for r in planned.rows), 0)
    credit = sum((r.credit.minor for r in planned.rows), 0)
    if debit != credit or not planned.rows:
        raise MappingError(f"journal {planned.key} does not balance: debits {debit}, credits {credit} minor units",
                           suggested_fix="report this: the dispute's balance transactions are inconsistent")
    day = posting_date.isoformat()
    rows = [{"account": r.account,
             "debit_in_account_currency": money_to_erp(r.debit, precision=ERP_DECIMALS, field="debit"),
             "credit_in_account_currency": money_to_erp(r.credit, precision=ERP_DECIMALS, field="credit")}
            for r in planned.rows]
    return {"voucher_type": "Journal Entry", "posting_date": day, "cheque_no": planned.key, "cheque_date": day,
            "user_remark": planned.remark, "accounts": rows}


def clarity_state(view: DisputeView) -> str:
    """``chargeback`` (lost), ``restored`` (won, warning_closed, prevented) or ``disputed`` (open, appealed)."""
    if view.status == "lost":
        return "chargeback"
    return "restored" if view.status in RESTORED else "disputed"


def status_target(view: DisputeView, current: str | None, before: str | None, *,
                  disputed_status: str, chargeback_status: str) -> str | None:
    """The Clarity status the dispute calls for, or None to leave the order as it is.

    ``before`` is the status the order had when the bridge first put it in a dispute status (None when it
    never did: a dispute already closed when first seen leaves the order alone).
    """
    state = clarity_state(view)
    if state == "disputed":
        target: str | None = disputed_status
    elif state == "chargeback":
        target = chargeback_status
    else:
        target = before if current in (disputed_status, chargeback_status) else None
    return None if target == current else target


def _due(view: DisputeView) -> str:
    if view.evidence_due_by is None:
        return "no evidence due date"
    return "evidence due " + datetime.fromtimestamp(view.evidence_due_by, UTC).strftime("%Y-%m-%d %H:%M UTC")


def dispute_note(view: DisputeView) -> tuple[str, str]:
    """The note on the Clarity order for the dispute's current stage: (its key, its text).

    The key is ``<dispute id>:opened`` while the dispute is open and ``<dispute id>:<status>`` once it is
    closed, so each stage is noted once.
    """
    kind = "inquiry" if view.inquiry else "chargeback"
    if not view.closed:
        return f"{view.id}:opened", (f"Stripe dispute {view.id} opened ({kind}): reason {view.reason or 'none'}, "
                                     f"amount {_label(view.amount)}, {_due(view)}.")
    ending = {"won": "won: the funds are reinstated", "lost": "lost: the amount is a chargeback",
              "warning_closed": "closed without a chargeback", "prevented": "prevented"}[view.status]
    return f"{view.id}:{view.status}", f"Stripe dispute {view.id} {ending} ({_label(view.amount)})."


def dispute_summary(view: DisputeView, order_key: str = "") -> str:
    """One line for operations (alerts): the dispute, its order, reason, amount and due date; no PII."""
    kind = "Inquiry" if view.inquiry else "Dispute"
    return (f"{kind} {view.id} on {view.charge_id}" + (f" (order {order_key})" if order_key else "")
            + f": {view.reason or 'no reason'}, {_label(view.amount)}, {_due(view)}, status {view.status}")


def warning_from_stripe(obj: Mapping[str, Any]) -> WarningView:
    """A Stripe ``radar.early_fraud_warning`` as a ``WarningView``.

    Raises
    ------
    MappingError
        No id or charge.
    """
    charge = obj.get("charge")
    if isinstance(charge, Mapping):
        charge = charge.get("id")
    if not obj.get("id") or not charge:
        raise MappingError("an early fraud warning without id or charge",
                           suggested_fix="read it from Stripe (GET /v1/radar/early_fraud_warnings/{id})")
    pi = obj.get("payment_intent")
    if isinstance(pi, Mapping):
        pi = pi.get("id")
    return WarningView(id=str(obj["id"]), charge_id=str(charge), payment_intent_id=str(pi) if pi else None,
                       fraud_type=_text(obj, "fraud_type"), actionable=obj.get("actionable") is True)


def early_fraud_refund(warning: WarningView, left: Money, order_status: str | None, *, shipped_status: str,
                       ranks: Mapping[str, int]) -> tuple[bool, str]:
    """Whether to refund the charge in full (``left``: captured - refunded) before it is disputed, and why.

    ``ranks`` is the Clarity order status precedence (``mapping.status``): the order must be in a status
    ranked below ``shipped_status``.
    """
    if not warning.actionable:
        return False, "the warning is not actionable (the charge is disputed or fully refunded)"
    if left.minor <= 0:
        return False, "nothing is left to refund on the charge"
    if shipped_status not in ranks:
        return False, f"the shipped status {shipped_status!r} is not in the order status precedence"
    if order_status is None or order_status not in ranks:
        return False, f"the order's status {order_status!r} is not known to come before {shipped_status!r}"
    if ranks[order_status] >= ranks[shipped_status]:
        return False, f"the order has shipped or is closed (status {order_status!r})"
    return True, f"the order has not shipped (status {order_status!r})"
