"""``HttpClarityGateway``: the ClarityGateway port over httpx (session login, polling, actions, AddPayment).

Decimal numbers in Clarity's JSON are returned as strings (``"29.0900"``), never floats, so amounts stay
exact; ``mapping/`` turns them into ``Money``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from commerce_bridge.connectors.clarity.changes import (
    CursorState,
    account_change_event,
    change_event,
    change_fingerprint,
    format_local,
    parse_local,
    product_change_event,
    return_change_event,
)
from commerce_bridge.connectors.clarity.errors import (
    action_error,
    error_for_response,
    not_found,
)
from commerce_bridge.errors import ConfigurationError, NotFound, UpstreamAuthFailed, UpstreamRejected
from commerce_bridge.http_errors import transport_errors
from commerce_bridge.services.gateways import ClarityAction, CursorStore, PollResult

__all__ = ["ACTIONS_BY_STATUS", "HttpClarityGateway"]

JsonDict = dict[str, Any]

ACTIONS_BY_STATUS: dict[str, ClarityAction] = {
    "Confirmed": "Confirm",
    "Pending": "Pending",
    "On Hold": "Hold",
    "Backordered": "Backorder",
    "Processing": "CreatePickTicket",
    "Shipped from Vendor": "DropShip",
    "Shipped": "Ship",
    "Ready for Pickup": "ReadyForPickup",
    "Completed": "Complete",
    "Void": "Void",
}
"""Seeded status key -> the PATCH action route that sets it (CapturePayment is left out on purpose:
it calls the payment provider). Other statuses are set with ``PUT /Ordering/SalesOrder/Update``."""

RETURN_ACTIONS_BY_STATUS = {"Confirmed": "Confirm", "Rejected": "Reject", "Shipped": "Shipped", "Completed": "Complete",
                            "Void": "Void", "Canceled": "Cancel"}
"""Sales-return status key -> its ``/Providers/Returning/Actions`` route (facts §1.3)."""

LOOKUP_TABLES = {"status": "SalesOrderStatuses", "state": "SalesOrderStates", "type": "SalesOrderTypes"}
UNSET = object()
ACCOUNT_CURSOR, CONTACT_CURSOR = "clarity.accounts", "clarity.contacts"  # the customer poll's cursors
PRODUCT_CURSOR = "clarity.products"  # the product poll's cursor
UNLIMITED = "commerce_bridge.unlimited"
"""httpx request extension: this request takes no rate-limit slot (the poll's)."""


def _loads(content: bytes) -> Any:
    return json.loads(content, parse_float=str)


class HttpClarityGateway:
    """Implements ``services.gateways.ClarityGateway`` against CEF's ServiceStack API.

    Parameters
    ----------
    base_url:
        ``CB_CLARITY_BASE_URL``, e.g. ``https://shop/DesktopModules/ClarityEcommerce/API-Admin``.
    user, password:
        ``CB_CLARITY_USER`` / ``CB_CLARITY_PASSWORD`` of a service user with every permission.
    cursor_store:
        Where the poll cursor lives (durable in production).
    timezone:
        ``CB_CLARITY_TIMEZONE``: the IANA zone in which the server writes dates (CEF's default is
        server-local time).
    poll_overlap_s:
        ``CB_CLARITY_POLL_OVERLAP_S``: each poll re-reads this many seconds before the cursor.
    page_size:
        Rows per search request.
    timeout_s:
        Per-request timeout.
    transport:
        An httpx transport (tests); None for a real connection pool.
    """

    def __init__(
        self, base_url: str, user: str, password: str, *, cursor_store: CursorStore,
        timezone: str = "UTC", poll_overlap_s: float = 5.0, page_size: int = 100, timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None, cursor_name: str = "clarity.salesorders",
        before_request: Callable[[], None] | None = None, return_cursor_name: str = "clarity.salesreturns",
    ) -> None:
        if not base_url or not user:
            raise ConfigurationError("CB_CLARITY_BASE_URL and CB_CLARITY_USER are required")
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"CB_CLARITY_TIMEZONE {timezone!r} is not an IANA time zone") from exc
        self._user = user
        self._password = password
        self._cursors = cursor_store
        self._cursor_name = cursor_name
        self._return_cursor_name = return_cursor_name
        self.overlap = timedelta(seconds=poll_overlap_s)
        self.page_size = page_size
        # before_request: e.g. the shared per-destination rate limit, taken once per HTTP request except a poll's
        # (UNLIMITED): only one process polls, at its own interval, and CEF itself has no rate limit
        hooks = {"request": [lambda request: None if request.extensions.get(UNLIMITED) else before_request()]} \
            if before_request is not None else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport,
                                  event_hooks=hooks)
        self._lock = threading.Lock()
        self._session: str | None = None
        self._lookups: dict[str, dict[str, JsonDict]] = {}
        self.logins = 0
        """Successful logins so far (the first one plus re-logins after a 401)."""

    def close(self) -> None:
        self._http.close()

    # session

    @property
    def session_id(self) -> str | None:
        """The current ServiceStack session id (sent as ``X-ss-pid``), None before the first call."""
        return self._session

    def _login(self) -> str:
        with transport_errors("Clarity"):
            response = self._http.post("/auth/identity", json={
                "UserName": self._user, "Password": self._password, "RememberMe": True})
        if response.status_code == 401:
            raise UpstreamAuthFailed("Clarity refused the login", suggested_fix=(
                "Check CB_CLARITY_USER and CB_CLARITY_PASSWORD."), details={"http_status": 401})
        error = error_for_response(response)
        if error is not None:
            raise error
        body = _loads(response.content) if response.content else {}
        session = (body.get("SessionId") if isinstance(body, dict) else None) \
            or response.cookies.get("ss-pid") or response.cookies.get("ss-id")
        if not session:
            raise UpstreamAuthFailed("Clarity's login answer carried no session id")
        self._http.cookies.clear()  # the session rides on X-ss-pid only; no stale cookie can shadow it
        self.logins += 1
        return str(session)

    def _current_session(self, stale: str | None = None) -> str:
        """The session to use; logs in when there is none or when ``stale`` was refused (once per thread race)."""
        with self._lock:
            if self._session is None or self._session == stale:
                self._session = self._login()
            return self._session

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = UNSET, limited: bool = True) -> httpx.Response:
        """One API call: a 401 triggers one re-login and one repeat; then the error table applies.

        ``limited=False`` (the poll's requests) skips ``before_request``.
        """
        session = self._current_session()
        for attempt in (1, 2):
            headers = {"X-ss-pid": session, "X-ss-id": session, "Accept": "application/json"}
            kwargs: dict[str, Any] = {"params": params, "headers": headers}
            if not limited:
                kwargs["extensions"] = {UNLIMITED: True}
            if body is not UNSET:
                kwargs["json"] = body
            with transport_errors("Clarity"):
                response = self._http.request(method, path, **kwargs)
            if response.status_code != 401:
                break
            if attempt == 1:
                session = self._current_session(stale=session)
        error = error_for_response(response)
        if error is not None:
            raise error
        return response

    def _json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = UNSET, limited: bool = True) -> Any:
        response = self._send(method, path, params=params, body=body, limited=limited)
        if response.status_code == 204 or not response.content:
            raise not_found(response)
        return _loads(response.content)

    def _action(self, method: str, path: str, body: Any = UNSET) -> JsonDict:
        response = self._send(method, path, body=body)
        result = _loads(response.content) if response.content else {}
        if not isinstance(result, dict):
            raise UpstreamRejected(f"{method} {path} answered {result!r}, not a CEFActionResponse")
        error = action_error(response, result)
        if error is not None:
            raise error
        return result

    # lookups

    def _search(self, entities: str, query: Mapping[str, Any], *, page: int = 1, size: int | None = None,
                sorts: list[dict[str, str]] | None = None, limited: bool = True, area: str = "Ordering") -> JsonDict:
        params = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in query.items()}
        params["Paging"] = json.dumps({"Size": size or self.page_size, "StartIndex": page})
        if sorts:
            params["Sorts"] = json.dumps(sorts)
        result = self._json("GET", f"/{area}/{entities}", params=params, limited=limited)
        if not isinstance(result, dict):
            raise UpstreamRejected(f"search {entities} answered {type(result).__name__}, not paged results")
        return result

    def load_lookups(self) -> None:
        tables: dict[str, dict[str, JsonDict]] = {}
        for table, entities in LOOKUP_TABLES.items():
            rows: dict[str, JsonDict] = {}
            page = 1
            while True:
                result = self._search(entities, {}, page=page, size=200)
                batch = result.get("Results") or []
                for row in batch:
                    for name in (row.get("CustomKey"), row.get("Name")):
                        if name:
                            rows.setdefault(str(name).lower(), row)
                if len(batch) < 200:
                    break
                page += 1
            tables[table] = rows
        self._lookups = tables

    def lookup_id(self, table: str, key: str) -> int:
        """The ID of the row with this key (or name) in the ``status``, ``state`` or ``type`` table."""
        fresh = not self._lookups
        if fresh:
            self.load_lookups()
        row = self._lookups.get(table, {}).get(key.lower())
        if row is None and not fresh:  # added in Clarity since the tables were read (as the fix below says)
            self.load_lookups()
            row = self._lookups.get(table, {}).get(key.lower())
        if row is None:
            raise NotFound(f"Clarity has no sales-order {table} {key!r}", suggested_fix=(
                f"Create the {table} {key!r} in Clarity or fix the configured status map, then replay."))
        return int(row["ID"])

    def status_id(self, key: str) -> int:
        return self.lookup_id("status", key)

    # orders

    def get_order(self, order_id: int) -> JsonDict:
        result = self._json("GET", f"/Ordering/SalesOrder/ID/{int(order_id)}")
        if not isinstance(result, dict):
            raise UpstreamRejected(f"order {order_id}: Clarity answered {type(result).__name__}, not a model")
        return result

    def get_order_by_key(self, key: str) -> JsonDict:
        """By CustomKey through the search (``CustomKeyStrict``), which API-Admin serves; then by ID."""
        found = self._search("SalesOrders", {"CustomKey": key, "CustomKeyStrict": "true"}, size=2)
        rows = [r for r in found.get("Results") or [] if r.get("CustomKey") == key]
        if not rows:
            raise NotFound(f"Clarity has no sales order with key {key!r}",
                           suggested_fix="Check the order key; the order may not be visible in Clarity yet.")
        return self.get_order(int(rows[0]["ID"]))

    # products

    def find_product_by_key(self, key: str) -> JsonDict | None:
        """By CustomKey through the search (``CustomKeyStrict``), which API-Admin serves (the ``/Key/``
        getters carry no admin tag, so a stock API-Admin lacks them); an active match before an inactive
        one; then the full model by ID."""
        found = self._search("Products", {"CustomKey": key, "CustomKeyStrict": "true"}, size=10, area="Products")
        rows = sorted((r for r in found.get("Results") or [] if r.get("CustomKey") == key),
                      key=lambda r: r.get("Active") is not True)
        if not rows:
            return None
        try:
            result = self._json("GET", f"/Products/Product/ID/{int(rows[0]['ID'])}")
        except NotFound:
            return None  # deleted between the search and the read
        if not isinstance(result, dict):
            raise UpstreamRejected(f"product {key}: Clarity answered {type(result).__name__}, not a model")
        return result

    def product_ids_by_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """Product IDs by CustomKey (one strict search per key; an active product before an inactive one);
        keys with no product are left out."""
        ids: dict[str, int] = {}
        for key in keys:
            found = self._search("Products", {"CustomKey": key, "CustomKeyStrict": "true"}, size=10, area="Products")
            rows = sorted((r for r in found.get("Results") or [] if r.get("CustomKey") == key),
                          key=lambda r: r.get("Active") is not True)
            if rows:
                ids[key] = int(rows[0]["ID"])
        return ids

    def inventory_section_id(self, key: str) -> int | None:
        """The ID of the inventory location section whose CustomKey is ``key`` (active), or None."""
        found = self._search("InventoryLocationSections", {"CustomKey": key, "CustomKeyStrict": "true"}, size=10,
                             area="Inventory")
        rows = [r for r in found.get("Results") or [] if r.get("CustomKey") == key and r.get("Active", True)]
        return int(rows[0]["ID"]) if rows else None

    def push_inventory(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``PUT /Providers/Inventory/BulkUpdateInventoryForProducts``: each row ``{ProductID, SectionID,
        Quantity, QuantityAllocated, QuantityPreSold}`` (decimal text) written as that product's stock in that
        section. CEF skips unknown products silently: callers pass IDs they just found."""
        pushes = [{"ProductID": int(r["ProductID"]), "RelevantLocations": [{
            "SlaveID": int(r["SectionID"]), "Quantity": r["Quantity"], "QuantityAllocated": r["QuantityAllocated"],
            "QuantityPreSold": r["QuantityPreSold"]}]} for r in rows]
        self._action("PUT", "/Providers/Inventory/BulkUpdateInventoryForProducts", {"InventoryToPush": pushes})

    def poll_changed_orders(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Orders changed since the cursor, each change once; ``deliver`` stores them, then the cursor moves.

        Parameters
        ----------
        deliver:
            Called once with the new events (oldest first), e.g. to record them in the inbox. If it raises,
            the cursor is not saved and the next poll returns the same changes (same event ids).
        limit:
            Stop after this many new events; the next poll continues from there.

        Returns
        -------
        PollResult
            The events delivered and the number of requests and rows read.

        Notes
        -----
        Seek paging: rows are sorted by ``UpdatedDate`` ascending and each next request starts at the
        last ``UpdatedDate`` read, so an order that changes while we page moves to the end instead of
        shifting another row past us. Rows at the boundary come back and are dropped as duplicates.
        The poll's requests take no slot of ``before_request`` (the flows' rate limit): one process polls,
        once per interval, and CEF has no API rate limit of its own.
        """
        return self._poll("Ordering", "SalesOrders", self._cursor_name, change_event, deliver, limit)

    def poll_changed_returns(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Sales returns changed since their own cursor (``GET /Returning/SalesReturns``), as for orders."""
        return self._poll("Returning", "SalesReturns", self._return_cursor_name, return_change_event, deliver, limit)

    def poll_changed_accounts(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Accounts changed since the cursor ``clarity.accounts``, then the accounts of the contacts changed since
        ``clarity.contacts`` (CEF does not date an account when its contact changes; a contact of no account, such
        as an order's, is skipped), as ``account.created`` / ``account.updated`` events (as for orders).
        Each changed contact costs one ``AccountContacts`` search. The first poll (no cursor) starts from now: the
        accounts that exist before are the backfill's (``backfill customers``), not a flood of syncs."""
        for name in (ACCOUNT_CURSOR, CONTACT_CURSOR):
            if self._cursors.get(name) is None:
                self._cursors.set(name, CursorState(since=datetime.now(UTC)).dump())
        accounts = self._poll("Accounts", "Accounts", ACCOUNT_CURSOR, account_change_event, deliver, limit)
        contacts = self._poll("Contacts", "Contacts", CONTACT_CURSOR, self._contact_account_event, deliver, limit)
        return PollResult(events=accounts.events + contacts.events, pages=accounts.pages + contacts.pages,
                          rows=accounts.rows + contacts.rows)

    def poll_changed_products(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Products changed since the cursor ``clarity.products`` (``GET /Products/Products`` by ``ModifiedSince``,
        sorted by ``UpdatedDate``), as ``product.created`` / ``product.updated`` events with ids and dates only;
        the overlap window and fingerprints of the orders' poll keep each change once. Stock writes date their stock
        rows, not the product, so they start no product sync. The first poll (no cursor) starts from now: the
        products that exist before are the backfill's (``backfill products``)."""
        if self._cursors.get(PRODUCT_CURSOR) is None:
            self._cursors.set(PRODUCT_CURSOR, CursorState(since=datetime.now(UTC)).dump())
        return self._poll("Products", "Products", PRODUCT_CURSOR, product_change_event, deliver, limit)

    def search_products(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]:
        """One page (1-based) of products in ID order and CEF's ``TotalCount`` (``backfill products``)."""
        query = {"ModifiedSince": format_local(modified_since, self.zone)} if modified_since is not None else {}
        result = self._search("Products", query, page=page, size=size, sorts=[{"field": "ID", "dir": "asc"}],
                              area="Products")
        total = result.get("TotalCount")
        return [dict(r) for r in result.get("Results") or []], int(total) if isinstance(total, int) else None

    def search_orders(self, *, page: int, size: int = 100,
                      modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]:
        """One page (1-based) of sales orders in ID order (the rows the poller reads) and CEF's ``TotalCount``
        (``backfill orders``)."""
        query = {"ModifiedSince": format_local(modified_since, self.zone)} if modified_since is not None else {}
        result = self._search("SalesOrders", query, page=page, size=size, sorts=[{"field": "ID", "dir": "asc"}])
        total = result.get("TotalCount")
        return [dict(r) for r in result.get("Results") or []], int(total) if isinstance(total, int) else None

    def _contact_account_event(self, row: JsonDict, zone: Any) -> JsonDict | None:
        links = self._search("AccountContacts", {"SlaveID": int(row["ID"])}, size=5, limited=False, area="Accounts")
        masters = sorted(int(r["MasterID"]) for r in links.get("Results") or []
                         if r.get("MasterID") and r.get("Active", True) and not r.get("EndDate"))
        return account_change_event(row, zone, account_id=masters[0]) if masters else None

    def _poll(self, area: str, entities: str, cursor_name: str,
              make_event: Callable[[JsonDict, Any], JsonDict | None], deliver: Callable[[list[JsonDict]], Any],
              limit: int) -> PollResult:
        stored = self._cursors.get(cursor_name)
        state = CursorState.load(stored)
        start = state.query_from(self.overlap)
        query_from = start
        page, pages, rows_read = 1, 0, 0
        events: list[JsonDict] = []
        sorts = [{"field": "UpdatedDate", "dir": "asc"}, {"field": "ID", "dir": "asc"}]
        while len(events) < limit:
            query = {"ModifiedSince": format_local(query_from, self.zone)} if query_from else {}
            result = self._search(entities, query, page=page, sorts=sorts, limited=False, area=area)
            pages += 1
            batch = result.get("Results") or []
            rows_read += len(batch)
            newest = query_from
            for row in batch:
                changed_text = row.get("UpdatedDate") or row.get("CreatedDate")
                changed_at = parse_local(str(changed_text), self.zone) if changed_text else datetime.min.replace(
                    tzinfo=UTC)
                if newest is None or changed_at > newest:
                    newest = changed_at
                if state.note(change_fingerprint(row, self.zone), changed_at) and (
                        event := make_event(row, self.zone)) is not None:
                    events.append(event)
                    if len(events) >= limit:
                        break
            if len(batch) < self.page_size:
                break
            if newest is not None and newest != query_from:
                query_from, page = newest, 1
            else:
                page += 1  # a full page of one timestamp: step past it by page number
        if events:
            deliver(events)
        state.prune(self.overlap)
        if (moved := state.dump()) != stored:  # an idle poll writes nothing
            self._cursors.set(cursor_name, moved)
        return PollResult(events=events, pages=pages, rows=rows_read)

    # writes

    def apply_action(self, order_id: int, action: ClarityAction) -> JsonDict:
        if action not in (*ACTIONS_BY_STATUS.values(), "CapturePayment"):
            raise UpstreamRejected(f"{action!r} is not a Clarity sales-order action")
        result = self._action("PATCH", f"/Ordering/SalesOrder/{action}/{int(order_id)}")
        messages = [str(m) for m in result.get("Messages") or []]
        changed = not any(m.upper().startswith("INFO!") for m in messages)
        return {"order_id": int(order_id), "action": action, "changed": changed, "messages": messages}

    def set_status(self, order_id: int, status_key: str) -> JsonDict:
        status_id = self.status_id(status_key)  # NotFound for a status the install does not have
        action = ACTIONS_BY_STATUS.get(status_key)
        if action is not None:
            return {**self.apply_action(order_id, action), "status_id": status_id}
        order = self.get_order(order_id)
        if order.get("StatusID") == status_id:
            return {"order_id": int(order_id), "action": "Update", "changed": False, "messages": [],
                    "status_id": status_id}
        self._action("PUT", "/Ordering/SalesOrder/Update", {"ID": int(order_id), "StatusID": status_id})
        return {"order_id": int(order_id), "action": "Update", "changed": True, "messages": [],
                "status_id": status_id}

    @staticmethod
    def _has_transaction(order: Mapping[str, Any], transaction_number: str) -> bool:
        if order.get("PaymentTransactionID") == transaction_number:
            return True
        for link in order.get("SalesOrderPayments") or []:
            slave = link.get("Slave") if isinstance(link, Mapping) else None
            if isinstance(slave, Mapping) and slave.get("TransactionNumber") == transaction_number:
                return True
        return False

    def add_payment(
        self, order_id: int, *, amount: str, transaction_number: str,
        payment: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """AddPayment, made idempotent by the transaction number (Clarity itself has no idempotency keys).

        The order is read first: if its ``PaymentTransactionID`` or one of its payments already carries
        ``transaction_number``, nothing is sent. After a successful AddPayment the order's
        ``PaymentTransactionID`` is set to ``transaction_number`` (when empty) as the marker for a retry.
        """
        order = self.get_order(order_id)
        if self._has_transaction(order, transaction_number):
            return {"order_id": int(order_id), "transaction_number": transaction_number, "added": False}
        model = {"Amount": str(amount), "TransactionNumber": transaction_number,
                 "StatusKey": "Payment Received", **dict(payment or {})}
        self._action("PATCH", "/Ordering/SalesOrder/AddPayment", {"ID": int(order_id), "Payment": model})
        if not order.get("PaymentTransactionID"):
            self._action("PUT", "/Ordering/SalesOrder/Update",
                         {"ID": int(order_id), "PaymentTransactionID": transaction_number})
        return {"order_id": int(order_id), "transaction_number": transaction_number, "added": True}


    # returns

    def get_return(self, return_id: int) -> JsonDict:
        result = self._json("GET", f"/Returning/SalesReturn/ID/{int(return_id)}")
        if not isinstance(result, dict):
            raise UpstreamRejected(f"return {return_id}: Clarity answered {type(result).__name__}, not a model")
        return result

    def find_return_by_key(self, key: str) -> JsonDict | None:
        try:
            result = self._json("GET", f"/Returning/SalesReturn/Key/{quote(key, safe='')}")
        except NotFound:
            return None
        if not isinstance(result, dict):
            raise UpstreamRejected(f"return {key}: Clarity answered {type(result).__name__}, not a model")
        return result

    def create_return(self, model: Mapping[str, Any]) -> JsonDict:
        result = self._action("POST", "/Providers/Returning/Actions/CreateSalesReturn", dict(model))
        created = result.get("Result")
        if not isinstance(created, dict):
            raise UpstreamRejected("CreateSalesReturn answered no return model")
        return created

    def return_action(self, return_id: int, action: str) -> JsonDict:
        result = self._action("PATCH", f"/Providers/Returning/Actions/{action}/{int(return_id)}")
        messages = [str(m) for m in result.get("Messages") or []]
        return {"return_id": int(return_id), "action": action,
                "changed": not any(m.upper().startswith("INFO!") for m in messages)}

    def set_return_status(self, return_id: int, status_key: str) -> JsonDict:
        """The return's action route for a seeded status (``Complete``...), else ``PUT .../SalesReturn/Update``."""
        action = RETURN_ACTIONS_BY_STATUS.get(status_key)
        if action is not None:
            return self.return_action(return_id, action)
        self._action("PUT", "/Returning/SalesReturn/Update", {"ID": int(return_id), "StatusKey": status_key})
        return {"return_id": int(return_id), "action": "Update", "changed": True}

    def manually_refund(self, return_id: int, *, amount: str, transaction_number: str) -> JsonDict:
        payment = {"Amount": amount, "TransactionNumber": transaction_number, "StatusKey": "Payment Received"}
        self._action("POST", "/Providers/Returning/Actions/ManuallyRefund", {
            "ID": int(return_id), "SalesReturnPayments": [{"Slave": payment}], "RefundAmount": amount,
            "RefundTransactionID": transaction_number})
        return {"return_id": int(return_id), "refunded": True}

    # listings (the drift check): Lite projection, every page

    def orders_changed(self, since: datetime, *, until: datetime | None = None,
                       page_size: int = 100) -> Iterator[list[JsonDict]]:
        """By ``ModifiedSince`` and ID order with 1-based page numbers: an order that changes while we page
        still matches (``UpdatedDate`` only grows) and keeps its place, and new orders come last, so no row
        is skipped. ``until`` is applied here, to each row's date read in the server's zone (a CEF upper bound
        would drop rows that change while we page and shift the pages after them)."""
        yield from self._changed("Ordering", "SalesOrders", since, until, page_size)

    def returns_changed(self, since: datetime, *, until: datetime | None = None,
                        page_size: int = 100) -> Iterator[list[JsonDict]]:
        yield from self._changed("Returning", "SalesReturns", since, until, page_size)

    def _changed(self, area: str, entities: str, since: datetime, until: datetime | None,
                 page_size: int) -> Iterator[list[JsonDict]]:
        query = {"ModifiedSince": format_local(since, self.zone)}
        page = 1
        while True:
            result = self._search(entities, query, page=page, size=page_size,
                                  sorts=[{"field": "ID", "dir": "asc"}], area=area)
            rows = result.get("Results") or []
            batch = [dict(r) for r in rows if until is None or self._changed_at(r) <= until]
            if batch:
                yield batch
            if len(rows) < page_size:
                return
            page += 1

    # the gap check (services.gaps): how far the poll cursors have passed, and the event a poll makes of a row

    def polled_through(self, kind: str) -> datetime | None:
        """Changes of ``kind`` (``orders`` or ``returns``) up to this moment are behind the poller for good: its
        cursor passed them and its overlap no longer re-reads them (None: never polled, everything is ahead)."""
        state = CursorState.load(self._cursors.get(self._cursor_name if kind == "orders" else self._return_cursor_name))
        return None if state.since is None else state.since - self.overlap

    def change_event_of(self, kind: str, row: Mapping[str, Any]) -> JsonDict:
        """The event the poller stores for ``row`` (same id, type and data)."""
        return (change_event if kind == "orders" else return_change_event)(row, self.zone)

    def changed_at(self, row: Mapping[str, Any]) -> datetime:
        return self._changed_at(row)

    def _changed_at(self, row: Mapping[str, Any]) -> datetime:
        text = row.get("UpdatedDate") or row.get("CreatedDate")
        return parse_local(str(text), self.zone) if text else datetime.min.replace(tzinfo=UTC)

    def find_orders(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[JsonDict]:
        return self._find("Ordering", "SalesOrders", keys, ids)

    def find_returns(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[JsonDict]:
        return self._find("Returning", "SalesReturns", keys, ids)

    def _find(self, area: str, entities: str, keys: Sequence[str], ids: Sequence[int]) -> list[JsonDict]:
        found: list[JsonDict] = []
        for name, values in (("CustomKeys", [str(k) for k in keys]), ("IDs", [int(i) for i in ids])):
            for start in range(0, len(values), self.page_size):
                chunk = values[start:start + self.page_size]
                result = self._search(entities, {name: chunk}, size=len(chunk), area=area)
                found.extend(dict(r) for r in result.get("Results") or [])
        return found

    # notes (CEF's Note entity, /Structure/Note: see docs/sandbox/clarity.md for what is inferred)

    def find_note_by_key(self, key: str) -> JsonDict | None:
        try:
            result = self._json("GET", f"/Structure/Note/Key/{quote(key, safe='')}")
        except NotFound:
            return None
        if not isinstance(result, dict):
            raise UpstreamRejected(f"note {key}: Clarity answered {type(result).__name__}, not a model")
        return result

    def add_order_note(self, order_id: int, *, key: str, text: str) -> JsonDict:
        result = self._action("POST", "/Structure/Note/Create", {
            "CustomKey": key, "Note1": text, "SalesOrderID": int(order_id), "TypeKey": "Order Note"})
        return {"note_id": result.get("Result"), "key": key}

    # accounts and their contacts (the customer sync, services.customer_sync)

    def get_account(self, account_id: int) -> JsonDict:
        """The Account's full model: ``AccountContacts`` rows with each ``Slave`` contact and its ``Address``."""
        result = self._json("GET", f"/Accounts/Account/ID/{int(account_id)}")
        if not isinstance(result, dict):
            raise UpstreamRejected(f"account {account_id}: Clarity answered {type(result).__name__}, not a model")
        return result

    def search_accounts(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]:
        """One page (1-based) of accounts in ID order (Lite projection) and CEF's ``TotalCount``."""
        query = {"ModifiedSince": format_local(modified_since, self.zone)} if modified_since is not None else {}
        result = self._search("Accounts", query, page=page, size=size, sorts=[{"field": "ID", "dir": "asc"}],
                              area="Accounts")
        total = result.get("TotalCount")
        return [dict(r) for r in result.get("Results") or []], int(total) if isinstance(total, int) else None

    def find_account_by_key(self, key: str) -> JsonDict | None:
        """The account whose CustomKey is ``key`` (full model), or None."""
        found = self._search("Accounts", {"CustomKey": key, "CustomKeyStrict": "true"}, size=2, area="Accounts")
        rows = [r for r in found.get("Results") or [] if r.get("CustomKey") == key]
        if not rows:
            return None
        try:
            return self.get_account(int(rows[0]["ID"]))
        except NotFound:
            return None  # deleted between the search and the read

    def find_account_ids_by_email(self, email: str) -> list[int]:
        """The accounts that have a contact with this ``Email1`` (compared case-insensitively), oldest first."""
        contacts = self._search("Contacts", {"Email1": email, "Email1Strict": "true"}, size=20, area="Contacts")
        ids: set[int] = set()
        for contact in contacts.get("Results") or []:
            if str(contact.get("Email1") or "").casefold() != email.casefold():
                continue
            links = self._search("AccountContacts", {"SlaveID": int(contact["ID"])}, size=20, area="Accounts")
            ids.update(int(r["MasterID"]) for r in links.get("Results") or []
                       if r.get("MasterID") and r.get("Active", True) and not r.get("EndDate"))
        return sorted(ids)

    def create_account(self, model: Mapping[str, Any]) -> int:
        """``POST /Accounts/Account/Create`` (nested ``AccountContacts`` included); the new account's ID."""
        result = self._action("POST", "/Accounts/Account/Create", {**dict(model), "ID": 0})
        return int(result["Result"])

    def update_account(self, account_id: int, fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (``Name``, ``EIN``...) on the account: its model as read, with them, without the
        collections (contacts are written on their own)."""
        current = self.get_account(account_id)
        body = {k: v for k, v in current.items() if not isinstance(v, list)}
        self._action("PUT", "/Accounts/Account/Update", {**body, **dict(fields), "ID": int(account_id)})

    def update_contact(self, contact: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (``Email1``, ``Phone1``, ``Address`` {...}) on ``contact`` (its model as read)."""
        body = {k: v for k, v in contact.items() if not isinstance(v, list)}
        body.update(fields)
        if isinstance(fields.get("Address"), Mapping):
            body["Address"] = {**dict(contact.get("Address") or {}), **dict(fields["Address"])}
        self._action("PUT", "/Contacts/Contact/Update", body)

    def add_account_contact(self, account_id: int, contact: Mapping[str, Any], *, billing: bool,
                            shipping: bool) -> int:
        """A new contact on the account (``IsBilling``: its billing contact, ``IsPrimary``: its shipping one)."""
        result = self._action("POST", "/Accounts/AccountContact/Create", {
            "ID": 0, "MasterID": int(account_id), "Slave": dict(contact), "IsBilling": billing, "IsPrimary": shipping})
        return int(result["Result"])

    def mark_account_contact(self, row_id: int, *, billing: bool) -> None:
        """Make the AccountContact row the account's billing contact only (``billing``) or neither."""
        action = "MarkAsDefaultBilling" if billing else "MarkAsNotBillingOrShipping"
        self._action("PATCH", f"/Accounts/AccountContact/{action}/ID/{int(row_id)}")
