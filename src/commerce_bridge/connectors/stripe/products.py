"""``StripeProductGateway``: ``StripeSdkGateway`` plus the product and price calls of the product sync.

Implements ``services.product_sides.StripeProductPort``. Every POST carries our idempotency key; SDK errors leave
only as ``BridgeError`` (through ``StripeSdkGateway._call``). Prices are immutable in Stripe: an update takes only
``active``, ``lookup_key``, ``transfer_lookup_key``, ``metadata`` and a few labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.connectors.stripe.gateway import StripeSdkGateway, _plain

__all__ = ["StripeProductGateway"]

JsonDict = dict[str, Any]


class StripeProductGateway(StripeSdkGateway):
    """The Stripe gateway with products and prices (``/v1/products``, ``/v1/prices``)."""

    def retrieve_product(self, product_id: str) -> JsonDict:
        with self._call():
            return _plain(self._v1.products.retrieve(product_id))

    def search_products(self, query: str, *, limit: int = 10) -> list[JsonDict]:
        """``GET /v1/products/search`` (eventually consistent: about a minute behind)."""
        with self._call():
            page = self._v1.products.search(params={"query": query, "limit": limit})
        return [_plain(p) for p in page.data]

    def create_product(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._create(self._v1.products, params, idempotency_key)

    def update_product(self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._update(self._v1.products, product_id, params, idempotency_key)

    def list_products(self, *, page_size: int = 100, starting_after: str | None = None,
                      created_gte: int | None = None) -> tuple[list[JsonDict], bool]:
        """One page of products, newest first, after ``starting_after``; and whether more follow (the backfill)."""
        return self._list_page(self._v1.products, page_size, starting_after, created_gte)

    def retrieve_price(self, price_id: str) -> JsonDict:
        with self._call():
            return _plain(self._v1.prices.retrieve(price_id))

    def list_prices(self, product_id: str, *, active: bool | None = True) -> list[JsonDict]:
        """The product's prices (every page), newest first."""
        params: dict[str, Any] = {"product": product_id, "limit": 100}
        if active is not None:
            params["active"] = active
        out: list[JsonDict] = []
        while True:
            with self._call():
                page = self._v1.prices.list(params=params)  # type: ignore[arg-type]
            rows = [_plain(p) for p in page.data]
            out += rows
            if not page.has_more or not rows:
                return out
            params["starting_after"] = rows[-1]["id"]

    def prices_by_lookup_keys(self, keys: list[str]) -> list[JsonDict]:
        """The prices holding these lookup keys (up to 10 per request, Stripe's limit)."""
        out: list[JsonDict] = []
        for start in range(0, len(keys), 10):
            with self._call():
                page = self._v1.prices.list(params={"lookup_keys": keys[start:start + 10], "limit": 100})
            out += [_plain(p) for p in page.data]
        return out

    def create_price(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._create(self._v1.prices, params, idempotency_key)

    def update_price(self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._update(self._v1.prices, price_id, params, idempotency_key)
