"""An order for a SKU ERPNext lacks ends paid: the Item is made from the Clarity product (issue 14, point 4).

The product exists only in Clarity (made through the simulator's admin API, as a merchant would); ERPNext refuses
the Sales Order, the bridge creates the Item from the product and makes the Sales Order once more. Two orders
for the same new SKU at once make one Item; a SKU in neither system parks the run, saying so and what to do,
and a replay after the fix finishes it. One sandbox stack per database for the module: SQLite, and PostgreSQL
when ``CB_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API, Placed, Scenario
from tests.e2e.test_refunds_from_stripe import erp_docs
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"items-{request.param}")) as stack:
        yield stack


def clarity_product(st: Stack, sku: str, **fields: Any) -> None:
    """A product in Clarity's catalogue only (the ERPNext simulator is seeded with SKU-TEE, SKU-MUG, SKU-CAP)."""
    r = st.traffic.clarity.post(f"{CLARITY_API}/Products/Product/Create", headers=st.traffic.session,
                                json={"CustomKey": sku, **fields})
    assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text


def order(st: Stack, n: int, sku: str, quantity: int = 1, price: str = "24.50") -> Placed:
    placed: Placed = st.traffic.place(n, Scenario(f"new {sku}", "USD", ((sku, quantity, price),)))
    assert not placed.error, placed.error
    return placed


def paid(st: Stack, *orders: Placed) -> None:
    wait_for(", ".join(o.key for o in orders) + " paid everywhere", lambda: (
        st.traffic.refresh(list(orders)), all(o.done for o in orders))[1], st, 90)


def items(st: Stack, sku: str) -> list[dict[str, Any]]:
    return erp_docs(st, "Item", "item_code", sku)


def sales_order_skus(st: Stack, key: str) -> list[str]:
    [so] = erp_docs(st, "Sales Order", "po_no", key)
    doc = st.traffic.erp.get(f"/api/resource/Sales Order/{so['name']}").json()["data"]
    assert doc["docstatus"] == 1
    return [row["item_code"] for row in doc["items"]]


def test_an_order_for_a_product_only_clarity_has_ends_paid_with_the_item_made_from_it(st: Stack) -> None:
    clarity_product(st, "SKU-LAMP", Name="Desk Lamp", Description="A lamp for the desk", UnitOfMeasure="Box",
                    PriceBase="24.50")
    assert items(st, "SKU-LAMP") == []
    placed = order(st, 801, "SKU-LAMP", quantity=2)
    paid(st, placed)

    [item] = items(st, "SKU-LAMP")
    assert {k: item[k] for k in ("item_code", "item_name", "description", "stock_uom", "item_group",
                                 "is_stock_item", "disabled")} == {
        "item_code": "SKU-LAMP", "item_name": "Desk Lamp", "description": "A lamp for the desk", "stock_uom": "Box",
        "item_group": "All Item Groups", "is_stock_item": 1, "disabled": 0}
    assert Decimal(str(item["standard_rate"])) == Decimal("24.50")
    assert sales_order_skus(st, placed.key) == ["SKU-LAMP"]
    assert st.container.dead_letters.count_open() == 0


def test_two_orders_for_the_same_new_sku_at_once_make_one_item(st: Stack) -> None:
    clarity_product(st, "SKU-RUG", Name="Rug", PriceBase="80.00")
    first, second = order(st, 802, "SKU-RUG", price="80.00"), order(st, 803, "SKU-RUG", price="80.00")
    paid(st, first, second)
    assert len(items(st, "SKU-RUG")) == 1
    assert sales_order_skus(st, first.key) == sales_order_skus(st, second.key) == ["SKU-RUG"]
    assert st.container.dead_letters.count_open() == 0


def test_a_sku_in_neither_system_parks_saying_so_and_a_replay_after_the_fix_ends_paid(st: Stack) -> None:
    placed = order(st, 804, "SKU-GHOST", price="5.00")
    entry = wait_for("the run parked at the sales order", lambda: next((
        e for e in st.container.dead_letters.list() if e["step_id"] == "erp_order"
        and "SKU-GHOST" in e["error_message"]), None), st, 90)
    assert entry["error_code"] == "not_found"
    assert entry["error_message"] == (f"order {placed.key}: SKU 'SKU-GHOST' is neither an Item in ERPNext nor a "
                                      "product (CustomKey) in Clarity")
    assert "create the product in Clarity with CustomKey 'SKU-GHOST'" in entry["suggested_fix"]
    assert "the Item 'SKU-GHOST' in ERPNext, then replay" in entry["suggested_fix"]
    assert items(st, "SKU-GHOST") == [] and erp_docs(st, "Sales Order", "po_no", placed.key) == []

    clarity_product(st, "SKU-GHOST", Name="Ghost", Active=True)  # the fix the entry suggests, then a replay
    st.container.admin.replay(entry["id"], "created the product in Clarity")
    paid(st, placed)
    assert [i["item_name"] for i in items(st, "SKU-GHOST")] == ["Ghost"]
    assert st.container.dead_letters.count_open() == 0
