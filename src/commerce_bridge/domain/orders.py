"""Orders, customers and addresses as the bridge understands them, independent of any vendor's shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from commerce_bridge.domain.money import Money


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address. ``country`` is ISO 3166-1 alpha-2, upper case."""

    line1: str
    city: str
    country: str
    postal_code: str = ""
    line2: str = ""
    region: str = ""  # state / province / county code or name
    name: str = ""


@dataclass(frozen=True, slots=True)
class Customer:
    """A person or company that buys. ``external_ids`` maps system -> that system's id."""

    email: str
    name: str = ""
    phone: str = ""
    billing_address: Address | None = None
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price: Money
    description: str = ""


class CaptureMode(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"  # authorise at checkout, capture on shipment


@dataclass(frozen=True, slots=True)
class Order:
    """A sales order. ``total`` = lines + tax + shipping - discount, all in ``currency``."""

    external_id: str  # the order's id in the commerce system (Clarity ID)
    key: str  # the order's business key (Clarity CustomKey)
    customer: Customer
    lines: tuple[OrderLine, ...]
    total: Money
    tax: Money
    shipping: Money
    discount: Money
    status: str  # the commerce system's status key, e.g. "Pending"
    shipping_address: Address | None = None
    payment_method_ref: str = ""  # a Stripe PaymentMethod id the storefront collected (never card data)
    payment_intent_ref: str = ""  # a PaymentIntent the storefront already created (Clarity PaymentTransactionID)
    balance_due: Money | None = None  # what is still unpaid (Clarity BalanceDue); None when unknown

    @property
    def currency(self) -> str:
        return self.total.currency

    def lines_total(self) -> Money:
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + Money(line.unit_price.minor * line.quantity, self.currency)
        return total

    def computed_total(self) -> Money:
        """lines + tax + shipping - discount; equals ``total`` for a consistent order."""
        return self.lines_total() + self.tax + self.shipping - self.discount


@dataclass(frozen=True, slots=True)
class PaymentSummary:
    """What the bridge needs to know about one Stripe payment (a PaymentIntent and its latest Charge)."""

    intent_id: str  # pi_...; "" when only a Charge was seen
    charge_id: str  # ch_...; "" before the first charge attempt
    status: str  # the PaymentIntent status (or the Charge status when there is no intent)
    amount: Money  # what was asked for
    amount_received: Money  # what was received (captured) so far
    captured: bool
    risk_level: str = ""  # charge.outcome.risk_level: normal, elevated, highest, not_assessed, unknown
    last_error_code: str = ""  # last_payment_error.code (e.g. card_declined)
    decline_code: str = ""  # last_payment_error.decline_code (e.g. insufficient_funds)
    customer_id: str = ""  # cus_...
    payment_method_id: str = ""  # pm_...
    metadata: dict[str, str] = field(default_factory=dict)
