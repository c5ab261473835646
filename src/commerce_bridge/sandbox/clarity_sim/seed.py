"""Bulk seeding of the Clarity simulator (``POST /_sandbox/accounts``): many customer accounts at once, for
benchmarks and backfill tests.

Each account gets one billing contact (``IsBilling``) with an e-mail, a phone and a US address, as an
operator would have entered them. Rows are written straight into the store in one batch: the generated
``/Accounts/Account/Create`` checks the CustomKey against every account, which makes seeding 100,000 of them
quadratic. Nothing is notified (no webhooks), as for data that was there before the bridge.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim import lookups
from commerce_bridge.sandbox.clarity_sim.core import Sim, json_response

MAX_COUNT = 200_000


def seed_accounts(sim: Sim, count: int, *, prefix: str = "BULK", domain: str = "example.com") -> dict[str, Any]:
    """Create ``count`` accounts ``{prefix}-000001``... with their billing contact; their first and last IDs."""
    ids: list[int] = []
    with sim.store.batch():
        status = lookups.by_name_or_create(sim, "AccountStatus", "NORMAL")["ID"]
        kind = lookups.by_name_or_create(sim, "AccountType", "CUSTOMER")["ID"]
        for n in range(1, count + 1):
            now = sim.clock.now_us()
            stamp = {"Active": True, "_c": now, "_u": now}
            address_id = sim.store.next_value("Address")
            address = {"ID": address_id, "Street1": f"{n} Main St", "City": "San Francisco", "RegionCode": "CA",
                       "PostalCode": "94105", "CountryCode": "US", "Active": True}
            sim.store.put("Address", address_id, {**address, "_c": now, "_u": now})
            contact_id = sim.store.next_value("Contact")
            first, last = "Customer", f"{prefix.title()} {n:06d}"
            sim.store.put("Contact", contact_id, {
                "ID": contact_id, "FirstName": first, "LastName": last, "FullName": f"{first} {last}",
                "Email1": f"{prefix.lower()}.{n:06d}@{domain}", "Phone1": f"+1415555{n % 10000:04d}",
                "AddressID": address_id, "Address": address, **stamp})
            account_id = sim.store.next_value("Account")
            sim.store.put("Account", account_id, {
                "ID": account_id, "CustomKey": f"{prefix}-{n:06d}", "Name": f"{first} {last}", "StatusID": status,
                "TypeID": kind, **stamp})
            link_id = sim.store.next_value("AccountContact")
            sim.store.put("AccountContact", link_id, {"ID": link_id, "MasterID": account_id, "SlaveID": contact_id,
                                                      "IsBilling": True, "IsPrimary": False, **stamp})
            ids.append(account_id)
    return {"created": count, "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}


def sandbox_routes(sim: Sim) -> list[Route]:
    """``POST /_sandbox/accounts`` ``{"count": N, "prefix": "BULK"}``; errors answer 400 ``{error}``."""

    async def seed(request: Request) -> Response:
        try:
            body = await request.json()
            count = int(body.get("count", 0))
            prefix = str(body.get("prefix") or "BULK")
        except (ValueError, TypeError, AttributeError) as exc:
            return json_response({"error": f"body must be {{count, prefix}}: {exc}"}, status=400)
        if not 0 < count <= MAX_COUNT:
            return json_response({"error": f"count must be 1 to {MAX_COUNT}"}, status=400)
        return json_response(seed_accounts(sim, count, prefix=prefix))

    return [Route("/_sandbox/accounts", seed, methods=["POST"])]
