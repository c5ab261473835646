"""``commerce-bridge backfill products --from clarity`` as a subprocess against the sandbox peers, on SQLite and
PostgreSQL (issue 14, points 4 and 5): 16 Clarity products (made through CEF's Create route); a dry run writes
nothing; a run prints its summary table and makes each product once in ERPNext (Item and Item Price) and Stripe
(Product and Price); a re-run reports every product unchanged; a run killed with SIGKILL mid-page resumes from its
cursor and makes no duplicate; `--from erp` pages through ERPNext's Items and makes them in Clarity and Stripe.
The paging and cursor rules are ``services.backfill``'s (shared with ``backfill customers``, whose e2e tests cover
``--limit``; tests/unit/test_backfill_pages.py covers every page shape)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from tests.support.backfill_cli import (
    CLARITY_BASE,
    Keys,
    backfill_json,
    cli_peers,
    kill_mid_backfill,
    peers_env,
)
from tests.support.processes import cli

pytestmark = pytest.mark.slow
KEYS = Keys("bfp-key", "bfp-secret", "sk_test_backfill_products")
PRODUCTS = 16  # pages of 4 (four: the kill lands inside)


@pytest.fixture
def peers() -> Iterator[dict[str, Any]]:
    with cli_peers(KEYS) as urls:
        api = httpx.Client(base_url=urls["clarity"] + CLARITY_BASE, timeout=10)
        assert api.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
                        ).status_code == 200
        codes = []
        for n in range(PRODUCTS):
            code = f"BFP-{uuid.uuid4().hex[:6].upper()}-{n:02d}"
            r = api.post("/Products/Product/Create", json={
                "ID": 0, "CustomKey": code, "Name": f"Widget {n}", "Active": True, "UnitOfMeasure": "Nos",
                "PriceBase": f"{10 + n}.25"})
            assert r.status_code == 200 and r.json()["ActionSucceeded"], r.text
            codes.append(code)
        api.close()
        yield {**urls, "codes": codes}


@pytest.fixture
def env(peers: dict[str, Any], database_url: str, tmp_path: Path) -> dict[str, str]:
    return peers_env(peers, KEYS, database_url, tmp_path)


def backfill(env: dict[str, str], *args: str, code: int = 0) -> dict[str, Any]:
    return backfill_json(env, "products", *args, code=code)


def made(peers: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The SKUs (of ours) that ERPNext holds as Items and as Item Prices, and that Stripe holds as Products with an
    active Price: a SKU made twice shows twice."""
    erp = httpx.Client(base_url=peers["erp"], headers=KEYS.erp_auth)
    stripe = httpx.Client(base_url=peers["stripe"], headers=KEYS.stripe_auth)
    ours = set(peers["codes"])
    items = [r["name"] for r in erp.get("/api/resource/Item", params={"limit_page_length": 0}).json()["data"]]
    prices = [r["item_code"] for r in erp.get("/api/resource/Item Price", params={
        "limit_page_length": 0, "fields": '["item_code"]'}).json()["data"]]
    products: list[str] = []
    after: str | None = None
    while True:
        page = stripe.get("/v1/products", params={"limit": 100, **({"starting_after": after} if after else {})}
                          ).json()
        for p in page["data"]:
            active = stripe.get("/v1/prices", params={"product": p["id"], "active": "true"}).json()["data"]
            if active:
                products.append(p["metadata"].get("item_code", ""))
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    return (sorted(c for c in items if c in ours), sorted(c for c in prices if c in ours),
            sorted(c for c in products if c in ours))


def test_a_product_backfill_dry_run_writes_nothing_then_a_run_makes_each_product_once(
        env: dict[str, str], peers: dict[str, Any]) -> None:
    dry = backfill(env, "--dry-run")
    assert (dry["kind"], dry["created"], dry["updated"], dry["unchanged"], dry["failed"], dry["finished"]) == (
        "products", PRODUCTS, 0, 0, 0, True)
    assert made(peers) == ([], [], [])  # nothing written
    table = cli(env, "backfill", "products", "--from", "clarity", "--page-size", "5", timeout=300)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "backfill products from clarity" in table.stdout and "fields written (products)" in table.stdout
    codes = sorted(peers["codes"])
    assert made(peers) == (codes, codes, codes)
    again = backfill(env)
    assert again["resumed_after"] is None  # a finished run starts the next one from the beginning
    assert (again["created"], again["updated"], again["unchanged"], again["conflicts"], again["failed"]) == (
        0, 0, PRODUCTS, 0, 0)
    assert made(peers) == (codes, codes, codes)


