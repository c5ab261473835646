"""``commerce-bridge demo-sync``: one customer and one product kept the same in Clarity, Stripe and ERPNext.

Starts the sandbox peers and the bridge (SQLite in a temporary folder) with the customer and product syncs on
(``CB_CUSTOMER_SYNC``, ``CB_PRODUCT_SYNC``) and the pollers every half second, then plays the merchant:

1. creates a customer account in Clarity; the bridge creates it in Stripe and ERPNext;
2. edits the customer in Clarity (name, phone): the change shows in Stripe and ERPNext;
3. creates an item with its selling price in ERPNext; the bridge creates the product in Clarity and Stripe (a
   Price with the ``lookup_key`` ``cb:<item code>:usd``);
4. changes the item's price in ERPNext: Clarity's ``PriceBase`` changes, and Stripe gets a new Price holding
   the same ``lookup_key`` (a Price's amount cannot change) while the old one is archived.

Each act waits until every system shows the change (or ``--timeout``) and prints what each system holds. Exit 0
only if every act ended with the three systems in agreement.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from commerce_bridge.entrypoints.demo_order_to_cash import Stack, sandbox_stack
from commerce_bridge.entrypoints.money_text import decimal_money_text, money_text
from commerce_bridge.logsetup import configure_logging
from commerce_bridge.sandbox.traffic import CLARITY_API

POLL_S = 0.5
CURSORS = ("clarity.accounts", "clarity.contacts", "erp.customers", "clarity.products", "erp.items",
           "erp.item_prices")
"""The pollers' cursors: each exists once its poller has run its first cycle (which starts from now)."""
PRICE_LIST = "Standard Selling"


@dataclass
class Act:
    """One step of the demo: what was done, and per system what it holds afterwards."""

    title: str
    ok: bool
    seen: dict[str, str]
    waited_s: float


def _json(r: Any) -> Any:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


def _wait(until: Callable[[], Any], timeout: float) -> tuple[Any, float]:
    """Poll ``until`` (its value when truthy) for ``timeout`` s; (last value, seconds waited)."""
    started = time.monotonic()
    value = until()
    while not value and time.monotonic() - started < timeout:
        time.sleep(0.2)
        value = until()
    return value, time.monotonic() - started


