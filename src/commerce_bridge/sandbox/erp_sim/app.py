"""The ERPNext simulator's ASGI app: frappe's ``/api/resource`` REST API and a few ``/api/method`` calls."""

from __future__ import annotations

import base64
import binascii
import copy
import secrets
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim.faults import FaultInjector, faults_endpoint, outage_endpoint
from commerce_bridge.sandbox.clarity_sim.jsonutil import dumps, loads
from commerce_bridge.sandbox.clarity_sim.store import DocStore
from commerce_bridge.sandbox.erp_sim import accounts, masters
from commerce_bridge.sandbox.erp_sim.doctypes import DocType, child_row, new_name, resolve_doctype
from commerce_bridge.sandbox.erp_sim.errors import FrappeError, error_response
from commerce_bridge.sandbox.erp_sim.query import run_list

DEFAULT_API_KEY = "sandbox-erp-key"
DEFAULT_API_SECRET = "sandbox-erp-secret"
API_USER = "integration@sandbox.local"
Doc = dict[str, Any]
_SYSTEM_FIELDS = {"name", "doctype", "owner", "creation", "modified", "modified_by", "docstatus", "idx", "status"}


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json")


class ErpSim:
    """State and document operations of the simulator."""

    def __init__(self, store: DocStore, api_key: str, api_secret: str) -> None:
        self.store = store
        self.api_key = api_key
        self.api_secret = api_secret

    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header:
            raise FrappeError("PermissionError", "Not permitted: log in or send Authorization: token KEY:SECRET")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials.strip()).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise FrappeError("AuthenticationError", "Invalid credentials") from exc
        elif scheme.lower() != "token":
            raise FrappeError("AuthenticationError", "Unsupported Authorization scheme")
        key, _, secret = credentials.strip().partition(":")
        if not (secrets.compare_digest(key.encode(), self.api_key.encode())
                and secrets.compare_digest(secret.encode(), self.api_secret.encode())):
            raise FrappeError("AuthenticationError", "Invalid API key or secret")

    def get(self, doctype: DocType, name: str) -> Doc:
        doc = self.store.get(doctype.name, name)
        if doc is None:
            raise FrappeError("DoesNotExistError", f"{doctype.name} {name} not found")
        return doc

    def _build(self, doctype: DocType, doc: Doc, now: str) -> None:
        for field_name in doctype.mandatory:
            if doc.get(field_name) in (None, ""):
                label = field_name.replace("_", " ").title()
                raise FrappeError("MandatoryError", f"Error: Value missing for {doctype.name}: {label}")
        for field_name, target in doctype.links.items():
            value = doc.get(field_name)
            if value and self.store.get(target, str(value)) is None:
                raise FrappeError("LinkValidationError", f"Could not find {target}: {value}")
        for table, child_doctype in doctype.children.items():
            rows = doc.get(table) or []
            if not isinstance(rows, list):
                raise FrappeError("ValidationError", f"{table} must be a list")
            doc[table] = [child_row(doc, table, child_doctype, r, i + 1, now) for i, r in enumerate(rows)]
        if doctype.compute:
            doctype.compute(self.store, doc)
        if doctype.status_for:
            doc["status"] = doctype.status_for(doc)

    def insert(self, doctype: DocType, body: Doc) -> Doc:
        now = _now()
        doc: Doc = {k: v for k, v in body.items() if k not in _SYSTEM_FIELDS}
        for key, value in doctype.defaults.items():
            doc.setdefault(key, value)
        docstatus = int(body.get("docstatus", 0) or 0)
        if docstatus not in (0, 1) or (docstatus and not doctype.submittable):
            raise FrappeError("ValidationError", f"Cannot create a {doctype.name} with docstatus {docstatus}")
        for field_name in doctype.mandatory:
            if doc.get(field_name) in (None, ""):
                raise FrappeError("MandatoryError", f"Error: Value missing for {doctype.name}: "
                                                    f"{field_name.replace('_', ' ').title()}")
        with self.store.batch():
            doc.update({"doctype": doctype.name, "owner": API_USER, "creation": now, "modified": now,
                        "modified_by": API_USER, "docstatus": docstatus, "idx": 0})
            doc["name"] = "new"
            self._build(doctype, doc, now)
            doc["name"] = new_name(self.store, doctype, doc)
            for table in doctype.children:
                for row in doc.get(table) or []:
                    row["parent"] = doc["name"]
            if docstatus == 1 and doctype.on_submit:
                doctype.on_submit(self.store, doc)
            self.store.put(doctype.name, doc["name"], doc)
            if doctype.after_save:
                try:
                    doctype.after_save(self, doc, True)
                except FrappeError:
                    self.store.delete(doctype.name, doc["name"])  # frappe rolls the whole request back
                    raise
        return doc

    def insert_named(self, doctype_name: str, body: Doc) -> Doc:
        """Insert a document of the DocType called ``doctype_name`` (for hooks that create documents)."""
        return self.insert(resolve_doctype(doctype_name), body)

    def update(self, doctype: DocType, name: str, body: Doc) -> Doc:
        with self.store.batch():
            existing = self.get(doctype, name)
            if body.get("modified") and body["modified"] != existing["modified"]:
                raise FrappeError("TimestampMismatchError", "Error: Document has been modified after you have "
                                                            "opened it. Please refresh to get the latest document.")
            old_status = int(existing.get("docstatus", 0))
            new_status = int(body.get("docstatus", old_status) or 0)
            changes = {k: v for k, v in body.items() if k not in _SYSTEM_FIELDS}
            if old_status == 2:
                raise FrappeError("ValidationError", f"Cannot edit cancelled document {doctype.name} {name}")
            if new_status != old_status and not doctype.submittable:
                raise FrappeError("ValidationError", f"{doctype.name} is not submittable")
            if (old_status, new_status) not in ((0, 0), (0, 1), (1, 1), (1, 2)):
                raise FrappeError("DocstatusTransitionError",
                                  f"Cannot change docstatus from {old_status} to {new_status}")
            if old_status == 1:
                changed = [k for k, v in changes.items() if existing.get(k) != v]
                if changed:
                    raise FrappeError("UpdateAfterSubmitError", f"Not allowed to change {changed[0]} after submission")
            doc = copy.deepcopy(existing)
            doc.update(changes)
            now = _now()
            doc.update({"docstatus": new_status, "modified": now, "modified_by": API_USER})
            if old_status == 0:
                self._build(doctype, doc, now)
            elif doctype.status_for:
                doc["status"] = doctype.status_for(doc)
            if (old_status, new_status) == (0, 1) and doctype.on_submit:
                doctype.on_submit(self.store, doc)
            if (old_status, new_status) == (1, 2) and doctype.on_cancel:
                doctype.on_cancel(self.store, doc)
            for table in doctype.children:
                for row in doc.get(table) or []:
                    row["docstatus"] = new_status
            self.store.put(doctype.name, name, doc)
            if doctype.after_save:
                try:
                    doctype.after_save(self, doc, False)
                except FrappeError:
                    self.store.put(doctype.name, name, existing)
                    raise
        return doc

    def delete(self, doctype: DocType, name: str) -> None:
        doc = self.get(doctype, name)
        if doc.get("docstatus") == 1:
            raise FrappeError("ValidationError", f"Submitted Record {name} cannot be deleted. You must Cancel it "
                                                 "first.")
        self.store.delete(doctype.name, name)


