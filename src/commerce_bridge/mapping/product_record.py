"""The canonical product record of the product sync (issue 14, point 4), and its three readers.

Pure: no I/O. A reader turns what one system holds about a product into a ``ProductRecord``:

* ``sku``: the key. Clarity ``CustomKey`` = ERPNext ``item_code`` = Stripe product ``metadata["item_code"]``
  (else the SKU named by one of its prices' ``lookup_key``, ``cb:<sku>:<currency lower>``);
* ``name``, ``description`` (whitespace trimmed), ``active`` (a bool: never "empty"), ``uom`` (the ERPNext
  UOM name: a Clarity ``UnitOfMeasure`` is renamed through ``uom_map``, Stripe's ``unit_label`` is taken as it
  is);
* ``prices``: ISO currency -> integer minor units, one price point per currency. Clarity: ``PriceBase`` in the
  store's currency (CEF prices carry none); ERPNext: the selling price list's Item Price (the list's currency);
  Stripe: the product's active one-time Prices (per currency the one holding our ``lookup_key``, else the
  newest). ``currencies`` says which currencies a system can hold (None: any, Stripe);
* ``ids``: ``clarity_product`` (the product ID), ``stripe`` (``prod_…``), ``erp`` (the item code);
* ``updated_at``: per field (a price as ``prices.<CUR>``) the source's own clock: Clarity ``UpdatedDate`` (the
  store's zone), ERPNext Item ``modified`` and an Item Price's ``modified``, Stripe product ``updated`` and a
  Price's ``created``.

CEF omits false booleans from its JSON: a Clarity product without ``Active`` is inactive. A price a currency
cannot hold exactly (finer than its minor unit) or a negative one is a ``MappingError`` naming the field, never
rounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any

from commerce_bridge.domain.currency import normalize_code
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.customer_record import parse_time
from commerce_bridge.mapping.money import from_stripe_amount, money_from_decimal

CLARITY, STRIPE, ERP = "clarity", "stripe", "erp"
SYSTEMS = (CLARITY, ERP, STRIPE)
"""The fixed system order; it breaks timestamp ties in the merge (earlier wins)."""

PRODUCT_FIELDS = ("name", "description", "active", "uom", "prices")
SCALAR_FIELDS = ("name", "description", "active", "uom")

CLARITY_PRODUCT = "clarity_product"
"""``ids`` key (and identity-map system) of the Clarity product ID."""
ID_KEYS = (CLARITY_PRODUCT, ERP, STRIPE)
OWN_ID = MappingProxyType({CLARITY: CLARITY_PRODUCT, STRIPE: STRIPE, ERP: ERP})
"""System -> the ``ids`` key of its own product id."""

ITEM_CODE_KEY = "item_code"
"""Stripe product metadata key of the SKU."""
CLARITY_PRODUCT_KEY = "clarity_product_id"
"""Stripe product metadata key of the Clarity product ID."""
LOOKUP_PREFIX = "cb:"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Scalar = str | bool


def price_field(currency: str) -> str:
    """The per-field name of the price in ``currency`` (``prices.USD``)."""
    return f"prices.{currency.upper()}"


def lookup_key(sku: str, currency: str) -> str:
    """The ``lookup_key`` of the Stripe Price of ``sku`` in ``currency``: ``cb:<sku>:<currency lower>``."""
    return f"{LOOKUP_PREFIX}{sku}:{currency.lower()}"


def sku_of_lookup_key(key: object) -> str:
    """The SKU a ``cb:<sku>:<currency>`` lookup key names ("" for any other key)."""
    if not isinstance(key, str) or not key.startswith(LOOKUP_PREFIX) or key.count(":") < 2:
        return ""
    return key[len(LOOKUP_PREFIX):].rsplit(":", 1)[0]


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """One system's view of a product, normalised (see the module docstring)."""

    system: str
    sku: str = ""
    name: str = ""
    description: str = ""
    active: bool | None = None
    uom: str = ""
    prices: Mapping[str, int] = field(default_factory=dict)
    currencies: frozenset[str] | None = None
    ids: Mapping[str, str] = field(default_factory=dict)
    updated_at: Mapping[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", MappingProxyType({k.upper(): v for k, v in sorted(self.prices.items())}))
        object.__setattr__(self, "ids", MappingProxyType({k: v for k, v in sorted(self.ids.items()) if v}))
        object.__setattr__(self, "updated_at", MappingProxyType(dict(sorted(self.updated_at.items()))))

    def holds(self, name: str) -> bool:
        """Whether this system carries field ``name`` (``prices.<CUR>`` included)."""
        if name.startswith("prices."):
            return self.currencies is None or name[7:] in self.currencies
        return name in SCALAR_FIELDS

    def value(self, name: str) -> Scalar | int | None:
        """The value of field ``name`` (``prices.USD``: the minor units, None when it has none)."""
        if name.startswith("prices."):
            return self.prices.get(name[7:])
        value: Scalar | None = getattr(self, name)
        return value

    def stamp(self, name: str) -> datetime:
        """When ``name`` last changed by the source's clock (the epoch when unknown)."""
        return self.updated_at.get(name, _EPOCH)

    def field_names(self) -> tuple[str, ...]:
        """The scalar fields and one ``prices.<CUR>`` per price held."""
        return SCALAR_FIELDS + tuple(price_field(c) for c in self.prices)


def is_empty(value: object) -> bool:
    """``None`` and ``""`` are empty; ``False`` and ``0`` are values."""
    return value is None or value == ""


def restamp(record: ProductRecord, previous: ProductRecord | None) -> ProductRecord:
    """``record`` with the timestamps of ``previous`` on the fields whose value did not change."""
    if previous is None:
        return record
    stamps = dict(record.updated_at)
    for name in record.field_names():
        if name in previous.updated_at and record.value(name) == previous.value(name):
            stamps[name] = previous.updated_at[name]
    return replace(record, updated_at=stamps)


def _text(data: Mapping[str, Any] | None, *names: str) -> str:
    for name in names:
        value = (data or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return ""


def _minor(value: object, currency: str, system: str, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        minor = money_from_decimal(value, currency, field=where).minor
    except MappingError as exc:
        raise MappingError(f"{system}: {exc.message}", errors=exc.errors, suggested_fix=exc.suggested_fix,
                           details={"system": system, "field": "prices"}) from exc
    if minor < 0:
        raise MappingError(f"{system}: {where} is negative", suggested_fix=f"correct {where} in {system}",
                           details={"system": system, "field": "prices"})
    return minor


def from_clarity(product: Mapping[str, Any], *, currency: str, tz: tzinfo = UTC,
                 uom_map: Mapping[str, str] | None = None) -> ProductRecord:
    """A Clarity ProductModel (``GET /Products/Product/ID/{ID}``).

    Parameters
    ----------
    product:
        The product's JSON (CEF omits empty and false values).
    currency:
        The store's currency (ISO 4217): ``PriceBase`` is in it.
    tz:
        The CEF server's zone (its dates carry no offset).
    uom_map:
        Clarity unit of measure -> ERPNext UOM; a unit it does not name is used as it is.

    Raises
    ------
    MappingError
        ``PriceBase`` finer than the currency's minor unit or negative; an unreadable ``UpdatedDate``.
    """
    code = normalize_code(currency)
    when = parse_time(product.get("UpdatedDate"), tz, field="Product.UpdatedDate")
    unit = _text(product, "UnitOfMeasure")
    price = _minor(product.get("PriceBase"), code, CLARITY, "PriceBase")
    prices = {code: price} if price is not None else {}
    fields = (*SCALAR_FIELDS, *(price_field(c) for c in prices))
    return ProductRecord(
        system=CLARITY, sku=_text(product, "CustomKey"), name=_text(product, "Name"),
        description=_text(product, "Description"), active=product.get("Active") is True,
        uom=(uom_map or {}).get(unit, unit), prices=prices, currencies=frozenset({code}),
        ids={CLARITY_PRODUCT: _text(product, "ID")},
        updated_at={name: when for name in fields} if when is not None else {})


def from_erp(item: Mapping[str, Any], item_prices: Sequence[Mapping[str, Any]], *, currency: str,
             tz: tzinfo = UTC) -> ProductRecord:
    """An ERPNext Item and its Item Price rows of the selling price list.

    Parameters
    ----------
    item:
        The Item document (``item_code``, ``item_name``, ``description``, ``disabled``, ``stock_uom``,
        ``modified``).
    item_prices:
        The Item Price documents of the selling price list (``price_list_rate``, ``currency``, ``modified``);
        the oldest row per currency counts.
    currency:
        The price list's currency (what the list can hold).
    tz:
        The site's zone (frappe datetimes carry no offset).

    Raises
    ------
    MappingError
        A rate finer than its currency's minor unit or negative; an unreadable ``modified``.
    """
    code = normalize_code(currency)
    when = parse_time(item.get("modified"), tz, field="Item.modified")
    stamps = {name: when for name in SCALAR_FIELDS if when is not None}
    prices: dict[str, int] = {}
    for row in item_prices:
        row_code = normalize_code(row.get("currency") or code)
        if row_code in prices:
            continue
        minor = _minor(row.get("price_list_rate"), row_code, ERP, "Item Price.price_list_rate")
        if minor is None:
            continue
        prices[row_code] = minor
        row_at = parse_time(row.get("modified"), tz, field="Item Price.modified")
        if row_at is not None:
            stamps[price_field(row_code)] = row_at
    return ProductRecord(
        system=ERP, sku=_text(item, "item_code", "name"), name=_text(item, "item_name"),
        description=_text(item, "description"), active=not bool(item.get("disabled")),
        uom=_text(item, "stock_uom"), prices=prices, currencies=frozenset({code}),
        ids={ERP: _text(item, "item_code", "name")}, updated_at=stamps)


def stripe_prices(product_id: str, prices: Sequence[Mapping[str, Any]], sku: str = "") -> dict[str, Mapping[str, Any]]:
    """The product's price points: per ISO currency its active one-time Price (the one holding our
    ``lookup_key`` when one does, else the newest)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for price in prices:
        if price.get("product") not in (None, product_id) or not price.get("active") or price.get("recurring"):
            continue
        if price.get("type") not in (None, "one_time") or not isinstance(price.get("unit_amount"), int):
            continue
        code = normalize_code(price.get("currency"))
        held = chosen.get(code)
        ours = bool(sku) and price.get("lookup_key") == lookup_key(sku, code)
        if held is None or (ours and held.get("lookup_key") != lookup_key(sku, code)) or (
                ours == (held.get("lookup_key") == lookup_key(sku, code))
                and int(price.get("created") or 0) > int(held.get("created") or 0)):
            chosen[code] = price
    return chosen


def stripe_sku(product: Mapping[str, Any], prices: Sequence[Mapping[str, Any]] = ()) -> str:
    """The SKU of a Stripe product: ``metadata.item_code``, else the one a price's ``lookup_key`` names."""
    metadata = product.get("metadata") or {}
    sku = _text(metadata, ITEM_CODE_KEY)
    if sku:
        return sku
    for price in prices:
        named = sku_of_lookup_key(price.get("lookup_key"))
        if named:
            return named
    return ""


def from_stripe(product: Mapping[str, Any], prices: Sequence[Mapping[str, Any]]) -> ProductRecord:
    """A Stripe Product and its Prices (``GET /v1/prices?product=…``).

    The fields are dated by the product's ``updated`` (else ``created``), each price by its Price's
    ``created``.
    ``ids``: ``stripe`` and the ``clarity_product_id`` of its metadata.

    Raises
    ------
    MappingError
        A price amount its currency cannot hold.
    """
    sku = stripe_sku(product, prices)
    when = parse_time(product.get("updated") or product.get("created"), field="product.updated")
    stamps = {name: when for name in SCALAR_FIELDS if when is not None}
    amounts: dict[str, int] = {}
    for code, price in stripe_prices(str(product.get("id") or ""), prices, sku).items():
        amounts[code] = from_stripe_amount(int(price["unit_amount"]), code).minor
        created = parse_time(price.get("created"), field="price.created")
        if created is not None:
            stamps[price_field(code)] = created
    metadata = product.get("metadata") or {}
    return ProductRecord(
        system=STRIPE, sku=sku, name=_text(product, "name"), description=_text(product, "description"),
        active=bool(product.get("active")), uom=_text(product, "unit_label"), prices=amounts, currencies=None,
        ids={STRIPE: _text(product, "id"), CLARITY_PRODUCT: _text(metadata, CLARITY_PRODUCT_KEY),
             ERP: _text(metadata, ITEM_CODE_KEY)},
        updated_at=stamps)