class Merchant:
    """The three systems as a merchant's staff reads and edits them (the sandbox peers' HTTP APIs)."""

    def __init__(self, st: Stack) -> None:
        self.t = st.traffic

    # customers

    def create_account(self, email: str) -> int:
        contact = {"FirstName": "Ada", "LastName": "Lovelace", "Email1": email, "Phone1": "+14155550101",
                   "Address": {"Street1": "1 Main St", "City": "San Francisco", "RegionCode": "CA",
                               "PostalCode": "94105", "CountryCode": "US"}}
        made = _json(self.t.clarity.post(f"{CLARITY_API}/Accounts/Account/Create", headers=self.t.session, json={
            "ID": 0, "CustomKey": f"ACCT-{uuid.uuid4().hex[:8]}", "Name": "Ada Lovelace",
            "AccountContacts": [{"Slave": contact, "IsBilling": True, "IsPrimary": False}]}))
        return int(made["Result"])

    def account(self, account_id: int) -> dict[str, Any]:
        return dict(_json(self.t.clarity.get(f"{CLARITY_API}/Accounts/Account/ID/{account_id}",
                                             headers=self.t.session)))

    @staticmethod
    def billing(acct: dict[str, Any]) -> dict[str, Any]:
        return dict(next(r["Slave"] for r in acct.get("AccountContacts") or ()
                         if r.get("IsBilling") and r.get("Active", True)))

    def edit_account(self, account_id: int, *, name: str, phone: str) -> None:
        _json(self.t.clarity.put(f"{CLARITY_API}/Accounts/Account/Update", headers=self.t.session,
                                 json={"ID": account_id, "Name": name}))
        contact = {k: v for k, v in self.billing(self.account(account_id)).items() if not isinstance(v, list)}
        _json(self.t.clarity.put(f"{CLARITY_API}/Contacts/Contact/Update", headers=self.t.session,
                                 json={**contact, "Phone1": phone}))

    def stripe_customer(self, email: str) -> dict[str, Any] | None:
        found = _json(self.t.stripe.get("/v1/customers/search", params={"query": f"email:'{email}'"}))["data"]
        return dict(found[0]) if len(found) == 1 else None

    def erp_doc(self, doctype: str, name: str) -> dict[str, Any]:
        return dict(_json(self.t.erp.get(f"/api/resource/{doctype}/{name}"))["data"])

    def customer_views(self, account_id: int, email: str) -> dict[str, str] | None:
        """``name, phone`` as each system holds the customer; None until Stripe names the ERPNext customer."""
        cus = self.stripe_customer(email)
        erp_name = (cus or {}).get("metadata", {}).get("erp_customer")
        if cus is None or not erp_name:
            return None
        acct = self.account(account_id)
        customer = self.erp_doc("Customer", erp_name)
        contact = self.erp_doc("Contact", customer["customer_primary_contact"])
        return {"Clarity": f"{acct['Name']}, {self.billing(acct).get('Phone1')}",
                "Stripe": f"{cus['name']}, {cus.get('phone')}",
                "ERPNext": f"{customer['customer_name']}, {contact.get('mobile_no')}"}

    # products

    def create_item(self, code: str, name: str, rate: str) -> None:
        _json(self.t.erp.post("/api/resource/Item", json={
            "item_code": code, "item_name": name, "description": f"{name}, brass, 40 cm",
            "item_group": "Products", "stock_uom": "Nos"}))
        _json(self.t.erp.post("/api/resource/Item Price", json={
            "item_code": code, "price_list": PRICE_LIST, "price_list_rate": rate}))

    def set_price(self, code: str, rate: str) -> None:
        rows = _json(self.t.erp.get("/api/resource/Item Price", params={
            "filters": f'[["item_code", "=", "{code}"], ["price_list", "=", "{PRICE_LIST}"]]'}))["data"]
        _json(self.t.erp.put(f"/api/resource/Item Price/{rows[0]['name']}", json={"price_list_rate": rate}))

    def product_views(self, code: str) -> dict[str, str] | None:
        """The product's name and price as each system holds it; None until Stripe has it with a Clarity id."""
        found = _json(self.t.stripe.get("/v1/products/search",
                                        params={"query": f"metadata['item_code']:'{code}'"}))["data"]
        if len(found) != 1 or not found[0].get("metadata", {}).get("clarity_product_id"):
            return None
        prod = found[0]
        prices = _json(self.t.stripe.get("/v1/prices", params={"product": prod["id"], "limit": 100}))["data"]
        active = [p for p in prices if p["active"]]
        archived = [p for p in prices if not p["active"]]
        stripe_text = ", ".join(f"{money_text(p['unit_amount'], p['currency'])} ({p['lookup_key']})"
                                for p in active) or "no active price"
        if archived:
            stripe_text += f"; {len(archived)} archived"
        clarity = dict(_json(self.t.clarity.get(
            f"{CLARITY_API}/Products/Product/ID/{int(prod['metadata']['clarity_product_id'])}",
            headers=self.t.session)))
        item = self.erp_doc("Item", code)
        rows = _json(self.t.erp.get("/api/resource/Item Price", params={
            "filters": f'[["item_code", "=", "{code}"], ["price_list", "=", "{PRICE_LIST}"]]',
            "fields": '["price_list_rate", "currency"]'}))["data"]
        erp_price = ", ".join(decimal_money_text(str(r["price_list_rate"]), str(r["currency"])) for r in rows)
        return {"Clarity": f"{clarity.get('Name')}: {decimal_money_text(str(clarity.get('PriceBase')), 'USD')}",
                "Stripe": f"{prod['name']}: {stripe_text}",
                "ERPNext": f"{item['item_name']}: {erp_price}"}