async def _body(request: Request) -> Doc:
    raw = await request.body()
    if not raw.strip():
        return {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        data = form.get("data") or form.get("doc")
        raw = str(data).encode() if data else b"{}"
    try:
        parsed = loads(raw)
    except ValueError as exc:
        raise FrappeError("ValidationError", f"Invalid JSON body: {exc}") from exc
    if not isinstance(parsed, dict):
        raise FrappeError("ValidationError", "The body must be a JSON object")
    return parsed


def build_app(*, state_file: str | None = None, api_key: str = DEFAULT_API_KEY,
              api_secret: str = DEFAULT_API_SECRET) -> Starlette:
    """Build the ERPNext simulator (state in memory, or in the SQLite ``state_file``).

    The companies and their chart of accounts are seeded on first start (``accounts.py``).
    """
    sim = ErpSim(DocStore(state_file), api_key, api_secret)
    with sim.store.batch():
        accounts.seed(sim.store, _now(), API_USER)
        masters.seed(sim.store, _now(), API_USER)

    async def resource(request: Request) -> Response:
        try:
            sim.authenticate(request)
            doctype = resolve_doctype(request.path_params["doctype"])
            name = request.path_params.get("name")
            if name is None:
                if request.method == "GET":
                    return _json({"data": run_list(sim.store, doctype, request.query_params)})
                if request.method == "POST":
                    return _json({"data": sim.insert(doctype, await _body(request))})
            elif request.method == "GET":
                return _json({"data": sim.get(doctype, name)})
            elif request.method == "PUT":
                return _json({"data": sim.update(doctype, name, await _body(request))})
            elif request.method == "DELETE":
                sim.delete(doctype, name)
                return _json({"message": "ok"}, status=202)
            raise FrappeError("ValidationError", f"{request.method} is not supported here")
        except FrappeError as exc:
            return error_response(exc)

    async def method(request: Request) -> Response:
        try:
            sim.authenticate(request)
            method_name = request.path_params["method"]
            if method_name == "frappe.auth.get_logged_user":
                return _json({"message": API_USER})
            if method_name == "frappe.client.submit":
                body = await _body(request)
                doc = body.get("doc")
                if isinstance(doc, str):
                    doc = loads(doc)
                if not isinstance(doc, dict) or not doc.get("doctype") or not doc.get("name"):
                    raise FrappeError("ValidationError", "doc with doctype and name is required")
                doctype = resolve_doctype(str(doc["doctype"]))
                return _json({"message": sim.update(doctype, str(doc["name"]), {**doc, "docstatus": 1})})
            if method_name == "frappe.client.cancel":
                body = await _body(request)
                doctype = resolve_doctype(str(body.get("doctype")))
                sim.update(doctype, str(body.get("name")), {"docstatus": 2})
                return _json({"message": None})
            raise FrappeError("DoesNotExistError", f"Method {method_name} not found")
        except FrappeError as exc:
            return error_response(exc)

    async def ping(request: Request) -> Response:
        return _json({"message": "pong"})

    faults = FaultInjector()
    app = Starlette(routes=[
        Route("/api/method/ping", ping, methods=["GET", "POST"]),
        Route("/api/method/{method}", method, methods=["GET", "POST"]),
        Route("/api/resource/{doctype}", resource, methods=["GET", "POST"]),
        Route("/api/resource/{doctype}/{name:path}", resource, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/faults", faults_endpoint, methods=["GET", "PUT", "POST", "DELETE"]),
        Route("/_sandbox/faults/outage", outage_endpoint, methods=["POST"]),
    ])
    app.state.faults = faults
    app.state.erp = sim
    app.add_middleware(faults.middleware_class(), injector=faults)
    return app