def test_a_product_backfill_killed_mid_run_resumes_from_its_cursor_without_duplicates(
        env: dict[str, str], peers: dict[str, Any], database_url: str) -> None:
    done = kill_mid_backfill(env, database_url, "products", page_size=4)  # SIGKILL after two pages
    assert done is not None and 2 <= done < PRODUCTS // 4, "killed after the run ended: the test proves nothing"
    resumed = backfill(env, "--page-size", "4")
    assert resumed["resumed_after"] == done and resumed["finished"]
    assert resumed["seen"] == PRODUCTS - 4 * done
    codes = sorted(peers["codes"])
    assert made(peers) == (codes, codes, codes)  # the page being synced when killed: no duplicate
    assert backfill(env)["unchanged"] == PRODUCTS


def test_a_product_backfill_from_erpnext_pages_through_its_items(env: dict[str, str], peers: dict[str, Any]) -> None:
    erp = httpx.Client(base_url=peers["erp"], headers=KEYS.erp_auth)
    codes = [f"ERP-{uuid.uuid4().hex[:6].upper()}-{n}" for n in range(3)]
    for n, code in enumerate(codes):
        r = erp.post("/api/resource/Item", json={"item_code": code, "item_name": f"Erp Widget {n}",
                                                 "item_group": "All Item Groups", "stock_uom": "Nos"})
        assert r.status_code == 200, r.text
        r = erp.post("/api/resource/Item Price", json={"item_code": code, "price_list": "Standard Selling",
                                                       "price_list_rate": 5 + n})
        assert r.status_code == 200, r.text
    out = cli(env, "backfill", "products", "--from", "erp", "--json", "--page-size", "2", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert (summary["created"], summary["failed"], summary["pages"], summary["finished"]) == (3, 0, 2, True)
    peers["codes"] = codes
    assert made(peers) == (sorted(codes), sorted(codes), sorted(codes))  # and each is now a Stripe product
    clarity = httpx.Client(base_url=peers["clarity"] + CLARITY_BASE, timeout=10)
    assert clarity.post("/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
                        ).status_code == 200
    found = clarity.get("/Products/Products", params={"Paging": json.dumps({"Size": 100, "StartIndex": 1})}
                        ).json()["Results"]
    assert sorted(p["CustomKey"] for p in found if p["CustomKey"] in codes) == sorted(codes)


def test_a_product_backfill_from_stripe_pages_through_its_products(env: dict[str, str], peers: dict[str, Any]) -> None:
    stripe = httpx.Client(base_url=peers["stripe"], headers=KEYS.stripe_auth)
    codes = [f"STR-{uuid.uuid4().hex[:6].upper()}-{n}" for n in range(3)]
    for n, code in enumerate(codes):
        r = stripe.post("/v1/products", data={"name": f"Stripe Widget {n}", "metadata[item_code]": code,
                                              "default_price_data[currency]": "usd",
                                              "default_price_data[unit_amount]": str(700 + n)})
        assert r.status_code == 200, r.text
    out = cli(env, "backfill", "products", "--from", "stripe", "--json", "--page-size", "2", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert (summary["created"], summary["failed"], summary["finished"]) == (3, 0, True), summary
    assert summary["pages"] == 2  # newest first, two to a page: 2 + 1
    peers["codes"] = codes
    assert made(peers) == (sorted(codes), sorted(codes), sorted(codes))  # each an Item with its Item Price
    erp = httpx.Client(base_url=peers["erp"], headers=KEYS.erp_auth)
    rates = {r["item_code"]: r["price_list_rate"] for r in erp.get("/api/resource/Item Price", params={
        "limit_page_length": 0, "fields": '["item_code", "price_list_rate"]'}).json()["data"]}
    assert [Decimal(str(rates[c])) for c in codes] == [Decimal("7"), Decimal("7.01"), Decimal("7.02")]
