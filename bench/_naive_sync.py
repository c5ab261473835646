"""The naive arm of the sync benchmark: the customer, price and stock flows of issue 14, with no durability.

``bench/_naive_order.py`` (its clients, its order poll and its webhook endpoint; not Clarity's returns, which the
bridge also polls: 2 list requests a second fewer at 0.5 s) plus one more poller thread that, every
``--poll-interval`` seconds, lists what the bridge's pollers list:

* Clarity (httpx, as ``HttpClarityGateway._poll``): ``/Accounts/Accounts``, ``/Contacts/Contacts`` and
  ``/Products/Products`` by ``ModifiedSince`` with the order poll's 5-s overlap, seek paging and fingerprints
  (``CursorState``);
* ERPNext (httpx, as ``services.customer_poll`` / ``product_poll`` / ``stock_push.bin_poll``): Customer, the
  Contacts and Addresses linked to a Customer, Item, the Item Prices of ``--price-list`` and Bin, each
  ``modified >=`` its cursor, oldest first; the first cycle starts from the newest ``modified``.

and acts **one way**, on what the benchmark changes (rules):

* a Clarity account (or a contact of one) changed: ``GET`` the account; one it has not seen is created in
  Stripe (the SDK: name, email, phone, ``metadata`` clarity_account_id and erp_customer) and ERPNext (a Customer
  with ``email_id`` and ``mobile_no``: ERPNext makes its primary Contact); a known one whose name or phone
  differs from what it wrote last is read in Stripe and ERPNext (customer, contact) and the differing fields are
  written (``POST /v1/customers/{id}``; ERPNext ``PUT`` Customer, ``PUT`` Contact ``phone_nos``);
* an ERPNext Item or Item Price changed: ``GET`` the Item and its Item Price; one not seen is created in Clarity
  (``Product/Create``, CustomKey = item code, ``PriceBase``) and Stripe (Product with ``metadata.item_code`` and
  ``clarity_product_id``, a Price with ``lookup_key`` ``cb:<code>:usd``, then ``default_price``); a known one
  whose price changed: Clarity ``GET`` + ``PUT Product/Update`` (``PriceBase``), Stripe ``GET`` the product, a new
  Price taking the ``lookup_key`` (``transfer_lookup_key``), ``default_price`` moved, the old Price
  ``active=false`` (every write with an idempotency key, as the bridge);
* a Bin changed: ``GET`` the item's Bins, summed (``actual_qty``, ``reserved_qty``), written to the Clarity
  section ``--inventory-section`` (its ID read once) with ``BulkUpdateInventoryForProducts``; the product ID is
  the one it created (else a strict ``CustomKey`` search).

The changes coming back from its own writes (ERPNext customers and contacts, Clarity products, Stripe
``customer.*`` / ``product.*`` / ``price.*`` webhooks) are listed or received and dropped without a call: it
does not sync the other ways, which the bridge does (so the bridge reads each echo once to recognise it). Its
state is in memory: the cursors, what it created and what it last wrote. No database, no inbox, no retries: a
failure is written to ``--events`` as ``{"error": ...}`` and that change is lost. Each unit of work appends
``{"start": id}`` when it is queued and ``{"end": id}`` when done, so the benchmark knows when it is idle.

    python bench/_naive_sync.py --port 8001 --events events.jsonl ...   (the options of _naive_order.py)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import sys
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _naive_order import JsonDict, Naive, main
from commerce_bridge.connectors.clarity.changes import CursorState

PRICE_LIST = "Standard Selling"  # CB_ERP_SELLING_PRICE_LIST of the benchmark
SECTION = "DEFAULT-MAIN"  # CB_CLARITY_INVENTORY_SECTION of the benchmark
CURRENCY = "USD"
ERP_PAGE = 200
ERP_DOCTYPES: dict[str, tuple[list[str], list[list[Any]]]] = {
    "Customer": (["name", "modified"], []),
    "Contact": (["name", "modified", "links.link_name"], [["Dynamic Link", "link_doctype", "=", "Customer"]]),
    "Address": (["name", "modified", "links.link_name"], [["Dynamic Link", "link_doctype", "=", "Customer"]]),
    "Item": (["name", "modified"], []),
    "Item Price": (["name", "modified", "item_code"], [["price_list", "=", PRICE_LIST]]),
    "Bin": (["name", "modified", "item_code"], []),
}
CLARITY_ENTITIES = (("Accounts", "Accounts"), ("Contacts", "Contacts"), ("Products", "Products"))


def _minor(value: Any) -> int:
    """A USD decimal (text or number) as cents; a finer amount is refused, never rounded."""
    cents = Decimal(str(value)) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{value} is finer than a cent")
    return int(cents)


class NaiveSync(Naive):
    """``Naive`` (its clients, order poll and webhook endpoint) plus the three one-way sync flows."""

    def __init__(self, a: Any) -> None:
        super().__init__(a)
        self.sync_cursors = {entity: CursorState() for entity, _ in CLARITY_ENTITIES}
        self.erp_cursors: dict[str, str | None] = dict.fromkeys(ERP_DOCTYPES)
        self.erp_seen: dict[str, set[tuple[str, str]]] = {d: set() for d in ERP_DOCTYPES}
        self.accounts: dict[int, JsonDict] = {}  # account ID -> {cus, erp, contact, name, phone}
        self.contact_account: dict[int, int] = {}  # Clarity contact ID -> account ID
        self.products: dict[str, JsonDict] = {}  # item code -> {clarity, stripe, price, amount}
        self.section_id: int | None = None
        self._ids = itertools.count(1)

    # -- plumbing ----------------------------------------------------------------------------------
    def submit(self, what: str, key: str, fn: Callable[[], None]) -> None:
        """Queue one unit of work (one at a time per ``key``), noted as started now and ended when done."""
        work = f"{what}:{key}:{next(self._ids)}"
        self.note(start=work)

        def run() -> None:
            try:
                with self.lock(key):
                    fn()
            except Exception as exc:  # no retry, no dead-letter queue: the change is lost
                self.note(error=f"{what} {key}: {type(exc).__name__}: {exc}"[:500])
            finally:
                self.note(end=work)

        self.pool.submit(run)

    def on_event(self, event: stripe.Event) -> None:
        """Stripe's echoes of its own writes (customer, product, price) are dropped; the rest as the order flow."""
        if event.type.split(".")[0] in ("customer", "product", "price"):
            return
        super().on_event(event)

    # -- the pollers -------------------------------------------------------------------------------
    def clarity_poll(self, entity: str, handle: Callable[[JsonDict], None]) -> None:
        """One ``ModifiedSince`` poll of ``/{entity}/{entity}`` (``Naive.clarity_changes``, as the order poll): each
        new change of a row to ``handle``."""
        self.clarity_changes(self.sync_cursors[entity], f"/{entity}/{entity}", handle)

    def erp_poll(self, doctype: str, handle: Callable[[JsonDict], None]) -> None:
        """Documents of ``doctype`` modified at or after the cursor, oldest first; each (name, modified) once.
        The first cycle only reads the newest ``modified`` (what existed before is not synced)."""
        fields, base = ERP_DOCTYPES[doctype]
        path = f"/api/resource/{quote(doctype, safe='')}"
        cursor = self.erp_cursors[doctype]
        if cursor is None:
            rows = self.erp_call("GET", path, params={"fields": json.dumps(["modified"]), "order_by": "modified desc",
                                                      "limit_page_length": 1, "filters": json.dumps(base)})
            self.erp_cursors[doctype] = str(rows[0]["modified"]) if rows else "1900-01-01 00:00:00.000000"
            return
        start = 0
        seen = self.erp_seen[doctype]
        while True:
            rows = self.erp_call("GET", path, params={
                "fields": json.dumps(fields), "order_by": "modified asc", "limit_start": start,
                "limit_page_length": ERP_PAGE, "filters": json.dumps([*base, ["modified", ">=", cursor]])})
            for row in rows:
                mark = (str(row["name"]), str(row["modified"]))
                if mark not in seen:
                    seen.add(mark)
                    handle(row)
                self.erp_cursors[doctype] = max(str(self.erp_cursors[doctype]), str(row["modified"]))
            if len(rows) < ERP_PAGE:
                break
            start += ERP_PAGE

    def sync_poll_once(self) -> None:
        self.clarity_poll("Accounts", lambda row: self.submit("account", f"acct:{row['ID']}",
                                                             lambda: self.account_changed(int(row["ID"]))))
        self.clarity_poll("Contacts", self.contact_changed)
        self.clarity_poll("Products", lambda row: None)  # its own creates and updates coming back
        for doctype in ("Customer", "Contact", "Address"):
            self.erp_poll(doctype, lambda row: None)  # its own writes coming back
        for doctype in ("Item", "Item Price"):
            self.erp_poll(doctype, lambda row: self.submit(
                "item", f"item:{row.get('item_code') or row['name']}",
                lambda code=str(row.get("item_code") or row["name"]): self.item_changed(code)))  # type: ignore[misc]
        self.erp_poll("Bin", lambda row: self.submit(
            "stock", f"stock:{row['item_code']}",
            lambda code=str(row["item_code"]): self.stock_changed(code)))  # type: ignore[misc]

    def sync_poll_forever(self) -> None:
        self.poll_every_interval("sync poll", self.sync_poll_once)

    def app(self) -> Any:
        starlette = super().app()
        inner = starlette.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> Any:
            async with inner(app):
                poller = threading.Thread(target=self.sync_poll_forever, name="naive-sync-poll", daemon=True)
                poller.start()
                yield

        starlette.router.lifespan_context = lifespan
        return starlette

    # -- customers: Clarity -> Stripe, ERPNext -------------------------------------------------------
    def contact_changed(self, row: JsonDict) -> None:
        account_id = self.contact_account.get(int(row["ID"]))
        if account_id is not None:  # a contact of an account it knows: that account changed
            self.submit("account", f"acct:{account_id}", lambda: self.account_changed(account_id))

    def account_changed(self, account_id: int) -> None:
        acct = dict(self.cef("GET", f"/Accounts/Account/ID/{account_id}"))
        billing = next((dict(r["Slave"]) for r in acct.get("AccountContacts") or ()
                        if r.get("IsBilling") and r.get("Active", True) and r.get("Slave")), {})
        name, phone, email = str(acct.get("Name") or ""), str(billing.get("Phone1") or ""), billing.get("Email1")
        known = self.accounts.get(account_id)
        if billing.get("ID"):
            self.contact_account[int(billing["ID"])] = account_id
        if known is None:
            if not email:
                return
            erp = self.erp_call("POST", "/api/resource/Customer", body={
                "customer_name": name, "customer_type": "Individual", "email_id": email, "mobile_no": phone})
            cus = self.stripe.v1.customers.create(params={
                "name": name, "email": email, "phone": phone,
                "metadata": {"clarity_account_id": str(account_id), "erp_customer": str(erp["name"])}},
                options={"idempotency_key": f"naive-sync:create:{account_id}"})
            self.accounts[account_id] = {"cus": cus.id, "erp": str(erp["name"]),
                                         "contact": str(erp.get("customer_primary_contact") or ""),
                                         "name": name, "phone": phone}
            return
        if (name, phone) == (known["name"], known["phone"]):
            return  # nothing it has not written already
        cus = self.stripe.v1.customers.retrieve(known["cus"])
        customer = self.erp_call("GET", f"/api/resource/Customer/{quote(known['erp'], safe='')}")
        contact_name = str(customer.get("customer_primary_contact") or known["contact"])
        contact = self.erp_call("GET", f"/api/resource/Contact/{quote(contact_name, safe='')}")
        patch = {k: v for k, v in (("name", name), ("phone", phone)) if getattr(cus, k, None) != v}
        if patch:
            digest = hashlib.sha256(json.dumps(patch, sort_keys=True).encode()).hexdigest()[:16]
            self.stripe.v1.customers.update(known["cus"], params=patch,  # type: ignore[arg-type]
                                         options={"idempotency_key": f"naive-sync:{known['cus']}:{digest}"})
        erp_patch = {k: v for k, v in (("customer_name", name), ("mobile_no", phone)) if customer.get(k) != v}
        if erp_patch:
            self.erp_call("PUT", f"/api/resource/Customer/{quote(known['erp'], safe='')}", body=erp_patch)
        if contact.get("mobile_no") != phone:
            rows = [dict(r, is_primary_mobile_no=0) for r in contact.get("phone_nos") or () if r.get("phone") != phone]
            rows.append({"phone": phone, "is_primary_mobile_no": 1})
            self.erp_call("PUT", f"/api/resource/Contact/{quote(contact_name, safe='')}", body={"phone_nos": rows})
        known.update(name=name, phone=phone, contact=contact_name)

    # -- products: ERPNext -> Clarity, Stripe ------------------------------------------------------
    def item_changed(self, code: str) -> None:
        item = self.erp_call("GET", f"/api/resource/Item/{quote(code, safe='')}")
        rows = self.erp_call("GET", "/api/resource/Item Price", params={
            "filters": json.dumps([["item_code", "=", code], ["price_list", "=", PRICE_LIST]]),
            "fields": json.dumps(["name", "price_list_rate", "currency", "modified"]), "limit_page_length": 0})
        if not rows:
            return
        amount = _minor(rows[0]["price_list_rate"])
        known = self.products.get(code)
        if known is None:
            clarity_id = int(self.cef("POST", "/Products/Product/Create", body={
                "ID": 0, "CustomKey": code, "Name": item.get("item_name") or code,
                "Description": item.get("description") or "", "Active": True,
                "PriceBase": str(rows[0]["price_list_rate"])})["Result"])
            key = f"naive-sync:create:{code}"
            product = self.stripe.v1.products.create(params={
                "name": item.get("item_name") or code, "description": item.get("description") or code,
                "metadata": {"item_code": code, "clarity_product_id": str(clarity_id)}},
                options={"idempotency_key": key})
            price = self.new_price(product.id, code, amount, f"{key}:price")
            self.stripe.v1.products.update(product.id, params={"default_price": price}, options={"idempotency_key": f"{key}:default"})
            self.products[code] = {"clarity": clarity_id, "stripe": product.id, "price": price, "amount": amount}
            return
        if amount == known["amount"]:
            return  # nothing it has not written already
        current = dict(self.cef("GET", f"/Products/Product/ID/{known['clarity']}"))
        if current.get("PriceBase") is None or _minor(current["PriceBase"]) != amount:
            body = {k: v for k, v in current.items() if not isinstance(v, list)}
            self.cef("PUT", "/Products/Product/Update", body={**body, "PriceBase": str(rows[0]["price_list_rate"]),
                                                              "ID": known["clarity"]})
        product = self.stripe.v1.products.retrieve(known["stripe"])
        key = f"naive-sync:{known['stripe']}:{amount}"
        price = self.new_price(known["stripe"], code, amount, f"{key}:price")
        if getattr(product, "default_price", None) == known["price"]:
            self.stripe.v1.products.update(known["stripe"], params={"default_price": price},
                                        options={"idempotency_key": f"{key}:default"})
        self.stripe.v1.prices.update(known["price"], params={"active": False}, options={"idempotency_key": f"{key}:retire"})
        known.update(price=price, amount=amount)

    def new_price(self, product: str, code: str, amount: int, key: str) -> str:
        return str(self.stripe.v1.prices.create(params={
            "product": product, "currency": CURRENCY.lower(), "unit_amount": amount,
            "lookup_key": f"cb:{code}:{CURRENCY.lower()}", "transfer_lookup_key": True},
            options={"idempotency_key": key}).id)

    # -- stock: ERPNext -> Clarity -----------------------------------------------------------------
    def stock_changed(self, code: str) -> None:
        bins = self.erp_call("GET", "/api/resource/Bin", params={
            "filters": json.dumps([["item_code", "=", code]]), "fields": json.dumps(["actual_qty", "reserved_qty"]),
            "limit_page_length": 0})
        actual = sum((Decimal(str(b.get("actual_qty") or 0)) for b in bins), Decimal(0))
        reserved = sum((Decimal(str(b.get("reserved_qty") or 0)) for b in bins), Decimal(0))
        if self.section_id is None:
            found = self.cef("GET", "/Inventory/InventoryLocationSections", params={
                "CustomKey": SECTION, "CustomKeyStrict": "true", "Paging": json.dumps({"Size": 10, "StartIndex": 1})})
            self.section_id = int(next(r["ID"] for r in found.get("Results") or () if r.get("CustomKey") == SECTION))
        product_id = (self.products.get(code) or {}).get("clarity") or self.product_id(code)
        if product_id is None:
            return  # an ERP-only item
        self.cef("PUT", "/Providers/Inventory/BulkUpdateInventoryForProducts", body={"InventoryToPush": [{
            "ProductID": int(product_id), "RelevantLocations": [{
                "SlaveID": self.section_id, "Quantity": _text(max(actual, Decimal(0))),
                "QuantityAllocated": _text(max(reserved, Decimal(0))), "QuantityPreSold": "0"}]}]})

    def product_id(self, code: str) -> int | None:
        found = self.cef("GET", "/Products/Products", params={
            "CustomKey": code, "CustomKeyStrict": "true", "Paging": json.dumps({"Size": 10, "StartIndex": 1})})
        rows: list[Mapping[str, Any]] = [r for r in found.get("Results") or () if r.get("CustomKey") == code]
        return int(rows[0]["ID"]) if rows else None


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


if __name__ == "__main__":
    main(NaiveSync)
