"""Status maps between Clarity and Stripe (configuration data) and the status precedence of each object kind.

The maps are plain data: ``StatusMap.from_config(dict)`` takes the JSON an operator edits (any
section left out keeps its default) and ``to_config()`` gives it back. The defaults are the seed's
and are documented in docs/reference/mappings.md. Clarity status names are CEF's seeded
SalesOrderStatus keys (facts/clarity-cef-api.md section 4); installs may rename or add statuses,
so Clarity names are free text here while Stripe statuses are checked against Stripe's enums.
``workflow_vars()`` reads from the map the status names the workflows use (``vars.paid_status``
and the others of ``STATUS_VARS``); the settings (``CB_STATUS_MAP``) check at start-up that it can.

``is_forward(kind, old, new)`` answers "may an object of this kind move from ``old`` to ``new``?"
so that late or duplicated events never move a status backwards (a PaymentIntent never goes from
``succeeded`` back to ``processing``). Each kind declares ranks (a higher rank is later; terminal
statuses share the top rank, so they never replace each other) plus the few legitimate moves to a
lower or equal rank (a failed attempt sends a PaymentIntent back to ``requires_payment_method``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from commerce_bridge.errors import MappingError, ValidationError

TERMINAL = 100


@dataclass(frozen=True, slots=True)
class Precedence:
    """The declared order of one object kind's statuses."""

    ranks: Mapping[str, int]
    also_allowed: frozenset[tuple[str, str]] = frozenset()

    def is_forward(self, old: str | None, new: str) -> bool:
        if new not in self.ranks:
            raise MappingError(f"unknown status {new!r}", suggested_fix="add the status to the precedence table")
        if not old:
            return True
        if old not in self.ranks:
            raise MappingError(f"unknown status {old!r}", suggested_fix="add the status to the precedence table")
        if old == new:
            return False
        return self.ranks[new] > self.ranks[old] or (old, new) in self.also_allowed


def _back_to_start(start: str, *states: str) -> frozenset[tuple[str, str]]:
    return frozenset((state, start) for state in states)


def _all_pairs(*states: str) -> frozenset[tuple[str, str]]:
    return frozenset((a, b) for a in states for b in states if a != b)


_INTENT_RANKS = {"requires_payment_method": 0, "requires_confirmation": 1, "requires_action": 2,
                 "processing": 3, "requires_capture": 4, "succeeded": TERMINAL, "canceled": TERMINAL}

DEFAULT_PRECEDENCE: Mapping[str, Precedence] = MappingProxyType({
    "payment_intent": Precedence(
        _INTENT_RANKS,
        _back_to_start("requires_payment_method", "requires_confirmation", "requires_action", "processing")),
    "setup_intent": Precedence(
        {k: v for k, v in _INTENT_RANKS.items() if k != "requires_capture"},
        _back_to_start("requires_payment_method", "requires_confirmation", "requires_action", "processing")),
    "charge": Precedence({"pending": 0, "succeeded": TERMINAL, "failed": TERMINAL}),
    "refund": Precedence({"pending": 0, "requires_action": 1, "succeeded": 5, "failed": TERMINAL,
                          "canceled": TERMINAL}),
    "dispute": Precedence(
        {"warning_needs_response": 0, "warning_under_review": 1, "needs_response": 2, "under_review": 3,
         "lost": 5, "appeal_needs_response": 6, "appeal_under_review": 7, "won": TERMINAL,
         "warning_closed": TERMINAL, "prevented": TERMINAL},
        frozenset({("appeal_under_review", "lost")})),
    "payout": Precedence({"pending": 0, "in_transit": 1, "paid": 2, "failed": TERMINAL, "canceled": TERMINAL}),
    "invoice": Precedence({"draft": 0, "open": 1, "uncollectible": 2, "paid": TERMINAL, "void": TERMINAL}),
    "subscription": Precedence(
        {"incomplete": 0, "trialing": 1, "active": 2, "past_due": 2, "unpaid": 2, "paused": 2,
         "canceled": TERMINAL, "incomplete_expired": TERMINAL},
        _all_pairs("active", "past_due", "unpaid", "paused")),
    # CEF's seeded sort orders; the History statuses (Completed, Void, Split) are terminal.
    "clarity_order": Precedence(
        {"Pending": 0, "On Hold": 5, "Confirmed": 10, "Backordered": 11, "Partial Payment Received": 20,
         "Full Payment Received": 21, "Processing": 30, "Shipped": 40, "Shipped from Vendor": 41,
         "Ready for Pickup": 42, "Completed": TERMINAL, "Void": TERMINAL, "Split": TERMINAL}),
})

