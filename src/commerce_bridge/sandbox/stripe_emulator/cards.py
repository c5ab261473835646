"""Stripe's documented test cards (numbers and ``pm_card_*`` ids) and how each one behaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    """The card error a charge with this card gets."""

    code: str
    decline_code: str
    message: str
    seller_message: str


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str = "visa"
    funding: str = "credit"
    country: str = "US"
    decline: Decline | None = None
    risk_level: str = "normal"
    risk_score: int = 20
    blocked: bool = False
    three_ds_required: bool = False
    cvc_check: str = "pass"
    address_line1_check: str | None = None
    address_postal_code_check: str | None = None
    dispute_reason: str | None = None
    dispute_inquiry: bool = False
    bypass_pending: bool = False
    incorrect_number: bool = False
    refund_pending: bool = False  # refunds start ``pending`` and succeed on the next account job run
    refund_fails: bool = False  # refunds start ``succeeded`` and fail on the next account job run

    @property
    def last4(self) -> str:
        return self.number[-4:]


_GENERIC = "The bank did not return any further details with this decline."


def _issuer(code: str, decline_code: str, message: str) -> Decline:
    seller = (
        _GENERIC
        if decline_code == "generic_decline"
        else f"The bank returned the decline code `{decline_code}`."
    )
    return Decline(code, decline_code, message, seller)


DECLINED = "Your card was declined."
FRAUD = Decline("card_declined", "fraudulent", DECLINED, "Stripe blocked this payment as too risky.")

_CARDS: list[TestCard] = [
    TestCard("4242424242424242"),
    TestCard("4000056655665556", funding="debit"),
    TestCard("5555555555554444", brand="mastercard"),
    TestCard("2223003122003222", brand="mastercard"),
    TestCard("5200828282828210", brand="mastercard", funding="debit"),
    TestCard("5105105105105100", brand="mastercard", funding="prepaid"),
    TestCard("378282246310005", brand="amex"),
    TestCard("371449635398431", brand="amex"),
    TestCard("6011111111111117", brand="discover"),
    TestCard("3056930009020004", brand="diners"),
    TestCard("3566002020360505", brand="jcb"),
    TestCard("6200000000000005", brand="unionpay"),
    TestCard("4000000760000002", country="BR"),
    TestCard("4000001240000000", country="CA"),
    TestCard("4000000000000077", bypass_pending=True),
    # declines (https://docs.stripe.com/testing#declined-payments)
    TestCard("4000000000000002", decline=_issuer("card_declined", "generic_decline", DECLINED)),
    TestCard(
        "4000000000009995",
        decline=_issuer("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    ),
    TestCard("4000000000009987", decline=_issuer("card_declined", "lost_card", DECLINED)),
    TestCard("4000000000009979", decline=_issuer("card_declined", "stolen_card", DECLINED)),
    TestCard("4000000000000069", decline=_issuer("expired_card", "expired_card", "Your card has expired.")),
    TestCard(
        "4000000000000127",
        cvc_check="fail",
        decline=_issuer("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ),
    TestCard(
        "4000000000000119",
        decline=_issuer(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    TestCard("4000000000000341", decline=_issuer("card_declined", "generic_decline", DECLINED)),
    TestCard("4242424242424241", incorrect_number=True),
    # Radar (https://docs.stripe.com/radar/testing)
    TestCard("4100000000000019", decline=FRAUD, blocked=True, risk_level="highest", risk_score=95),
    TestCard("4000000000004954", decline=FRAUD, blocked=True, risk_level="highest", risk_score=85),
    TestCard("4000000000009235", risk_level="elevated", risk_score=70),
    # checks
    TestCard("4000000000000101", cvc_check="fail"),
    TestCard("4000000000000010", address_line1_check="fail", address_postal_code_check="fail"),
    TestCard("4000000000000028", address_line1_check="fail", address_postal_code_check="pass"),
    TestCard("4000000000000036", address_line1_check="pass", address_postal_code_check="fail"),
    # 3-D Secure (https://docs.stripe.com/testing#regulatory-cards)
    TestCard("4000002760003184", three_ds_required=True),
    TestCard("4000002500003155", three_ds_required=True),
    TestCard("4000000000003220", three_ds_required=True),
    TestCard("4000000000003063", three_ds_required=True),
    TestCard(
        "4000008400001629",
        three_ds_required=True,
        decline=_issuer("card_declined", "card_declined", DECLINED),
    ),
    # disputes (https://docs.stripe.com/testing#disputes)
    TestCard("4000000000000259", dispute_reason="fraudulent"),
    TestCard("4000000000002685", dispute_reason="product_not_received"),
    TestCard("4000000000001976", dispute_reason="fraudulent", dispute_inquiry=True),
    # refunds (https://docs.stripe.com/testing#refunds)
    TestCard("4000000000007726", refund_pending=True),
    TestCard("4000000000005126", refund_fails=True),
]

CARDS: dict[str, TestCard] = {c.number: c for c in _CARDS}

PM_CARD_IDS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_mastercard_debit": "5200828282828210",
    "pm_card_mastercard_prepaid": "5105105105105100",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_diners": "3056930009020004",
    "pm_card_jcb": "3566002020360505",
    "pm_card_unionpay": "6200000000000005",
    "pm_card_br": "4000000760000002",
    "pm_card_ca": "4000001240000000",
    "pm_card_bypassPending": "4000000000000077",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_chargeDeclinedFraudulent": "4100000000000019",
    "pm_card_radarBlock": "4100000000000019",
    "pm_card_riskLevelHighest": "4000000000004954",
    "pm_card_riskLevelElevated": "4000000000009235",
    "pm_card_cvcCheckFail": "4000000000000101",
    "pm_card_avsFail": "4000000000000010",
    "pm_card_avsLine1Fail": "4000000000000028",
    "pm_card_avsZipFail": "4000000000000036",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_threeDSecureRequired": "4000000000003063",
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_createDispute": "4000000000000259",
    "pm_card_createDisputeProductNotReceived": "4000000000002685",
    "pm_card_createDisputeInquiry": "4000000000001976",
    "pm_card_pendingRefund": "4000000000007726",
    "pm_card_refundFail": "4000000000005126",
}

TOKENS: dict[str, str] = {"tok_" + k[len("pm_card_") :]: v for k, v in PM_CARD_IDS.items()}


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    if number.startswith(("36", "30", "38")):
        return "diners"
    if number.startswith("35"):
        return "jcb"
    if number.startswith("62"):
        return "unionpay"
    return "unknown"


def lookup(number: str) -> TestCard | None:
    """The behaviour of a card number; unknown numbers that pass Luhn behave like a plain success card."""
    number = number.replace(" ", "")
    card = CARDS.get(number)
    if card is not None:
        return card
    if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
        return None
    return TestCard(number, brand=brand_of(number))
