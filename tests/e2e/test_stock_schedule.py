"""Stock from ERPNext to Clarity in a running bridge (issue 14, point 4): the ERPNext poller turns a changed Bin
into a `bin.changed` event and `erp.stock_changed` writes the item's stock to the Clarity section, on SQLite and
PostgreSQL; an item Clarity has no product for ends its run without writing.

The reading and writing (sums, warehouses, the command's cursor, dry run, CLI) are tested against the peers in
tests/integration/test_stock_push.py; this module proves the wiring: settings -> poller -> inbox -> workflow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from commerce_bridge.entrypoints.demo_order_to_cash import Stack
from commerce_bridge.sandbox.traffic import CLARITY_API
from commerce_bridge.store.tables import inbox, runs
from tests.support.stacks import stack_on, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_on(request.param, tmp_path_factory.mktemp(f"stock-{request.param}"),
                  clarity_inventory_section="DEFAULT-MAIN", stock_poll_interval_s=0.5) as stack:
        yield stack


def clarity_stock(st: Stack, sku: str) -> Decimal | None:
    c, session = st.traffic.clarity, st.traffic.session
    found = c.get(f"{CLARITY_API}/Products/Products", headers=session,
                  params={"CustomKey": sku, "CustomKeyStrict": "true", "Paging": json.dumps({"Size": 5, "StartIndex": 1})})
    product_id = found.json()["Results"][0]["ID"]
    result = c.get(f"{CLARITY_API}/Providers/Inventory/CalculateInventory/{product_id}", headers=session)
    value = result.json(parse_float=Decimal)["Result"].get("QuantityPresent")
    return None if value is None else Decimal(value)


def runs_of(st: Stack, item_code: str) -> list[dict[str, Any]]:
    with st.container.db.connect() as conn:
        rows = conn.execute(select(inbox.c.event_id, inbox.c.body).where(inbox.c.source == "erp")).all()
    events = [json.loads(body) for _, body in rows]
    return [e for e in events if e["data"]["item_code"] == item_code]


def succeeded(st: Stack, event_id: str) -> list[dict[str, Any]]:
    with st.container.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(runs).where(runs.c.source == "erp", runs.c.event_id == event_id,
                                                                runs.c.status == "succeeded")).mappings()]


def test_stock_received_in_erpnext_reaches_clarity_through_the_workflow(st: Stack) -> None:
    assert any(p.source == "erp" for p in st.container.pollers), "ERPNext is polled when the section is set"
    sku = f"STK-{uuid.uuid4().hex[:8]}"  # an item in both systems, as the merchant's catalogue has them
    made = st.traffic.clarity.post(f"{CLARITY_API}/Products/Product/Create", headers=st.traffic.session,
                                   json={"CustomKey": sku, "Name": "Stocked"})
    assert made.status_code == 200 and made.json()["ActionSucceeded"], made.text
    item = st.traffic.erp.post("/api/resource/Item", json={"item_code": sku, "item_name": "Stocked",
                                                            "item_group": "Products", "stock_uom": "Nos"})
    assert item.status_code == 200, item.text
    assert clarity_stock(st, sku) is None
    r = st.traffic.erp.post("/api/resource/Stock Entry", json={"stock_entry_type": "Material Receipt", "docstatus": 1,
                                                              "items": [{"item_code": sku, "qty": 12,
                                                                         "t_warehouse": "Stores - SB"}]})
    assert r.status_code == 200, r.text
    wait_for(f"{sku}'s stock in Clarity", lambda: clarity_stock(st, sku) == 12, st, 30)
    [event] = runs_of(st, sku)  # one Bin changed once: one event, whatever the poller's overlap listed again
    assert event["type"] == "bin.changed" and event["data"]["warehouse"] == "Stores - SB"
    [run] = wait_for("the run", lambda: succeeded(st, event["id"]), st, 30)
    assert run["workflow"] == "erp.stock_changed"


def test_an_item_without_a_clarity_product_ends_its_run_without_writing(st: Stack) -> None:
    sku = f"ERP-ONLY-{uuid.uuid4().hex[:8]}"
    item = st.traffic.erp.post("/api/resource/Item", json={"item_code": sku, "item_name": "ERP only",
                                                            "item_group": "Products", "stock_uom": "Nos"})
    assert item.status_code == 200, item.text
    r = st.traffic.erp.post("/api/resource/Stock Entry", json={"stock_entry_type": "Material Receipt", "docstatus": 1,
                                                              "items": [{"item_code": sku, "qty": 3,
                                                                         "t_warehouse": "Stores - SB"}]})
    assert r.status_code == 200, r.text
    [event] = wait_for("the bin.changed event", lambda: runs_of(st, sku), st, 30)
    wait_for("the run", lambda: succeeded(st, event["id"]), st, 30)  # succeeded: not parked, nothing written