STRIPE_STATUSES: Mapping[str, frozenset[str]] = MappingProxyType(
    {kind: frozenset(p.ranks) for kind, p in DEFAULT_PRECEDENCE.items() if kind != "clarity_order"})


def is_forward(kind: str, old: str | None, new: str,
               precedence: Mapping[str, Precedence] | None = None) -> bool:
    """Whether ``kind`` may move from ``old`` to ``new`` (False for the same status and for regressions).

    ``old`` None or empty means nothing is known yet: any status is forward.

    Raises
    ------
    MappingError
        Unknown kind or status.
    """
    table = precedence if precedence is not None else DEFAULT_PRECEDENCE
    declared = table.get(kind)
    if declared is None:
        raise MappingError(f"no status precedence declared for {kind!r}",
                           suggested_fix=f"use one of {', '.join(sorted(table))}")
    return declared.is_forward(old, new)


# -- the maps ------------------------------------------------------------------------------------

DEFAULT_CONFIG: Mapping[str, Any] = MappingProxyType({
    # Stripe object status -> the Clarity status to set (statuses not listed change nothing).
    "stripe_to_clarity": {
        "payment_intent": {
            "requires_payment_method": "Pending",
            "requires_confirmation": "Pending",
            "requires_action": "Pending",
            "requires_capture": "Confirmed",
            "succeeded": "Full Payment Received",
            "canceled": "Void",
        },
        "charge": {"succeeded": "Full Payment Received", "failed": "On Hold"},
    },
    # Stripe event type -> Clarity status; wins over the object status map for that event.
    "stripe_events_to_clarity": {
        "payment_intent.payment_failed": "On Hold",
        "payment_intent.requires_action": "Pending",
        "payment_intent.amount_capturable_updated": "Confirmed",
        "payment_intent.succeeded": "Full Payment Received",
        "payment_intent.canceled": "Void",
        "charge.failed": "On Hold",
        "charge.succeeded": "Full Payment Received",
    },
    # Clarity status -> the Stripe PaymentIntent status it calls for.
    "clarity_to_stripe": {
        "payment_intent": {
            "Pending": "requires_payment_method",
            "Full Payment Received": "succeeded",
            "Shipped": "succeeded",
            "Completed": "succeeded",
            "Void": "canceled",
        },
    },
    # Clarity status -> what the bridge does to the order's PaymentIntent when the order reaches it.
    "clarity_payment_actions": {"Shipped": "capture"},
    # the order's refund state (its charge's refunds that hold money) -> the Clarity status to set
    "clarity_refund_statuses": {"partially_refunded": "Partially Refunded", "refunded": "Refunded"},
    # Clarity SalesReturn statuses: "refund" = the status in which the bridge pays a return back in Stripe (a
    # store's own status, not a CEF seed); "refunded" = the status the return gets once paid back (CEF's
    # ManuallyRefund sets Completed itself); "refund_failed" = the status a return gets when the bridge's refund
    # of it failed or was canceled in Stripe (a store's own status: the operator pays back another way or moves
    # the return back to "refund" to refund again)
    "clarity_return_statuses": {"refund": "Refund Approved", "refunded": "Completed",
                                "refund_failed": "Refund Failed"},
    # the order's dispute state -> the Clarity status to set: "disputed" while a dispute is open (inquiry,
    # chargeback, under review, appeal), "chargeback" once it is lost; won or closed: back to the earlier status
    "clarity_dispute_statuses": {"disputed": "Disputed", "chargeback": "Chargeback"},
})

