"""Clarity product -> domain Product -> ERPNext Item: the Item the order flow creates for a SKU the ERP lacks.

Rules (field by field in docs/reference/mappings.md, "Clarity product -> ERPNext Item"):

- the SKU is the product's ``CustomKey`` (what order lines carry as ``Sku``/``ProductKey``) and becomes the
  Item's ``item_code``; a product without one cannot be mapped (``MappingError``);
- ``item_name`` is the product's ``Name`` (the SKU when nameless), cut to ERPNext's 140 characters;
  ``description`` is ``Description``, else ``ShortDescription``, else the name, never cut;
- ``stock_uom`` is the product's ``UnitOfMeasure`` (renamed through ``uom_map`` when it names it), else
  ``default_uom`` (ERPNext's ``Nos``); ``item_group`` is the configured group (ERPNext's root,
  ``All Item Groups``, by default);
- ``is_stock_item`` is 0 for a product sold without stock (``IsUnlimitedStock``), else 1; ``disabled`` is 1
  for a product that is not ``Active``. CEF omits false booleans from its JSON, so a product without
  ``Active`` is inactive;
- ``standard_rate`` is the product's ``PriceBase`` read in the order's currency, as ERPNext decimal text.
  A price the currency cannot hold exactly (finer than its minor unit) or a negative one is left out, never
  rounded: the order's lines carry their own rates, so the Item's default price is not needed to book them.

Pure: no I/O; only ``domain`` and ``errors`` (and the sibling money helpers) are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.domain.currency import minor_digits, normalize_code
from commerce_bridge.domain.money import Money
from commerce_bridge.domain.product import Product
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.money import format_money, money_from_decimal

__all__ = ["DEFAULT_ITEM_GROUP", "DEFAULT_STOCK_UOM", "ITEM_NAME_MAX", "erp_item", "product_from_clarity"]

DEFAULT_ITEM_GROUP = "All Item Groups"
"""ERPNext's root item group, which every site has (until a setting names another)."""
DEFAULT_STOCK_UOM = "Nos"
"""ERPNext's default unit of measure, for a product that names none."""
ITEM_NAME_MAX = 140
"""The length of ERPNext's ``Data`` fields (``item_name``); a longer name is cut, the description keeps it all."""


def _text(product: Mapping[str, Any], field: str) -> str:
    value = product.get(field)
    return value.strip() if isinstance(value, str) else ""


def _price(value: object, currency: str) -> Money | None:
    if value is None or value == "":
        return None
    try:
        price = money_from_decimal(value, currency, field="PriceBase")
    except MappingError:
        return None  # finer than the currency's minor unit, or not a number: left out, never rounded
    return price if price.minor >= 0 else None


def product_from_clarity(product: Mapping[str, Any], *, currency: str) -> Product:
    """A Clarity ProductModel (as ``GET /Products/Product/ID/{ID}`` answers it) as a domain Product.

    Parameters
    ----------
    product:
        The product's JSON; every field is optional except ``CustomKey`` (CEF omits empty and default values).
    currency:
        The order's currency (ISO 4217): CEF's product prices carry none, they are the store's.

    Returns
    -------
    Product
        With ``price`` None when ``PriceBase`` is absent, negative or finer than the currency's minor unit.

    Raises
    ------
    MappingError
        The product has no ``CustomKey`` (no SKU to make an Item of), or ``currency`` is not a currency.
    """
    code = normalize_code(currency)
    minor_digits(code)  # an unknown currency is an error here, not a price left out
    sku = _text(product, "CustomKey")
    if not sku:
        raise MappingError(f"Clarity product {product.get('ID')!r} has no CustomKey (the SKU)",
                           suggested_fix="give the product its SKU as CustomKey in Clarity, then replay")
    return Product(
        sku=sku, name=_text(product, "Name") or sku,
        description=_text(product, "Description") or _text(product, "ShortDescription"),
        unit_of_measure=_text(product, "UnitOfMeasure"), active=product.get("Active") is True,
        stock_tracked=product.get("IsUnlimitedStock") is not True, price=_price(product.get("PriceBase"), code))


def erp_item(product: Product, *, item_group: str = DEFAULT_ITEM_GROUP, default_uom: str = DEFAULT_STOCK_UOM,
             uom_map: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An ERPNext Item document for ``product`` (``ensure_item`` finds or creates it by ``item_code``).

    Parameters
    ----------
    product:
        The catalogue's product.
    item_group:
        The Item Group new items go to (it must exist in ERPNext).
    default_uom:
        The stock UOM when the product names none (it must exist in ERPNext).
    uom_map:
        Clarity unit of measure -> ERPNext UOM (``{"EA": "Nos"}``); a unit it does not name is used as it is.

    Returns
    -------
    dict
        ``item_code``, ``item_name``, ``description``, ``item_group``, ``stock_uom``, ``is_stock_item``,
        ``disabled``, and ``standard_rate`` (decimal text) when the product has a price.
    """
    unit = product.unit_of_measure
    doc: dict[str, Any] = {
        "item_code": product.sku,
        "item_name": product.name[:ITEM_NAME_MAX],
        "description": product.description or product.name,
        "item_group": item_group,
        "stock_uom": (uom_map or {}).get(unit, unit) or default_uom,
        "is_stock_item": 1 if product.stock_tracked else 0,
        "disabled": 0 if product.active else 1,
    }
    if product.price is not None:
        doc["standard_rate"] = format_money(product.price)
    return doc
