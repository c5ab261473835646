"""``HttpErpGateway``: the ErpGateway port on ERPNext's REST resource API over httpx, idempotent by our keys.

ERPNext has no idempotency keys, so every ``ensure_*`` method looks the document up by our external key
first and creates it only when it is missing (a 409 ``DuplicateEntryError`` on create also means
"exists": it is looked up and returned). ERPNext has no unique index on those keys, so with ``locks``
the find, the create and the submit run under the lock of ``doctype`` + key: two runs for the same new
customer or order, in any process, cannot both create it. Decimal numbers in answers come back as
strings, never floats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import quote

import httpx

from commerce_bridge.connectors.erp.errors import error_for_response, is_duplicate
from commerce_bridge.errors import BridgeError, ConfigurationError, UpstreamRejected
from commerce_bridge.http_errors import transport_errors
from commerce_bridge.services.ports import KeyLocks

__all__ = ["HttpErpGateway"]

JsonDict = dict[str, Any]
UNSET = object()


def _path(doctype: str, name: str | None = None) -> str:
    path = f"/api/resource/{quote(doctype, safe='')}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


class HttpErpGateway:
    """Implements ``services.gateways.ErpGateway`` (``Authorization: token KEY:SECRET``).

    Parameters
    ----------
    base_url:
        ``CB_ERP_BASE_URL``, the site's root (``https://erp.example.com``).
    api_key, api_secret:
        ``CB_ERP_API_KEY`` / ``CB_ERP_API_SECRET`` of the API user.
    timeout_s:
        Per-request timeout.
    transport:
        An httpx transport (tests); None for a real connection pool.
    before_request:
        Called before every HTTP request, e.g. the shared per-destination rate limit.
    locks:
        Key locks shared by every process (``services.ports.KeyLocks``); each ``ensure_*`` holds the
        lock of its document's key. None: no serialisation (one caller at a time, e.g. a script).
    """

    def __init__(self, base_url: str, api_key: str, api_secret: str, *, timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 before_request: Callable[[], None] | None = None, locks: KeyLocks | None = None) -> None:
        if not base_url or not api_key or not api_secret:
            raise ConfigurationError("CB_ERP_BASE_URL, CB_ERP_API_KEY and CB_ERP_API_SECRET are required")
        # before_request: e.g. the shared per-destination rate limit, taken once per HTTP request
        hooks = {"request": [lambda _request: before_request()]} if before_request is not None else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport, event_hooks=hooks,
            headers={"Authorization": f"token {api_key}:{api_secret}", "Accept": "application/json"})
        self._locks = locks

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = UNSET) -> Any:
        kwargs: dict[str, Any] = {"params": params}
        if body is not UNSET:
            kwargs["json"] = body
        with transport_errors("ERP"):
            response = self._http.request(method, path, **kwargs)
        error = error_for_response(response)
        if error is not None:
            raise error
        return json.loads(response.content, parse_float=str) if response.content else {}

    @staticmethod
    def _data(result: Any, what: str) -> Any:
        if not isinstance(result, dict) or "data" not in result:
            raise UpstreamRejected(f"{what}: ERPNext answered without 'data'")
        return result["data"]

    # reads

    def get_doc(self, doctype: str, name: str) -> JsonDict:
        doc = self._data(self._call("GET", _path(doctype, name)), f"get {doctype} {name}")
        return dict(doc)

    def list_docs(
        self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
        fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None, start: int = 0,
    ) -> list[JsonDict]:
        params: dict[str, Any] = {"fields": json.dumps(list(fields)), "limit_page_length": limit}
        if start:
            params["limit_start"] = start
        if filters is not None:
            params["filters"] = json.dumps(filters if isinstance(filters, Mapping) else [list(f) for f in filters])
        if order_by:
            params["order_by"] = order_by
        rows = self._data(self._call("GET", _path(doctype), params=params), f"list {doctype}")
        return [dict(r) for r in rows]

    def find_by(self, doctype: str, field: str, value: Any) -> JsonDict | None:
        """The oldest document that is not cancelled whose ``field`` equals ``value``, in full, or None."""
        rows = self.list_docs(doctype, filters=[[field, "=", value], ["docstatus", "!=", 2]],
                              fields=["name"], limit=1, order_by="creation asc")
        return self.get_doc(doctype, rows[0]["name"]) if rows else None

    # writes

    def create_doc(self, doctype: str, doc: Mapping[str, Any]) -> JsonDict:
        """Insert a document (no existence check; prefer the ``ensure_*`` methods)."""
        return dict(self._data(self._call("POST", _path(doctype), body=dict(doc)), f"create {doctype}"))

    def submit(self, doctype: str, name: str) -> JsonDict:
        doc = self.get_doc(doctype, name)
        if int(doc.get("docstatus") or 0) != 0:
            return doc
        return dict(self._data(self._call("PUT", _path(doctype, name), body={"docstatus": 1}),
                               f"submit {doctype} {name}"))

    def _ensure(self, doctype: str, doc: Mapping[str, Any], key_field: str, *, submit: bool = False) -> JsonDict:
        key = doc.get(key_field)
        if key in (None, ""):
            raise UpstreamRejected(f"{doctype} needs {key_field} (our external key) to be created idempotently",
                                   suggested_fix=f"Fill {key_field} in the mapping, then replay.")
        with self._lock(doctype, key_field, key):
            existing = self.find_by(doctype, key_field, key)
            if existing is None:
                body = {k: v for k, v in doc.items() if k != "docstatus"}
                try:
                    existing = self.create_doc(doctype, body)
                except BridgeError as exc:
                    if not is_duplicate(exc):
                        raise
                    existing = self.find_by(doctype, key_field, key)
                    if existing is None:
                        raise
            if submit and int(existing.get("docstatus") or 0) == 0:
                existing = self.submit(doctype, str(existing["name"]))
            return existing

    def _lock(self, doctype: str, key_field: str, key: Any) -> AbstractContextManager[None]:
        """The critical section of one document key (a no-op without ``locks``)."""
        if self._locks is None:
            return nullcontext()
        return self._locks.hold(f"erp.{doctype.lower().replace(' ', '_')}.{key_field}", str(key))

    def ensure_customer(self, doc: Mapping[str, Any]) -> JsonDict:
        return self._ensure("Customer", doc, "email_id" if doc.get("email_id") else "customer_name")

    def ensure_item(self, doc: Mapping[str, Any]) -> JsonDict:
        return self._ensure("Item", doc, "item_code")

    def ensure_sales_order(self, doc: Mapping[str, Any], *, submit: bool = True) -> JsonDict:
        return self._ensure("Sales Order", doc, "po_no", submit=submit)

    def ensure_payment_entry(self, doc: Mapping[str, Any], *, submit: bool = True) -> JsonDict:
        return self._ensure("Payment Entry", doc, "reference_no", submit=submit)

    def ensure_doc(self, doctype: str, doc: Mapping[str, Any], key_field: str, *, submit: bool = True) -> JsonDict:
        return self._ensure(doctype, doc, key_field, submit=submit)

    def cancel(self, doctype: str, name: str) -> JsonDict:
        doc = self.get_doc(doctype, name)
        if int(doc.get("docstatus") or 0) != 1:
            return doc
        return dict(self._data(self._call("PUT", _path(doctype, name), body={"docstatus": 2}),
                               f"cancel {doctype} {name}"))

    # the customer sync (services.customer_sync): updates and paged listings

    def update_doc(self, doctype: str, name: str, fields: Mapping[str, Any]) -> JsonDict:
        """``PUT /api/resource/{doctype}/{name}`` with ``fields`` (child tables are replaced whole)."""
        return dict(self._data(self._call("PUT", _path(doctype, name), body=dict(fields)),
                               f"update {doctype} {name}"))

    def pages(self, doctype: str, *, filters: Sequence[Sequence[Any]] | None = None,
              fields: Sequence[str] = ("name",), order_by: str = "creation asc",
              page_size: int = 200) -> Iterator[list[JsonDict]]:
        """The whole listing, page by page (``limit_start`` paging in ``order_by`` order); the last page is the
        first shorter than ``page_size`` (an empty listing yields nothing)."""
        start = 0
        while True:
            rows = self.list_docs(doctype, filters=filters, fields=fields, limit=page_size, order_by=order_by,
                                  start=start)
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            start += len(rows)
