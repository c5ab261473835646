"""Stripe's currency rules as facts/stripe.md section 5 states them, and the currencies where they matter.

Written out here, not read from ``mapping/money.py``, so the money tests compare the code with the facts
rather than with itself. ``SPECIAL`` is every currency with a rule of its own at Stripe or whose Stripe
exponent differs from its ISO 4217 one; the property tests run each of them as an explicit example on
every run (``@special_examples``), since a random draw from 180 codes reaches a given one only by chance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import example

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES, minor_digits

ZERO_DECIMAL = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"])
"""Stripe's zero-decimal list (it names UGX too, with the ISK rule below): the amount is in whole units."""
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
"""Three decimals, and the last digit of the Stripe amount must be 0."""
WHOLE_IN_HUNDREDTHS = frozenset({"ISK", "UGX"})
"""Whole units only, sent with two decimals: 5 ISK is ``500``, a multiple of 100."""
PAYOUT_WHOLE_UNITS = frozenset({"HUF", "TWD"})
"""Two decimals for charges; payouts in whole units (a multiple of 100)."""


def exponent(code: str) -> int:
    """The number of decimals of Stripe's integer amount in ``code``."""
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def step(code: str) -> int:
    """Stripe amounts in ``code`` are a multiple of this."""
    return 10 if code in THREE_DECIMAL else 100 if code in WHOLE_IN_HUNDREDTHS else 1


ISO_DIFFERS = frozenset(c for c in SUPPORTED_CURRENCIES if minor_digits(c) != exponent(c))
"""Where Stripe counts in other units than ISO 4217 (MGA, ISK, UGX, IQD, LYD, CLF, UYW, UYI)."""
SPECIAL: tuple[str, ...] = tuple(sorted(ZERO_DECIMAL | THREE_DECIMAL | WHOLE_IN_HUNDREDTHS | PAYOUT_WHOLE_UNITS
                                        | ISO_DIFFERS))

# ISO minor units that meet each rule's edge: a single unit (a fils of KWD, a fraction of MGA), 5.50 MGA,
# 5.124 KWD (last digit not 0) beside 5.120, 175.50 HUF/TWD (a payout fraction) beside 175.00, a fifth
# decimal digit for CLF/UYW.
EDGE_AMOUNTS = (0, 1, 5, 550, 5120, 5124, 12345, 17500, 17550)

F = TypeVar("F", bound=Callable[..., Any])


def special_examples(*amounts: int, then: tuple[Any, ...] = ()) -> Callable[[F], F]:
    """Add ``@example(amount, code, *then)`` for every ``code`` in ``SPECIAL`` and every amount (default
    ``EDGE_AMOUNTS``) to a Hypothesis test taking ``(minor, code, ...)``."""
    def apply(test: F) -> F:
        for code in SPECIAL:
            for amount in amounts or EDGE_AMOUNTS:
                test = example(amount, code, *then)(test)
        return test
    return apply
