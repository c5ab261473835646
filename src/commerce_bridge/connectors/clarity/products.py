"""``ClarityProductGateway``: ``HttpClarityGateway`` plus the product reads and writes of the product sync.

Implements ``services.product_sides.ClarityProductPort`` on CEF's T4 CRUD routes (facts/clarity-cef-api.md:
``GET /Products/Product/ID/{ID}``, ``POST /Products/Product/Create``, ``PUT /Products/Product/Update``). CEF's
Update takes the whole model, so an update reads the product and writes it back with the changed fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.connectors.clarity.gateway import HttpClarityGateway
from commerce_bridge.errors import UpstreamRejected

__all__ = ["ClarityProductGateway"]

JsonDict = dict[str, Any]


class ClarityProductGateway(HttpClarityGateway):
    """The Clarity gateway with product get / create / update."""

    def get_product(self, product_id: int) -> JsonDict:
        """The product's full model (``NotFound`` when there is none)."""
        result = self._json("GET", f"/Products/Product/ID/{int(product_id)}")
        if not isinstance(result, dict):
            raise UpstreamRejected(f"product {product_id}: Clarity answered {type(result).__name__}, not a model")
        return result

    def create_product(self, model: Mapping[str, Any]) -> int:
        """``POST /Products/Product/Create``; the new product's ID."""
        result = self._action("POST", "/Products/Product/Create", {**dict(model), "ID": 0})
        return int(result["Result"])

    def update_product(self, product_id: int, fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (``Name``, ``Description``, ``Active``, ``UnitOfMeasure``, ``PriceBase``) on the
        product: its model as read, with them, without the collections."""
        current = self.get_product(product_id)
        body = {k: v for k, v in current.items() if not isinstance(v, list)}
        self._action("PUT", "/Products/Product/Update", {**body, **dict(fields), "ID": int(product_id)})
