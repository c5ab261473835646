"""Money: an integer number of minor units plus an ISO 4217 code. Never a float."""

from __future__ import annotations

from dataclasses import dataclass

from commerce_bridge.errors import MappingError


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """``minor`` units of ``currency`` (upper-case ISO 4217), e.g. ``Money(1999, "USD")`` is 19.99 USD."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MappingError(f"money amount must be an integer number of minor units, got {self.minor!r}")
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isascii()
                and self.currency.isalpha() and self.currency.isupper()):
            raise MappingError(f"currency must be an upper-case ISO 4217 code, got {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise MappingError(f"cannot combine {self.currency} with {other.currency}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)
