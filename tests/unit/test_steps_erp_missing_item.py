"""``erp.sales_order.ensure`` when ERPNext lacks an Item: made from the Clarity product, then the order once more.

Fakes at the ports (``ErpGateway``, ``ClarityGateway``) that behave as ERPNext does: a Sales Order naming an
Item that does not exist is refused (``UpstreamRejected``), and every call is recorded, so the happy path's
single call is pinned too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from commerce_bridge.errors import NotFound, UpstreamRejected
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.steps import FlowSettings
from commerce_bridge.workflows.steps.erp import actions


def _line(sku: str, minor: int) -> dict[str, Any]:
    return {"sku": sku, "quantity": 1, "unit_price": {"minor": minor, "currency": "USD"}, "description": ""}


def order(*skus: str) -> dict[str, Any]:
    lines = [_line(sku, 1000) for sku in skus]
    total = {"minor": 1000 * len(skus), "currency": "USD"}
    zero = {"minor": 0, "currency": "USD"}
    return {"external_id": "1", "key": "WEB-100001", "customer": {"email": "ann@example.com", "name": "Ann"},
            "lines": lines, "total": total, "tax": zero, "shipping": zero, "discount": zero, "status": "Pending"}


class Erp:
    """ERPNext as far as the step goes: Items by code; a Sales Order naming an unknown one is refused."""

    def __init__(self, items: Sequence[str], *, refuse: str | None = None) -> None:
        self.items: dict[str, dict[str, Any]] = {code: {"item_code": code} for code in items}
        self.refuse = refuse  # refuse every Sales Order with this message (another validation)
        self.calls: list[str] = []

    def list_docs(self, doctype: str, *, filters: Any = None, fields: Sequence[str] = ("name",), limit: int = 20,
                  order_by: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(f"list {doctype}")
        [[field, op, codes]] = filters
        assert (doctype, field, op, list(fields)) == ("Item", "item_code", "in", ["item_code"]) and limit >= len(codes)
        return [{"item_code": code} for code in codes if code in self.items]

    def ensure_item(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(f"ensure Item {doc['item_code']}")
        return self.items.setdefault(str(doc["item_code"]), dict(doc))

    def ensure_sales_order(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("ensure Sales Order")
        if self.refuse:
            raise UpstreamRejected(self.refuse)
        for idx, row in enumerate(doc["items"], start=1):
            if row["item_code"] not in self.items:
                raise UpstreamRejected(f"Could not find Row #{idx}: Item Code: {row['item_code']}")
        return {"name": "SAL-ORD-2026-00001", "grand_total": "10.00"}


class Clarity:
    def __init__(self, products: Mapping[str, dict[str, Any]]) -> None:
        self.products = dict(products)
        self.asked: list[str] = []

    def find_product_by_key(self, key: str) -> dict[str, Any] | None:
        self.asked.append(key)
        return self.products.get(key)


LAMP = {"ID": 7, "CustomKey": "SKU-LAMP", "Name": "Desk Lamp", "Active": True, "UnitOfMeasure": "Box",
        "PriceBase": "24.5000"}


def step(erp: Erp, clarity: Clarity | None, flow: FlowSettings | None = None) -> Any:
    built = actions(cast(ErpGateway, erp), flow or FlowSettings(), cast(IdentityMap, None), cast(KeyLocks, None),
                    cast(ClarityGateway, clarity))
    return lambda *skus: built["erp.sales_order.ensure"](cast(StepContext, None),
                                                         {"order": order(*skus), "customer": "Ann"})


def test_an_order_whose_items_exist_makes_one_call_and_asks_clarity_nothing() -> None:
    erp, clarity = Erp(["SKU-TEE"]), Clarity({"SKU-TEE": {"CustomKey": "SKU-TEE"}})
    assert step(erp, clarity)("SKU-TEE") == {"name": "SAL-ORD-2026-00001", "grand_total": "10.00"}
    assert erp.calls == ["ensure Sales Order"] and clarity.asked == []


def test_a_missing_item_is_made_from_the_clarity_product_and_the_order_tried_once_more() -> None:
    erp, clarity = Erp(["SKU-TEE"]), Clarity({"SKU-LAMP": LAMP})
    flow = FlowSettings(erp_item_group="Products", erp_default_uom="Unit", erp_uom_map={"Box": "Box of 10"})
    assert step(erp, clarity, flow)("SKU-TEE", "SKU-LAMP", "SKU-LAMP")["name"] == "SAL-ORD-2026-00001"
    assert erp.calls == ["ensure Sales Order", "list Item", "ensure Item SKU-LAMP", "ensure Sales Order"]
    assert clarity.asked == ["SKU-LAMP"]
    assert erp.items["SKU-LAMP"] == {
        "item_code": "SKU-LAMP", "item_name": "Desk Lamp", "description": "Desk Lamp", "item_group": "Products",
        "stock_uom": "Box of 10", "is_stock_item": 1, "disabled": 0, "standard_rate": "24.50"}


def test_a_sku_in_neither_system_parks_naming_it_and_the_fix_and_creates_nothing() -> None:
    erp, clarity = Erp([]), Clarity({"SKU-LAMP": LAMP})
    with pytest.raises(NotFound) as parked:
        step(erp, clarity)("SKU-LAMP", "SKU-GHOST")
    error = parked.value
    assert str(error) == ("order WEB-100001: SKU 'SKU-GHOST' is neither an Item in ERPNext nor a product (CustomKey) "
                          "in Clarity")
    assert error.suggested_fix is not None and "create the product in Clarity with CustomKey 'SKU-GHOST'" in \
        error.suggested_fix and "the Item 'SKU-GHOST' in ERPNext, then replay" in error.suggested_fix
    assert error.details == {"missing_skus": ["SKU-GHOST"]}
    assert erp.calls == ["ensure Sales Order", "list Item"] and "SKU-LAMP" not in erp.items  # nothing half-done


def test_without_a_clarity_connector_the_missing_item_parks_the_run() -> None:
    with pytest.raises(NotFound, match=r"SKUs 'SKU-A', 'SKU-B' are not an Item in ERPNext \(no Clarity"):
        step(Erp([]), None)("SKU-A", "SKU-B")


def test_a_refusal_about_something_else_is_raised_as_erpnext_gave_it() -> None:
    erp, clarity = Erp(["SKU-TEE"], refuse="Could not find Customer: Ann"), Clarity({})
    with pytest.raises(UpstreamRejected, match="Could not find Customer: Ann"):
        step(erp, clarity)("SKU-TEE")
    assert erp.calls == ["ensure Sales Order", "list Item", "ensure Sales Order"] and clarity.asked == []


class MadeMeanwhile(Erp):
    """A run for the same new SKU creates the Item between this run's refused Sales Order and its look at Items."""

    def list_docs(self, doctype: str, **kw: Any) -> list[dict[str, Any]]:
        self.items.setdefault("SKU-LAMP", {"item_code": "SKU-LAMP"})
        return super().list_docs(doctype, **kw)


