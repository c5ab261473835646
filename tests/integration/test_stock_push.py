"""``services.stock_push.StockPush`` between the ERPNext and Clarity simulators (real HTTP, the real gateways) with
the durable cursor on a SQLite file: ERPNext's Bins summed per item become the stock of one Clarity section."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from commerce_bridge.connectors.clarity.gateway import HttpClarityGateway
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.services.stock_push import CURSOR, StockPush
from commerce_bridge.store import db as store_db
from commerce_bridge.store.cursors import SqlCursorStore
from tests.support.processes import bridge_env, cli, migrate

API = "/DesktopModules/ClarityEcommerce/API-Admin"
KEY, SECRET = "stock-key", "stock-secret"
SECTION = "DEFAULT-MAIN"


class Peers:
    def __init__(self, erp: PeerServer, clarity: PeerServer, poll_cursors: SqlCursorStore) -> None:
        self.erp_url, self.clarity_url = erp.url, clarity.url + API
        self.erp_gateway = HttpErpGateway(erp.url, KEY, SECRET)
        self.clarity_gateway = HttpClarityGateway(clarity.url + API, DEFAULT_USER, DEFAULT_PASSWORD,
                                                  cursor_store=poll_cursors)
        self.erp = httpx.Client(base_url=erp.url, headers={"Authorization": f"token {KEY}:{SECRET}"}, timeout=10)
        self.cef = httpx.Client(base_url=clarity.url + API, timeout=10)
        r = self.cef.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD})
        assert r.status_code == 200, r.text

    def item(self, *, in_clarity: bool = True) -> tuple[str, int | None]:
        code = f"STK-{uuid.uuid4().hex[:8]}"
        r = self.erp.post("/api/resource/Item", json={"item_code": code, "item_name": code, "is_stock_item": 1,
                                                     "stock_uom": "Nos", "item_group": "All Item Groups"})
        assert r.status_code == 200, r.text
        if not in_clarity:
            return code, None
        made = self.cef.post("/Products/Product/Create", json={"CustomKey": code, "Name": code}).json()
        assert made["ActionSucceeded"], made
        return code, int(made["Result"])

    def move(self, code: str, qty: int, warehouse: str = "Stores - SB") -> None:
        kind, side = ("Material Receipt", "t_warehouse") if qty > 0 else ("Material Issue", "s_warehouse")
        r = self.erp.post("/api/resource/Stock Entry", json={"stock_entry_type": kind, "docstatus": 1, "items": [
            {"item_code": code, "qty": abs(qty), side: warehouse, "basic_rate": 2}]})
        assert r.status_code == 200, r.text

    def stock(self, product_id: int) -> dict[str, Any]:
        body = self.cef.get(f"/Providers/Inventory/CalculateInventory/{product_id}").json(parse_float=Decimal)
        return dict(body["Result"])

    def close(self) -> None:
        for c in (self.erp, self.cef, self.erp_gateway, self.clarity_gateway):
            c.close()


def cursor_store(path: Path) -> SqlCursorStore:
    engine = store_db.make_engine(f"sqlite:///{path}")
    store_db.upgrade(engine)
    return SqlCursorStore(engine)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    poll_cursors = cursor_store(tmp_path_factory.mktemp("stock") / "gateway.sqlite")
    with PeerServer(build_erp(api_key=KEY, api_secret=SECRET)) as erp, PeerServer(build_clarity()) as clarity:
        p = Peers(erp, clarity, poll_cursors)
        yield p
        p.close()


@pytest.fixture
def cursors(tmp_path: Path) -> SqlCursorStore:
    return cursor_store(tmp_path / "bridge.sqlite")


def push(peers: Peers, cursors: SqlCursorStore, **kw: Any) -> StockPush:
    return StockPush(peers.erp_gateway, peers.clarity_gateway, cursors, section_key=kw.pop("section", SECTION), **kw)


def test_erpnext_stock_summed_per_item_becomes_the_sections_stock_and_only_changes_are_pushed_again(
        peers: Peers, cursors: SqlCursorStore) -> None:
    code, product = peers.item()
    other, other_product = peers.item()
    erp_only, _ = peers.item(in_clarity=False)
    peers.move(code, 10)
    peers.move(code, 5, "Finished Goods - SB")
    peers.move(other, 7)
    peers.move(erp_only, 3)
    assert product is not None and other_product is not None

    first = push(peers, cursors).push_once(full=True)
    assert first.pushed[code] == {"Quantity": "15", "QuantityAllocated": "0", "QuantityPreSold": "0"}
    assert first.pushed[other]["Quantity"] == "7"
    assert erp_only in first.skipped and erp_only not in first.pushed
    stock = peers.stock(product)
    assert stock["QuantityPresent"] == Decimal("15.0000") and stock["QuantityOnHand"] == Decimal("15.0000")
    assert peers.stock(other_product)["QuantityPresent"] == Decimal("7.0000")
    assert cursors.get(CURSOR) == first.cursor_to

    peers.move(code, -4)  # only this item changed: the next push (a new process: the cursor is durable) takes it
    second = push(peers, cursors).push_once()
    assert second.cursor_from == first.cursor_to
    assert second.pushed[code]["Quantity"] == "11"
    assert other not in second.pushed, "an item whose Bins did not change is not read or pushed again"
    assert peers.stock(product)["QuantityPresent"] == Decimal("11.0000")


def test_a_dry_run_writes_nothing_and_keeps_the_cursor_and_warehouses_narrow_the_sum(
        peers: Peers, cursors: SqlCursorStore) -> None:
    code, product = peers.item()
    assert product is not None
    peers.move(code, 6)
    peers.move(code, 2, "Finished Goods - SB")
    dry = push(peers, cursors).push_once(full=True, dry_run=True)
    assert dry.pushed[code]["Quantity"] == "8"
    assert cursors.get(CURSOR) is None
    assert peers.stock(product).get("QuantityPresent") is None, "nothing was written"
    narrow = push(peers, cursors, warehouses=["Stores - SB"]).push_once(full=True)
    assert narrow.pushed[code]["Quantity"] == "6"
    assert peers.stock(product)["QuantityPresent"] == Decimal("6.0000")


def test_a_section_clarity_does_not_have_stops_the_push_naming_the_setting(
        peers: Peers, cursors: SqlCursorStore) -> None:
    with pytest.raises(ConfigurationError) as caught:
        push(peers, cursors, section="NO-SUCH-SECTION").push_once()
    assert "CB_CLARITY_INVENTORY_SECTION=NO-SUCH-SECTION" in caught.value.message
    assert json.dumps(caught.value.suggested_fix)  # a fix is given


def test_the_cli_pushes_once_says_what_it_pushed_and_refuses_without_the_section(
        peers: Peers, tmp_path: Path) -> None:
    code, product = peers.item()
    assert product is not None
    peers.move(code, 9)
    env = bridge_env(database_url=f"sqlite:///{tmp_path / 'cli.sqlite'}", clarity_base_url=peers.clarity_url,
                     clarity_user=DEFAULT_USER, clarity_password=DEFAULT_PASSWORD, erp_base_url=peers.erp_url,
                     erp_api_key=KEY, erp_api_secret=SECRET, clarity_inventory_section=SECTION)
    migrate(env, tmp_path)
    out = cli(env, "stock", "push", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    shown = json.loads(out.stdout)
    assert shown["items"][code]["Quantity"] == "9" and shown["cursor_from"] is None and shown["cursor_to"]
    assert peers.stock(product)["QuantityPresent"] == Decimal("9.0000")
    again = cli(env, "stock", "push", "--json")  # the cursor was saved: only the boundary's items come again
    assert json.loads(again.stdout)["cursor_from"] == shown["cursor_to"]
    off = cli({k: v for k, v in env.items() if k != "CB_CLARITY_INVENTORY_SECTION"}, "stock", "push")
    assert off.returncode == 2 and "CB_CLARITY_INVENTORY_SECTION" in off.stderr