def _agree(views: dict[str, str] | None, *wanted: str) -> bool:
    return views is not None and all(all(w in text for w in wanted) for text in views.values())


def _show(console: Console, act: Act) -> None:
    console.print(f"\n{'[green]✓[/]' if act.ok else '[red]✗[/]'} [bold]{act.title}[/] [dim]({act.waited_s:.1f} s)[/]")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False)
    t.add_column("system", no_wrap=True)
    t.add_column("holds", overflow="fold")
    for system, text in act.seen.items():
        t.add_row(system, text)
    console.print(t)


def run_acts(st: Stack, console: Console, timeout: float) -> list[Act]:
    """The four acts (see the module docstring), each shown as it ends."""
    m = Merchant(st)
    acts: list[Act] = []
    tag = uuid.uuid4().hex[:6]
    email, code = f"ada.{tag}@example.com", f"LAMP-{tag.upper()}"

    def act(title: str, check: Callable[[], dict[str, str] | None], *wanted: str) -> bool:
        views, waited = _wait(lambda: (v if _agree(v := check(), *wanted) else None), timeout)
        last = views or check() or {}
        acts.append(Act(title, bool(views), last, waited))
        _show(console, acts[-1])
        return bool(views)

    with console.status("a customer account is created in Clarity"):
        account_id = m.create_account(email)
    if act("A customer created in Clarity reaches Stripe and ERPNext", lambda: m.customer_views(account_id, email),
           "Ada Lovelace", "+14155550101"):
        m.edit_account(account_id, name="Ada King", phone="+14155550199")
        act("The customer edited in Clarity (name, phone) shows changed in Stripe and ERPNext",
            lambda: m.customer_views(account_id, email), "Ada King", "+14155550199")
    m.create_item(code, "Desk lamp", "49.00")
    if act(f"An item created in ERPNext ({code}, 49.00 USD) reaches Clarity and Stripe",
           lambda: m.product_views(code), "Desk lamp", "$49.00"):
        m.set_price(code, "54.50")
        act("Its price changed in ERPNext to 54.50 shows in Clarity and Stripe (a new Price, the old archived)",
            lambda: m.product_views(code), "$54.50")
    return acts


def demo_sync(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each change to reach every system.")] = 60.0,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data folder (database, logs).")] = False,
) -> None:
    """Customers and products kept the same in Clarity, Stripe and ERPNext (sandbox peers, SQLite).

    A customer edited in Clarity shows changed in Stripe and ERPNext; a price changed in ERPNext shows in Clarity
    and Stripe. Exit 0 only if every change reached every system within --timeout.
    """
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="commerce-bridge-demo-sync-"))
    log_file = (workdir / "bridge.log").open("w")
    configure_logging("INFO", json=True, stream=log_file)
    ok = False
    try:
        with sandbox_stack(workdir=workdir, customer_sync=True, product_sync=True,
                           clarity_accounts_poll_interval_s=POLL_S, erp_customers_poll_interval_s=POLL_S,
                           clarity_products_poll_interval_s=POLL_S, erp_items_poll_interval_s=POLL_S) as st:
            console.print(f"[bold]commerce-bridge demo-sync[/]: sandbox peers and the bridge; data and logs in "
                          f"{workdir}")
            cursors = st.container.cursors
            _wait(lambda: cursors is not None and all(cursors.get(n) for n in CURSORS), 30)
            acts = run_acts(st, console, timeout)
            ok = len(acts) == 4 and all(a.ok for a in acts)
    finally:
        log_file.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print("[bold green]all three systems agree after every change[/]" if ok
                  else f"[bold red]a change did not reach every system[/] (logs: {workdir / 'bridge.log'}"
                       f"{'' if keep else ', removed: run with --keep'})")
    raise typer.Exit(0 if ok else 1)