def test_an_item_another_run_made_meanwhile_is_not_made_again_and_the_order_goes_through() -> None:
    erp, clarity = MadeMeanwhile([]), Clarity({"SKU-LAMP": LAMP})
    assert step(erp, clarity)("SKU-LAMP")["name"] == "SAL-ORD-2026-00001"
    assert erp.calls == ["ensure Sales Order", "list Item", "ensure Sales Order"] and clarity.asked == []


class RefusesTheMadeItem(Erp):
    """ERPNext refusing the Sales Order again once the Item exists (e.g. the Item was made disabled)."""

    def ensure_sales_order(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        super().ensure_sales_order(doc)  # the first attempt: the Item is missing
        raise UpstreamRejected("Item SKU-LAMP is disabled")


def test_a_second_refusal_after_the_items_are_made_is_not_retried_again() -> None:
    erp = RefusesTheMadeItem([])
    with pytest.raises(UpstreamRejected, match="disabled"):
        step(erp, Clarity({"SKU-LAMP": LAMP}))("SKU-LAMP")
    assert erp.calls == ["ensure Sales Order", "list Item", "ensure Item SKU-LAMP", "ensure Sales Order"]


def test_a_line_without_a_sku_is_left_to_erpnexts_refusal() -> None:
    erp, clarity = Erp([]), Clarity({})
    with pytest.raises(UpstreamRejected, match="Row #1: Item Code:"):
        step(erp, clarity)(" ")
    assert erp.calls == ["ensure Sales Order", "ensure Sales Order"] and clarity.asked == []
