"""Customers (incl. search), products and prices."""

from __future__ import annotations

import re
from typing import Any

from ..errors import invalid_request
from ..forms import Params, as_bool, as_int, as_str, metadata_update
from ..ids import new_id, secret
from ..state import Emulator
from ..store import Obj
from . import Route

_ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def address(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) or None for k in _ADDRESS_KEYS}


def expand_list(params: Params) -> list[str]:
    v = params.get("expand")
    if v is None or v == "":
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [str(x) for x in v]
    raise invalid_request("Invalid expand", param="expand")


# -- customers ---------------------------------------------------------------------------------------
def _customer_fields(emu: Emulator, p: Params, cus: Obj | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("email", "name", "phone", "description"):
        if k in p:
            out[k] = as_str(p, k)
    if "address" in p:
        out["address"] = address(p["address"])
    if "shipping" in p:
        out["shipping"] = p["shipping"] if isinstance(p["shipping"], dict) else None
    if "metadata" in p:
        out["metadata"] = metadata_update(cus["metadata"] if cus else {}, p["metadata"])
    if "invoice_settings" in p and isinstance(p["invoice_settings"], dict):
        base = dict(cus["invoice_settings"]) if cus else _invoice_settings()
        dpm = p["invoice_settings"].get("default_payment_method")
        if dpm is not None:
            if dpm:
                emu.get("payment_method", dpm, "invoice_settings[default_payment_method]")
            base["default_payment_method"] = dpm or None
        out["invoice_settings"] = base
    if "preferred_locales" in p:
        out["preferred_locales"] = p["preferred_locales"] or []
    if "tax_exempt" in p:
        out["tax_exempt"] = p["tax_exempt"]
    return out


def _invoice_settings() -> dict[str, Any]:
    return {
        "custom_fields": None,
        "default_payment_method": None,
        "footer": None,
        "rendering_options": None,
    }


def create_customer(emu: Emulator, p: Params) -> Obj:
    clock = as_str(p, "test_clock")
    created = emu.now()
    if clock:
        created = emu.get("test_helpers.test_clock", clock, "test_clock", "test clock")["frozen_time"]
    cus: Obj = {
        "id": new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": as_int(p, "balance", 0),
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": secret(8).upper(),
        "invoice_settings": _invoice_settings(),
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock,
    }
    cus.update(_customer_fields(emu, p, None))
    idx = [f"customer:email:{cus['email'].lower()}"] if cus["email"] else []
    if clock:
        idx.append(f"customer:clock:{clock}")
    emu.add("customer", cus, tuple(idx))
    pm = as_str(p, "payment_method")
    if pm:
        from .payment_methods import attach_payment_method

        attach_payment_method(emu, {"customer": cus["id"]}, pm)
    emu.emit("customer.created", cus)
    return cus


def retrieve_customer(emu: Emulator, p: Params, cid: str) -> Obj:
    cus = emu.store.get(cid, "customer")
    if cus is None and emu.store.internal.get(cid, {}).get("deleted"):
        return {"id": cid, "object": "customer", "deleted": True}
    return emu.get("customer", cid)


def update_customer(emu: Emulator, p: Params, cid: str) -> Obj:
    cus = emu.get("customer", cid)
    fields = _customer_fields(emu, p, cus)
    if fields.get("email"):
        emu.store.add_to_index(cid, f"customer:email:{fields['email'].lower()}")
    emu.update("customer.updated", cus, fields)
    return cus


def delete_customer(emu: Emulator, p: Params, cid: str) -> Obj:
    cus = emu.get("customer", cid)
    emu.store.delete(cid)
    emu.store.intern(cid)["deleted"] = True
    emu.emit("customer.deleted", cus)
    return {"id": cid, "object": "customer", "deleted": True}


def list_customers(emu: Emulator, p: Params) -> Obj:
    email = as_str(p, "email")
    if email:
        return emu.list_page(
            f"customer:email:{email.lower()}", p, "/v1/customers", lambda c: c["email"] == email
        )
    clock = as_str(p, "test_clock")
    if clock:
        return emu.list_page(f"customer:clock:{clock}", p, "/v1/customers")
    return emu.list_page("customer", p, "/v1/customers")


_CLAUSE = re.compile(r"""\s*(\w+(?:\[['"][^'"]+['"]\])?)\s*(:|~)\s*(['"])(.*?)\3\s*""")


def search_results(emu: Emulator, kind: str, p: Params, url: str, fields: tuple[str, ...]) -> Obj:
    query = as_str(p, "query", required=True) or ""
    clauses: list[tuple[str, str, str]] = []
    for part in re.split(r"\s+AND\s+", query.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise invalid_request(f"Invalid search query: {query}", param="query")
        clauses.append((m.group(1), m.group(2), m.group(4)))
    limit = as_int(p, "limit", 10) or 10
    index = emu.store.index(kind)
    for f, op, v in clauses:
        if f == "email" and op == ":" and kind == "customer":
            index = emu.store.index(f"customer:email:{v.lower()}")
        elif not (f in fields or f.startswith("metadata[")):
            raise invalid_request(f"Field '{f}' is not supported for search", param="query")

    def match(obj: Obj) -> bool:
        for f, op, v in clauses:
            got = obj.get("metadata", {}).get(f[10:-2]) if f.startswith("metadata[") else obj.get(f)
            if got is None:
                return False
            s = str(got)
            if (op == ":" and s.lower() != v.lower()) or (op == "~" and v.lower() not in s.lower()):
                return False
        return True

    ids, more = index.page(limit=limit, pred=lambda i: match(emu.store.objects[i]))
    return {
        "object": "search_result",
        "data": [emu.store.objects[i] for i in ids],
        "has_more": more,
        "next_page": None,
        "url": url,
    }


def search_customers(emu: Emulator, p: Params) -> Obj:
    return search_results(emu, "customer", p, "/v1/customers/search", ("email", "name", "phone", "created"))


# -- products ----------------------------------------------------------------------------------------
def create_product(emu: Emulator, p: Params) -> Obj:
    name = as_str(p, "name", required=True)
    now = emu.now()
    prod: Obj = {
        "id": as_str(p, "id") or new_id("prod", 14),
        "object": "product",
        "active": as_bool(p, "active", True),
        "created": now,
        "default_price": None,
        "description": as_str(p, "description"),
        "images": p.get("images") or [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata_update({}, p.get("metadata")),
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": as_str(p, "statement_descriptor"),
        "tax_code": as_str(p, "tax_code"),
        "type": "service",
        "unit_label": as_str(p, "unit_label"),
        "updated": now,
        "url": as_str(p, "url"),
    }
    if prod["id"] in emu.store.objects:
        raise invalid_request(
            f"Product already exists: {prod['id']}", param="id", code="resource_already_exists"
        )
    emu.add("product", prod)
    emu.emit("product.created", prod)
    dpd = p.get("default_price_data")
    if isinstance(dpd, dict):
        price = create_price(emu, {**dpd, "product": prod["id"]})
        emu.update(None, prod, {"default_price": price["id"]})
    return prod


def update_product(emu: Emulator, p: Params, pid: str) -> Obj:
    prod = emu.get("product", pid)
    up: dict[str, Any] = {}
    for k in (
        "name",
        "description",
        "statement_descriptor",
        "unit_label",
        "url",
        "tax_code",
        "default_price",
    ):
        if k in p:
            up[k] = as_str(p, k)
    if "active" in p:
        up["active"] = as_bool(p, "active")
    if "metadata" in p:
        up["metadata"] = metadata_update(prod["metadata"], p["metadata"])
    if "images" in p:
        up["images"] = p["images"] or []
    if up:
        up["updated"] = emu.now()
    emu.update("product.updated", prod, up)
    return prod


def delete_product(emu: Emulator, p: Params, pid: str) -> Obj:
    prod = emu.get("product", pid)
    emu.store.delete(pid)
    emu.emit("product.deleted", prod)
    return {"id": pid, "object": "product", "deleted": True}


def list_products(emu: Emulator, p: Params) -> Obj:
    active = p.get("active")
    pred = None if active in (None, "") else (lambda o, a=as_bool(p, "active"): o["active"] == a)
    return emu.list_page("product", p, "/v1/products", pred)


# -- prices ------------------------------------------------------------------------------------------
def create_price(emu: Emulator, p: Params) -> Obj:
    currency = (as_str(p, "currency", required=True) or "").lower()
    product = p.get("product")
    if isinstance(product, str) and product:
        emu.get("product", product, "product")
    elif isinstance(p.get("product_data"), dict):
        product = create_product(emu, p["product_data"])["id"]
    else:
        raise invalid_request("Missing required param: product.", param="product", code="parameter_missing")
    unit_amount = as_int(p, "unit_amount")
    if unit_amount is None:
        raise invalid_request(
            "Missing required param: unit_amount.", param="unit_amount", code="parameter_missing"
        )
    rec = p.get("recurring")
    recurring = None
    if isinstance(rec, dict):
        interval = rec.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid_request("Invalid recurring[interval]", param="recurring[interval]")
        recurring = {
            "interval": interval,
            "interval_count": as_int(rec, "interval_count", 1),
            "meter": None,
            "trial_period_days": as_int(rec, "trial_period_days"),
            "usage_type": rec.get("usage_type") or "licensed",
        }
    price: Obj = {
        "id": new_id("price"),
        "object": "price",
        "active": as_bool(p, "active", True),
        "billing_scheme": "per_unit",
        "created": emu.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": as_str(p, "lookup_key"),
        "metadata": metadata_update({}, p.get("metadata")),
        "nickname": as_str(p, "nickname"),
        "product": product,
        "recurring": recurring,
        "tax_behavior": as_str(p, "tax_behavior", "unspecified"),
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }
    idx = [f"price:product:{product}"]
    if price["lookup_key"]:
        idx.append(f"price:lookup_key:{price['lookup_key']}")
    emu.add("price", price, tuple(idx))
    emu.emit("price.created", price)
    return price


def update_price(emu: Emulator, p: Params, pid: str) -> Obj:
    price = emu.get("price", pid)
    up: dict[str, Any] = {}
    if "active" in p:
        up["active"] = as_bool(p, "active")
    if "nickname" in p:
        up["nickname"] = as_str(p, "nickname")
    if "metadata" in p:
        up["metadata"] = metadata_update(price["metadata"], p["metadata"])
    if "lookup_key" in p:
        up["lookup_key"] = as_str(p, "lookup_key")
        if up["lookup_key"]:
            emu.store.add_to_index(pid, f"price:lookup_key:{up['lookup_key']}")
    emu.update("price.updated", price, up)
    return price


def list_prices(emu: Emulator, p: Params) -> Obj:
    product = as_str(p, "product")
    keys = p.get("lookup_keys")
    if isinstance(keys, list) and keys:
        wanted = set(keys)
        return emu.list_page("price", p, "/v1/prices", lambda o: o["lookup_key"] in wanted)
    if product:
        return emu.list_page(f"price:product:{product}", p, "/v1/prices")
    return emu.list_page("price", p, "/v1/prices")


def search_prices(emu: Emulator, p: Params) -> Obj:
    return search_results(
        emu, "price", p, "/v1/prices/search", ("lookup_key", "product", "currency", "active")
    )


def search_products(emu: Emulator, p: Params) -> Obj:
    return search_results(emu, "product", p, "/v1/products/search", ("name", "description", "active"))


ROUTES: list[Route] = [
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/customers/search", search_customers),
    ("GET", "/v1/customers/{id}", retrieve_customer),
    ("POST", "/v1/customers/{id}", update_customer),
    ("DELETE", "/v1/customers/{id}", delete_customer),
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products", list_products),
    ("GET", "/v1/products/search", search_products),
    ("GET", "/v1/products/{id}", lambda emu, p, i: emu.get("product", i)),
    ("POST", "/v1/products/{id}", update_product),
    ("DELETE", "/v1/products/{id}", delete_product),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices", list_prices),
    ("GET", "/v1/prices/search", search_prices),
    ("GET", "/v1/prices/{id}", lambda emu, p, i: emu.get("price", i)),
    ("POST", "/v1/prices/{id}", update_price),
]
