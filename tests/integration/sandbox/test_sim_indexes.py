"""The simulators' indexes answer exactly what a scan would, through any sequence of writes.

The ERPNext simulator's lists use an index for ``=`` and ``in`` filters (top level and child tables such as
``Dynamic Link``) when given its store; given the same documents as a plain list, it scans: after random puts,
deletes and in-place edits (then ``put``) of documents with mixed value types, both must return the same rows in
the same order. The Stripe emulator's customer search uses an index for ``field:'value'`` clauses (``metadata``
too, case-insensitive): through the official SDK, after random creates, updates and deletes, every search must
return what filtering the full customer list gives, newest first, across pages.
"""

from __future__ import annotations

import json
import random
from typing import Any

import stripe
from starlette.datastructures import QueryParams
from stripe_fixtures import *  # noqa: F403  (pytest fixtures)

from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.erp_sim.doctypes import resolve_doctype
from commerce_bridge.sandbox.erp_sim.query import run_list

VALUES: list[Any] = ["a", "b", "A", "", None, 1, "1", 2, True, ["x"], "c"]


def _contact(rng: random.Random, i: int) -> dict[str, Any]:
    return {"name": f"n{i}", "email_id": rng.choice(VALUES), "modified": f"2026-01-{rng.randint(1, 28):02d}",
            "creation": f"2026-01-{rng.randint(1, 28):02d}",
            "links": [{"link_doctype": rng.choice(["Customer", "Supplier", None]), "link_name": rng.choice(VALUES)}
                      for _ in range(rng.randint(0, 3))]}


def _conditions(rng: random.Random) -> list[list[Any]]:
    conditions: list[list[Any]] = []
    for _ in range(rng.randint(1, 2)):
        kind = rng.random()
        if kind < 0.4:
            conditions.append(["email_id", "=", rng.choice(VALUES)])
        elif kind < 0.6:
            conditions.append(["email_id", "in", [rng.choice(VALUES), rng.choice(VALUES)]])
        elif kind < 0.7:
            conditions.append(["email_id", "in", "a, b,1"])
        elif kind < 0.9:
            conditions.append(["Dynamic Link", "link_name", "=", rng.choice(VALUES)])
        else:
            conditions.append(["Dynamic Link", "link_doctype", "in", ["Customer", None]])
    return conditions


def test_erp_filtered_lists_through_the_index_equal_the_scan_after_random_writes() -> None:
    rng, store, contact = random.Random(7), DocStore(), resolve_doctype("Contact")
    compared = found = 0
    for step in range(3000):
        op, i = rng.random(), rng.randint(0, 300)
        if op < 0.6:
            store.put("Contact", f"n{i}", _contact(rng, i))
        elif op < 0.75:
            store.delete("Contact", f"n{i}")
        elif op < 0.8 and (doc := store.get("Contact", f"n{i}")) is not None:
            doc["email_id"] = rng.choice(VALUES[:5])  # changed in place, then put again
            store.put("Contact", f"n{i}", doc)
        if step % 10 == 0:
            query = QueryParams({"filters": json.dumps(_conditions(rng)), "fields": '["name"]',
                                 "limit_page_length": "0",
                                 "order_by": rng.choice(["creation asc", "modified desc", "name asc"])})
            indexed = run_list(store, contact, query)
            assert indexed == run_list(store.all("Contact"), contact, query), query
            compared, found = compared + 1, found + len(indexed)
    assert compared == 300 and found > 300  # the filters did find documents, not only empty lists


def test_stripe_customer_search_through_the_index_equals_filtering_the_list(
        stripe_client: stripe.StripeClient) -> None:
    rng, c = random.Random(11), stripe_client.v1
    ids: list[str] = []
    for _ in range(120):
        params: dict[str, Any] = {"name": rng.choice(["Ann", "ann", "Bob"]),
                                  "metadata": {"k": rng.choice(["1", "2", "AbC"])}}
        if email := rng.choice(["x@e.com", "X@E.com", "y@e.com", ""]):
            params["email"] = email
        ids.append(c.customers.create(params=params).id)
        if rng.random() < 0.3:
            c.customers.update(rng.choice(ids), params={"email": rng.choice(["x@e.com", "z@e.com"]),
                                                        "metadata": {"k": rng.choice(["", "3", "abc"])}})
        if rng.random() < 0.05:
            gone = rng.choice(ids)
            ids.remove(gone)
            c.customers.delete(gone)
    everyone = [cus.to_dict() for cus in c.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert len(everyone) == len(ids)

    def low(v: Any) -> str:
        return str(v or "").lower()

    cases = {
        "email:'x@e.com'": lambda o: low(o.get("email")) == "x@e.com",
        "email:'X@E.COM' OR metadata['k']:'abc'":
            lambda o: low(o.get("email")) == "x@e.com" or low(o["metadata"].get("k")) == "abc",
        "name:'ann' AND metadata['k']:'2'": lambda o: low(o.get("name")) == "ann" and o["metadata"].get("k") == "2",
        "name:'Ann' AND email:'y@e.com' AND metadata['k']:'1'":
            lambda o: low(o.get("name")) == "ann" and low(o.get("email")) == "y@e.com" and o["metadata"].get("k") == "1",
        "metadata['zz']:'1'": lambda o: False,
    }
    for query, wanted in cases.items():
        expected = [o["id"] for o in everyone if wanted(o)]
        for limit in (3, 100):
            got = [cus.id for cus in c.customers.search(params={"query": query, "limit": limit}).auto_paging_iter()]
            assert got == expected, (query, limit)
