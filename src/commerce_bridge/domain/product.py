"""A catalogue product as the bridge understands it (what the ERP needs to know of a SKU), independent of any vendor."""

from __future__ import annotations

from dataclasses import dataclass

from commerce_bridge.domain.money import Money


@dataclass(frozen=True, slots=True)
class Product:
    """One sellable product of the commerce system's catalogue, keyed by its ``sku`` (Clarity's CustomKey).

    ``unit_of_measure`` is "" when the catalogue names none; ``price`` is the list price in the currency it
    was read in (None: the product has no usable price); ``stock_tracked`` is False for a product sold
    without stock (Clarity's ``IsUnlimitedStock``).
    """

    sku: str
    name: str
    description: str = ""
    unit_of_measure: str = ""
    active: bool = True
    stock_tracked: bool = True
    price: Money | None = None
