"""Customers (incl. search), products and prices."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..errors import invalid_request
from ..forms import Params, as_bool, as_int, as_str, metadata_update
from ..ids import new_id, secret
from ..state import Emulator
from ..store import Obj, SortedIndex
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


# Stripe's search query language (docs.stripe.com/search) for customers, products and prices: clauses
# `[-]field<op>value` joined by AND or OR (not both) or spaces; values quoted ('...' or "...") or bare
# numbers, booleans and `null`; `metadata['key']`. Field types per resource: `string` fields take `:`
# (exact, case-insensitive) and `~` (substring, at least 3 characters), `token` and `boolean` fields `:`
# only, `numeric` fields also `<`, `>`, `<=`, `>=`. Anything else is a 400. Results are newest first and
# page with `page` = the previous answer's `next_page`; `expand[]=total_count` adds `total_count`.
# Stripe's search is eventually consistent (usually under a minute); the emulator's is immediate.
SEARCH_FIELDS: dict[str, dict[str, str]] = {
    "customer": {"created": "numeric", "email": "string", "metadata": "token", "name": "string", "phone": "string"},
    "product": {"active": "boolean", "created": "numeric", "description": "string", "metadata": "token",
                "name": "string", "shippable": "boolean", "url": "string"},
    "charge": {"amount": "numeric", "created": "numeric", "currency": "string", "customer": "string",
               "disputed": "boolean", "metadata": "token", "payment_intent": "string", "refunded": "boolean",
               "status": "token"},
    "price": {"active": "boolean", "created": "numeric", "currency": "string", "lookup_key": "string",
              "metadata": "token", "product": "string", "type": "token"},
}
_CLAUSE = re.compile(
    r"""\s*(-?)([a-z_]+)(?:\[(['"])(.+?)\3\])?\s*(>=|<=|:|~|>|<)\s*(?:(['"])((?:\\.|(?!\6).)*)\6|([^\s'"]+))\s*"""
)
_JOINER = re.compile(r"\s+(AND|OR)\s+", re.IGNORECASE)
_PAGE_PREFIX = "page_"


SearchTest = tuple[bool, str, str | None, str, str, Any]  # negated, field, metadata key, op, field type, value


def _parse_search(query: str, kind: str) -> tuple[Any, list[SearchTest], bool]:
    """The query's predicate, its clauses and whether they are joined by OR."""
    fields = SEARCH_FIELDS[kind]
    parts = _JOINER.split(query.strip())
    joiners = {j.upper() for j in parts[1::2]}
    if len(joiners) > 1:
        raise invalid_request(f"Invalid search query: {query}. AND and OR cannot be combined.", param="query")
    tests = []
    for part in parts[0::2]:
        m = _CLAUSE.fullmatch(part)
        if not m or not part.strip():
            raise invalid_request(f"Invalid search query: {query}", param="query")
        negated, field, key, op = m.group(1) == "-", m.group(2), m.group(4), m.group(5)
        quoted, bare = m.group(7), m.group(8)
        if field not in fields or (field == "metadata") != (key is not None):
            raise invalid_request(f"Field '{field}' is not supported for search on {kind}s", param="query")
        ftype = fields[field]
        value: Any = quoted.replace("\\'", "'").replace('\\"', '"') if quoted is not None else bare
        if bare is not None and bare.lower() == "null":
            value = None
        elif ftype == "numeric":
            try:
                value = int(value)
            except ValueError:
                raise invalid_request(f"Invalid search query: {field} is numeric", param="query") from None
        elif bare is not None and ftype != "boolean":
            raise invalid_request(f"Invalid search query: string values must be quoted ({bare})", param="query")
        if op == "~" and (ftype != "string" or value is None or len(str(value)) < 3):
            raise invalid_request(f"Invalid search query: '~' needs a string field and 3 characters ({part})",
                                  param="query")
        if op in ("<", ">", "<=", ">=") and ftype != "numeric":
            raise invalid_request(f"Invalid search query: {field} does not support {op}", param="query")
        tests.append((negated, field, key, op, ftype, value))

    def clause(obj: Obj, t: tuple[bool, str, str | None, str, str, Any]) -> bool:
        negated, field, key, op, ftype, want = t
        got = (obj.get("metadata") or {}).get(key) if key is not None else obj.get(field)
        if want is None:
            hit = got is None or got == ""
        elif got is None or got == "":
            hit = False
        elif ftype == "numeric":
            hit = {":": got == want, ">": got > want, "<": got < want, ">=": got >= want, "<=": got <= want}[op]
        elif ftype == "boolean":
            hit = str(got).lower() == str(want).lower()
        elif op == "~":
            hit = str(want).casefold() in str(got).casefold()
        else:
            hit = str(got).casefold() == str(want).casefold()
        return hit != negated

    combine = any if joiners == {"OR"} else all
    return (lambda obj: combine(clause(obj, t) for t in tests)), tests, joiners == {"OR"}


def _exact_extract(field: str, key: str | None) -> Any:
    """What an exact (``:``) clause on a string or token field compares: the value casefolded, if set."""
    def extract(obj: Obj) -> list[str]:
        got = (obj.get("metadata") or {}).get(key) if key is not None else obj.get(field)
        return [] if got is None or got == "" else [str(got).casefold()]
    return extract


def _search_candidates(emu: Emulator, kind: str, tests: list[SearchTest], any_of: bool) -> SortedIndex | None:
    """The objects that may match, newest first, from the exact-match value indexes; ``None``: scan all.

    A positive ``field:'value'`` clause on a string or token field only matches objects filed under that
    value. With AND the narrowest such clause bounds the search; with OR every clause must be one.
    """
    exact = [t for t in tests if not t[0] and t[3] == ":" and t[4] in ("string", "token") and t[5] is not None]
    if not exact or (any_of and len(exact) != len(tests)):
        return None
    buckets: list[set[str]] = []
    for _negated, field, key, _op, _ftype, want in exact:
        name = f"metadata:{key}" if key is not None else field
        index = emu.store.value_index(kind, name, _exact_extract(field, key))
        buckets.append(index.by_value.get(str(want).casefold(), set()))
    ids = set().union(*buckets) if any_of else min(buckets, key=len)
    keys = emu.store.keys
    out = SortedIndex()
    for k, i in sorted((keys[i], i) for i in ids):
        out.keys.append(k)
        out.ids.append(i)
    return out


def search_results(emu: Emulator, kind: str, p: Params, url: str) -> Obj:
    query = as_str(p, "query", required=True) or ""
    matches, tests, any_of = _parse_search(query, kind)
    limit = as_int(p, "limit", 10)
    if limit is None or not 1 <= limit <= 100:
        raise invalid_request("Limit must be between 1 and 100.", param="limit")
    after = None
    page = as_str(p, "page")
    if page is not None:
        after = emu.store.keys.get(page[len(_PAGE_PREFIX):]) if page.startswith(_PAGE_PREFIX) else None
        if after is None:
            raise invalid_request(f"Invalid page: {page}", param="page")
    objects = emu.store.objects
    index = _search_candidates(emu, kind, tests, any_of)
    if index is None:
        index = emu.store.index(kind)
    ids, more = index.page(limit=limit, starting_after=after, pred=lambda i: bool(matches(objects[i])))
    out: Obj = {
        "object": "search_result",
        "data": [objects[i] for i in ids],
        "has_more": more,
        "next_page": _PAGE_PREFIX + ids[-1] if more else None,
        "url": url,
    }
    if "total_count" in expand_list(p):
        out["total_count"] = sum(1 for i in index.ids if matches(objects[i]))
    return out


def search_customers(emu: Emulator, p: Params) -> Obj:
    return search_results(emu, "customer", p, "/v1/customers/search")


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
    for k in ("name", "description", "statement_descriptor", "unit_label", "url", "tax_code"):
        if k in p:
            up[k] = as_str(p, k)
    if "name" in p and not up["name"]:
        raise invalid_request("You must supply a non-empty name.", param="name")
    if "default_price" in p:
        up["default_price"] = _default_price(emu, prod, as_str(p, "default_price"))
    if "shippable" in p:
        up["shippable"] = as_bool(p, "shippable")
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


def _default_price(emu: Emulator, prod: Obj, price_id: str | None) -> str | None:
    """A product's ``default_price`` must be an active price of that product (or empty to unset)."""
    if not price_id:
        return None
    price = emu.get("price", price_id, "default_price")
    if price["product"] != prod["id"]:
        raise invalid_request(
            f"The price `{price_id}` does not belong to the product `{prod['id']}`.", param="default_price"
        )
    if not price["active"]:
        raise invalid_request(f"The price `{price_id}` is not active.", param="default_price")
    return price_id


def delete_product(emu: Emulator, p: Params, pid: str) -> Obj:
    prod = emu.get("product", pid)
    if len(emu.store.index(f"price:product:{pid}")):
        raise invalid_request(
            "This product cannot be deleted because it has one or more user-created prices.", param="id"
        )
    emu.store.delete(pid)
    emu.emit("product.deleted", prod)
    return {"id": pid, "object": "product", "deleted": True}


def _list_filter(p: Params, checks: list[tuple[str, Any]]) -> Callable[[Obj], bool] | None:
    """A predicate over the (field, wanted) pairs given, or None when there are none."""
    if not checks:
        return None

    def pred(obj: Obj) -> bool:
        return all((obj.get(f) in want) if isinstance(want, set) else obj.get(f) == want for f, want in checks)
    return pred


def list_products(emu: Emulator, p: Params) -> Obj:
    checks: list[tuple[str, Any]] = []
    for flag in ("active", "shippable"):
        if p.get(flag) not in (None, ""):
            checks.append((flag, as_bool(p, flag)))
    if as_str(p, "url"):
        checks.append(("url", as_str(p, "url")))
    ids = p.get("ids")
    if isinstance(ids, list) and ids:
        checks.append(("id", {str(i) for i in ids}))
    return emu.list_page("product", p, "/v1/products", _list_filter(p, checks))


# -- prices ------------------------------------------------------------------------------------------
# A price's amount, currency, product, recurrence and tiers never change: Stripe's update endpoint takes
# only active, currency_options, lookup_key, metadata, nickname, tax_behavior and transfer_lookup_key, and
# answers any other parameter with 400 parameter_unknown. A lookup key belongs to one price at a time
# ("A price (`price_…`) already uses that lookup key.") unless transfer_lookup_key=true moves it, which
# also updates the price that loses it (price.updated). tax_behavior is settable once: from unspecified.
PRICE_UPDATE_PARAMS = {"active", "currency_options", "expand", "lookup_key", "metadata", "nickname",
                       "tax_behavior", "transfer_lookup_key"}
LOOKUP_KEY_MAX = 200


def _claim_lookup_key(emu: Emulator, key: str | None, price_id: str | None, transfer: bool) -> None:
    """Check that ``key`` is free for ``price_id``; with ``transfer`` take it from the price holding it."""
    if not key:
        return
    if len(key) > LOOKUP_KEY_MAX:
        raise invalid_request(f"lookup_key may be up to {LOOKUP_KEY_MAX} characters.", param="lookup_key")
    holder = next((emu.store.objects[i] for i in emu.store.index(f"price:lookup_key:{key}").ids
                   if emu.store.objects[i].get("lookup_key") == key and i != price_id), None)
    if holder is None:
        return
    if not transfer:
        raise invalid_request(f"A price (`{holder['id']}`) already uses that lookup key.", param="lookup_key")
    emu.update("price.updated", holder, {"lookup_key": None})


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
    if unit_amount is None and p.get("unit_amount_decimal") not in (None, ""):
        unit_amount = as_int({"u": str(p["unit_amount_decimal"]).split(".")[0]}, "u")
    if unit_amount is None:
        raise invalid_request(
            "Missing required param: unit_amount.", param="unit_amount", code="parameter_missing"
        )
    if unit_amount < 0:
        raise invalid_request("Invalid non-negative integer", param="unit_amount")
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
    tax_behavior = as_str(p, "tax_behavior", "unspecified")
    if tax_behavior not in ("inclusive", "exclusive", "unspecified"):
        raise invalid_request(f"Invalid tax_behavior: {tax_behavior}", param="tax_behavior")
    lookup_key = as_str(p, "lookup_key")
    _claim_lookup_key(emu, lookup_key, None, as_bool(p, "transfer_lookup_key"))
    price: Obj = {
        "id": new_id("price"),
        "object": "price",
        "active": as_bool(p, "active", True),
        "billing_scheme": "per_unit",
        "created": emu.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata_update({}, p.get("metadata")),
        "nickname": as_str(p, "nickname"),
        "product": product,
        "recurring": recurring,
        "tax_behavior": tax_behavior,
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
    unknown = sorted(k for k in p if k not in PRICE_UPDATE_PARAMS)
    if unknown:
        raise invalid_request(
            f"Received unknown parameter: {unknown[0]}", param=unknown[0], code="parameter_unknown"
        )
    up: dict[str, Any] = {}
    if "active" in p:
        up["active"] = as_bool(p, "active")
    if "nickname" in p:
        up["nickname"] = as_str(p, "nickname")
    if "metadata" in p:
        up["metadata"] = metadata_update(price["metadata"], p["metadata"])
    if "tax_behavior" in p:
        wanted = as_str(p, "tax_behavior")
        if wanted not in ("inclusive", "exclusive", "unspecified"):
            raise invalid_request(f"Invalid tax_behavior: {wanted}", param="tax_behavior")
        if price["tax_behavior"] != "unspecified" and wanted != price["tax_behavior"]:
            raise invalid_request(
                "tax_behavior cannot be changed once it is set to inclusive or exclusive.", param="tax_behavior"
            )
        up["tax_behavior"] = wanted
    if "lookup_key" in p:
        key = as_str(p, "lookup_key")
        _claim_lookup_key(emu, key, pid, as_bool(p, "transfer_lookup_key"))
        up["lookup_key"] = key
        if key:
            emu.store.add_to_index(pid, f"price:lookup_key:{key}")
    emu.update("price.updated", price, up)
    return price


def list_prices(emu: Emulator, p: Params) -> Obj:
    checks: list[tuple[str, Any]] = []
    if p.get("active") not in (None, ""):
        checks.append(("active", as_bool(p, "active")))
    for field in ("currency", "type"):
        if as_str(p, field):
            checks.append((field, (as_str(p, field) or "").lower()))
    keys = p.get("lookup_keys")
    if keys not in (None, ""):
        if not isinstance(keys, list) or len(keys) > 10:
            raise invalid_request("lookup_keys takes a list of up to 10 keys.", param="lookup_keys")
        checks.append(("lookup_key", {str(k) for k in keys}))
    pred = _list_filter(p, checks)
    rec = p.get("recurring")
    if isinstance(rec, dict) and rec.get("interval"):
        base, interval = pred, rec["interval"]

        def pred(o: Obj) -> bool:
            return bool(o["recurring"]) and o["recurring"]["interval"] == interval and (base is None or base(o))
    product = as_str(p, "product")
    index = f"price:product:{product}" if product else "price"
    return emu.list_page(index, p, "/v1/prices", pred)


def search_prices(emu: Emulator, p: Params) -> Obj:
    return search_results(emu, "price", p, "/v1/prices/search")


def search_products(emu: Emulator, p: Params) -> Obj:
    return search_results(emu, "product", p, "/v1/products/search")


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