REFUND_STATES = ("partially_refunded", "refunded")
RETURN_STATES = ("refund", "refunded", "refund_failed")
DISPUTE_STATES = ("disputed", "chargeback")

PAYMENT_ACTIONS = frozenset({"capture"})

# The workflow vars that carry Clarity status names, and where the map keeps each (see ``StatusMap.workflow_vars``).
STATUS_VARS: Mapping[str, str] = MappingProxyType({
    "pending_status": "clarity_to_stripe.payment_intent: the first Clarity status mapped to requires_payment_method",
    "hold_status": "stripe_events_to_clarity[payment_intent.payment_failed], else stripe_to_clarity.charge.failed",
    "cancel_status": "stripe_events_to_clarity[payment_intent.canceled], else stripe_to_clarity.payment_intent.canceled",
    "paid_status": "stripe_events_to_clarity[payment_intent.succeeded], else stripe_to_clarity.payment_intent.succeeded",
    "void_status": "clarity_to_stripe.payment_intent: the first Clarity status mapped to canceled",
    "shipped_status": "clarity_payment_actions: the first Clarity status mapped to capture",
    "partially_refunded_status": "clarity_refund_statuses.partially_refunded",
    "refunded_status": "clarity_refund_statuses.refunded",
    "return_refund_status": "clarity_return_statuses.refund",
    "return_refunded_status": "clarity_return_statuses.refunded",
    "return_refund_failed_status": "clarity_return_statuses.refund_failed",
    "disputed_status": "clarity_dispute_statuses.disputed",
    "chargeback_status": "clarity_dispute_statuses.chargeback",
})


def _text_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where} must be an object of status names",
                              suggested_fix=f"write {where} as {{\"from\": \"to\", ...}}")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or not isinstance(item, str) or not item.strip():
            raise ValidationError(f"{where}: {key!r} -> {item!r} is not a pair of status names",
                                  suggested_fix="use non-empty status names on both sides")
        result[key.strip()] = item.strip()
    return result


def _check_stripe(kind: str, statuses: list[str], where: str) -> None:
    known = STRIPE_STATUSES.get(kind)
    if known is None:
        raise ValidationError(f"{where}: unknown Stripe object kind {kind!r}",
                              suggested_fix=f"use one of {', '.join(sorted(STRIPE_STATUSES))}")
    bad = sorted(set(statuses) - known)
    if bad:
        raise ValidationError(f"{where}: {', '.join(bad)} is not a Stripe {kind} status",
                              suggested_fix=f"use one of {', '.join(sorted(known))}")


