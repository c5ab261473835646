"""The three systems' sides of the product sync: read one product, find one by SKU, create one, apply a patch.

Each side speaks to its system through a port and to the sync in ``ProductRecord``s and the patches of
``mapping.product_sync``. Rules kept here:

* **Clarity**: a product found by its CustomKey (the SKU); a created product has CustomKey = SKU, so a repeated
  create finds it instead. CEF's Update takes the whole model (the gateway reads and writes it back).
* **ERPNext**: an Item (``item_code`` = SKU, found by it) made by ``mapping.item.erp_item`` (ERPNext's rules:
  item group, default UOM), and its Item Price rows of the selling price list; a price change updates the row
  (creates it when missing). The list's currency is read from the Price List once.
* **Stripe**: a Product (``metadata.item_code``, ``metadata.clarity_product_id``) found by its id, else by search
  on ``metadata['item_code']`` or by the lookup keys of its Prices (``cb:<sku>:<currency>``; Stripe's search is
  about a minute behind: the identity map finds a product just created). **Prices are immutable**: a new amount
  is a new Price that takes the ``lookup_key`` (``transfer_lookup_key``); the product's ``default_price`` moves
  to it when it was the old one, and only then the old Price is deactivated. A price is never deleted, and a
  currency the other systems no longer have is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any, Protocol

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.product import Product
from commerce_bridge.errors import NotFound
from commerce_bridge.mapping.item import DEFAULT_ITEM_GROUP, DEFAULT_STOCK_UOM, erp_item
from commerce_bridge.mapping.product_record import (
    CLARITY,
    CLARITY_PRODUCT,
    CLARITY_PRODUCT_KEY,
    ERP,
    ITEM_CODE_KEY,
    SCALAR_FIELDS,
    STRIPE,
    ProductRecord,
    from_clarity,
    from_erp,
    from_stripe,
    lookup_key,
    price_field,
    stripe_prices,
)
from commerce_bridge.mapping.product_sync import render
from commerce_bridge.services import sync_core
from commerce_bridge.services.gateways import ErpGateway
from commerce_bridge.services.sync_core import or_none, search_quote

JsonDict = dict[str, Any]


class ClarityProductPort(Protocol):
    """What the product sync needs of Clarity (``connectors.clarity.products.ClarityProductGateway``)."""

    def get_product(self, product_id: int) -> JsonDict:
        """The product's full model; ``NotFound`` when there is none."""
        ...

    def find_product_by_key(self, key: str) -> JsonDict | None:
        """The product whose CustomKey is ``key`` (full model), or None."""
        ...

    def create_product(self, model: Mapping[str, Any]) -> int:
        """Create a product; its ID."""
        ...

    def update_product(self, product_id: int, fields: Mapping[str, Any]) -> None:
        """Write ``fields`` on the product."""
        ...


