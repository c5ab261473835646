"""The naive arm of the order-to-cash benchmark: the bridge's order flow for a paid order, with no durability.

One process that does, for each new Clarity order, the HTTP calls the built-in workflows
``clarity.order_to_cash`` and ``stripe.payment_succeeded`` make through the bridge's connectors, in the
same order and with the same bodies, but keeps its state in memory (dicts) and has no database, no
inbox, no engine, no retries, no rate limiter, no key locks and no de-duplication beyond its poll
cursor. It is what a first script without durability would do, run against the same sandbox peers so
that its CPU per paid order can be compared with the bridge's (``bench/order_to_cash.py --arms``).

* **Clarity** (httpx): log in once (``POST /auth/identity``), then poll ``GET /Ordering/SalesOrders``
  every ``--poll-interval`` seconds with ``ModifiedSince``, ``Paging`` and ``Sorts`` exactly as
  ``HttpClarityGateway.poll_changed_orders`` does (the same in-memory ``CursorState``: 5-s overlap,
  seek paging, changes seen in the overlap skipped). A new row whose ``StatusKey`` is empty or
  ``Pending`` starts the first half of the flow (the workflow's trigger filter).
* **Stripe** (the official SDK's ``StripeClient``, built like ``build_stripe_client``: SDK retries off):
  the webhook endpoint ``POST /webhooks/stripe`` (Starlette under uvicorn) verifies every delivery with
  ``stripe.Webhook.construct_event`` and answers 200; a ``payment_intent.succeeded`` carrying
  ``metadata.clarity_order_key`` starts the second half of the flow.
* **ERPNext** (httpx): find-then-create of the Customer, the Sales Order, the Sales Invoice billing it and
  the Payment Entry allocated to that invoice, and the submit of the last three, as ``HttpErpGateway._ensure``
  does (the default ``CB_ERP_INVOICE_ON=paid``).

The calls of one paid USD order (27, plus its share of the polls)::

    clarity.order_to_cash    GET  Clarity /Ordering/SalesOrder/ID/{id}                       (step get)
                             GET  Stripe  /v1/customers?email=…                              (customer: find)
                             POST Stripe  /v1/customers                                      (customer: create)
                             POST Stripe  /v1/payment_intents  (confirm, metadata, shipping…) (payment)
    payment_succeeded        GET  Stripe  /v1/payment_intents/{id}?expand[]=latest_charge     (payment)
                             GET  Clarity /Ordering/SalesOrders?CustomKey=…  +  GET …/ID/{id} (find)
                             GET  …/ID/{id}, GET …/ID/{id}, PATCH AddPayment, PUT Update,
                             GET  …/ID/{id}                                                   (add_payment)
                             GET  ERP Customer list + POST Customer                           (erp_customer)
                             GET  ERP Sales Order list + POST + GET + PUT docstatus=1         (erp_order)
                             GET  ERP Sales Order, Sales Invoice list + POST + GET + PUT      (erp_invoice)
                             GET  ERP Payment Entry list + POST + GET + PUT docstatus=1       (erp_payment)

Request bodies come from the bridge's own pure mapping functions (``commerce_bridge.mapping``: no I/O),
so every peer gets the same bytes from both arms. Each order that completes appends one JSON line
``{"paid": <order key>, "t": <monotonic>, "wall": <epoch>}`` to ``--events`` (a failure appends
``{"error": …}``); the benchmark reads that file, so nothing polls this process.

    python bench/_naive_order.py --port 8001 --events paid.jsonl --webhook-secret whsec_… \\
        --stripe-key sk_test_… --stripe-base http://127.0.0.1:12111 --clarity-base http://…/API-Admin \\
        --clarity-user U --clarity-password P --erp-base http://… --erp-key K --erp-secret S
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from commerce_bridge.connectors.clarity.changes import (
    CursorState,
    change_fingerprint,
    format_local,
    parse_local,
)
from commerce_bridge.domain.orders import CaptureMode, PaymentSummary
from commerce_bridge.mapping.clarity import money_to_clarity, order_from_clarity
from commerce_bridge.mapping.customer import normalized_customer
from commerce_bridge.mapping.erp import erp_customer, erp_payment_entry, erp_sales_invoice, erp_sales_order
from commerce_bridge.mapping.money import from_stripe_amount
from commerce_bridge.mapping.stripe import customer_params, payment_intent_params, stripe_idempotency_key

JsonDict = dict[str, Any]
PAID_STATUS = "Full Payment Received"  # the status map's default for payment_intent.succeeded
PENDING = "Pending"
PAID_TO_ACCOUNT = "Stripe Clearing - SB"  # FlowSettings' default, as the bridge runs in the sandbox
DELIVERY_DAYS = 7
PAGE_SIZE = 100
OVERLAP = timedelta(seconds=5)  # CB_CLARITY_POLL_OVERLAP_S
ZONE = UTC  # CB_CLARITY_TIMEZONE


def _loads(content: bytes) -> Any:
    return json.loads(content, parse_float=str)  # exact decimals, as the connectors parse them


def _is_zero(value: Any) -> bool:
    """CEF omits fields that hold their default, so a missing ``BalanceDue`` is zero."""
    if value is None or value == "":
        return True
    try:
        return Decimal(str(value)) <= 0
    except ArithmeticError:
        return False


class Naive:
    """The whole arm: clients, in-memory state, the two halves of the flow and the poller."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.secret = a.webhook_secret
        self.stripe = stripe.StripeClient(a.stripe_key, base_addresses={"api": a.stripe_base},
                                          max_network_retries=0, http_client=stripe.RequestsClient(timeout=30))
        self.clarity = httpx.Client(base_url=a.clarity_base.rstrip("/"), timeout=10)
        self.erp = httpx.Client(base_url=a.erp_base.rstrip("/"), timeout=10, headers={
            "Authorization": f"token {a.erp_key}:{a.erp_secret}", "Accept": "application/json"})
        self.clarity_user, self.clarity_password = a.clarity_user, a.clarity_password
        self.session = ""
        self.poll_interval = a.poll_interval
        self.pool = ThreadPoolExecutor(max_workers=a.concurrency, thread_name_prefix="naive")
        self.events = open(a.events, "a", buffering=1)  # noqa: SIM115 (one line per paid order, flushed)
        self._events_lock = threading.Lock()
        # the in-memory state: what the bridge keeps in its identity map and its poll cursor
        self.cursor = CursorState()
        self.stripe_customers: dict[str, str] = {}  # e-mail -> cus_…
        self.erp_customers: dict[str, str] = {}  # e-mail -> ERP Customer name
        self.intents: dict[str, str] = {}  # order key -> pi_…
        self._halt = threading.Event()
        self._key_locks: dict[str, threading.Lock] = {}  # the subclasses' one lock per key (charge, account, item)
        self._key_locks_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------
    def lock(self, key: str) -> threading.Lock:
        with self._key_locks_lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def note(self, **fields: Any) -> None:
        line = json.dumps({**fields, "t": time.monotonic(), "wall": time.time()})
        with self._events_lock:
            self.events.write(line + "\n")

    def login(self) -> None:
        r = self.clarity.post("/auth/identity", json={"UserName": self.clarity_user,
                                                      "Password": self.clarity_password, "RememberMe": True})
        r.raise_for_status()
        self.session = str(r.json().get("SessionId") or r.cookies.get("ss-pid"))
        self.clarity.cookies.clear()

    def cef(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        headers = {"X-ss-pid": self.session, "X-ss-id": self.session, "Accept": "application/json"}
        r = self.clarity.request(method, path, params=params, headers=headers,
                                 **({"json": body} if body is not None else {}))
        r.raise_for_status()
        return _loads(r.content) if r.content else {}

    def get_order(self, order_id: int | str) -> JsonDict:
        return dict(self.cef("GET", f"/Ordering/SalesOrder/ID/{int(order_id)}"))

    def search_orders(self, query: Mapping[str, Any], *, size: int = PAGE_SIZE,
                      sorts: list[dict[str, str]] | None = None) -> JsonDict:
        params = dict(query)
        params["Paging"] = json.dumps({"Size": size, "StartIndex": 1})
        if sorts:
            params["Sorts"] = json.dumps(sorts)
        return dict(self.cef("GET", "/Ordering/SalesOrders", params=params))

    def erp_call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        r = self.erp.request(method, path, params=params, **({"json": body} if body is not None else {}))
        r.raise_for_status()
        return _loads(r.content)["data"] if r.content else {}

    def erp_ensure(self, doctype: str, doc: Mapping[str, Any], key_field: str, *, submit: bool) -> JsonDict:
        """Find by our key, else create; then submit (HttpErpGateway._ensure without its lock)."""
        path = f"/api/resource/{quote(doctype, safe='')}"
        rows = self.erp_call("GET", path, params={
            "fields": json.dumps(["name"]), "limit_page_length": 1, "order_by": "creation asc",
            "filters": json.dumps([[key_field, "=", doc[key_field]], ["docstatus", "!=", 2]])})
        if rows:
            existing = dict(self.erp_call("GET", f"{path}/{quote(rows[0]['name'], safe='')}"))
        else:
            existing = dict(self.erp_call("POST", path, body={k: v for k, v in doc.items() if k != "docstatus"}))
        if submit and int(existing.get("docstatus") or 0) == 0:
            name = quote(str(existing["name"]), safe="")
            current = self.erp_call("GET", f"{path}/{name}")
            if int(current.get("docstatus") or 0) == 0:
                existing = dict(self.erp_call("PUT", f"{path}/{name}", body={"docstatus": 1}))
        return existing

    # -- clarity.order_to_cash -------------------------------------------------------------------
    def order_to_cash(self, order_id: int) -> None:
        raw = self.get_order(order_id)  # step get
        order = order_from_clarity(raw)  # step order (core.validate.order)
        customer, _ = normalized_customer(order.customer)
        order = type(order)(**{**{f: getattr(order, f) for f in order.__dataclass_fields__}, "customer": customer})
        balance = order.balance_due.minor if order.balance_due is not None else order.total.minor
        if order.status != PENDING or balance <= 0 or order.payment_intent_ref:
            return  # needs no payment
        customer_id = self.stripe_customers.get(customer.email)  # known_customer
        if customer_id is None:  # customer: find, else create
            page = self.stripe.v1.customers.list(params={"email": customer.email, "limit": 1})
            if page.data:
                customer_id = str(page.data[0].to_dict()["id"])
            else:
                created = self.stripe.v1.customers.create(
                    params=customer_params(customer),  # type: ignore[arg-type]
                    options={"idempotency_key": stripe_idempotency_key(f"naive:{order.key}:customer")})
                customer_id = str(created.to_dict()["id"])
            self.stripe_customers[customer.email] = customer_id  # link_customer
        capture = ((raw.get("SerializableAttributes") or {}).get("CaptureMethod") or {}).get("Value") or "automatic"
        pi_params = payment_intent_params(order, customer_id=customer_id, capture=CaptureMode(capture),
                                          payment_method=order.payment_method_ref or None)
        known = self.intents.get(order.key)  # known_payment
        if known is not None:
            self.stripe.v1.payment_intents.retrieve(known, params={"expand": ["latest_charge"]})
            return
        pi = self.stripe.v1.payment_intents.create(
            params=pi_params,  # type: ignore[arg-type]
            options={"idempotency_key": stripe_idempotency_key(f"clarity-order:{order.key}:payment")})
        self.intents[order.key] = str(pi.to_dict()["id"])  # link_payment

    # -- stripe.payment_succeeded ----------------------------------------------------------------
    def payment_succeeded(self, payment_intent_id: str) -> None:
        pi = self.stripe.v1.payment_intents.retrieve(payment_intent_id,
                                                     params={"expand": ["latest_charge"]}).to_dict()  # payment
        currency = str(pi["currency"]).upper()
        charge = pi.get("latest_charge")
        charge_id = str(charge.get("id") if isinstance(charge, Mapping) else charge)
        key = str((pi.get("metadata") or {})["clarity_order_key"])
        found = self.search_orders({"CustomKey": key, "CustomKeyStrict": "true"}, size=2)  # find
        rows = [r for r in found.get("Results") or [] if r.get("CustomKey") == key]
        if not rows:
            raise LookupError(f"Clarity has no order {key}")  # no retry: the bridge would retry this step
        order_id = int(rows[0]["ID"])
        raw = self.get_order(order_id)
        received = from_stripe_amount(int(pi.get("amount_received") or 0), currency)
        if pi.get("status") == "succeeded":  # add_payment (the step's read, the gateway's, the write, a read)
            before = self.get_order(order_id)
            if not _is_zero(before.get("BalanceDue")):
                current = self.get_order(order_id)
                payments = [p.get("Slave") or {} for p in current.get("SalesOrderPayments") or []]
                if (current.get("PaymentTransactionID") != charge_id
                        and all(p.get("TransactionNumber") != charge_id for p in payments)):
                    self.cef("PATCH", "/Ordering/SalesOrder/AddPayment", body={"ID": order_id, "Payment": {
                        "Amount": money_to_clarity(received), "TransactionNumber": charge_id,
                        "StatusKey": "Payment Received"}})
                    if not current.get("PaymentTransactionID"):
                        self.cef("PUT", "/Ordering/SalesOrder/Update",
                                 body={"ID": order_id, "PaymentTransactionID": charge_id})
                after = self.get_order(order_id)
                if after.get("StatusKey") != PAID_STATUS:  # mark_paid (never for a paid USD order)
                    raise RuntimeError(f"order {key} is {after.get('StatusKey')!r} after AddPayment")
        order = order_from_clarity(raw)  # step order
        customer, _ = normalized_customer(order.customer)
        name = self.erp_customers.get(customer.email)  # erp_customer
        if name is None:
            name = str(self.erp_ensure("Customer", erp_customer(customer), "email_id", submit=False)["name"])
            self.erp_customers[customer.email] = name
        today = datetime.now(UTC).date()
        so = self.erp_ensure("Sales Order", erp_sales_order(  # erp_order
            order, customer_name=name, delivery_date=today + timedelta(days=DELIVERY_DAYS), transaction_date=today),
            "po_no", submit=True)
        if pi.get("status") == "succeeded":
            so = self.erp_call("GET", f"/api/resource/Sales%20Order/{quote(str(so['name']), safe='')}")  # erp_invoice
            invoice = self.erp_ensure("Sales Invoice", erp_sales_invoice(so, posting_date=today), "po_no", submit=True)
            payment = PaymentSummary(intent_id="", charge_id=charge_id, status="succeeded", amount=received,
                                     amount_received=received, captured=True)
            self.erp_ensure("Payment Entry", erp_payment_entry(  # erp_payment
                payment, customer_name=name, paid_to_account=PAID_TO_ACCOUNT, posting_date=today,
                sales_order_name=str(so["name"]), sales_invoice_name=str(invoice["name"]), amount=received),
                "reference_no", submit=True)
        self.note(paid=key)

    def run_safely(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # no retry, no dead-letter queue: the order is simply lost
            self.note(error=f"{what} {args}: {type(exc).__name__}: {exc}"[:500])
            traceback.print_exc()

    # -- the Clarity poll ------------------------------------------------------------------------
    def clarity_changes(self, state: CursorState, path: str, handle: Callable[[JsonDict], None]) -> None:
        """One ``ModifiedSince`` poll of the list at ``path`` from ``state``'s cursor (with the 5-s overlap, seek
        paging and fingerprints): each row with an ``ID`` not seen in this state to ``handle``."""
        query_from = state.query_from(OVERLAP)
        sorts = [{"field": "UpdatedDate", "dir": "asc"}, {"field": "ID", "dir": "asc"}]
        page = 1
        while True:
            query: dict[str, Any] = {"ModifiedSince": format_local(query_from, ZONE)} if query_from else {}
            params = {**query, "Paging": json.dumps({"Size": PAGE_SIZE, "StartIndex": page}),
                      "Sorts": json.dumps(sorts)}
            batch = self.cef("GET", path, params=params).get("Results") or []
            newest = query_from
            for row in batch:
                text = row.get("UpdatedDate") or row.get("CreatedDate")
                changed_at = parse_local(str(text), ZONE) if text else datetime.min.replace(tzinfo=UTC)
                if newest is None or changed_at > newest:
                    newest = changed_at
                if state.note(change_fingerprint(row, ZONE), changed_at) and row.get("ID"):
                    handle(row)
            if len(batch) < PAGE_SIZE:
                break
            if newest is not None and newest != query_from:
                query_from, page = newest, 1
            else:
                page += 1
        state.prune(OVERLAP)

    def poll_once(self) -> None:
        def order_changed(row: JsonDict) -> None:
            if row.get("StatusKey") in (None, PENDING):  # the workflow's trigger filter
                self.pool.submit(self.run_safely, "order_to_cash", self.order_to_cash, int(row["ID"]))

        self.clarity_changes(self.cursor, "/Ordering/SalesOrders", order_changed)

    def poll_every_interval(self, what: str, once: Callable[[], None]) -> None:
        """``once()`` every ``--poll-interval`` seconds until the arm stops; a failure is noted (``what: ...``) and
        the next cycle comes as usual."""
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                once()
            except Exception as exc:
                self.note(error=f"{what}: {type(exc).__name__}: {exc}"[:500])
            self._halt.wait(max(0.0, self.poll_interval - (time.monotonic() - t0)))

    def poll_forever(self) -> None:
        self.poll_every_interval("poll", self.poll_once)

    # -- the webhook endpoint --------------------------------------------------------------------
    async def webhook(self, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = stripe.Webhook.construct_event(body, request.headers.get("stripe-signature", ""), self.secret)
        except (ValueError, stripe.SignatureVerificationError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        self.on_event(event)
        return JSONResponse({"ok": True})

    def on_event(self, event: stripe.Event) -> None:
        """A verified delivery, before the endpoint answers: hand its work to the pool."""
        if event.type == "payment_intent.succeeded":
            obj = event.data.object
            metadata = getattr(obj, "metadata", None)
            if metadata and "clarity_order_key" in metadata and metadata["clarity_order_key"]:
                self.pool.submit(self.run_safely, "payment_succeeded", self.payment_succeeded, str(obj["id"]))

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self.login()
            poller = threading.Thread(target=self.poll_forever, name="naive-poll", daemon=True)
            poller.start()
            yield
            self._halt.set()
            poller.join(10)
            self.pool.shutdown(wait=False, cancel_futures=True)

        async def healthz(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        return Starlette(routes=[Route("/webhooks/stripe", self.webhook, methods=["POST"]),
                                 Route("/healthz", healthz)], lifespan=lifespan)


def main(arm: type[Naive] = Naive) -> None:
    """Run ``arm`` (this order flow, or a subclass that adds flows) as a server on ``--port``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--events", required=True, help="append one JSON line per paid order (or error) here")
    p.add_argument("--webhook-secret", required=True)
    p.add_argument("--stripe-key", required=True)
    p.add_argument("--stripe-base", required=True)
    p.add_argument("--clarity-base", required=True, help="…/DesktopModules/ClarityEcommerce/API-Admin")
    p.add_argument("--clarity-user", required=True)
    p.add_argument("--clarity-password", required=True)
    p.add_argument("--erp-base", required=True)
    p.add_argument("--erp-key", required=True)
    p.add_argument("--erp-secret", required=True)
    p.add_argument("--poll-interval", type=float, default=0.5, help="seconds between Clarity polls")
    p.add_argument("--concurrency", type=int, default=16, help="threads running orders (the bridge's default)")
    a = p.parse_args()
    naive = arm(a)
    uvicorn.run(naive.app(), host=a.host, port=a.port, log_level="warning", access_log=False)
    os._exit(0)  # worker threads may be inside a request; nothing here is durable anyway


if __name__ == "__main__":
    main()