@dataclass(frozen=True, slots=True)
class StatusMap:
    """Both directions of the Clarity <-> Stripe status mapping."""

    stripe_to_clarity: Mapping[str, Mapping[str, str]]
    stripe_events_to_clarity: Mapping[str, str]
    clarity_to_stripe: Mapping[str, Mapping[str, str]]
    clarity_payment_actions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    clarity_refund_statuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    clarity_return_statuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    clarity_dispute_statuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    precedence: Mapping[str, Precedence] = field(default_factory=lambda: DEFAULT_PRECEDENCE)

    @classmethod
    def default(cls) -> StatusMap:
        return cls.from_config(None)

    @classmethod
    def from_json(cls, text: str) -> StatusMap:
        """Load from settings JSON (see ``from_config``)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"status map is not valid JSON: {exc}",
                                  suggested_fix="fix the JSON syntax of the status map") from exc
        return cls.from_config(data)

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None) -> StatusMap:
        """Build from a dict shaped like ``DEFAULT_CONFIG``; each section given replaces its default.

        Raises
        ------
        ValidationError
            Unknown section, Stripe kind or Stripe status, or a non-text entry.
        """
        config: dict[str, Any] = {key: value for key, value in DEFAULT_CONFIG.items()}
        if data is not None:
            if not isinstance(data, Mapping):
                raise ValidationError("status map must be a JSON object",
                                      suggested_fix="see docs/reference/mappings.md for the shape")
            unknown = sorted(set(data) - set(DEFAULT_CONFIG))
            if unknown:
                raise ValidationError(f"unknown status map section(s): {', '.join(unknown)}",
                                      suggested_fix=f"use {', '.join(DEFAULT_CONFIG)}")
            config.update(data)
        to_clarity = cls._by_kind(config["stripe_to_clarity"], "stripe_to_clarity", keys_are_stripe=True)
        to_stripe = cls._by_kind(config["clarity_to_stripe"], "clarity_to_stripe", keys_are_stripe=False)
        events = _text_map(config["stripe_events_to_clarity"], "stripe_events_to_clarity")
        for event_type in events:
            if "." not in event_type:
                raise ValidationError(f"stripe_events_to_clarity: {event_type!r} is not a Stripe event type",
                                      suggested_fix="use event types such as payment_intent.succeeded")
        actions = _text_map(config["clarity_payment_actions"], "clarity_payment_actions")
        bad = sorted(set(actions.values()) - PAYMENT_ACTIONS)
        if bad:
            raise ValidationError(f"clarity_payment_actions: {', '.join(bad)} is not a payment action",
                                  suggested_fix=f"use {', '.join(sorted(PAYMENT_ACTIONS))}")
        refunds = _text_map(config["clarity_refund_statuses"], "clarity_refund_statuses")
        bad = sorted(set(refunds) - set(REFUND_STATES))
        if bad:
            raise ValidationError(f"clarity_refund_statuses: {', '.join(bad)} is not a refund state",
                                  suggested_fix=f"use {', '.join(REFUND_STATES)}")
        returns = _text_map(config["clarity_return_statuses"], "clarity_return_statuses")
        bad = sorted(set(returns) - set(RETURN_STATES))
        if bad:
            raise ValidationError(f"clarity_return_statuses: {', '.join(bad)} is not a return state",
                                  suggested_fix=f"use {', '.join(RETURN_STATES)}")
        if returns.get("refund") and returns.get("refund") == returns.get("refunded"):
            raise ValidationError("clarity_return_statuses: refund and refunded must be different statuses",
                                  suggested_fix="a return paid back must leave the status that asks for it")
        if returns.get("refund") and returns.get("refund") == returns.get("refund_failed"):
            raise ValidationError("clarity_return_statuses: refund and refund_failed must be different statuses",
                                  suggested_fix="a return whose refund failed must leave the status that asks for "
                                                "it, or it would be refunded again at once")
        disputes = _text_map(config["clarity_dispute_statuses"], "clarity_dispute_statuses")
        bad = sorted(set(disputes) - set(DISPUTE_STATES))
        if bad:
            raise ValidationError(f"clarity_dispute_statuses: {', '.join(bad)} is not a dispute state",
                                  suggested_fix=f"use {', '.join(DISPUTE_STATES)}")
        if disputes.get("disputed") and disputes.get("disputed") == disputes.get("chargeback"):
            raise ValidationError("clarity_dispute_statuses: disputed and chargeback must be different statuses",
                                  suggested_fix="a lost dispute must be told apart from an open one")
        return cls(stripe_to_clarity=to_clarity, stripe_events_to_clarity=MappingProxyType(events),
                   clarity_to_stripe=to_stripe, clarity_payment_actions=MappingProxyType(actions),
                   clarity_refund_statuses=MappingProxyType(refunds),
                   clarity_return_statuses=MappingProxyType(returns),
                   clarity_dispute_statuses=MappingProxyType(disputes))

    @staticmethod
    def _by_kind(section: object, where: str, *, keys_are_stripe: bool) -> Mapping[str, Mapping[str, str]]:
        if not isinstance(section, Mapping):
            raise ValidationError(f"{where} must be an object keyed by Stripe object kind",
                                  suggested_fix=f"write {where} as {{\"payment_intent\": {{...}}}}")
        result: dict[str, Mapping[str, str]] = {}
        for kind, pairs in section.items():
            mapping = _text_map(pairs, f"{where}.{kind}")
            _check_stripe(str(kind), list(mapping) if keys_are_stripe else list(mapping.values()),
                          f"{where}.{kind}")
            result[str(kind)] = MappingProxyType(mapping)
        return MappingProxyType(result)

    def to_config(self) -> dict[str, Any]:
        """The map as JSON-able configuration data (round-trips through ``from_config``)."""
        return {
            "stripe_to_clarity": {k: dict(v) for k, v in self.stripe_to_clarity.items()},
            "stripe_events_to_clarity": dict(self.stripe_events_to_clarity),
            "clarity_to_stripe": {k: dict(v) for k, v in self.clarity_to_stripe.items()},
            "clarity_payment_actions": dict(self.clarity_payment_actions),
            "clarity_refund_statuses": dict(self.clarity_refund_statuses),
            "clarity_return_statuses": dict(self.clarity_return_statuses),
            "clarity_dispute_statuses": dict(self.clarity_dispute_statuses),
        }

    def workflow_vars(self) -> dict[str, str]:
        """The Clarity status names the workflows read as vars (``STATUS_VARS``: name -> where it comes from).

        Raises
        ------
        ValidationError
            When the map has no entry for one of them; the message names the var and the missing key.
        """
        def first_clarity(section: Mapping[str, str], target: str) -> str | None:
            return next((clarity for clarity, value in section.items() if value == target), None)

        intent_to_stripe = self.clarity_to_stripe.get("payment_intent", {})
        found = {
            "pending_status": first_clarity(intent_to_stripe, "requires_payment_method"),
            "hold_status": self.clarity_status_for("charge", "failed", event_type="payment_intent.payment_failed"),
            "cancel_status": self.clarity_status_for("payment_intent", "canceled",
                                                     event_type="payment_intent.canceled"),
            "paid_status": self.clarity_status_for("payment_intent", "succeeded",
                                                   event_type="payment_intent.succeeded"),
            "void_status": first_clarity(intent_to_stripe, "canceled"),
            "shipped_status": first_clarity(self.clarity_payment_actions, "capture"),
            "partially_refunded_status": self.clarity_refund_statuses.get("partially_refunded"),
            "refunded_status": self.clarity_refund_statuses.get("refunded"),
            "return_refund_status": self.clarity_return_statuses.get("refund"),
            "return_refunded_status": self.clarity_return_statuses.get("refunded"),
            # a map written before refund_failed existed keeps working: the default name
            "return_refund_failed_status": self.clarity_return_statuses.get("refund_failed", "Refund Failed"),
            "disputed_status": self.clarity_dispute_statuses.get("disputed"),
            "chargeback_status": self.clarity_dispute_statuses.get("chargeback"),
        }
        for name, value in found.items():
            if value is None:
                raise ValidationError(f"the status map gives no {name} (read from {STATUS_VARS[name]})",
                                      suggested_fix="add that entry; the defaults are in docs/reference/mappings.md")
        return {name: str(value) for name, value in found.items()}

    def clarity_status_for(self, kind: str, stripe_status: str, *, event_type: str | None = None) -> str | None:
        """The Clarity status a Stripe ``kind`` in ``stripe_status`` calls for; None = leave the order alone.

        An ``event_type`` listed in ``stripe_events_to_clarity`` wins over the status map.
        """
        if event_type and event_type in self.stripe_events_to_clarity:
            return self.stripe_events_to_clarity[event_type]
        return self.stripe_to_clarity.get(kind, {}).get(stripe_status)

    def stripe_status_for(self, clarity_status: str, kind: str = "payment_intent") -> str | None:
        """The Stripe status a Clarity status calls for (e.g. Void -> canceled); None = no Stripe action."""
        return self.clarity_to_stripe.get(kind, {}).get(clarity_status)

    def should_update_clarity(self, current: str | None, target: str) -> bool:
        """Whether moving the Clarity order from ``current`` to ``target`` is forward (see ``is_forward``)."""
        return is_forward("clarity_order", current, target, self.precedence)
