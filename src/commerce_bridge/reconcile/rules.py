"""The reconciliation rules as data: transaction categories, exception kinds, accounts, units, FX rounding.

Everything here is shared by the columnar job (``reconcile/job.py``) and the row-by-row reference
(``reconcile/reference.py``), so that the two cannot drift apart on a rule.

Categories (from a balance transaction's ``type`` and ``reporting_category``, facts/stripe.md section 8):

* ``charge``: ``charge``, ``payment``; matched to a Clarity order by ``clarity_order_key``;
* ``refund``: ``refund``, ``payment_refund``; matched to a return by the refund id (``source``);
* ``dispute``: any type whose ``reporting_category`` is ``dispute`` or ``dispute_reversal`` (Stripe books
  a dispute's withdrawal and reinstatement as ``adjustment``); matched to the bridge's dispute record
  by the dispute id (``source``); the dispute fee is the transaction's ``fee``;
* ``partial_capture``: reporting category (or type) ``partial_capture_reversal``, the uncaptured rest of
  a partially captured charge (Stripe books the full authorisation as the charge, then this negative
  line; its ``source`` is the charge): it belongs to its charge (same ``source_id``), see job.py;
* ``fee``: ``stripe_fee``, ``stripe_fx_fee``, ``tax_fee``: Stripe fees billed on their own;
* ``payout``: the payout's own transaction (``type=payout``), checked against the payout;
* ``other``: every other type Stripe's SDK lists (52 in stripe-python 16.1): a line of its own on the
  adjustments account;
* anything else is an ``unknown_type`` exception.

Units: transactions carry Stripe's integer amounts; the job turns them into ISO 4217 minor units with
``unit_factors`` (ISK/UGX ÷ 100, MGA × 100, ...) and journals in the settlement currency's ISO minor
units. The bridge's side (orders, returns) is already in ISO minor units.

FX rule (the bridge's choice; Stripe publishes no rounding rule for conversions, facts/stripe.md
section 8 gives only "amount in A × exchange_rate = amount in B"): when a charge or refund was made in
another currency than the settlement currency, the expected settlement amount is
``source amount × exchange_rate`` converted between the two currencies' minor units and rounded to the
nearest settlement minor unit, **half to even**, computed exactly in integers from the rate's decimal
text (at most ``RATE_DECIMALS`` decimals, never a float). The receivable is credited with that expected
amount; what Stripe actually moved (``amount``) goes to clearing; the difference is an FX line of its
own. Stripe's amount is never changed, so the journal stays exact and balanced.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES, minor_digits
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.money import stripe_exponent

RATE_DECIMALS = 12
"""Digits kept from ``exchange_rate``; a rate with more decimals is refused (MappingError), not rounded."""

STRIPE_TYPES: frozenset[str] = frozenset(["adjustment", "advance", "advance_funding", "anticipation_repayment", "application_fee", "application_fee_refund", "charge", "climate_order_purchase", "climate_order_refund", "connect_collection_transfer", "contribution", "fee_credit_funding", "inbound_transfer", "inbound_transfer_reversal", "issuing_authorization_hold", "issuing_authorization_release", "issuing_dispute", "issuing_dispute_provisional_credit", "issuing_dispute_provisional_credit_reversal", "issuing_transaction", "obligation_outbound", "obligation_reversal_inbound", "payment", "payment_failure_refund", "payment_network_reserve_hold", "payment_network_reserve_release", "payment_refund", "payment_reversal", "payment_unreconciled", "payout", "payout_cancel", "payout_failure", "payout_minimum_balance_hold", "payout_minimum_balance_release", "refund", "refund_failure", "reserve_hold", "reserve_release", "reserve_transaction", "reserved_funds", "stripe_balance_payment_debit", "stripe_balance_payment_debit_reversal", "stripe_fee", "stripe_fx_fee", "tax_fee", "tax_fund", "topup", "topup_reversal", "transfer", "transfer_cancel", "transfer_failure", "transfer_refund"])
"""``BalanceTransaction.type`` values in stripe-python 16.1 (``_balance_transaction.py``)."""

CHARGE_TYPES = frozenset({"charge", "payment"})
REFUND_TYPES = frozenset({"refund", "payment_refund"})
FEE_TYPES = frozenset({"stripe_fee", "stripe_fx_fee", "tax_fee"})
DISPUTE_CATEGORIES = frozenset({"dispute", "dispute_reversal"})
PARTIAL_CAPTURE = "partial_capture_reversal"
"""The reporting category (the emulator's ``type`` is ``adjustment``; a ``type`` of that name is accepted too)."""
PAYOUT_TYPE = "payout"

CATEGORIES = ("charge", "partial_capture", "refund", "dispute", "fee", "payout", "other", "unknown")


def category_of(txn_type: str, reporting_category: str | None) -> str:
    """The category of a balance transaction (see the module docstring)."""
    if reporting_category in DISPUTE_CATEGORIES:
        return "dispute"
    if PARTIAL_CAPTURE in (reporting_category, txn_type):
        return "partial_capture"
    if txn_type in CHARGE_TYPES:
        return "charge"
    if txn_type in REFUND_TYPES:
        return "refund"
    if txn_type in FEE_TYPES:
        return "fee"
    if txn_type == PAYOUT_TYPE:
        return "payout"
    if txn_type in STRIPE_TYPES:
        return "other"
    return "unknown"


@dataclass(frozen=True, slots=True)
class ExceptionKind:
    """One kind of disagreement: its stable ``code``, what it means and the fix the report suggests."""

    code: str
    meaning: str
    suggested_fix: str


EXCEPTION_KINDS: MappingProxyType[str, ExceptionKind] = MappingProxyType({k.code: k for k in (
    ExceptionKind("unknown_payout", "a balance transaction naming a payout that was not passed in (or no payout)",
                  "fetch the payout from Stripe (GET /v1/payouts/{id}) and reconcile it with its transactions; "
                  "a transaction without a payout is not paid out yet: reconcile it with its payout later"),
    ExceptionKind("payout_currency_mismatch", "a balance transaction in another currency than its payout",
                  "list the payout's balance transactions again (GET /v1/balance_transactions?payout=...); "
                  "if Stripe really mixes currencies in one payout, ask Stripe support and post this line by hand"),
    ExceptionKind("charge_without_order", "a charge whose clarity_order_key is missing or names no order "
                  "the bridge knows",
                  "link the charge to its Clarity order (set metadata clarity_order_key on the PaymentIntent, "
                  "or import the order), then reconcile the payout again"),
    ExceptionKind("duplicate_charge", "a charge for an order that the order's earlier charges already paid "
                  "in full",
                  "refund the duplicate charge in Stripe, or record the second payment on the order"),
    ExceptionKind("currency_mismatch", "the charge or refund is in another currency than the order or return",
                  "correct the order's currency in Clarity, or refund and charge again in the right currency"),
    ExceptionKind("amount_mismatch", "the charge or refund amount differs from the order total or return amount "
                  "(for an order paid by several charges: they do not add up exactly to its total)",
                  "correct the order total or the return amount, or refund the difference in Stripe"),
    ExceptionKind("fee_mismatch", "the fee differs from the fee the bridge recorded, or net is not amount - fee",
                  "re-read the balance transaction from Stripe and update the recorded fee; ask Stripe "
                  "support if net is not amount - fee"),
    ExceptionKind("reversal_without_charge", "a partial capture reversal whose charge is not in the set",
                  "reconcile the reversal together with the payout that carries its charge (pass both "
                  "payouts' transactions), or find the charge with GET /v1/balance_transactions?source=ch_..."),
    ExceptionKind("refund_without_return", "a refund the bridge knows no return for",
                  "create the return (credit note) in Clarity for this refund, or link the refund to it"),
    ExceptionKind("refund_order_mismatch", "a refund whose order (from its charge's metadata) is not the "
                  "order of the return it is linked to",
                  "link the refund to a return of its own order in Clarity (or correct clarity_order_key on "
                  "the PaymentIntent), then reconcile the payout again"),
    ExceptionKind("dispute_without_record", "a dispute withdrawal or reinstatement the bridge has no record of",
                  "replay the charge.dispute.* events for this dispute so the bridge records it"),
    ExceptionKind("unknown_type", "a payout line of a type the bridge does not know",
                  "map the type to an account (reconciliation rules) and reconcile the payout again"),
    ExceptionKind("payout_mismatch", "the payout's own line or its transactions' net do not equal the "
                  "payout amount", "list the payout's balance transactions again (every page); if they "
                  "still differ, ask Stripe support"),
    ExceptionKind("order_without_charge", "an order paid in Clarity with no Stripe charge in the set",
                  "check the order's payment in Clarity; if no Stripe charge exists, unmark it as paid or "
                  "collect the payment"),
)})
"""Every exception kind. For one transaction, the checks run in this order and the first that applies is
reported (``unknown_payout`` and ``payout_currency_mismatch`` apply to every category; the others to their
category, see docs/reference/reconciliation.md)."""

ROW_KINDS = tuple(k for k in EXCEPTION_KINDS if k != "order_without_charge")
"""Kinds reported against a balance transaction (``order_without_charge`` is reported against an order)."""


@dataclass(frozen=True, slots=True)
class LedgerAccounts:
    """The ERP accounts the payout journal posts to (defaults are ERPNext-style names)."""

    clearing: str = "Stripe Clearing"
    bank: str = "Bank"
    receivable: str = "Debtors"
    fees: str = "Stripe Fees"
    dispute_fees: str = "Stripe Dispute Fees"
    refunds: str = "Sales Returns and Refunds"
    disputes: str = "Stripe Disputes"
    fx: str = "Exchange Gain/Loss"
    adjustments: str = "Stripe Adjustments"
    suspense: str = "Stripe Reconciliation Suspense"

    def by_role(self) -> dict[str, str]:
        """Role (``clearing``, ``fees``, ...) -> account name."""
        return {role: getattr(self, role) for role in self.__slots__}


COUNTER_ROLE: MappingProxyType[str, str] = MappingProxyType({
    "charge": "receivable", "partial_capture": "receivable", "refund": "refunds", "dispute": "disputes", "fee": "fees", "other": "adjustments",
})
"""The account role opposite clearing for a matched transaction of each category (exceptions: ``suspense``)."""


def unit_factors() -> dict[str, tuple[int, int]]:
    """Lower-case code -> ``(mul, div)`` turning a Stripe amount into ISO minor units (``amount * mul // div``)."""
    table: dict[str, tuple[int, int]] = {}
    for code in SUPPORTED_CURRENCIES:
        iso, stripe = minor_digits(code), stripe_exponent(code)
        table[code.lower()] = (10 ** (iso - stripe), 1) if iso >= stripe else (1, 10 ** (stripe - iso))
    return table


def inexact_amount(ref: str, field: str, value: int, currency: str, step: int) -> MappingError:
    """The error for a Stripe amount with no exact ISO minor-unit value (never rounded)."""
    code = currency.upper()
    return MappingError(
        f"{ref}: {field} {value} {code} has no exact ISO 4217 minor-unit value (Stripe sends {code} in "
        f"units of 1/{step} of an ISO minor unit, so it must be a multiple of {step}); the bridge refuses "
        "to round money",
        suggested_fix=f"re-read {ref} from Stripe; if Stripe really sent {value} {code}, ask Stripe support "
                      "and reconcile this payout by hand")


def to_minor(value: int, factor: tuple[int, int], *, ref: str, field: str, currency: str) -> int:
    """A Stripe amount in ISO minor units, exactly (``factor`` from ``unit_factors``).

    Raises
    ------
    MappingError
        The amount is not a whole number of ISO minor units (an ISK amount not a multiple of 100).
    """
    mul, div = factor
    if value % div:
        raise inexact_amount(ref, field, value, currency, div)
    return value * mul // div


def rate_units(rate_text: str) -> int:
    """``exchange_rate`` decimal text as an integer of ``10**-RATE_DECIMALS`` units, exactly.

    Raises
    ------
    MappingError
        Not a plain positive decimal, or more than ``RATE_DECIMALS`` decimals.
    """
    whole, _, frac = rate_text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > RATE_DECIMALS:
        raise MappingError(f"exchange_rate {rate_text!r} is not a decimal with at most {RATE_DECIMALS} decimals",
                           suggested_fix="read exchange_rate from Stripe's JSON as text (parse_float=str)")
    return int(whole + frac.ljust(RATE_DECIMALS, "0"))


def convert_half_even(source_minor: int, source_digits: int, rate: int, target_digits: int) -> int:
    """``source_minor × rate`` in the target's minor units, rounded half to even (``rate`` from ``rate_units``)."""
    num: int = source_minor * rate * int(10 ** max(target_digits - source_digits, 0))
    den: int = 10**RATE_DECIMALS * int(10 ** max(source_digits - target_digits, 0))
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q