class StripeProductPort(Protocol):
    """What the product sync needs of Stripe (``connectors.stripe.products.StripeProductGateway``)."""

    def retrieve_product(self, product_id: str) -> JsonDict: ...

    def search_products(self, query: str, *, limit: int = 10) -> list[JsonDict]: ...

    def create_product(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict: ...

    def update_product(self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict: ...

    def retrieve_price(self, price_id: str) -> JsonDict: ...

    def list_prices(self, product_id: str, *, active: bool | None = True) -> list[JsonDict]: ...

    def prices_by_lookup_keys(self, keys: list[str]) -> list[JsonDict]: ...

    def create_price(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict: ...

    def update_price(self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict: ...


Found = sync_core.Found[ProductRecord]
"""One system's product as read: its id, its record and the documents a patch is applied to."""


class ClaritySide:
    system = CLARITY

    def __init__(self, gateway: ClarityProductPort, *, currency: str, tz: tzinfo = UTC,
                 uom_map: Mapping[str, str] | None = None) -> None:
        self._gw, self._currency, self._tz, self._uom_map = gateway, currency, tz, dict(uom_map or {})

    def _found(self, product: Mapping[str, Any]) -> Found:
        record = from_clarity(product, currency=self._currency, tz=self._tz, uom_map=self._uom_map)
        return Found(CLARITY, str(product["ID"]), record, {"product": product})

    def read(self, external_id: str) -> Found | None:
        return or_none(lambda: self._found(self._gw.get_product(int(external_id))))

    def find(self, sku: str) -> str | None:
        product = self._gw.find_product_by_key(sku)
        return str(product["ID"]) if product is not None else None

    def create(self, merged: ProductRecord) -> str:
        existing = self._gw.find_product_by_key(merged.sku)
        if existing is not None:  # an earlier attempt created it
            return str(existing["ID"])
        names = (*SCALAR_FIELDS, *(price_field(c) for c in merged.prices if c == self._currency))
        body = render(merged, names, system=CLARITY, uom_map=self._uom_map)
        body.setdefault("Name", merged.sku)
        return str(self._gw.create_product({**body, "CustomKey": merged.sku}))

    def apply(self, found: Found, patch: Mapping[str, Any]) -> None:
        self._gw.update_product(int(found.external_id), patch)


class ErpSide:
    system = ERP

    def __init__(self, gateway: ErpGateway, *, price_list: str, tz: tzinfo = UTC,
                 item_group: str = DEFAULT_ITEM_GROUP, default_uom: str = DEFAULT_STOCK_UOM,
                 fallback_currency: str = "USD") -> None:
        self._gw, self._price_list, self._tz = gateway, price_list, tz
        self._item_group, self._default_uom, self._fallback = item_group, default_uom, fallback_currency
        self._currency: str | None = None

    @property
    def currency(self) -> str:
        """The selling price list's currency (read once)."""
        if self._currency is None:
            try:
                self._currency = str(self._gw.get_doc("Price List", self._price_list).get("currency")
                                     or self._fallback).upper()
            except NotFound as exc:
                raise NotFound(f"ERPNext has no Price List {self._price_list!r}",
                               suggested_fix="create the selling price list in ERPNext or set "
                                             "CB_ERP_SELLING_PRICE_LIST to an existing one") from exc
        return self._currency

    def _rows(self, item_code: str) -> list[JsonDict]:
        return self._gw.list_docs("Item Price", filters=[["item_code", "=", item_code],
                                                         ["price_list", "=", self._price_list]],
                                  fields=("*",), limit=50, order_by="creation asc")

    def read(self, external_id: str) -> Found | None:
        currency = self.currency  # a missing price list is an error of its own, not a missing item

        def load() -> Found:
            item = self._gw.get_doc("Item", external_id)
            rows = self._rows(str(item.get("item_code") or item["name"]))
            record = from_erp(item, rows, currency=currency, tz=self._tz)
            by_currency: dict[str, JsonDict] = {}
            for row in rows:
                by_currency.setdefault(str(row.get("currency") or currency).upper(), row)
            return Found(ERP, str(item["name"]), record, {"item": item, "prices": by_currency})
        return or_none(load)

    def find(self, sku: str) -> str | None:
        found = self.read(sku)
        return found.external_id if found is not None else None

    def create(self, merged: ProductRecord) -> str:
        price = merged.prices.get(self.currency)
        product = Product(sku=merged.sku, name=merged.name or merged.sku, description=merged.description,
                          unit_of_measure=merged.uom, active=merged.active is not False,
                          price=Money(price, self.currency) if price is not None else None)
        doc = erp_item(product, item_group=self._item_group, default_uom=self._default_uom)
        item = self._gw.ensure_item(doc)
        return str(item["name"])

    def apply(self, found: Found, patch: Mapping[str, Any]) -> None:
        if patch.get("item"):
            self._gw.update_doc("Item", found.external_id, patch["item"])
        rows: Mapping[str, JsonDict] = found.docs.get("prices") or {}
        for currency, rate in (patch.get("prices") or {}).items():
            row = rows.get(currency)
            if row is not None:
                self._gw.update_doc("Item Price", str(row["name"]), {"price_list_rate": rate})
            else:
                self._gw.create_doc("Item Price", {"item_code": found.external_id, "price_list": self._price_list,
                                                   "price_list_rate": rate})


class StripeSide:
    system = STRIPE

    def __init__(self, gateway: StripeProductPort) -> None:
        self._gw = gateway

    def product_of(self, record_id: str) -> str:
        """The product id of ``record_id`` (a ``price_…`` id names its product)."""
        if record_id.startswith("price_"):
            return str(self._gw.retrieve_price(record_id)["product"])
        return record_id

    def read(self, external_id: str) -> Found | None:
        def load() -> Found:
            product = self._gw.retrieve_product(external_id)
            if product.get("deleted"):
                raise NotFound(f"Stripe product {external_id} is deleted")
            prices = self._gw.list_prices(external_id, active=True)
            record = from_stripe(product, prices)
            return Found(STRIPE, str(product["id"]), record,
                         {"product": product, "prices": stripe_prices(str(product["id"]), prices, record.sku)})
        return or_none(load)

    def find(self, sku: str, currencies: list[str]) -> str | None:
        found = self._gw.search_products(f"metadata[{search_quote(ITEM_CODE_KEY)}]:{search_quote(sku)}", limit=10)
        ranked = sorted((p for p in found if (p.get("metadata") or {}).get(ITEM_CODE_KEY) == sku),
                        key=lambda p: (not p.get("active"), -int(p.get("created") or 0)))
        if ranked:
            return str(ranked[0]["id"])
        keys = [lookup_key(sku, c) for c in sorted(set(currencies))]
        prices = self._gw.prices_by_lookup_keys(keys) if keys else []
        return str(prices[0]["product"]) if prices else None

    def create(self, merged: ProductRecord, *, key: str, default_currency: str) -> str:
        body = render(merged, SCALAR_FIELDS, system=STRIPE).get("product", {})
        body.setdefault("name", merged.sku)
        metadata = {ITEM_CODE_KEY: merged.sku}
        if merged.ids.get(CLARITY_PRODUCT):
            metadata[CLARITY_PRODUCT_KEY] = merged.ids[CLARITY_PRODUCT]
        product = self._gw.create_product({**body, "metadata": metadata}, idempotency_key=key)
        product_id = str(product["id"])
        amounts = render(merged, tuple(price_field(c) for c in merged.prices), system=STRIPE).get("prices", {})
        default = None
        for currency, amount in sorted(amounts.items()):
            price = self._new_price(product_id, merged.sku, currency, amount, key=f"{key}:price:{currency}")
            if currency == default_currency.upper() or default is None:
                default = str(price["id"])
        if default is not None:
            self._gw.update_product(product_id, {"default_price": default}, idempotency_key=f"{key}:default")
        return product_id

    def _new_price(self, product_id: str, sku: str, currency: str, amount: int, *, key: str) -> JsonDict:
        return self._gw.create_price({"product": product_id, "currency": currency.lower(), "unit_amount": amount,
                                      "lookup_key": lookup_key(sku, currency), "transfer_lookup_key": True},
                                     idempotency_key=key)

    def apply(self, found: Found, patch: Mapping[str, Any], *, key: str) -> None:
        if patch.get("product"):
            self._gw.update_product(found.external_id, patch["product"], idempotency_key=key)
        prices: Mapping[str, JsonDict] = found.docs.get("prices") or {}
        default = (found.docs.get("product") or {}).get("default_price")
        sku = found.record.sku or str((patch.get("product") or {}).get("metadata", {}).get(ITEM_CODE_KEY) or "")
        for currency, amount in sorted((patch.get("prices") or {}).items()):
            new = self._new_price(found.external_id, sku, currency, amount, key=f"{key}:price:{currency}")
            old = prices.get(currency)
            if old is None:
                if not default:
                    self._gw.update_product(found.external_id, {"default_price": new["id"]},
                                            idempotency_key=f"{key}:default:{currency}")
                    default = new["id"]
                continue
            if default == old["id"]:  # first move the default, so the product never points at an inactive price
                self._gw.update_product(found.external_id, {"default_price": new["id"]},
                                        idempotency_key=f"{key}:default:{currency}")
                default = new["id"]
            self._gw.update_price(str(old["id"]), {"active": False}, idempotency_key=f"{key}:retire:{currency}")
